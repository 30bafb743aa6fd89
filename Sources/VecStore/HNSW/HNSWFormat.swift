import Foundation
import LMDB

/// Parameters of a collection's HNSW graph (Malkov & Yashunin).
public struct HNSWParameters: Sendable, Equatable {
    /// Links per node on the upper layers; layer 0 keeps up to `2·m`. 4...128.
    public var m: Int
    /// Beam width while inserting. At least `m`.
    public var efConstruction: Int
    /// Default beam width of a search (overridden by `SearchOptions.ef`).
    public var efSearch: Int
    /// Element type of the traversal copies the layer-0 search scores (Spec/HNSW.md §3.3, §3.4).
    public var traversal: HNSWTraversal
    /// Metadata fields that get filter links (Spec/HNSW.md §7): every graph row also links to its nearest
    /// rows holding the same value of each field, so a filtered search that pins one of them to a value
    /// (`{"source": "python"}`, or an `$and` holding such a term) walks that value's own graph. Costs an
    /// extra layer-0 adjacency per field (`4·(1 + 2M)` bytes a row) and about one more insert per row
    /// and field. Each field must hold one scalar value per document (an array is refused). Empty: none.
    public var filterLinks: [String]

    /// Creates parameters; the defaults are hnswlib's and FAISS's usual M=16, efConstruction=200, with
    /// binary16 traversal copies and no filter links.
    public init(m: Int = 16, efConstruction: Int = 200, efSearch: Int = 64, traversal: HNSWTraversal = .f16,
                filterLinks: [String] = []) {
        self.m = m
        self.efConstruction = efConstruction
        self.efSearch = efSearch
        self.traversal = traversal
        self.filterLinks = filterLinks
    }

    func validate() throws(VecStoreError) {
        guard (4...128).contains(m) else { throw .invalidArgument("HNSW m \(m) is out of range 4...128") }
        guard (1...4096).contains(efConstruction) else {
            throw .invalidArgument("HNSW efConstruction \(efConstruction) is out of range 1...4096")
        }
        guard (1...4096).contains(efSearch) else {
            throw .invalidArgument("HNSW efSearch \(efSearch) is out of range 1...4096")
        }
        try HNSWFilterLinks.validate(filterLinks)
    }
}

/// How a filtered search on an HNSW collection is answered.
public enum FilterStrategy: Sendable, Equatable {
    /// Exact search over the matches when the filter is selective (matches² < 3·M·ef·live), else
    /// graph traversal that collects only matches.
    case automatic
    /// Always traverse the graph (through non-matching nodes), collecting only matches.
    case graph
    /// Always search the matches exactly.
    case exact
}

/// The `hnsw:<collection id>` meta record (32 bytes, Spec/HNSW.md §Header record). Its presence means
/// the collection has a graph; it covers rows `[0, nodes)`, `nodes` at most the collection's rows (the rest
/// is the unlinked tail, Spec/HNSW.md §4.1).
struct HNSWConfig: Equatable {
    static let recordVersion: UInt8 = 1
    static let noEntry: UInt32 = 0xFFFF_FFFF
    /// Highest level a node can get (levels are stored in one byte; with M ≥ 4 level 30 has odds 4^-30).
    static let levelCap = 30

    var m: Int
    var efConstruction: Int
    var efSearch: Int
    var entryPoint: UInt32 = noEntry
    var maxLevel: Int = 0
    var seed: UInt64
    var nodes: UInt32 = 0
    /// Element type of the traversal copies (header flags bit 0 or bit 1).
    var traversal: HNSWTraversal = .f16
    /// Fields with filter links (the `hnsw-flinks:` record, Spec/HNSW.md §7; not part of the header).
    var filterLinks: [String] = []

    var parameters: HNSWParameters {
        HNSWParameters(m: m, efConstruction: efConstruction, efSearch: efSearch, traversal: traversal,
                       filterLinks: filterLinks)
    }
    /// Links kept per node on layer 0.
    var maxLinks0: Int { 2 * m }
    /// u32 words of a layer-0 slot: count, then `2M` ids.
    var slotWords0: Int { 1 + 2 * m }
    /// Bytes of one row's binary16 traversal copy in `graph-vectors` (`dimension` halves, padded to a
    /// multiple of 4 bytes).
    static func halfRowBytes(dimension: Int) -> Int { (dimension + 1) / 2 * 4 }
    /// Header flag bit 0: the graph has binary16 traversal copies in `graph-vectors`. Always set by
    /// this version.
    static let flagHalfVectors: UInt8 = 1
    /// Header flag bit 1: the graph has int8 traversal copies in `graph-vectors` and an `hnsw-int8:`
    /// quantizer record (Spec/HNSW.md §3.4). Exactly one of bits 0 and 1 is set.
    static let flagInt8Vectors: UInt8 = 2
    /// u32 words of an upper-layer slot: count, then `M` ids.
    var slotWordsUpper: Int { 1 + m }
    /// mL = 1 / ln(M).
    var levelMultiplier: Double { 1 / Foundation.log(Double(m)) }

    init(_ p: HNSWParameters, seed: UInt64) {
        m = p.m
        efConstruction = p.efConstruction
        efSearch = p.efSearch
        traversal = p.traversal
        filterLinks = p.filterLinks
        self.seed = seed
    }

    /// The level of `row`: ⌊−ln(u)·mL⌋ for u uniform in (0, 1], drawn from a hash of the row and the
    /// collection's seed, so every writer (serial, parallel, rebuild) gives a row the same level.
    func level(of row: UInt32) -> Int {
        var z = seed &+ UInt64(row) &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        let u = (Double(z >> 11) + 1) * 0x1.0p-53
        return min(Self.levelCap, Int(-Foundation.log(u) * levelMultiplier))
    }

