import CDistance
import Foundation
import LMDB
import VecStoreIO
import VecStoreKernels

#if canImport(Glibc)
import Glibc
#endif

/// Filter links (Spec/HNSW.md §7): for each metadata field a collection declares, a second layer-0
/// adjacency in which every graph row links only to rows holding the same value of that field (Qdrant's
/// payload-index links). A filtered search that pins such a field to one value expands its matching
/// nodes through these lists, so it walks the value's own neighbourhood graph instead of looking through
/// the lists of non-matching neighbours.
///
/// Stored in the named database `graph-flinks` under `BE32(cid) · BE32(field index) · BE32(block)`, each
/// value laid out exactly as a `graph` block (§3.1): the block's graph rows' slots of `4·(1 + 2M)` bytes.
/// The declared fields are in the meta record `"hnsw-flinks:" · BE32(cid)`; the store declares feature
/// `hnsw-flinks`, needed to write only (a build without it reads the graph and ignores the links, but
/// must not write, since it would not keep them).
enum HNSWFilterLinks {
    /// Needed to write, not to read.
    static let feature = Format.Feature(name: "hnsw-flinks", neededToRead: false, neededToWrite: true)
    /// Meta key prefix of the per-collection record (the feature's `<name>:` prefix).
    static let keyPrefix: [UInt8] = Array("hnsw-flinks:".utf8)
    static let recordVersion: UInt8 = 1
    /// Most fields one collection links.
    static let maxFields = 8
    /// Most bytes of a field name.
    static let maxNameBytes = 255
    /// The schema entry of `graph-flinks` (optional: created by the first writable open of a build that
    /// knows it, so read-only opens of older stores go on without it).
    static let schemaEntry = Schema.Entry(name: Format.DB.graphFlinks, flags: [], owner: HNSWIndex.name,
                                          perCollection: true, optional: true)

    static func recordKey(_ collection: UInt32) -> [UInt8] {
        var k = keyPrefix
        k.appendBE(collection)
        return k
    }

    /// `BE32(cid) · BE32(field) · BE32(block)`.
    static func blockKey(_ collection: UInt32, field: Int, block: Int) -> [UInt8] {
        var k = Format.prefix(collection)
        k.appendBE(UInt32(field))
        k.appendBE(UInt32(block))
        return k
    }

    /// Checks a list of field names a caller asks to link.
    static func validate(_ fields: [String]) throws(VecStoreError) {
        guard fields.count <= maxFields else {
            throw .invalidArgument("at most \(maxFields) fields can have filter links (\(fields.count) given)")
        }
        var seen = Set<String>()
        for f in fields {
            let n = f.utf8.count
            guard n >= 1, n <= maxNameBytes, !f.utf8.contains(0) else {
                throw .invalidArgument("filter-links field name '\(f)' must be 1–\(maxNameBytes) bytes without NUL")
            }
            guard seen.insert(f).inserted else { throw .invalidArgument("filter-links field '\(f)' is given twice") }
        }
    }

    /// Record value: `u8 version (1) · u8 count · count × (u8 length · name bytes)`.
    static func encode(_ fields: [String]) -> [UInt8] {
        var b: [UInt8] = [recordVersion, UInt8(fields.count)]
        for f in fields {
            b.append(UInt8(f.utf8.count))
            b.append(contentsOf: f.utf8)
        }
        return b
    }

    static func decode(_ value: UnsafeRawBufferPointer, context: String) throws(VecStoreError) -> [String] {
        var r = ByteReader(value, context: context)
        let version = try r.u8()
        guard version == recordVersion else { throw .newerFormat("\(context): filter-links record version \(version)") }
        let count = Int(try r.u8())
        guard count >= 1, count <= maxFields else { throw .corrupt("\(context): \(count) filter-link fields") }
        var out: [String] = []
        for _ in 0..<count {
            let n = Int(try r.u8())
            let name = try r.string(n)
            guard n >= 1, !name.utf8.contains(0), !out.contains(name) else {
                throw .corrupt("\(context): filter-link field name '\(name)' is empty, holds NUL or repeats")
            }
            out.append(name)
        }
        if r.remaining != 0 { throw .corrupt("\(context): \(r.remaining) trailing bytes") }
        return out
    }

    /// The collection's linked fields (empty without a record).
    static func load(_ txn: Transaction, _ dbs: Databases, _ collection: UInt32) throws -> [String] {
        guard let v = try txn.get(dbs.meta, recordKey(collection)) else { return [] }
        return try decode(v, context: "meta hnsw-flinks:\(collection)")
    }

    /// Writes (or, for no fields, removes) the record; declares the feature when there are fields.
    static func storeRecord(_ txn: Transaction, _ dbs: Databases, _ collection: UInt32, fields: [String]) throws {
        if fields.isEmpty {
            try txn.delete(dbs.meta, recordKey(collection))
            return
        }
        try txn.put(dbs.meta, recordKey(collection), encode(fields))
        try Format.declare(feature, txn, meta: dbs.meta)
    }

    /// Removes the collection's links (every block) and, with `record`, its record.
    static func drop(_ txn: Transaction, _ dbs: Databases, _ collection: UInt32, record: Bool) throws {
        if let db = dbs.handle(Format.DB.graphFlinks) { try txn.deletePrefix(db, Format.prefix(collection)) }
        if record { try txn.delete(dbs.meta, recordKey(collection)) }
    }

