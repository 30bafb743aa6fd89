import LMDB
import VecStoreIO

/// The format version rule (Spec/FORMAT.md §5): a version needed to read apart from a version needed
/// to write, and named features a store may require of its readers or of its writers.
///
/// The `format` record holds `readVersion` at offset 8 and `writeVersion` at offset 12 (0 in stores
/// written before this rule, meaning "same as readVersion"). A build reads a store whose
/// `readVersion` it supports and writes one whose `writeVersion` it supports; a store it can read but
/// not write opens read-only. The optional `features` meta record names features (an index kind, a
/// per-collection record kind) and says whether each is needed to read or to write: an unknown
/// feature needed to read refuses the store, one needed to write makes it read-only, any other is
/// ignored (and its `<name>:` meta keys with it). A store with a `features` record carries read
/// version 3, so builds from before this rule (which read exactly version 2) refuse it.
struct FormatAccess: Equatable {
    /// Version needed to read, from the `format` record.
    var readVersion: UInt32
    /// Version needed to write (equal to `readVersion` when the record says 0).
    var writeVersion: UInt32
    /// The store's declared features.
    var features: [Format.Feature]
    /// Why this build may not write the store, or nil when it may.
    var writeRefusal: String?
}

extension Format {
    /// Highest `readVersion` this build reads.
    static let maxReadVersion: UInt32 = 3
    /// Highest `writeVersion` this build writes.
    static let maxWriteVersion: UInt32 = 3
    /// Lowest version this build reads (version 1 stores are exported and imported again).
    static let minReadVersion: UInt32 = 2
    /// The read version a store gets once it has a `features` record.
    static let featuresVersion: UInt32 = 3
    /// Meta key of the features record.
    static let featuresKey: [UInt8] = Array("features".utf8)

    /// Features this build implements (a store may declare them freely). Another module's feature is
    /// added here together with the code that reads its records.
    /// Index kinds that declare a feature are known through `IndexRegistry.kinds`.
    static let knownFeatures: Set<String> = Set([ProjectionRecord.feature, EmbedderInfo.feature, HNSWInt8Record.feature,
                                                 HNSWIndex.tailFeature.name, IDIndex.feature, IVFFormat.rawCodesFeature.name,
                                                 IVFFormat.halfListsFeature.name, HNSWFilterLinks.feature.name]
        + IndexRegistry.kinds.compactMap { $0.feature?.name })

    /// One entry of the `features` record.
    struct Feature: Equatable {
        /// A name of 1–64 bytes from `[a-z0-9-]`; the feature's meta keys begin with `<name>:`.
        var name: String
        /// Readers that do not implement the feature must refuse the store.
        var neededToRead: Bool
        /// Writers that do not implement the feature must not write to the store.
        var neededToWrite: Bool
    }

    /// The `format` record; a write version equal to the read version is written as 0 (so a store
    /// that needs nothing newer is byte for byte what builds before the rule wrote).
    static func encodeFormatRecord(readVersion: UInt32 = version, writeVersion: UInt32 = version) -> [UInt8] {
        var b = magic
        b.appendLE(readVersion)
        b.appendLE(writeVersion == readVersion ? 0 : writeVersion)
        return b
    }

