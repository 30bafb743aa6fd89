import Foundation
import LMDB
import VecStoreKernels

extension HNSWConfig {
    /// A new, empty graph's header for collection `collection`.
    static func create(_ p: HNSWParameters, collection: UInt32) -> HNSWConfig {
        // A fixed seed per collection id keeps builds reproducible (a serial build is deterministic).
        HNSWConfig(p, seed: 0x7665_6373_746F_7265 ^ UInt64(collection) &* 0x9E37_79B9_7F4A_7C15)
    }
}

/// Applying a batch of changes to a graph, for every metric.
enum HNSWIndexing {
    /// From this many inserted rows on, a batch is linked by all cores with per-node locks (hnswlib's
    /// scheme); smaller batches are linked serially, touching only the blocks they change.
    static let parallelThreshold = 512

    static var defaultThreads: Int { ProcessInfo.processInfo.activeProcessorCount }

    /// Repairs around `deleted`, moves the entry point if needed, inserts `inserted`. `vectors` maps
    /// every row below `rows` to its float32 vector; `liveWords` is the live bitmap after the batch.
    static func apply(_ editor: HNSWEditor, _ vectors: VectorTable, liveWords: [UInt64], rows: Int, metric: Metric,
                      deleted: [UInt32], inserted: [UInt32], threads: Int) {
        switch metric {
        case .l2: apply(editor, vectors, L2Distance.self, liveWords: liveWords, rows: rows, deleted: deleted,
                        inserted: inserted, threads: threads)
        case .cosine, .dot:
            apply(editor, vectors, InnerProductDistance.self, liveWords: liveWords, rows: rows, deleted: deleted,
                  inserted: inserted, threads: threads)
        }
    }

    private static func apply<D: HNSWDistance>(_ editor: HNSWEditor, _ vt: VectorTable, _: D.Type,
                                               liveWords: [UInt64], rows: Int, deleted: [UInt32], inserted: [UInt32],
                                               threads: Int) {
        editor.extend(to: rows)
        CandidateMask.with(liveWords) { live in
            for d in deleted { editor.repairDeleted(d, D.self, vt, live: live) }
            editor.fixEntryPoint(live: live)
            if inserted.count >= parallelThreshold && threads > 1 {
                // A few serial inserts first give the parallel workers a connected graph to start from.
                let head = min(inserted.count, editor.config.entryPoint == HNSWConfig.noEntry ? 64 : 0)
                if head > 0 {
                    let scratch = HNSWScratchPool.take(rows: editor.rows)
                    for q in inserted[0..<head] { editor.insert(q, D.self, vt, live: live, scratch: scratch) }
                    HNSWScratchPool.give(scratch)
                }
                editor.insertParallel(Array(inserted[head...]), D.self, vt, live: live, threads: threads)
            } else if !inserted.isEmpty {
                let scratch = HNSWScratchPool.take(rows: editor.rows)
                for q in inserted { editor.insert(q, D.self, vt, live: live, scratch: scratch) }
                HNSWScratchPool.give(scratch)
            }
            editor.fixEntryPoint(live: live)
        }
    }
}

extension CollectionWriter {
    /// Brings the collection's graph (if it has one) up to date with this batch, inside its transaction:
    /// appended rows are linked in, neighbours of deleted rows are repaired, and every touched block is
    /// written once. Vectors come from the snapshot before the batch (pages this transaction has not
    /// written, which stay in place until it commits) and from the batch's own rows (`appended`), never
    /// from pages written in this transaction, which LMDB may spill and free in a large transaction.
    mutating func updateGraph() throws {
        guard let config = try HNSWConfig.load(txn, dbs, record.id) else { return }
        guard config.nodes == initialNextID else {
            throw VecStoreError.corrupt("collection \(name): HNSW graph covers \(config.nodes) rows, the collection had \(initialNextID)")
        }
        let added = Int(initialNextID)..<Int(record.nextInternalID)
        if deletedRows.isEmpty && added.isEmpty { return }
        let before = try preBatch ?? CollectionView(txn, dbs, record, name: name, vectorsOnly: true)
        let vt = VectorTable(before, appended: appended)
        defer { vt.deallocate() }
        let liveWords = try CollectionView.liveWords(txn, dbs, record, name: name)
        let editor = try HNSWEditor(txn, dbs, record: record, config: config, name: name, fresh: false)
        let isLive = { (row: Int) in (liveWords[row >> 6] >> UInt64(row & 63)) & 1 == 1 }
        let inserted = added.filter(isLive).map { UInt32($0) }
        HNSWIndexing.apply(editor, vt, liveWords: liveWords, rows: Int(record.nextInternalID), metric: record.metric,
                           deleted: deletedRows.filter { $0 < initialNextID }, inserted: inserted,
                           threads: HNSWIndexing.defaultThreads)
        try editor.write(txn, dbs, vectors: vt)
        graphBlocksWritten = editor.lastWrittenBlocks
    }
}

