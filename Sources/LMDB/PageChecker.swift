#if canImport(Glibc)
import Glibc
#endif

/// Checks the B-trees of one LMDB 0.9 snapshot in a byte image of the data file (normally a read-only
/// map of it, `Transaction.checkPages`), proving every page number, offset and size in range before it
/// is used, so that LMDB's own walks of the checked pages cannot read outside a page or the file.
///
/// LMDB 0.9 trusts its pages: a page whose header or node offsets are damaged sends `mdb_cursor_get`
/// past the page or the map. The checker reads the layout LMDB writes (Spec/FORMAT.md §21): 16-byte page
/// headers (`pgno` u64, pad u16, flags u16, `lower`/`upper` u16 or an overflow page count u32), a u16
/// node-offset array, 8-byte node headers (`lo`, `hi`, `flags`, `ksize` u16) followed by the key and
/// the data, meta pages 0 and 1 holding the free-list and main databases' 48-byte records.
public struct PageChecker {
    /// The data file's bytes (at least the pages of the snapshot).
    let file: UnsafeRawBufferPointer
    /// The environment's page size.
    let pageSize: Int

    /// Creates a checker of the data file image `file` with LMDB page size `pageSize`.
    public init(file: UnsafeRawBufferPointer, pageSize: Int) {
        self.file = file
        self.pageSize = pageSize
    }

    /// Checks the snapshot whose meta page records transaction id `snapshot` (nil: the newer meta
    /// page) to `level`. Named databases listed in `expectedFlags` must carry exactly those flags; the
    /// others are checked by the flags they carry. Throws the first fault found.
    public func check(snapshot: Int?, level: PageCheckLevel, expectedFlags: [String: DatabaseFlags] = [:])
        throws(PageCheckError) -> PageCheckReport
    {
        var source = MappedPages(file: file, pageSize: pageSize)
        return try Self.check(&source, snapshot: snapshot, level: level, expectedFlags: expectedFlags)
    }

    /// Checks the snapshot read from `source` (see `check(snapshot:level:expectedFlags:)`).
    static func check<Source: PageSource>(_ source: inout Source, snapshot: Int?, level: PageCheckLevel,
                                          expectedFlags: [String: DatabaseFlags]) throws(PageCheckError)
        -> PageCheckReport
    {
        let pageSize = source.pageSize
        guard pageSize >= 256, pageSize <= 65_536, source.pageCount >= 2 else {
            throw PageCheckError(database: "", page: nil,
                                 fault: .fileTooShort(bytes: source.pageCount * pageSize, pageSize: pageSize))
        }
        let meta = try readMeta(&source, snapshot: snapshot)
        var walk = PageWalk(source: source, lastPage: meta.lastPage, full: level == .full)
        try walk.tree(meta.free, name: PageCheckError.freeList, role: .freeList, descend: level == .full)
        try walk.tree(meta.main, name: PageCheckError.mainDatabase, role: .main, descend: true)
        for named in walk.named {
            if let expected = expectedFlags[named.name], UInt16(truncatingIfNeeded: expected.rawValue) != named.record.flags {
                throw PageCheckError(database: named.name, page: nil,
                                     fault: .flagsMismatch(expected: UInt16(truncatingIfNeeded: expected.rawValue),
                                                           found: named.record.flags))
            }
            try walk.tree(named.record, name: named.name, role: .named, descend: level == .full)
        }
        if level == .full { try walk.checkFreePages() }
        source = walk.source
        // The meta page must still be the snapshot's: a writer may have rewritten it while it was read.
        if let snapshot {
            let now = try source.page(meta.page).u64(PageLayout.metaTxnID)
            if now != UInt64(UInt(bitPattern: snapshot)) {
                throw PageCheckError(database: "", page: meta.page,
                                     fault: .snapshotMetaMissing(snapshot: snapshot, found: [Int(truncatingIfNeeded: now)]))
            }
        }
        return PageCheckReport(snapshot: Int(truncatingIfNeeded: meta.txnID), pages: walk.pagesChecked,
                               overflowExtents: walk.overflowExtents, databases: walk.named.count,
                               subDatabases: walk.subDatabases)
    }

    // MARK: Meta pages

    struct Meta {
        var page: Int
        var txnID: UInt64
        var lastPage: Int
        var free: DBRecord
        var main: DBRecord
    }

