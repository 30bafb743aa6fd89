/// Keeps the `k` best (largest-score) candidates seen so far in a binary min-heap, so the worst kept
/// candidate is at the root and a new candidate costs one comparison unless it enters the heap.
/// Ties at equal score keep the lower id.
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

    /// The score a candidate must beat to enter (−∞ while fewer than `k` are held).
    @inlinable
    public var threshold: Float { scores.count < k ? -.infinity : scores[0] }

    /// Number of candidates held.
    public var count: Int { scores.count }

    @inlinable @inline(__always)
    static func worse(_ s1: Float, _ i1: UInt32, _ s2: Float, _ i2: UInt32) -> Bool {
        s1 < s2 || (s1 == s2 && i1 > i2)
    }

    /// Offers a candidate.
    @inlinable
    public mutating func insert(_ score: Float, _ id: UInt32) {
        if scores.count < k {
            scores.append(score)
            ids.append(id)
            var child = scores.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                if Self.worse(scores[child], ids[child], scores[parent], ids[parent]) {
                    scores.swapAt(child, parent)
                    ids.swapAt(child, parent)
                    child = parent
                } else { break }
            }
            return
        }
        guard k > 0, Self.worse(scores[0], ids[0], score, id) else { return }
        scores[0] = score
        ids[0] = id
        var parent = 0
        let n = scores.count
        while true {
            let left = 2 * parent + 1
            if left >= n { break }
            var worst = left
            let right = left + 1
            if right < n && Self.worse(scores[right], ids[right], scores[left], ids[left]) { worst = right }
            if Self.worse(scores[worst], ids[worst], scores[parent], ids[parent]) {
                scores.swapAt(worst, parent)
                ids.swapAt(worst, parent)
                parent = worst
            } else { break }
        }
    }

    /// Merges another selection into this one.
    public mutating func merge(_ other: TopK) {
        for i in 0..<other.scores.count { insert(other.scores[i], other.ids[i]) }
    }

    /// The held candidates, best first (ties: lower id first).
    public func sorted() -> [(id: UInt32, score: Float)] {
        var pairs = (0..<scores.count).map { (id: ids[$0], score: scores[$0]) }
        pairs.sort { $0.score > $1.score || ($0.score == $1.score && $0.id < $1.id) }
        return pairs
    }
}
