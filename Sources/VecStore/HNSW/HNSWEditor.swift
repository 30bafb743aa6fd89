import CDistance
import Foundation
import LMDB
import VecStoreKernels

#if canImport(Glibc)
import Glibc
#endif

/// Edits a collection's graph inside one write transaction. Layer-0 blocks are read in place from the
/// map and copied on first write; every changed block is written back once, at `write()`. Upper levels
/// (about 1/M of the nodes) are loaded into memory whole and rewritten when any of them changed. All
/// state lives in this object and the transaction, so an aborted (or retried) transaction leaves
/// nothing behind.
final class HNSWEditor: HNSWGraphAccess {
    var config: HNSWConfig
    let collectionID: UInt32
    let name: String
    private(set) var rows: Int
    let shift: UInt32
    let mask: UInt32
    let blockCapacity: Int
    let slotWords0: Int
    let slotWordsUpper: Int

    // Layer 0: per block, the pointer reads go through (map or owned copy), and the owned copy.
    private var readBases: UnsafeMutablePointer<UnsafePointer<UInt32>>
    private var owned: UnsafeMutablePointer<UnsafeMutablePointer<UInt32>?>
    private var blockRows: [Int]
    private var dirty: [Bool]
    private var blockSlots: Int

    // Upper levels: per row its level and the offset of its slots (level 1 first) in `upperData`.
    private var levels: UnsafeMutablePointer<UInt8>
    private var upperOffset: UnsafeMutablePointer<Int32>
    private var rowCapacity: Int
    private var upperData: UnsafeMutablePointer<UInt32>
    private var upperUsed = 0
    private var upperCapacity: Int
    /// Ascending node ids of each level ≥ 1 (index 0 = level 1).
    private var levelNodes: [[UInt32]] = []
    private var upperDirty = false

    // Parallel build.
    private(set) var needsLocks = false
    private let stripes: UnsafeMutablePointer<pthread_mutex_t>
    private static let stripeCount = 1 << 12
    private let globalLock = NSLock()
    /// Taken while a parallel worker makes the first copy of a layer-0 block.
    private let ownLock: UnsafeMutablePointer<pthread_mutex_t>

