import CLMDB
import Foundation
import Synchronization

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
    /// With `Environment.shared`: a sidecar file on which every open holds a shared `flock` for as
    /// long as the environment is open, and which `lockExclusive()` takes exclusively (compaction), so
    /// that an operation replacing the data file never runs while another process has it open.
    public var sidecarLockPath: String?
    /// How long an open waits for an exclusive holder of the sidecar lock (a compaction) to finish.
    /// An open that creates the data file holds the sidecar exclusively until `endCreation()`, so
    /// that no other process sees the file before its creator has set it up.
    public var sidecarWait: Double = 60
    /// How long growing the map waits for this process's read transactions to end before failing.
    public var growthWait: Double = 30
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
    /// transaction in this process when the map size changes). Writer-preferring, so steady reads
    /// cannot starve growth; a thread that already holds it (a write inside a read closure) does not
    /// lock it again (`depthKey` counts its holds), and never waits for growth itself.
    private let gate: UnsafeMutablePointer<pthread_rwlock_t>
    /// Per-thread count of `gate` holds.
    private let depthKey: pthread_key_t
    private let growthWait: Double
    /// Sidecar lock file descriptor (shared `flock` held while open), or -1.
    private let sidecarFD: Int32
    /// Whether this open created the data file and still holds the sidecar exclusively (under `registryLock`).
    private var holdsCreationLock = false
    /// The registry key (device, inode of the data file) of a shared environment.
    private var registryKey: FileID?
    /// `Environment.shared` handles still open on this environment (guarded by `registryLock`).
    private var users = 0
    private var closed = false
    private let supersededAtomic = Atomic<Bool>(false)
    /// Read transactions ended with `mdb_txn_reset` and kept for `mdb_txn_renew`: a renewed handle
    /// keeps its reader slot (`MDB_NOTLS`), so a read skips `mdb_txn_begin`'s allocation and the
    /// reader-table mutex. Each entry also keeps the `Transaction` object that last wrapped the handle
    /// when nothing else held it, so a read allocates nothing. At most `maxIdleReaders` are kept; a kept
    /// (reset) transaction holds no snapshot, so it never holds back a writer's page reuse.
    private let idleReaders = Mutex<[IdleReader]>({
        var pool: [IdleReader] = []
        pool.reserveCapacity(Environment.maxIdleReaders)
        return pool
    }())
    /// How many reset read transactions are kept for reuse (each holds one reader-table slot).
    package static let maxIdleReaders = 16
    /// Bumped whenever the map may have moved (grown or adopted another process's size), under the
    /// exclusive gate; see `Transaction.mapGeneration`.
    private let mapGenerationAtomic = Atomic<Int>(0)
    /// The `MapReads` of the current map generation (made on the first read transaction of it).
    private let mapReadsCache = Mutex<(generation: Int, reads: MapReads?)>((-1, nil))

    /// Opens (creating if needed) the environment at `path`.
    public convenience init(path: String, options: EnvironmentOptions = EnvironmentOptions()) throws(LMDBError) {
        try self.init(path: path, options: options, sidecarFD: -1)
    }

    private init(path: String, options: EnvironmentOptions, sidecarFD: Int32) throws(LMDBError) {
        var key = pthread_key_t()
        let keyStatus = pthread_key_create(&key, nil)
        guard keyStatus == 0 else { throw LMDBError(code: keyStatus, operation: "pthread_key_create") }
        var env: OpaquePointer?
        do {
            try check(mdb_env_create(&env), "mdb_env_create")
        } catch {
            pthread_key_delete(key)
            throw error
        }
        guard let env else {
            pthread_key_delete(key)
            throw LMDBError(code: EINVAL, operation: "mdb_env_create")
        }
        do {
            try check(mdb_env_set_maxdbs(env, options.maxDatabases), "mdb_env_set_maxdbs")
            try check(mdb_env_set_maxreaders(env, options.maxReaders), "mdb_env_set_maxreaders")
            try check(mdb_env_set_mapsize(env, options.mapSize), "mdb_env_set_mapsize")
            var flags = UInt32(MDB_NOSUBDIR | MDB_NOTLS)
            if options.readOnly { flags |= UInt32(MDB_RDONLY) }
            if !options.readOnly { try Self.reserveLockFile(path + "-lock", readers: options.maxReaders, mode: options.mode) }
            try check(mdb_env_open(env, path, flags, options.mode), "mdb_env_open(\(path))")
        } catch {
            mdb_env_close(env)
            pthread_key_delete(key)
            throw error
        }
        self.handle = env
        self.path = path
        self.isReadOnly = options.readOnly
        self.sidecarFD = sidecarFD
        self.growthWait = options.growthWait
        self.gate = .allocate(capacity: 1)
        var attributes = pthread_rwlockattr_t()
        pthread_rwlockattr_init(&attributes)
        pthread_rwlockattr_setkind_np(&attributes, Int32(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        pthread_rwlock_init(gate, &attributes)
        pthread_rwlockattr_destroy(&attributes)
        self.depthKey = key
        // A reader slot left by a process that died is reclaimed here, so it cannot pin old pages.
        var dead: Int32 = 0
        mdb_reader_check(env, &dead)
    }

    /// Allocates the disk blocks of LMDB's lock file before LMDB maps it. LMDB extends the lock file with
    /// `ftruncate` and then writes it through a shared memory map; on a full file system the first touch
    /// of an unbacked page raises SIGBUS and kills the process. Reserving the blocks first
    /// (`FALLOC_FL_KEEP_SIZE`, so the file's size and LMDB's reader-table arithmetic are untouched) turns
    /// that into an `ENOSPC` error here. File systems without `fallocate` are left to LMDB as before.
    /// A lock file this call created is removed again when the reservation fails.
    static func reserveLockFile(_ lockPath: String, readers: UInt32, mode: mode_t) throws(LMDBError) {
        // LMDB's lock file: a 192-byte header plus one 64-byte slot per reader after the first; one
        // page of slack covers the header on any layout.
        let bytes = (off_t(readers) * 64 + 4096 + 4095) / 4096 * 4096
        let created: Bool
        var fd = open(lockPath, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        if fd >= 0 {
            created = true
        } else {
            created = false
            fd = open(lockPath, O_RDWR | O_CLOEXEC)
            guard fd >= 0 else { return }  // LMDB reports why it cannot open the file
        }
        let error = vs_reserve_blocks(fd, Int64(bytes))
        Glibc.close(fd)
        if error == ENOSPC || error == EDQUOT || error == EFBIG {
            if created { unlink(lockPath) }
            throw LMDBError(code: error, operation: "reserving \(bytes) bytes for \(lockPath)")
        }
    }

    deinit {
        if !closed {
            abortIdleReaders()
            mdb_env_close(handle)
        }
        if sidecarFD >= 0 { Glibc.close(sidecarFD) }
        pthread_key_delete(depthKey)
        pthread_rwlock_destroy(gate)
        gate.deallocate()
    }

    // MARK: One environment per file per process

    /// Device and inode of a data file: the registry key.
    struct FileID: Hashable {
        let device: UInt64
        let inode: UInt64
        init(_ st: stat) {
            device = UInt64(st.st_dev)
            inode = UInt64(st.st_ino)
        }
    }

    nonisolated(unsafe) private static var registry: [FileID: Environment] = [:]
    private static let registryLock = NSLockLike()

    private static func fileID(path: String) -> FileID? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return FileID(st)
    }

    private func fileID() -> FileID? {
        var fd: Int32 = -1
        guard mdb_env_get_fd(handle, &fd) == MDB_SUCCESS, fd >= 0 else { return nil }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        return FileID(st)
    }

    /// The process's environment for the data file at `path`, opened (creating the file if needed)
    /// when this process has none. LMDB allows one environment per file per process: closing a second
    /// one would clear the reader slots of the first. A shared environment stays open until every
    /// caller has called `release()`. A writable request for a file opened read-only here fails (close
    /// the read-only handle first).
    ///
    /// With `options.sidecarLockPath`, a new environment first takes a shared `flock` on that file,
    /// waiting up to `options.sidecarWait` seconds while another process holds it exclusively.
    public static func shared(path: String, options: EnvironmentOptions = EnvironmentOptions()) throws(LMDBError)
        -> Environment
    {
        if let existing = try registered(path: path, readOnly: options.readOnly) { return existing }
        // Waiting for a compaction in another process happens outside `registryLock`, so that it
        // does not hold up this process's opens and releases of other files.
        let (fd, creating) = try options.sidecarLockPath.map { sidecar throws(LMDBError) in
            try lockShared(sidecar, of: path, options: options)
        } ?? (-1, false)
        registryLock.lock()
        defer { registryLock.unlock() }
        // Under the shared lock the file can no longer be replaced: look again (it may have been
        // replaced while this open waited, or opened by another thread).
        if let id = fileID(path: path), let existing = registry[id] {
            if fd >= 0 { Glibc.close(fd) }
            return try existing.adopt(readOnly: options.readOnly)
        }
        // Opened read-write even for a read-only request when the file allows it, so that a later
        // writable handle of this process can share it (the caller enforces its own read-only-ness);
        // a file or directory without write permission is opened read-only.
        var envOptions = options
        envOptions.readOnly = false
        let env: Environment
        do {
            do {
                env = try Environment(path: path, options: envOptions, sidecarFD: fd)
            } catch where options.readOnly && [EACCES, EROFS, EPERM].contains(error.code) {
                env = try Environment(path: path, options: options, sidecarFD: fd)
            }
        } catch {
            if fd >= 0 { Glibc.close(fd) }
            throw error
        }
        env.users = 1
        env.holdsCreationLock = creating
        if let id = env.fileID() {
            env.registryKey = id
            registry[id] = env
        }
        return env
    }

    /// The registered environment of the file at `path`, adopted as one more handle, or nil.
    private static func registered(path: String, readOnly: Bool) throws(LMDBError) -> Environment? {
        registryLock.lock()
        defer { registryLock.unlock() }
        guard let id = fileID(path: path), let existing = registry[id] else { return nil }
        return try existing.adopt(readOnly: readOnly)
    }

    /// Opens the sidecar lock file and takes its shared `flock`, waiting up to `options.sidecarWait`
    /// seconds while another process holds it exclusively. Returns the descriptor, or -1 for a
    /// read-only open where the sidecar cannot be created (nothing can compact such a store either).
    /// A sidecar unlinked while this open waited on it (`removeUnused`) is let go and the current
    /// one at the path locked instead, so every open of a file locks one and the same sidecar.
    ///
    /// When the data file does not exist yet, the lock is taken exclusively if it is free, and the
    /// second value is true: the caller creates the store and calls `endCreation()`. Processes
    /// opening the file meanwhile wait for the shared lock, so none sees it half set up.
    private static func lockShared(_ sidecar: String, of path: String, options: EnvironmentOptions) throws(LMDBError)
        -> (Int32, Bool)
    {
        let deadline = monotonicSeconds() + options.sidecarWait
        while true {
            var exclusive = false
            var fd = open(sidecar, (options.readOnly ? O_RDONLY : O_RDWR) | O_CREAT | O_CLOEXEC, options.mode)
            if fd < 0 && options.readOnly { fd = open(sidecar, O_RDONLY | O_CLOEXEC) }
            if fd < 0 {
                if options.readOnly && (errno == EACCES || errno == EROFS) { return (-1, false) }
                throw LMDBError(code: errno, operation: "open(\(sidecar))")
            }
            while true {
                if !options.readOnly && access(path, F_OK) != 0 && flock(fd, LOCK_EX | LOCK_NB) == 0 {
                    exclusive = true
                    break
                }
                if flock(fd, LOCK_SH | LOCK_NB) == 0 { break }
                let e = errno
                if e != EWOULDBLOCK && e != EINTR {
                    Glibc.close(fd)
                    throw LMDBError(code: e, operation: "flock(\(sidecar), shared)")
                }
                if monotonicSeconds() > deadline {
                    Glibc.close(fd)
                    throw LMDBError(code: EBUSY, operation: "waiting \(Int(options.sidecarWait)) s for a compaction of \(path) in another process to finish")
                }
                usleep(10_000)
            }
            var held = stat()
            if fstat(fd, &held) == 0, let current = fileID(path: sidecar), current == FileID(held) { return (fd, exclusive) }
            Glibc.close(fd)
        }
    }

    /// Removes the data file at `path`, its LMDB lock file and `sidecar`, if no other process has the
    /// file open (none holds `sidecar`) and `isUnused` — called on the environment opened for the
    /// check, under the exclusive lock — says so. Returns whether the files were removed. Used to
    /// take back a store that a failed command created and never wrote to.
    public static func removeUnused(path: String, sidecar: String, isUnused: (Environment) throws -> Bool) -> Bool {
        if access(path, F_OK) != 0 {
            // No data file (its creation failed): only the lock file and the sidecar can be left, and
            // only while nobody holds the sidecar.
            let fd = open(sidecar, O_RDWR | O_CLOEXEC)
            guard fd >= 0 else { return false }
            defer { Glibc.close(fd) }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0, access(path, F_OK) != 0 else { return false }
            unlink(path + "-lock")
            unlink(sidecar)
            return true
        }
        var options = EnvironmentOptions()
        options.sidecarLockPath = sidecar
        options.sidecarWait = 0
        guard let env = try? Environment.shared(path: path, options: options) else { return false }
        defer { env.release() }
        // Another handle of this process sharing the environment also counts as a user.
        let alone = { () -> Bool in registryLock.lock(); defer { registryLock.unlock() }; return env.users == 1 }()
        guard alone, (try? env.lockExclusive(wait: 0)) != nil else { return false }
        guard (try? isUnused(env)) == true else {
            env.unlockExclusive()
            return false
        }
        // Openers wait on the sidecar while it is held exclusively; unlinking it last makes them
        // retry on a fresh one (see `lockShared`) and create a new store.
        unlink(path)
        unlink(path + "-lock")
        unlink(sidecar)
        env.markSuperseded()
        return true
    }

    /// Removes the side files in `created` (`FILE-lock`, a sidecar lock) — files that an open of the data
    /// file `path`, which then failed, had created — each only while nothing uses it: no environment of
    /// this process has `path` open, no process holds the file with `flock` (the sidecar), and no LMDB
    /// environment has it open (LMDB keeps a shared `fcntl` lock on the lock file's first byte).
    public static func removeUnusedSideFiles(_ created: [String], of path: String) {
        registryLock.lock()
        defer { registryLock.unlock() }
        if registry.values.contains(where: { $0.path == path }) { return }
        if let id = fileID(path: path), registry[id] != nil { return }
        for side in created {
            let fd = open(side, O_RDWR | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { Glibc.close(fd) }
            var lock = Glibc.flock()
            lock.l_type = Int16(F_WRLCK)
            lock.l_whence = Int16(SEEK_SET)
            lock.l_start = 0
            lock.l_len = 1
            guard flock(fd, LOCK_EX | LOCK_NB) == 0, fcntl(fd, F_SETLK, &lock) == 0 else { continue }
            unlink(side)
        }
    }

    private func adopt(readOnly: Bool) throws(LMDBError) -> Environment {
        if isReadOnly && !readOnly {
            throw LMDBError(code: EBUSY, operation: "open \(path) for writing: this process has it open read-only; close that handle first")
        }
        users += 1  // under registryLock, like every change of `users`
        return self
    }

    /// Gives up one `shared` handle; the last one closes the environment (after its transactions end)
    /// and releases the sidecar lock.
    public func release() {
        Self.registryLock.lock()
        users -= 1
        let last = users <= 0
        if last, let key = registryKey, Self.registry[key] === self { Self.registry[key] = nil }
        Self.registryLock.unlock()
        if last { close() }
    }

    /// Closes the environment now: waits for running transactions, then `mdb_env_close`. Later
    /// transactions throw. Use `release()` for environments from `shared`.
    public func close() {
        pthread_rwlock_wrlock(gate)
        defer { pthread_rwlock_unlock(gate) }
        guard !closed else { return }
        closed = true
        abortIdleReaders()
        mdb_env_close(handle)
        if sidecarFD >= 0 { flock(sidecarFD, LOCK_UN) }
    }

    /// Takes the sidecar lock exclusively (no other process has the file open) for an operation that
    /// replaces the data file; fails at once with `EBUSY` when another process holds it shared.
    ///
    /// Tries for up to `wait` seconds (two compactions started together: the one that gives up lets
    /// the other through). Then checks that the file at `path` is still the one this environment has
    /// open: if another process replaced it meanwhile, fails with `EBUSY` too.
    public func lockExclusive(wait: Double = 2) throws(LMDBError) {
        guard sidecarFD >= 0 else { throw LMDBError(code: ENOLCK, operation: "exclusive lock on \(path): no sidecar lock file") }
        let deadline = monotonicSeconds() + wait
        while flock(sidecarFD, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            // Linux drops the shared lock before trying the exclusive one: take it back (never
            // blocking: a process holding it exclusively is compacting and will replace the file).
            _ = flock(sidecarFD, LOCK_SH | LOCK_NB)
            if (e != EWOULDBLOCK && e != EINTR) || monotonicSeconds() > deadline {
                throw LMDBError(code: e == EWOULDBLOCK ? EBUSY : e, operation: "exclusive lock on \(path): another process has it open")
            }
            usleep(useconds_t(5_000 + Int.random(in: 0..<20_000)))
        }
        if fileID() != Self.fileID(path: path) {
            unlockExclusive()
            throw LMDBError(code: EBUSY, operation: "exclusive lock on \(path): the file was replaced by another process meanwhile")
        }
    }

    /// Ends the creation of the data file by this open: the exclusive sidecar lock that kept other
    /// processes' opens waiting becomes shared. Does nothing for an open that did not create the file.
    public func endCreation() {
        Self.registryLock.lock()
        defer { Self.registryLock.unlock() }
        if holdsCreationLock && sidecarFD >= 0 { flock(sidecarFD, LOCK_SH) }
        holdsCreationLock = false
    }

    /// Returns the sidecar lock to shared after `lockExclusive()`.
    public func unlockExclusive() {
        if sidecarFD >= 0 { flock(sidecarFD, LOCK_SH) }
    }

    /// Marks the environment as replaced (its file was compacted into a new one): every later
    /// transaction throws `LMDBError.superseded`, and the registry forgets it so that the next open of
    /// the path opens the new file.
    public func markSuperseded() {
        Self.registryLock.lock()
        if let key = registryKey, Self.registry[key] === self { Self.registry[key] = nil }
        registryKey = nil
        Self.registryLock.unlock()
        supersededAtomic.store(true, ordering: .releasing)
        // The file this environment reads is no longer the store: its handles must not hold off a
        // compaction of the new file by another process.
        if sidecarFD >= 0 { flock(sidecarFD, LOCK_UN) }
    }

    /// Whether `markSuperseded()` was called.
    public var isSuperseded: Bool { supersededAtomic.load(ordering: .acquiring) }

    // MARK: The gate

    private var depth: Int {
        get { Int(bitPattern: pthread_getspecific(depthKey)) }
        set { pthread_setspecific(depthKey, UnsafeRawPointer(bitPattern: newValue)) }
    }

    /// Takes the gate shared unless this thread holds it already. With `transaction` (its kind, for
    /// the message), also refuses an environment whose file a compaction replaced.
    @inline(__always)
    private func enterGate(transaction: String? = nil) throws(LMDBError) {
        let d = depth
        if d == 0 { pthread_rwlock_rdlock(gate) }
        depth = d + 1
        if closed {
            leaveGate()
            throw LMDBError(code: EINVAL, operation: "use of \(path) after it was closed")
        }
        if let transaction, isSuperseded {
            leaveGate()
            throw LMDBError(code: LMDBError.supersededCode, operation: "\(transaction) \(path)")
        }
    }

    @inline(__always)
    private func leaveGate() {
        let d = depth - 1
        depth = d
        if d == 0 { pthread_rwlock_unlock(gate) }
    }

    /// Takes the gate exclusively to change the map size, waiting at most `growthWait` seconds for
    /// this process's transactions to end. A thread inside a transaction of this environment cannot
    /// wait for itself: it gets an error instead.
    private func withGateExclusive(_ what: String, _ body: () throws(LMDBError) -> Void) throws(LMDBError) {
        if depth > 0 {
            throw LMDBError(code: EDEADLK, operation: "\(what) of \(path) inside another transaction of this thread (a write inside a read closure needs the map to grow; run it outside)")
        }
        var deadline = timespec()
        clock_gettime(CLOCK_REALTIME, &deadline)
        deadline.tv_sec += Int(growthWait)
        let rc = pthread_rwlock_timedwrlock(gate, &deadline)
        if rc != 0 {
            throw LMDBError(code: rc == ETIMEDOUT ? EBUSY : rc, operation: "\(what) of \(path): waited \(Int(growthWait)) s for read transactions of this process to end")
        }
        defer { pthread_rwlock_unlock(gate) }
        if closed { throw LMDBError(code: EINVAL, operation: "use of \(path) after it was closed") }
        try body()
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
            guard mdb_txn_begin(handle, nil, UInt32(MDB_RDONLY), &txn) == MDB_SUCCESS, let txn else { return false }
            let lockTxnID = mdb_txn_id(txn)
            var info = MDB_envinfo()
            mdb_env_info(handle, &info)
            mdb_txn_abort(txn)
            if lockTxnID == info.me_last_txnid { return true }
            if attempt < 2 { usleep(2000) }
        }
        return false
    }

    /// The data file's descriptor and the map's first byte and length (LMDB maps the file from offset 0,
    /// so a pointer `p` into the map holds the file's bytes at offset `p - base`), or nil. LMDB does not
    /// report where it mapped the file (`mdb_env_info`'s address is the fixed-map hint), so the map is
    /// found in `/proc/self/maps` as the mapping of this file's inode at offset 0, on its device when one is (~0.1 ms; callers ask
    /// once per large read). Valid while this environment is open and its map is not grown.
    public func mappedFile() -> (fd: Int32, base: UnsafeRawPointer, length: Int)? {
        var fd: Int32 = -1
        guard mdb_env_get_fd(handle, &fd) == MDB_SUCCESS, fd >= 0 else { return nil }
        var st = stat()
        guard fstat(fd, &st) == 0, let maps = fopen("/proc/self/maps", "r") else { return nil }
        defer { fclose(maps) }
        var line = [CChar](repeating: 0, count: 4096)
        // A mapping of this inode at offset 0 on this device; failing that (overlayfs and btrfs subvolumes
        // can show the backing file's device in the maps, not stat's), the first of this inode at offset 0.
        // A wrong pick is caught by `MapReads`, which compares its first read with the map's bytes.
        var inodeOnly: (fd: Int32, base: UnsafeRawPointer, length: Int)?
        let device = Self.majorMinor(UInt64(st.st_dev))
        while fgets(&line, Int32(line.count), maps) != nil {
            // "start-end perms offset dev inode path"
            let text = String(decoding: line.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let fields = text.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6, fields[2] == "00000000", UInt64(fields[4]) == UInt64(st.st_ino) else { continue }
            let range = fields[0].split(separator: "-")
            guard range.count == 2, let start = UInt(range[0], radix: 16), let end = UInt(range[1], radix: 16),
                  end > start, let base = UnsafeRawPointer(bitPattern: start) else { continue }
            let found = (fd, base, min(Int(st.st_size), Int(end - start)))
            if let d = Self.deviceField(fields[3]), d == device { return found }
            if inodeOnly == nil { inodeOnly = found }
        }
        return inodeOnly
    }

    /// Major and minor numbers of a Linux `dev_t` (glibc's `gnu_dev_major` / `gnu_dev_minor` encoding).
    static func majorMinor(_ dev: UInt64) -> (UInt64, UInt64) {
        ((dev >> 8) & 0xfff | (dev >> 32) & ~UInt64(0xfff), dev & 0xff | (dev >> 12) & ~UInt64(0xff))
    }

    /// The `MM:mm` (hexadecimal) device field of a `/proc/self/maps` line, or nil.
    static func deviceField(_ field: Substring) -> (UInt64, UInt64)? {
        let parts = field.split(separator: ":")
        guard parts.count == 2, let major = UInt64(parts[0], radix: 16), let minor = UInt64(parts[1], radix: 16) else {
            return nil
        }
        return (major, minor)
    }

    /// The `MapReads` of map generation `generation` (one object per generation, made on first request;
    /// its mapping is found on first use). Read transactions carry it (`Transaction.mapReads`).
    func mapReads(generation: Int) -> MapReads {
        mapReadsCache.withLock { cache -> MapReads in
            if cache.generation == generation, let reads = cache.reads { return reads }
            let reads = MapReads { [weak self] in self?.mappedFile() }
            cache = (generation, reads)
            return reads
        }
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
        try enterGate()
        defer { leaveGate() }
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

    // MARK: Reused read transactions

    /// A reset read transaction kept for `mdb_txn_renew`, and the `Transaction` object that wrapped it in
    /// its last read when that read left no other reference to it (nil otherwise: an object a body kept
    /// stays invalid for good and is never handed out again).
    ///
    /// `@unchecked Sendable`: an entry has one owner at a time, the pool (under its mutex) or the one read
    /// that took it out; neither the handle nor the object is used by two threads at once.
    struct IdleReader: @unchecked Sendable {
        let handle: OpaquePointer
        let wrapper: Transaction?
        /// `wrapper`'s `mapGeneration` (kept here so that a renewal in the same generation touches only
        /// the object's handle: its public properties' exclusivity checks cost ~80 instructions each).
        let generation: Int
    }

    /// A kept read transaction to renew, or nil. Called with the gate held.
    @inline(__always)
    private func takeIdleReader() -> IdleReader? {
        idleReaders.withLock { $0.popLast() }
    }

    /// Resets `handle` (ending its snapshot) and keeps it, with `wrapper` when given, for reuse; aborts
    /// it when enough are kept. Called with the gate held, so `close()` (which takes the gate
    /// exclusively) cannot run meanwhile.
    @inline(__always)
    private func recycleReader(_ handle: OpaquePointer, wrapper: Transaction?, generation: Int) {
        mdb_txn_reset(handle)
        let entry = IdleReader(handle: handle, wrapper: wrapper, generation: generation)
        let kept = idleReaders.withLock { pool -> Bool in
            guard pool.count < Self.maxIdleReaders else { return false }
            pool.append(entry)
            return true
        }
        if !kept { mdb_txn_abort(handle) }
    }

    /// Lets go of the `Transaction` objects kept with reset read transactions (the handles stay kept): each
    /// holds its generation's `MapReads` (a file descriptor and counters), which a new map generation
    /// replaces. Called with the gate held exclusively.
    private func dropKeptWrappers() {
        idleReaders.withLock { pool in
            for i in pool.indices where pool[i].wrapper != nil {
                pool[i] = IdleReader(handle: pool[i].handle, wrapper: nil, generation: -1)
            }
        }
    }

    /// Frees every kept read transaction and its reader slot (before `mdb_env_close`).
    private func abortIdleReaders() {
        let idle = idleReaders.withLock { pool -> [IdleReader] in
            let all = pool
            pool.removeAll()
            return all
        }
        for entry in idle { mdb_txn_abort(entry.handle) }
    }

    /// Number of reset read transactions kept for reuse (for tests).
    package var idleReaderCount: Int { idleReaders.withLock { $0.count } }

    /// A read transaction on the newest committed snapshot: a kept one renewed (with its `Transaction`
    /// object when one was kept), else a new one. Called with the gate held; the result code is
    /// `mdb_txn_renew`'s or `mdb_txn_begin`'s.
    @inline(__always)
    private func beginRead() -> (rc: Int32, handle: OpaquePointer?, wrapper: Transaction?, generation: Int) {
        if let idle = takeIdleReader() {
            let rc = mdb_txn_renew(idle.handle)
            if rc == MDB_SUCCESS { return (rc, idle.handle, idle.wrapper, idle.generation) }
            mdb_txn_abort(idle.handle)  // gives its reader slot back; a fresh handle reports the cause
        }
        var txnHandle: OpaquePointer?
        let rc = mdb_txn_begin(handle, nil, UInt32(MDB_RDONLY), &txnHandle)
        return (rc, txnHandle, nil, -1)
    }

    /// Runs `body` in a read-only snapshot transaction. Values read inside are valid only inside `body`.
    ///
    /// The snapshot is the newest one committed when `body` starts. The transaction handle is renewed
    /// from an earlier, reset one when one is kept (see `idleReaders`), and reset and kept again
    /// afterwards: a read costs no allocation and no lock of LMDB's reader table. The `Transaction`
    /// object is reused too, but only when `body` kept no strong reference to it: one that escaped stays
    /// invalid (its methods throw) and never wraps a later transaction. Weak and unowned references are not
    /// counted (`isKnownUniquelyReferenced`): one kept past `body` may later name another read's live
    /// transaction, possibly on another thread, so none may outlive `body`.
    public func read<R>(_ body: (Transaction) throws -> R) throws -> R {
        while true {
            try enterGate(transaction: "read")
            var (rc, txnHandle, wrapper, keptGeneration) = beginRead()
            if rc == MDB_MAP_RESIZED {
                leaveGate()
                try adoptResizedMap()
                continue
            }
            defer { leaveGate() }
            try check(rc, "mdb_txn_begin(read)")
            guard let txnHandle else { throw LMDBError(code: EINVAL, operation: "mdb_txn_begin(read)") }
            let generation = mapGenerationAtomic.load(ordering: .relaxed)
            var txn: Transaction
            if let kept = wrapper {
                if keptGeneration == generation {
                    kept.renew(handle: txnHandle)  // same generation: the same `MapReads` object already held
                } else {
                    kept.renew(handle: txnHandle, mapGeneration: generation, mapReads: mapReads(generation: generation))
                }
                txn = kept
            } else {
                txn = Transaction(handle: txnHandle, writable: false, mapGeneration: generation,
                                  mapReads: mapReads(generation: generation))
            }
            wrapper = nil  // `txn` holds the only reference of this function, for the check below
            defer {
                txn.invalidate()
                recycleReader(txnHandle, wrapper: isKnownUniquelyReferenced(&txn) ? txn : nil, generation: generation)
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
            try enterGate(transaction: "write")
            var txnHandle: OpaquePointer?
            let rc = mdb_txn_begin(handle, nil, 0, &txnHandle)
            if rc == MDB_MAP_RESIZED {
                leaveGate()
                try adoptResizedMap()
                continue
            }
            var retryAfterGrowing = false
            do {
                defer { leaveGate() }
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

    /// Doubles the map size once no transaction of this process is active (see `withGateExclusive`).
    private func growMap() throws(LMDBError) {
        try withGateExclusive("growing the map") { () throws(LMDBError) in
            let current = info().mapSize
            mapGenerationAtomic.add(1, ordering: .relaxed)
            dropKeptWrappers()
            try check(mdb_env_set_mapsize(handle, current * 2), "mdb_env_set_mapsize(grow to \(current * 2))")
        }
    }

    /// Another process grew the map: adopt its size.
    private func adoptResizedMap() throws(LMDBError) {
        try withGateExclusive("adopting the map size another process set") { () throws(LMDBError) in
            mapGenerationAtomic.add(1, ordering: .relaxed)
            dropKeptWrappers()
            try check(mdb_env_set_mapsize(handle, 0), "mdb_env_set_mapsize(adopt)")
        }
    }

    /// Runs `body` in a write transaction that is never rerun: a full map fails it (`isMapFull`)
    /// instead of growing and retrying. For bodies with effects outside the transaction.
    public func writeOnce<R>(_ body: (Transaction) throws -> R) throws -> R {
        if isReadOnly { throw LMDBError(code: EACCES, operation: "write transaction on a read-only store") }
        try enterGate(transaction: "write")
        defer { leaveGate() }
        var txnHandle: OpaquePointer?
        try check(mdb_txn_begin(handle, nil, 0, &txnHandle), "mdb_txn_begin(write)")
        guard let txnHandle else { throw LMDBError(code: EINVAL, operation: "mdb_txn_begin(write)") }
        let txn = Transaction(handle: txnHandle, writable: true)
        do {
            let result = try body(txn)
            txn.invalidate()
            try check(mdb_txn_commit(txnHandle), "mdb_txn_commit")
            return result
        } catch {
            if txn.isLive { txn.invalidate(); mdb_txn_abort(txnHandle) }
            throw error
        }
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

/// A mutex usable from any module without Foundation's `Sendable` caveats.
final class NSLockLike: @unchecked Sendable {
    private let mutex = NSLock()
    func lock() { mutex.lock() }
    func unlock() { mutex.unlock() }
}

/// Seconds of a monotonic clock.
func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}
