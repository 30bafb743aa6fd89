import Foundation
import CDistance
import LMDB
import VecStoreKernels

/// One upper level as stored: ascending node ids, then one slot (count + M ids) per node, in place in
/// the memory map.
struct UpperLevelView {
    let ids: UnsafePointer<UInt32>
    let count: Int
    let slots: UnsafePointer<UInt32>
    let slotWords: Int

    /// Index of `node` in this level, or nil.
    @inline(__always)
    func index(of node: UInt32) -> Int? {
        var lo = 0, hi = count
        while lo < hi {
            let mid = (lo + hi) >> 1
            if ids[mid] < node { lo = mid + 1 } else { hi = mid }
        }
        return lo < count && ids[lo] == node ? lo : nil
    }
}

/// A collection's graph as one read transaction sees it. Resolving it costs one cursor pass over the
/// layer-0 block keys and one read per upper level; afterwards the neighbours of node `i` on layer 0
/// are found by pointer arithmetic (block `i >> shift`, slot `i & mask`) and on upper level `l` by a
/// binary search in that level's sorted id array, all zero-copy from the map. Valid only inside the
/// transaction that built it (or one reading the same snapshot at the same map address).
final class HNSWGraphView: HNSWGraphAccess, HNSWCopySource {
    let config: HNSWConfig
    let rows: Int
    let shift: UInt32
    let mask: UInt32
    let slotWords0: Int
    let dimension: Int
    /// Bytes from one row's traversal copy to the next (binary16 or int8, `HNSWTraversal.rowBytes`).
    let copyStride: Int
    /// Cache lines prefetched per traversal copy: all of it (measured on docs60k, 384-d: 12 lines were
    /// 7–14% faster than 2).
    let copyPrefetchLines: Int32
    /// The int8 quantizer's constants when the copies are int8 (`hnsw-int8:` record), else nil.
    let int8: HNSWInt8Scoring?
    private let bases: UnsafeMutablePointer<UnsafePointer<UInt32>>
    private let copyBases: UnsafeMutablePointer<UnsafeRawPointer>
    let blockCount: Int
    private(set) var upper: [UpperLevelView] = []
    /// The filter links of each linked field (Spec/HNSW.md §7), in the record's order; empty when the
    /// collection has none (or the store lacks the `graph-flinks` database: searches then go without).
    private(set) var valueLinks: [HNSWValueLinks] = []
    private var ownedCopies: [UnsafeMutableRawBufferPointer] = []
    nonisolated(unsafe) private static let emptyList: UnsafeMutablePointer<UInt32> = {
        let p = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        p.initialize(to: 0)
        return p
    }()

    var needsLocks: Bool { false }
    func lock(_ node: UInt32) {}
    func unlock(_ node: UInt32) {}
    @inline(__always) func prefetchLinks(_ node: UInt32) {
        vs_prefetch(links0(node), 2)
    }