    static func key(_ collection: UInt32) -> [UInt8] {
        var k = Array("hnsw:".utf8)
        k.appendBE(collection)
        return k
    }

    static let keyPrefix: [UInt8] = Array("hnsw:".utf8)

    func encoded() -> [UInt8] {
        var b: [UInt8] = []
        b.reserveCapacity(32)
        b.append(Self.recordVersion)
        b.append(traversal == .int8 ? Self.flagInt8Vectors : Self.flagHalfVectors)
        b.appendLE(UInt16(m))
        b.appendLE(UInt16(efConstruction))
        b.appendLE(UInt16(efSearch))
        b.appendLE(entryPoint)
        b.append(UInt8(maxLevel))
        b.append(0)
        b.appendLE(UInt16(0))
        b.appendLE(UInt32(truncatingIfNeeded: seed))
        b.appendLE(UInt32(truncatingIfNeeded: seed >> 32))
        b.appendLE(nodes)
        b.appendLE(UInt32(0))
        return b
    }

    static func decode(_ value: UnsafeRawBufferPointer, context: String) throws(VecStoreError) -> HNSWConfig {
        var r = ByteReader(value, context: context)
        let version = try r.u8()
        guard version == recordVersion else { throw .newerFormat("\(context): HNSW record version \(version)") }
        let flags = try r.u8()
        guard flags == flagHalfVectors || flags == flagInt8Vectors else {
            throw .newerFormat("\(context): HNSW flags \(flags)")
        }
        let m = Int(try r.u16()), efc = Int(try r.u16()), efs = Int(try r.u16())
        let entry = try r.u32()
        let maxLevel = Int(try r.u8())
        let reserved1 = try r.u8()
        let reserved2 = try r.u16()
        let lo = UInt64(try r.u32()), hi = UInt64(try r.u32())
        let nodes = try r.u32()
        let reserved3 = try r.u32()
        guard reserved1 == 0, reserved2 == 0, reserved3 == 0 else {
            throw .newerFormat("\(context): HNSW reserved bytes are not zero")
        }
        guard (4...128).contains(m), efc >= 1, efs >= 1, maxLevel <= levelCap else {
            throw .corrupt("\(context): HNSW parameters out of range (M \(m), efConstruction \(efc), max level \(maxLevel))")
        }
        var c = HNSWConfig(HNSWParameters(m: m, efConstruction: efc, efSearch: efs), seed: lo | hi << 32)
        c.entryPoint = entry
        c.maxLevel = maxLevel
        c.nodes = nodes
        c.traversal = flags == flagInt8Vectors ? .int8 : .f16
        return c
    }

    /// The collection's config, or nil when it has no graph (a flat collection).
    static func load(_ txn: Transaction, _ dbs: Databases, _ collection: UInt32) throws -> HNSWConfig? {
        guard let v = try txn.get(dbs.meta, key(collection)) else { return nil }
        var c = try decode(v, context: "meta hnsw:\(collection)")
        c.filterLinks = try HNSWFilterLinks.load(txn, dbs, collection)
        return c
    }

    func store(_ txn: Transaction, _ dbs: Databases, _ collection: UInt32) throws {
        try txn.put(dbs.meta, Self.key(collection), encoded())
    }

    /// Key of an upper-layer block: `collection (BE) · level (BE)`.
    static func upperKey(_ collection: UInt32, level: Int) -> [UInt8] { Format.key(collection, UInt32(level)) }

    /// Writes one `graph-upper` value (Spec/HNSW.md §3.2): `LE32(n)`, the level's `n` node rows ascending
    /// (`row(i)`), then their slots in the same order, `slotWords` words each, filled by `slot(i, out)` (count,
    /// links, unused words zero). The one writer of the format, for `HNSWEditor` and `HNSWRemap`.
    static func writeUpperLevel(_ txn: Transaction, _ dbs: Databases, collection: UInt32, level: Int, count n: Int,
                                slotWords: Int, row: (Int) -> UInt32,
                                slot: (Int, UnsafeMutableRawBufferPointer) -> Void) throws {
        let slotBytes = 4 * slotWords
        try txn.reserve(dbs.graphUpper, upperKey(collection, level: level), count: 4 + 4 * n + slotBytes * n) { out in
            out.storeBytes(of: UInt32(n).littleEndian, toByteOffset: 0, as: UInt32.self)
            var o = 4
            for i in 0..<n {
                out.storeBytes(of: row(i).littleEndian, toByteOffset: o, as: UInt32.self)
                o += 4
            }
            for i in 0..<n {
                slot(i, UnsafeMutableRawBufferPointer(rebasing: out[o..<(o + slotBytes)]))
                o += slotBytes
            }
        }
    }

    /// Removes every graph record of a collection (meta header, layer-0 blocks, upper-layer blocks).
    static func dropGraph(_ txn: Transaction, _ dbs: Databases, _ collection: UInt32) throws {
        let prefix = Format.prefix(collection)
        for db in [try dbs.graph, try dbs.graphUpper, try dbs.graphVectors] {
            try txn.deletePrefix(db, prefix)
        }
        try txn.delete(dbs.meta, key(collection))
        try HNSWInt8Record.drop(txn, dbs, collection)
        try HNSWFilterLinks.drop(txn, dbs, collection, record: true)
    }
}

/// Carries a value that is not `Sendable` (raw pointers into memory that outlives a parallel section)
/// into `concurrentPerform` workers.
struct SendableBox<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}