    /// The value number of each row below `rows` for field `field` (`noValue` for rows without one: no
    /// such key, or deleted), read from the `fields` index. A row holding two values (an array) is
    /// refused: filter links take one value per document.
    static func values(_ txn: Transaction, _ dbs: Databases, collection: UInt32, field: String, rows: Int,
                       name: String) throws -> [UInt32] {
        var keys: [[UInt8]]?
        return try values(txn, dbs, collection: collection, field: field, rows: rows, name: name, keys: &keys)
    }

    /// As `values`, and with `keys` non-nil on entry, the `fields` key of each value number (in order).
    static func values(_ txn: Transaction, _ dbs: Databases, collection: UInt32, field: String, rows: Int,
                       name: String, keys: inout [[UInt8]]?) throws -> [UInt32] {
        var out = [UInt32](repeating: noValue, count: rows)
        let prefix = FieldKey.fieldPrefix(collection, field)
        var number: UInt32 = 0
        var found = keys
        try txn.withCursor(dbs.fields) { (c: Cursor) throws -> Void in
            var entry = try c.seek(atLeast: prefix)
            while let (key, _) = entry, key.starts(with: prefix) {
                found?.append(Array(key))
                var page = try c.multipleValues(first: true)
                while let list = page {
                    var o = 0
                    while o + 4 <= list.count {
                        let row = Int(readBE32(list, at: o))
                        o += 4
                        guard row < rows else { continue }
                        guard out[row] == noValue else {
                            throw arrayRefusal(id: (try? externalID(txn, dbs, collection, UInt32(row))) ?? "row \(row)",
                                               field: field, name: name)
                        }
                        out[row] = number
                    }
                    page = try c.multipleValues(first: false)
                }
                number &+= 1
                entry = try c.nextKey()
            }
        }
        keys = found
        return out
    }

    static let noValue = UInt32.max

    private static func externalID(_ txn: Transaction, _ dbs: Databases, _ collection: UInt32, _ row: UInt32) throws
        -> String?
    {
        guard let v = try txn.get(dbs.docs, Format.key(collection, row)) else { return nil }
        return try DocumentRecord.decode(v, context: "docs").externalID
    }
}

/// One field's links as a read transaction sees them: per layer-0 block a pointer to its slots in the
/// map (zero-copy, like `HNSWGraphView`'s layer 0). The list of row `i` is `[count, ids…]`.
final class HNSWValueLinks: @unchecked Sendable {
    let field: String
    let shift: UInt32
    let mask: UInt32
    let slotWords: Int
    let rows: Int
    private let bases: UnsafeMutablePointer<UnsafePointer<UInt32>>
    private var owned: [UnsafeMutableRawPointer] = []

    /// Resolves field number `index`'s blocks; each must have the size of the graph's block (`rows`
    /// graph rows).
    init(_ txn: Transaction, _ db: Database, record: CollectionRecord, config: HNSWConfig, field: String, index: Int,
         name: String) throws {
        self.field = field
        shift = UInt32(record.blockShift)
        mask = (1 << shift) - 1
        slotWords = config.slotWords0
        rows = Int(config.nodes)
        let cap = record.blockCapacity
        let blocks = (rows + cap - 1) / cap
        bases = .allocate(capacity: max(1, blocks))
        let prefix = HNSWFilterLinks.blockKey(record.id, field: index, block: 0).prefix(8)
        let slotBytes = slotWords * 4
        var found = 0
        // Every property is set: a throw below runs `deinit`, which frees `bases` and the copies.
        try txn.withCursor(db) { (c: Cursor) throws -> Void in
            var entry = try c.seek(atLeast: Array(prefix))
            while let (key, value) = entry, key.starts(with: prefix) {
                let block = Int(readBE32(key, at: 8))
                let expected = min(cap, rows - block * cap)
                guard key.count == 12, block == found, expected > 0, value.count == expected * slotBytes,
                      let base = value.baseAddress else {
                    throw VecStoreError.corrupt(
                        "collection \(name): filter-links block \(block) of field '\(field)' (expected \(found)) has \(value.count) bytes for \(max(0, expected)) rows")
                }
                if Int(bitPattern: base) % 4 == 0 {
                    bases[block] = base.assumingMemoryBound(to: UInt32.self)
                } else {
                    let copy = UnsafeMutableRawPointer.allocate(byteCount: value.count, alignment: 16)
                    copy.copyMemory(from: base, byteCount: value.count)
                    owned.append(copy)
                    bases[block] = UnsafePointer(copy.assumingMemoryBound(to: UInt32.self))
                }
                found += 1
                entry = try c.next()
            }
        }
        guard found == blocks else {
            throw VecStoreError.corrupt("collection \(name): \(found) filter-links blocks of field '\(field)' stored, \(blocks) needed")
        }
    }

    deinit {
        bases.deallocate()
        for c in owned { c.deallocate() }
    }

    /// Row `node`'s list (`node < rows`); its count is clamped and its ids bounded by the reader.
    @inline(__always)
    func list(_ node: UInt32) -> UnsafePointer<UInt32> { bases[Int(node >> shift)] + Int(node & mask) * slotWords }

    @inline(__always)
    func prefetch(_ node: UInt32) { vs_prefetch(list(node), 2) }
}

