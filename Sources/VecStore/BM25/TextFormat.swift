@_exported import VecStoreText
import LMDB

/// Options of a collection's keyword (BM25) index, stored in its `textinfo` record.
public struct TextIndexOptions: Sendable, Equatable {
    /// Whether documents' text is indexed (and `searchText` available).
    public var enabled: Bool
    /// How text is analysed; queries are analysed the same way.
    public var analyzer: AnalyzerOptions
    /// BM25 term-frequency saturation.
    public var k1: Float
    /// BM25 length normalisation (0 = none, 1 = full).
    public var b: Float

    /// Creates options. Defaults: enabled, Snowball English with stop words, k1 = 1.2, b = 0.75.
    public init(enabled: Bool = true, analyzer: AnalyzerOptions = AnalyzerOptions(), k1: Float = 1.2, b: Float = 0.75) {
        self.enabled = enabled
        self.analyzer = analyzer
        self.k1 = k1
        self.b = b
    }
}

/// Size and statistics of a collection's keyword index.
public struct TextIndexStats: Sendable, Equatable {
    /// The options in force.
    public var options: TextIndexOptions
    /// Live documents with at least one term (BM25's N).
    public var documents: Int
    /// Total terms in those documents.
    public var totalLength: UInt64
    /// Mean document length in terms (BM25's avgdl).
    public var averageLength: Double { documents == 0 ? 0 : Double(totalLength) / Double(documents) }
    /// Distinct terms in the dictionary (including terms whose live document frequency fell to 0).
    public var terms: Int
    /// Postings stored, including those of deleted documents awaiting compaction.
    public var postings: Int
    /// Bytes of term-dictionary keys and values.
    public var dictionaryBytes: Int
    /// Bytes of posting-block values.
    public var postingBytes: Int
    /// Bytes of document-length blocks.
    public var lengthBytes: Int
}

/// Keys and records of the keyword index (Spec/BM25.md).
enum TextFormat {
    enum DB {
        static let textinfo = "textinfo"
        static let terms = "terms"
        static let postings = "postings"
        static let doclens = "doclens"
    }

    /// Postings per block.
    static let blockSize = 128
    /// Rows per document-length block (u32 each: 64 KiB values, page aligned on overflow pages).
    static let lengthBlockRows = 16_384
    static let lengthBlockShift: UInt32 = 14
    /// Bytes of a posting block header.
    static let blockHeaderBytes = 16
    static let analyzerVersion: UInt8 = 1

    /// `collection (BE) · term (UTF-8)`.
    static func termKey(_ collection: UInt32, _ term: String) -> [UInt8] {
        var k = Format.prefix(collection)
        k.append(contentsOf: term.utf8)
        return k
    }

    /// `collection (BE) · term id (BE) · block number (BE)`.
    static func postingKey(_ collection: UInt32, _ termID: UInt32, _ block: UInt32) -> [UInt8] {
        var k: [UInt8] = []
        k.reserveCapacity(12)
        k.appendBE(collection)
        k.appendBE(termID)
        k.appendBE(block)
        return k
    }
}

/// The per-collection `textinfo` record: options and collection statistics.
struct TextInfo: Equatable {
    var options: TextIndexOptions
    var nextTermID: UInt32 = 0
    /// Live documents with at least one term.
    var docCount: UInt32 = 0
    /// Sum of their lengths.
    var totalLength: UInt64 = 0

    func encoded() -> [UInt8] {
        var b: [UInt8] = [1]
        var flags: UInt8 = 0
        if options.enabled { flags |= 1 }
        if options.analyzer.stopWords { flags |= 2 }
        b.append(flags)
        let stem = Array((options.analyzer.stemmer ?? "").utf8)
        b.append(UInt8(stem.count))
        b.append(TextFormat.analyzerVersion)
        b.appendLE(options.k1)
        b.appendLE(options.b)
        b.appendLE(nextTermID)
        b.appendLE(docCount)
        b.appendLE(UInt32(truncatingIfNeeded: totalLength))
        b.appendLE(UInt32(truncatingIfNeeded: totalLength >> 32))
        b.append(contentsOf: stem)
        return b
    }

    static func decode(_ value: UnsafeRawBufferPointer, context: String) throws(VecStoreError) -> TextInfo {
        var r = ByteReader(value, context: context)
        let version = try r.u8()
        guard version == 1 else { throw .corrupt("\(context): text record version \(version) is not 1") }
        let flags = try r.u8()
        let stemLength = Int(try r.u8())
        let analyzerVersion = try r.u8()
        guard analyzerVersion == TextFormat.analyzerVersion else {
            throw .corrupt("\(context): analyzer version \(analyzerVersion) is not supported (this build has \(TextFormat.analyzerVersion))")
        }
        let k1 = try r.f32()
        let b = try r.f32()
        let next = try r.u32()
        let docs = try r.u32()
        let low = UInt64(try r.u32())
        let high = UInt64(try r.u32())
        let stem = try r.string(stemLength)
        if r.remaining != 0 { throw .corrupt("\(context): \(r.remaining) trailing bytes") }
        let options = TextIndexOptions(enabled: flags & 1 != 0,
                                       analyzer: AnalyzerOptions(stemmer: stem.isEmpty ? nil : stem, stopWords: flags & 2 != 0),
                                       k1: k1, b: b)
        return TextInfo(options: options, nextTermID: next, docCount: docs, totalLength: low | high << 32)
    }
}

