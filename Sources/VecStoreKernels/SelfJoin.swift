import Dispatch
import Foundation

/// All pairs of stored vectors whose similarity passes a threshold, by a blocked exact self-join:
/// every pair of vector blocks (i ≤ j) is scored with one matrix product per 256-row tile (the same
/// `sgemm` / `vs_dot_tile` kernels as batch search), and only pairs over the threshold are kept.
public enum SelfJoin {
    /// One pair of rows `a < b` with its score.
    public struct Pair: Sendable, Equatable {
        /// The lower row.
        public var a: UInt32
        /// The higher row.
        public var b: UInt32
        /// Cosine similarity / inner product, or squared Euclidean distance under l2.
        public var score: Float

        /// Creates a pair (`a` < `b`).
        public init(a: UInt32, b: UInt32, score: Float) {
            self.a = a
            self.b = b
            self.score = score
        }
    }

    /// Pairs of rows in `mask` with score ≥ `threshold` (cosine, dot) or squared distance ≤ `threshold`
    /// (l2), sorted best first then by rows. Work is split over `threads` workers by block.
    public static func pairs(blocks: [VectorBlock], dimension: Int, metric: Metric, mask: CandidateMask,
                             threshold: Float, threads: Int) -> [Pair] {
        guard !blocks.isEmpty else { return [] }
        BLAS.useSingleThread()
        let workers = max(1, min(threads, blocks.count))
        let results = LockedBox([[Pair]](repeating: [], count: blocks.count))
        let tile = 256
        let work: @Sendable (Int) -> Void = { w in
            let maxRows = blocks.map(\.count).max() ?? 0
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: tile * maxRows)
            defer { scores.deallocate() }
            // Blocks w, w + workers, … : left blocks get fewer partners as i grows, so striding balances.
            for i in stride(from: w, to: blocks.count, by: workers) {
                var found: [Pair] = []
                let left = blocks[i]
                var t0 = 0
                while t0 < left.count {
                    let tc = min(tile, left.count - t0)
                    let q = left.vectors + t0 * dimension
                    for j in i..<blocks.count {
                        let right = blocks[j]
                        let n = right.count
                        MatrixProduct.dotTile(q, aRows: tc, right.vectors, bRows: n, dimension: dimension,
                                              into: scores, ldo: n, kernel: MatrixProduct.computeKernel)
                        for t in 0..<tc {
                            let rowA = left.firstID + UInt32(t0 + t)
                            guard mask.contains(rowA) else { continue }
                            let line = scores + t * n
                            let start = j == i ? t0 + t + 1 : 0
                            if start >= n { continue }
                            for r in start..<n {
                                let dot = line[r]
                                let s: Float
                                if metric == .l2 {
                                    s = left.squaredNorms[t0 + t] + right.squaredNorms[r] - 2 * dot
                                    if s > threshold { continue }
                                } else {
                                    s = dot
                                    if s < threshold { continue }
                                }
                                let rowB = right.firstID + UInt32(r)
                                if mask.contains(rowB) { found.append(Pair(a: rowA, b: rowB, score: s)) }
                            }
                        }
                    }
                    t0 += tc
                }
                let result = found
                results.withLock { $0[i] = result }
            }
        }
        if workers == 1 { work(0) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: work) }
        var all = results.withLock { $0.flatMap { $0 } }
        all.sort { x, y in
            if x.score != y.score { return metric == .l2 ? x.score < y.score : x.score > y.score }
            return x.a != y.a ? x.a < y.a : x.b < y.b
        }
        return all
    }
}

/// A value guarded by a lock (NSLock: `Synchronization.Mutex` needs macOS 15).
final class LockedBox<Value>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}
