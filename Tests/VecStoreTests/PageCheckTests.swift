import Foundation
import LMDB
import Testing
@testable import VecStore

/// A hand-built LMDB 0.9 file image (4096-byte pages): meta pages, branch and leaf pages with nodes,
/// overflow extents and sub-pages, written field by field as Spec/FORMAT.md §21 describes them.
struct PageImage {
    static let pageSize = 4096
    var bytes: [UInt8]

    init(pages: Int) { bytes = [UInt8](repeating: 0, count: pages * Self.pageSize) }

    mutating func put16(_ offset: Int, _ v: Int) {
        for i in 0..<2 { bytes[offset + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) }
    }
    mutating func put32(_ offset: Int, _ v: Int) {
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) }
    }
    mutating func put64(_ offset: Int, _ v: UInt64) {
        for i in 0..<8 { bytes[offset + i] = UInt8(truncatingIfNeeded: v >> UInt64(8 * i)) }
    }
    func get16(_ offset: Int) -> Int { Int(bytes[offset]) | Int(bytes[offset + 1]) << 8 }

    /// A 48-byte database record at `offset`.
    mutating func record(_ offset: Int, flags: Int = 0, pad: Int = 0, depth: Int, branch: Int = 0, leaf: Int = 1,
                         overflow: Int = 0, entries: Int = 1, root: UInt64) {
        put32(offset, pad)
        put16(offset + 4, flags)
        put16(offset + 6, depth)
        put64(offset + 8, UInt64(branch))
        put64(offset + 16, UInt64(leaf))
        put64(offset + 24, UInt64(overflow))
        put64(offset + 32, UInt64(entries))
        put64(offset + 40, root)
    }

    /// Meta page `page` of transaction `txnID`: the free list empty, the main tree at `mainRoot`.
    mutating func meta(_ page: Int, txnID: UInt64, mainRoot: UInt64, mainDepth: Int, lastPage: Int) {
        let base = page * Self.pageSize
        put64(base, UInt64(page))
        put16(base + 10, 0x08)
        put32(base + 16, 0xBEEF_C0DE)
        put32(base + 20, 1)
        put64(base + 32, 1 << 20)
        record(base + 16 + 24, pad: Self.pageSize, depth: 0, leaf: 0, entries: 0, root: UInt64.max)
        record(base + 16 + 72, depth: mainDepth, root: mainRoot)
        put64(base + 16 + 120, UInt64(lastPage))
        put64(base + 16 + 128, txnID)
    }

    /// One node: key, and data (a leaf's value or record), or a child page number (branch).
    struct Node {
        var key: [UInt8]
        var data: [UInt8] = []
        var flags = 0
        var child: UInt64?
        /// The data size written in the header when it differs from `data.count` (overflow values).
        var dataSize: Int?
    }

    /// Writes page `pgno` with `flags` (0x01 branch, 0x02 leaf) holding `nodes`, packed from the end
    /// of the page as LMDB packs them. Returns the offset of each node.
    @discardableResult
    mutating func page(_ pgno: Int, flags: Int, _ nodes: [Node]) -> [Int] {
        let base = pgno * Self.pageSize
        put64(base, UInt64(pgno))
        put16(base + 10, flags)
        var upper = Self.pageSize
        var offsets: [Int] = []
        for (i, n) in nodes.enumerated() {
            let size = 8 + n.key.count + n.data.count
            upper -= size + (size & 1)
            offsets.append(upper)
            put16(base + 16 + 2 * i, upper)
            let o = base + upper
            if let child = n.child {
                put16(o, Int(child & 0xFFFF))
                put16(o + 2, Int(child >> 16 & 0xFFFF))
                put16(o + 4, Int(child >> 32 & 0xFFFF))
            } else {
                let ds = n.dataSize ?? n.data.count
                put16(o, ds & 0xFFFF)
                put16(o + 2, ds >> 16)
                put16(o + 4, n.flags)
            }
            put16(o + 6, n.key.count)
            bytes.replaceSubrange(o + 8..<o + 8 + n.key.count, with: n.key)
            bytes.replaceSubrange(o + 8 + n.key.count..<o + 8 + n.key.count + n.data.count, with: n.data)
        }
        put16(base + 12, 16 + 2 * nodes.count)
        put16(base + 14, upper)
        return offsets
    }

    /// An overflow extent of `pages` pages starting at `pgno`.
    mutating func overflow(_ pgno: Int, pages: Int) {
        let base = pgno * Self.pageSize
        put64(base, UInt64(pgno))
        put16(base + 10, 0x04)
        put32(base + 12, pages)
    }

    /// A 48-byte database record as node data.
    static func recordBytes(flags: Int = 0, pad: Int = 0, depth: Int, branch: Int = 0, leaf: Int = 1,
                            root: UInt64) -> [UInt8] {
        var image = PageImage(pages: 0)
        image.bytes = [UInt8](repeating: 0, count: 48)
        image.record(0, flags: flags, pad: pad, depth: depth, branch: branch, leaf: leaf, root: root)
        return image.bytes
    }

    /// A sub-page of sorted duplicates holding `keys` (flags leaf | sub-page, and fixed-size when
    /// `fixed`), as the data of a node.
    static func subPage(_ keys: [[UInt8]], fixed: Bool) -> [UInt8] {
        var image = PageImage(pages: 0)
        if fixed {
            let size = keys[0].count
            image.bytes = [UInt8](repeating: 0, count: 16 + keys.count * size)
            image.put16(8, size)
            image.put16(10, 0x02 | 0x40 | 0x20 | 0x10)
            image.put16(12, 16 + 2 * keys.count)
            image.put16(14, image.bytes.count - keys.count * (size - 2))
            for (i, k) in keys.enumerated() { image.bytes.replaceSubrange(16 + i * size..<16 + (i + 1) * size, with: k) }
            return image.bytes
        }
        let nodesSize = keys.reduce(0) { $0 + 8 + $1.count + ($1.count & 1) }
        image.bytes = [UInt8](repeating: 0, count: 16 + 2 * keys.count + nodesSize)
        image.put16(10, 0x02 | 0x40 | 0x10)
        var upper = image.bytes.count
        for (i, k) in keys.enumerated() {
            upper -= 8 + k.count + (k.count & 1)
            image.put16(16 + 2 * i, upper)
            image.put16(upper + 6, k.count)
            image.bytes.replaceSubrange(upper + 8..<upper + 8 + k.count, with: k)
        }
        image.put16(12, 16 + 2 * keys.count)
        image.put16(14, upper)
        return image.bytes
    }
}

