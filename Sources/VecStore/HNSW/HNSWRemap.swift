import Foundation
import LMDB
import VecStoreKernels

/// Where each row of a collection goes when it is compacted: old row → new row, or `gone` (the rows
/// of a deleted document). The new rows are dense, `0 ..< newCount`.
struct RowMap {
    /// The new row of a row that is dropped.
    static let gone = UInt32.max
    /// Per old row, its new row or `gone`.
    let newRow: [UInt32]
    /// Per new row, the old row it comes from.
    let oldRow: [UInt32]

    /// Keeps the live rows of `liveWords` (bit `r` of word `r / 64`) in their order, renumbered from 0.
    init(liveWords: [UInt64], rows: Int) {
        var newRow = [UInt32](repeating: Self.gone, count: rows)
        var oldRow: [UInt32] = []
        oldRow.reserveCapacity(liveWords.reduce(0) { $0 + $1.nonzeroBitCount })
        for r in 0..<rows where r >> 6 < liveWords.count && (liveWords[r >> 6] >> UInt64(r & 63)) & 1 == 1 {
            newRow[r] = UInt32(oldRow.count)
            oldRow.append(UInt32(r))
        }
        self.newRow = newRow
        self.oldRow = oldRow
    }

    /// The map `newRow` (per old row, its new row or `gone`). Throws `corrupt` unless the kept rows are
    /// numbered exactly `0 ..< kept` in their old order, as compaction numbers them.
    init(newRow: [UInt32]) throws {
        var oldRow: [UInt32] = []
        for (o, n) in newRow.enumerated() where n != Self.gone {
            guard n == UInt32(oldRow.count) else {
                throw VecStoreError.corrupt("row map sends old row \(o) to \(n), expected \(oldRow.count)")
            }
            oldRow.append(UInt32(o))
        }
        self.newRow = newRow
        self.oldRow = oldRow
    }

    /// Rows before compaction.
    var oldCount: Int { newRow.count }
    /// Rows after compaction.
    var newCount: Int { oldRow.count }

