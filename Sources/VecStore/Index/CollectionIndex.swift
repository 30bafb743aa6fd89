import Foundation
import LMDB

extension VectorCollection {
    /// The collection's index: `.flat` or a registered kind with its parameters.
    public func indexKind() throws(VecStoreError) -> IndexKind {
        try store.read { txn in
            try IndexRegistry.find(txn, store.dbs, try currentRecord(txn))?.parameters ?? IndexKind.flat
        }
    }

    /// The collection's index and its figures (`vecstore index show`): kind "flat" with no lines for a
    /// collection without an index. `.full` (the default) includes figures that walk the whole index;
    /// `.summary` reads only headers and counters (`VecStore.stats()`).
    public func indexStats(depth: IndexStatsDepth = .full) throws(VecStoreError) -> IndexStats {
        try store.read { txn in try Self.indexStats(txn, store.dbs, try currentRecord(txn), name: name, depth: depth) }
    }

    /// `indexStats` of the collection `record` in `txn`'s snapshot.
    static func indexStats(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, name: String,
                           depth: IndexStatsDepth) throws -> IndexStats {
        guard let found = try IndexRegistry.find(txn, dbs, record) else { return IndexStats(kind: "flat", lines: []) }
        return try found.kind.stats(txn, dbs, record, name: name, depth: depth)
    }

    /// (Re)builds the HNSW graph over all live documents with `parameters`, in one transaction, on
    /// `threads` cores. Replaces any previous index; readers keep seeing the old one until it commits.
    public func buildIndex(_ parameters: HNSWParameters = HNSWParameters(),
                           threads: Int = ProcessInfo.processInfo.activeProcessorCount) throws(VecStoreError) {
        try buildIndex(kind: .hnsw(parameters), threads: threads)
    }

    /// (Re)builds the collection's index as `kind` over all live documents on `threads` cores,
    /// replacing any previous index (`.flat` drops it). An HNSW graph that replaces an HNSW graph is
    /// rebuilt in bounded steps, each its own transaction: the first empties the graph (every row in its
    /// unlinked tail, searched exactly meanwhile; the binary16 copies are kept), the next ones link the
    /// tail (`linkIndexTail`). Otherwise the index is built in one transaction, and readers keep seeing
    /// the old one until it commits.
    public func buildIndex(kind parameters: IndexKind,
                           threads: Int = ProcessInfo.processInfo.activeProcessorCount) throws(VecStoreError) {
        guard let kind = IndexRegistry.kind(for: parameters) else { return try dropIndex() }
        try kind.validate(parameters, dimension: dimension, metric: metric)
        let stepped: Bool = try store.write { txn in
            let record = try currentRecord(txn)
            // HNSW over HNSW: the graph is emptied (its binary16 copies kept) and linked in steps below.
            if case .hnsw(let p) = parameters, try HNSWIndex.resetGraph(txn, store.dbs, record, parameters: p) {
                return true
            }
            try store.dropIndex(txn, record)
            try store.createIndex(txn, kind, record, parameters: parameters)
            try Self.rebuild(txn, store.dbs, kind, record, name: name, threads: threads)
            return false
        }
        if stepped { try linkIndexTail(threads: threads) }
    }

    /// Rows the collection's index does not cover yet: an HNSW graph's unlinked tail (Spec/HNSW.md §4.1),
    /// left by an import that was interrupted or by a rebuild in progress. Searches scan them exactly.
    public func unindexedRows() throws(VecStoreError) -> Int {
        try store.read { txn in
            let record = try currentRecord(txn)
            guard let found = try IndexRegistry.find(txn, store.dbs, record) else { return 0 }
            return try found.kind.unindexedRows(txn, store.dbs, record)
        }
    }