    /// Reads and checks the meta page LMDB reads for `snapshot` (or for the newer snapshot): with a lock
    /// file, LMDB's read and write transactions take transaction id `t` from the lock table (set at open
    /// to the larger `txnid` of the two meta pages, ties to page 0) and read meta page `t & 1`
    /// (`mdb_txn_renew0`), whatever `txnid` that page records. So the page checked is `t & 1`, and it must
    /// record `t`: if only the other page does, the pair is damaged (LMDB would walk the roots of the page
    /// that does not), if neither does, a writer replaced it meanwhile (or both are damaged).
    static func readMeta<Source: PageSource>(_ source: inout Source, snapshot: Int?) throws(PageCheckError) -> Meta {
        let pages = [try source.page(0), try source.page(1)]
        let ids = pages.map { $0.u64(PageLayout.metaTxnID) }
        // The transaction id LMDB uses: `mdb_txn_id` (a size_t, so any bit pattern), or the newer page's.
        let txnID = snapshot.map { UInt64(UInt(bitPattern: $0)) } ?? (ids[0] < ids[1] ? ids[1] : ids[0])
        let page = Int(txnID & 1)
        if ids[page] != txnID {
            if ids[1 - page] == txnID {
                throw PageCheckError(database: "", page: 1 - page, fault: .badMeta(
                    "it records transaction \(txnID), which LMDB reads from meta page \(page) (transaction id parity); that page records \(ids[page])"))
            }
            throw PageCheckError(database: "", page: nil, fault: .snapshotMetaMissing(
                snapshot: snapshot ?? Int(truncatingIfNeeded: txnID), found: ids.map { Int(truncatingIfNeeded: min($0, UInt64(Int.max))) }))
        }
        let bytes = pages[page]
        func bad(_ why: String) -> PageCheckError { PageCheckError(database: "", page: page, fault: .badMeta(why)) }
        let headerPage = bytes.u64(0)
        if headerPage != UInt64(page) { throw bad("the page header says page \(headerPage)") }
        let flags = bytes.u16(PageLayout.flags)
        if flags & PageLayout.kindMask != PageLayout.meta { throw bad("header flags 0x\(String(flags, radix: 16)) are not a meta page's") }
        let m = PageLayout.header
        let magic = bytes.u32(m)
        if magic != PageLayout.magic { throw bad("magic 0x\(String(magic, radix: 16)) is not LMDB's 0xbeefc0de") }
        let version = bytes.u32(m + 4)
        if version != 1 { throw bad("data version \(version), LMDB 0.9 writes 1") }
        let free = DBRecord(bytes, at: m + PageLayout.metaFreeDB)
        let main = DBRecord(bytes, at: m + PageLayout.metaMainDB)
        if Int(free.pad) != source.pageSize { throw bad("page size \(free.pad), the environment's is \(source.pageSize)") }
        let lastPage = bytes.u64(PageLayout.metaLastPage)
        if lastPage < 1 || lastPage >= 1 << 40 { throw bad("last page \(lastPage) is out of range") }
        if main.flags & ~PageLayout.validDBFlags != 0 {
            throw bad("main database flags 0x\(String(main.flags, radix: 16)) hold unknown bits")
        }
        // LMDB opens cursors on these two without a duplicates cursor (`mdb_cursor_init(…, NULL)` in
        // `mdb_dbi_open`, `mdb_page_alloc`, …) and asserts (aborts) if their record says sorted duplicates.
        if main.flags & PageLayout.dupSort != 0 { throw bad("the main database is marked sorted-duplicates (flags 0x\(String(main.flags, radix: 16)))") }
        if free.flags & PageLayout.dupSort != 0 { throw bad("the free list is marked sorted-duplicates (flags 0x\(String(free.flags, radix: 16)))") }
        return Meta(page: page, txnID: ids[page], lastPage: Int(lastPage), free: free, main: main)
    }
}

/// Where the checker reads pages: a map of the whole file, or `pread` of the few pages a `.roots` check
/// reads (no map to set up and tear down on every open).
protocol PageSource {
    /// The page size.
    var pageSize: Int { get }
    /// Whole pages in the file.
    var pageCount: Int { get }
    /// The bytes of page `pgno` (< `pageCount`) as the file holds them now (each call reads the file
    /// again, so the meta page's final check sees a rewrite), valid until the check ends.
    mutating func page(_ pgno: Int) throws(PageCheckError) -> UnsafeRawBufferPointer
}

/// Pages of a file image in memory (a map of the data file, or a test's buffer).
struct MappedPages: PageSource {
    let file: UnsafeRawBufferPointer
    let pageSize: Int
    let pageCount: Int

