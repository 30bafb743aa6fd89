import CLMDB

#if canImport(Glibc)
import Glibc
#endif

extension Transaction {
    /// Checks the LMDB page structure of this read transaction's snapshot to `level` before anything
    /// walks it (`PageChecker`), reading the data file through a read-only map of its own whose length
    /// is the file's size (`.full`) or with `pread` (`.roots`), so that no page number read from disk can
    /// reach past the file. Pages reachable
    /// from the snapshot's roots cannot change while the transaction lives; its meta page can be
    /// rewritten by a later commit, which throws a `PageCheckError` whose `isSnapshotGone` is true
    /// (`Environment.checkPages` then retries in a new snapshot).
    ///
    /// Throws `PageCheckError` for a structural fault, `LMDBError` when the file cannot be mapped.
    public func checkPages(_ level: PageCheckLevel, expectedFlags: [String: DatabaseFlags] = [:]) throws -> PageCheckReport {
        if isWritable { throw LMDBError(code: EINVAL, operation: "checkPages in a write transaction (it checks a committed snapshot)") }
        let txn = try handle()
        let snapshot = Int(mdb_txn_id(txn))
        guard let env = mdb_txn_env(txn) else { throw LMDBError(code: EINVAL, operation: "mdb_txn_env") }
        var fd: Int32 = -1
        try check(mdb_env_get_fd(env, &fd), "mdb_env_get_fd")
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw LMDBError(code: errno, operation: "fstat of the data file (page check)") }
        var envStat = MDB_stat()
        try check(mdb_env_stat(env, &envStat), "mdb_env_stat")
        let pageSize = Int(envStat.ms_psize)
        let pageCount = Int(st.st_size) / pageSize
        if level == .roots {
            // A few dozen pages: read with `pread`, no map to set up and tear down on every open.
            var source = ReadPages(fd: fd, pageSize: pageSize, pageCount: pageCount)
            defer { source.release() }
            return try PageChecker.check(&source, snapshot: snapshot, level: level, expectedFlags: expectedFlags)
        }
        let bytes = pageCount * pageSize
        guard bytes >= 2 * pageSize else {
            throw PageCheckError(database: "", page: nil, fault: .fileTooShort(bytes: Int(st.st_size), pageSize: pageSize))
        }
        // A map of our own: LMDB's map address is not published (`me_mapaddr` is the fixed-map address
        // recorded in the meta page), and this one ends at the file's end, where LMDB's may not.
        guard let map = mmap(nil, bytes, PROT_READ, MAP_SHARED, fd, 0), map != MAP_FAILED else {
            throw LMDBError(code: errno, operation: "mmap of the data file (page check)")
        }
        defer { munmap(map, bytes) }
        // Only headers of overflow extents are read: no read-ahead into their data.
        madvise(map, bytes, MADV_RANDOM)
        var source = MappedPages(file: UnsafeRawBufferPointer(start: map, count: bytes), pageSize: pageSize)
        return try PageChecker.check(&source, snapshot: snapshot, level: level, expectedFlags: expectedFlags)
    }
}

extension Environment {
    /// Checks the page structure of the current snapshot to `level` in a read transaction of its own
    /// (`Transaction.checkPages`), retrying in a new snapshot when a writer rewrote the meta page meanwhile.
    public func checkPages(_ level: PageCheckLevel, expectedFlags: [String: DatabaseFlags] = [:]) throws -> PageCheckReport {
        try checkedRead(level, expectedFlags: expectedFlags) { _, report in report }
    }

    /// Checks the page structure of the current snapshot to `level` (`Transaction.checkPages`), then runs
    /// `body` in the same read transaction with the report, so that `body` walks the very snapshot that
    /// was checked (a writer committing between a check and a later read transaction would otherwise
    /// hand that read a snapshot no check has seen). Retries in a new snapshot when a writer rewrote the
    /// meta page during the check.
    public func checkedRead<R>(_ level: PageCheckLevel, expectedFlags: [String: DatabaseFlags] = [:],
                               _ body: (Transaction, PageCheckReport) throws -> R) throws -> R {
        var attempt = 0
        while true {
            do {
                return try read { txn in try body(txn, try txn.checkPages(level, expectedFlags: expectedFlags)) }
            } catch let error as PageCheckError where error.isSnapshotGone && attempt < 4 {
                attempt += 1
            }
        }
    }
}
