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
    /// How long an open waits while a compaction in another process holds the store (seconds).
    public var compactionWait: Double = 60
    /// How much of the file's LMDB page structure the open checks before anything reads it
    /// (Spec/FORMAT.md §21): `.roots` (the default, cheap) checks the meta page, the main tree and every
    /// database's root page; `.full` every branch, leaf and sub-page and every overflow header, O(file),
    /// for files you do not trust — LMDB trusts its pages, and a damaged interior page that no check
    /// has read can crash the process when a read reaches it. A fault is `VecStoreError.corrupt`.
    public var checkPages: PageCheckLevel = .roots
    /// Whether the open takes the shared lock on `FILE-guard` (compaction's temporary store does not).
    var guarded = true
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
    /// Resolved collection views and index views reused across read transactions of the same snapshot.
    let snapshots = SnapshotCache()
    /// Whether this handle was opened read-only (the environment may be shared with a writable one).
    let isReadOnly: Bool
    private let closeState = CloseState()

    /// The sidecar file every open holds a shared `flock` on, and compaction an exclusive one
    /// (Spec/FORMAT.md §15).
    public static func guardPath(_ path: String) -> String { path + "-guard" }
    /// Why this build must not write the store (its format or a feature needs a newer vecstore), or nil.
    let writeRefusal: String?

    /// Opens the store at `url`, creating it unless `options.create` is false.
    public convenience init(at url: URL, options: StoreOptions = StoreOptions()) throws(VecStoreError) {
        try self.init(path: url.path, options: options)
    }

    /// Opens the store at `path`, creating it unless `options.create` is false.
    public init(path: String, options: StoreOptions = StoreOptions()) throws(VecStoreError) {
        self.path = path
        self.isReadOnly = options.readOnly
        let exists = FileManager.default.fileExists(atPath: path)
        if !exists && (!options.create || options.readOnly) {
            throw .storeNotFound(path)
        }
        var envOptions = EnvironmentOptions()
        envOptions.readOnly = options.readOnly
        envOptions.mapSize = max(options.initialMapSize, Self.fileSize(path) * 2)
        envOptions.sidecarLockPath = options.guarded ? Self.guardPath(path) : nil
        envOptions.sidecarWait = options.compactionWait
        // vecstore parallelises across BLAS calls itself; an OpenBLAS pool left at its default keeps
        // worker threads spinning (sched_yield) that steal a core from searches.
        BLAS.useSingleThread()
        // A file that is not an LMDB data file is refused before LMDB or the guard creates anything
        // beside it; an open that fails later (a foreign LMDB file, a directory, a newer format) takes
        // back the side files it created.
        if exists, !LMDBFile.looksLikeLMDB(path: path, emptyIsNew: !options.readOnly) {
            throw .notAVecStore(path)
        }
        let sideFiles = [path + "-lock"] + (envOptions.sidecarLockPath.map { [$0] } ?? [])
        let absentSideFiles = sideFiles.filter { !FileManager.default.fileExists(atPath: $0) }
        let env: Environment
        do {
            env = try Self.openEnvironment(path, envOptions)
        } catch {
            Environment.removeUnusedSideFiles(absentSideFiles, of: path)
            throw error
        }
        do {
            (self.dbs, self.writeRefusal) = try Self.prepare(env, path: path, options: options)
            env.endCreation()  // other processes' opens of a file this one created proceed from here
        } catch {
            env.release()
            Environment.removeUnusedSideFiles(absentSideFiles, of: path)
            throw error
        }
        self.env = env
    }

    deinit {
        if closeState.close() { env.release() }
    }

    /// Closes this handle. The process's environment for the file closes when its last handle does
    /// (handles of one file share it); later calls on this handle throw `.io("… is closed")`.
    public func close() {
        if closeState.close() { env.release() }
    }

    /// Opens or creates the databases; refuses foreign files and newer formats untouched. Returns the
    /// handles and why this build must not write the store (or nil).
    private static func prepare(_ env: Environment, path: String, options: StoreOptions) throws(VecStoreError)
        -> (Databases, String?)
    {
        let specs = Schema.databases.map { (name: $0.name, flags: $0.flags) }
        // LMDB trusts its pages: the trees are checked before the first cursor walks them, in the same
        // read transaction (the snapshot listed below is the one checked).
        // Nothing is created before the file is known to be a vecstore store (or empty): a foreign LMDB
        // file, or a store of a newer format, is refused untouched.
        let existingNames: [String] = try storage {
            try env.checkedRead(options.checkPages, expectedFlags: expectedFlags) { txn, _ in
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
        // A store this build may not write (a newer write version or feature) gets no new databases.
        var mayCreate = !options.readOnly
        if !existingNames.isEmpty {
            guard existingNames.contains(Format.DB.meta) else { throw .notAVecStore(path) }
            let meta = try storage { try env.openDatabases([(Format.DB.meta, [])], create: false)[0] }
            let found = try storage { try env.read { txn in try Self.formatAccess(txn, meta, path: path) } }
            if found?.writeRefusal != nil { mayCreate = false }
            if found == nil {
                // Another process creating the store commits its databases before its format record: an
                // empty `meta` beside vecstore's own database names only is that window, not a foreign
                // file. The format record is then found, or written, below under the writer lock.
                let ours = Set(specs.map(\.name))
                let metaIsEmpty = try storage {
                    try env.read { txn in try txn.withCursor(meta) { (c: Cursor) throws -> Bool in try c.first() == nil } }
                }
                guard metaIsEmpty, existingNames.allSatisfy(ours.contains) else { throw .notAVecStore(path) }
            }
        }
        let absent = Schema.databases.filter { !existingNames.contains($0.name) }
        if !mayCreate && absent.contains(where: { !$0.optional }) { throw .notAVecStore(path) }
        // Without creating, an optional database the store lacks (an index kind newer than the store)
        // is left out: no collection of the store can have that kind.
        let entries = mayCreate ? Schema.databases : Schema.databases.filter { existingNames.contains($0.name) }
        let handles: [Database] = try storage {
            try env.openDatabases(entries.map { (name: $0.name, flags: $0.flags) }, create: !absent.isEmpty && mayCreate)
        }
        let dbs = try Databases(Array(zip(entries, handles)).map { (entry: $0.0, handle: $0.1) })
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
        return (dbs, access.writeRefusal)
    }

    /// Each database of the schema and the flags it must carry, for the page checker.
    static let expectedFlags: [String: DatabaseFlags] = Dictionary(
        Schema.databases.map { ($0.name, $0.flags) }, uniquingKeysWith: { first, _ in first })

    /// Checks the LMDB page structure of the current snapshot of `env` to `level` (Spec/FORMAT.md §21);
    /// a fault is `.corrupt` naming the database, the page and what is wrong.
    static func checkPages(_ env: Environment, _ level: PageCheckLevel) throws(VecStoreError) -> PageCheckReport {
        try storage { try env.checkPages(level, expectedFlags: expectedFlags) }
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

    /// The process's LMDB environment for `path` (shared with other handles of the same file). The
    /// open holds `FILE-guard` shared, so it waits while a compaction holds it exclusively and then
    /// opens the new file: a data file and a lock file of different generations are never paired.
    static func openEnvironment(_ path: String, _ options: EnvironmentOptions) throws(VecStoreError) -> Environment {
        do {
            return try Environment.shared(path: path, options: options)
        } catch {
            if error.code == 22 || error.code == -30793 /* MDB_INVALID */ { throw .notAVecStore(path) }
            if error.isBusy { throw .busy("\(error)") }
            throw .storage(error)
        }
    }

    static func fileSize(_ path: String) -> Int {
        // `stat`, not `FileManager.attributesOfItem`: in a fresh process the latter's dictionary and
        // `NSNumber` cast cost ~0.4 ms of a 1M-row store's open (BENCHMARKS.md, Scale).
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : 0
    }

    // MARK: Transactions

    /// Runs `body` in a read snapshot.
    func read<R>(_ body: (Transaction) throws -> R) throws(VecStoreError) -> R {
        if closeState.isClosed { throw .io("\(path) is closed") }
        return try storage { try env.read(body) }
    }

    /// Runs `body` in one read transaction whose snapshot's LMDB page structure was checked to `level`
    /// first (`Environment.checkedRead`: retried in a newer snapshot when a writer rewrote the meta page).
    func checkedRead<R>(_ level: PageCheckLevel, _ body: (Transaction, PageCheckReport) throws -> R)
        throws(VecStoreError) -> R
    {
        if closeState.isClosed { throw .io("\(path) is closed") }
        return try storage { try env.checkedRead(level, expectedFlags: Self.expectedFlags, body) }
    }

    /// Runs `body` in one write transaction, after checking the store was not compacted away.
    func write<R>(_ body: (Transaction) throws -> R) throws(VecStoreError) -> R {
        if let writeRefusal { throw .newerFormat(writeRefusal) }
        let dbs = self.dbs, path = self.path
        if closeState.isClosed { throw .io("\(path) is closed") }
        if isReadOnly { throw .invalidArgument("\(path) was opened read-only") }
        return try Self.classifyWriteFailure(path) { () throws(VecStoreError) -> R in
            try storage {
                try env.write { txn in
                    if try txn.get(dbs.meta, Format.supersededKey) != nil {
                        throw VecStoreError.superseded(
                            "\(path) was compacted into a new file by another handle; reopen the store to write to it")
                    }
                    return try body(txn)
                }
            }
        }
    }

    /// Runs a write, reporting an I/O error as `diskFull` when the file system is (nearly) full or
    /// the file reached the process's size limit: LMDB reports a short write at commit as EIO.
    static func classifyWriteFailure<R>(_ path: String, _ body: () throws(VecStoreError) -> R) throws(VecStoreError)
        -> R
    {
        do {
            return try body()
        } catch .storage(let e) where e.code == EIO || e.code == ENOSPC || e.code == EFBIG {
            throw .diskFull("\(e); \(DiskSpace.describe(near: path))")
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

    /// Creates (or opens) `name` with `projection` and `embedder` stored beside it in the creation
    /// transaction.
    func collection(_ name: String, dimension: Int, metric: Metric, index: IndexKind,
                    projection: ProjectionRecord?, embedder: EmbedderInfo? = nil) throws(VecStoreError) -> VectorCollection
    {
        try Self.validateCollectionName(name)
        try IndexRegistry.kind(for: index)?.validate(index, dimension: dimension, metric: metric)
        guard (1...65_536).contains(dimension) else {
            throw .invalidArgument("dimension \(dimension) is out of range 1...65536")
        }
        if let existing = try read({ txn in try record(txn, name) }) {
            try Self.checkMatch(existing, name: name, dimension: dimension, metric: metric)
            return try collection(name)
        }
        let created = try write { txn -> CollectionRecord in
            try findOrCreate(txn, name, dimension: dimension, metric: metric, index: index, projection: projection,
                             embedder: embedder).record
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
        let nextID = try nextCollectionID(txn)
        // A damaged counter must not hand out the id of an existing collection: their rows would mix.
        for other in try collectionNames(in: txn) where try record(txn, other)?.id == nextID {
            throw VecStoreError.corrupt(database: "meta", key: "next-collection-id",
                                        reason: "value \(nextID) is already the id of collection '\(other)'")
        }
        let rec = CollectionRecord(id: nextID, dimension: dimension, metric: metric,
                                   blockShift: Format.blockShift(dimension: dimension),
                                   nextInternalID: 0, liveCount: 0)
        try txn.put(dbs.meta, Format.collectionKey(name), rec.encoded())
        try txn.put(dbs.meta, Format.nextCollectionKey, Format.encodeInternalID(nextID + 1))
        if let kind = IndexRegistry.kind(for: index) { try createIndex(txn, kind, rec, parameters: index) }
        try projection?.store(txn, dbs, nextID)
        try embedder?.store(txn, dbs, nextID)
        return (rec, true)
    }

    /// The id the next new collection gets (`next-collection-id`, 1 when absent), checked to be 4 bytes
    /// holding a usable id.
    func nextCollectionID(_ txn: Transaction) throws -> UInt32 {
        guard let v = try txn.get(dbs.meta, Format.nextCollectionKey) else { return 1 }
        guard v.count == 4 else {
            throw VecStoreError.corrupt(database: "meta", key: "next-collection-id", reason: "\(v.count) bytes, not 4")
        }
        let nextID = UInt32(littleEndian: v.loadUnaligned(as: UInt32.self))
        guard nextID >= 1, nextID < UInt32.max else {
            throw VecStoreError.corrupt(database: "meta", key: "next-collection-id", reason: "value \(nextID) is not a collection id")
        }
        return nextID
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
            for db in dbs.perCollection { try txn.deletePrefix(db, prefix) }
            try txn.delete(dbs.meta, Format.collectionKey(name))
            for (metaPrefix, _) in Schema.metaPrefixes { try txn.delete(dbs.meta, metaPrefix + prefix) }
            return true
        }
    }
}

/// Whether a handle was closed (set once, from any thread).
final class CloseState: @unchecked Sendable {
    private let lock = NSLock()
    private var closed = false
    /// Marks closed; true for the call that closed it.
    func close() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if closed { return false }
        closed = true
        return true
    }
    var isClosed: Bool {
        lock.lock()
        defer { lock.unlock() }
        return closed
    }
}

/// Free space and file-size limits, for full-disk messages and compaction's check.
enum DiskSpace {
    /// Bytes available to this process on the file system holding `path` (or its directory).
    static func available(near path: String) -> Int? {
        var st = statvfs()
        let dir = (path as NSString).deletingLastPathComponent
        guard statvfs(FileManager.default.fileExists(atPath: path) ? path : (dir.isEmpty ? "." : dir), &st) == 0 else {
            return nil
        }
        return Int(st.f_bavail) * Int(st.f_frsize)
    }

    /// The process's file-size limit (`ulimit -f`) in bytes, or nil when unlimited.
    static func fileSizeLimit() -> Int? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_FSIZE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max else { return nil }
        return Int(clamping: limit.rlim_cur)
    }

    static func describe(near path: String) -> String {
        var parts: [String] = []
        if let free = available(near: path) { parts.append("\(free / 1_048_576) MiB free on its file system") }
        if let limit = fileSizeLimit() { parts.append("file-size limit \(limit / 1_048_576) MiB") }
        return "\(path): " + (parts.isEmpty ? "no space information" : parts.joined(separator: ", "))
            + "; committed batches are intact"
    }
}