    init(file: UnsafeRawBufferPointer, pageSize: Int) {
        self.file = file
        self.pageSize = pageSize
        self.pageCount = pageSize > 0 ? file.count / pageSize : 0
    }

    func page(_ pgno: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: file[pgno * pageSize..<(pgno + 1) * pageSize])
    }
}

/// Pages read with `pread` from the data file into buffers kept until `release()`.
struct ReadPages: PageSource {
    let fd: Int32
    let pageSize: Int
    let pageCount: Int
    private(set) var buffers: [UnsafeMutableRawBufferPointer] = []

    init(fd: Int32, pageSize: Int, pageCount: Int) {
        self.fd = fd
        self.pageSize = pageSize
        self.pageCount = pageCount
    }

    mutating func page(_ pgno: Int) throws(PageCheckError) -> UnsafeRawBufferPointer {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 16)
        buffers.append(buffer)
        var done = 0
        while done < pageSize {
            guard let base = buffer.baseAddress else { break }
            let n = pread(fd, base + done, pageSize - done, off_t(pgno * pageSize + done))
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            let why = n == 0 ? "the file ends inside it" : String(cString: strerror(errno))
            throw PageCheckError(database: "", page: pgno, fault: .unreadable(why))
        }
        return UnsafeRawBufferPointer(buffer)
    }

    /// Frees every page buffer.
    func release() { for b in buffers { b.deallocate() } }
}

extension UnsafeRawBufferPointer {
    @inline(__always) func u16(_ offset: Int) -> UInt16 { loadUnaligned(fromByteOffset: offset, as: UInt16.self) }
    @inline(__always) func u32(_ offset: Int) -> UInt32 { loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
    @inline(__always) func u64(_ offset: Int) -> UInt64 { loadUnaligned(fromByteOffset: offset, as: UInt64.self) }
    /// A u16 field as an Int.
    @inline(__always) func int16(_ offset: Int) -> Int { Int(u16(offset)) }
}

/// Byte offsets and constants of LMDB 0.9's on-disk layout (64-bit builds).
enum PageLayout {
    /// Page header size (`PAGEHDRSZ`).
    static let header = 16
    /// Offset of the u16 page flags in the header.
    static let flags = 10
    /// Offsets of `lower` / `upper` (u16 each), or of an overflow page's u32 page count.
    static let lower = 12, upper = 14, overflowPages = 12
    /// Offset of `mp_pad` (the key size of a fixed-size sub-page).
    static let pad = 8
    /// Node header size (`NODESIZE`).
    static let node = 8
    /// LMDB's maximum key size (`MDB_MAXKEYSIZE`), also the maximum of a sorted duplicate.
    static let maxKey = 511
    /// LMDB's cursor stack depth: no tree is deeper.
    static let maxDepth = 32
    /// Size of a database record (`MDB_db`).
    static let dbRecord = 48
    /// The empty tree's root (`P_INVALID`).
    static let invalidPage = UInt64.max
    /// Meta page contents, from the page start: magic, version, then the two database records at
    /// header + 24 and header + 72, last page at header + 120, transaction id at header + 128.
    static let magic: UInt32 = 0xBEEF_C0DE
    static let metaFreeDB = 24, metaMainDB = 72
    static let metaLastPage = header + 120, metaTxnID = header + 128
    /// Page flags.
    static let branch: UInt16 = 0x01, leaf: UInt16 = 0x02, overflow: UInt16 = 0x04, meta: UInt16 = 0x08
    static let leaf2: UInt16 = 0x20, subPage: UInt16 = 0x40
    /// The page-kind bits of the flags (P_DIRTY, P_LOOSE and P_KEEP are in-memory states, ignored).
    static let kindMask: UInt16 = 0x6F
    /// Node flags.
    static let bigData: UInt16 = 0x01, subData: UInt16 = 0x02, dupData: UInt16 = 0x04
    /// Database flags.
    static let dupSort: UInt16 = 0x04, integerKey: UInt16 = 0x08, dupFixed: UInt16 = 0x10
    /// Every persistent database flag (REVERSEKEY, DUPSORT, INTEGERKEY, DUPFIXED, INTEGERDUP, REVERSEDUP).
    static let validDBFlags: UInt16 = 0x7E
}

/// A 48-byte `MDB_db` record.
struct DBRecord: Equatable {
    var pad: UInt32
    var flags: UInt16
    var depth: Int
    var branchPages: UInt64
    var leafPages: UInt64
    var overflowPages: UInt64
    var entries: UInt64
    var root: UInt64

