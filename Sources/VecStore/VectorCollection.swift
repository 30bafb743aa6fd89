import CDistance
import Foundation
import LMDB
import VecStoreIO
import VecStoreKernels

/// A named set of documents with one vector dimension and metric, inside a `VecStore`.
///
/// Every method runs in its own LMDB transaction: reads see one consistent snapshot, and every write
/// call (a whole batch) commits atomically.
public struct VectorCollection: Sendable {
    /// The store holding this collection.
    public let store: VecStore
    /// The collection name.
    public let name: String
    /// Vector dimension.
    public let dimension: Int
    /// Distance metric.
    public let metric: Metric
    let collectionID: UInt32
    /// The projection of a reduced collection (Spec/PCA.md), applied to vectors of its input dimension.
    let projection: ProjectionRecord?

    init(store: VecStore, name: String, record: CollectionRecord, projection: ProjectionRecord? = nil) {
        self.store = store
        self.name = name
        self.dimension = record.dimension
        self.metric = record.metric
        self.collectionID = record.id
        self.projection = projection
    }

    /// The PCA that reduces vectors entering this collection (documents and queries of
    /// `pca.inputDimension` floats are projected to `dimension`), or nil for a collection that stores
    /// vectors as given.
    public var pca: PCA? { projection?.pca }

    func currentRecord(_ txn: Transaction) throws -> CollectionRecord {
        guard let r = try store.record(txn, name), r.id == collectionID else {
            throw VecStoreError.collectionNotFound(name)
        }
        return r
    }

    // MARK: Writing

    /// Adds documents in one transaction; throws `idExists` (and writes nothing) if any id is stored.
    public func add(_ documents: [Document]) throws(VecStoreError) {
        try write(documents, replace: false)
    }

    /// Adds documents, replacing those whose id is already stored, in one transaction.
    public func upsert(_ documents: [Document]) throws(VecStoreError) {
        try write(documents, replace: true)
    }

    /// Deletes documents by id in one transaction; returns how many existed.
    @discardableResult
    public func delete(ids: [String]) throws(VecStoreError) -> Int {
        try store.write { txn in
            var writer = try CollectionWriter(txn, store.dbs, name: name, record: try currentRecord(txn))
            var deleted = 0
            for id in ids where try writer.delete(id: id) { deleted += 1 }
            try writer.finish()
            return deleted
        }
    }

    func write(_ documents: [Document], replace: Bool) throws(VecStoreError) {
        let prepared = try prepare(documents)
        try store.write { txn in
            var writer = try CollectionWriter(txn, store.dbs, name: name, record: try currentRecord(txn))
            try writer.append(prepared, replace: replace)
            try writer.finish()
        }
    }

    /// Validates a batch and brings vectors into stored form. Throws before anything is written.
    func prepare(_ documents: [Document]) throws(VecStoreError) -> [CollectionWriter.Prepared] {
        var seen = Set<String>()
        seen.reserveCapacity(documents.count)
        var result: [CollectionWriter.Prepared] = []
        result.reserveCapacity(documents.count)
        for doc in documents {
            try Self.validateID(doc.id)
            if !seen.insert(doc.id).inserted { throw .duplicateIDInBatch(doc.id) }
            let (stored, norm) = try storedForm(doc.vector, id: doc.id)
            var json: [UInt8] = []
            if !doc.metadata.isEmpty {
                try Self.validateMetadata(doc.metadata, id: doc.id)
                JSONValue.object(doc.metadata).serialized(into: &json)
            }
            result.append(.init(id: doc.id, stored: stored, norm: norm, text: doc.text, metadata: doc.metadata,
                                metadataJSON: json))
        }
        return result
    }

    /// Checks a vector and returns it as stored: unit length under cosine, with its original norm. In a
    /// reduced collection a vector of the input dimension is projected first (every document and query
    /// vector passes here); one of the reduced dimension is taken as already projected.
    func storedForm(_ vector: [Float], id: String?) throws(VecStoreError) -> ([Float], Float) {
        let vector = try projection.map { p throws(VecStoreError) in try p.reduce(vector, id: id) } ?? vector
        guard vector.count == dimension else { throw .dimensionMismatch(expected: dimension, got: vector.count, id: id) }
        let norm = squaredNorm(vector).squareRoot()
        // A non-finite component makes the norm non-finite, so the components are searched only then.
        if !norm.isFinite {
            for (i, x) in vector.enumerated() where !x.isFinite {
                throw .invalidVector(id: id, reason: "component \(i) is \(x)")
            }
        }
        // Under every metric a squared norm that overflows float32 is refused (Spec/FORMAT.md §11): l2
        // distances to it would be infinite and its stored squared norm not finite. A zero vector is
        // fine for l2 and dot.
        guard norm.isFinite else { throw .invalidVector(id: id, reason: "its norm overflows float32") }
        guard metric == .cosine else { return (vector, norm) }
        guard norm > 0 else {
            throw .invalidVector(id: id, reason: norm == 0 ? "all components are zero, which has no cosine direction"
                                                     : "its norm overflows float32")
        }
        return (vector.map { $0 / norm }, norm)
    }