/// Links rows into one field's value graphs inside a write transaction: blocks read in place and copied
/// on first change (only changed blocks are written), per-row value numbers from the `fields` index, and
/// the insert of Spec/HNSW.md §7.3 (a beam of `efConstruction` over the value's own links, seeded with
/// every same-value row among the row's layer-0 links and the value's entry row; the selection
/// heuristic; reverse links pruned to 2M), serially or on all cores with striped node locks.
final class HNSWValueLinkEditor: HNSWGraphAccess {
    let config: HNSWConfig
    let collectionID: UInt32
    let fieldIndex: Int
    let name: String
    private(set) var rows: Int
    let shift: UInt32
    let mask: UInt32
    let blockCapacity: Int
    let slotWords: Int
    // Per block (a fixed count: the editor never grows past `newRows`): the pointer reads go through
    // (map or owned copy), the owned copy, the rows it holds, and whether it changed. Raw buffers, so
    // parallel workers can publish a block's copy under `ownLock` while others read.
    private let blockCount: Int
    private let readBases: UnsafeMutablePointer<UnsafePointer<UInt32>>
    private let owned: UnsafeMutablePointer<UnsafeMutablePointer<UInt32>?>
    private let blockRows: UnsafeMutablePointer<Int>
    private let dirty: UnsafeMutablePointer<Bool>
    private(set) var needsLocks = false
    private let stripes: UnsafeMutablePointer<pthread_mutex_t>
    private static let stripeCount = 1 << 12
    private let ownLock: UnsafeMutablePointer<pthread_mutex_t>
    private var damage: String?
    private(set) var writtenBlocks = 0

    /// Loads field `index`'s blocks over the graph's first `oldRows` rows (none when `oldRows` is 0) and
    /// extends them with empty slots to `newRows`. One cursor walk over the field's block keys (a pointer
    /// per block; blocks are copied only when changed): O(rows / blockCapacity) key steps, not O(rows).
    init(_ txn: Transaction, _ dbs: Databases, record: CollectionRecord, config: HNSWConfig, field: String,
         index: Int, oldRows: Int, newRows: Int, name: String) throws {
        self.config = config
        collectionID = record.id
        fieldIndex = index
        self.name = name
        shift = UInt32(record.blockShift)
        mask = (1 << shift) - 1
        blockCapacity = record.blockCapacity
        slotWords = config.slotWords0
        rows = newRows
        let needed = (newRows + record.blockCapacity - 1) / record.blockCapacity
        blockCount = needed
        readBases = .allocate(capacity: max(1, needed))
        owned = .allocate(capacity: max(1, needed))
        owned.initialize(repeating: nil, count: max(1, needed))
        blockRows = .allocate(capacity: max(1, needed))
        blockRows.initialize(repeating: 0, count: max(1, needed))
        dirty = .allocate(capacity: max(1, needed))
        dirty.initialize(repeating: false, count: max(1, needed))
        stripes = .allocate(capacity: Self.stripeCount)
        for i in 0..<Self.stripeCount { pthread_mutex_init(stripes + i, nil) }
        ownLock = .allocate(capacity: 1)
        pthread_mutex_init(ownLock, nil)
        let db = try dbs.required(Format.DB.graphFlinks)
        let slotBytes = slotWords * 4
        var loaded = 0
        if oldRows > 0 {
            let prefix = Array(HNSWFilterLinks.blockKey(record.id, field: index, block: 0).prefix(8))
            try txn.withCursor(db) { (c: Cursor) throws -> Void in
                var entry = try c.seek(atLeast: prefix)
                while let (key, value) = entry, key.starts(with: prefix) {
                    let block = Int(readBE32(key, at: 8))
                    let expected = min(blockCapacity, oldRows - block * blockCapacity)
                    guard key.count == 12, block == loaded, block < needed, expected > 0,
                          value.count == expected * slotBytes, let base = value.baseAddress else {
                        throw VecStoreError.corrupt(
                            "collection \(name): filter-links block \(block) of field '\(field)' has \(value.count) bytes for \(max(0, expected)) rows")
                    }
                    if Int(bitPattern: base) % 4 == 0 {
                        readBases[block] = base.assumingMemoryBound(to: UInt32.self)
                    } else {
                        let copy = UnsafeMutablePointer<UInt32>.allocate(capacity: blockCapacity * slotWords)
                        UnsafeMutableRawPointer(copy).copyMemory(from: base, byteCount: value.count)
                        readBases[block] = UnsafePointer(copy)
                        owned[block] = copy
                        noteDamage(checkBlock(copy, block: block, count: expected))
                    }
                    blockRows[block] = expected
                    loaded += 1
                    entry = try c.next()
                }
            }
            guard loaded * blockCapacity >= oldRows else {
                throw VecStoreError.corrupt("collection \(name): \(loaded) filter-links blocks of field '\(field)' for \(oldRows) rows")
            }
        }
        for b in 0..<needed {
            let want = min(blockCapacity, newRows - b * blockCapacity)
            if b >= loaded {
                let copy = UnsafeMutablePointer<UInt32>.allocate(capacity: blockCapacity * slotWords)
                copy.initialize(repeating: 0, count: want * slotWords)
                readBases[b] = UnsafePointer(copy)
                owned[b] = copy
                blockRows[b] = want
                dirty[b] = true
            } else if blockRows[b] < want {
                let base = owned[b] ?? makeOwned(b)
                (base + blockRows[b] * slotWords).initialize(repeating: 0, count: (want - blockRows[b]) * slotWords)
                blockRows[b] = want
                dirty[b] = true
            }
        }
    }

