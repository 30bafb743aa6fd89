import CLMDB

#if canImport(Glibc)
import Glibc
#endif

/// A named LMDB database handle. Valid for the life of its `Environment`.
public struct Database: Sendable, Hashable {
    /// The LMDB handle.
    public let dbi: MDB_dbi
    /// The database's name inside the environment.
    public let name: String

    /// Creates a handle value (normally obtained from `Environment.openDatabases`).
    public init(dbi: MDB_dbi, name: String) {
        self.dbi = dbi
        self.name = name
    }

    /// The unnamed main database, whose keys are the names of the named databases.
    public static let main = Database(dbi: 1, name: "")
}

/// Flags for opening a named database.
public struct DatabaseFlags: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// `MDB_DUPSORT`: a key may hold several sorted values.
    public static let dupSort = DatabaseFlags(rawValue: UInt32(MDB_DUPSORT))
    /// `MDB_DUPFIXED`: with `dupSort`, all values of a key have the same size.
    public static let dupFixed = DatabaseFlags(rawValue: UInt32(MDB_DUPFIXED))
    /// `MDB_INTEGERKEY`: keys are native-endian unsigned integers.
    public static let integerKey = DatabaseFlags(rawValue: UInt32(MDB_INTEGERKEY))
}

/// Options for opening an environment.
public struct EnvironmentOptions: Sendable {
    /// Initial map size in bytes; grown automatically when a write fills it.
    public var mapSize: Int = 1 << 30
    /// Maximum number of named databases.
    public var maxDatabases: UInt32 = 32
    /// Maximum number of concurrent read transactions across all processes.
    public var maxReaders: UInt32 = 1024
    /// Open read-only (no write transactions).
    public var readOnly: Bool = false
    /// Unix permissions for a newly created file.
    public var mode: mode_t = 0o644
    /// Creates default options.
    public init() {}
}

/// An LMDB environment stored as a single file (`MDB_NOSUBDIR`) plus a `-lock` file beside it.
///
/// Opened with `MDB_NOTLS`, so read transactions are not tied to threads: any number of readers run
/// concurrently with one writer. The environment grows its memory map when a write transaction
/// reports `MDB_MAP_FULL` and reruns that transaction, so a write body must be safe to run again.
public final class Environment: @unchecked Sendable {
    /// The file path of the data file.
    public let path: String
    /// Whether the environment was opened read-only.
    public let isReadOnly: Bool
    let handle: OpaquePointer
    /// Transactions hold this shared; growing the map holds it exclusively (LMDB requires no active
    /// transaction in this process when the map size changes).
    private let gate: UnsafeMutablePointer<pthread_rwlock_t>

    /// Opens (creating if needed) the environment at `path`.
    public init(path: String, options: EnvironmentOptions = EnvironmentOptions()) throws(LMDBError) {
        var env: OpaquePointer?
        try check(mdb_env_create(&env), "mdb_env_create")
        guard let env else { throw LMDBError(code: EINVAL, operation: "mdb_env_create") }
        do {
            try check(mdb_env_set_maxdbs(env, options.maxDatabases), "mdb_env_set_maxdbs")
            try check(mdb_env_set_maxreaders(env, options.maxReaders), "mdb_env_set_maxreaders")
            try check(mdb_env_set_mapsize(env, options.mapSize), "mdb_env_set_mapsize")
            var flags = UInt32(MDB_NOSUBDIR | MDB_NOTLS)
            if options.readOnly { flags |= UInt32(MDB_RDONLY) }
            try check(mdb_env_open(env, path, flags, options.mode), "mdb_env_open(\(path))")
        } catch {
            mdb_env_close(env)
            throw error
        }
        self.handle = env
        self.path = path
        self.isReadOnly = options.readOnly
        self.gate = .allocate(capacity: 1)
        pthread_rwlock_init(gate, nil)
        // A reader slot left by a process that died is reclaimed here, so it cannot pin old pages.
        var dead: Int32 = 0
        mdb_reader_check(env, &dead)
    }

    deinit {
        mdb_env_close(handle)
        pthread_rwlock_destroy(gate)
        gate.deallocate()
    }

    /// Whether the lock file describes this data file. LMDB readers choose the meta page by the last
    /// transaction id recorded in the lock file; a process that opens a data file which was just
    /// renamed into place (vecstore compaction) while the old lock file is still held would attach to
    /// the old file's lock and read the wrong meta page. Here the lock's transaction id (seen by a read
    /// transaction) must equal the newest meta page's; a writer committing in between can make them
    /// differ for an instant, so a mismatch is confirmed three times.
    public func lockMatchesDataFile() -> Bool {
        for attempt in 0..<3 {
            var txn: OpaquePointer?
            guard mdb_txn_begin(handle, nil, UInt32(MDB_RDONLY), &txn) == MDB_SUCCESS, let txn else { return true }
            let lockTxnID = mdb_txn_id(txn)
            var info = MDB_envinfo()
            mdb_env_info(handle, &info)
            mdb_txn_abort(txn)
            if lockTxnID == info.me_last_txnid { return true }
            if attempt < 2 { usleep(2000) }
        }
        return false
    }

    /// The page size of the environment.
    public var pageSize: Int {
        var stat = MDB_stat()
        mdb_env_stat(handle, &stat)
        return Int(stat.ms_psize)
    }

    /// The current map size and the last used page number.
    public func info() -> (mapSize: Int, lastPage: Int, maxReaders: Int, readersUsed: Int) {
        var info = MDB_envinfo()
        mdb_env_info(handle, &info)
        return (info.me_mapsize, info.me_last_pgno, Int(info.me_maxreaders), Int(info.me_numreaders))
    }

