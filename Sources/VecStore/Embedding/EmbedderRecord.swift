import Foundation
import LMDB
import VecStoreEmbed

/// The text-embedding model a collection was filled with (Spec/EMBEDDER.md): its name, dimension,
/// truncation length and the model checksum, so that later imports and text queries embed the same way.
public struct EmbedderInfo: Sendable, Equatable, CustomStringConvertible {
    /// Model name, e.g. `all-minilm-l6-v2`.
    public var name: String
    /// Output dimension (equals the collection's).
    public var dimension: Int
    /// Longest token sequence, [CLS] and [SEP] included; longer texts were truncated.
    public var maxTokens: Int
    /// SHA-256 (hex, 64 digits) of the model's `model.safetensors` followed by its `vocab.txt`.
    public var checksum: String

    /// Describes the embedder as `name` (sha256 prefix).
    public var description: String { "\(name) (\(dimension)-d, model sha256 \(checksum.prefix(12))…)" }

    /// The record of a loaded model.
    public init(_ embedder: Embedder) {
        name = embedder.name
        dimension = embedder.dimension
        maxTokens = embedder.tokenizer.maxTokens
        checksum = embedder.checksum
    }

    /// The feature a store with an embedder record declares (Spec/EMBEDDER.md): needed to write, since a
    /// writer that does not know the record would drop it in compaction; not needed to read.
    static let feature = "embedder"

    /// Writes the record and declares the `embedder` feature, in the caller's transaction.
    func store(_ txn: Transaction, _ dbs: Databases, _ collection: UInt32) throws {
        try txn.put(dbs.meta, Self.key(collection), encoded())
        try Format.declare(Format.Feature(name: Self.feature, neededToRead: false, neededToWrite: true), txn, meta: dbs.meta)
    }

    /// Meta key: `embedder:` · BE32(collection id).
    static let keyPrefix: [UInt8] = Array("embedder:".utf8)
    static func key(_ collection: UInt32) -> [UInt8] {
        var k = keyPrefix
        k.appendBE(collection)
        return k
    }

    static let recordVersion: UInt8 = 1
    /// Flags bit 0: mean pooling then L2 normalisation (the only pipeline; always set).
    static let flagMeanNormalized: UInt8 = 1

    /// Encodes the record: version, flags, LE16 maxTokens, LE32 dimension, 32-byte SHA-256, LE16 name
    /// length, name (UTF-8).
    func encoded() -> [UInt8] {
        var b: [UInt8] = [Self.recordVersion, Self.flagMeanNormalized]
        b.appendLE(UInt16(clamping: maxTokens))
        b.appendLE(UInt32(dimension))
        var digest: [UInt8] = []
        var i = checksum.startIndex
        while i < checksum.endIndex, let next = checksum.index(i, offsetBy: 2, limitedBy: checksum.endIndex) {
            digest.append(UInt8(checksum[i..<next], radix: 16) ?? 0)
            i = next
        }
        b += digest + [UInt8](repeating: 0, count: max(0, 32 - digest.count))
        let name = Array(self.name.utf8)
        b.appendLE(UInt16(name.count))
        b += name
        return b
    }

