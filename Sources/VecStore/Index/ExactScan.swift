import Foundation
import LMDB
import VecStoreKernels

/// Flat search behind the seam: exact scores of every allowed row, from the vector blocks in place. A
/// flat collection (no index record) is searched only this way; an indexed one uses it for
/// `SearchOptions.exact`, small collections and selective filters (`SearchPlan`).
final class ExactScanView: VectorIndexView, @unchecked Sendable {
    /// The rows as the snapshot sees them (blocks and live bitmap).
    let rows: CollectionView
    /// binary16 copies of every row when the collection's index keeps them (HNSW's traversal copies):
    /// single queries then take the certified two-pass scan (`ExactSearch.scan`), reading half the bytes
    /// with the same results. Nil for flat collections, int8 copies, and `VECSTORE_EXACT_SCAN=float32`.
    let halves: HalfCopies?

    init(rows: CollectionView, index: (any VectorIndexView)? = nil) {
        self.rows = rows
        halves = ExactScanKernel.current == .certified ? index?.halfCopies : nil
    }

    /// The best `k` allowed rows per query; a nil mask means every live row. One query splits the
    /// blocks over `threads`; a batch is scored block by block with the batch kernels.
    func search(queries: UnsafePointer<Float>, count: Int, k: Int, mask: CandidateMask?, options: SearchOptions,
                threads: Int) -> [TopK] {
        guard let mask else {
            return CandidateMask.with(rows.liveWords) { live in
                scan(queries: queries, count: count, k: k, mask: live, threads: threads)
            }
        }
        return scan(queries: queries, count: count, k: k, mask: mask, threads: threads)
    }

    private func scan(queries: UnsafePointer<Float>, count: Int, k: Int, mask: CandidateMask, threads: Int) -> [TopK] {
        let record = rows.record
        if count == 1 {
            return [ExactSearch.search(query: queries, dimension: record.dimension, metric: record.metric,
                                       blocks: rows.blocks, mask: mask, k: k, threads: threads, halves: halves)]
        }
        return ExactSearch.searchBatch(queries: queries, queryCount: count, dimension: record.dimension,
                                       metric: record.metric, blocks: rows.blocks, mask: mask, k: k, threads: threads,
                                       halves: halves)
    }

    /// Scores come from the scan kernels (batched ones may differ in the last bits): `resolve`
    /// computes the reported value again.
    var scoresAreExact: Bool { false }

    /// Exact search is already exact.
    func prefersExact(matches: Int, live: Int, k: Int, options: SearchOptions) -> Bool { true }

    /// Near-duplicate search over a flat collection is the blocked self-join, not per-row queries.
    var answersNeighbourQueries: Bool { false }
}

/// Which kernel answers exact scans of collections whose index keeps binary16 copies of the rows.
enum ExactScanKernel {
    /// Bounds from the binary16 copies, float32 only for the rows that can still enter the top k.
    case certified
    /// Every row from its float32 vector.
    case float32

    /// Chosen once per process: certified, unless `VECSTORE_EXACT_SCAN=float32` (for measurement).
    static let current: ExactScanKernel = {
        if let v = getenv("VECSTORE_EXACT_SCAN"), String(cString: v) == "float32" { return .float32 }
        return .certified
    }()
}
