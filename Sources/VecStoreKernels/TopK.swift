/// Keeps the `k` best (largest-score) candidates seen so far in a binary min-heap, so the worst kept
/// candidate is at the root and a new candidate costs one comparison unless it enters the heap.
/// Ties at equal score keep the lower id. A NaN score never enters (it is not comparable, and at the
/// root it would refuse every later candidate).
///
/// Each candidate is held as one 64-bit entry (the score's bits above the id) in `k` slots allocated once,
/// so a selection is one array (one allocation), and the threshold is kept beside it rather than read from
/// the root on every test. A scan's loop offers its rows through `withInserter`: one uniqueness check for
/// the whole loop instead of one an insert.
public struct TopK: Sendable {
    /// How many candidates are kept.
    public let k: Int
    /// `k` slots; the first `held` are the candidates, `score.bitPattern << 32 | id`: filled in arrival
    /// order until `k` are held, then a heap whose root (slot 0) is the worst.
    @usableFromInline var entries: [UInt64]
    /// Candidates held.
    @usableFromInline var held: Int
    /// `threshold`, kept up to date by every change.
    @usableFromInline var bar: Float

    /// Creates an empty selection of capacity `k`.
    public init(k: Int) {
        self.k = max(0, k)
        entries = .filled(0, count: self.k)
        held = 0
        bar = self.k == 0 ? .infinity : -.infinity
    }

    /// The score a candidate must beat to enter (−∞ while fewer than `k` are held; +∞ when `k` is 0).
    @inlinable
    public var threshold: Float { bar }

    /// Number of candidates held.
    public var count: Int { held }

    /// Empties the selection, keeping its storage (a worker reuses one selection for every query).
    public mutating func removeAll() {
        held = 0
        bar = k == 0 ? .infinity : -.infinity
    }

    @inlinable @inline(__always)
    static func pack(_ score: Float, _ id: UInt32) -> UInt64 { UInt64(score.bitPattern) << 32 | UInt64(id) }

    @inlinable @inline(__always)
    static func score(_ e: UInt64) -> Float { Float(bitPattern: UInt32(truncatingIfNeeded: e >> 32)) }

