import Foundation
import LMDB
import VecStoreIO
import VecStoreKernels

/// Options for opening a store.
public struct StoreOptions: Sendable {
    /// Open without write access; every write throws.
    public var readOnly = false
    /// Create the store file when it does not exist.
    public var create = true
    /// Initial memory-map size in bytes (the map grows by doubling when full).
    public var initialMapSize = 1 << 30
    /// Creates default options.
    public init(readOnly: Bool = false, create: Bool = true) {
        self.readOnly = readOnly
        self.create = create
    }
}

/// A vecstore store: one LMDB environment in a single file (plus `<file>-lock`) holding named collections.
///
/// A store is `Sendable`: share one instance across threads and tasks. Any number of searches run at
/// once, concurrently with one writer; writers (in this and other processes) take turns. Every write
/// call is one LMDB transaction: it is either entirely on disk or not at all.
///
/// ```swift
/// let store = try VecStore(at: URL(fileURLWithPath: "docs.vecstore"))
/// let docs = try store.collection("docs", dimension: 3, metric: .cosine)
/// try docs.upsert([Document(id: "a", vector: [1, 0, 0], text: "hello", metadata: ["year": 2024])])
/// let hits = try docs.search([1, 0, 0], k: 10, filter: .field("year", .greaterThan(2020)))
/// ```
public final class VecStore: Sendable {
    /// The on-disk format version this library reads and writes (Spec/FORMAT.md).
    public static let formatVersion = Format.version
    /// Path of the store's data file.
    public let path: String
    let env: Environment
    let dbs: Databases
    /// Resolved HNSW views reused across read transactions of the same snapshot.
    let hnswCache = HNSWViewCache()
    /// Why this build must not write the store (its format or a feature needs a newer vecstore), or nil.
    let writeRefusal: String?

    /// Opens the store at `url`, creating it unless `options.create` is false.
    public convenience init(at url: URL, options: StoreOptions = StoreOptions()) throws(VecStoreError) {
        try self.init(path: url.path, options: options)
    }

    /// Opens the store at `path`, creating it unless `options.create` is false.
    public init(path: String, options: StoreOptions = StoreOptions()) throws(VecStoreError) {
        self.path = path
        let exists = FileManager.default.fileExists(atPath: path)
        if !exists && (!options.create || options.readOnly) {
            throw .io("no store at \(path)")
        }
        var envOptions = EnvironmentOptions()
        envOptions.readOnly = options.readOnly
        envOptions.mapSize = max(options.initialMapSize, Self.fileSize(path) * 2)
        // vecstore parallelises across BLAS calls itself; an OpenBLAS pool left at its default keeps
        // worker threads spinning (sched_yield) that steal a core from searches.
        BLAS.useSingleThread()
        let env = try Self.openEnvironment(path, envOptions)
        let specs = Schema.databases.map { (name: $0.name, flags: $0.flags) }
        // Nothing is created before the file is known to be a vecstore store (or empty): a foreign LMDB
        // file, or a store of a newer format, is refused untouched.
        let existingNames: [String] = try storage {
            try env.read { txn in
                var names: [String] = []
                try txn.withCursor(Database.main) { (c: Cursor) throws -> Void in
                    var entry = try c.first()
                    while let e = entry {
                        names.append(String(decoding: e.key, as: UTF8.self))
                        entry = try c.next()
                    }
                }
                return names
            }
        }
        if !existingNames.isEmpty {
            guard existingNames.contains(Format.DB.meta) else { throw .notAVecStore(path) }
            let meta = try storage { try env.openDatabases([(Format.DB.meta, [])], create: false)[0] }
            let found = try storage { try env.read { txn in try Self.formatAccess(txn, meta, path: path) } }
            if found == nil { throw .notAVecStore(path) }
        }
        let missing = specs.contains { !existingNames.contains($0.name) }
        if missing && options.readOnly { throw .notAVecStore(path) }
        let handles: [Database] = try storage { try env.openDatabases(specs, create: missing) }
        let dbs = Databases(handles)
        self.env = env
        self.dbs = dbs
        var access = try storage { try env.read { txn in try Self.formatAccess(txn, dbs.meta, path: path) } }
        if access == nil {
            if options.readOnly { throw .notAVecStore(path) }
            access = try storage {
                try env.write { txn -> FormatAccess? in
                    if let existing = try Self.formatAccess(txn, dbs.meta, path: path) { return existing }
                    try txn.withCursor(dbs.meta) { (c: Cursor) throws -> Void in
                        if try c.first() != nil { throw VecStoreError.notAVecStore(path) }
                    }
                    try txn.put(dbs.meta, Format.formatKey, Format.encodeFormatRecord())
                    try txn.put(dbs.meta, Format.nextCollectionKey, Format.encodeInternalID(1))
                    return try Self.formatAccess(txn, dbs.meta, path: path)
                }
            }
        }
        guard let access else { throw .notAVecStore(path) }
        self.writeRefusal = access.writeRefusal
    }