/// The page checker on hand-built files: a sound image passes; each kind of damage gives its own typed
/// fault naming the database and the page, and none reads outside the image.
@Suite("LMDB page checks")
struct PageCheckTests {
    /// Pages: 0/1 meta, 2 main leaf (databases `plain` and `dups`), 3 branch of `plain` → 4, 5 leaves,
    /// 6–7 an overflow extent of a 5000-byte value on page 4, 8 the root leaf of `dups` (a sub-page, a
    /// fixed-size sub-page is not used: `dups` is sorted-duplicates without fixed sizes), 9 a
    /// sub-database root (leaf) of `dups`.
    static func sound() -> PageImage {
        var image = PageImage(pages: 10)
        image.meta(0, txnID: 6, mainRoot: 2, mainDepth: 1, lastPage: 9)
        image.meta(1, txnID: 7, mainRoot: 2, mainDepth: 1, lastPage: 9)
        image.page(2, flags: 0x02, [
            .init(key: Array("dups".utf8), data: PageImage.recordBytes(flags: 0x04, depth: 1, root: 8), flags: 0x02),
            .init(key: Array("plain".utf8), data: PageImage.recordBytes(depth: 2, branch: 1, leaf: 2, root: 3), flags: 0x02),
        ])
        image.page(3, flags: 0x01, [.init(key: [], child: 4), .init(key: Array("m".utf8), child: 5)])
        var bigValue = [UInt8](repeating: 0, count: 8)
        bigValue.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(6), as: UInt64.self) }
        image.page(4, flags: 0x02, [
            .init(key: Array("a".utf8), data: Array("apple".utf8)),
            .init(key: Array("big".utf8), data: bigValue, flags: 0x01, dataSize: 5000),
        ])
        image.page(5, flags: 0x02, [.init(key: Array("m".utf8), data: [1, 2, 3]), .init(key: Array("z".utf8), data: [4])])
        image.overflow(6, pages: 2)
        image.page(8, flags: 0x02, [
            .init(key: Array("k1".utf8), data: PageImage.subPage([[1, 0, 0], [2, 0, 0]], fixed: false), flags: 0x04),
            .init(key: Array("k2".utf8), data: PageImage.recordBytes(depth: 1, root: 9), flags: 0x06),
        ])
        image.page(9, flags: 0x02, [.init(key: [7]), .init(key: [8]), .init(key: [9])])
        return image
    }

    static func check(_ image: PageImage, level: PageCheckLevel = .full, snapshot: Int? = 7,
                      expected: [String: DatabaseFlags] = ["plain": [], "dups": [.dupSort]]) -> Result<PageCheckReport, PageCheckError>
    {
        image.bytes.withUnsafeBytes { file in
            Result { () throws(PageCheckError) in
                try PageChecker(file: file, pageSize: PageImage.pageSize).check(snapshot: snapshot, level: level,
                                                                                 expectedFlags: expected)
            }
        }
    }

    /// The fault of a check that must fail, with its database and page.
    static func fault(_ image: PageImage, level: PageCheckLevel = .full,
                      expected: [String: DatabaseFlags] = ["plain": [], "dups": [.dupSort]]) -> PageCheckError? {
        if case .failure(let e) = check(image, level: level, expected: expected) { return e }
        return nil
    }

    @Test func soundImagePassesBothLevels() throws {
        let full = try Self.check(Self.sound()).get()
        #expect(full.snapshot == 7)
        #expect(full.databases == 2)
        #expect(full.overflowExtents == 1)
        #expect(full.pages == 7)  // meta, main leaf, plain's branch and two leaves, dups' root and sub-database
        let roots = try Self.check(Self.sound(), level: .roots).get()
        #expect(roots.pages == 4)  // meta, main leaf, the two roots
        #expect(roots.overflowExtents == 0)
        // The older meta page is snapshot 6; no meta page holds snapshot 9.
        #expect(try Self.check(Self.sound(), snapshot: 6).get().snapshot == 6)
        guard case .failure(let e) = Self.check(Self.sound(), snapshot: 9) else { Issue.record("snapshot 9 found"); return }
        #expect(e.isSnapshotGone)
        #expect(e.fault == .snapshotMetaMissing(snapshot: 9, found: [6, 7]))
    }

    @Test func flippedLowerAndUpper() {
        var image = Self.sound()
        let base = 4 * PageImage.pageSize
        let (lower, upper) = (image.get16(base + 12), image.get16(base + 14))
        image.put16(base + 12, upper)
        image.put16(base + 14, lower)
        let e = Self.fault(image)
        #expect(e == PageCheckError(database: "plain", page: 4, fault: .badBounds(lower: upper, upper: lower, size: 4096)))
        #expect(e?.description == "page 4 of database `plain`: free-space bounds lower \(upper) / upper \(lower) are not 16 ≤ lower ≤ upper ≤ 4096")
        // An upper bound past the page.
        var past = Self.sound()
        past.put16(base + 14, 5000)
        #expect(Self.fault(past)?.fault == .badBounds(lower: 20, upper: 5000, size: 4096))
    }

    @Test func nodeOffsetAndNodeEndPastThePage() {
        var image = Self.sound()
        let base = 5 * PageImage.pageSize
        image.put16(base + 16 + 2, 4093)  // node 1 starts 3 bytes before the end: no room for its header
        #expect(Self.fault(image) == PageCheckError(database: "plain", page: 5,
                                                    fault: .nodeOffset(node: 1, offset: 4093, upper: image.get16(base + 14), size: 4096)))
        // A node whose header fits but whose key runs past the page end.
        var key = Self.sound()
        let node1 = key.get16(base + 16 + 2)
        key.put16(base + node1 + 6, 4096 - node1 - 8 + 100 > 511 ? 511 : 4096 - node1 - 8 + 100)
        let e = Self.fault(key)
        guard case .nodeOutOfPage(node: 1, let end, size: 4096)? = e?.fault else { Issue.record("\(String(describing: e))"); return }
        #expect(end > 4096)
        #expect(e?.description.hasPrefix("page 5 of database `plain`: node 1 ends at \(end), past the page end 4096") == true)
        // A leaf value whose size runs past the page.
        var value = Self.sound()
        value.put16(base + node1, 60_000 & 0xFFFF)
        #expect(Self.fault(value)?.fault == .nodeOutOfPage(node: 1, end: node1 + 8 + 1 + 60_000, size: 4096))
        // A key above LMDB's limit.
        var long = Self.sound()
        long.put16(base + node1 + 6, 600)
        #expect(Self.fault(long)?.fault == .keyTooLarge(node: 1, size: 600))
    }

    @Test func branchChildPastTheLastPage() {
        var image = Self.sound()
        let base = 3 * PageImage.pageSize
        let node1 = image.get16(base + 16 + 2)
        image.put16(base + node1, 10)  // child page 10: the snapshot's last page is 9
        let expected = PageCheckError(database: "plain", page: 3,
                                      fault: .pageOutOfRange(page: 10, lastPage: 9, filePages: 10, what: "node 1's child page"))
        #expect(Self.fault(image) == expected)
        #expect(Self.fault(image, level: .roots) == expected)  // range-checked without being read
        // A child number in the high word (the node's flags field) is out of range too, not truncated.
        var high = Self.sound()
        high.put16(base + node1 + 4, 1)
        #expect(Self.fault(high)?.fault == .pageOutOfRange(page: 1 << 32 | 5, lastPage: 9, filePages: 10, what: "node 1's child page"))
    }

    @Test func cyclesAndSharedPages() {
        // The second child points back at the branch itself.
        var cycle = Self.sound()
        let base = 3 * PageImage.pageSize
        cycle.put16(base + cycle.get16(base + 16 + 2), 3)
        #expect(Self.fault(cycle) == PageCheckError(database: "plain", page: 3, fault: .pageReachedTwice))
        // Both children are the same leaf.
        var shared = Self.sound()
        shared.put16(base + shared.get16(base + 16 + 2), 4)
        #expect(Self.fault(shared) == PageCheckError(database: "plain", page: 4, fault: .pageReachedTwice))
        // `dups`' sub-database root is `plain`'s leaf: two trees share a page (found when `plain`,
        // walked after `dups`, reaches it).
        var crossed = Self.sound()
        let dups = 8 * PageImage.pageSize
        crossed.put64(dups + crossed.get16(dups + 16 + 2) + 8 + 2 + 40, 5)
        #expect(Self.fault(crossed) == PageCheckError(database: "plain", page: 5, fault: .pageReachedTwice))
        // An overflow extent overlapping a leaf page.
        var overlap = Self.sound()
        overlap.put16(4 * PageImage.pageSize + overlap.get16(4 * PageImage.pageSize + 16 + 2) + 8 + 3, 5)
        overlap.overflow(5, pages: 2)
        #expect(Self.fault(overlap)?.page == 5)
    }

    @Test func overflowCountPastTheEnd() {
        var image = Self.sound()
        image.overflow(6, pages: 9)  // pages 6...14: the last page is 9
        #expect(Self.fault(image) == PageCheckError(
            database: "plain", page: 6,
            fault: .overflow("an extent of 9 pages runs past the last page 9 or the file's 10 pages")))
        var short = Self.sound()
        short.overflow(6, pages: 1)  // a 5000-byte value needs 2 pages
        #expect(Self.fault(short)?.fault == .overflow("an extent of 1 pages holds a 5000-byte value that needs 2"))
        var kind = Self.sound()
        kind.put16(6 * PageImage.pageSize + 10, 0x02)
        #expect(Self.fault(kind) == PageCheckError(database: "plain", page: 6, fault: .pageKind(expected: "overflow", flags: 0x02)))
        // A value whose size needs more pages than the snapshot has, caught by range even at `.roots`
        // when the node is on a root page.
        var huge = Self.sound()
        let leaf = 4 * PageImage.pageSize, node = huge.get16(leaf + 16 + 2)
        huge.put16(leaf + node + 2, 1)  // data size 5000 + 65536
        guard case .overflow(let why)? = Self.fault(huge)?.fault else { Issue.record("no overflow fault"); return }
        #expect(why.contains("needs 18 overflow pages from page 6"))
    }

    @Test func badMetaRootsAndRecords() {
        var image = Self.sound()
        image.put64(PageImage.pageSize + 16 + 72 + 40, 12)  // main root 12 in meta 1
        let expected = PageCheckError(database: PageCheckError.mainDatabase, page: nil,
                                      fault: .pageOutOfRange(page: 12, lastPage: 9, filePages: 10, what: "root page"))
        #expect(Self.fault(image) == expected)
        #expect(Self.fault(image, level: .roots) == expected)
        #expect(expected.description == "database `(main)`: root page 12 is past the last page 9 or the file's 10 pages")
        var magic = Self.sound()
        magic.put32(PageImage.pageSize + 16, 0x1234)
        #expect(Self.fault(magic) == PageCheckError(database: "", page: 1, fault: .badMeta("magic 0x1234 is not LMDB's 0xbeefc0de")))
        var depth = Self.sound()
        depth.put16(PageImage.pageSize + 16 + 72 + 6, 40)
        #expect(Self.fault(depth)?.fault == .badRecord("depth 40 is not 1...32"))
        // A named database's record claims more pages than the file has.
        var counts = Self.sound()
        let main = 2 * PageImage.pageSize, plain = counts.get16(main + 16 + 2) + 8 + 5
        counts.put64(main + plain + 16, 1 << 50)
        #expect(Self.fault(counts, level: .roots) == PageCheckError(
            database: "plain", page: nil, fault: .badRecord("\(1 << 50) leaf pages, more than the snapshot's 10")))
        // The record's depth disagrees with the tree: page 3 at depth 1 must be a leaf.
        var shallow = Self.sound()
        shallow.put16(main + plain + 6, 1)
        #expect(Self.fault(shallow)?.fault == .pageKind(expected: "leaf (level 1 of depth 1)", flags: 0x01))
    }

    @Test func pageHeadersAndFlags() {
        var image = Self.sound()
        image.put64(5 * PageImage.pageSize, 77)
        #expect(Self.fault(image) == PageCheckError(database: "plain", page: 5, fault: .pageNumberMismatch(found: 77)))
        // The database must carry the flags the schema gives it.
        #expect(Self.fault(Self.sound(), expected: ["plain": [.dupSort]]) ==
                PageCheckError(database: "plain", page: nil, fault: .flagsMismatch(expected: 0x04, found: 0)))
        // A sub-database node in a database without sorted duplicates.
        var sub = Self.sound()
        let leaf = 5 * PageImage.pageSize
        sub.put16(leaf + sub.get16(leaf + 16) + 4, 0x04)
        #expect(Self.fault(sub)?.fault == .nodeFlags(node: 0, flags: 0x04, why: "a sub-page outside a sorted-duplicates database"))
        // A damaged sub-page: its node offset points past its end.
        var subPage = Self.sound()
        let dups = 8 * PageImage.pageSize, k1 = subPage.get16(dups + 16)
        let sp = dups + k1 + 8 + 2
        subPage.put16(sp + 16, 200)
        #expect(Self.fault(subPage, level: .roots) == PageCheckError(
            database: "dups", page: 8, subPageOfNode: 0,
            fault: .nodeOffset(node: 0, offset: 200, upper: subPage.get16(sp + 14), size: 16 + 4 + 2 * 12)))
        // An empty leaf.
        var empty = Self.sound()
        empty.put16(9 * PageImage.pageSize + 12, 16)
        #expect(Self.fault(empty) == PageCheckError(database: "dups", page: 9, fault: .emptyPage))
    }

    @Test func fixedSizeDuplicates() {
        // `dups` as sorted duplicates of fixed size: the sub-page must be fixed-size (LEAF2), and its
        // keys must fit it.
        var image = Self.sound()
        image.page(8, flags: 0x02, [
            .init(key: Array("k1".utf8), data: PageImage.subPage([[1, 0, 0, 0], [2, 0, 0, 0], [3, 0, 0, 0]], fixed: true), flags: 0x04),
        ])
        let main = 2 * PageImage.pageSize
        image.put16(main + image.get16(main + 16) + 8 + 4 + 4, 0x14)  // the record's flags
        let expected: [String: DatabaseFlags] = ["plain": [], "dups": [.dupSort, .dupFixed]]
        let ok = Self.check(image, expected: expected)
        #expect((try? ok.get()) != nil, "\(ok)")
        var bad = image
        let sp = 8 * PageImage.pageSize + bad.get16(8 * PageImage.pageSize + 16) + 8 + 2
        bad.put16(sp + 8, 40)  // 3 keys of 40 bytes do not fit the 28-byte sub-page
        #expect(Self.fault(bad, expected: expected) == PageCheckError(
            database: "dups", page: 8, subPageOfNode: 0, fault: .fixedSizeKeys(keySize: 40, count: 3, size: 28)))
        // A sub-page without the fixed-size flag in a fixed-size database.
        var plain = image
        plain.put16(sp + 10, 0x52)
        #expect(Self.fault(plain, expected: expected)?.fault == .pageKind(expected: "fixed-size sub-page", flags: 0x42))
    }

    /// Random damage of the sound image: every result is a pass or a typed fault (no crash, no read
    /// outside the image — the image is exactly the file, so an out-of-bounds read would trap here).
    @Test func randomDamageOfTheImageNeverEscapes() {
        var rng = SeededRandom(seed: 77)
        var faults = 0
        for _ in 0..<3_000 {
            var image = Self.sound()
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                let at = Int.random(in: 2 * PageImage.pageSize..<image.bytes.count, using: &rng)
                image.bytes[at] = UInt8.random(in: 0...255, using: &rng)
            }
            for level in [PageCheckLevel.roots, .full] {
                if case .failure = Self.check(image, level: level) { faults += 1 }
            }
        }
        #expect(faults > 0)
    }

    /// A real store written by LMDB (every database kind vecstore uses: overflow vectors, HNSW and IVF
    /// blocks, BM25 postings, sorted fixed-size duplicates with sub-pages and sub-databases) passes the
    /// full check, in this process and through `verify`.
    @Test func realStorePasses() throws {
        let tmp = try TempDir()
        let path = tmp.path("s.vecstore")
        try FuzzTests.makeStore(path)
        let store = try VecStore(path: path)
        let report = try VecStore.checkPages(store.env, .full)
        #expect(report.databases >= 13)
        #expect(report.overflowExtents > 0)
        #expect(report.subDatabases > 0)  // `fields` values shared by hundreds of rows
        #expect(report.pages > 50)
        let verified = try store.verify()
        #expect(verified.isOK)
        #expect(verified.pages == report.pages + report.overflowExtents)
    }
}