    deinit {
        for b in 0..<blockCount { owned[b]?.deallocate() }
        owned.deallocate()
        readBases.deallocate()
        blockRows.deallocate()
        dirty.deallocate()
        for i in 0..<Self.stripeCount { pthread_mutex_destroy(stripes + i) }
        stripes.deallocate()
        pthread_mutex_destroy(ownLock)
        ownLock.deallocate()
    }

    func lock(_ node: UInt32) { pthread_mutex_lock(stripes + Int(node & UInt32(Self.stripeCount - 1))) }
    func unlock(_ node: UInt32) { pthread_mutex_unlock(stripes + Int(node & UInt32(Self.stripeCount - 1))) }
    func prefetchLinks(_ node: UInt32) {}

    @inline(__always)
    func links(_ node: UInt32, _ level: Int) -> UnsafePointer<UInt32> {
        readBases[Int(node >> shift)] + Int(node & mask) * slotWords
    }

    private func mutableLinks(_ node: UInt32) -> UnsafeMutablePointer<UInt32> {
        let b = Int(node >> shift)
        if needsLocks {
            if let base = owned[b] { return base + Int(node & mask) * slotWords }
            pthread_mutex_lock(ownLock)
            defer { pthread_mutex_unlock(ownLock) }
            if let base = owned[b] { return base + Int(node & mask) * slotWords }
            dirty[b] = true
            return makeOwned(b) + Int(node & mask) * slotWords
        }
        let base = owned[b] ?? makeOwned(b)
        dirty[b] = true
        return base + Int(node & mask) * slotWords
    }

    private func makeOwned(_ b: Int) -> UnsafeMutablePointer<UInt32> {
        let copy = UnsafeMutablePointer<UInt32>.allocate(capacity: blockCapacity * slotWords)
        copy.update(from: readBases[b], count: blockRows[b] * slotWords)
        noteDamage(checkBlock(copy, block: b, count: blockRows[b]))
        vs_release_fence()
        owned[b] = copy
        readBases[b] = UnsafePointer(copy)
        dirty[b] = true
        return copy
    }

    private func noteDamage(_ d: String?) { if damage == nil, let d { damage = d } }

    /// Clamps a copied block's lists into bounds (count ≤ 2M, ids < rows) and reports the first damage
    /// (`write` then refuses the batch). Values are not compared here: `verify` checks them.
    private func checkBlock(_ base: UnsafeMutablePointer<UInt32>, block: Int, count: Int) -> String? {
        var found: String?
        let limit = UInt32(rows)
        for r in 0..<count {
            let list = base + r * slotWords
            let row = UInt32(block * blockCapacity + r)
            let stored = Int(list[0])
            if stored > config.maxLinks0, found == nil {
                found = "filter-links block \(block) slot \(r) holds \(stored) links, more than 2·M = \(config.maxLinks0)"
            }
            var kept = 0
            for j in 0..<min(stored, config.maxLinks0) {
                let t = list[1 + j]
                if t >= limit || t == row {
                    if found == nil { found = "filter-links block \(block) slot \(r) links to row \(t)" }
                    continue
                }
                list[1 + kept] = t
                kept += 1
            }
            list[0] = UInt32(kept)
        }
        return found
    }