/// The structures one snapshot of an indexed collection needs for search, reused by every read
/// transaction of the same snapshot.
final class HNSWSnapshot: @unchecked Sendable {
    let snapshotID: Int
    /// `Transaction.mapGeneration` of the transaction that resolved this snapshot.
    let mapGeneration: Int
    let record: CollectionRecord
    let view: CollectionView
    let graph: HNSWGraphView?
    let vectors: VectorTable
    /// Where each row's docs record sits in this snapshot's map, filled as `resolve` looks rows up.
    let docsRecords: RowPointerTable

    init(snapshotID: Int, mapGeneration: Int, record: CollectionRecord, view: CollectionView,
         graph: HNSWGraphView?) {
        self.snapshotID = snapshotID
        self.mapGeneration = mapGeneration
        self.record = record
        self.view = view
        self.graph = graph
        vectors = VectorTable(view)
        docsRecords = RowPointerTable(count: Int(record.nextInternalID))
    }

    deinit { vectors.deallocate() }

    private let filterLock = NSLock()
    private var filters: [(filter: Filter, words: [UInt64], matches: Int)] = []

    /// The live matching rows of `filter` and their number, evaluated once per snapshot (the last 8
    /// filters are kept): a filter over half the collection costs far more to evaluate from the field
    /// index than the graph search it restricts.
    func filterBitmap(_ filter: Filter, evaluate: () throws -> [UInt64]) rethrows -> ([UInt64], Int) {
        filterLock.lock()
        if let hit = filters.first(where: { $0.filter == filter }) {
            filterLock.unlock()
            return (hit.words, hit.matches)
        }
        filterLock.unlock()
        let words = try evaluate()
        let matches = words.reduce(0) { $0 + $1.nonzeroBitCount }
        filterLock.lock()
        if filters.count >= 8 { filters.removeFirst() }
        filters.append((filter, words, matches))
        filterLock.unlock()
        return (words, matches)
    }

    /// Whether some rows are deleted (then results are checked against the live bitmap).
    var hasDeletions: Bool { record.liveCount != record.nextInternalID }
}

/// Per-store cache of `HNSWSnapshot`s by collection id. An entry is reused by a read transaction of
/// the same snapshot id and the same map generation (`Transaction.mapGeneration`): same snapshot means
/// the same bytes at the same map offsets, and the same generation means the map was not moved (grown)
/// since, so every pointer the entry holds is valid in the new transaction. A hit therefore costs no
/// LMDB lookup: the collection record was read and checked when the entry was made, and within one
/// snapshot it cannot change. Write transactions (whose pages are private until they commit) neither
/// use nor fill the cache.
final class HNSWViewCache: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [UInt32: HNSWSnapshot] = [:]

    func snapshot(_ txn: Transaction, _ dbs: Databases, name: String, collectionID: UInt32) throws -> HNSWSnapshot {
        let sid = try txn.snapshotID()
        let cacheable = !txn.isWritable
        if cacheable {
            lock.lock()
            let cached = entries[collectionID]
            lock.unlock()
            if let cached, cached.snapshotID == sid, cached.mapGeneration == txn.mapGeneration {
                return cached
            }
        }
        guard let value = try txn.get(dbs.meta, Format.collectionKey(name)) else {
            throw VecStoreError.collectionNotFound(name)
        }
        let record = try CollectionRecord.decode(value, name: name)
        guard record.id == collectionID else { throw VecStoreError.collectionNotFound(name) }
        let view = try CollectionView(txn, dbs, record, name: name)
        let graph = try HNSWConfig.load(txn, dbs, record.id).map {
            try HNSWGraphView(txn, dbs, record, $0, name: name)
        }
        let entry = HNSWSnapshot(snapshotID: sid, mapGeneration: txn.mapGeneration, record: record, view: view,
                                 graph: graph)
        if cacheable {
            lock.lock()
            entries[collectionID] = entry
            lock.unlock()
        }
        return entry
    }

    /// The docs-record table of the cached snapshot whose view is `view`, or nil (a view not from this
    /// cache, such as a write transaction's).
    func docsRecords(of view: CollectionView, collectionID: UInt32) -> RowPointerTable? {
        lock.lock()
        let cached = entries[collectionID]
        lock.unlock()
        guard let cached, cached.view === view else { return nil }
        return cached.docsRecords
    }
}