    /// Reads the record at `offset` of `bytes` (the caller proved `offset + 48` within them).
    init(_ bytes: UnsafeRawBufferPointer, at offset: Int) {
        pad = bytes.u32(offset)
        flags = bytes.u16(offset + 4)
        depth = bytes.int16(offset + 6)
        branchPages = bytes.u64(offset + 8)
        leafPages = bytes.u64(offset + 16)
        overflowPages = bytes.u64(offset + 24)
        entries = bytes.u64(offset + 32)
        root = bytes.u64(offset + 40)
    }
}

/// The state of one check: the snapshot's bounds, the pages already reached, the named databases found.
struct PageWalk<Source: PageSource> {
    /// What a tree is, which decides the node flags its leaves may carry.
    enum Role {
        /// LMDB's free-page database: 8-byte transaction-id keys, page-number lists as values.
        case freeList
        /// The main database: named databases' records (`F_SUBDATA` nodes) and plain values.
        case main
        /// A named database, plain or sorted-duplicates by its flags.
        case named
        /// The sub-database of one key of a sorted-duplicates database: the duplicates are its keys.
        case duplicates
    }

    /// One tree being walked.
    struct Tree {
        var name: String
        var role: Role
        var flags: UInt16
        var depth: Int
        /// The fixed key size of a fixed-size duplicates sub-database's leaves (LEAF2 pages), or nil.
        var fixedKeySize: Int?
        var dupSort: Bool { flags & PageLayout.dupSort != 0 && role != .duplicates && role != .freeList }
        var dupFixed: Bool { flags & PageLayout.dupFixed != 0 }
    }

    var source: Source
    let pageSize: Int
    let lastPage: Int
    /// Pages of the file (whole pages only).
    let filePages: Int
    /// Page numbers below this exist in the snapshot and in the file.
    let pageLimit: Int
    /// Whether overflow headers and sub-databases are read (the `.full` level).
    let full: Bool
    /// One bit per page reached (`.full`), else the few pages reached (`.roots`).
    var visitedBits: [UInt64]
    var visitedList: [Int] = []
    /// Named databases found in the main tree: name and record.
    var named: [(name: String, record: DBRecord)] = []
    /// Pages the free list names (`.full`): the page number, and the free-list leaf and record naming it.
    var freePages: [(listed: UInt64, page: Int, record: Int)] = []
    var pagesChecked = 0
    var overflowExtents = 0
    var subDatabases = 0

    init(source: Source, lastPage: Int, full: Bool) {
        self.source = source
        self.pageSize = source.pageSize
        self.lastPage = lastPage
        self.filePages = source.pageCount
        self.pageLimit = min(lastPage + 1, filePages)
        self.full = full
        self.visitedBits = full ? [UInt64](repeating: 0, count: (pageLimit + 63) / 64) : []
        pagesChecked = 1  // the meta page
    }

    // MARK: Trees

    /// Checks a database record and walks its tree: every page when `descend`, else the root page only
    /// (its child pages and overflow extents range-checked, not read).
    mutating func tree(_ record: DBRecord, name: String, role: Role, descend: Bool, fixedKeySize: Int? = nil)
        throws(PageCheckError)
    {
        func bad(_ why: String) -> PageCheckError {
            PageCheckError(database: name, page: nil, fault: .badRecord(why))
        }
        // The counts first, for empty trees too: `mdb_stat` hands them out whatever the root.
        let pages = UInt64(lastPage + 1)
        for (count, kind) in [(record.branchPages, "branch"), (record.leafPages, "leaf"), (record.overflowPages, "overflow")]
        where count > pages {
            throw bad("\(count) \(kind) pages, more than the snapshot's \(pages)")
        }
        if record.branchPages + record.leafPages + record.overflowPages > pages {
            throw bad("\(record.branchPages + record.leafPages + record.overflowPages) pages, more than the snapshot's \(pages)")
        }
        if record.root == PageLayout.invalidPage {
            if record.depth != 0 { throw bad("an empty tree (no root page) of depth \(record.depth)") }
            return
        }
        if record.depth < 1 || record.depth > PageLayout.maxDepth {
            throw bad("depth \(record.depth) is not 1...\(PageLayout.maxDepth)")
        }
        if role != .freeList && record.flags & ~PageLayout.validDBFlags != 0 {
            throw bad("flags 0x\(String(record.flags, radix: 16)) hold unknown bits")
        }
        // LMDB writes a duplicates sub-database's flags as 0 or DUPFIXED (| INTEGERKEY); its cursor has
        // no duplicates cursor of its own, so DUPSORT there would send LMDB through a null one.
        if role == .duplicates && record.flags & ~(PageLayout.dupFixed | PageLayout.integerKey) != 0 {
            throw bad("a duplicates sub-database with flags 0x\(String(record.flags, radix: 16)) (LMDB writes 0 or DUPFIXED | INTEGERKEY)")
        }
        let root = try pageNumber(record.root, what: "root page", database: name, page: nil)
        let t = Tree(name: name, role: role, flags: record.flags, depth: record.depth, fixedKeySize: fixedKeySize)
        try page(root, level: 1, t, descend: descend)
    }