/// Faults found by review against `mdb.c` (LMDB 0.9.24, the version linked): each passed the checker
/// before, and LMDB then walked unchecked roots or aborted on one of its assertions.
extension PageCheckTests {
    /// LMDB reads meta page `txnid & 1` for transaction `txnid` (`mdb_txn_renew0`), and takes the
    /// larger `txnid` of the two pages at open: a page recording the larger id at the wrong parity makes
    /// LMDB walk the *other* page's roots. The check must check the page LMDB reads.
    @Test func metaPageIsTheOneLMDBReads() {
        var image = Self.sound()
        image.put64(16 + 128, 9)  // meta 0 now records 9, the larger id: LMDB reads meta 9 & 1 = 1
        image.put64(PageImage.pageSize + 16 + 72 + 40, 12)  // ... whose main root is past the last page
        for snapshot in [9, nil] as [Int?] {
            guard case .failure(let e) = Self.check(image, snapshot: snapshot) else {
                Issue.record("snapshot \(String(describing: snapshot)): meta 0's roots were checked, LMDB reads meta 1's")
                continue
            }
            #expect(e.page == 0)
            guard case .badMeta(let why) = e.fault else { Issue.record("\(e)"); continue }
            #expect(why.contains("which LMDB reads from meta page 1"))
        }
        // Equal ids: LMDB picks page 0 at open, then reads page id & 1.
        var tie = Self.sound()
        tie.put64(16 + 128, 7)
        tie.put64(16 + 72 + 40, 12)  // meta 0's main root: not read by LMDB for snapshot 7
        #expect((try? Self.check(tie, snapshot: 7).get()) != nil)
        #expect((try? Self.check(tie, snapshot: nil).get())?.snapshot == 7)
    }