    static func validateID(_ id: String) throws(VecStoreError) {
        if id.isEmpty { throw .invalidID("empty id") }
        if id.utf8.count > Format.maxIDBytes {
            throw .invalidID("'\(id.prefix(40))…' has \(id.utf8.count) UTF-8 bytes; at most \(Format.maxIDBytes)")
        }
    }

    static func validateMetadata(_ metadata: [String: JSONValue], id: String) throws(VecStoreError) {
        for (key, value) in metadata {
            if key.isEmpty || key.utf8.count > Format.maxFieldNameBytes || key.utf8.contains(0) {
                throw .invalidMetadata(id: id, reason: "field name '\(key.prefix(40))' must be 1 to \(Format.maxFieldNameBytes) bytes without NUL")
            }
            switch value {
            case .string, .bool: continue
            case .number(let x) where x.isFinite: continue
            case .array(let items):
                for item in items {
                    switch item {
                    case .string, .bool: continue
                    case .number(let x) where x.isFinite: continue
                    default: throw .invalidMetadata(id: id, reason: "array field '\(key)' may hold only strings, numbers and booleans")
                    }
                }
            default:
                throw .invalidMetadata(id: id, reason: "field '\(key)' must be a string, number, boolean or array of those")
            }
        }
    }

    // MARK: Reading

    /// Number of live documents.
    public func count() throws(VecStoreError) -> Int {
        try store.read { txn in Int(try currentRecord(txn).liveCount) }
    }

    /// Shape, count and tombstones.
    public func info() throws(VecStoreError) -> CollectionInfo {
        try store.read { txn in try Self.info(txn, store.dbs, try currentRecord(txn), name: name) }
    }

    /// `info()` of the collection `r` in `txn`'s snapshot.
    static func info(_ txn: Transaction, _ dbs: Databases, _ r: CollectionRecord, name: String) throws -> CollectionInfo {
        CollectionInfo(name: name, dimension: r.dimension, metric: r.metric, count: Int(r.liveCount),
                       rows: Int(r.nextInternalID), blockCapacity: r.blockCapacity,
                       idRuns: try IDIndex.loadLevels(txn, dbs.meta, r, name: name)?.map(Int.init) ?? [])
    }

    /// The stored documents with these ids (nil for ids not stored), from one snapshot.
    public func get(ids: [String]) throws(VecStoreError) -> [Document?] {
        try store.read { txn in
            let record = try currentRecord(txn)
            let view = try CollectionView(txn, store.dbs, record, name: name)
            let index = try IDIndex(txn, store.dbs, record, name: name)
            let rows = ids.count == 1 ? [try index.lookup(ids[0])] : try index.lookupAll(ids)
            return try rows.map { found -> Document? in try found.map { try document(txn, view, row: $0.row) } }
        }
    }

    /// The stored document with this id, or nil.
    public func get(id: String) throws(VecStoreError) -> Document? { try get(ids: [id])[0] }

    func document(_ txn: Transaction, _ view: CollectionView, row: UInt32) throws -> Document {
        guard let value = try txn.get(store.dbs.docs, Format.key(collectionID, row)) else {
            throw VecStoreError.corrupt("collection \(name): row \(row) has no document record")
        }
        let rec = try DocumentRecord.decode(value, context: "docs row \(row)")
        let stored = UnsafeBufferPointer(start: view.vector(row), count: dimension)
        let vector = metric == .cosine ? stored.map { $0 * rec.norm } : Array(stored)
        var metadata: [String: JSONValue] = [:]
        if !rec.metadataJSON.isEmpty, case .object(let m) = try rec.metadataJSON.withUnsafeBytes({ try JSONValue.parse($0) }) {
            metadata = m
        }
        return Document(id: rec.externalID, vector: vector, text: rec.text, metadata: metadata)
    }