    /// `value` as a page number of the snapshot and the file, or a `pageOutOfRange` fault.
    func pageNumber(_ value: UInt64, what: String, database: String, page: Int?, node: Int? = nil)
        throws(PageCheckError) -> Int
    {
        guard value >= 2, value < UInt64(pageLimit) else {
            throw PageCheckError(database: database, page: page, subPageOfNode: nil,
                                 fault: .pageOutOfRange(page: value, lastPage: lastPage, filePages: filePages,
                                                        what: node.map { "node \($0)'s \(what)" } ?? what))
        }
        return Int(value)
    }

    /// Records that `page` is reached; a page reached twice is a cycle or a shared page.
    mutating func visit(_ page: Int, database: String) throws(PageCheckError) {
        if full {
            let (word, bit) = (page >> 6, UInt64(1) << UInt64(page & 63))
            if visitedBits[word] & bit != 0 {
                throw PageCheckError(database: database, page: page, fault: .pageReachedTwice)
            }
            visitedBits[word] |= bit
        } else {
            // `.roots` reads a few dozen pages: a list is cheaper than a set.
            if visitedList.contains(page) { throw PageCheckError(database: database, page: page, fault: .pageReachedTwice) }
            visitedList.append(page)
        }
    }

    // MARK: Pages

    /// Checks branch or leaf page `pgno` at `level` (1 = root) of tree `t`, and below it when `descend`.
    mutating func page(_ pgno: Int, level: Int, _ t: Tree, descend: Bool) throws(PageCheckError) {
        func fail(_ fault: PageFault) -> PageCheckError { PageCheckError(database: t.name, page: pgno, fault: fault) }
        try visit(pgno, database: t.name)
        pagesChecked += 1
        let p = try source.page(pgno)
        let stored = p.u64(0)
        if stored != UInt64(pgno) { throw fail(.pageNumberMismatch(found: stored)) }
        let flags = p.u16(PageLayout.flags) & PageLayout.kindMask
        let isLeaf = level == t.depth
        let fixed = isLeaf && t.fixedKeySize != nil
        let expected: UInt16 = isLeaf ? (fixed ? PageLayout.leaf | PageLayout.leaf2 : PageLayout.leaf) : PageLayout.branch
        if flags != expected {
            let what = isLeaf ? (fixed ? "fixed-size leaf" : "leaf") : "branch"
            throw fail(.pageKind(expected: "\(what) (level \(level) of depth \(t.depth))", flags: flags))
        }
        let lower = p.int16(PageLayout.lower), upper = p.int16(PageLayout.upper)
        if lower < PageLayout.header || lower > upper || upper > pageSize || (lower - PageLayout.header) & 1 != 0 {
            throw fail(.badBounds(lower: lower, upper: upper, size: pageSize))
        }
        let count = (lower - PageLayout.header) / 2
        if count == 0 { throw fail(.emptyPage) }
        // `mdb_page_search_root` asserts (aborts the process) on a branch page with one child outside
        // the free list; LMDB never leaves one (a one-child root is collapsed, others are merged).
        if !isLeaf && count < 2 && t.role != .freeList { throw fail(.singleChild) }
        if let keySize = t.fixedKeySize, isLeaf {
            if PageLayout.header + count * keySize > pageSize {
                throw fail(.fixedSizeKeys(keySize: keySize, count: count, size: pageSize))
            }
            return
        }
        for i in 0..<count {
            let offset = p.int16(PageLayout.header + 2 * i)
            if offset < upper || offset + PageLayout.node > pageSize {
                throw fail(.nodeOffset(node: i, offset: offset, upper: upper, size: pageSize))
            }
            let lo = p.int16(offset), hi = p.int16(offset + 2), nodeFlags = p.int16(offset + 4)
            let keySize = p.int16(offset + 6)
            if keySize > PageLayout.maxKey { throw fail(.keyTooLarge(node: i, size: keySize)) }
            let keyEnd = offset + PageLayout.node + keySize
            if keyEnd > pageSize { throw fail(.nodeOutOfPage(node: i, end: keyEnd, size: pageSize)) }
            if !isLeaf {
                let child = UInt64(lo) | UInt64(hi) << 16 | UInt64(nodeFlags) << 32
                let c = try pageNumber(child, what: "child page", database: t.name, page: pgno, node: i)
                if descend { try page(c, level: level + 1, t, descend: true) }
                continue
            }
            try leafNode(i, of: pgno, p, t, keyAt: offset + PageLayout.node, keySize: keySize, dataAt: keyEnd,
                         dataSize: lo | hi << 16, flags: UInt16(nodeFlags), descend: descend)
        }
    }