/// Calls `body` with a mask over `words` (nil when `words` is nil).
func withMask<R>(_ words: [UInt64]?, _ body: (CandidateMask?) -> R) -> R {
    guard let words else { return body(nil) }
    return CandidateMask.with(words) { body($0) }
}

/// HNSW k-NN search on layer 0 after greedy descent.
enum HNSWSearch {
    /// Collections with at most this many live rows are searched exactly (unless the filter strategy
    /// is `.graph`): a scan of 1,024 rows costs about as much as a graph search, and is exact.
    static let exactBelowRows = 1024

    /// Greedy descent and layer-0 beam search over the binary16 copies, then the best `2k` of the beam
    /// re-ranked with the float32 vectors; the best `k` by exact distance.
    static func knn<D: HNSWDistance, H: HNSWHalfDistance>(
        _ g: HNSWGraphView, _ vt: VectorTable, _: D.Type, _: H.Type, query: UnsafePointer<Float>, k: Int, ef: Int,
        allowed: CandidateMask?, scratch: HNSWScratch
    ) -> TopK {
        var top = TopK(k: k)
        let entry = g.config.entryPoint
        // The entry point comes from disk: one outside the graph is damage (HNSWGraphView rejects it;
        // this guard keeps the search in bounds whatever view it is given).
        guard entry != HNSWConfig.noEntry, Int(entry) < g.rows else { return top }
        let scorer = HalfScorer<H>(graph: g, query: query, lines: g.halfPrefetchLines)
        let d0 = scorer.distance(entry)
        let (cur, curD) = HNSWAlgorithms.greedyDescent(g, scorer, entry: entry, entryDistance: d0,
                                                       top: g.config.maxLevel, bottom: 0)
        HNSWAlgorithms.searchLayer(g, scorer, entry: cur, entryDistance: curD, ef: max(ef, k),
                                   level: 0, allowed: allowed, rows: g.rows, scratch: scratch)
        let exact = FloatScorer<D>(vectors: vt, query: query)
        var res = scratch.results
        // Only the 2k closest by binary16 distance are re-ranked: binary16 error (~1e-3 relative) does
        // not move a true top-k result 2k places down, and each re-ranked row costs a float32 fetch.
        while res.count > 2 * k { res.pop() }
        var i = 0
        while i < res.count {
            exact.prefetch(res.ids[i])
            i += 1
        }
        while !res.isEmpty {
            top.insert(-exact.distance(res.topID), res.topID)
            res.pop()
        }
        scratch.results = res
        return top
    }

    /// Whether a filter matching `matches` of `live` rows is answered by exact search over the matches
    /// instead of the graph. Filtered graph search visits about 1/selectivity times more nodes to fill
    /// its beam, each costing up to 2·M distance computations; exact search costs one (sequential,
    /// cheaper) distance per match. Equating ~3·M·ef/p with p·live gives p² < 3·M·ef/live, that is
    /// matches² < 3·M·ef·live.
    static func prefersExact(matches: Int, live: Int, m: Int, ef: Int) -> Bool {
        Double(matches) * Double(matches) < 3 * Double(m) * Double(ef) * Double(max(live, 1))
    }

