/// Keeps the `k` best (largest-score) candidates seen so far in a binary min-heap, so the worst kept
/// candidate is at the root and a new candidate costs one comparison unless it enters the heap.
/// Ties at equal score keep the lower id. A NaN score never enters (it is not comparable, and at the
/// root it would refuse every later candidate).
public struct TopK: Sendable {
    /// How many candidates are kept.
    public let k: Int
    @usableFromInline var scores: [Float]
    @usableFromInline var ids: [UInt32]

    /// Creates an empty selection of capacity `k`.
    public init(k: Int) {
        self.k = max(0, k)
        scores = []
        ids = []
        scores.reserveCapacity(self.k)
        ids.reserveCapacity(self.k)
    }

    /// The score a candidate must beat to enter (−∞ while fewer than `k` are held; +∞ when `k` is 0).
    @inlinable
    public var threshold: Float { scores.count < k ? -.infinity : scores.first ?? .infinity }

    /// Number of candidates held.
    public var count: Int { scores.count }

    /// Empties the selection, keeping its storage (a worker reuses one selection for every query).
    public mutating func removeAll() {
        scores.removeAll(keepingCapacity: true)
        ids.removeAll(keepingCapacity: true)
    }

    @inlinable @inline(__always)
    static func worse(_ s1: Float, _ i1: UInt32, _ s2: Float, _ i2: UInt32) -> Bool {
        s1 < s2 || (s1 == s2 && i1 > i2)
    }

    /// Offers a candidate.
    @inlinable
    public mutating func insert(_ score: Float, _ id: UInt32) {
        if scores.count < k {
            // Until k are held the threshold is −∞ and no order is needed: append, and build the heap once
            // when the k-th candidate arrives (O(k) instead of k sift-ups). NaN is refused here only: once
            // the heap is full, `worse(root, NaN)` is false, so the replacement path refuses it for free.
            if score.isNaN { return }
            scores.append(score)
            ids.append(id)
            if scores.count == k { heapify() }
            return
        }
        guard k > 0, Self.worse(scores[0], ids[0], score, id) else { return }
        let n = scores.count
        scores.withUnsafeMutableBufferPointer { sb in
            ids.withUnsafeMutableBufferPointer { ib in
                guard let s = sb.baseAddress, let i = ib.baseAddress else { return }
                Self.siftDown(s, i, count: n, score, id)
            }
        }
    }

    /// Orders the held candidates as a heap whose root is the worst (bottom-up construction).
    @inlinable
    mutating func heapify() {
        let n = scores.count
        guard n > 1 else { return }
        scores.withUnsafeMutableBufferPointer { sb in
            ids.withUnsafeMutableBufferPointer { ib in
                guard let s = sb.baseAddress, let i = ib.baseAddress else { return }
                var start = n / 2 - 1
                while start >= 0 {
                    Self.siftDown(s, i, count: n, from: start, s[start], i[start])
                    start -= 1
                }
            }
        }
    }

    /// Puts `(score, id)` at slot `start` (the root unless given) and moves it down to its place within
    /// `[start, n)`: replacing the worst entry, and each step of `heapify`.
    @inlinable @inline(__always)
    static func siftDown(_ s: UnsafeMutablePointer<Float>, _ i: UnsafeMutablePointer<UInt32>, count n: Int,
                         from start: Int = 0, _ score: Float, _ id: UInt32) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            if left >= n { break }
            var worst = left
            let right = left + 1
            if right < n && worse(s[right], i[right], s[left], i[left]) { worst = right }
            guard worse(s[worst], i[worst], score, id) else { break }
            s[parent] = s[worst]
            i[parent] = i[worst]
            parent = worst
        }
        s[parent] = score
        i[parent] = id
    }

    /// Calls `body` with every held candidate `(score, id)`, in heap order (unsorted; use `sorted()` for
    /// best first). For consumers that re-score the candidates and need no order.
    @inlinable
    public func forEachUnordered(_ body: (Float, UInt32) -> Void) {
        for j in 0..<scores.count { body(scores[j], ids[j]) }
    }

    /// Merges another selection into this one.
    public mutating func merge(_ other: TopK) {
        for i in 0..<other.scores.count { insert(other.scores[i], other.ids[i]) }
    }

    /// The held candidates, best first (ties: lower id first).
    public func sorted() -> [(id: UInt32, score: Float)] {
        var pairs = (0..<scores.count).map { (id: ids[$0], score: scores[$0]) }
        guard pairs.count > Self.insertionSortLimit else {
            // A search's few results: an insertion sort in place (the library's sort, with its closure and
            // buffers, was ~2% of a siftsmall IVF-Flat query at k = 10). The same order: neither order
            // is partial.
            pairs.withUnsafeMutableBufferPointer { p in
                for j in p.indices.dropFirst() {
                    let item = p[j]
                    var at = j
                    while at > 0 && (item.score > p[at - 1].score || (item.score == p[at - 1].score && item.id < p[at - 1].id)) {
                        p[at] = p[at - 1]
                        at -= 1
                    }
                    p[at] = item
                }
            }
            return pairs
        }
        pairs.sort { $0.score > $1.score || ($0.score == $1.score && $0.id < $1.id) }
        return pairs
    }

    /// Calls `body` with the held candidates best first (ties: lower id first), the order of `sorted()`. A
    /// search's few results (at most `insertionSortLimit`) are ordered in a stack buffer, so resolving a
    /// query's hits allocates no array for them.
    public func withSorted<R>(_ body: (UnsafeBufferPointer<(id: UInt32, score: Float)>) throws -> R) rethrows -> R {
        let n = scores.count
        guard n <= Self.insertionSortLimit else { return try sorted().withUnsafeBufferPointer(body) }
        return try withUnsafeTemporaryAllocation(of: (id: UInt32, score: Float).self, capacity: max(n, 1)) { buffer in
            guard let p = buffer.baseAddress else { return try body(UnsafeBufferPointer(start: nil, count: 0)) }
            for j in 0..<n {
                let item = (id: ids[j], score: scores[j])
                var at = j
                while at > 0 && (item.score > p[at - 1].score || (item.score == p[at - 1].score && item.id < p[at - 1].id)) {
                    p[at] = p[at - 1]
                    at -= 1
                }
                p[at] = item
            }
            return try body(UnsafeBufferPointer(start: p, count: n))
        }
    }

    /// `sorted()` orders at most this many candidates by insertion.
    static let insertionSortLimit = 32
}
