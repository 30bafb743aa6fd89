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

/// How `nearDuplicates` finds candidate pairs.
public enum DuplicateSearch: Sendable, Equatable {
    /// Through the collection's index when it has one (each document's `neighbours` nearest), else exact.
    case automatic
    /// All pairs, exactly (blocked self-join).
    case exact
}

extension VectorCollection {
    /// Every pair of live documents whose vectors have similarity ≥ `threshold` (cosine, dot) or squared
    /// distance ≤ `threshold` (l2), best first, optionally restricted by `filter`.
    ///
    /// With an index (and `.automatic`), each document's `neighbours` nearest documents are found
    /// through it (HNSW: ef = max(64, 2·neighbours)) and the pairs at the threshold kept: O(n·ef·d)
    /// work, approximate — a document with more than `neighbours` near-duplicates can miss some. `.exact`
    /// (and flat collections) use a blocked self-join over all pairs with the batch kernels (`SelfJoin`),
    /// O(n²·d), split over `threads`. Scores are always computed exactly.
    public func nearDuplicates(threshold: Float, filter: Filter? = nil, method: DuplicateSearch = .automatic,
                               neighbours: Int = 64,
                               threads: Int = ProcessInfo.processInfo.activeProcessorCount) throws(VecStoreError)
        -> [DuplicatePair]
    {
        guard threshold.isFinite else { throw .invalidArgument("threshold must be a finite number") }
        guard neighbours >= 1 else { throw .invalidArgument("neighbours must be at least 1") }
        return try store.read { txn in
            // The snapshot's views and filter bitmap, shared with `search` (SearchPlanner.swift).
            let snap = try snapshot(txn)
            let view = snap.view
            let words = try filter.map { f in try snap.filterBitmap(f) { try candidateRows(txn, view, f) }.0 }
                ?? view.liveWords
            guard !words.isEmpty else { return [] }
            let pairs: [SelfJoin.Pair] = CandidateMask.with(words) { mask in
                if let index = duplicateIndex(snap, method) {
                    return indexPairs(snap, index, mask: mask, threshold: threshold, neighbours: neighbours,
                                      threads: threads)
                }
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

    /// Candidate pairs from each allowed row's nearest rows by the collection's index, kept when they
    /// pass `threshold`.
    private func indexPairs(_ snap: CollectionSnapshot, _ index: any VectorIndexView, mask: CandidateMask,
                            threshold: Float, neighbours: Int, threads: Int) -> [SelfJoin.Pair] {
        let view = snap.view
        var found: [UInt64: Float] = [:]
        for block in view.blocks {
            let tops = index.search(queries: block.vectors, count: block.count, k: neighbours + 1, mask: mask,
                                    options: SearchOptions(ef: max(64, 2 * (neighbours + 1))), threads: threads)
            for (i, top) in tops.enumerated() {
                let row = block.firstID + UInt32(i)
                guard mask.contains(row) else { continue }
                let v = block.vectors + i * dimension
                for hit in top.sorted() where hit.id != row {
                    let (a, b) = row < hit.id ? (row, hit.id) : (hit.id, row)
                    let key = UInt64(a) << 32 | UInt64(b)
                    if found[key] != nil { continue }
                    let w = view.vector(hit.id)
                    let score = metric == .l2 ? squaredL2(v, w, dimension) : dotProduct(v, w, dimension)
                    let passes = metric == .l2 ? score <= threshold : score >= threshold
                    if passes { found[key] = score }
                }
            }
        }
        var pairs = found.map { SelfJoin.Pair(a: UInt32($0.key >> 32), b: UInt32($0.key & 0xFFFF_FFFF), score: $0.value) }
        let closer: (Float, Float) -> Bool = metric == .l2 ? { $0 < $1 } : { $0 > $1 }
        pairs.sort { closer($0.score, $1.score) || ($0.score == $1.score && ($0.a, $0.b) < ($1.a, $1.b)) }
        return pairs
    }
}
