import CLMDB

#if canImport(Glibc)
import Glibc
#endif

/// Page statistics of one database (`mdb_stat`).
public struct DatabaseStats: Sendable {
    /// Page size in bytes.
    public var pageSize: Int
    /// B-tree depth.
    public var depth: Int
    /// Branch (internal) pages.
    public var branchPages: Int
    /// Leaf pages.
    public var leafPages: Int
    /// Overflow pages (large values).
    public var overflowPages: Int
    /// Number of data items.
    public var entries: Int
    /// Bytes used by all pages of the database (saturating at `Int.max`: the counts come from the file).
    public var bytes: Int {
        let (pages, o1) = branchPages.addingReportingOverflow(leafPages)
        let (all, o2) = pages.addingReportingOverflow(overflowPages)
        let (result, o3) = all.multipliedReportingOverflow(by: pageSize)
        return o1 || o2 || o3 || all < 0 ? Int.max : result
    }
}

/// A transaction, valid only inside the `Environment.read` or `Environment.write` closure that
/// handed it out. Every buffer it returns points into the memory map and is valid only until the
/// transaction ends (or, in a write transaction, until the next write to the same database).
/// Using a transaction after its closure returned throws instead of touching freed memory. A read
/// transaction's object is reused by a later read when its closure kept no strong reference to it: do
/// not keep weak or unowned references past the closure.
public final class Transaction {
    private var rawHandle: OpaquePointer?
    /// Whether the transaction may write.
    public let isWritable: Bool
    /// The environment's map generation when this transaction began: it changes whenever the map may
    /// have moved (grown), so two read transactions with the same `snapshotID()` and the same
    /// generation see the same bytes at the same addresses (write transactions report -1).
    public private(set) var mapGeneration: Int
    /// `pread` access to the bytes this read transaction's map pointers name, for reads while the map is
    /// cold (`MapReads`); nil in write transactions, whose new pages are not in the file yet.
    public private(set) var mapReads: MapReads?

    init(handle: OpaquePointer, writable: Bool, mapGeneration: Int = -1, mapReads: MapReads? = nil) {
        self.rawHandle = handle
        self.isWritable = writable
        self.mapGeneration = mapGeneration
        self.mapReads = writable ? nil : mapReads
    }

    var isLive: Bool { rawHandle != nil }
    func invalidate() { rawHandle = nil }

    /// Makes this ended read transaction's object wrap `handle`, a renewed read transaction, for
    /// `Environment.read`, which calls it only on an object no one else references (so nothing that saw
    /// its previous life can use it).
    func renew(handle: OpaquePointer, mapGeneration: Int, mapReads: MapReads?) {
        rawHandle = handle
        self.mapGeneration = mapGeneration
        self.mapReads = mapReads
    }

    /// `renew(handle:mapGeneration:mapReads:)` in the map generation this object already has.
    func renew(handle: OpaquePointer) {
        rawHandle = handle
    }

    @inline(__always)
    func handle() throws(LMDBError) -> OpaquePointer {
        guard let rawHandle else { throw LMDBError(code: EINVAL, operation: "use of a transaction after it ended") }
        return rawHandle
    }

    // MARK: Reads

