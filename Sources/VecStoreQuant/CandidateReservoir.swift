import CQuant
import VecStoreKernels

/// Where list scans put scored rows: a selection with an entry threshold (`TopK`, `CandidateReservoir`).
/// Larger scores are closer; a scan offers a row only when its score is at least `threshold`.
protocol ScoredRowSink {
    /// The score a row must reach to be offered.
    var threshold: Float { get }
    /// Offers a row whose score reached `threshold`.
    mutating func insert(_ score: Float, _ id: UInt32)
    /// What a scan's loop offers its rows to: the sink itself, or a view of it with cheaper inserts.
    associatedtype Rows: ScoredRowSink
    /// Runs `body` with the sink a scan's loop offers its rows to (the same inserts, the same result).
    mutating func withRows<R>(_ body: (inout Rows) -> R) -> R
}

/// A selection's loop offers its rows through one `TopK.Inserter` (one uniqueness check a loop, not an insert).
extension TopK: ScoredRowSink {
    @inline(__always)
    mutating func withRows<R>(_ body: (inout TopK.Inserter) -> R) -> R { withInserter(body) }
}

extension TopK.Inserter: ScoredRowSink {
    @inline(__always)
    mutating func withRows<R>(_ body: (inout TopK.Inserter) -> R) -> R { body(&self) }
}

/// The best `k` of a stream of scored rows — larger score first, ties to the lower id, the same selection as
/// `TopK` — for the hundreds of ADC candidates an IVF-PQ search re-ranks (`refine × k`). Rows that reach the
/// threshold are appended to a buffer of `capacityFactor · k`; when it fills, one quickselect keeps the `k`
/// best and raises the threshold to the worst of them. Offering a row costs an append instead of a heap sift-down (which
/// dominated fast-scan searches with k = 100 candidates). Each row is held as one 64-bit key, the score's
/// bits mapped to an unsigned integer of the same order above the id's complement, so "better" is one
/// integer comparison (score, then lower id) and the quickselect does not branch on ties. Row ids must be
/// distinct. Reusable: `removeAll` keeps the storage.
public struct CandidateReservoir: Sendable {
    /// How many rows are kept.
    public let k: Int
    /// The buffer holds this many times `k` rows before a quickselect trims it back to `k`. 4 rather than 2:
    /// a search of a few hundred rows (one or two probed lists) then needs one quickselect, at the end,
    /// instead of two, and longer scans select a third as often (the quickselects were ~12% of a
    /// docs60k fast-scan query at nprobe 1).
    public static let capacityFactor = 4
    @usableFromInline var keys: [UInt64]
    /// The score a row must reach to be offered (−∞ until the buffer first fills).
    public private(set) var threshold: Float = -.infinity

    /// An empty reservoir keeping `k` (≥ 1) rows.
    public init(k: Int) {
        self.k = max(1, k)
        keys = []
        keys.reserveCapacity(Self.capacityFactor * self.k)
    }

    /// Empties the reservoir, keeping its storage.
    public mutating func removeAll() {
        keys.removeAll(keepingCapacity: true)
        threshold = -.infinity
    }

    /// The key of a row: larger keys are better (higher score; on equal scores, lower id). −0 counts as +0.
    @inlinable @inline(__always)
    public static func key(_ score: Float, _ id: UInt32) -> UInt64 {
        let bits = (score + 0).bitPattern
        let ordered = bits & 0x8000_0000 != 0 ? ~bits : bits | 0x8000_0000
        return UInt64(ordered) << 32 | UInt64(~id)
    }

    /// The score and id a key was made from (`key`'s inverse).
    @inlinable @inline(__always)
    public static func decode(_ key: UInt64) -> (score: Float, id: UInt32) {
        let ordered = UInt32(truncatingIfNeeded: key >> 32)
        let bits = ordered & 0x8000_0000 != 0 ? ordered & 0x7fff_ffff : ~ordered
        return (Float(bitPattern: bits), ~UInt32(truncatingIfNeeded: key))
    }

    /// Offers a row (the caller has checked `score >= threshold`).
    @inlinable @inline(__always)
    public mutating func insert(_ score: Float, _ id: UInt32) {
        keys.append(Self.key(score, id))
        if keys.count >= Self.capacityFactor * k { shrink() }
    }

    /// Keeps the `k` best rows and raises the threshold to the worst kept score.
    @usableFromInline mutating func shrink() {
        let k = self.k
        guard keys.count > k else { return }
        var worst = UInt64.max
        keys.withUnsafeMutableBufferPointer { b in
            guard let p = b.baseAddress else { return }
            Self.select(p, count: b.count, k: k)
            for j in 0..<k { worst = min(worst, p[j]) }
        }
        keys.removeSubrange(k...)
        threshold = Self.decode(worst).score
    }

    /// The `k` best rows offered (fewer when fewer were offered), in no particular order.
    public mutating func finish() -> Kept {
        shrink()
        return Kept(keys: keys[...])
    }

    /// The rows `finish` kept: `(score, id)` pairs decoded from the reservoir's keys (no copy).
    public struct Kept: RandomAccessCollection {
        let keys: ArraySlice<UInt64>
        /// First position.
        public var startIndex: Int { keys.startIndex }
        /// Past the last position.
        public var endIndex: Int { keys.endIndex }
        /// The row at `i`.
        public subscript(i: Int) -> (score: Float, id: UInt32) { CandidateReservoir.decode(keys[i]) }
    }

    /// Rearranges `p[0..<n]` so that its first `k` (≤ n) elements are the `k` largest (keys are distinct
    /// because ids are): `vq_u64_select_largest`, a quickselect whose partition does not branch on the
    /// comparisons (the keys' order is random, so a branching partition mispredicts about every other key;
    /// the Swift Hoare quickselect this replaces was ~11% of a docs60k fast-scan query at nprobe 64).
    @inline(__always)
    public static func select(_ p: UnsafeMutablePointer<UInt64>, count n: Int, k: Int) {
        guard k > 0, k < n else { return }
        vq_u64_select_largest(p, n, k)
    }
}

extension CandidateReservoir: ScoredRowSink {
    @inline(__always)
    mutating func withRows<R>(_ body: (inout CandidateReservoir) -> R) -> R { body(&self) }
}

extension UnsafeMutablePointer {
    @inline(__always)
    func swapAt(_ i: Int, _ j: Int) {
        let t = self[i]
        self[i] = self[j]
        self[j] = t
    }
}
