import VecStoreKernels

/// Where list scans put scored rows: a selection with an entry threshold (`TopK`, `CandidateReservoir`).
/// Larger scores are closer; a scan offers a row only when its score is at least `threshold`.
protocol ScoredRowSink {
    /// The score a row must reach to be offered.
    var threshold: Float { get }
    /// Offers a row whose score reached `threshold`.
    mutating func insert(_ score: Float, _ id: UInt32)
}

extension TopK: ScoredRowSink {}

/// The best `k` of a stream of scored rows — larger score first, ties to the lower id, the same selection as
/// `TopK` — for the hundreds of ADC candidates an IVF-PQ search re-ranks (`refine × k`). Rows that reach the
/// threshold are appended to a buffer of `capacityFactor · k`; when it fills, one quickselect keeps the `k`
/// best and raises the threshold to the worst of them. Offering a row costs an append instead of a heap sift-down (which
/// dominated fast-scan searches with k = 100 candidates). Row ids must be distinct. Reusable: `removeAll`
/// keeps the storage.
public struct CandidateReservoir: Sendable {
    /// How many rows are kept.
    public let k: Int
    /// The buffer holds this many times `k` rows before a quickselect trims it back to `k`. 4 rather than 2:
    /// a search of a few hundred rows (one or two probed lists) then needs one quickselect, at the end,
    /// instead of two, and longer scans select a third as often (the quickselects were ~12% of a
    /// docs60k fast-scan query at nprobe 1).
    public static let capacityFactor = 4
    @usableFromInline var items: [(score: Float, id: UInt32)]
    /// The score a row must reach to be offered (−∞ until the buffer first fills).
    public private(set) var threshold: Float = -.infinity

    /// An empty reservoir keeping `k` (≥ 1) rows.
    public init(k: Int) {
        self.k = max(1, k)
        items = []
        items.reserveCapacity(Self.capacityFactor * self.k)
    }

    /// Empties the reservoir, keeping its storage.
    public mutating func removeAll() {
        items.removeAll(keepingCapacity: true)
        threshold = -.infinity
    }

    /// Offers a row (the caller has checked `score >= threshold`).
    @inlinable @inline(__always)
    public mutating func insert(_ score: Float, _ id: UInt32) {
        items.append((score, id))
        if items.count >= Self.capacityFactor * k { shrink() }
    }

    /// Keeps the `k` best rows and raises the threshold to the worst kept score.
    @usableFromInline mutating func shrink() {
        let k = self.k
        guard items.count > k else { return }
        var worst = Float.infinity
        items.withUnsafeMutableBufferPointer { b in
            guard let p = b.baseAddress else { return }
            Self.select(p, count: b.count, k: k)
            for j in 0..<k where p[j].score < worst { worst = p[j].score }
        }
        items.removeSubrange(k...)
        threshold = worst
    }

    /// The ids of the `k` best rows offered (fewer when fewer were offered), in no particular order.
    public mutating func finish() -> ArraySlice<(score: Float, id: UInt32)> {
        shrink()
        return items[...]
    }

    @inline(__always)
    static func better(_ a: (score: Float, id: UInt32), _ b: (score: Float, id: UInt32)) -> Bool {
        a.score > b.score || (a.score == b.score && a.id < b.id)
    }

    /// Rearranges `p[0..<n]` so that its first `k` (< n) elements are the `k` best (Hoare quickselect with a
    /// median-of-three pivot; elements are distinct under `better`).
    static func select(_ p: UnsafeMutablePointer<(score: Float, id: UInt32)>, count n: Int, k: Int) {
        var lo = 0, hi = n - 1
        let target = k - 1
        while lo < hi {
            let mid = lo + (hi - lo) / 2
            if better(p[mid], p[lo]) { p.swapAt(lo, mid) }
            if better(p[hi], p[lo]) { p.swapAt(lo, hi) }
            if better(p[hi], p[mid]) { p.swapAt(mid, hi) }
            let pivot = p[mid]
            var i = lo, j = hi
            while i <= j {
                while better(p[i], pivot) { i += 1 }
                while better(pivot, p[j]) { j -= 1 }
                if i <= j {
                    p.swapAt(i, j)
                    i += 1
                    j -= 1
                }
            }
            if target <= j {
                hi = j
            } else if target >= i {
                lo = i
            } else {
                return
            }
        }
    }
}

extension CandidateReservoir: ScoredRowSink {}

extension UnsafeMutablePointer {
    @inline(__always)
    func swapAt(_ i: Int, _ j: Int) {
        let t = self[i]
        self[i] = self[j]
        self[j] = t
    }
}