    /// Links `plan.inserted` (live graph rows, ascending) into their values' graphs. `main` gives each
    /// row's layer-0 links (already turned into `plan`'s seeds), `vt` the float32 rows, `live` the live rows.
    func link<D: HNSWDistance>(_ plan: HNSWValuePlan, main: HNSWEditor, _ vt: VectorTable, _: D.Type,
                                live: CandidateMask, threads: Int) {
        // Each value's entry: its lowest live row already linked (below the first inserted row), or the
        // first inserted row of the value. The first 64 inserted rows of a value with fewer than 64 linked
        // rows are linked serially (a parallel insert into an almost empty value graph links poorly).
        let inserted = plan.inserted
        var entry = plan.entry
        var linkedCount = plan.linkedCount
        var serial: [Int] = []
        var parallel: [Int] = []
        for (i, q) in inserted.enumerated() {
            let v = plan.value[i]
            guard v != HNSWFilterLinks.noValue else { continue }
            if entry[v] == nil {
                entry[v] = q
                linkedCount[v] = 1
                continue
            }
            if linkedCount[v, default: 0] < 64 || threads <= 1 || inserted.count < HNSWIndexing.parallelThreshold {
                serial.append(i)
            } else {
                parallel.append(i)
            }
            linkedCount[v, default: 0] += 1
        }
        let entries = entry
        if !serial.isEmpty {
            let scratch = HNSWScratchPool.take(rows: rows)
            for i in serial { insert(i, plan, entries, main: main, vt, D.self, live: live, scratch: scratch) }
            HNSWScratchPool.give(scratch)
        }
        guard !parallel.isEmpty else { return }
        needsLocks = true
        defer { needsLocks = false }
        let nextLock = NSLock()
        let box = SendableBox((self, main, vt, live, parallel, entries, plan))
        let nextBox = SendableBox(UnsafeMutablePointer<Int>.allocate(capacity: 1))
        nextBox.value.initialize(to: 0)
        defer { nextBox.value.deallocate() }
        let chunk = 16
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            let (editor, main, vt, live, rows, entries, plan) = box.value
            let scratch = HNSWScratchPool.take(rows: editor.rows)
            defer { HNSWScratchPool.give(scratch) }
            while true {
                nextLock.lock()
                let start = nextBox.value.pointee
                nextBox.value.pointee = start + chunk
                nextLock.unlock()
                if start >= rows.count { break }
                for i in start..<min(rows.count, start + chunk) {
                    editor.insert(rows[i], plan, entries, main: main, vt, D.self, live: live, scratch: scratch)
                }
            }
        }
    }

    /// Scores the beam with the traversal copies the layer-0 insert used (binary16 or int8, re-scored
    /// with float32 before the heuristic, Spec/HNSW.md §5.3), or the float32 rows.
    private func insert<D: HNSWDistance>(_ i: Int, _ plan: HNSWValuePlan, _ entries: [UInt32: UInt32], main: HNSWEditor,
                                         _ vt: VectorTable, _: D.Type, live: CandidateMask, scratch: HNSWScratch) {
        let q = plan.inserted[i]
        if let copies = main.copies, let int8 = main.int8 {
            let scorer = Int8Scorer<D.Int8Copy, HNSWCopyTable>(copies: copies, scoring: int8, query: vt.vector(q),
                                                               buffer: scratch.preparedQuery(vt.dimension))
            insert(i, plan, entries, main: main, vt, D.self, scorer, exactBeam: false, live: live, scratch: scratch)
        } else if let copies = main.copies {
            insert(i, plan, entries, main: main, vt, D.self, HalfScorer<D.Half, HNSWCopyTable>(copies: copies, query: vt.vector(q)),
                   exactBeam: false, live: live, scratch: scratch)
        } else {
            insert(i, plan, entries, main: main, vt, D.self, FloatScorer<D>(vectors: vt, query: vt.vector(q)), exactBeam: true,
                   live: live, scratch: scratch)
        }
    }

    private func insert<D: HNSWDistance, S: HNSWScorer>(_ i: Int, _ plan: HNSWValuePlan, _ entries: [UInt32: UInt32],
                                                         main: HNSWEditor, _ vt: VectorTable, _: D.Type, _ scorer: S,
                                                         exactBeam: Bool, live: CandidateMask, scratch: HNSWScratch) {
        let q = plan.inserted[i]
        let v = plan.value[i]
        // Seeds: every same-value row among q's layer-0 links (the rows nearest q, some of them perhaps
        // linked by this step only later, with empty lists yet; `plan` found them), and the value's entry
        // row, which is linked: a beam from one seed whose list is still empty would end at once and leave
        // q on an island (measured: docs1m 238k, parallel steps, value graphs in 821 pieces).
        let limit = UInt32(rows)
        let same = plan.seedStart[i]..<plan.seedStart[i + 1]
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: same.count + 1) { seeds in
            var count = 0
            for j in same {
                seeds[count] = plan.seeds[j]
                count += 1
            }
            if let e = entries[v], e != q, e < limit {
                seeds[count] = e
                count += 1
            }
            guard let base = seeds.baseAddress else { return }
            beam(scorer, seeds: base, count: count, live: live, scratch: scratch)
        }
        if !exactBeam { HNSWAlgorithms.rescoreResults(vt, D.self, query: q, scratch: scratch) }
        let (ids, kept, _) = HNSWAlgorithms.selectFromBeam(vt, D.self, excluding: q, max: config.m,
                                                          reserve: config.maxLinks0 + 1, scratch: scratch)
        if needsLocks { lock(q) }
        let own = mutableLinks(q)
        own[0] = UInt32(kept)
        (own + 1).update(from: ids, count: kept)
        if needsLocks { unlock(q) }
        for j in 0..<kept {
            let t = ids[j]
            if needsLocks { lock(t) }
            HNSWAlgorithms.addLink(mutableLinks(t), of: t, q, cap: config.maxLinks0, vt, D.self, scratch: scratch)
            if needsLocks { unlock(t) }
        }
    }

    /// A beam search of width `efConstruction` over the value links from several seeds (duplicates
    /// allowed), as `HNSWAlgorithms.searchLayer` from one: on return `scratch.results` holds up to
    /// `efConstruction` live rows, farthest on top.
    private func beam<S: HNSWScorer>(_ scorer: S, seeds: UnsafePointer<UInt32>, count: Int, live: CandidateMask,
                                     scratch: HNSWScratch) {
        scratch.begin(rows: rows)
        let ef = config.efConstruction
        let cap = config.maxLinks0
        let limit = UInt32(rows)
        let stamps = scratch.stamps
        let gen = scratch.generation
        var candidates = scratch.candidates
        var results = scratch.results
        defer {
            scratch.candidates = candidates
            scratch.results = results
        }
        var bound = Float.infinity
        for i in 0..<count {
            let s = seeds[i]
            if s >= limit || stamps[Int(s)] == gen { continue }
            stamps[Int(s)] = gen
            let d = scorer.distance(s)
            candidates.push(-d, s)
            if live.contains(s) {
                results.push(d, s)
                if results.count > ef { results.pop() }
                bound = results.topKey
            }
        }
        scratch.ensureNeighbourCapacity(cap)
        let pending = scratch.pending
        while !candidates.isEmpty {
            let cd = -candidates.topKey
            if cd > bound && results.count >= ef { break }
            let c = candidates.topID
            candidates.pop()
            if needsLocks { lock(c) }
            let list = links(c, 0)
            let n = min(Int(list[0]), cap)
            var p = 0
            for j in 1...max(1, n) where j <= n {
                let id = list[j]
                if id >= limit || stamps[Int(id)] == gen { continue }
                stamps[Int(id)] = gen
                pending[p] = id
                p += 1
                scorer.prefetch(id)
            }
            if needsLocks { unlock(c) }
            HNSWAlgorithms.scorePending(scorer, pending, count: p, ef: ef, allowed: live, candidates: &candidates,
                                        results: &results, bound: &bound)
        }
    }

    /// Writes every changed block.
    func write(_ txn: Transaction, _ dbs: Databases) throws {
        if let damage { throw VecStoreError.corrupt("collection \(name): \(damage)") }
        let db = try dbs.required(Format.DB.graphFlinks)
        let slotBytes = slotWords * 4
        writtenBlocks = 0
        for b in 0..<blockCount where dirty[b] {
            guard let src = owned[b] else { continue }
            writtenBlocks += 1
            let n = blockRows[b] * slotBytes
            try txn.reserve(db, HNSWFilterLinks.blockKey(collectionID, field: fieldIndex, block: b), count: n) { out in
                out.copyMemory(from: UnsafeRawBufferPointer(start: src, count: n))
            }
            dirty[b] = false
        }
    }
}