    /// The value stored under `key`, zero-copy from the map, or nil.
    public func get(_ db: Database, _ key: UnsafeRawBufferPointer) throws(LMDBError) -> UnsafeRawBufferPointer? {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val()
        let rc = mdb_get(try handle(), db.dbi, &k, &v)
        if rc == MDB_NOTFOUND { return nil }
        try check(rc, "mdb_get(\(db.name))")
        return UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)
    }

    /// The value stored under `key`, zero-copy from the map, or nil.
    public func get(_ db: Database, _ key: [UInt8]) throws(LMDBError) -> UnsafeRawBufferPointer? {
        var result: UnsafeRawBufferPointer?
        var failure: LMDBError?
        key.withUnsafeBytes { k in
            do throws(LMDBError) { result = try get(db, k) } catch { failure = error }
        }
        if let failure { throw failure }
        return result
    }

    /// Page statistics of `db`.
    public func stats(_ db: Database) throws(LMDBError) -> DatabaseStats {
        var s = MDB_stat()
        try check(mdb_stat(try handle(), db.dbi, &s), "mdb_stat(\(db.name))")
        return DatabaseStats(pageSize: Int(s.ms_psize), depth: Int(s.ms_depth), branchPages: s.ms_branch_pages,
                             leafPages: s.ms_leaf_pages, overflowPages: s.ms_overflow_pages, entries: s.ms_entries)
    }

    /// Page statistics of LMDB's free-page database (database 0).
    public func freeListStats() throws(LMDBError) -> DatabaseStats {
        try stats(Database(dbi: 0, name: "(free list)"))
    }

    /// Number of pages recorded as free in the free-page database (reusable by later writes).
    public func freePageCount() throws -> Int {
        var total = 0
        try withCursor(Database(dbi: 0, name: "(free list)")) { (cursor: Cursor) throws in
            var entry = try cursor.first()
            var record = 0
            while let (_, value) = entry {
                // Each value is an ID list: a size_t count followed by that many page numbers.
                let count = value.count >= 8 ? value.loadUnaligned(as: UInt64.self) : 0
                guard count <= UInt64(max(value.count / 8 - 1, 0)) else {
                    throw PageCheckError(database: PageCheckError.freeList, page: nil,
                                         fault: .freeListRecord(record: record, "a list of \(count) pages in \(value.count) bytes"))
                }
                total += Int(count)
                record += 1
                entry = try cursor.next()
            }
        }
        return total
    }

    // MARK: Writes

    /// Stores `value` under `key`, replacing an existing value (or adding a duplicate in a dupSort database).
    public func put(_ db: Database, _ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer,
                    noOverwrite: Bool = false) throws(LMDBError) {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val(mv_size: value.count, mv_data: UnsafeMutableRawPointer(mutating: value.baseAddress))
        let flags: UInt32 = noOverwrite ? UInt32(MDB_NOOVERWRITE) : 0
        try check(mdb_put(try handle(), db.dbi, &k, &v, flags), "mdb_put(\(db.name))")
    }

    /// Stores `value` under `key`.
    public func put(_ db: Database, _ key: [UInt8], _ value: [UInt8]) throws(LMDBError) {
        var failure: LMDBError?
        key.withUnsafeBytes { k in value.withUnsafeBytes { v in
            do throws(LMDBError) { try put(db, k, v) } catch { failure = error }
        } }
        if let failure { throw failure }
    }

    /// Stores `value` under a `key` that must be new (`MDB_NOOVERWRITE`); with `append`, the key must also
    /// sort after every key of the database (`MDB_APPEND`: no search, and pages are filled completely).
    /// Returns false, writing nothing, when the key exists or (with `append`) does not sort last.
    public func putNew(_ db: Database, _ key: [UInt8], _ value: [UInt8], append: Bool = false) throws(LMDBError) -> Bool {
        let h = try handle()
        var rc: Int32 = 0
        key.withUnsafeBytes { k in value.withUnsafeBytes { v in
            var kv = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
            var vv = MDB_val(mv_size: v.count, mv_data: UnsafeMutableRawPointer(mutating: v.baseAddress))
            rc = mdb_put(h, db.dbi, &kv, &vv, UInt32(MDB_NOOVERWRITE) | (append ? UInt32(MDB_APPEND) : 0))
        } }
        if rc == MDB_KEYEXIST { return false }
        try check(rc, "mdb_put(\(db.name))")
        return true
    }

    /// Reserves `count` bytes under `key` (`MDB_RESERVE`) and lets `fill` write them in place,
    /// avoiding a copy of large values. `fill` must write every byte.
    public func reserve(_ db: Database, _ key: [UInt8], count: Int,
                        _ fill: (UnsafeMutableRawBufferPointer) throws -> Void) throws {
        var v = MDB_val(mv_size: count, mv_data: nil)
        let h = try handle()
        try key.withUnsafeBytes { k in
            var kv = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
            try check(mdb_put(h, db.dbi, &kv, &v, UInt32(MDB_RESERVE)), "mdb_put(\(db.name), reserve \(count))")
        }
        try fill(UnsafeMutableRawBufferPointer(start: v.mv_data, count: count))
    }

    /// Deletes `key` (and, in a dupSort database, only `value` when given). Returns false if absent.
    @discardableResult
    public func delete(_ db: Database, _ key: [UInt8], value: [UInt8]? = nil) throws(LMDBError) -> Bool {
        var rc: Int32 = 0
        let h = try handle()
        key.withUnsafeBytes { k in
            var kv = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
            if let value {
                value.withUnsafeBytes { v in
                    var vv = MDB_val(mv_size: v.count, mv_data: UnsafeMutableRawPointer(mutating: v.baseAddress))
                    rc = mdb_del(h, db.dbi, &kv, &vv)
                }
            } else {
                rc = mdb_del(h, db.dbi, &kv, nil)
            }
        }
        if rc == MDB_NOTFOUND { return false }
        try check(rc, "mdb_del(\(db.name))")
        return true
    }

    // MARK: Cursors

    /// Runs `body` with a cursor on `db`; the cursor is closed when `body` returns and must not escape.
    public func withCursor<R, E: Error>(_ db: Database, _ body: (Cursor) throws(E) -> R) throws -> R {
        var cursorHandle: OpaquePointer?
        try check(mdb_cursor_open(try handle(), db.dbi, &cursorHandle), "mdb_cursor_open(\(db.name))")
        guard let cursorHandle else { throw LMDBError(code: EINVAL, operation: "mdb_cursor_open(\(db.name))") }
        let cursor = Cursor(handle: cursorHandle, db: db)
        defer {
            cursor.invalidate()
            mdb_cursor_close(cursorHandle)
        }
        return try body(cursor)
    }

    /// Deletes every key of `db` that begins with `prefix` (every value of such a key, in a dupSort database).
    ///
    /// One seek, then a walk: `mdb_cursor_del` leaves the cursor on the entry after the deleted one (moving
    /// to the next leaf page when the deleted entry was a page's last), and the `MDB_NEXT` that follows a
    /// delete returns that entry instead of stepping past it (lmdb.h, `mdb_cursor_del`). `MDB_NEXT` rather
    /// than `MDB_GET_CURRENT`: when the delete empties the database the cursor is no longer initialised,
    /// and `MDB_GET_CURRENT` would fail where `MDB_NEXT` reports the end.
    public func deletePrefix(_ db: Database, _ prefix: [UInt8]) throws {
        try withCursor(db) { (c: Cursor) throws(LMDBError) -> Void in
            // LMDB refuses an empty key to seek to; the empty prefix starts at the first entry.
            var entry = prefix.isEmpty ? try c.first() : try c.seek(atLeast: prefix)
            while let (key, _) = entry, key.starts(with: prefix) {
                try c.deleteCurrent()
                entry = try c.next()
            }
        }
    }
}