    /// The version rule applied to the store's `format` and `features` records; nil when there is no
    /// `format` record.
    static func formatAccess(_ txn: Transaction, _ meta: Database, path: String) throws -> FormatAccess? {
        guard let record = try txn.get(meta, Format.formatKey) else { return nil }
        return try Format.access(record, features: try txn.get(meta, Format.featuresKey), path: path)
    }

    /// Declares a feature of the store (Spec/FORMAT.md §5): readers or writers that do not implement it
    /// refuse the store or keep to reading it. Declaring one moves the store to format version 3.
    func declareFeature(_ name: String, neededToRead: Bool, neededToWrite: Bool) throws(VecStoreError) {
        let meta = dbs.meta
        try write { txn in
            try Format.declare(Format.Feature(name: name, neededToRead: neededToRead, neededToWrite: neededToWrite),
                               txn, meta: meta)
        }
    }

    /// Opens the LMDB environment, retrying while the file is being swapped in by a compaction in
    /// another process (its lock file then still belongs to the old file; see
    /// `Environment.lockMatchesDataFile`). The swap takes microseconds; after 2 s of retries it fails.
    static func openEnvironment(_ path: String, _ options: EnvironmentOptions) throws(VecStoreError) -> Environment {
        for _ in 0..<200 {
            let env: Environment
            do {
                env = try Environment(path: path, options: options)
            } catch {
                if error.code == 22 || error.code == -30793 /* MDB_INVALID */ { throw .notAVecStore(path) }
                throw .storage(error)
            }
            if env.lockMatchesDataFile() { return env }
            usleep(10_000)
        }
        throw .io("\(path) is being replaced by a compaction in another process; try again")
    }

    static func fileSize(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
    }

    // MARK: Transactions

    /// Runs `body` in a read snapshot.
    func read<R>(_ body: (Transaction) throws -> R) throws(VecStoreError) -> R {
        try storage { try env.read(body) }
    }

    /// Runs `body` in one write transaction, after checking the store was not compacted away.
    func write<R>(_ body: (Transaction) throws -> R) throws(VecStoreError) -> R {
        if let writeRefusal { throw .newerFormat(writeRefusal) }
        let dbs = self.dbs, path = self.path
        return try storage {
            try env.write { txn in
                if try txn.get(dbs.meta, Format.supersededKey) != nil {
                    throw VecStoreError.superseded(
                        "\(path) was compacted into a new file by another handle; reopen the store to write to it")
                }
                return try body(txn)
            }
        }
    }

    // MARK: Collections

