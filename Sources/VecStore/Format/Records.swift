import Foundation
import VecStoreIO
import VecStoreKernels

/// Constants and codecs of the on-disk format, one function per record of Spec/FORMAT.md.
enum Format {
    /// The format version this code writes into a new store: read and write version 2 (the layout of
    /// Spec/FORMAT.md, HNSW.md and BM25.md). Stores with a `features` record get 3 (Versioning.swift).
    static let version: UInt32 = 2
    /// The 8-byte magic at the start of the `format` meta record.
    static let magic: [UInt8] = Array("VECSTORE".utf8)

    /// Names of the LMDB databases (Spec §Databases).
    enum DB {
        static let meta = "meta"
        static let vectors = "vectors"
        static let docs = "docs"
        static let ids = "ids"
        /// Levelled runs of recent ids beside `ids` (Spec/FORMAT.md §8.2).
        static let idruns = "idruns"
        static let live = "live"
        static let fields = "fields"
        /// HNSW layer-0 adjacency blocks (Spec/HNSW.md).
        static let graph = "graph"
        /// HNSW upper-level adjacency, one value per level.
        static let graphUpper = "graph-upper"
        /// HNSW traversal copies of the vectors (binary16), blocked like `vectors`.
        static let graphVectors = "graph-vectors"
        /// HNSW filter links: per linked metadata field, a layer-0 adjacency among rows sharing a value.
        static let graphFlinks = "graph-flinks"
    }

    /// Meta keys.
    static let formatKey: [UInt8] = Array("format".utf8)
    static let nextCollectionKey: [UInt8] = Array("next-collection-id".utf8)
    static let supersededKey: [UInt8] = Array("superseded".utf8)
    static let collectionPrefix: [UInt8] = Array("collection:".utf8)

    /// Ids per `live` bitmap block and the block's size in bytes.
    static let liveBlockIDs = 65_536
    static let liveBlockBytes = liveBlockIDs / 8
    /// Target size of one vector block value in bytes; rows per block is the largest power of two
    /// (at least 64) whose rows fit in it.
    static let vectorBlockTargetBytes = 1 << 20
    /// Longest external id in UTF-8 bytes (LMDB keys are at most 511 bytes; 4 go to the collection id).
    static let maxIDBytes = 500
    /// Longest metadata field name in UTF-8 bytes.
    static let maxFieldNameBytes = 200
    /// Longest field-index key (LMDB's limit).
    static let maxKeyBytes = 511
    /// Text-length value meaning "no text".
    static let noText: UInt32 = 0xFFFF_FFFF

    static func blockShift(dimension: Int) -> UInt8 {
        var shift: UInt8 = 6
        while (1 << Int(shift + 1)) * (dimension + 1) * 4 <= vectorBlockTargetBytes && shift < 20 { shift += 1 }
        return shift
    }

    // MARK: format record

    // MARK: keys

    static func collectionKey(_ name: String) -> [UInt8] { collectionPrefix + Array(name.utf8) }

    /// `collection id (BE) · number (BE)`: keys of `vectors`, `docs` and `live`.
    @inline(__always)
    static func key(_ collection: UInt32, _ number: UInt32) -> [UInt8] {
        var k: [UInt8] = []
        k.reserveCapacity(8)
        k.appendBE(collection)
        k.appendBE(number)
        return k
    }

    /// `collection id (BE)`: the prefix of all of a collection's keys.
    static func prefix(_ collection: UInt32) -> [UInt8] {
        var k: [UInt8] = []
        k.appendBE(collection)
        return k
    }

    static func encodeInternalID(_ id: UInt32) -> [UInt8] {
        var b: [UInt8] = []
        b.appendLE(id)
        return b
    }
}

/// The `collection:<name>` meta record (24 bytes, Spec §Collection record).
struct CollectionRecord: Equatable {
    var id: UInt32
    var dimension: Int
    var metric: Metric
    var elementType: UInt8 = 0  // 0 = float32
    var blockShift: UInt8
    var flags: UInt8 = 0
    /// Rows allocated so far: the next internal id to assign.
    var nextInternalID: UInt32
    /// Documents not deleted.
    var liveCount: UInt32