/// A cursor over one database, valid only inside `Transaction.withCursor`.
public final class Cursor {
    private var rawHandle: OpaquePointer?
    /// The database this cursor walks.
    public let db: Database

    init(handle: OpaquePointer, db: Database) {
        self.rawHandle = handle
        self.db = db
    }

    func invalidate() { rawHandle = nil }

    /// A key/value pair, both zero-copy from the map.
    public typealias Entry = (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)

    @inline(__always)
    private func op(_ operation: MDB_cursor_op, key: UnsafeRawBufferPointer? = nil,
                    value: UnsafeRawBufferPointer? = nil, name: StaticString) throws(LMDBError) -> Entry? {
        guard let rawHandle else { throw LMDBError(code: EINVAL, operation: "use of a cursor after it closed") }
        var k = MDB_val(mv_size: key?.count ?? 0, mv_data: UnsafeMutableRawPointer(mutating: key?.baseAddress))
        var v = MDB_val(mv_size: value?.count ?? 0, mv_data: UnsafeMutableRawPointer(mutating: value?.baseAddress))
        let rc = mdb_cursor_get(rawHandle, &k, &v, operation)
        if rc == MDB_NOTFOUND { return nil }
        try check(rc, "mdb_cursor_get(\(db.name), \(name))")
        return (UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size),
                UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
    }