    /// A transaction id with the top bit set is a size_t LMDB uses as it is (`mdb_txn_id` returns it as a
    /// negative Int): the check must not trap on it.
    @Test func transactionIDWithTheTopBitSet() throws {
        var image = Self.sound()
        let id: UInt64 = 1 << 63 | 7
        image.put64(PageImage.pageSize + 16 + 128, id)
        let report = try Self.check(image, snapshot: Int(truncatingIfNeeded: id)).get()
        #expect(report.snapshot == Int(truncatingIfNeeded: id))
        #expect(try Self.check(image, snapshot: nil).get().snapshot == Int(truncatingIfNeeded: id))
    }

    /// LMDB opens cursors on the main database and the free list without a duplicates cursor and
    /// asserts `mx != NULL` (abort) when their record says DUPSORT; a duplicates sub-database's cursor
    /// has none either, so DUPSORT in its record sends LMDB through a null pointer.
    @Test func sortedDuplicatesFlagsWhereLMDBCannotHaveThem() {
        var main = Self.sound()
        main.put16(PageImage.pageSize + 16 + 72 + 4, 0x04)
        #expect(Self.fault(main, level: .roots) == PageCheckError(
            database: "", page: 1, fault: .badMeta("the main database is marked sorted-duplicates (flags 0x4)")))
        var free = Self.sound()
        free.put16(PageImage.pageSize + 16 + 24 + 4, 0x0C)
        #expect(Self.fault(free, level: .roots) == PageCheckError(
            database: "", page: 1, fault: .badMeta("the free list is marked sorted-duplicates (flags 0xc)")))
        // `dups`' sub-database record (node 1 of page 8) marked DUPSORT.
        var sub = Self.sound()
        let dups = 8 * PageImage.pageSize
        sub.put16(dups + sub.get16(dups + 16 + 2) + 8 + 2 + 4, 0x04)
        #expect(Self.fault(sub) == PageCheckError(database: "dups", page: nil, fault: .badRecord(
            "a duplicates sub-database with flags 0x4 (LMDB writes 0 or DUPFIXED | INTEGERKEY)")))
        // DUPFIXED | INTEGERKEY is what LMDB writes for an integer fixed-size one: accepted by this check.
        var fixed = Self.sound()
        fixed.put16(dups + fixed.get16(dups + 16 + 2) + 8 + 2 + 4, 0x18)
        if case .failure(let e) = Self.check(fixed), case .badRecord = e.fault { Issue.record("\(e)") }
    }

    /// An empty tree's record (no root page) still has its page counts checked: `mdb_stat` reports them.
    @Test func emptyTreeRecordCounts() {
        var image = Self.sound()
        image.put64(PageImage.pageSize + 16 + 24 + 16, 1 << 62)  // the free list's leaf pages
        #expect(Self.fault(image, level: .roots) == PageCheckError(
            database: PageCheckError.freeList, page: nil, fault: .badRecord("\(1 << 62) leaf pages, more than the snapshot's 10")))
    }

    /// `mdb_page_search_root` asserts that a branch page outside the free list has two or more children.
    @Test func branchPageWithOneChild() {
        var image = Self.sound()
        image.put16(3 * PageImage.pageSize + 12, 18)  // `plain`'s root branch now lists one child
        let expected = PageCheckError(database: "plain", page: 3, fault: .singleChild)
        #expect(Self.fault(image) == expected)
        #expect(Self.fault(image, level: .roots) == expected)
    }
}