    var blockCapacity: Int { 1 << Int(blockShift) }

    func encoded() -> [UInt8] {
        var b: [UInt8] = []
        b.reserveCapacity(24)
        b.appendLE(id)
        b.appendLE(UInt32(dimension))
        b.append(metric.rawValue)
        b.append(elementType)
        b.append(blockShift)
        b.append(flags)
        b.appendLE(nextInternalID)
        b.appendLE(liveCount)
        b.appendLE(UInt32(0))
        return b
    }

    static func decode(_ value: UnsafeRawBufferPointer, name: String) throws(VecStoreError) -> CollectionRecord {
        var r = ByteReader(value, context: "meta collection:\(name)")
        let id = try r.u32()
        let dimension = Int(try r.u32())
        let metricCode = try r.u8()
        let elementType = try r.u8()
        let shift = try r.u8()
        let flags = try r.u8()
        let next = try r.u32()
        let live = try r.u32()
        let reserved = try r.u32()
        // Codes and bits this version does not define were written by a newer vecstore: refuse them as
        // such, not as damage (Spec/FORMAT.md §5).
        guard let metric = Metric(rawValue: metricCode) else {
            throw .newerFormat("collection \(name) uses metric code \(metricCode)")
        }
        guard elementType == 0 else {
            throw .newerFormat("collection \(name) stores element type \(elementType) (this vecstore knows 0 = float32)")
        }
        guard flags == 0, reserved == 0 else {
            throw .newerFormat("collection \(name) has flags \(flags) / reserved bytes \(reserved) this vecstore does not know")
        }
        guard (1...65_536).contains(dimension), (6...20).contains(shift) else {
            throw .corrupt("collection \(name): dimension \(dimension) / block shift \(shift) out of range")
        }
        guard live <= next else {
            throw .corrupt("collection \(name): \(live) live documents but only \(next) rows")
        }
        return CollectionRecord(id: id, dimension: dimension, metric: metric, elementType: elementType,
                                blockShift: shift, flags: flags, nextInternalID: next, liveCount: live)
    }
}

/// A `docs` value: external id, original norm, optional text, optional metadata (Spec §Document record).
struct DocumentRecord {
    var externalID: String
    var norm: Float
    var text: String?
    var metadataJSON: [UInt8]

    func encoded() -> [UInt8] {
        var b: [UInt8] = []
        let idBytes = Array(externalID.utf8)
        let textBytes = text.map { Array($0.utf8) }
        b.reserveCapacity(2 + idBytes.count + 12 + (textBytes?.count ?? 0) + metadataJSON.count)
        b.appendLE(UInt16(idBytes.count))
        b.append(contentsOf: idBytes)
        b.appendLE(norm)
        if let textBytes {
            b.appendLE(UInt32(textBytes.count))
            b.append(contentsOf: textBytes)
        } else {
            b.appendLE(Format.noText)
        }
        b.appendLE(UInt32(metadataJSON.count))
        b.append(contentsOf: metadataJSON)
        return b
    }

    static func decode(_ value: UnsafeRawBufferPointer, context: String) throws(VecStoreError) -> DocumentRecord {
        var r = ByteReader(value, context: context)
        let idLength = Int(try r.u16())
        let id = try r.string(idLength)
        let norm = try r.f32()
        let textLength = try r.u32()
        let text = textLength == Format.noText ? nil : try r.string(Int(textLength))
        let metaLength = Int(try r.u32())
        let meta = Array(try r.slice(metaLength))
        if r.remaining != 0 { throw .corrupt("\(context): \(r.remaining) trailing bytes") }
        return DocumentRecord(externalID: id, norm: norm, text: text, metadataJSON: meta)
    }

    /// Only the external id, without decoding the rest.
    static func externalID(_ value: UnsafeRawBufferPointer, context: String) throws(VecStoreError) -> String {
        var r = ByteReader(value, context: context)
        let n = Int(try r.u16())
        return try r.string(n)
    }
}