    init(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, _ config: HNSWConfig, name: String) throws {
        self.config = config
        // The graph covers rows `[0, nodes)`; rows from `nodes` to the collection's end are its unlinked
        // tail (Spec/HNSW.md §4.1), which searches scan exactly.
        rows = Int(config.nodes)
        shift = UInt32(record.blockShift)
        mask = (1 << shift) - 1
        slotWords0 = config.slotWords0
        dimension = record.dimension
        let copyBytes = config.traversal.rowBytes(dimension: record.dimension)
        copyStride = copyBytes
        copyPrefetchLines = Int32(min(32, (copyBytes + 63) / 64))
        if config.traversal == .int8 {
            guard let q = try HNSWInt8Record.load(txn, dbs, record.id, dimension: record.dimension) else {
                throw VecStoreError.corrupt("collection \(name): HNSW graph has int8 copies but no hnsw-int8 quantizer record")
            }
            int8 = HNSWInt8Scoring(q.quantizer)
        } else {
            int8 = nil
        }
        guard config.nodes <= record.nextInternalID else {
            throw VecStoreError.corrupt("collection \(name): HNSW graph covers \(config.nodes) rows, the collection has \(record.nextInternalID)")
        }
        guard config.entryPoint == HNSWConfig.noEntry || Int(config.entryPoint) < rows else {
            throw VecStoreError.corrupt("collection \(name): HNSW entry point \(config.entryPoint) is not one of its \(rows) rows")
        }
        let blocksNeeded = (rows + record.blockCapacity - 1) / record.blockCapacity
        bases = .allocate(capacity: max(1, blocksNeeded))
        // Traversal copies exist for every row of the collection, the tail's included (written by the batch
        // that appended them, Spec/HNSW.md §4.1).
        let allRows = Int(record.nextInternalID)
        let halfBlocks = (allRows + record.blockCapacity - 1) / record.blockCapacity
        copyBases = .allocate(capacity: max(1, halfBlocks))
        blockCount = blocksNeeded
        let slotBytes = slotWords0 * 4
        let prefix = Format.prefix(record.id)
        var found = 0
        try txn.withCursor(dbs.graph) { (c: Cursor) throws -> Void in
            var entry = try c.seek(atLeast: prefix)
            while let (key, value) = entry, key.starts(with: prefix) {
                guard key.count == 8 else { throw VecStoreError.corrupt("graph key of \(name) has \(key.count) bytes") }
                let block = Int(readBE32(key, at: 4))
                let expectedRows = min(record.blockCapacity, rows - block * record.blockCapacity)
                guard block == found, expectedRows > 0, value.count == expectedRows * slotBytes else {
                    throw VecStoreError.corrupt(
                        "collection \(name): graph block \(block) (expected \(found)) has \(value.count) bytes for \(max(0, expectedRows)) rows")
                }
                bases[block] = aligned(value).assumingMemoryBound(to: UInt32.self)
                found += 1
                entry = try c.next()
            }
        }
        guard found == blocksNeeded else {
            throw VecStoreError.corrupt("collection \(name): \(found) graph blocks stored, \(blocksNeeded) needed")
        }
        let halfBytes = copyBytes
        var halves = 0
        try txn.withCursor(dbs.graphVectors) { (c: Cursor) throws -> Void in
            var entry = try c.seek(atLeast: prefix)
            while let (key, value) = entry, key.starts(with: prefix) {
                let block = Int(readBE32(key, at: 4))
                let expectedRows = min(record.blockCapacity, allRows - block * record.blockCapacity)
                guard key.count == 8, block == halves, expectedRows > 0, value.count == expectedRows * halfBytes else {
                    throw VecStoreError.corrupt(
                        "collection \(name): graph-vectors block \(block) (expected \(halves)) has \(value.count) bytes for \(max(0, expectedRows)) rows")
                }
                copyBases[block] = aligned(value)
                halves += 1
                entry = try c.next()
            }
        }
        guard halves == halfBlocks else {
            throw VecStoreError.corrupt("collection \(name): \(halves) graph-vectors blocks stored, \(halfBlocks) needed")
        }
        let upperWords = config.slotWordsUpper
        if config.maxLevel >= 1 {
            for level in 1...config.maxLevel {
                guard let value = try txn.get(dbs.graphUpper, HNSWConfig.upperKey(record.id, level: level)),
                      value.count >= 4 else {
                    throw VecStoreError.corrupt("collection \(name): HNSW level \(level) block is missing")
                }
                let base = aligned(value)
                let n = Int(base.load(as: UInt32.self).littleEndian)
                guard value.count == 4 + n * 4 + n * upperWords * 4 else {
                    throw VecStoreError.corrupt("collection \(name): HNSW level \(level) block has \(value.count) bytes for \(n) nodes")
                }
                let ids = (base + 4).assumingMemoryBound(to: UInt32.self)
                upper.append(UpperLevelView(ids: ids, count: n, slots: ids + n, slotWords: upperWords))
            }
        }
        if !config.filterLinks.isEmpty, let db = dbs.handle(Format.DB.graphFlinks) {
            for (i, field) in config.filterLinks.enumerated() {
                valueLinks.append(try HNSWValueLinks(txn, db, record: record, config: config, field: field, index: i,
                                                     name: name))
            }
        }
    }

    deinit {
        bases.deallocate()
        copyBases.deallocate()
        for c in ownedCopies { c.deallocate() }
    }