extension HNSWFilterLinks {
    /// Links graph rows `from ..< to` (those live) into every declared field's value graphs, after the
    /// layer-0 graph linked them (`main` holds their lists), and writes the changed blocks. Returns the
    /// blocks written.
    @discardableResult
    static func link(_ txn: Transaction, _ dbs: Databases, record: CollectionRecord, config: HNSWConfig,
                     main: HNSWEditor, vectors: VectorTable, liveWords: [UInt64], from: Int, to: Int, threads: Int,
                     name: String) throws -> Int {
        guard !config.filterLinks.isEmpty, to > from else { return 0 }
        let inserted = (UInt32(from)..<UInt32(to)).filter { isLive(liveWords, $0) }
        var written = 0
        for (i, field) in config.filterLinks.enumerated() {
            // Read first: a throw after the editor's buffers are allocated runs its `deinit`.
            let plan = try HNSWValuePlan(txn, dbs, collection: record.id, field: field, inserted: inserted, main: main,
                                         liveWords: liveWords, oldRows: from, rows: to, name: name)
            let editor = try HNSWValueLinkEditor(txn, dbs, record: record, config: config, field: field, index: i,
                                                 oldRows: from, newRows: to, name: name)
            CandidateMask.with(liveWords) { live in
                switch record.metric {
                case .l2: editor.link(plan, main: main, vectors, L2Distance.self, live: live, threads: threads)
                case .cosine, .dot:
                    editor.link(plan, main: main, vectors, InnerProductDistance.self, live: live, threads: threads)
                }
            }
            try editor.write(txn, dbs)
            written += editor.writtenBlocks
        }
        return written
    }

    @inline(__always)
    static func isLive(_ words: [UInt64], _ row: UInt32) -> Bool {
        let w = Int(row >> 6)
        return w < words.count && (words[w] >> UInt64(row & 63)) & 1 == 1
    }

    static func arrayRefusal(id: String, field: String, name: String) -> VecStoreError {
        .invalidMetadata(id: id, reason: "field '\(field)' holds several values (an array) in collection \(name), "
            + "which has filter links on it; filter links need one value per document")
    }

    /// Test and measurement hooks of one task (`$probe.withValue`): the reads a linking step made, and
    /// optionally the way it must read the values (the cost rule chooses otherwise).
    @TaskLocal static var probe: HNSWValueLinkProbe?

    /// `VECSTORE_FLINKS_PLAN=batch|full` forces how linking steps read values (for measuring the two
    /// against each other with a release build; informative, the links written are the same).
    static let environmentMode: HNSWValuePlan.Mode? = {
        switch ProcessInfo.processInfo.environment["VECSTORE_FLINKS_PLAN"] {
        case "batch": return .batch
        case "full": return .full
        default: return nil
        }
    }()
}

/// Counts what linking steps read while a task has it installed (`HNSWFilterLinks.$probe`), so a test
/// can check a small write reads O(batch) entries, not O(rows).
final class HNSWValueLinkProbe: @unchecked Sendable {
    /// Forces the plan's mode (nil: the cost rule decides).
    let mode: HNSWValuePlan.Mode?
    private let lock = NSLock()
    private var counts = (rows: 0, postings: 0, probes: 0, modes: [HNSWValuePlan.Mode]())

    init(mode: HNSWValuePlan.Mode? = nil) { self.mode = mode }

    /// Rows whose value was looked up (a document read, or a row numbered by reading the whole field).
    var rowsLookedUp: Int { lock.withLock { counts.rows } }
    /// `fields` postings (row ids) decoded.
    var postingsRead: Int { lock.withLock { counts.postings } }
    /// Membership probes (`MDB_GET_BOTH`) into a value's postings.
    var probes: Int { lock.withLock { counts.probes } }
    /// The mode of each plan built, in order.
    var modes: [HNSWValuePlan.Mode] { lock.withLock { counts.modes } }