    /// Links the collection's unlinked tail into its graph in bounded steps, one transaction each (at
    /// most `max(65,536, nodes)` rows per step: the graph at most doubles per commit); every commit leaves
    /// a valid graph. Returns the rows linked (0 when there was no tail).
    @discardableResult
    public func linkIndexTail(threads: Int = ProcessInfo.processInfo.activeProcessorCount) throws(VecStoreError) -> Int {
        try linkIndexTail(threads: threads, policy: HNSWTailPolicy())
    }

    /// `linkIndexTail` with the step size of `policy`.
    func linkIndexTail(threads: Int, policy: HNSWTailPolicy) throws(VecStoreError) -> Int {
        var linked = 0
        // The rows as the previous step saw them. A step writes only the index (never `vectors` or
        // `live`), so the next step reuses them, instead of resolving every vector block again, when no
        // other writer committed in between (its write transaction's id follows the previous step's), the
        // map was not moved, and the collection record is the same.
        var previous: (txnID: Int, mapGeneration: Int, record: CollectionRecord, view: CollectionView)?
        while true {
            let step: Int = try store.write { txn in
                let record = try currentRecord(txn)
                guard let found = try IndexRegistry.find(txn, store.dbs, record) else { return 0 }
                let before = try found.kind.unindexedRows(txn, store.dbs, record)
                guard before > 0 else { return 0 }
                let txnID = try txn.snapshotID()
                let view: CollectionView
                if let p = previous, p.txnID + 1 == txnID, p.mapGeneration == txn.mapGeneration, p.record == record {
                    view = p.view
                } else {
                    view = try CollectionView(txn, store.dbs, record, name: name)
                }
                previous = nil
                let vectors = VectorTable(view)
                defer { vectors.deallocate() }
                var writer = try found.kind.makeWriter(txn, store.dbs, record, name: name)
                let end = record.nextInternalID
                try writer.apply(IndexBatch(record: record, appended: end..<end, deleted: [], vectors: vectors,
                                            liveWords: view.liveWords, threads: max(1, threads),
                                            linking: IndexLinking(mode: .step, policy: policy)))
                let after = try found.kind.unindexedRows(txn, store.dbs, record)
                guard after < before else {
                    throw VecStoreError.corrupt("collection \(name): linking its unlinked tail made no progress")
                }
                previous = (txnID, txn.mapGeneration, record, view)  // a failed commit leaves the id unused
                return before - after
            }
            if step == 0 { return linked }
            linked += step
        }
    }

    /// Fills the just-created, empty index of `kind` with every live row of `record`, in one batch.
    /// No vector page is written by the transaction before, so the view's pointers stay valid.
    static func rebuild(_ txn: Transaction, _ dbs: Databases, _ kind: any VectorIndexKind.Type,
                        _ record: CollectionRecord, name: String, threads: Int) throws {
        let view = try CollectionView(txn, dbs, record, name: name)
        let vectors = VectorTable(view)
        defer { vectors.deallocate() }
        var writer = try kind.makeWriter(txn, dbs, record, name: name)
        try writer.apply(IndexBatch(record: record, appended: 0..<record.nextInternalID, deleted: [],
                                    vectors: vectors, liveWords: view.liveWords, threads: max(1, threads)))
    }

    /// Removes the collection's index: it is searched exactly from now on.
    public func dropIndex() throws(VecStoreError) {
        try store.write { txn in try store.dropIndex(txn, try currentRecord(txn)) }
    }
}

extension VecStore {
    /// Creates the empty index of `kind` for `record` inside `txn`, declaring the kind's feature.
    func createIndex(_ txn: Transaction, _ kind: any VectorIndexKind.Type, _ record: CollectionRecord,
                     parameters: IndexKind) throws {
        if let feature = kind.feature { try Format.declare(feature, txn, meta: dbs.meta) }
        try kind.create(txn, dbs, record, parameters: parameters)
    }

    /// Removes whatever vector index `record` has (every registered kind's records for it).
    func dropIndex(_ txn: Transaction, _ record: CollectionRecord) throws {
        for kind in IndexRegistry.kinds { try kind.drop(txn, dbs, collection: record.id) }
    }
}
