import Foundation
import LMDB

/// Two stored documents whose vectors are near-duplicates.
public struct DuplicatePair: Sendable, Equatable {
    /// External id of the document stored first (lower row).
    public var a: String
    /// External id of the other document.
    public var b: String
    /// Cosine similarity / inner product, or squared Euclidean distance under l2.
    public var score: Float
}

extension VectorCollection {
    /// Every pair of live documents whose vectors have similarity ≥ `threshold` (cosine, dot) or squared
    /// distance ≤ `threshold` (l2), best first, optionally restricted by `filter`. Exact: a blocked
    /// self-join over all pairs with the batch-search kernels (`SelfJoin`), O(n²·d) work split over
    /// `threads`. (An HNSW-based candidate search can replace the join for very large collections.)
    public func nearDuplicates(threshold: Float, filter: Filter? = nil,
                               threads: Int = ProcessInfo.processInfo.activeProcessorCount) throws(VecStoreError)
        -> [DuplicatePair]
    {
        guard threshold.isFinite else { throw .invalidArgument("threshold must be a finite number") }
        return try store.read { txn in
            let record = try currentRecord(txn)
            let view = try CollectionView(txn, store.dbs, record, name: name)
            let words: [UInt64]
            if let filter {
                words = try FilterEvaluator(txn: txn, dbs: store.dbs, view: view, collection: self).evaluate(filter)
            } else {
                words = view.liveWords
            }
            guard !words.isEmpty else { return [] }
            let pairs: [SelfJoin.Pair] = words.withUnsafeBufferPointer { w in
                guard let base = w.baseAddress else { return [] }
                let mask = CandidateMask(words: base, wordCount: w.count)
                return SelfJoin.pairs(blocks: view.blocks, dimension: dimension, metric: metric, mask: mask,
                                      threshold: threshold, threads: threads)
            }
            var ids: [UInt32: String] = [:]
            func id(_ row: UInt32) throws -> String {
                if let s = ids[row] { return s }
                let s = try externalID(txn, row: row)
                ids[row] = s
                return s
            }
            return try pairs.map { DuplicatePair(a: try id($0.a), b: try id($0.b), score: $0.score) }
        }
    }
}