/// A `terms` value: term id, live document frequency, postings stored, blocks stored (16 bytes).
struct TermEntry: Equatable {
    var termID: UInt32
    var df: UInt32
    var postings: UInt32
    var blocks: UInt32

    func encoded() -> [UInt8] {
        var b: [UInt8] = []
        b.reserveCapacity(16)
        b.appendLE(termID)
        b.appendLE(df)
        b.appendLE(postings)
        b.appendLE(blocks)
        return b
    }

    @inline(__always)
    static func decode(_ value: UnsafeRawBufferPointer, context: @autoclosure () -> String) throws(VecStoreError) -> TermEntry {
        guard value.count == 16 else { throw .corrupt("\(context()): term entry has \(value.count) bytes, not 16") }
        return TermEntry(termID: UInt32(littleEndian: value.loadUnaligned(fromByteOffset: 0, as: UInt32.self)),
                         df: UInt32(littleEndian: value.loadUnaligned(fromByteOffset: 4, as: UInt32.self)),
                         postings: UInt32(littleEndian: value.loadUnaligned(fromByteOffset: 8, as: UInt32.self)),
                         blocks: UInt32(littleEndian: value.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
    }
}

/// A posting block: up to 128 (row, term frequency) pairs in increasing row order.
///
/// Layout: `u8 count · u8 0 · u16 max tf · u32 min doc length · u32 first row · u32 last row` (16-byte
/// header, little-endian), then count − 1 varint row gaps, then count varint term frequencies.
enum PostingBlock {
    static func encode(rows: ArraySlice<UInt32>, tfs: ArraySlice<UInt32>, lengths: (UInt32) -> UInt32) -> [UInt8] {
        precondition(rows.count <= TextFormat.blockSize && rows.count == tfs.count)
        guard let first = rows.first, let last = rows.last else { return [] }
        var maxTF: UInt32 = 0
        var minLength = UInt32.max
        for (row, tf) in zip(rows, tfs) {
            maxTF = max(maxTF, tf)
            minLength = min(minLength, lengths(row))
        }
        var b: [UInt8] = []
        b.reserveCapacity(16 + rows.count * 3)
        b.append(UInt8(rows.count))
        b.append(0)
        b.appendLE(UInt16(min(maxTF, 65_535)))
        b.appendLE(minLength)
        b.appendLE(first)
        b.appendLE(last)
        var previous = first
        for row in rows.dropFirst() {
            appendVarint(&b, row - previous)
            previous = row
        }
        for tf in tfs { appendVarint(&b, tf) }
        return b
    }

    @inline(__always)
    static func appendVarint(_ b: inout [UInt8], _ value: UInt32) {
        var v = value
        while v >= 0x80 {
            b.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        b.append(UInt8(v))
    }

    /// Header fields of a block value.
    struct Header {
        var count: Int
        var maxTF: UInt32
        var minLength: UInt32
        var firstRow: UInt32
        var lastRow: UInt32
    }

    @inline(__always)
    static func header(_ p: UnsafeRawBufferPointer, context: @autoclosure () -> String) throws(VecStoreError) -> Header {
        guard p.count >= TextFormat.blockHeaderBytes else {
            throw .corrupt("\(context()): posting block has \(p.count) bytes")
        }
        let count = Int(p[0])
        guard count >= 1 && count <= TextFormat.blockSize && p.count >= TextFormat.blockHeaderBytes + 2 * count - 1 else {
            throw .corrupt("\(context()): posting block count \(count) does not fit its \(p.count) bytes")
        }
        return Header(count: count,
                      maxTF: UInt32(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 2, as: UInt16.self))),
                      minLength: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self)),
                      firstRow: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self)),
                      lastRow: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
    }

    /// Decodes rows and term frequencies into `rows` and `tfs` (room for `count` each). Returns false
    /// when the varints run past the end of the value, a row gap is 0 or wraps around, or rows do not
    /// end at the header's last row.
    @inline(__always)
    static func decode(_ p: UnsafeRawBufferPointer, count: Int, firstRow: UInt32, lastRow: UInt32,
                       rows: UnsafeMutablePointer<UInt32>, tfs: UnsafeMutablePointer<UInt32>) -> Bool {
        guard count >= 1, let raw = p.baseAddress else { return false }
        let base = raw.assumingMemoryBound(to: UInt8.self)
        let end = p.count
        var o = TextFormat.blockHeaderBytes
        /// The LEB128 varint at `o` (advancing it), or nil when it runs past the end or exceeds 5 bytes.
        @inline(__always) func varint() -> UInt32? {
            var v: UInt32 = 0
            var shift: UInt32 = 0
            while true {
                guard o < end, shift < 35 else { return nil }
                let byte = base[o]
                o += 1
                v |= UInt32(byte & 0x7f) << shift
                if byte < 0x80 { return v }
                shift += 7
            }
        }
        var row = firstRow
        rows[0] = row
        var i = 1
        while i < count {
            // Rows strictly increase: a gap of 0 or one that wraps past UInt32.max is damage.
            guard let v = varint(), v >= 1 else { return false }
            let (next, overflow) = row.addingReportingOverflow(v)
            if overflow { return false }
            row = next
            rows[i] = row
            i += 1
        }
        guard row == lastRow else { return false }
        i = 0
        while i < count {
            guard let v = varint() else { return false }
            tfs[i] = v
            i += 1
        }
        return o == end
    }
}

extension Databases {
    /// The keyword index's databases (every key starts with the collection id).
    var textDatabases: [Database] { [textinfo, terms, postings, doclens] }
}