    /// The read and write versions of a `format` record (a write version of 0, or none, means the read
    /// version), or nil when the record is shorter than its 12-byte minimum. The magic is not checked.
    static func versions(_ value: UnsafeRawBufferPointer) -> (read: UInt32, write: UInt32)? {
        guard value.count >= 12 else { return nil }
        let read = UInt32(littleEndian: value.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        let write = value.count >= 16 ? UInt32(littleEndian: value.loadUnaligned(fromByteOffset: 12, as: UInt32.self)) : 0
        return (read, write == 0 ? read : write)
    }

    /// Applies the version rule to a `format` record and the `features` record (nil when absent).
    static func access(_ value: UnsafeRawBufferPointer, features: UnsafeRawBufferPointer?, path: String)
        throws(VecStoreError) -> FormatAccess
    {
        guard Array(value.prefix(8)) == magic, let (read, write) = versions(value) else { throw .notAVecStore(path) }
        if read < minReadVersion { throw .unsupportedFormatVersion(found: read, supported: version) }
        if read > maxReadVersion {
            throw .newerFormat("\(path) needs format version \(read) to be read; this vecstore reads up to \(maxReadVersion)")
        }
        var refusal: String? = write > maxWriteVersion
            ? "\(path) needs format version \(write) to be written; this vecstore writes up to \(maxWriteVersion)" : nil
        let list = try features.map { v throws(VecStoreError) in try decodeFeatures(v) } ?? []
        for f in list where !knownFeatures.contains(f.name) {
            if f.neededToRead { throw .newerFormat("\(path) uses feature '\(f.name)', which this vecstore cannot read") }
            if f.neededToWrite, refusal == nil {
                refusal = "\(path) uses feature '\(f.name)', which this vecstore cannot keep up to date"
            }
        }
        return FormatAccess(readVersion: read, writeVersion: write, features: list, writeRefusal: refusal)
    }

    /// `features` value: `u8 count`, then per feature `u8 flags` (bit 0 needed to read, bit 1 needed to
    /// write, other bits 0), `u8 length`, name bytes; names strictly ascending.
    static func decodeFeatures(_ value: UnsafeRawBufferPointer) throws(VecStoreError) -> [Feature] {
        var r = ByteReader(value, context: "meta features")
        let count = Int(try r.u8())
        var out: [Feature] = []
        for _ in 0..<count {
            let flags = try r.u8()
            let name = try r.string(Int(try r.u8()))
            guard flags & ~3 == 0 else {
                throw .newerFormat("feature '\(name)' has flags \(flags) that this vecstore does not know")
            }
            guard validFeatureName(name), out.last.map({ $0.name < name }) ?? true else {
                throw .corrupt("meta features: name '\(name)' is not valid or not in order")
            }
            out.append(Feature(name: name, neededToRead: flags & 1 != 0, neededToWrite: flags & 2 != 0))
        }
        if r.remaining != 0 { throw .corrupt("meta features: \(r.remaining) trailing bytes") }
        return out
    }

    /// Whether a `features` record (layout as `decodeFeatures` reads it) names `name`, walked in place
    /// without decoding or allocating (hot callers such as IVF model loads use it on a record already
    /// checked at open); false for a record too short for what it announces.
    static func declares(_ name: [UInt8], in value: UnsafeRawBufferPointer) -> Bool {
        guard let count = value.first else { return false }
        var o = 1
        for _ in 0..<Int(count) {
            guard o + 2 <= value.count else { return false }
            let length = Int(value[o + 1])
            let start = o + 2
            guard start + length <= value.count else { return false }
            if length == name.count && name.indices.allSatisfy({ value[start + $0] == name[$0] }) { return true }
            o = start + length
        }
        return false
    }

    static func encodeFeatures(_ features: [Feature]) -> [UInt8] {
        var b: [UInt8] = [UInt8(features.count)]
        for f in features.sorted(by: { $0.name < $1.name }) {
            b.append((f.neededToRead ? 1 : 0) | (f.neededToWrite ? 2 : 0))
            b.append(UInt8(f.name.utf8.count))
            b.append(contentsOf: f.name.utf8)
        }
        return b
    }

    static func validFeatureName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count) && name.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 }
    }

    /// Declares `feature` in the store's `features` record (inside a write transaction), stamping read
    /// version 3 and write version 3 into the `format` record so that builds from before the rule
    /// refuse the store. Declaring a feature already declared merges its flags.
    static func declare(_ feature: Feature, _ txn: Transaction, meta: Database) throws {
        guard validFeatureName(feature.name) else {
            throw VecStoreError.invalidArgument("feature name '\(feature.name)' must be 1–64 bytes of a-z, 0-9 and '-'")
        }
        var list = try txn.get(meta, featuresKey).map { v in try decodeFeatures(v) } ?? []
        if let i = list.firstIndex(where: { $0.name == feature.name }) {
            list[i].neededToRead = list[i].neededToRead || feature.neededToRead
            list[i].neededToWrite = list[i].neededToWrite || feature.neededToWrite
        } else {
            list.append(feature)
        }
        guard list.count <= 255 else { throw VecStoreError.invalidArgument("a store declares at most 255 features") }
        try txn.put(meta, featuresKey, encodeFeatures(list))
        guard let record = try txn.get(meta, formatKey), let (read, write) = versions(record) else {
            throw VecStoreError.corrupt("meta format record missing")
        }
        if read < featuresVersion || write < featuresVersion {
            try txn.put(meta, formatKey, encodeFormatRecord(readVersion: max(read, featuresVersion),
                                                            writeVersion: max(write, featuresVersion)))
        }
    }
}