    static func run(_ snap: HNSWSnapshot, _ g: HNSWGraphView, metric: Metric, queries: UnsafePointer<Float>,
                    count: Int, k: Int, ef: Int, allowed: CandidateMask?, threads: Int) -> [TopK] {
        switch metric {
        case .l2: run(snap, g, L2Distance.self, L2HalfDistance.self, queries: queries, count: count, k: k, ef: ef,
                      allowed: allowed, threads: threads)
        case .cosine, .dot: run(snap, g, InnerProductDistance.self, InnerProductHalfDistance.self, queries: queries,
                                count: count, k: k, ef: ef, allowed: allowed, threads: threads)
        }
    }

    private static func run<D: HNSWDistance, H: HNSWHalfDistance>(
        _ snap: HNSWSnapshot, _ g: HNSWGraphView, _: D.Type, _: H.Type, queries: UnsafePointer<Float>, count: Int,
        k: Int, ef: Int, allowed: CandidateMask?, threads: Int
    ) -> [TopK] {
        let dim = snap.vectors.dimension
        let workers = max(1, min(threads, count))
        if workers == 1 {
            let scratch = HNSWScratchPool.take(rows: g.rows)
            defer { HNSWScratchPool.give(scratch) }
            return (0..<count).map { i in
                knn(g, snap.vectors, D.self, H.self, query: queries + i * dim, k: k, ef: ef, allowed: allowed,
                    scratch: scratch)
            }
        }
        let out = UnsafeMutableBufferPointer<TopK>.allocate(capacity: count)
        out.initialize(repeating: TopK(k: 0))
        defer { out.deinitialize(); out.deallocate() }
        let box = SendableBox((snap, g, queries, out, allowed))
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let (snap, g, queries, out, allowed) = box.value
            let scratch = HNSWScratchPool.take(rows: g.rows)
            defer { HNSWScratchPool.give(scratch) }
            // Interleaved assignment keeps workers balanced without a shared counter.
            var i = w
            while i < count {
                out[i] = knn(g, snap.vectors, D.self, H.self, query: queries + i * dim, k: k, ef: ef, allowed: allowed,
                             scratch: scratch)
                i += workers
            }
        }
        return Array(out)
    }
}

extension VectorCollection {
    /// The collection's index: `.flat` or `.hnsw` with its parameters.
    public func indexKind() throws(VecStoreError) -> IndexKind {
        try store.read { txn in
            guard let c = try HNSWConfig.load(txn, store.dbs, collectionID) else { return IndexKind.flat }
            return IndexKind.hnsw(c.parameters)
        }
    }

    /// (Re)builds the HNSW graph over all live documents with `parameters`, in one transaction, on
    /// `threads` cores. Replaces any previous graph; readers keep seeing the old one until it commits.
    public func buildIndex(_ parameters: HNSWParameters = HNSWParameters(),
                           threads: Int = ProcessInfo.processInfo.activeProcessorCount) throws(VecStoreError) {
        try parameters.validate()
        try store.write { txn in
            let record = try currentRecord(txn)
            try HNSWConfig.dropGraph(txn, store.dbs, record.id)
            let config = HNSWConfig.create(parameters, collection: record.id)
            let view = try CollectionView(txn, store.dbs, record, name: name)
            let editor = try HNSWEditor(txn, store.dbs, record: record, config: config, name: name, fresh: true)
            let live = (0..<record.nextInternalID).filter { view.isLive($0) }
            // No vector page is written by this transaction: the view's pointers stay valid throughout.
            let vt = VectorTable(view)
            defer { vt.deallocate() }
            HNSWIndexing.apply(editor, vt, liveWords: view.liveWords, rows: Int(record.nextInternalID),
                               metric: record.metric, deleted: [], inserted: live, threads: max(1, threads))
            try editor.write(txn, store.dbs, vectors: vt)
        }
    }

    /// Removes the HNSW graph: the collection is searched exactly from now on.
    public func dropIndex() throws(VecStoreError) {
        try store.write { txn in try HNSWConfig.dropGraph(txn, store.dbs, collectionID) }
    }
}