/// The same meta-page damage on a real store, through the CLI in child processes (a crash is seen, not
/// suffered). Before the fixes above, with the default open (`.roots`): wrong parity SIGBUS in `stats`
/// and `delete`, the free list marked DUPSORT SIGABRT in `delete`, the top-bit id SIGILL (a trap in the
/// checker) in both, the main database marked DUPSORT exit 6.
extension PageCheckTests {
    static func u64(_ data: Data, _ offset: Int) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 | UInt64(data[offset + $1]) << UInt64(8 * $1) }
    }

    static func put64(_ data: inout Data, _ offset: Int, _ v: UInt64) {
        for i in 0..<8 { data[offset + i] = UInt8(truncatingIfNeeded: v >> UInt64(8 * i)) }
    }

    @Test func damagedMetaPagesNeverCrashTheCLI() throws {
        let tmp = try TempDir()
        let base = tmp.path("base.vecstore")
        try FuzzTests.makeStore(base)
        let ps = 4096
        let original = try Data(contentsOf: URL(fileURLWithPath: base))
        let ids = [Self.u64(original, 16 + 128), Self.u64(original, ps + 16 + 128)]
        let newer = ids[1] > ids[0] ? 1 : 0
        #expect(Int(ids[newer] & 1) == newer)
        let cases: [(String, Set<Int32>, (inout Data) -> Void)] = [
            // The older page records the newest id + 2 (LMDB takes it, then reads the newer page by
            // parity), and the newer page's main root lies past the file's end inside LMDB's map.
            ("wrong-parity meta", [5], { d in
                Self.put64(&d, (1 - newer) * ps + 16 + 128, ids[newer] + 2)
                Self.put64(&d, newer * ps + 16 + 120, 200_000)
                Self.put64(&d, newer * ps + 16 + 72 + 40, 100_000)
            }),
            // The main database marked DUPSORT: `mdb_dbi_open` refuses named databases in it (before:
            // exit 6, a storage error instead of "damaged"); `mdb_page_search` of a stale handle would
            // assert on it (`mdb_cursor_init(…, MAIN_DBI, NULL)`).
            ("main marked DUPSORT", [5], { d in d[newer * ps + 16 + 72 + 4] |= 0x04 }),
            // The free list marked DUPSORT: the first write's page allocation asserts.
            ("free list marked DUPSORT", [5], { d in d[newer * ps + 16 + 24 + 4] |= 0x04 }),
            // A transaction id with the top bit set (parity kept): a valid store for LMDB.
            ("top-bit transaction id", [0], { d in Self.put64(&d, newer * ps + 16 + 128, ids[newer] | 1 << 63) }),
        ]
        var failures: [String] = []
        for (name, allowed, edit) in cases {
            let store = tmp.path("\(name.replacingOccurrences(of: " ", with: "-")).vecstore")
            var data = original
            edit(&data)
            try data.write(to: URL(fileURLWithPath: store))
            for command in [["stats", store], ["delete", store, "-c", "docs", "doc-4"]] {
                let r = try runGuarded(command, timeout: 30)
                if let s = r.signal {
                    failures.append("\(name): vecstore \(command[0]) died with signal \(s)\n\(r.output.suffix(300))")
                } else if !allowed.contains(r.status) {
                    failures.append("\(name): vecstore \(command[0]) exit status \(r.status)\n\(r.output.suffix(300))")
                }
            }
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
    }
}