    func add(rows: Int = 0, postings: Int = 0, probes: Int = 0, mode: HNSWValuePlan.Mode? = nil) {
        lock.withLock {
            counts.rows += rows
            counts.postings += postings
            counts.probes += probes
            if let mode { counts.modes.append(mode) }
        }
    }
}

/// What one linking step knows of one field's values (Spec/HNSW.md §7.3): each inserted row's value,
/// each of those values' entry row and linked-row count (up to 64, all the insert asks), and each
/// inserted row's seeds (the rows holding its value among its layer-0 links, in list order). Built
/// before the insert so parallel workers only read it; the result is what the old per-step numbering of
/// every row gave (same entries, same seeds, same order), read at a cost of the step's rows.
///
/// Two ways to read, chosen by measured cost (`fullReadRatio`):
/// - `.batch`: each inserted row's value from its document (the `fields` index is derived from the
///   documents' metadata, `verify` checks they agree), confirmed by a probe of the value's postings;
///   a neighbour row's value by a probe of q's value's postings (`MDB_GET_BOTH`, sorted, one cursor).
///   O(batch · 2M) B-tree probes.
/// - `.full`: the field's whole postings numbered per row (`HNSWFilterLinks.values`), O(rows) postings
///   decoded, then array lookups: cheaper once the step is a large part of the rows (bulk import steps).
/// Both take each value's entry row and linked count from the first postings of that value (sorted
/// row ids: the lowest live rows come first), at most 64 entries read per value.
struct HNSWValuePlan: Sendable {
    enum Mode: Sendable, Equatable {
        /// Read the inserted rows' documents and probe the postings: O(batch).
        case batch
        /// Read the field's whole postings: O(rows).
        case full
    }

    /// The rule: read the whole field when `inserted · fullReadRatio ≥ rows`, i.e. when the step links at
    /// least one row in 1000. Measured (release, 2 cores, docs1m-c4 at 238,588 rows, M = 16, 6 values;
    /// plan build time per step, median): `.batch` about 70 µs + 4.4 µs per inserted row (10 rows: 116 µs,
    /// 100: 565 µs, 1000: 4.5 ms), `.full` about 4.2 ns per row of the collection + 1 µs per inserted row
    /// (10 rows: 1.0 ms, 100: 1.4 ms, 1000: 2.0 ms): equal near 275 inserted rows, one in 870. Both are
    /// small beside linking the rows (a beam of efConstruction each), so the constant is not critical.
    static let fullReadRatio = 1000

    static func mode(inserted: Int, rows: Int) -> Mode {
        if let forced = HNSWFilterLinks.probe?.mode ?? HNSWFilterLinks.environmentMode { return forced }
        return inserted * fullReadRatio >= rows ? .full : .batch
    }

    /// The rows the step links (live, ascending).
    let inserted: [UInt32]
    /// Each inserted row's value number (this plan's own numbering), or `HNSWFilterLinks.noValue`.
    private(set) var value: [UInt32]
    /// Per value of the step that has linked rows: its lowest live row below `inserted.first`.
    private(set) var entry: [UInt32: UInt32] = [:]
    /// Per value of the step that has linked rows: how many live rows below `inserted.first` hold it,
    /// counted up to 64.
    private(set) var linkedCount: [UInt32: Int] = [:]
    /// Seeds of inserted row `i`: `seeds[seedStart[i] ..< seedStart[i + 1]]`.
    private(set) var seeds: [UInt32] = []
    private(set) var seedStart: [Int] = [0]
    /// The `fields` key of each value number.
    private(set) var keys: [[UInt8]] = []
    let mode: Mode