    /// Kept rows among old rows `0 ..< oldRows`: the new row count of that prefix (rows keep their
    /// order, so these are new rows `0 ..< keptCount(below:)`).
    func keptCount(below oldRows: Int) -> Int {
        var lo = 0, hi = oldRow.count
        while lo < hi {
            let mid = (lo + hi) >> 1
            if Int(oldRow[mid]) < oldRows { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}

/// Carries a collection's HNSW graph into a compacted store by renumbering it instead of rebuilding it
/// (Spec/HNSW.md §5.5):
///
/// * layer 0 and the binary16 traversal copies are copied block by block in the new row order, each
///   link renumbered and links to dropped rows removed; a list that lost links is refilled from the
///   dropped rows' own live links (the repair a delete makes, for the lists it did not reach);
/// * the upper levels are relinked: a row's level is a function of its row number and the collection's
///   seed (§4), so the renumbered rows get new levels, and about 1/M of them are linked into levels ≥ 1
///   with the insert algorithm (the layer-0 lists stay as they are);
/// * the header gets the new row count and the new entry point;
/// * an unlinked tail (rows `[nodes, rows)`, Spec/HNSW.md §4.1) stays the tail: its kept rows keep
///   their order, so they are the new collection's highest rows; they get traversal copies and nothing
///   else, and the new store declares `hnsw-tail`.
///
/// It reads the old store through the transaction it was created in (which must stay open) and writes
/// the new store through any number of transactions: `writeLayer0` for a range of blocks (so a caller
/// can write the graph with the rows, batch by batch, and keep every transaction small), then
/// `finish`. Memory: O(rows) small maps (two u32 per row, a level byte and an offset per old row) plus
/// the upper levels (about rows/M lists); layer 0 is never held whole.
final class HNSWRemap {
    let name: String
    let oldRecord: CollectionRecord
    let oldConfig: HNSWConfig
    let map: RowMap
    /// Kept rows the old graph links (old rows below its `nodes`): new rows `0 ..< newNodes` form the
    /// new graph, the kept tail rows follow it.
    let newNodes: Int
    private let graph: HNSWGraphView
    private let vectors: VectorTable
    private let metric: Metric
    /// Bytes of one traversal copy (binary16 or int8), copied byte for byte.
    private let halfBytes: Int
    /// The int8 quantizer record's training-row count, carried with it.
    private let int8TrainingRows: Int
    /// Live lists that link to dropped rows (they lose those links here).
    private(set) var listsLosingLinks = 0
    private var upper: HNSWUpperBuilder?

    /// Checks the old graph of `record` (read through `txn`, which must stay open while this object is
    /// used) and prepares its renumbering by `map`. Throws `corrupt` naming what does not fit — the
    /// graph claims more rows than the collection has, a block has the wrong size, a live row's list is
    /// too long, leaves the graph, links to itself or twice to one row — so the caller can rebuild the
    /// graph instead. An unlinked tail is carried as a tail.
    init(_ txn: Transaction, _ dbs: Databases, record: CollectionRecord, config: HNSWConfig, view: CollectionView,
         map: RowMap, name: String) throws {
        self.name = name
        oldRecord = record
        oldConfig = config
        self.map = map
        metric = record.metric
        guard map.oldCount == Int(record.nextInternalID) else {
            throw VecStoreError.corrupt("collection \(name): row map covers \(map.oldCount) rows, the collection has \(record.nextInternalID)")
        }
        guard config.nodes <= record.nextInternalID else {
            throw VecStoreError.corrupt(
                "collection \(name): the graph covers \(config.nodes) rows, the collection has \(record.nextInternalID)")
        }
        newNodes = map.keptCount(below: Int(config.nodes))
        graph = try HNSWGraphView(txn, dbs, record, config, name: name)
        int8TrainingRows = config.traversal == .int8
            ? (try HNSWInt8Record.load(txn, dbs, record.id, dimension: record.dimension)?.trainingRows ?? 0) : 0
        halfBytes = config.traversal.rowBytes(dimension: record.dimension)
        vectors = VectorTable(view)
        guard graph.valueLinks.count == config.filterLinks.count else {
            throw VecStoreError.corrupt("collection \(name): filter links of \(config.filterLinks.count) fields declared, "
                + "\(graph.valueLinks.count) stored")
        }
        try validate()  // on failure `deinit` runs (every property is set) and frees `vectors`
    }

    deinit { vectors.deallocate() }

    /// Every kept graph row's layer-0 list: count within 2·M, targets in the graph (not in the tail), no
    /// self link, no duplicate (a stamp per row, so the check is one pass).
    private func validate() throws {
        let rows = Int(oldConfig.nodes)
        let cap = oldConfig.maxLinks0
        var stamp = [UInt32](repeating: UInt32.max, count: rows)
        for o in map.oldRow[..<newNodes] {
            let list = graph.links0(o)
            let n = Int(list[0])
            guard n <= cap else {
                throw VecStoreError.corrupt("collection \(name): HNSW node \(o) has \(n) layer-0 links, more than 2·M = \(cap)")
            }
            var loses = false
            for j in 0..<n {
                let t = list[1 + j]
                guard Int(t) < rows, t != o, stamp[Int(t)] != o else {
                    throw VecStoreError.corrupt("collection \(name): HNSW node \(o) has a bad layer-0 link to \(t)")
                }
                stamp[Int(t)] = o
                if map.newRow[Int(t)] == RowMap.gone { loses = true }
            }
            if loses { listsLosingLinks += 1 }
        }
    }

    // MARK: Layer 0

    /// Writes the new store's `graph` and `graph-vectors` values of blocks `blocks` (new numbering,
    /// `newRecord`'s block size) in `txn`: `graph` slots for the new graph's rows (below `newNodes`),
    /// traversal copies for every row, the tail's included. Every row of those blocks must already be
    /// counted by the map (the caller writes the blocks whose rows it has copied). Idempotent: a rerun
    /// transaction writes the same bytes. Returns how many lists got new links from the dropped rows'
    /// neighbours.
    @discardableResult
    func writeLayer0(_ txn: Transaction, _ dbs: Databases, newRecord: CollectionRecord, blocks: Range<Int>) throws
        -> Int
    {
        let capacity = newRecord.blockCapacity
        let slotWords = oldConfig.slotWords0
        let slotBytes = slotWords * 4
        var refilled = 0
        for b in blocks {
            let start = b * capacity
            let count = min(capacity, map.newCount - start)
            guard count > 0 else { continue }
            let key = Format.key(newRecord.id, UInt32(b))
            let linked = min(capacity, newNodes - start)
            if linked > 0 {
                try txn.reserve(dbs.graph, key, count: linked * slotBytes) { out in
                    let words = out.bindMemory(to: UInt32.self)
                    guard let base = words.baseAddress else { return }
                    base.initialize(repeating: 0, count: linked * slotWords)
                    for j in 0..<linked {
                        let o = map.oldRow[start + j]
                        if renumber(o, into: base + j * slotWords) { refilled += 1 }
                    }
                }
                // Filter links (Spec/HNSW.md §7.6): renumbered, links to dropped rows removed (not refilled).
                for (f, links) in graph.valueLinks.enumerated() {
                    let oldRows = UInt32(oldConfig.nodes)
                    try txn.reserve(try dbs.required(Format.DB.graphFlinks),
                                    HNSWFilterLinks.blockKey(newRecord.id, field: f, block: b),
                                    count: linked * slotBytes) { out in
                        let words = out.bindMemory(to: UInt32.self)
                        guard let base = words.baseAddress else { return }
                        base.initialize(repeating: 0, count: linked * slotWords)
                        for j in 0..<linked {
                            let o = map.oldRow[start + j]
                            let list = links.list(o), dst = base + j * slotWords
                            var kept = 0
                            for i in 0..<min(Int(list[0]), oldConfig.maxLinks0) {
                                let t = list[1 + i]
                                guard t < oldRows, t != o else { continue }
                                let nt = map.newRow[Int(t)]
                                if nt == RowMap.gone || UInt32(start + j) == nt { continue }
                                var dup = false
                                for x in 0..<kept where dst[1 + x] == nt { dup = true }
                                if dup { continue }
                                dst[1 + kept] = nt
                                kept += 1
                            }
                            dst[0] = UInt32(kept)
                        }
                    }
                }
            }
            let halfBytes = self.halfBytes
            try txn.reserve(dbs.graphVectors, key, count: count * halfBytes) { out in
                guard let dst = out.baseAddress else { return }
                for j in 0..<count {
                    let src = graph.traversalCopy(map.oldRow[start + j])
                    (dst + j * halfBytes).copyMemory(from: src, byteCount: halfBytes)
                }
            }
        }
        return refilled
    }

    /// Writes old row `o`'s layer-0 list in new numbering to `out` (count, then links): links to kept
    /// rows renumbered in their order; when some linked rows are dropped, the freed
    /// places go to the dropped rows' live links as `HNSWEditor.repairDeleted` chooses them. Returns
    /// whether the list was refilled.
    private func renumber(_ o: UInt32, into out: UnsafeMutablePointer<UInt32>) -> Bool {
        let list = graph.links0(o)
        let n = Int(list[0])
        var kept = 0
        var lost = false
        for j in 0..<n {
            let t = list[1 + j]
            let nt = map.newRow[Int(t)]
            if nt == RowMap.gone { lost = true; continue }
            out[1 + kept] = nt
            kept += 1
        }
        out[0] = UInt32(kept)
        guard lost else { return false }
        let added: [UInt32]
        switch metric {
        case .l2: added = refillCandidates(o, L2Distance.self)
        case .cosine, .dot: added = refillCandidates(o, InnerProductDistance.self)
        }
        for t in added {
            out[1 + kept] = map.newRow[Int(t)]
            kept += 1
        }
        out[0] = UInt32(kept)
        return !added.isEmpty
    }

    /// Old rows to append to `o`'s list, which lost links to dropped rows: from the dropped rows' kept
    /// links (not `o`, not already listed), closest to `o` first, each taken when no link `o` keeps is
    /// closer to it than `o` is (the selection heuristic's rule), up to the list's old length; if none
    /// passes, the closest one, so `o` keeps a way into the dropped rows' neighbourhood.
    private func refillCandidates<D: HNSWDistance>(_ o: UInt32, _: D.Type) -> [UInt32] {
        let list = graph.links0(o)
        let n = Int(list[0])
        let rows = oldConfig.nodes
        let cap = oldConfig.maxLinks0
        var kept: [UInt32] = []
        var dropped: [UInt32] = []
        for j in 0..<n {
            let t = list[1 + j]
            if map.newRow[Int(t)] == RowMap.gone { dropped.append(t) } else { kept.append(t) }
        }
        let dim = vectors.dimension
        let ov = vectors.vector(o)
        var pool: [(id: UInt32, dist: Float)] = []
        for d in dropped {
            let dl = graph.links0(d)
            for j in 0..<min(Int(dl[0]), cap) {
                let x = dl[1 + j]
                guard x < rows, x != o, map.newRow[Int(x)] != RowMap.gone, !kept.contains(x),
                      !pool.contains(where: { $0.id == x }) else { continue }
                pool.append((x, D.distance(ov, vectors.vector(x), dim)))
            }
        }
        pool.sort { $0.dist < $1.dist || ($0.dist == $1.dist && $0.id < $1.id) }
        var added: [UInt32] = []
        for c in pool where kept.count < n {
            let cv = vectors.vector(c.id)
            if !kept.contains(where: { D.distance(cv, vectors.vector($0), dim) < c.dist }) {
                kept.append(c.id)
                added.append(c.id)
            }
        }
        if added.isEmpty, kept.count < n, let closest = pool.first { added.append(closest.id) }
        return added
    }

    // MARK: Upper levels and header

    /// Links the graph's rows (new rows below `newNodes`) whose level (by their new row number and
    /// `newConfig`'s seed) is ≥ 1 into the upper levels, reading vectors from the old store, on `threads` cores. Done once, outside any write
    /// transaction of the new store, so `finish` only writes.
    func buildUpperLevels(_ newConfig: HNSWConfig, threads: Int = HNSWIndexing.defaultThreads) {
        let builder = HNSWUpperBuilder(config: newConfig, map: map, nodes: newNodes)
        switch metric {
        case .l2: builder.build(vectors, L2Distance.self, threads: threads)
        case .cosine, .dot: builder.build(vectors, InnerProductDistance.self, threads: threads)
        }
        upper = builder
    }

    /// Writes the upper levels and the header of the new graph (`newConfig` with the new entry point,
    /// top level and row count) in `txn`, and declares `hnsw-tail` when a tail was carried. Call after
    /// every layer-0 block is written and after `buildUpperLevels(newConfig)`.
    func finish(_ txn: Transaction, _ dbs: Databases, newRecord: CollectionRecord, newConfig: HNSWConfig) throws {
        guard let upper else { throw VecStoreError.invalidArgument("HNSW remap of \(name): upper levels not built") }
        guard Int(newRecord.nextInternalID) == map.newCount else {
            throw VecStoreError.corrupt("collection \(name): compacted collection has \(newRecord.nextInternalID) rows, the row map \(map.newCount)")
        }
        try upper.write(txn, dbs, collection: newRecord.id)
        var config = newConfig
        if upper.entry != HNSWConfig.noEntry {
            config.entryPoint = map.newRow[Int(upper.entry)]
            config.maxLevel = upper.maxLevel
        } else {
            // No row reaches level 1: any row is on the top level (0); the first, as an insert would pick.
            config.entryPoint = newNodes > 0 ? 0 : HNSWConfig.noEntry
            config.maxLevel = 0
        }
        config.nodes = UInt32(newNodes)
        if newNodes < map.newCount { try Format.declare(HNSWIndex.tailFeature, txn, meta: dbs.meta) }
        // int8 copies were carried byte for byte: the new graph keeps their quantizer.
        if let q = graph.int8?.quantizer {
            try HNSWInt8Record(quantizer: q, trainingRows: int8TrainingRows).store(txn, dbs, newRecord.id)
        }
        try config.store(txn, dbs, newRecord.id)
        if !config.filterLinks.isEmpty {
            try HNSWFilterLinks.storeRecord(txn, dbs, newRecord.id, fields: config.filterLinks)
        }
    }

    /// Renumbers the whole graph in one write transaction of the new store: `writeLayer0` for every
    /// block, the upper levels, the header. `newRecord` must already hold every row of the map.
    static func remap(from oldTxn: Transaction, _ oldDBs: Databases, _ oldRecord: CollectionRecord, config: HNSWConfig,
                      to newTxn: Transaction, _ newDBs: Databases, _ newRecord: CollectionRecord, map: RowMap,
                      name: String) throws {
        let view = try CollectionView(oldTxn, oldDBs, oldRecord, name: name, vectorsOnly: true)
        let remap = try HNSWRemap(oldTxn, oldDBs, record: oldRecord, config: config, view: view, map: map, name: name)
        let newConfig = HNSWConfig.create(config.parameters, collection: newRecord.id)
        let blocks = (map.newCount + newRecord.blockCapacity - 1) / newRecord.blockCapacity
        try remap.writeLayer0(newTxn, newDBs, newRecord: newRecord, blocks: 0..<blocks)
        remap.buildUpperLevels(newConfig)
        try remap.finish(newTxn, newDBs, newRecord: newRecord, newConfig: newConfig)
    }
}

extension HNSWIndex: StreamingRemapKind {
    /// Compaction's per-batch remap of an HNSW graph (`HNSWRemapper`); throws `corrupt` naming what
    /// does not fit when the old graph cannot be renumbered.
    static func makeRemapper(_ source: IndexRemapSource, name: String) throws -> any IndexRemapper {
        guard let config = try HNSWConfig.load(source.txn, source.dbs, source.record.id) else {
            throw VecStoreError.corrupt("collection \(name): no HNSW header")
        }
        let view = try CollectionView(source.txn, source.dbs, source.record, name: name, vectorsOnly: true)
        let remap = try HNSWRemap(source.txn, source.dbs, record: source.record, config: config, view: view,
                                  map: try RowMap(newRow: source.newRow), name: name)
        return HNSWRemapper(remap)
    }
}

/// Carries one HNSW graph through a compaction: the layer-0 and binary16 blocks whose rows a batch
/// completed are written in that batch's transaction; the rest, the upper levels and the header after
/// the last batch. Stateless between transactions but for the refill counts per block, so a rerun
/// transaction writes (and counts) the same.
final class HNSWRemapper: IndexRemapper {
    private let remap: HNSWRemap
    private var refilledPerBlock: [Int: Int] = [:]

    init(_ remap: HNSWRemap) { self.remap = remap }

    func rowsCopied(_ txn: Transaction, _ dbs: Databases, before: CollectionRecord, after: CollectionRecord) throws {
        let capacity = after.blockCapacity
        let blocks = (Int(before.nextInternalID) / capacity)..<(Int(after.nextInternalID) / capacity)
        for b in blocks {
            refilledPerBlock[b] = try remap.writeLayer0(txn, dbs, newRecord: after, blocks: b..<(b + 1))
        }
    }

    func finish(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord) throws {
        let capacity = record.blockCapacity
        let blocks = (Int(record.nextInternalID) / capacity)..<((Int(record.nextInternalID) + capacity - 1) / capacity)
        for b in blocks {
            refilledPerBlock[b] = try remap.writeLayer0(txn, dbs, newRecord: record, blocks: b..<(b + 1))
        }
        let newConfig = HNSWConfig.create(remap.oldConfig.parameters, collection: record.id)
        if !upperBuilt {
            remap.buildUpperLevels(newConfig)
            upperBuilt = true
        }
        try remap.finish(txn, dbs, newRecord: record, newConfig: newConfig)
    }
    private var upperBuilt = false

    var detail: String {
        "HNSW carried over: \(remap.listsLosingLinks) layer-0 lists lost links to deleted rows, "
            + "\(refilledPerBlock.values.reduce(0, +)) refilled; upper levels relinked"
    }
}

/// The upper levels (≥ 1) of a renumbered graph, built by the insert algorithm (greedy descent, beam
/// search of width efConstruction, the selection heuristic, reverse links pruned to M) over the graph's
/// rows (the first `nodes` new rows; a carried tail has no levels) whose level by their new number is ≥ 1. Works in old row numbers (vectors come from the old store),
/// so its `rows` are the old rows; rows that are dropped are never nodes. Several threads link at once
/// (per-node striped locks, as `HNSWEditor.insertParallel`).
final class HNSWUpperBuilder: HNSWGraphAccess {
    let config: HNSWConfig
    let rows: Int
    let map: RowMap
    /// Set while `build` links on several threads: lists are then read and changed under their node's lock.
    private(set) var needsLocks = false
    private static let stripeCount = 1 << 12
    private let stripes: UnsafeMutablePointer<pthread_mutex_t>
    /// Held while the entry point is read, and for the whole insert of a row above the top level.
    private let globalLock = NSLock()
    func lock(_ node: UInt32) { pthread_mutex_lock(stripes + Int(node & UInt32(Self.stripeCount - 1))) }
    func unlock(_ node: UInt32) { pthread_mutex_unlock(stripes + Int(node & UInt32(Self.stripeCount - 1))) }
    func prefetchLinks(_ node: UInt32) {}
    private let slotWords: Int
    /// Per old row: its level by its new row number (0 for dropped rows) and the offset of its level-1
    /// slot in `data` (levels above follow).
    private let levels: UnsafeMutablePointer<UInt8>
    private let offsets: UnsafeMutablePointer<Int32>
    private let data: UnsafeMutablePointer<UInt32>
    private let dataWords: Int
    /// Upper nodes in old row order (which is new row order).
    private(set) var nodes: [UInt32] = []
    private(set) var entry = HNSWConfig.noEntry
    private(set) var maxLevel = 0

    init(config: HNSWConfig, map: RowMap, nodes graphRows: Int) {
        self.config = config
        self.map = map
        rows = map.oldCount
        slotWords = config.slotWordsUpper
        levels = .allocate(capacity: max(1, rows))
        levels.initialize(repeating: 0, count: max(1, rows))
        offsets = .allocate(capacity: max(1, rows))
        offsets.initialize(repeating: -1, count: max(1, rows))
        var words = 0
        for (newRow, o) in map.oldRow[..<graphRows].enumerated() {
            let level = config.level(of: UInt32(newRow))
            guard level > 0 else { continue }
            levels[Int(o)] = UInt8(level)
            offsets[Int(o)] = Int32(words)
            words += level * slotWords
            nodes.append(o)
        }
        dataWords = max(1, words)
        data = .allocate(capacity: dataWords)
        data.initialize(repeating: 0, count: dataWords)
        stripes = .allocate(capacity: Self.stripeCount)
        for i in 0..<Self.stripeCount { pthread_mutex_init(stripes + i, nil) }
    }

    deinit {
        levels.deallocate()
        offsets.deallocate()
        data.deallocate()
        for i in 0..<Self.stripeCount { pthread_mutex_destroy(stripes + i) }
        stripes.deallocate()
    }

    @inline(__always)
    func links(_ node: UInt32, _ level: Int) -> UnsafePointer<UInt32> {
        UnsafePointer(data + Int(offsets[Int(node)]) + (level - 1) * slotWords)
    }

    @inline(__always)
    private func mutableLinks(_ node: UInt32, _ level: Int) -> UnsafeMutablePointer<UInt32> {
        data + Int(offsets[Int(node)]) + (level - 1) * slotWords
    }

    /// Inserts every node: the first alone, the rest on `threads` workers taking rows in order in
    /// chunks of 16, with per-node (striped) locks as `HNSWEditor.insertParallel` does.
    func build<D: HNSWDistance>(_ vt: VectorTable, _: D.Type, threads: Int) {
        guard let first = nodes.first else { return }
        let scratch = HNSWScratchPool.take(rows: rows)
        insert(first, vt, D.self, scratch: scratch)
        HNSWScratchPool.give(scratch)
        let rest = nodes.count - 1
        let workers = max(1, min(threads, rest / 64))
        if workers == 1 {
            let scratch = HNSWScratchPool.take(rows: rows)
            defer { HNSWScratchPool.give(scratch) }
            for q in nodes.dropFirst() { insert(q, vt, D.self, scratch: scratch) }
            return
        }
        needsLocks = true
        defer { needsLocks = false }
        let nextLock = NSLock()
        let next = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        next.initialize(to: 1)
        defer { next.deallocate() }
        let box = SendableBox((self, vt, next))
        let chunk = 16
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            let (builder, vt, next) = box.value
            let scratch = HNSWScratchPool.take(rows: builder.rows)
            defer { HNSWScratchPool.give(scratch) }
            while true {
                nextLock.lock()
                let start = next.pointee
                next.pointee = start + chunk
                nextLock.unlock()
                if start >= builder.nodes.count { break }
                for i in start..<min(builder.nodes.count, start + chunk) {
                    builder.insert(builder.nodes[i], vt, D.self, scratch: scratch)
                }
            }
        }
    }

    /// Links `q` into levels `1 … level(q)` (Malkov & Yashunin, algorithm 1, above layer 0). A row above
    /// the top level keeps the global lock for its whole insert, so no other row raises the top level
    /// meanwhile (as hnswlib and `HNSWEditor.insert`).
    private func insert<D: HNSWDistance>(_ q: UInt32, _ vt: VectorTable, _: D.Type, scratch: HNSWScratch) {
        let level = Int(levels[Int(q)])
        if needsLocks { globalLock.lock() }
        let entry = self.entry
        let top = maxLevel
        let raises = level > top
        let holdsGlobal = needsLocks && raises
        if needsLocks && !holdsGlobal { globalLock.unlock() }
        defer { if holdsGlobal { globalLock.unlock() } }
        guard entry != HNSWConfig.noEntry else {
            self.entry = q
            maxLevel = level
            return
        }
        let scorer = FloatScorer<D>(vectors: vt, query: vt.vector(q))
        var cur = entry
        var curD = scorer.distance(entry)
        if level < top {
            (cur, curD) = HNSWAlgorithms.greedyDescent(self, scorer, entry: cur, entryDistance: curD, top: top,
                                                       bottom: level)
        }
        var l = min(level, top)
        while l >= 1 {
            HNSWAlgorithms.searchLayer(self, scorer, entry: cur, entryDistance: curD, ef: config.efConstruction,
                                       level: l, allowed: nil, rows: rows, scratch: scratch)
            let (ids, kept, closest) = HNSWAlgorithms.selectFromBeam(
                vt, D.self, excluding: q, max: config.m, reserve: config.m + 1, scratch: scratch)
            if let closest { (cur, curD) = closest }
            if needsLocks { lock(q) }
            let own = mutableLinks(q, l)
            own[0] = UInt32(kept)
            (own + 1).update(from: ids, count: kept)
            if needsLocks { unlock(q) }
            for j in 0..<kept { connect(ids[j], to: q, level: l, vt, D.self, scratch: scratch) }
            l -= 1
        }
        if raises && level > maxLevel {
            self.entry = q
            maxLevel = level
        }
    }

    /// Adds `q` to `n`'s list on `level`, re-selecting with the heuristic when the list is full.
    private func connect<D: HNSWDistance>(_ n: UInt32, to q: UInt32, level: Int, _ vt: VectorTable, _: D.Type,
                                          scratch: HNSWScratch) {
        if needsLocks { lock(n) }
        defer { if needsLocks { unlock(n) } }
        HNSWAlgorithms.addLink(mutableLinks(n, level), of: n, q, cap: config.m, vt, D.self, scratch: scratch)
    }

    /// Writes one `graph-upper` value per level 1 … top (Spec/HNSW.md §3.2) in new row numbers: the
    /// level's nodes ascending, then their slots (count, M links, unused words zero).
    func write(_ txn: Transaction, _ dbs: Databases, collection: UInt32) throws {
        let top = maxLevel  // the highest node level once `build` ran (0 when no row reaches level 1)
        guard top >= 1 else { return }
        for level in 1...top {
            let members = nodes.filter { Int(levels[Int($0)]) >= level }
            try HNSWConfig.writeUpperLevel(txn, dbs, collection: collection, level: level, count: members.count,
                                           slotWords: slotWords, row: { map.newRow[Int(members[$0])] }) { i, out in
                let src = links(members[i], level)
                let count = Int(src[0])
                out.storeBytes(of: UInt32(count).littleEndian, toByteOffset: 0, as: UInt32.self)
                for j in 0..<config.m {
                    let value = j < count ? map.newRow[Int(src[1 + j])] : 0
                    out.storeBytes(of: value.littleEndian, toByteOffset: 4 + 4 * j, as: UInt32.self)
                }
            }
        }
    }
}