    /// Decodes and checks a record; `context` names it in errors.
    static func decode(_ value: UnsafeRawBufferPointer, context: String) throws(VecStoreError) -> EmbedderInfo {
        func corrupt(_ reason: String) -> VecStoreError { .corrupt("\(context): \(reason)") }
        guard value.count >= 42 else { throw corrupt("embedder record has \(value.count) bytes, fewer than 42") }
        guard value[0] == recordVersion else { throw corrupt("embedder record version \(value[0]) is not 1") }
        let maxTokens = Int(UInt16(littleEndian: value.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
        let dimension = Int(UInt32(littleEndian: value.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
        let checksum = value[8..<40].map { String(format: "%02x", $0) }.joined()
        let nameLength = Int(UInt16(littleEndian: value.loadUnaligned(fromByteOffset: 40, as: UInt16.self)))
        guard nameLength >= 1, value.count == 42 + nameLength else {
            throw corrupt("embedder record of \(value.count) bytes does not hold a name of \(nameLength) bytes")
        }
        guard let name = String(validating: value[42..<(42 + nameLength)], as: UTF8.self) else {
            throw corrupt("embedder name is not valid UTF-8")
        }
        guard (1...65_536).contains(dimension), maxTokens >= 2 else {
            throw corrupt("embedder record has dimension \(dimension) and max tokens \(maxTokens)")
        }
        return EmbedderInfo(name: name, dimension: dimension, maxTokens: maxTokens, checksum: checksum)
    }

    init(name: String, dimension: Int, maxTokens: Int, checksum: String) {
        self.name = name
        self.dimension = dimension
        self.maxTokens = maxTokens
        self.checksum = checksum
    }

    static func load(_ txn: Transaction, _ dbs: Databases, _ collection: UInt32, name: String) throws -> EmbedderInfo? {
        guard let value = try txn.get(dbs.meta, key(collection)) else { return nil }
        return try decode(value, context: "collection '\(name)'")
    }
}

/// Loaded models, shared by every collection of the process (loading one costs ~0.1 s and 90 MB).
enum EmbedderCache {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var models: [String: Embedder] = [:]

    static func embedder(named name: String) throws(VecStoreError) -> Embedder {
        lock.lock()
        defer { lock.unlock() }
        if let e = models[name] { return e }
        do {
            let e = try Embedder(model: name)
            models[name] = e
            return e
        } catch { throw .embedding(error) }
    }
}

extension VectorCollection {
    /// The embedder recorded for this collection, or nil when its vectors came from elsewhere.
    public func embedderInfo() throws(VecStoreError) -> EmbedderInfo? {
        let dbs = store.dbs
        return try store.read { txn in try EmbedderInfo.load(txn, dbs, collectionID, name: name) }
    }

    /// The model this collection embeds text with, loaded (once per process) from the installed
    /// models; nil when the collection has no embedder. Throws when the model is not installed, or
    /// when the installed model's checksum differs from the recorded one (its vectors would not be
    /// comparable with the stored ones).
    public func embedder() throws(VecStoreError) -> Embedder? {
        guard let info = try embedderInfo() else { return nil }
        let model = try EmbedderCache.embedder(named: info.name)
        try Self.check(model, matches: info, collection: name)
        return model
    }

    static func check(_ model: Embedder, matches info: EmbedderInfo, collection: String) throws(VecStoreError) {
        if model.name != info.name || model.checksum != info.checksum || model.dimension != info.dimension {
            throw .collectionMismatch("collection '\(collection)' was embedded with \(info.name) (model sha256 \(info.checksum)); "
                                      + "the model at hand is \(model.name) (sha256 \(model.checksum), \(model.dimension)-d)")
        }
        // Texts truncated at another length give vectors that are not comparable with the stored ones.
        if model.tokenizer.maxTokens != info.maxTokens {
            throw .collectionMismatch("collection '\(collection)' was embedded with texts truncated at \(info.maxTokens) tokens; "
                                      + "the model at hand truncates at \(model.tokenizer.maxTokens)")
        }
    }

    /// Records `embedder` as the model this collection's text is embedded with. The collection must
    /// have its dimension and the cosine metric, and no other embedder.
    public func setEmbedder(_ embedder: Embedder) throws(VecStoreError) {
        let info = EmbedderInfo(embedder)
        guard dimension == info.dimension else { throw .dimensionMismatch(expected: dimension, got: info.dimension, id: nil) }
        guard metric == .cosine else {
            throw .collectionMismatch("collection '\(name)' uses metric \(metric); embedded text needs cosine")
        }
        let dbs = store.dbs
        try store.write { txn in
            _ = try currentRecord(txn)
            if let existing = try EmbedderInfo.load(txn, dbs, collectionID, name: name) {
                if existing == info { return }
                try Self.check(embedder, matches: existing, collection: name)
            }
            try info.store(txn, dbs, collectionID)
        }
    }

    /// The embedder to use: `given` (checked against the recorded one), else the recorded one.
    func resolveEmbedder(_ given: Embedder?) throws(VecStoreError) -> Embedder {
        if let given {
            if let info = try embedderInfo() { try Self.check(given, matches: info, collection: name) }
            guard given.dimension == dimension else {
                throw .dimensionMismatch(expected: dimension, got: given.dimension, id: nil)
            }
            return given
        }
        guard let model = try embedder() else {
            throw .collectionMismatch("collection '\(name)' has no embedder: its vectors were not made from text by vecstore "
                                      + "(import with --embed to create one)")
        }
        return model
    }

    /// Search by meaning: embeds `text` with the collection's embedder (or `embedder`) and searches
    /// with the resulting vector.
    public func search(text: String, k: Int, filter: Filter? = nil, options: SearchOptions = SearchOptions(),
                       embedder: Embedder? = nil) throws(VecStoreError) -> [SearchResult] {
        let model = try resolveEmbedder(embedder)
        let vector: [Float]
        do { vector = try model.embed([text], threads: options.threads)[0] } catch { throw .embedding(error) }
        return try search(vector, k: k, filter: filter, options: options)
    }

    /// Hybrid search from text alone: BM25 on `text` fused with the search by meaning of its embedding
    /// (the collection's embedder, or `embedder`).
    public func hybridSearch(text: String, k: Int, fusion: Fusion = .default,
                             candidates: Int = 100, filter: Filter? = nil,
                             embedder: Embedder? = nil,
                             textOptions: TextSearchOptions = TextSearchOptions()) throws(VecStoreError) -> [SearchResult] {
        let model = try resolveEmbedder(embedder)
        let vector: [Float]
        do { vector = try model.embed([text], threads: 1)[0] } catch { throw .embedding(error) }
        return try hybridSearch(text: text, vector: vector, k: k, fusion: fusion, candidates: candidates, filter: filter,
                                textOptions: textOptions)
    }
}

extension VecStore {
    /// Checks every `embedder:<cid>` record (Spec/EMBEDDER.md §3): it decodes, belongs to an existing
    /// collection, and names that collection's dimension and the cosine metric.
    func verifyEmbedders(_ txn: Transaction, _ records: [(UInt32, [UInt8])], collections: [UInt32: String]) throws
        -> [String]
    {
        var faults: [String] = []
        for (cid, value) in records {
            guard let name = collections[cid] else {
                faults.append("meta: embedder record of unknown collection id \(cid)")
                continue
            }
            do {
                let info = try value.withUnsafeBytes { (raw) throws(VecStoreError) in
                    try EmbedderInfo.decode(raw, context: "collection '\(name)'")
                }
                guard let record = try record(txn, name) else { continue }
                if record.dimension != info.dimension {
                    faults.append("collection '\(name)': embedder \(info.name) has dimension \(info.dimension), the collection \(record.dimension)")
                }
                if record.metric != .cosine {
                    faults.append("collection '\(name)': has an embedder but metric \(record.metric), not cosine")
                }
            } catch {
                faults.append("\(error)")
            }
        }
        return faults
    }
}