    /// The value's bytes, copied when the map does not hold them 4-byte aligned.
    private func aligned(_ value: UnsafeRawBufferPointer) -> UnsafeRawPointer {
        guard let base = value.baseAddress else { return UnsafeRawPointer(Self.emptyList) }
        if Int(bitPattern: base) % 4 == 0 { return base }
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: value.count, alignment: 64)
        copy.copyMemory(from: value)
        ownedCopies.append(copy)
        return UnsafeRawPointer(copy.baseAddress!)
    }

    /// The filter links of the first field of the `hnsw-flinks` record (Spec/HNSW.md §7.1) among
    /// `fields` (the fields a filter pins to one value), or nil.
    func valueLinks(pinning fields: [String]) -> HNSWValueLinks? {
        guard !fields.isEmpty, !Self.linksOff else { return nil }
        return valueLinks.first { fields.contains($0.field) }
    }

    /// Measurement knob (`VECSTORE_FLINKS_OFF=1`): searches ignore filter links (A/B on one store).
    static let linksOff = ProcessInfo.processInfo.environment["VECSTORE_FLINKS_OFF"] == "1"

    @inline(__always)
    func links0(_ node: UInt32) -> UnsafePointer<UInt32> {
        bases[Int(node >> shift)] + Int(node & mask) * slotWords0
    }

    /// The traversal copy of `node`'s vector (`copyStride` bytes).
    @inline(__always)
    func traversalCopy(_ node: UInt32) -> UnsafeRawPointer {
        copyBases[Int(node >> shift)] + Int(node & mask) * copyStride
    }

    /// The binary16 copy of `node`'s vector (graphs with `.f16` traversal).
    @inline(__always)
    func halfVector(_ node: UInt32) -> UnsafePointer<UInt16> {
        traversalCopy(node).assumingMemoryBound(to: UInt16.self)
    }

    /// The int8 codes of `node`'s vector (graphs with `.int8` traversal).
    @inline(__always)
    func int8Codes(_ node: UInt32) -> UnsafePointer<Int8> {
        traversalCopy(node).assumingMemoryBound(to: Int8.self)
    }

    @inline(__always)
    func links(_ node: UInt32, _ level: Int) -> UnsafePointer<UInt32> {
        if level == 0 { return links0(node) }
        let u = upper[level - 1]
        guard let i = u.index(of: node) else { return UnsafePointer(Self.emptyList) }
        return u.slots + i * u.slotWords
    }

    /// The level of `node` according to the upper-level blocks (0 when it is in none).
    func storedLevel(of node: UInt32) -> Int {
        var level = 0
        for (i, u) in upper.enumerated() where u.index(of: node) != nil { level = i + 1 }
        return level
    }
}

/// Scores against binary16 traversal copies: half the bytes of the float32 vectors (searches re-rank their
/// beam with float32 at the end; graph construction re-scores each level's beam before the heuristic).
/// `C` is a concrete final class at every use (`HNSWGraphView`, `HNSWCopyTable`), so the distance loop is
/// specialised for it: no witness-table call per neighbour.
struct HalfScorer<D: HNSWHalfDistance, C: HNSWCopySource>: HNSWScorer {
    /// Where row `i`'s binary16 copy is.
    let copies: C
    /// The float32 query (`dimension` components).
    let query: UnsafePointer<Float>
    /// Cache lines prefetched per copy (`copies.copyPrefetchLines`, read once).
    let lines: Int32

    /// Scores `query` against the binary16 copies of `copies`.
    init(copies: C, query: UnsafePointer<Float>) {
        self.copies = copies
        self.query = query
        lines = copies.copyPrefetchLines
    }

    /// `D`'s distance from the query to row `id`'s binary16 copy.
    @inline(__always) func distance(_ id: UInt32) -> Float {
        D.distance(query, copies.traversalCopy(id).assumingMemoryBound(to: UInt16.self), copies.dimension)
    }
    /// Prefetches row `id`'s whole copy.
    @inline(__always) func prefetch(_ id: UInt32) { vs_prefetch(copies.traversalCopy(id), lines) }
}
