/// The structural page checker's public types: how far it walks, what it reports and the faults it names.
/// The walk itself is `PageChecker` (PageChecker.swift); running it on an open environment's snapshot is
/// `Transaction.checkPages` / `Environment.checkPages` (PageCheckRun.swift). Spec/FORMAT.md §21.

/// How much of a snapshot's LMDB page structure `PageChecker` walks.
public enum PageCheckLevel: Sendable, Equatable {
    /// The snapshot's meta page, the whole main tree (the records of the named databases), and the root
    /// page of the free list and of every named database, with the page numbers those root pages point
    /// to range-checked but not read: O(number of databases), cheap enough for every open.
    case roots
    /// Every branch and leaf page of every tree (free list, main tree, each named database and each
    /// sub-database of a sorted-duplicates database), every sub-page, and the header of every overflow
    /// extent, each page reached at most once: O(file), for files that are not trusted.
    case full
}

/// What a page check walked.
public struct PageCheckReport: Sendable, Equatable {
    /// The snapshot (transaction id of its meta page) that was checked.
    public var snapshot: Int
    /// Branch, leaf and meta pages whose structure was checked.
    public var pages: Int
    /// Overflow extents whose header and extent were checked (their data pages are not read).
    public var overflowExtents: Int
    /// Named databases found in the main tree.
    public var databases: Int
    /// Sub-databases of sorted duplicates found (walked at `.full`, their root range-checked at `.roots`).
    public var subDatabases: Int
}

/// One structural fault of an LMDB page, meta page or database record.
public enum PageFault: Sendable, Equatable, CustomStringConvertible {
    /// The file is too short to hold the two meta pages.
    case fileTooShort(bytes: Int, pageSize: Int)
    /// A meta page field is wrong (magic, version, page size, last page, flags).
    case badMeta(String)
    /// Neither meta page records the snapshot being checked (a writer replaced it meanwhile, or the
    /// meta pages are damaged). `Environment.checkPages` retries in a new snapshot.
    case snapshotMetaMissing(snapshot: Int, found: [Int])
    /// A database record (in a meta page, a main-tree node or a sub-database node) is inconsistent.
    case badRecord(String)
    /// A named database is stored with other LMDB flags than the ones it must have.
    case flagsMismatch(expected: UInt16, found: UInt16)
    /// A page number points past the snapshot's last page or past the end of the file.
    case pageOutOfRange(page: UInt64, lastPage: Int, filePages: Int, what: String)
    /// The page header names another page number than the one the page was reached by.
    case pageNumberMismatch(found: UInt64)
    /// The page is not of the kind its place in the tree needs (branch above the leaf level, leaf at it).
    case pageKind(expected: String, flags: UInt16)
    /// `lower`/`upper` of a page header are out of order or out of the page.
    case badBounds(lower: Int, upper: Int, size: Int)
    /// A branch, leaf or sub-page holds no node.
    case emptyPage
    /// A branch page outside the free list has a single child (LMDB asserts at least two).
    case singleChild
    /// A node's offset lies outside the node area `[upper, size)` of its page.
    case nodeOffset(node: Int, offset: Int, upper: Int, size: Int)
    /// A node (header, key, or inline data) ends past the end of its page.
    case nodeOutOfPage(node: Int, end: Int, size: Int)
    /// A key is longer than LMDB's maximum key size (511 bytes).
    case keyTooLarge(node: Int, size: Int)
    /// A node carries flags that are not allowed in its database, or data of the wrong size for them.
    case nodeFlags(node: Int, flags: UInt16, why: String)
    /// A page is reached a second time: a cycle, or two trees sharing a page.
    case pageReachedTwice
    /// An overflow extent's header or length is wrong.
    case overflow(String)
    /// A fixed-size (LEAF2) page's key size or key count does not fit it.
    case fixedSizeKeys(keySize: Int, count: Int, size: Int)
    /// A page could not be read from the file.
    case unreadable(String)
    /// A free-list record (numbered by its node on the page, or its position in the list) is malformed.
    case freeListRecord(record: Int, String)