    /// Loads the graph of `record` (or starts an empty one with `fresh`), covering `config.nodes` rows.
    init(_ txn: Transaction, _ dbs: Databases, record: CollectionRecord, config: HNSWConfig, name: String,
         fresh: Bool) throws {
        self.config = config
        collectionID = record.id
        self.name = name
        shift = UInt32(record.blockShift)
        mask = (1 << shift) - 1
        blockCapacity = record.blockCapacity
        slotWords0 = config.slotWords0
        slotWordsUpper = config.slotWordsUpper
        if fresh {
            self.config.nodes = 0
            self.config.entryPoint = HNSWConfig.noEntry
            self.config.maxLevel = 0
        }
        rows = Int(self.config.nodes)
        blockSlots = max(4, (rows + blockCapacity - 1) / blockCapacity + 4)
        readBases = .allocate(capacity: blockSlots)
        owned = .allocate(capacity: blockSlots)
        owned.initialize(repeating: nil, count: blockSlots)
        blockRows = []
        dirty = []
        rowCapacity = max(1024, rows)
        levels = .allocate(capacity: rowCapacity)
        levels.initialize(repeating: 0, count: rowCapacity)
        upperOffset = .allocate(capacity: rowCapacity)
        upperOffset.initialize(repeating: -1, count: rowCapacity)
        upperCapacity = 1024
        upperData = .allocate(capacity: upperCapacity)
        stripes = .allocate(capacity: Self.stripeCount)
        for i in 0..<Self.stripeCount { pthread_mutex_init(stripes + i, nil) }
        ownLock = .allocate(capacity: 1)
        pthread_mutex_init(ownLock, nil)
        guard !fresh, rows > 0 else { return }

        // Layer-0 blocks, in place.
        let prefix = Format.prefix(record.id)
        let slotBytes = slotWords0 * 4
        var found = 0
        try txn.withCursor(dbs.graph) { (c: Cursor) throws -> Void in
            var entry = try c.seek(atLeast: prefix)
            while let (key, value) = entry, key.starts(with: prefix) {
                let block = Int(readBE32(key, at: 4))
                let expectedRows = min(blockCapacity, rows - block * blockCapacity)
                guard key.count == 8, block == found, expectedRows > 0, value.count == expectedRows * slotBytes,
                      let base = value.baseAddress else {
                    throw VecStoreError.corrupt("collection \(name): graph block \(block) does not match the collection's rows")
                }
                if Int(bitPattern: base) % 4 == 0 {
                    readBases[block] = base.assumingMemoryBound(to: UInt32.self)
                } else {
                    let copy = UnsafeMutablePointer<UInt32>.allocate(capacity: blockCapacity * slotWords0)
                    UnsafeMutableRawPointer(copy).copyMemory(from: base, byteCount: value.count)
                    owned[block] = copy
                    readBases[block] = UnsafePointer(copy)
                    noteDamage(checkBlock(copy, block: block, count: expectedRows))
                }
                blockRows.append(expectedRows)
                dirty.append(false)
                found += 1
                entry = try c.next()
            }
        }
        guard found * blockCapacity >= rows else {
            throw VecStoreError.corrupt("collection \(name): \(found) graph blocks for \(rows) rows")
        }

        // Upper levels: every stored level block, whole.
        var stored: [(level: Int, ids: [UInt32], slots: [UInt32])] = []
        try txn.withCursor(dbs.graphUpper) { (c: Cursor) throws -> Void in
            var entry = try c.seek(atLeast: prefix)
            while let (key, value) = entry, key.starts(with: prefix) {
                let level = Int(readBE32(key, at: 4))
                guard value.count >= 4 else { throw VecStoreError.corrupt("collection \(name): HNSW level \(level) block truncated") }
                let n = Int(UInt32(littleEndian: value.loadUnaligned(as: UInt32.self)))
                guard level >= 1, level <= HNSWConfig.levelCap, value.count == 4 + 4 * n + 4 * n * slotWordsUpper else {
                    throw VecStoreError.corrupt("collection \(name): HNSW level \(level) block has \(value.count) bytes")
                }
                var ids = [UInt32](repeating: 0, count: n)
                var slots = [UInt32](repeating: 0, count: n * slotWordsUpper)
                ids.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: value[4..<(4 + 4 * n)])) }
                slots.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: value[(4 + 4 * n)...])) }
                stored.append((level, ids, slots))
                entry = try c.next()
            }
        }
        stored.sort { $0.level < $1.level }
        for s in stored {
            for id in s.ids {
                guard Int(id) < rows else { throw VecStoreError.corrupt("collection \(name): HNSW level \(s.level) lists row \(id) ≥ \(rows)") }
                levels[Int(id)] = max(levels[Int(id)], UInt8(s.level))
            }
        }
        levelNodes = Array(repeating: [], count: stored.map(\.level).max() ?? 0)
        for row in 0..<rows where levels[row] > 0 {
            allocateUpper(row: row, level: Int(levels[row]))
            for l in 1...Int(levels[row]) { levelNodes[l - 1].append(UInt32(row)) }
        }
        for s in stored {
            for (i, id) in s.ids.enumerated() where Int(levels[Int(id)]) >= s.level {
                let dst = upperData + Int(upperOffset[Int(id)]) + (s.level - 1) * slotWordsUpper
                s.slots.withUnsafeBufferPointer { src in
                    dst.update(from: src.baseAddress! + i * slotWordsUpper, count: slotWordsUpper)
                }
            }
        }
        upperDirty = false
        try validateLoaded()
    }

    /// Checks what the editor trusts from disk of the upper levels and the header before it edits: every
    /// upper list count within M, every upper link a node of that level, and the entry point a row on the
    /// top level. (The upper levels are loaded whole anyway.) Layer 0 is checked block by block as a batch
    /// first copies a block to change it (`checkBlock`), so the check costs what the batch touches, and
    /// loops that only read layer-0 lists clamp their counts and skip ids outside the graph, as searches do.
    private func validateLoaded() throws {
        let limit = UInt32(rows)
        for (i, nodes) in levelNodes.enumerated() {
            let level = i + 1
            for node in nodes {
                let list = upperData + Int(upperOffset[Int(node)]) + (level - 1) * slotWordsUpper
                let n = Int(list[0])
                guard n <= config.m else {
                    throw VecStoreError.corrupt(
                        "collection \(name): HNSW node \(node) holds \(n) links on level \(level), more than M = \(config.m)")
                }
                for j in 0..<n {
                    let t = list[1 + j]
                    guard t < limit, Int(levels[Int(t)]) >= level else {
                        throw VecStoreError.corrupt(
                            "collection \(name): HNSW node \(node) links to \(t) on level \(level), which is not a node of that level")
                    }
                }
            }
        }
        if config.entryPoint != HNSWConfig.noEntry {
            guard config.entryPoint < limit, Int(levels[Int(config.entryPoint)]) >= config.maxLevel else {
                throw VecStoreError.corrupt(
                    "collection \(name): HNSW entry point \(config.entryPoint) is not a row on the top level \(config.maxLevel)")
            }
        }
    }

    deinit {
        for b in 0..<blockSlots { owned[b]?.deallocate() }
        owned.deallocate()
        readBases.deallocate()
        levels.deallocate()
        upperOffset.deallocate()
        upperData.deallocate()
        for i in 0..<Self.stripeCount { pthread_mutex_destroy(stripes + i) }
        stripes.deallocate()
        pthread_mutex_destroy(ownLock)
        ownLock.deallocate()
    }

    private func allocateUpper(row: Int, level: Int) {
        let words = level * slotWordsUpper
        if upperUsed + words > upperCapacity {
            var n = upperCapacity * 2
            while upperUsed + words > n { n *= 2 }
            upperData = HNSWBuffer.reallocated(upperData, count: upperUsed, capacity: n)
            upperCapacity = n
        }
        upperOffset[row] = Int32(upperUsed)
        (upperData + upperUsed).initialize(repeating: 0, count: words)
        upperUsed += words
    }

    // MARK: Access

    /// Prefetches the next candidate's layer-0 list (hnswlib keeps a node's list beside its vector, which
    /// the beam has just scored; here the lists live in their own blocks).
    @inline(__always)
    func prefetchLinks(_ node: UInt32) {
        vs_prefetch(readBases[Int(node >> shift)] + Int(node & mask) * slotWords0, Int32((slotWords0 * 4 + 63) / 64))
    }
    func lock(_ node: UInt32) { pthread_mutex_lock(stripes + Int(node & UInt32(Self.stripeCount - 1))) }
    func unlock(_ node: UInt32) { pthread_mutex_unlock(stripes + Int(node & UInt32(Self.stripeCount - 1))) }

    @inline(__always)
    func links(_ node: UInt32, _ level: Int) -> UnsafePointer<UInt32> {
        if level == 0 { return readBases[Int(node >> shift)] + Int(node & mask) * slotWords0 }
        return UnsafePointer(upperData + Int(upperOffset[Int(node)]) + (level - 1) * slotWordsUpper)
    }

    /// A writable list; copies the layer-0 block out of the map on first write to it, so a batch
    /// writes back only the blocks it changed. In a parallel insert (the caller holds `node`'s lock)
    /// the first copy of a block is made under `ownLock`: the copy is of the map's bytes, which no
    /// thread changes, and is published (after a release fence) before any list in it is changed.
    @inline(__always)
    func mutableLinks(_ node: UInt32, _ level: Int) -> UnsafeMutablePointer<UInt32> {
        if level == 0 {
            let b = Int(node >> shift)
            if needsLocks {
                if let base = owned[b] { return base + Int(node & mask) * slotWords0 }
                return ownShared(b) + Int(node & mask) * slotWords0
            }
            let base = owned[b] ?? makeOwned(b)
            dirty[b] = true
            return base + Int(node & mask) * slotWords0
        }
        if !needsLocks { upperDirty = true }
        return upperData + Int(upperOffset[Int(node)]) + (level - 1) * slotWordsUpper
    }

    /// The owned copy of block `b`, made by the first of the parallel workers that writes to it.
    private func ownShared(_ b: Int) -> UnsafeMutablePointer<UInt32> {
        pthread_mutex_lock(ownLock)
        defer { pthread_mutex_unlock(ownLock) }
        if let base = owned[b] { return base }
        dirty[b] = true
        return makeOwned(b)
    }

    /// Called alone or under `ownLock`.
    private func makeOwned(_ b: Int) -> UnsafeMutablePointer<UInt32> {
        let copy = UnsafeMutablePointer<UInt32>.allocate(capacity: blockCapacity * slotWords0)
        copy.update(from: readBases[b], count: blockRows[b] * slotWords0)
        noteDamage(checkBlock(copy, block: b, count: blockRows[b]))
        vs_release_fence()
        owned[b] = copy
        readBases[b] = UnsafePointer(copy)
        return copy
    }

    /// The first damage found in a layer-0 block this batch copied (`write` refuses to store the batch).
    private var blockDamage: String?

    /// Records the first damage found (callers hold `ownLock` or run alone).
    private func noteDamage(_ damage: String?) {
        if blockDamage == nil, let damage { blockDamage = damage }
    }

    /// Checks the `count` lists of a copied layer-0 block: each count within 2·M and each link a row of
    /// the graph. A damaged list is made safe in the copy (count clamped, bad links dropped) so the
    /// batch's edits stay in bounds, and the damage is returned: `write` then fails, and the store
    /// keeps its old bytes.
    private func checkBlock(_ base: UnsafeMutablePointer<UInt32>, block: Int, count: Int) -> String? {
        var damage: String?
        let limit = UInt32(rows)
        for r in 0..<count {
            let list = base + r * slotWords0
            let stored = Int(list[0])
            if stored > config.maxLinks0, damage == nil {
                damage = "graph block \(block) slot \(r) holds \(stored) links, more than 2·M = \(config.maxLinks0)"
            }
            var kept = 0
            for j in 0..<min(stored, config.maxLinks0) {
                let t = list[1 + j]
                if t >= limit {
                    if damage == nil { damage = "graph block \(block) slot \(r) links to row \(t) ≥ \(rows)" }
                    continue
                }
                list[1 + kept] = t
                kept += 1
            }
            list[0] = UInt32(kept)
        }
        return damage
    }

    /// The traversal copies the beam of `insert` scores (nil: the float32 rows), set by `HNSWWriter`:
    /// binary16, or int8 when `int8` gives their scoring. The neighbour heuristic always uses the float32
    /// rows.
    var copies: HNSWCopyTable?
    var int8: HNSWInt8Scoring?

    /// Layer-0 blocks the last `write` wrote.
    private(set) var lastWrittenBlocks = 0

    func level(of node: UInt32) -> Int { Int(levels[Int(node)]) }

    // MARK: Growing

    /// Adds nodes without links for rows `rows ..< newRows`, each with its level.
    func extend(to newRows: Int) {
        guard newRows > rows else { return }
        let neededBlocks = (newRows + blockCapacity - 1) / blockCapacity
        if neededBlocks > blockSlots {
            let n = max(neededBlocks, blockSlots * 2)
            readBases = HNSWBuffer.reallocated(readBases, count: blockSlots, capacity: n)
            owned = HNSWBuffer.reallocated(owned, count: blockSlots, capacity: n, filling: nil)
            blockSlots = n
        }
        if newRows > rowCapacity {
            let n = max(newRows, rowCapacity * 2)
            levels = HNSWBuffer.reallocated(levels, count: rows, capacity: n, filling: 0)
            upperOffset = HNSWBuffer.reallocated(upperOffset, count: rows, capacity: n, filling: -1)
            rowCapacity = n
        }
        for b in 0..<neededBlocks {
            let want = min(blockCapacity, newRows - b * blockCapacity)
            if b >= blockRows.count {
                let copy = UnsafeMutablePointer<UInt32>.allocate(capacity: blockCapacity * slotWords0)
                copy.initialize(repeating: 0, count: want * slotWords0)
                owned[b] = copy
                readBases[b] = UnsafePointer(copy)
                blockRows.append(want)
                dirty.append(true)
            } else if blockRows[b] < want {
                let base = owned[b] ?? makeOwned(b)
                (base + blockRows[b] * slotWords0).initialize(repeating: 0, count: (want - blockRows[b]) * slotWords0)
                blockRows[b] = want
                dirty[b] = true
            }
        }
        for row in rows..<newRows {
            let level = config.level(of: UInt32(row))
            levels[row] = UInt8(level)
            if level > 0 {
                allocateUpper(row: row, level: level)
                while levelNodes.count < level { levelNodes.append([]) }
                for l in 1...level { levelNodes[l - 1].append(UInt32(row)) }
                upperDirty = true
            }
        }
        rows = newRows
    }

    // MARK: Inserting

    /// Links `q` into the graph (Malkov & Yashunin, algorithm 1): greedy descent to its level, then on
    /// each level a beam search of width efConstruction, the selection heuristic for its own M links,
    /// and a reverse link from each chosen neighbour, pruned with the heuristic when full.
    func insert<D: HNSWDistance>(_ q: UInt32, _ d: D.Type, _ vt: VectorTable, live: CandidateMask,
                                 scratch: HNSWScratch) {
        if let copies, let int8 {
            let scorer = Int8Scorer<D.Int8Copy, HNSWCopyTable>(copies: copies, scoring: int8, query: vt.vector(q),
                                                               buffer: scratch.preparedQuery(vt.dimension))
            insert(q, D.self, vt, scorer, exactBeam: false, live: live, scratch: scratch)
        } else if let copies {
            insert(q, D.self, vt, HalfScorer<D.Half, HNSWCopyTable>(copies: copies, query: vt.vector(q)),
                   exactBeam: false, live: live, scratch: scratch)
        } else {
            insert(q, D.self, vt, FloatScorer<D>(vectors: vt, query: vt.vector(q)), exactBeam: true, live: live,
                   scratch: scratch)
        }
    }

    /// `insert` with the beam scored by `scorer`. Unless the scorer is exact (`exactBeam`), each level's
    /// beam results are re-scored with the float32 rows before the neighbour heuristic, which then sees
    /// exactly the distances a float32 beam would give for the same candidates (Spec/HNSW.md §5.3).
    private func insert<D: HNSWDistance, S: HNSWScorer>(_ q: UInt32, _: D.Type, _ vt: VectorTable, _ scorer: S,
                                                         exactBeam: Bool, live: CandidateMask, scratch: HNSWScratch) {
        let level = Int(levels[Int(q)])
        if needsLocks { globalLock.lock() }
        let entry = config.entryPoint
        let maxLevel = config.maxLevel
        // A row above the top level becomes the entry point; in parallel mode it keeps the global lock
        // for its whole insert (as hnswlib), so no other row raises the top level meanwhile.
        let raises = level > maxLevel
        let holdsGlobal = needsLocks && raises
        if needsLocks && !holdsGlobal { globalLock.unlock() }
        if entry == HNSWConfig.noEntry {
            config.entryPoint = q
            config.maxLevel = level
            if holdsGlobal { globalLock.unlock() }
            return
        }
        var cur = entry
        var curD = scorer.distance(entry)
        if level < maxLevel {
            (cur, curD) = HNSWAlgorithms.greedyDescent(self, scorer, entry: cur, entryDistance: curD,
                                                       top: maxLevel, bottom: level)
        }
        var l = min(level, maxLevel)
        while l >= 0 {
            HNSWAlgorithms.searchLayer(self, scorer, entry: cur, entryDistance: curD,
                                       ef: config.efConstruction, level: l, allowed: live, rows: rows, scratch: scratch)
            if !exactBeam { HNSWAlgorithms.rescoreResults(vt, D.self, query: q, scratch: scratch) }
            // Room for the reverse links' pruning too (`connect`, lists of up to 2·M).
            let (ids, kept, closest) = HNSWAlgorithms.selectFromBeam(
                vt, D.self, excluding: q, max: config.m, reserve: max(config.maxLinks0, config.m) + 1, scratch: scratch)
            if let closest { (cur, curD) = exactBeam ? closest : (closest.0, scorer.distance(closest.0)) }
            if needsLocks { lock(q) }
            let own = mutableLinks(q, l)
            own[0] = UInt32(kept)
            (own + 1).update(from: ids, count: kept)
            if needsLocks { unlock(q) }
            for j in 0..<kept { connect(ids[j], to: q, level: l, D.self, vt, scratch: scratch) }
            l -= 1
        }
        if raises {
            if level > config.maxLevel {
                config.entryPoint = q
                config.maxLevel = level
            }
            if holdsGlobal { globalLock.unlock() }
        }
    }

    /// Adds `q` to `n`'s list on `level`, pruning with the heuristic when the list is full.
    private func connect<D: HNSWDistance>(_ n: UInt32, to q: UInt32, level: Int, _: D.Type, _ vt: VectorTable,
                                          scratch: HNSWScratch) {
        let cap = level == 0 ? config.maxLinks0 : config.m
        if needsLocks { lock(n) }
        defer { if needsLocks { unlock(n) } }
        HNSWAlgorithms.addLink(mutableLinks(n, level), of: n, q, cap: cap, vt, D.self, scratch: scratch)
    }

    /// Inserts `rows` on `threads` workers with per-node (striped) locks, as hnswlib does.
    func insertParallel<D: HNSWDistance>(_ rowsToInsert: [UInt32], _: D.Type, _ vt: VectorTable, live: CandidateMask,
                                         threads: Int) {
        // Upper lists change only on levels the inserted rows reach (`extend` marked new upper nodes).
        if rowsToInsert.contains(where: { levels[Int($0)] > 0 }) { upperDirty = true }
        needsLocks = true
        defer { needsLocks = false }
        let nextLock = NSLock()
        let box = SendableBox((self, vt, live, rowsToInsert))
        let nextBox = SendableBox(UnsafeMutablePointer<Int>.allocate(capacity: 1))
        nextBox.value.initialize(to: 0)
        defer { nextBox.value.deallocate() }
        let chunk = 16
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            let (editor, vt, live, rows) = box.value
            let scratch = HNSWScratchPool.take(rows: editor.rows)
            defer { HNSWScratchPool.give(scratch) }
            while true {
                nextLock.lock()
                let start = nextBox.value.pointee
                nextBox.value.pointee = start + chunk
                nextLock.unlock()
                if start >= rows.count { break }
                for i in start..<min(rows.count, start + chunk) {
                    editor.insert(rows[i], D.self, vt, live: live, scratch: scratch)
                }
            }
        }
    }

    /// Gives each live row that no list leads to from the entry point (`HNSWReachability`) a layer-0
    /// link from its nearest reachable live layer-0 neighbour (Spec/HNSW.md §5.3, "Reconnecting"): into a
    /// free place of that neighbour's list, else in place of the list's farthest link. A link so replaced
    /// may leave its target unreachable in turn, so the walk runs again, at most `rounds` times. A row
    /// none of whose own links leads to a reachable row waits for a later round (another row of its
    /// island may be reconnected first). Rows are taken in ascending order against the round's walk;
    /// ties go to the first in list order. One walk reads every layer-0 list once, so callers run it only
    /// after a parallel step large enough to hide it (`HNSWIndexing.reconnectShare`). Returns the links
    /// added or replaced.
    @discardableResult
    func reconnectUnreachable<D: HNSWDistance>(_: D.Type, _ vt: VectorTable, live: CandidateMask, rounds: Int = 4)
        -> Int
    {
        var changed = 0
        let dim = vt.dimension
        let cap = config.maxLinks0
        for _ in 0..<rounds {
            let seen = HNSWReachability.reached(self)
            func isReached(_ r: UInt32) -> Bool { seen[Int(r) >> 6] & (1 << UInt64(r & 63)) != 0 }
            var changedThisRound = 0
            for w in 0..<seen.count {
                var missing = ~seen[w]
                while missing != 0 {
                    let u = UInt32(w * 64 + missing.trailingZeroBitCount)
                    missing &= missing - 1
                    guard Int(u) < rows, live.contains(u) else { continue }
                    let own = links(u, 0)
                    let uv = vt.vector(u)
                    var best = HNSWConfig.noEntry
                    var bestDistance = Float.infinity
                    for j in 0..<min(Int(own[0]), cap) {
                        let t = own[1 + j]
                        guard Int(t) < rows, t != u, isReached(t), live.contains(t) else { continue }
                        let d = D.distance(uv, vt.vector(t), dim)
                        if d < bestDistance || best == HNSWConfig.noEntry { best = t; bestDistance = d }
                    }
                    guard best != HNSWConfig.noEntry else { continue }
                    let list = mutableLinks(best, 0)
                    let count = min(Int(list[0]), cap)
                    if (0..<count).contains(where: { list[1 + $0] == u }) { continue }
                    if count < cap {
                        list[1 + count] = u
                        list[0] = UInt32(count + 1)
                    } else {
                        let bv = vt.vector(best)
                        var far = 0
                        var farDistance = -Float.infinity
                        for j in 0..<count {
                            let d = D.distance(bv, vt.vector(list[1 + j]), dim)
                            if d > farDistance { far = j; farDistance = d }
                        }
                        list[1 + far] = u
                    }
                    changedThisRound += 1
                }
            }
            changed += changedThisRound
            if changedThisRound == 0 { break }
        }
        return changed
    }

    // MARK: Deleting

    /// Repairs the lists that point at the deleted node `d` (and are listed by it): each such neighbour
    /// `n` loses `d` (and any other deleted link) and keeps its other links, which the heuristic chose
    /// before; the freed places go to `d`'s live links, closest to `n` first, each taken when no kept
    /// link is closer to it than `n` is (the heuristic's rule), else — if nothing passes — the closest,
    /// so `n` keeps a way into `d`'s neighbourhood. `d`'s own lists are kept, so searches still route
    /// through it until compaction.
    func repairDeleted<D: HNSWDistance>(_ d: UInt32, _: D.Type, _ vt: VectorTable, live: CandidateMask) {
        let dim = vt.dimension
        let limit = UInt32(rows)
        for l in 0...Int(levels[Int(d)]) {
            let cap = l == 0 ? config.maxLinks0 : config.m
            // Read-only lists are clamped like a search clamps them (a list this repair changes is
            // checked when its block is copied).
            let dl = links(d, l)
            let dn = UnsafeBufferPointer(start: dl + 1, count: min(Int(dl[0]), cap)).filter { $0 < limit }
            for n in dn where n != d && live.contains(n) && Int(levels[Int(n)]) >= l {
                let nl = links(n, l)
                let before = min(Int(nl[0]), cap)
                let nn = UnsafeBufferPointer(start: nl + 1, count: before).filter { $0 < limit }
                guard nn.contains(d) else { continue }
                var kept = nn.filter { live.contains($0) }
                let nv = vt.vector(n)
                var pool = dn.filter { x in
                    x != n && x != d && live.contains(x) && Int(levels[Int(x)]) >= l && !kept.contains(x)
                }.map { (id: $0, dist: D.distance(nv, vt.vector($0), dim)) }
                pool.sort { $0.dist < $1.dist }
                let target = min(cap, before)
                var addedAny = false
                for c in pool where kept.count < target {
                    let cv = vt.vector(c.id)
                    let occluded = kept.contains { D.distance(cv, vt.vector($0), dim) < c.dist }
                    if !occluded {
                        kept.append(c.id)
                        addedAny = true
                    }
                }
                if !addedAny, kept.count < target, let closest = pool.first { kept.append(closest.id) }
                let out = mutableLinks(n, l)
                out[0] = UInt32(kept.count)
                for (j, x) in kept.enumerated() { out[1 + j] = x }
            }
        }
    }

    /// Moves the entry point to a live node of the highest level that has one, when it is not live.
    func fixEntryPoint(live: CandidateMask) {
        if config.entryPoint != HNSWConfig.noEntry && live.contains(config.entryPoint) { return }
        var best = HNSWConfig.noEntry
        var bestLevel = -1
        for row in 0..<rows where Int(levels[row]) > bestLevel && live.contains(UInt32(row)) {
            best = UInt32(row)
            bestLevel = Int(levels[row])
        }
        config.entryPoint = best
        config.maxLevel = max(0, bestLevel)
    }

    // MARK: Writing

    /// Writes changed layer-0 blocks, the upper levels (when changed) and the header record. (The
    /// traversal copies of rows are written by the batch that appends them, `HNSWTraversalCopies`.)
    func write(_ txn: Transaction, _ dbs: Databases) throws {
        if let blockDamage { throw VecStoreError.corrupt("collection \(name): \(blockDamage)") }
        let slotBytes = slotWords0 * 4
        lastWrittenBlocks = 0
        for b in 0..<blockRows.count where dirty[b] {
            guard let src = owned[b] else { continue }
            lastWrittenBlocks += 1
            let n = blockRows[b] * slotBytes
            try txn.reserve(dbs.graph, Format.key(collectionID, UInt32(b)), count: n) { out in
                out.copyMemory(from: UnsafeRawBufferPointer(start: src, count: n))
            }
            dirty[b] = false
        }
        if upperDirty {
            for (i, nodes) in levelNodes.enumerated() {
                let level = i + 1
                try HNSWConfig.writeUpperLevel(txn, dbs, collection: collectionID, level: level, count: nodes.count,
                                               slotWords: slotWordsUpper, row: { nodes[$0] }) { k, out in
                    let src = upperData + Int(upperOffset[Int(nodes[k])]) + (level - 1) * slotWordsUpper
                    out.copyMemory(from: UnsafeRawBufferPointer(start: src, count: 4 * slotWordsUpper))
                }
            }
            upperDirty = false
        }
        config.nodes = UInt32(rows)
        try config.store(txn, dbs, collectionID)
    }
}
