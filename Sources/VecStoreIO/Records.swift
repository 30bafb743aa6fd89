/// Where an imported record (or an import error) comes from.
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
    /// The path of the input file, as given to the reader.
    public var file: String
    /// The 1-based line number, for line-oriented inputs (JSONL, id lists); nil for binary files.
    public var line: Int?
    /// The 0-based index of the record within the file.
    public var record: Int

    /// Creates a location.
    public init(file: String, line: Int? = nil, record: Int) {
        self.file = file
        self.line = line
        self.record = record
    }

    /// "docs.jsonl:17" for line-oriented inputs, "base.fvecs record 42" otherwise.
    public var description: String {
        if let line {
            return "\(file):\(line)"
        }
        return "\(file) record \(record)"
    }
}

/// One record produced by a `RecordReader`.
public struct ImportRecord: Sendable {
    /// The record's external id; nil when the source has none (binary vector files).
    public var id: String?
    /// The vector; every component is finite. Empty only for JSONL read with `vectorRequired: false`
    /// when the record has no vector.
    public var vector: [Float]
    /// The record's text, if the source provides one.
    public var text: String?
    /// Flat metadata: values are strings, numbers, booleans or arrays of those.
    public var metadata: [String: JSONValue]?
    /// Where the record was read from.
    public var location: SourceLocation

    /// Creates a record.
    public init(id: String?, vector: [Float], text: String? = nil, metadata: [String: JSONValue]? = nil,
                location: SourceLocation) {
        self.id = id
        self.vector = vector
        self.text = text
        self.metadata = metadata
        self.location = location
    }
}

/// An error found while reading an import file.
public struct ImportError: Error, Sendable, CustomStringConvertible {
    /// Where the problem is; nil when it concerns no particular place.
    public var location: SourceLocation?
    /// What is wrong.
    public var reason: String

    /// Creates an error.
    public init(location: SourceLocation?, reason: String) {
        self.location = location
        self.reason = reason
    }

    /// "docs.jsonl:17: reason", "base.fvecs record 42: reason", or just the reason.
    public var description: String {
        if let location {
            return "\(location): \(reason)"
        }
        return reason
    }
}

/// A streaming source of `ImportRecord`s.
///
/// Readers own an open file; they are meant to be used by one owner and not copied
/// (copies share the underlying file position).
public protocol RecordReader {
    /// Returns the next record, or nil at the end of the input.
    mutating func next() throws(ImportError) -> ImportRecord?
    /// The number of input bytes consumed so far (for progress reporting).
    var bytesRead: UInt64 { get }
    /// The total size of the input in bytes, when known (nil for pipes and other non-regular files).
    var totalBytes: UInt64? { get }
    /// The vector dimension, once known (after the header or the first record with a vector).
    var dimension: Int? { get }
}

/// The kinds of vector files the readers understand.
public enum VectorFileFormat: String, Sendable, Hashable, CaseIterable {
    /// JSON Lines (`.jsonl`, `.ndjson`, `.json`), read by `JSONLReader`.
    case jsonl
    /// `.fvecs`: per record an int32 LE dimension then that many float32 LE; read by `FvecsReader`.
    case fvecs
    /// `.bvecs`: per record an int32 LE dimension then that many uint8; read by `FvecsReader`.
    case bvecs
    /// NumPy `.npy` arrays, read by `NpyReader`.
    case npy

    /// Guesses the format from the file extension (case-insensitive); nil when unknown.
    public static func detectFormat(path: String) -> VectorFileFormat? {
        let name = path.split(separator: "/", omittingEmptySubsequences: false).last ?? Substring(path)
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return nil }
        switch name[name.index(after: dot)...].lowercased() {
        case "jsonl", "json", "ndjson": return .jsonl
        case "fvecs": return .fvecs
        case "bvecs": return .bvecs
        case "npy": return .npy
        default: return nil
        }
    }
}

/// Reports the first non-finite component of `vector`, if any.
func checkFinite(_ vector: [Float], location: SourceLocation) throws(ImportError) {
    for (index, component) in vector.enumerated() where !component.isFinite {
        throw ImportError(location: location,
                          reason: "vector component \(index) is not a finite number (\(component))")
    }
}

/// Rejects dimensions outside 1...`maximumVectorDimension`.
func checkDimension(_ dimension: Int, location: SourceLocation, context: String) throws(ImportError) {
    guard dimension > 0, dimension <= maximumVectorDimension else {
        throw ImportError(location: location,
                          reason: "invalid vector dimension \(dimension)\(context) (must be 1...\(maximumVectorDimension))")
    }
}

/// The largest vector dimension the binary readers accept.
public let maximumVectorDimension = 65536