    static func validateCollectionName(_ name: String) throws(VecStoreError) {
        if name.isEmpty { throw .invalidCollectionName("empty") }
        if name.utf8.count > 200 { throw .invalidCollectionName("'\(name.prefix(40))…' is longer than 200 bytes") }
        if name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            throw .invalidCollectionName("'\(name)' contains a control character")
        }
    }

    func record(_ txn: Transaction, _ name: String) throws -> CollectionRecord? {
        guard let value = try txn.get(dbs.meta, Format.collectionKey(name)) else { return nil }
        return try CollectionRecord.decode(value, name: name)
    }

    /// The existing collection `name`.
    public func collection(_ name: String) throws(VecStoreError) -> VectorCollection {
        let found = try read { txn in try record(txn, name).map { ($0, try ProjectionRecord.load(txn, dbs, $0.id)) } }
        guard let found else { throw .collectionNotFound(name) }
        return VectorCollection(store: self, name: name, record: found.0, projection: found.1)
    }

    /// The collection `name`, created with `dimension`, `metric` and `index` if it does not exist. An
    /// existing collection must have the same dimension and metric (its index is left as it is).
    public func collection(_ name: String, dimension: Int, metric: Metric = .cosine,
                           index: IndexKind = .hnswDefault) throws(VecStoreError) -> VectorCollection
    {
        try collection(name, dimension: dimension, metric: metric, index: index, projection: nil)
    }

    /// Creates (or opens) `name` with `projection` stored beside it in the creation transaction.
    func collection(_ name: String, dimension: Int, metric: Metric, index: IndexKind,
                    projection: ProjectionRecord?) throws(VecStoreError) -> VectorCollection
    {
        try Self.validateCollectionName(name)
        if case .hnsw(let p) = index { try p.validate() }
        guard (1...65_536).contains(dimension) else {
            throw .invalidArgument("dimension \(dimension) is out of range 1...65536")
        }
        if let existing = try read({ txn in try record(txn, name) }) {
            try Self.checkMatch(existing, name: name, dimension: dimension, metric: metric)
            return try collection(name)
        }
        let created = try write { txn -> CollectionRecord in
            try findOrCreate(txn, name, dimension: dimension, metric: metric, index: index, projection: projection).record
        }
        if projection == nil { return VectorCollection(store: self, name: name, record: created) }
        return try collection(name)
    }

    /// Inside `txn`: the record of collection `name`, created with `dimension`, `metric` and `index`
    /// when it does not exist (`created` says which). Creating inside the caller's transaction lets
    /// an import create its collection in its first batch, so of several concurrent importers exactly
    /// one reports the collection as new.
    func findOrCreate(_ txn: Transaction, _ name: String, dimension: Int, metric: Metric, index: IndexKind,
                      projection: ProjectionRecord? = nil, embedder: EmbedderInfo? = nil) throws
        -> (record: CollectionRecord, created: Bool)
    {
        if let existing = try record(txn, name) {
            try Self.checkMatch(existing, name: name, dimension: dimension, metric: metric)
            return (existing, false)
        }
        var nextID: UInt32 = 1
        if let v = try txn.get(dbs.meta, Format.nextCollectionKey) {
            guard v.count == 4 else {
                throw VecStoreError.corrupt(database: "meta", key: "next-collection-id", reason: "\(v.count) bytes, not 4")
            }
            nextID = UInt32(littleEndian: v.loadUnaligned(as: UInt32.self))
            guard nextID >= 1, nextID < UInt32.max else {
                throw VecStoreError.corrupt(database: "meta", key: "next-collection-id", reason: "value \(nextID) is not a collection id")
            }
        }
        let rec = CollectionRecord(id: nextID, dimension: dimension, metric: metric,
                                   blockShift: Format.blockShift(dimension: dimension),
                                   nextInternalID: 0, liveCount: 0)
        try txn.put(dbs.meta, Format.collectionKey(name), rec.encoded())
        try txn.put(dbs.meta, Format.nextCollectionKey, Format.encodeInternalID(nextID + 1))
        if case .hnsw(let p) = index { try HNSWConfig.create(p, collection: nextID).store(txn, dbs, nextID) }
        try projection?.store(txn, dbs, nextID)
        try embedder?.store(txn, dbs, nextID)
        return (rec, true)
    }

    static func checkMatch(_ r: CollectionRecord, name: String, dimension: Int, metric: Metric)
        throws(VecStoreError)
    {
        if r.dimension != dimension || r.metric != metric {
            throw .collectionMismatch(
                "collection '\(name)' exists with dimension \(r.dimension) and metric \(r.metric), not \(dimension) and \(metric)")
        }
    }

    /// Names of all collections, sorted.
    public func collectionNames() throws(VecStoreError) -> [String] {
        try read { txn in try collectionNames(in: txn) }
    }

    /// Deletes a collection and all its documents. Returns false if it did not exist.
    @discardableResult
    public func dropCollection(_ name: String) throws(VecStoreError) -> Bool {
        let dbs = self.dbs
        return try write { txn in
            guard let rec = try record(txn, name) else { return false }
            let prefix = Format.prefix(rec.id)
            for db in dbs.perCollection {
                try txn.withCursor(db) { (c: Cursor) throws -> Void in
                    while let (key, _) = try c.seek(atLeast: prefix), key.starts(with: prefix) {
                        try c.deleteCurrent()
                    }
                }
            }
            try txn.delete(dbs.meta, Format.collectionKey(name))
            for (metaPrefix, _) in Schema.metaPrefixes { try txn.delete(dbs.meta, metaPrefix + prefix) }
            return true
        }
    }
}