    @inlinable @inline(__always)
    static func id(_ e: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: e) }

    @inlinable @inline(__always)
    static func worse(_ s1: Float, _ i1: UInt32, _ s2: Float, _ i2: UInt32) -> Bool {
        s1 < s2 || (s1 == s2 && i1 > i2)
    }

    @inlinable @inline(__always)
    static func worse(_ a: UInt64, _ b: UInt64) -> Bool { worse(score(a), id(a), score(b), id(b)) }

    /// Offers a candidate.
    @inlinable
    public mutating func insert(_ score: Float, _ id: UInt32) {
        // Full (or k = 0, threshold +∞) and not reaching the root: nothing to change (NaN fails too).
        if held == k && !(score >= bar) { return }
        withInserter { $0.insert(score, id) }
    }

    /// Runs `body` with an `Inserter` on this selection's slots: its inserts are `insert`'s, without a
    /// uniqueness check or array access each (a scan offers its rows in one call). The inserter must not be
    /// used after `body` returns.
    @inlinable
    public mutating func withInserter<R>(_ body: (inout Inserter) throws -> R) rethrows -> R {
        let k = self.k
        var held = self.held, bar = self.bar
        let result = try entries.withUnsafeMutableBufferPointer { b in
            var inserter = Inserter(slots: b.baseAddress, k: k, held: held, bar: bar)
            defer {
                held = inserter.held
                bar = inserter.bar
            }
            return try body(&inserter)
        }
        self.held = held
        self.bar = bar
        return result
    }

    /// A selection's slots while `withInserter` runs: the same inserts as `TopK.insert`, on a raw pointer.
    public struct Inserter {
        @usableFromInline let slots: UnsafeMutablePointer<UInt64>?
        @usableFromInline let k: Int
        @usableFromInline var held: Int
        @usableFromInline var bar: Float

        @inlinable
        init(slots: UnsafeMutablePointer<UInt64>?, k: Int, held: Int, bar: Float) {
            self.slots = slots
            self.k = k
            self.held = held
            self.bar = bar
        }

        /// The score a candidate must beat to enter (as `TopK.threshold`).
        @inlinable
        public var threshold: Float { bar }

        /// Offers a candidate (as `TopK.insert`).
        @inlinable @inline(__always)
        public mutating func insert(_ score: Float, _ id: UInt32) {
            guard k > 0, let e = slots else { return }
            let n = held
            if n < k {
                // Until k are held the threshold is −∞ and no order is needed: append, and build the heap once
                // when the k-th candidate arrives (O(k) instead of k sift-ups). NaN is refused here only: once
                // the heap is full, `worse(root, NaN)` is false, so the replacement path refuses it for free.
                if score.isNaN { return }
                e[n] = TopK.pack(score, id)
                held = n + 1
                if n + 1 == k { bar = TopK.heapify(e, count: k) }
                return
            }
            guard score >= bar, TopK.worse(bar, TopK.id(e[0]), score, id) else { return }
            TopK.siftDown(e, count: n, TopK.pack(score, id))
            bar = TopK.score(e[0])
        }
    }

    /// Orders `n` (≥ 1) entries as a heap whose root is the worst (bottom-up construction); returns the
    /// root's score.
    @inlinable
    static func heapify(_ e: UnsafeMutablePointer<UInt64>, count n: Int) -> Float {
        var start = n / 2 - 1
        while start >= 0 {
            siftDown(e, count: n, from: start, e[start])
            start -= 1
        }
        return score(e[0])
    }

    /// Puts `item` at slot `start` (the root unless given) and moves it down to its place within
    /// `[start, n)`: replacing the worst entry, and each step of `heapify`.
    @inlinable @inline(__always)
    static func siftDown(_ e: UnsafeMutablePointer<UInt64>, count n: Int, from start: Int = 0, _ item: UInt64) {
        let score = Self.score(item), id = Self.id(item)
        var parent = start
        while true {
            let left = 2 * parent + 1
            if left >= n { break }
            var worst = left
            let right = left + 1
            if right < n && worse(e[right], e[left]) { worst = right }
            let w = e[worst]
            guard worse(Self.score(w), Self.id(w), score, id) else { break }
            e[parent] = w
            parent = worst
        }
        e[parent] = item
    }

    /// Calls `body` with every held candidate `(score, id)`, in heap order (unsorted; use `sorted()` for
    /// best first). For consumers that re-score the candidates and need no order.
    @inlinable
    public func forEachUnordered(_ body: (Float, UInt32) -> Void) {
        for e in entries[0..<held] { body(Self.score(e), Self.id(e)) }
    }

    /// Merges another selection into this one.
    public mutating func merge(_ other: TopK) {
        for e in other.entries[0..<other.held] { insert(Self.score(e), Self.id(e)) }
    }

    /// The held candidates, best first (ties: lower id first).
    public func sorted() -> [(id: UInt32, score: Float)] {
        guard held > Self.insertionSortLimit else {
            // A search's few results: an insertion sort straight into the array (`fewSorted`; the library's
            // sort, with its closure and buffers, was ~2% of a siftsmall IVF-Flat query at k = 10). The same
            // order: neither order is partial.
            return [(id: UInt32, score: Float)](unsafeUninitializedCapacity: max(held, 1)) { buffer, count in
                count = buffer.baseAddress.map { fewSorted(into: $0) } ?? 0
            }
        }
        var pairs = entries[0..<held].map { (id: Self.id($0), score: Self.score($0)) }
        pairs.sort { $0.score > $1.score || ($0.score == $1.score && $0.id < $1.id) }
        return pairs
    }

    /// Calls `body` with the held candidates best first (ties: lower id first), the order of `sorted()`. A
    /// search's few results (at most `insertionSortLimit`) are ordered in a stack buffer, so resolving a
    /// query's hits allocates no array for them.
    public func withSorted<R>(_ body: (UnsafeBufferPointer<(id: UInt32, score: Float)>) throws -> R) rethrows -> R {
        let n = held
        guard n <= Self.insertionSortLimit else { return try sorted().withUnsafeBufferPointer(body) }
        return try withUnsafeTemporaryAllocation(of: (id: UInt32, score: Float).self, capacity: max(n, 1)) { buffer in
            guard let p = buffer.baseAddress else { return try body(UnsafeBufferPointer(start: nil, count: 0)) }
            return try body(UnsafeBufferPointer(start: p, count: fewSorted(into: p)))
        }
    }

    /// Writes the held candidates best first (the order of `sorted()`) to `buffer`, which has room for `count`
    /// of them, and returns `count`. Package-only: the buffer's size is the caller's to check. An insertion
    /// sort, meant for a search's few results (at most `insertionSortLimit`; the caller holds the buffer,
    /// typically on its stack): what `sorted()` and `withSorted` use for them, and `withSorted` without its
    /// generic closure (whose `Result` metadata look-up was ~1,000 instructions of a siftsmall IVF-Flat query).
    package func fewSorted(into p: UnsafeMutablePointer<(id: UInt32, score: Float)>) -> Int {
        let n = held
        entries.withUnsafeBufferPointer { eb in
            for j in 0..<n {
                let item = (id: Self.id(eb[j]), score: Self.score(eb[j]))
                var at = j
                while at > 0 && (item.score > p[at - 1].score || (item.score == p[at - 1].score && item.id < p[at - 1].id)) {
                    p[at] = p[at - 1]
                    at -= 1
                }
                p[at] = item
            }
        }
        return n
    }

    /// `sorted()` orders at most this many candidates by insertion.
    package static let insertionSortLimit = 32
}
