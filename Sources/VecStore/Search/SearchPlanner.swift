import LMDB
import VecStoreKernels

/// How a vector search is answered: the one place that chooses between exact search, the collection's
/// index, and exact search over a filter's matches (the rules of Spec/HNSW.md §5.1–5.2, written down
/// once for `search`, `searchBatch`, `search(similarTo:)`, `hybridSearch` and `nearDuplicates`).
struct SearchPlan {
    enum Path: Equatable {
        /// Exact scan of the candidate rows (flat collection, small collection, `exact` requested).
        case exact
        /// Exact scan of a selective filter's matches.
        case exactOverMatches
        /// Through the collection's vector index, under the candidate mask.
        case index
    }
    /// Collections with at most this many live rows are searched exactly (unless the filter strategy
    /// is `.graph`): a scan of 1,024 rows costs about as much as a graph search, and is exact.
    static let exactBelowRows = 1024
    var path: Path
    /// The rows a result may come from (live ∧ filter), or nil for "every row" (no filter, no deletes:
    /// the index path then skips the mask test).
    var mask: [UInt64]?
    /// The number of rows `mask` allows (the live rows when it is nil).
    var matches: Int
    /// The search's options, read by the index view (`ef` for HNSW).
    var options: SearchOptions
    /// The search's filter (`.exactOverMatches` scans its gathered matches, see `execute`).
    var filter: Filter? = nil
}

/// How a search would be answered now: the planner's choice (Spec/HNSW.md §5.1–5.2) and how many rows
/// a result may come from. Returned by `VectorCollection.explainSearch(k:filter:options:)`.
public struct SearchExplanation: Sendable, Equatable {
    /// The ways a vector search is answered.
    public enum Path: String, Sendable {
        /// Exact scan of every live row (flat collection, small collection, or `exact` requested).
        case exact
        /// Exact scan of the rows matching a selective filter.
        case exactOverMatches = "exact-over-matches"
        /// Through the collection's vector index (HNSW graph or IVF lists), under the filter.
        case index
    }
    /// The path a search takes.
    public var path: Path
    /// Live rows a result may come from (those matching the filter, if any).
    public var candidates: Int
}

extension VectorCollection {
    /// Which path `search(_:k:filter:options:)` would take now for `k` results under `filter` and
    /// `options`, and how many rows match: the planner's decision, without searching.
    public func explainSearch(k: Int, filter: Filter? = nil, options: SearchOptions = SearchOptions())
        throws(VecStoreError) -> SearchExplanation
    {
        try store.read { txn in
            let snap = try snapshot(txn)
            let plan = try plan(txn, snap, filter: filter, k: k, options: options)
            let path: SearchExplanation.Path = switch plan.path {
            case .exact: .exact
            case .exactOverMatches: .exactOverMatches
            case .index: .index
            }
            return SearchExplanation(path: path, candidates: plan.matches)
        }
    }
}

extension VectorCollection {
    /// Chooses how to answer a search in snapshot `snap`. The filter's bitmap comes from the snapshot's
    /// cache (built once per snapshot), so repeated filtered queries pay only for their scans.
    func plan(_ txn: Transaction, _ snap: CollectionSnapshot, filter: Filter?, k: Int, options: SearchOptions) throws
        -> SearchPlan
    {
        let live = Int(snap.record.liveCount)
        var words: [UInt64]? = nil
        var matches = live
        if let filter {
            let (w, m) = try snap.filterBitmap(filter) { try candidateRows(txn, snap.view, filter) }
            words = w
            matches = m
        } else if snap.hasDeletions {
            words = snap.view.liveWords
        }
        guard let index = snap.index, !options.exact else {
            return SearchPlan(path: .exact, mask: words ?? snap.view.liveWords, matches: matches,
                              options: options)
        }
        // Small collections are searched exactly: as fast, and exact (Qdrant's full_scan_threshold idea).
        if options.filterStrategy != .graph && live <= SearchPlan.exactBelowRows {
            return SearchPlan(path: .exact, mask: words ?? snap.view.liveWords, matches: matches,
                              options: options)
        }
        if let filter {
            func overMatches() -> SearchPlan {
                SearchPlan(path: .exactOverMatches, mask: words, matches: matches, options: options, filter: filter)
            }
            switch options.filterStrategy {
            case .exact: return overMatches()
            case .graph: break
            case .automatic:
                if index.prefersExact(matches: matches, live: live, k: k, options: options) { return overMatches() }
            }
        }
        var indexOptions = options
        indexOptions.pinnedFields = filter?.pinnedFields ?? []
        return SearchPlan(path: .index, mask: words, matches: matches, options: indexOptions)
    }

