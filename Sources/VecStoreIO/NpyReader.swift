/// Reads vectors from a NumPy `.npy` file (format versions 1.0, 2.0 and 3.0).
///
/// The array must be C-ordered with dtype `<f4`, `<f2` or `<f8` (converted to Float) and shape
/// `(n, d)` (n vectors) or `(d,)` (one vector). Rows are streamed. Records have no ids.
public struct NpyReader: RecordReader {
    /// The element types accepted.
    public enum DType: String, Sendable, Hashable, CaseIterable {
        /// Little-endian IEEE half precision.
        case float16 = "<f2"
        /// Little-endian IEEE single precision.
        case float32 = "<f4"
        /// Little-endian IEEE double precision.
        case float64 = "<f8"

        /// The size of one element in bytes.
        public var byteCount: Int {
            switch self {
            case .float16: 2
            case .float32: 4
            case .float64: 8
            }
        }
    }

    /// The path of the file being read.
    public let path: String
    /// The element type from the header.
    public let dtype: DType
    /// The number of vectors (rows) in the file.
    public let rowCount: Int
    /// The vector dimension (known from the header).
    public let dimension: Int?

    private let file: BufferedFile
    private let dataOffset: Int
    private var recordIndex = 0
    private var scratch: [UInt8]

    /// Opens `path` and parses the header.
    public init(path: String) throws(ImportError) {
        self.path = path
        file = try BufferedFile(path: path)
        let header = try Self.readHeader(file, path: path)
        dtype = header.dtype
        rowCount = header.rows
        dimension = header.columns
        dataOffset = header.dataOffset
        scratch = [UInt8](repeating: 0, count: header.columns * header.dtype.byteCount)
        if let size = file.totalBytes {
            let rowBytes = UInt64(scratch.count)
            let available = size - min(size, UInt64(dataOffset))
            let completeRows = Int(available / rowBytes)
            if completeRows < rowCount {
                throw ImportError(location: SourceLocation(file: path, record: completeRows),
                                  reason: "truncated data: the header declares \(rowCount) rows of \(rowBytes) bytes but the file holds only \(available) bytes of data")
            }
        }
    }

    /// The number of bytes consumed so far, including the header.
    public var bytesRead: UInt64 { file.consumed }

    /// The file size, when it is a regular file.
    public var totalBytes: UInt64? { file.totalBytes }

    /// Returns the next row, or nil after the last one.
    public mutating func next() throws(ImportError) -> ImportRecord? {
        guard recordIndex < rowCount else { return nil }
        let location = SourceLocation(file: path, record: recordIndex)
        let offset = file.consumed
        let count = try scratch.withUnsafeMutableBytes { row in
            Result { () throws(ImportError) in try file.readBytes(into: row) }
        }.get()
        guard count == scratch.count else {
            throw ImportError(location: location,
                              reason: "truncated data at byte offset \(offset): expected \(scratch.count) bytes, found \(count)")
        }
        let vector = scratch.withUnsafeBytes { Self.decode($0, as: dtype) }
        try checkFinite(vector, location: location)
        recordIndex += 1
        return ImportRecord(id: nil, vector: vector, location: location)
    }

    private static func decode(_ bytes: UnsafeRawBufferPointer, as dtype: DType) -> [Float] {
        let count = bytes.count / dtype.byteCount
        switch dtype {
        case .float16:
            return (0..<count).map { index in
                floatFromHalf(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: index * 2, as: UInt16.self)))
            }
        case .float32:
            return (0..<count).map { index in
                Float(bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: index * 4, as: UInt32.self)))
            }
        case .float64:
            return (0..<count).map { index in
                Float(Double(bitPattern: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: index * 8, as: UInt64.self))))
            }
        }
    }

    /// Converts IEEE 754 binary16 bits to Float (exactly; every half value is a Float).
    static func floatFromHalf(_ bits: UInt16) -> Float {
        let sign = UInt32(bits & 0x8000) << 16
        let exponent = Int(bits >> 10) & 0x1F
        let fraction = UInt32(bits & 0x3FF)
        switch exponent {
        case 0:
            // Zero or subnormal: fraction × 2^-24.
            let magnitude = Float(fraction) * 0x1p-24
            return sign == 0 ? magnitude : -magnitude
        case 0x1F:
            return Float(bitPattern: sign | 0x7F80_0000 | (fraction << 13))
        default:
            return Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | (fraction << 13))
        }
    }

    // MARK: Header

    private struct Header {
        var dtype: DType
        var rows: Int
        var columns: Int
        var dataOffset: Int
    }

    private static func readHeader(_ file: BufferedFile, path: String) throws(ImportError) -> Header {
        func failure(_ reason: String) -> ImportError {
            ImportError(location: SourceLocation(file: path, record: 0), reason: reason)
        }
        func readBytes(_ count: Int) throws(ImportError) -> [UInt8]? {
            var bytes = [UInt8](repeating: 0, count: count)
            let got = try bytes.withUnsafeMutableBytes { buffer in
                Result { () throws(ImportError) in try file.readBytes(into: buffer) }
            }.get()
            return got == count ? bytes : nil
        }

        let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)
        guard let preamble = try readBytes(8), Array(preamble[0..<6]) == magic else {
            throw failure("not a .npy file (bad magic)")
        }
        let major = preamble[6]
        let lengthSize: Int
        switch major {
        case 1: lengthSize = 2
        case 2, 3: lengthSize = 4
        default: throw failure("unsupported .npy format version \(major).\(preamble[7])")
        }
        guard let lengthBytes = try readBytes(lengthSize) else {
            throw failure("truncated .npy header")
        }
        let headerLength = lengthBytes.reversed().reduce(0) { $0 << 8 | Int($1) }
        guard headerLength <= 1 << 20, let headerBytes = try readBytes(headerLength) else {
            throw failure("truncated or oversized .npy header (\(headerLength) bytes)")
        }
        let headerText = major == 3
            ? String(decoding: headerBytes, as: UTF8.self)
            : String(headerBytes.map { Character(Unicode.Scalar($0)) })

        let literal: PythonLiteral
        do throws(PythonLiteralParser.Failure) {
            var parser = PythonLiteralParser(headerText)
            literal = try parser.parseTopLevel()
        } catch {
            throw failure("malformed .npy header: \(error.reason)")
        }
        guard case .dictionary(let dictionary) = literal else {
            throw failure("malformed .npy header: not a dictionary")
        }

        guard case .string(let descr)? = dictionary["descr"] else {
            if dictionary["descr"] == nil { throw failure("the .npy header has no 'descr'") }
            throw failure("unsupported dtype (structured arrays are not supported)")
        }
        guard let dtype = DType(rawValue: descr) else {
            throw failure("unsupported dtype '\(descr)' (supported: '<f4', '<f2', '<f8')")
        }
        guard case .bool(let fortranOrder)? = dictionary["fortran_order"] else {
            throw failure("the .npy header has no boolean 'fortran_order'")
        }
        guard !fortranOrder else {
            throw failure("Fortran-ordered arrays are not supported (fortran_order must be False)")
        }
        guard case .tuple(let shapeItems)? = dictionary["shape"] else {
            throw failure("the .npy header has no tuple 'shape'")
        }
        var shape: [Int] = []
        for item in shapeItems {
            guard case .integer(let extent) = item, extent >= 0 else {
                throw failure("invalid shape entry in .npy header")
            }
            shape.append(extent)
        }
        let rows: Int
        let columns: Int
        switch shape.count {
        case 1: (rows, columns) = (1, shape[0])
        case 2: (rows, columns) = (shape[0], shape[1])
        default:
            let shapeText = "(" + shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? ",)" : ")")
            throw failure("expected a 1-D or 2-D array, found shape \(shapeText)")
        }
        try checkDimension(columns, location: SourceLocation(file: path, record: 0), context: "")
        return Header(dtype: dtype, rows: rows, columns: columns,
                      dataOffset: 6 + 2 + lengthSize + headerLength)
    }
}