extension PageCheckTests {
    /// The sound image with a free list: page 10 its leaf, one record (transaction 5) naming `listed`.
    static func withFreeList(_ listed: [UInt64]) -> PageImage {
        var image = Self.sound()
        image.bytes += [UInt8](repeating: 0, count: 2 * PageImage.pageSize)
        for meta in 0...1 {
            image.put64(meta * PageImage.pageSize + 16 + 120, 11)
            image.record(meta * PageImage.pageSize + 16 + 24, flags: 0x08, pad: PageImage.pageSize, depth: 1, root: 10)
        }
        var list = [UInt8](repeating: 0, count: 8 * (listed.count + 1))
        for (j, v) in ([UInt64(listed.count)] + listed).enumerated() {
            for b in 0..<8 { list[8 * j + b] = UInt8(truncatingIfNeeded: v >> UInt64(8 * b)) }
        }
        image.page(10, flags: 0x02, [.init(key: [5, 0, 0, 0, 0, 0, 0, 0], data: list)])
        return image
    }

    /// A writer takes the free list's pages as new ones (`mdb_page_alloc`): a listed page that a tree
    /// uses, a meta page, or one past the snapshot would be overwritten or written past the end.
    @Test func freeListPagesAreFreeAndInRange() throws {
        let ok = try Self.check(Self.withFreeList([11])).get()
        #expect(ok.pages == 8)
        for (listed, why) in [(UInt64(5), "lists page 5 as free, but a tree uses it or the list names it twice"),
                              (11 << 32 | 11, "lists page \(UInt64(11 << 32 | 11)), outside the snapshot's pages 2...11"),
                              (1, "lists page 1, outside the snapshot's pages 2...11"),
                              (10, "lists page 10 as free, but a tree uses it or the list names it twice")] {
            #expect(Self.fault(Self.withFreeList([listed])) == PageCheckError(
                database: PageCheckError.freeList, page: 10, fault: .freeListRecord(record: 0, why)))
        }
        #expect(Self.fault(Self.withFreeList([11, 11]))?.fault
                == .freeListRecord(record: 0, "lists page 11 as free, but a tree uses it or the list names it twice"))
        // `.roots` does not walk the free list's records against the trees.
        #expect((try? Self.check(Self.withFreeList([5]), level: .roots).get()) != nil)
    }
}