    /// Reads what the step needs: `inserted` are the live rows of `oldRows ..< rows`, `main` holds their
    /// layer-0 lists (final: layer 0 is linked before the value graphs).
    init(_ txn: Transaction, _ dbs: Databases, collection: UInt32, field: String, inserted: [UInt32],
         main: HNSWEditor, liveWords: [UInt64], oldRows: Int, rows: Int, name: String) throws {
        self.inserted = inserted
        mode = Self.mode(inserted: inserted.count, rows: rows)
        let probe = HNSWFilterLinks.probe
        let noValue = HNSWFilterLinks.noValue
        value = [UInt32](repeating: noValue, count: inserted.count)
        guard !inserted.isEmpty else { return }
        var keys: [[UInt8]] = []
        defer { self.keys = keys }
        var all: [UInt32] = []
        // 1. The inserted rows' values.
        switch mode {
        case .full:
            var found: [[UInt8]]? = []
            all = try HNSWFilterLinks.values(txn, dbs, collection: collection, field: field, rows: rows, name: name,
                                             keys: &found)
            keys = found ?? []
            for (i, q) in inserted.enumerated() { value[i] = all[Int(q)] }
            probe?.add(rows: rows, postings: rows)
        case .batch:
            var number: [[UInt8]: UInt32] = [:]
            var probes = 0
            var found = value
            try txn.withCursor(dbs.fields) { (c: Cursor) throws -> Void in
                for (i, q) in inserted.enumerated() {
                    guard let key = try Self.documentKey(txn, dbs, collection: collection, field: field, row: q,
                                                         name: name) else { continue }
                    // Listed under it in `fields` (Spec §7.2: the value is the key a row is listed under).
                    probes += 1
                    guard try c.contains(key: key, value: CollectionWriter.rowValue(q)) else { continue }
                    if let n = number[key] {
                        found[i] = n
                    } else {
                        found[i] = UInt32(keys.count)
                        number[key] = UInt32(keys.count)
                        keys.append(key)
                    }
                }
            }
            value = found
            probe?.add(rows: inserted.count, probes: probes)
        }
        // 2. Each value's entry row and linked count, from the head of its postings.
        let first = inserted[0]
        var postings = 0
        let numbers = Set(value.filter { $0 != noValue }).sorted()
        var entries: [UInt32: UInt32] = [:]
        var counts: [UInt32: Int] = [:]
        try txn.withCursor(dbs.fields) { (c: Cursor) throws -> Void in
            for n in numbers {
                let key = keys[Int(n)]
                guard let (found, _) = try c.seek(atLeast: key), found.elementsEqual(key) else { continue }
                var count = 0
                var page = try c.multipleValues(first: true)
                walk: while let list = page {
                    var o = 0
                    while o + 4 <= list.count {
                        let row = readBE32(list, at: o)
                        o += 4
                        postings += 1
                        if row >= first { break walk }
                        guard HNSWFilterLinks.isLive(liveWords, row) else { continue }
                        if count == 0 { entries[n] = row }
                        count += 1
                        if count >= 64 { break walk }
                    }
                    page = try c.multipleValues(first: false)
                }
                if count > 0 { counts[n] = count }
            }
        }
        entry = entries
        linkedCount = counts
        probe?.add(postings: postings, mode: mode)
        // 3. Seeds: the rows holding q's value among q's layer-0 links, in list order.
        let limit = UInt32(rows)
        let cap = main.config.maxLinks0
        var hits = Set<UInt64>()
        let numbered = value
        if mode == .batch {
            // Links to rows before the step: probe q's value's postings, sorted so one cursor walks them.
            var asks: [UInt64] = []
            for (i, q) in inserted.enumerated() where numbered[i] != noValue {
                let list = main.links(q, 0)
                for j in 0..<min(Int(list[0]), cap) {
                    let t = list[1 + j]
                    if t < UInt32(oldRows), t != q { asks.append(UInt64(numbered[i]) << 32 | UInt64(t)) }
                }
            }
            asks.sort()
            var last: UInt64?
            var probes = 0
            let valueKeys = keys
            try txn.withCursor(dbs.fields) { (c: Cursor) throws -> Void in
                for a in asks where a != last {
                    last = a
                    probes += 1
                    if try c.contains(key: valueKeys[Int(a >> 32)],
                                      value: CollectionWriter.rowValue(UInt32(truncatingIfNeeded: a))) {
                        hits.insert(a)
                    }
                }
            }
            probe?.add(probes: probes)
        }
        seeds.reserveCapacity(inserted.count * 4)
        seedStart.reserveCapacity(inserted.count + 1)
        for (i, q) in inserted.enumerated() {
            let v = value[i]
            if v != noValue {
                let list = main.links(q, 0)
                for j in 0..<min(Int(list[0]), cap) {
                    let t = list[1 + j]
                    guard t < limit, t != q else { continue }
                    let same: Bool
                    switch mode {
                    case .full: same = all[Int(t)] == v
                    case .batch:
                        if t < UInt32(oldRows) {
                            same = hits.contains(UInt64(v) << 32 | UInt64(t))
                        } else {
                            same = Self.position(of: t, in: inserted).map { numbered[$0] == v } ?? false
                        }
                    }
                    if same { seeds.append(t) }
                }
            }
            seedStart.append(seeds.count)
        }
    }

    /// Index of `row` in the ascending `rows`, or nil.
    private static func position(of row: UInt32, in rows: [UInt32]) -> Int? {
        var lo = 0, hi = rows.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if rows[mid] < row { lo = mid + 1 } else { hi = mid }
        }
        return lo < rows.count && rows[lo] == row ? lo : nil
    }

    /// The `fields` key of `row`'s value of `field`, from its document's metadata, as the writer indexed
    /// it (`FieldKey`): nil without a value (or without a document); an array of one distinct value is
    /// that value, of several is refused.
    static func documentKey(_ txn: Transaction, _ dbs: Databases, collection: UInt32, field: String, row: UInt32,
                            name: String) throws -> [UInt8]? {
        guard let stored = try txn.get(dbs.docs, Format.key(collection, row)) else { return nil }
        let doc = try DocumentRecord.decode(stored, context: "docs row \(row)")
        guard !doc.metadataJSON.isEmpty else { return nil }
        let parsed: JSONValue
        do {
            parsed = try doc.metadataJSON.withUnsafeBytes { try JSONValue.parse($0) }
        } catch {
            throw VecStoreError.corrupt("collection \(name): row \(row) metadata: \(error)")
        }
        guard case .object(let metadata) = parsed, let v = metadata[field] else { return nil }
        guard case .array(let items) = v else { return FieldKey.key(collection, field, v)?.key }
        var key: [UInt8]?
        for item in items {
            guard let k = FieldKey.key(collection, field, item)?.key else { continue }
            if let key, key != k { throw HNSWFilterLinks.arrayRefusal(id: doc.externalID, field: field, name: name) }
            key = k
        }
        return key
    }
}