    /// Calls `body` with every live document in row order, `batchSize` at a time, each batch from the
    /// same snapshot.
    public func forEachBatch(batchSize: Int = 1000, _ body: ([Document]) throws -> Void) throws(VecStoreError) {
        try store.read { txn in
            let record = try currentRecord(txn)
            let view = try CollectionView(txn, store.dbs, record, name: name)
            var batch: [Document] = []
            batch.reserveCapacity(batchSize)
            for row in 0..<record.nextInternalID where view.isLive(row) {
                batch.append(try document(txn, view, row: row))
                if batch.count == batchSize {
                    try body(batch)
                    batch.removeAll(keepingCapacity: true)
                }
            }
            if !batch.isEmpty { try body(batch) }
        }
    }

    // MARK: Searching

    /// The rows a search may return: live rows matching `filter`, or all live rows.
    func candidateRows(_ txn: Transaction, _ view: CollectionView, _ filter: Filter?) throws -> [UInt64] {
        guard let filter else { return view.liveWords }
        return try FilterEvaluator(txn: txn, dbs: store.dbs, view: view, collection: self).evaluate(filter)
    }

    /// The `k` nearest live documents to `query` by exact search, optionally restricted by `filter`.
    public func search(_ query: [Float], k: Int, filter: Filter? = nil,
                       options: SearchOptions = SearchOptions()) throws(VecStoreError) -> [SearchResult] {
        // `searchBatch` of one query, without wrapping the query and the results in arrays of one.
        guard k > 0 else { return [] }
        try Self.checkK(k)
        let (stored, _) = try storedForm(query, id: nil)
        return try searchRows(stored, count: 1, k: k, filter: filter, options: options).first ?? []
    }

    /// The largest `k` (and hybrid `candidates`) a search accepts: results are held in memory, so a
    /// larger request is refused with `invalidArgument` instead of trying to reserve room for it.
    public static let maxK = 100_000

    static func checkK(_ k: Int, _ what: String = "k") throws(VecStoreError) {
        guard k <= maxK else { throw .invalidArgument("\(what) \(k) is larger than the maximum \(maxK)") }
    }

    /// The `k` nearest live documents to the document stored under `id` (which is itself excluded).
    public func search(similarTo id: String, k: Int, filter: Filter? = nil,
                       options: SearchOptions = SearchOptions()) throws(VecStoreError) -> [SearchResult] {
        try Self.checkK(k)
        guard k > 0 else { return [] }
        // One read transaction: the document's row and stored vector, then the search without it.
        return try store.read { txn in
            let snap = try snapshot(txn)
            guard let row = try IDIndex(txn, store.dbs, snap.record, name: name).lookup(id)?.row else {
                throw VecStoreError.invalidArgument("no document with id '\(id)' in \(name)")
            }
            // (`lookup` checked the row is below the collection's rows.)
            guard snap.view.isLive(row) else {
                throw VecStoreError.corrupt("collection \(name): id '\(id)' maps to row \(row), which is not live")
            }
            let query = Array(UnsafeBufferPointer(start: snap.view.vector(row), count: dimension))
            return try searchRows(txn, query, count: 1, k: k, filter: filter, options: options, exclude: row)[0]
        }
    }

    /// Top-`k` for each query, all from one snapshot, by the plan `plan(...)` chooses (exact, through
    /// the index, or exact over a selective filter's matches). Exact batches of 20 queries and more
    /// score each block with one BLAS matrix product; queries are split across `options.threads`.
    public func searchBatch(_ queries: [[Float]], k: Int, filter: Filter? = nil,
                            options: SearchOptions = SearchOptions()) throws(VecStoreError) -> [[SearchResult]] {
        guard k > 0 else { return queries.map { _ in [] } }
        try Self.checkK(k)
        guard !queries.isEmpty else { return [] }
        var flat: [Float] = []
        flat.reserveCapacity(queries.count * dimension)
        for q in queries {
            let (stored, _) = try storedForm(q, id: nil)
            flat.append(contentsOf: stored)
        }
        return try searchRows(flat, count: queries.count, k: k, filter: filter, options: options)
    }