    /// Opens named databases, creating them when `create` is true (needs a writable environment).
    public func openDatabases(_ specs: [(name: String, flags: DatabaseFlags)], create: Bool) throws -> [Database] {
        let body = { (txn: Transaction) throws -> [Database] in
            var result: [Database] = []
            for spec in specs {
                var dbi: MDB_dbi = 0
                var flags = spec.flags.rawValue
                if create { flags |= UInt32(MDB_CREATE) }
                try check(mdb_dbi_open(txn.handle(), spec.name, flags, &dbi), "mdb_dbi_open(\(spec.name))")
                result.append(Database(dbi: dbi, name: spec.name))
            }
            return result
        }
        if create { return try write(body) }
        // Handles opened in a read transaction survive only if that transaction commits (mdb_dbi_open docs).
        pthread_rwlock_rdlock(gate)
        defer { pthread_rwlock_unlock(gate) }
        var txnHandle: OpaquePointer?
        try check(mdb_txn_begin(handle, nil, UInt32(MDB_RDONLY), &txnHandle), "mdb_txn_begin(open databases)")
        guard let txnHandle else { throw LMDBError(code: EINVAL, operation: "mdb_txn_begin(open databases)") }
        let txn = Transaction(handle: txnHandle, writable: false)
        let result: [Database]
        do {
            result = try body(txn)
        } catch {
            txn.invalidate()
            mdb_txn_abort(txnHandle)
            throw error
        }
        txn.invalidate()
        try check(mdb_txn_commit(txnHandle), "mdb_txn_commit(open databases)")
        return result
    }

    /// Runs `body` in a read-only snapshot transaction. Values read inside are valid only inside `body`.
    public func read<R>(_ body: (Transaction) throws -> R) throws -> R {
        while true {
            pthread_rwlock_rdlock(gate)
            var txnHandle: OpaquePointer?
            let rc = mdb_txn_begin(handle, nil, UInt32(MDB_RDONLY), &txnHandle)
            if rc == MDB_MAP_RESIZED {
                pthread_rwlock_unlock(gate)
                try adoptResizedMap()
                continue
            }
            defer { pthread_rwlock_unlock(gate) }
            try check(rc, "mdb_txn_begin(read)")
            guard let txnHandle else { throw LMDBError(code: EINVAL, operation: "mdb_txn_begin(read)") }
            let txn = Transaction(handle: txnHandle, writable: false)
            defer {
                txn.invalidate()
                mdb_txn_abort(txnHandle)
            }
            return try body(txn)
        }
    }

    /// Runs `body` in a write transaction and commits it when `body` returns; aborts it when `body`
    /// throws. When LMDB reports the map full, the transaction is aborted, the map doubled and `body`
    /// run again from the start; `body` must therefore keep all its state in the transaction.
    public func write<R>(_ body: (Transaction) throws -> R) throws -> R {
        if isReadOnly { throw LMDBError(code: EACCES, operation: "write transaction on a read-only store") }
        while true {
            pthread_rwlock_rdlock(gate)
            var txnHandle: OpaquePointer?
            let rc = mdb_txn_begin(handle, nil, 0, &txnHandle)
            if rc == MDB_MAP_RESIZED {
                pthread_rwlock_unlock(gate)
                try adoptResizedMap()
                continue
            }
            var retryAfterGrowing = false
            do {
                defer { pthread_rwlock_unlock(gate) }
                try check(rc, "mdb_txn_begin(write)")
                guard let txnHandle else { throw LMDBError(code: EINVAL, operation: "mdb_txn_begin(write)") }
                let txn = Transaction(handle: txnHandle, writable: true)
                do {
                    let result = try body(txn)
                    txn.invalidate()
                    try check(mdb_txn_commit(txnHandle), "mdb_txn_commit")  // frees the handle either way
                    return result
                } catch let error as LMDBError where error.isMapFull {
                    if txn.isLive { txn.invalidate(); mdb_txn_abort(txnHandle) }
                    retryAfterGrowing = true
                } catch {
                    if txn.isLive { txn.invalidate(); mdb_txn_abort(txnHandle) }
                    throw error
                }
            }
            if retryAfterGrowing { try growMap() }
        }
    }

    /// Doubles the map size. Waits until no transaction of this process is active.
    private func growMap() throws(LMDBError) {
        pthread_rwlock_wrlock(gate)
        defer { pthread_rwlock_unlock(gate) }
        let current = info().mapSize
        try check(mdb_env_set_mapsize(handle, current * 2), "mdb_env_set_mapsize(grow to \(current * 2))")
    }

    /// Another process grew the map: adopt its size.
    private func adoptResizedMap() throws(LMDBError) {
        pthread_rwlock_wrlock(gate)
        defer { pthread_rwlock_unlock(gate) }
        try check(mdb_env_set_mapsize(handle, 0), "mdb_env_set_mapsize(adopt)")
    }

    /// Flushes buffers to disk (`mdb_env_sync` with force).
    public func sync() throws(LMDBError) {
        try check(mdb_env_sync(handle, 1), "mdb_env_sync")
    }

    /// Writes a compacted copy of the whole environment to `path` (`mdb_env_copy2` with `MDB_CP_COMPACT`).
    public func copyCompacted(to path: String) throws(LMDBError) {
        try check(mdb_env_copy2(handle, path, UInt32(MDB_CP_COMPACT)), "mdb_env_copy2(\(path))")
    }

    /// Number of reader-table slots reclaimed from dead processes.
    @discardableResult
    public func reclaimStaleReaders() -> Int {
        var dead: Int32 = 0
        mdb_reader_check(handle, &dead)
        return Int(dead)
    }
}
