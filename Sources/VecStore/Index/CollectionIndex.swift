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
    /// collection without an index.
    public func indexStats() throws(VecStoreError) -> IndexStats {
        try store.read { txn in
            let record = try currentRecord(txn)
            guard let found = try IndexRegistry.find(txn, store.dbs, record) else {
                return IndexStats(kind: "flat", lines: [])
            }
            return try found.kind.stats(txn, store.dbs, record, name: name)
        }
    }

    /// (Re)builds the HNSW graph over all live documents with `parameters`, in one transaction, on
    /// `threads` cores. Replaces any previous index; readers keep seeing the old one until it commits.
    public func buildIndex(_ parameters: HNSWParameters = HNSWParameters(),
                           threads: Int = ProcessInfo.processInfo.activeProcessorCount) throws(VecStoreError) {
        try buildIndex(kind: .hnsw(parameters), threads: threads)
    }

    /// (Re)builds the collection's index as `kind` over all live documents, in one transaction, on
    /// `threads` cores, replacing any previous index (`.flat` drops it). Readers keep seeing the old
    /// index until it commits.
    public func buildIndex(kind parameters: IndexKind,
                           threads: Int = ProcessInfo.processInfo.activeProcessorCount) throws(VecStoreError) {
        guard let kind = IndexRegistry.kind(for: parameters) else { return try dropIndex() }
        try kind.validate(parameters, dimension: dimension, metric: metric)
        try store.write { txn in
            let record = try currentRecord(txn)
            try store.dropIndex(txn, record)
            try store.createIndex(txn, kind, record, parameters: parameters)
            try Self.rebuild(txn, store.dbs, kind, record, name: name, threads: threads)
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
