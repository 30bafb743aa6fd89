import Foundation
import Testing
@testable import VecStoreIO

/// A temporary directory removed when the value is released.
final class IOTempDir: @unchecked Sendable {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("vecstoreio-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    /// Writes `bytes` to `name` and returns the file's path.
    @discardableResult
    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = path(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Writes `text` as UTF-8 to `name` and returns the file's path.
    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        try write(name, Array(text.utf8))
    }

    deinit { try? FileManager.default.removeItem(at: url) }
}

/// Deterministic random numbers (SplitMix64).
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Runs `body` and returns the `ImportError` it throws; records an issue when it does not throw.
func importError(_ body: () throws(ImportError) -> Void,
                 sourceLocation: Testing.SourceLocation = #_sourceLocation) -> ImportError? {
    do {
        try body()
        Issue.record("expected an ImportError", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

/// Runs `body` and returns the `JSONParseError` it throws; records an issue when it does not throw.
func parseError(_ text: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) -> JSONParseError? {
    parseError(Array(text.utf8), sourceLocation: sourceLocation)
}

func parseError(_ bytes: [UInt8], sourceLocation: Testing.SourceLocation = #_sourceLocation) -> JSONParseError? {
    do {
        let value = try JSONValue.parse(bytes)
        Issue.record("expected a JSONParseError, parsed \(value)", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

/// Reads records until one fails and returns that error; records an issue when none does.
func firstError<R: RecordReader>(_ reader: inout R,
                                 sourceLocation: Testing.SourceLocation = #_sourceLocation) -> ImportError? {
    do {
        while try reader.next() != nil {}
        Issue.record("expected an ImportError, reached the end", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

/// Calls `next()` once and returns the error it throws; records an issue when it does not throw.
func nextError<R: RecordReader>(_ reader: inout R,
                                sourceLocation: Testing.SourceLocation = #_sourceLocation) -> ImportError? {
    do {
        let record = try reader.next()
        Issue.record("expected an ImportError, got \(String(describing: record))", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

/// Reads every record of `reader`.
func readAll<R: RecordReader>(_ reader: inout R) throws(ImportError) -> [ImportRecord] {
    var records: [ImportRecord] = []
    while let record = try reader.next() { records.append(record) }
    return records
}

/// Little-endian bytes of a value.
func leBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.littleEndian) { Array($0) }
}

func leBytes(_ value: Float) -> [UInt8] { leBytes(value.bitPattern) }
func leBytes(_ value: Double) -> [UInt8] { leBytes(value.bitPattern) }

/// The bytes of an `.fvecs` file holding `vectors`.
func fvecsBytes(_ vectors: [[Float]]) -> [UInt8] {
    var bytes: [UInt8] = []
    for vector in vectors {
        bytes += leBytes(Int32(vector.count))
        for component in vector { bytes += leBytes(component) }
    }
    return bytes
}

/// The bytes of a `.bvecs` file holding `vectors`.
func bvecsBytes(_ vectors: [[UInt8]]) -> [UInt8] {
    var bytes: [UInt8] = []
    for vector in vectors {
        bytes += leBytes(Int32(vector.count))
        bytes += vector
    }
    return bytes
}

/// A hand-built `.npy` file: magic, version, header length, the header text (padded with spaces
/// and a final newline so that the data starts at a multiple of 64, as numpy does), then `payload`.
func npyBytes(header: String, payload: [UInt8], major: UInt8 = 1, pad: Bool = true) -> [UInt8] {
    let lengthSize = major == 1 ? 2 : 4
    var headerBytes = Array(header.utf8)
    if pad {
        let unpadded = 6 + 2 + lengthSize + headerBytes.count + 1
        let padding = (64 - unpadded % 64) % 64
        headerBytes += [UInt8](repeating: 0x20, count: padding) + [0x0A]
    }
    var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [major, 0]
    if major == 1 {
        bytes += leBytes(UInt16(headerBytes.count))
    } else {
        bytes += leBytes(UInt32(headerBytes.count))
    }
    return bytes + headerBytes + payload
}

/// A numpy-style header dictionary.
func npyHeader(descr: String, fortran: Bool = false, shape: String) -> String {
    "{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(shape), }"
}

/// Bit-exact comparison of float vectors (so NaN and -0.0 are told apart).
func bits(_ vector: [Float]) -> [UInt32] { vector.map(\.bitPattern) }