// MARK: - Python literal parsing (for .npy headers)

/// The subset of Python literals used in .npy headers.
enum PythonLiteral: Equatable {
    case string(String)
    case integer(Int)
    case bool(Bool)
    case none
    case tuple([PythonLiteral])
    case list([PythonLiteral])
    case dictionary([String: PythonLiteral])
}

/// A parser for the dictionary literal in a .npy header, e.g.
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (10, 3), }`.
struct PythonLiteralParser {
    struct Failure: Error {
        var reason: String
    }

    private let characters: [Character]
    private var index = 0

    init(_ text: String) {
        characters = Array(text)
    }

    mutating func parseTopLevel() throws(Failure) -> PythonLiteral {
        let value = try parseValue(depth: 0)
        skipWhitespace()
        guard index == characters.count else {
            throw Failure(reason: "unexpected text after the dictionary")
        }
        return value
    }

    private mutating func skipWhitespace() {
        while index < characters.count, characters[index].isWhitespace { index += 1 }
    }

    private mutating func consume(_ character: Character) -> Bool {
        skipWhitespace()
        guard index < characters.count, characters[index] == character else { return false }
        index += 1
        return true
    }

    private mutating func parseValue(depth: Int) throws(Failure) -> PythonLiteral {
        guard depth < 16 else { throw Failure(reason: "nested too deeply") }
        skipWhitespace()
        guard index < characters.count else { throw Failure(reason: "unexpected end") }
        let character = characters[index]
        switch character {
        case "'", "\"":
            return .string(try parseString())
        case "{":
            index += 1
            var dictionary: [String: PythonLiteral] = [:]
            while !consume("}") {
                guard case .string(let key) = try parseValue(depth: depth + 1) else {
                    throw Failure(reason: "dictionary keys must be strings")
                }
                guard consume(":") else { throw Failure(reason: "expected ':'") }
                dictionary[key] = try parseValue(depth: depth + 1)
                if !consume(",") {
                    guard consume("}") else { throw Failure(reason: "expected ',' or '}'") }
                    break
                }
            }
            return .dictionary(dictionary)
        case "(", "[":
            index += 1
            let close: Character = character == "(" ? ")" : "]"
            var items: [PythonLiteral] = []
            while !consume(close) {
                items.append(try parseValue(depth: depth + 1))
                if !consume(",") {
                    guard consume(close) else { throw Failure(reason: "expected ',' or '\(close)'") }
                    break
                }
            }
            return character == "(" ? .tuple(items) : .list(items)
        default:
            var word = ""
            while index < characters.count,
                  characters[index].isLetter || characters[index].isNumber || characters[index] == "-" {
                word.append(characters[index])
                index += 1
            }
            switch word {
            case "True": return .bool(true)
            case "False": return .bool(false)
            case "None": return .none
            default:
                // Python 2 wrote long integers with an 'L' suffix.
                let digits = word.hasSuffix("L") ? String(word.dropLast()) : word
                guard let value = Int(digits) else {
                    throw Failure(reason: "unexpected '\(word.isEmpty ? String(character) : word)'")
                }
                return .integer(value)
            }
        }
    }

    private mutating func parseString() throws(Failure) -> String {
        let quote = characters[index]
        index += 1
        var result = ""
        while index < characters.count {
            let character = characters[index]
            index += 1
            if character == quote { return result }
            if character == "\\", index < characters.count {
                result.append(characters[index])
                index += 1
            } else {
                result.append(character)
            }
        }
        throw Failure(reason: "unterminated string")
    }
}