    /// The planner's choice for `nearDuplicates`: the snapshot's index when the method allows it and the
    /// index answers neighbour queries (each row's nearest rows through it), or nil for the exact
    /// blocked self-join.
    func duplicateIndex(_ snap: CollectionSnapshot, _ method: DuplicateSearch) -> (any VectorIndexView)? {
        guard method == .automatic, let index = snap.index, index.answersNeighbourQueries else { return nil }
        return index
    }

    /// Runs a plan for `count` queries (stored form, `dimension` floats each) and returns each query's
    /// top rows.
    func execute(_ plan: SearchPlan, _ snap: CollectionSnapshot, queries: UnsafePointer<Float>, count: Int, k: Int,
                 threads: Int) -> [TopK] {
        // Exact search over a filter's matches scans their gathered copies (Spec/HNSW.md §5.2: listed in
        // place for a first single query, copied from the next search on; built by searches, not by
        // planning alone): same results as the scan in place.
        if plan.path == .exactOverMatches, let filter = plan.filter,
           let gathered = snap.gatheredMatches(filter, queries: count, file: {
               store.env.mappedFile().map { GatheredCopies.MappedFile(fd: $0.fd, base: $0.base, length: $0.length) }
           }) {
            return ExactSearch.searchGathered(queries: queries, queryCount: count, dimension: dimension,
                                              metric: snap.record.metric, gathered: gathered, k: k, threads: threads)
        }
        let view: any VectorIndexView = plan.path == .index ? (snap.index ?? snap.exact) : snap.exact
        return withMask(plan.mask) { mask -> [TopK] in
            var counted = mask
            counted?.matches = plan.matches
            return view.search(queries: queries, count: count, k: k, mask: counted, options: plan.options,
                               threads: threads)
        }
    }

    /// The snapshot's views of this collection (cached per LMDB snapshot): vector blocks, live rows, the
    /// index's read view, and recent filters' bitmaps.
    func snapshot(_ txn: Transaction) throws -> CollectionSnapshot {
        try store.snapshots.snapshot(txn, store.dbs, name: name, collectionID: collectionID)
    }

    /// Searches in one read transaction: plan, execute, resolve ids (and texts with
    /// `options.includeText`). `exclude` drops one row from the results (search by a stored document).
    func searchRows(_ flat: [Float], count: Int, k: Int, filter: Filter?, options: SearchOptions,
                    exclude: UInt32? = nil) throws(VecStoreError) -> [[SearchResult]] {
        try store.read { txn in try searchRows(txn, flat, count: count, k: k, filter: filter, options: options,
                                               exclude: exclude) }
    }

    func searchRows(_ txn: Transaction, _ flat: [Float], count: Int, k: Int, filter: Filter?, options: SearchOptions,
                    exclude: UInt32? = nil) throws -> [[SearchResult]] {
        let snap = try snapshot(txn)
        let want = exclude == nil ? k : k + 1
        let plan = try plan(txn, snap, filter: filter, k: want, options: options)
        return try flat.withUnsafeBufferPointer { q -> [[SearchResult]] in
            guard let base = q.baseAddress else { return [] }
            let tops = execute(plan, snap, queries: base, count: count, k: want, threads: options.threads)
            // Tops of an index whose scores are exact float32 (HNSW re-ranks with them) are not computed again.
            let exactScores = plan.path == .index && (snap.index?.scoresAreExact ?? false)
            // The snapshot's own table when it is a cache entry (valid for this transaction: same snapshot and map
            // generation), even if a newer snapshot replaced it in the cache since.
            let table = snap.recordTable
            return try tops.enumerated().map { (qi, top) in
                var results = try resolve(txn, snap.view, top, query: base + qi * dimension, table: table,
                                          includeText: options.includeText, exactScores: exactScores)
                if let exclude { results.removeAll { $0.internalID == exclude } }
                if results.count > k { results.removeLast(results.count - k) }
                return results
            }
        }
    }
}