    /// What is wrong, in words.
    public var description: String {
        switch self {
        case .fileTooShort(let bytes, let pageSize):
            "the file has \(bytes) bytes, less than the two \(pageSize)-byte meta pages"
        case .badMeta(let why): why
        case .snapshotMetaMissing(let snapshot, let found):
            "no meta page records snapshot \(snapshot) (they record \(found.map(String.init).joined(separator: " and ")))"
        case .badRecord(let why): why
        case .flagsMismatch(let expected, let found):
            "stored with LMDB flags 0x\(String(found, radix: 16)), expected 0x\(String(expected, radix: 16))"
        case .pageOutOfRange(let page, let lastPage, let filePages, let what):
            "\(what) \(page) is past the last page \(lastPage) or the file's \(filePages) pages"
        case .pageNumberMismatch(let found): "the page header says page \(found)"
        case .pageKind(let expected, let flags): "expected a \(expected) page, the header has flags 0x\(String(flags, radix: 16))"
        case .badBounds(let lower, let upper, let size):
            "free-space bounds lower \(lower) / upper \(upper) are not 16 ≤ lower ≤ upper ≤ \(size)"
        case .emptyPage: "the page holds no node"
        case .singleChild: "the branch page has a single child (LMDB aborts on one outside the free list)"
        case .nodeOffset(let node, let offset, let upper, let size):
            "node \(node) starts at \(offset), outside the node area \(upper)..<\(size)"
        case .nodeOutOfPage(let node, let end, let size): "node \(node) ends at \(end), past the page end \(size)"
        case .keyTooLarge(let node, let size): "node \(node) has a \(size)-byte key, above LMDB's 511-byte limit"
        case .nodeFlags(let node, let flags, let why): "node \(node) has flags 0x\(String(flags, radix: 16)): \(why)"
        case .pageReachedTwice: "the page is reached twice (a cycle, or two trees sharing it)"
        case .overflow(let why): why
        case .fixedSizeKeys(let keySize, let count, let size):
            "\(count) fixed-size keys of \(keySize) bytes do not fit its \(size) bytes"
        case .unreadable(let why): "could not be read: \(why)"
        case .freeListRecord(let record, let why): "free-list record \(record): \(why)"
        }
    }
}

/// A structural fault found by `PageChecker`: the database, the page and what is wrong with it.
public struct PageCheckError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The database whose tree holds the page: a named database, `PageCheckError.mainDatabase` or
    /// `PageCheckError.freeList`; empty for the meta pages.
    public var database: String
    /// The page number, or nil for a fault of a record or of the file as a whole.
    public var page: Int?
    /// For a fault inside a sub-page: the node of `page` that holds the sub-page.
    public var subPageOfNode: Int?
    /// What is wrong.
    public var fault: PageFault

    /// Creates an error.
    public init(database: String, page: Int?, subPageOfNode: Int? = nil, fault: PageFault) {
        self.database = database
        self.page = page
        self.subPageOfNode = subPageOfNode
        self.fault = fault
    }

    /// The name used for LMDB's unnamed main database (which holds the named databases' records).
    public static let mainDatabase = "(main)"
    /// The name used for LMDB's free-page database.
    public static let freeList = "(free list)"

    /// Whether the fault means only that the snapshot's meta page was rewritten meanwhile (retry).
    public var isSnapshotGone: Bool {
        if case .snapshotMetaMissing = fault { return true }
        return false
    }

    /// For example "page 1234 of database `ids`: node 7 ends at 4200, past the page end 4096".
    public var description: String {
        // A name read from a damaged main tree may hold control characters: shown as "?".
        let printable = String(String.UnicodeScalarView(database.unicodeScalars.map {
            $0.properties.generalCategory == .control || $0 == "\u{FFFD}" ? "?" : $0
        }))
        let db = database.isEmpty ? "" : "database `\(printable)`"
        var place: String
        switch (page, database.isEmpty) {
        case (let p?, true): place = p < 2 ? "meta page \(p)" : "page \(p)"
        case (let p?, false): place = "page \(p) of \(db)"
        case (nil, true): place = "the LMDB file"
        case (nil, false): place = db
        }
        if let node = subPageOfNode { place += ", the sub-page of node \(node)" }
        return "\(place): \(fault)"
    }
}