    /// Moves to the first entry.
    public func first() throws(LMDBError) -> Entry? { try op(MDB_FIRST, name: "first") }
    /// Moves to the last entry.
    public func last() throws(LMDBError) -> Entry? { try op(MDB_LAST, name: "last") }
    /// Moves to the next entry (next duplicate first, in a dupSort database).
    public func next() throws(LMDBError) -> Entry? { try op(MDB_NEXT, name: "next") }
    /// Moves to the previous entry.
    public func previous() throws(LMDBError) -> Entry? { try op(MDB_PREV, name: "prev") }
    /// Moves to the first value of the next key (dupSort).
    public func nextKey() throws(LMDBError) -> Entry? { try op(MDB_NEXT_NODUP, name: "next_nodup") }
    /// The entry at the cursor.
    public func current() throws(LMDBError) -> Entry? { try op(MDB_GET_CURRENT, name: "get_current") }

    /// Moves to the first entry whose key is ≥ `key`.
    public func seek(atLeast key: [UInt8]) throws(LMDBError) -> Entry? {
        var result: Entry?
        var failure: LMDBError?
        key.withUnsafeBytes { k in
            do throws(LMDBError) { result = try op(MDB_SET_RANGE, key: k, name: "set_range") } catch { failure = error }
        }
        if let failure { throw failure }
        return result
    }

    /// In a dupSort database: whether `key` holds the value `value` (`MDB_GET_BOTH`: one search of the
    /// key, then of its sorted values; from a cursor already on a nearby page LMDB skips most of the
    /// descent, so probes in ascending order are cheapest). The cursor is left on the pair when found.
    public func contains(key: [UInt8], value: [UInt8]) throws(LMDBError) -> Bool {
        var result: Entry?
        var failure: LMDBError?
        key.withUnsafeBytes { k in
            value.withUnsafeBytes { v in
                do throws(LMDBError) { result = try op(MDB_GET_BOTH, key: k, value: v, name: "get_both") } catch { failure = error }
            }
        }
        if let failure { throw failure }
        return result != nil
    }

    /// In a dupFixed database: the values of the current key from the cursor position on, up to one
    /// page at a time (`MDB_GET_MULTIPLE`, then `MDB_NEXT_MULTIPLE`), as one contiguous buffer.
    ///
    /// A key holding a single value is stored inline, without a duplicate sub-tree; for such a key
    /// `MDB_GET_MULTIPLE` succeeds without returning data, so its one value is read with `MDB_GET_CURRENT`.
    public func multipleValues(first: Bool) throws(LMDBError) -> UnsafeRawBufferPointer? {
        guard first else { return try op(MDB_NEXT_MULTIPLE, name: "next_multiple")?.value }
        guard let page = try op(MDB_GET_MULTIPLE, name: "get_multiple")?.value else { return nil }
        if page.baseAddress == nil { return try op(MDB_GET_CURRENT, name: "get_current")?.value }
        return page
    }

    /// Deletes the entry at the cursor.
    public func deleteCurrent() throws(LMDBError) {
        guard let rawHandle else { throw LMDBError(code: EINVAL, operation: "use of a cursor after it closed") }
        try check(mdb_cursor_del(rawHandle, 0), "mdb_cursor_del(\(db.name))")
    }
}