    /// Turns rows into results: exact metric value (recomputed, so every search path reports the same
    /// number) and external id, best first. No per-hit allocation but the id string: the docs key is built
    /// on the stack and only the external id is decoded. With `exactScores`, `top` already holds each
    /// row's value as this function computes it (the index path re-ranks with the same float32 kernels:
    /// negated squared l2 or the inner product), so it is taken from there instead of computed again.
    ///
    /// When `view` is a cached snapshot's, the address of each docs record found is kept in the
    /// snapshot's `docsRecords` table (checked once, when first read): a row resolved again in the same
    /// snapshot costs a load instead of a B-tree search (10 searches were ~20% of a siftsmall query).
    ///
    /// `table` is the snapshot's `recordTable` (nil for a write transaction's view, whose pages move). The
    /// hits are ordered in a stack buffer.
    func resolve(_ txn: Transaction, _ view: CollectionView, _ top: TopK, query: UnsafePointer<Float>,
                 table: RowPointerTable?, includeText: Bool = false, exactScores: Bool = false) throws -> [SearchResult]
    {
        // A search's few hits are ordered in a stack buffer here (`TopK.fewSorted`), not through `withSorted`'s
        // generic closure.
        guard top.count <= TopK.insertionSortLimit else {
            return try top.sorted().withUnsafeBufferPointer { hits in
                try resolve(txn, view, hits, query: query, table: table, includeText: includeText, exactScores: exactScores)
            }
        }
        return try withUnsafeTemporaryAllocation(of: (id: UInt32, score: Float).self, capacity: max(top.count, 1)) { b in
            guard let p = b.baseAddress else { return [] }
            let hits = UnsafeBufferPointer(start: p, count: top.fewSorted(into: p))
            return try resolve(txn, view, hits, query: query, table: table, includeText: includeText, exactScores: exactScores)
        }
    }

    func resolve(_ txn: Transaction, _ view: CollectionView, _ hits: UnsafeBufferPointer<(id: UInt32, score: Float)>,
                 query: UnsafePointer<Float>, table: RowPointerTable?, includeText: Bool,
                 exactScores: Bool) throws -> [SearchResult]
    {
        var results: [SearchResult] = []
        results.reserveCapacity(hits.count)
        let docs = store.dbs.docs
        let l2 = metric == .l2
        if !includeText, let table {
            // The records already found are scattered over the map: ask for all of them first, so their cache
            // misses overlap instead of stalling once a hit (they were two thirds of this function at
            // siftsmall IVF-Flat nprobe 1).
            for hit in hits { if let record = table.load(Int(hit.id)) { vs_prefetch(record, 1) } }
        }
        for hit in hits {
            let score: Float
            if exactScores {
                score = l2 ? -hit.score : hit.score
            } else {
                let v = view.vector(hit.id)
                score = l2 ? squaredL2(query, v, dimension) : dotProduct(query, v, dimension)
            }
            var record: UnsafeRawPointer? = includeText ? nil : table?.load(Int(hit.id))
            var value: UnsafeRawBufferPointer? = nil
            if record == nil {
                var key = (collectionID.bigEndian, hit.id.bigEndian)
                let found = try withUnsafeBytes(of: &key) { k throws(LMDBError) in try txn.get(docs, k) }
                guard let found, found.count >= 2, let base = found.baseAddress else {
                    throw VecStoreError.corrupt("collection \(name): live row \(hit.id) has no document record")
                }
                let n = Int(UInt16(littleEndian: found.loadUnaligned(as: UInt16.self)))
                guard found.count >= 2 + n else {
                    throw VecStoreError.corrupt("collection \(name): docs row \(hit.id) has a damaged id")
                }
                record = base
                value = found
                table?.store(Int(hit.id), base)
            }
            guard let record else { continue }
            // Checked above (now or when the table slot was filled): the record holds 2 + n bytes.
            let n = Int(UInt16(littleEndian: record.loadUnaligned(as: UInt16.self)))
            guard let id = decodeUTF8(UnsafeRawBufferPointer(start: record + 2, count: n)) else {
                throw VecStoreError.corrupt("collection \(name): docs row \(hit.id) has a damaged id")
            }
            var result = SearchResult(id: id, score: score, internalID: hit.id)
            if includeText, let value {
                result.text = try DocumentRecord.decode(value, context: "\(name) docs row \(hit.id)").text
            }
            results.append(result)
        }
        // Exact scores keep `hits`' order (best first, ties to the lower row), which is the order below.
        if exactScores { return results }
        let higher = metric.higherIsCloser
        results.sort { a, b in
            if a.score != b.score { return higher ? a.score > b.score : a.score < b.score }
            return a.internalID < b.internalID
        }
        return results
    }
}