    /// Checks leaf node `i` of page `pgno` (bytes `p`): its data (starting `dataAt` bytes into the page)
    /// fits the page, its flags are allowed in the tree, and what they point to (an overflow extent, a
    /// sub-page, a named or duplicates sub-database) is in range.
    mutating func leafNode(_ i: Int, of pgno: Int, _ p: UnsafeRawBufferPointer, _ t: Tree, keyAt: Int, keySize: Int,
                           dataAt: Int, dataSize: Int, flags: UInt16, descend: Bool) throws(PageCheckError)
    {
        func fail(_ fault: PageFault) -> PageCheckError { PageCheckError(database: t.name, page: pgno, fault: fault) }
        func flagsFault(_ why: String) -> PageCheckError { fail(.nodeFlags(node: i, flags: flags, why: why)) }
        switch flags {
        case 0:
            let end = dataAt + dataSize
            if end > pageSize { throw fail(.nodeOutOfPage(node: i, end: end, size: pageSize)) }
            if t.role == .freeList {
                let data = UnsafeRawBufferPointer(rebasing: p[dataAt..<end])
                try Self.freeListRecord(i, of: pgno, keySize: keySize, data: data)
                if full {
                    for j in 0..<Int(data.u64(0)) { freePages.append((data.u64(8 + 8 * j), pgno, i)) }
                }
            }
        case PageLayout.bigData:
            if t.dupSort || t.role == .duplicates { throw flagsFault("a value on overflow pages in a sorted-duplicates database") }
            let end = dataAt + 8
            if end > pageSize { throw fail(.nodeOutOfPage(node: i, end: end, size: pageSize)) }
            let data = try overflow(p.u64(dataAt), size: dataSize, t, node: i, of: pgno)
            if t.role == .freeList, let data {
                try Self.freeListRecord(i, of: pgno, keySize: keySize, data: data, size: dataSize)
                // The list continues on the extent's pages (contiguous in the file after its header).
                let first = Int(p.u64(dataAt))
                for j in 0..<Int(data.u64(0)) {
                    freePages.append((try extentWord(first, at: PageLayout.header + 8 + 8 * j), pgno, i))
                }
            }
        case PageLayout.subData:
            guard t.role == .main else { throw flagsFault("a named database's record outside the main database") }
            let end = dataAt + PageLayout.dbRecord
            if dataSize != PageLayout.dbRecord { throw flagsFault("a database record of \(dataSize) bytes, not 48") }
            if end > pageSize { throw fail(.nodeOutOfPage(node: i, end: end, size: pageSize)) }
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: p[keyAt..<keyAt + keySize]), as: UTF8.self)
            named.append((name, DBRecord(p, at: dataAt)))
        case PageLayout.dupData | PageLayout.subData:
            guard t.dupSort else { throw flagsFault("a duplicates sub-database outside a sorted-duplicates database") }
            let end = dataAt + PageLayout.dbRecord
            if dataSize != PageLayout.dbRecord { throw flagsFault("a sub-database record of \(dataSize) bytes, not 48") }
            if end > pageSize { throw fail(.nodeOutOfPage(node: i, end: end, size: pageSize)) }
            let record = DBRecord(p, at: dataAt)
            subDatabases += 1
            var fixedKeySize: Int?
            if t.dupFixed {
                guard record.pad >= 1, record.pad <= UInt32(PageLayout.maxKey) else {
                    throw flagsFault("a fixed-size duplicates sub-database with duplicates of \(record.pad) bytes")
                }
                fixedKeySize = Int(record.pad)
            }
            if descend {
                try tree(record, name: t.name, role: .duplicates, descend: true, fixedKeySize: fixedKeySize)
            } else if record.root != PageLayout.invalidPage {
                _ = try pageNumber(record.root, what: "sub-database root", database: t.name, page: pgno, node: i)
            }
        case PageLayout.dupData:
            guard t.dupSort else { throw flagsFault("a sub-page outside a sorted-duplicates database") }
            let end = dataAt + dataSize
            if end > pageSize { throw fail(.nodeOutOfPage(node: i, end: end, size: pageSize)) }
            try Self.subPage(UnsafeRawBufferPointer(rebasing: p[dataAt..<end]), fixed: t.dupFixed, t, node: i, of: pgno)
        default:
            throw flagsFault("not a combination LMDB writes")
        }
    }

    /// Checks the overflow extent at `value` holding `size` bytes: in range always, its header (page
    /// number, kind, page count) with `full`. Returns the value's first bytes (up to the rest of the
    /// extent's first page) when the header was read.
    mutating func overflow(_ value: UInt64, size: Int, _ t: Tree, node: Int, of pgno: Int) throws(PageCheckError)
        -> UnsafeRawBufferPointer?
    {
        let needed = (PageLayout.header - 1 + size) / pageSize + 1
        let first = try pageNumber(value, what: "overflow page", database: t.name, page: pgno, node: node)
        if first + needed > pageLimit {
            throw PageCheckError(database: t.name, page: pgno,
                                 fault: .overflow("node \(node)'s \(size)-byte value needs \(needed) overflow pages from page \(first), past the last page \(lastPage) or the file's \(filePages) pages"))
        }
        guard full else { return nil }
        func fail(_ why: String) -> PageCheckError { PageCheckError(database: t.name, page: first, fault: .overflow(why)) }
        let p = try source.page(first)
        let stored = p.u64(0)
        if stored != UInt64(first) { throw PageCheckError(database: t.name, page: first, fault: .pageNumberMismatch(found: stored)) }
        let flags = p.u16(PageLayout.flags) & PageLayout.kindMask
        if flags != PageLayout.overflow {
            throw PageCheckError(database: t.name, page: first, fault: .pageKind(expected: "overflow", flags: flags))
        }
        let pages = Int(p.u32(PageLayout.overflowPages))
        if pages < needed { throw fail("an extent of \(pages) pages holds a \(size)-byte value that needs \(needed)") }
        if first + pages > pageLimit {
            throw fail("an extent of \(pages) pages runs past the last page \(lastPage) or the file's \(filePages) pages")
        }
        try visitExtent(first, pages, database: t.name)
        overflowExtents += 1
        return UnsafeRawBufferPointer(rebasing: p[PageLayout.header..<min(pageSize, PageLayout.header + size)])
    }

    /// The u64 at byte `offset` of the overflow extent starting at page `first` (the caller proved the
    /// extent in range and `offset + 8` inside it); it may straddle two pages.
    mutating func extentWord(_ first: Int, at offset: Int) throws(PageCheckError) -> UInt64 {
        let page = first + offset / pageSize, inPage = offset % pageSize
        if inPage + 8 <= pageSize { return try source.page(page).u64(inPage) }
        let a = try source.page(page), b = try source.page(page + 1)
        var word: UInt64 = 0
        for k in 0..<8 {
            let byte = inPage + k < pageSize ? a[inPage + k] : b[inPage + k - pageSize]
            word |= UInt64(byte) << UInt64(8 * k)
        }
        return word
    }

    /// After every tree was walked (`.full`): each page the free list names must be a page of the
    /// snapshot (2...last page) that no tree uses and that the list names once. A writer hands a page
    /// of the free list out as new (`mdb_page_alloc`): one in use would be overwritten (LMDB asserts
    /// when it is the very page being copied), and a meta page would be written over.
    mutating func checkFreePages() throws(PageCheckError) {
        for (listed, page, record) in freePages {
            func fail(_ why: String) -> PageCheckError {
                PageCheckError(database: PageCheckError.freeList, page: page, fault: .freeListRecord(record: record, why))
            }
            guard listed >= 2, listed < UInt64(pageLimit) else {
                throw fail("lists page \(listed), outside the snapshot's pages 2...\(pageLimit - 1)")
            }
            let n = Int(listed)
            let (word, bit) = (n >> 6, UInt64(1) << UInt64(n & 63))
            if visitedBits[word] & bit != 0 { throw fail("lists page \(n) as free, but a tree uses it or the list names it twice") }
            visitedBits[word] |= bit
        }
    }

    /// Marks the pages of an overflow extent reached (word at a time); any already reached is a fault.
    mutating func visitExtent(_ first: Int, _ count: Int, database: String) throws(PageCheckError) {
        var p = first
        let end = first + count
        while p < end {
            let word = p >> 6, shift = p & 63
            let span = min(64 - shift, end - p)
            let mask = (span == 64 ? UInt64.max : (UInt64(1) << UInt64(span)) - 1) << UInt64(shift)
            if visitedBits[word] & mask != 0 {
                var q = p
                while visitedBits[q >> 6] & (UInt64(1) << UInt64(q & 63)) == 0 { q += 1 }
                throw PageCheckError(database: database, page: q, fault: .pageReachedTwice)
            }
            visitedBits[word] |= mask
            p += span
        }
    }

    /// Checks the sub-page of sorted duplicates stored inline as leaf node `node`'s data (`s`): a leaf
    /// page (fixed-size when `fixed`) whose nodes are keys only.
    static func subPage(_ s: UnsafeRawBufferPointer, fixed: Bool, _ t: Tree, node: Int, of pgno: Int) throws(PageCheckError) {
        func fail(_ fault: PageFault) -> PageCheckError {
            PageCheckError(database: t.name, page: pgno, subPageOfNode: node, fault: fault)
        }
        let size = s.count
        if size < PageLayout.header {
            throw PageCheckError(database: t.name, page: pgno,
                                 fault: .nodeFlags(node: node, flags: PageLayout.dupData, why: "a \(size)-byte sub-page, shorter than a page header"))
        }
        let flags = s.u16(PageLayout.flags) & PageLayout.kindMask
        let expected = PageLayout.leaf | PageLayout.subPage | (fixed ? PageLayout.leaf2 : 0)
        if flags != expected { throw fail(.pageKind(expected: fixed ? "fixed-size sub-page" : "sub-page", flags: flags)) }
        let lower = s.int16(PageLayout.lower), upper = s.int16(PageLayout.upper)
        if lower < PageLayout.header || lower > upper || upper > size || (lower - PageLayout.header) & 1 != 0 {
            throw fail(.badBounds(lower: lower, upper: upper, size: size))
        }
        let count = (lower - PageLayout.header) / 2
        if count == 0 { throw fail(.emptyPage) }
        if fixed {
            let keySize = s.int16(PageLayout.pad)
            if keySize < 1 || keySize > PageLayout.maxKey || PageLayout.header + count * keySize > size {
                throw fail(.fixedSizeKeys(keySize: keySize, count: count, size: size))
            }
            return
        }
        for i in 0..<count {
            let offset = s.int16(PageLayout.header + 2 * i)
            if offset < upper || offset + PageLayout.node > size {
                throw fail(.nodeOffset(node: i, offset: offset, upper: upper, size: size))
            }
            let dataSize = s.int16(offset) | s.int16(offset + 2) << 16, nodeFlags = s.u16(offset + 4)
            let keySize = s.int16(offset + 6)
            if nodeFlags != 0 { throw fail(.nodeFlags(node: i, flags: nodeFlags, why: "a sub-page node holds a key only")) }
            if keySize > PageLayout.maxKey { throw fail(.keyTooLarge(node: i, size: keySize)) }
            let end = offset + PageLayout.node + keySize + dataSize
            if end > size { throw fail(.nodeOutOfPage(node: i, end: end, size: size)) }
        }
    }

    /// Checks a free-list record: an 8-byte transaction-id key and a page-number list (`data`: its
    /// first bytes at least; `size` in all) whose count, its first word, fits the value.
    static func freeListRecord(_ i: Int, of pgno: Int, keySize: Int, data: UnsafeRawBufferPointer, size: Int? = nil)
        throws(PageCheckError)
    {
        func fail(_ why: String) -> PageCheckError {
            PageCheckError(database: PageCheckError.freeList, page: pgno, fault: .freeListRecord(record: i, why))
        }
        let size = size ?? data.count
        if keySize != 8 { throw fail("a \(keySize)-byte key, not an 8-byte transaction id") }
        if size < 8 || data.count < 8 { throw fail("a \(size)-byte page list, shorter than its count") }
        let count = data.u64(0)
        if count > UInt64(size / 8 - 1) { throw fail("a list of \(count) pages in \(size) bytes") }
    }
}
