/// Reads records from a JSON Lines file: one JSON object per line.
///
/// The file is streamed through a fixed-size buffer, so memory use does not depend on the file
/// size (a single line is held in memory while it is parsed). CRLF line endings, a missing final
/// newline, a UTF-8 byte order mark and blank lines are accepted.
public struct JSONLReader: RecordReader {
    /// Which fields of each object hold the id, vector, text and metadata.
    public struct Options: Sendable {
        /// The id field; nil means "id", falling back to "_id". Integer ids become their decimal string.
        public var idField: String?
        /// Whether a record without an id is an error; when false its id is nil.
        public var idRequired: Bool
        /// The field holding the vector, an array of numbers.
        public var vectorField: String
        /// Whether a record without a vector is an error; when false its vector is empty.
        public var vectorRequired: Bool
        /// Text fields, joined with "\n"; missing, null and empty ones are skipped.
        /// BEIR corpora use `["title", "text"]`.
        public var textFields: [String]
        /// The field holding flat metadata (an object of strings, numbers, booleans or arrays of those).
        public var metadataField: String

        /// Creates options; the defaults suit `{"id": ..., "vector": [...], "text": ..., "metadata": {...}}`.
        public init(idField: String? = nil, idRequired: Bool = true,
                    vectorField: String = "vector", vectorRequired: Bool = true,
                    textFields: [String] = ["text"], metadataField: String = "metadata") {
            self.idField = idField
            self.idRequired = idRequired
            self.vectorField = vectorField
            self.vectorRequired = vectorRequired
            self.textFields = textFields
            self.metadataField = metadataField
        }
    }

    /// The path of the file being read.
    public let path: String
    /// The options in use.
    public let options: Options
    /// The vector dimension, known after the first record with a non-empty vector.
    public private(set) var dimension: Int?

    private let file: BufferedFile
    private var lineNumber = 0
    private var recordIndex = 0

    /// Opens `path` for reading.
    public init(path: String, options: Options = Options()) throws(ImportError) {
        try self.init(path: path, options: options, bufferSize: BufferedFile.defaultBufferSize)
    }

    init(path: String, options: Options, bufferSize: Int) throws(ImportError) {
        self.path = path
        self.options = options
        file = try BufferedFile(path: path, bufferSize: bufferSize)
    }

    /// The number of bytes consumed so far, including line terminators.
    public var bytesRead: UInt64 { file.consumed }

    /// The file size, when it is a regular file.
    public var totalBytes: UInt64? { file.totalBytes }

    /// Returns the next record, or nil at the end of the file. Blank lines are skipped.
    public mutating func next() throws(ImportError) -> ImportRecord? {
        while true {
            let number = lineNumber + 1
            let location = SourceLocation(file: path, line: number, record: recordIndex)
            let line: JSONValue??
            do {
                line = try file.nextLine { bytes throws(ImportError) -> JSONValue? in
                    var bytes = bytes
                    if number == 1, bytes.starts(with: [0xEF, 0xBB, 0xBF]) {
                        bytes = UnsafeRawBufferPointer(rebasing: bytes.dropFirst(3))
                    }
                    if Self.isBlank(bytes) { return nil }
                    do throws(JSONParseError) {
                        return try JSONValue.parse(bytes)
                    } catch {
                        throw ImportError(location: location,
                                          reason: "malformed JSON at column \(error.offset + 1): \(error.reason)")
                    }
                }
            } catch {
                // The bad line was consumed: count it, so that the next call reads and numbers the next line.
                lineNumber = number
                throw error
            }
            guard let line else { return nil }
            lineNumber = number
            guard let value = line else { continue }
            let record = try makeRecord(from: value, location: location)
            recordIndex += 1
            return record
        }
    }

    private static func isBlank(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }
    }

    private mutating func makeRecord(from value: JSONValue, location: SourceLocation) throws(ImportError) -> ImportRecord {
        func failure(_ reason: String) -> ImportError {
            ImportError(location: location, reason: reason)
        }
        guard case .object(let object) = value else {
            throw failure("line is not a JSON object (found \(value.typeName))")
        }
        let id = try readID(object, failure)
        let vector = try readVector(object, failure)
        if !vector.isEmpty {
            if let dimension, dimension != vector.count {
                throw failure("vector has dimension \(vector.count) but earlier records have dimension \(dimension)")
            }
            dimension = vector.count
        }
        var text: String?
        for field in options.textFields {
            switch object[field] {
            case nil, .null?:
                continue
            case .string(let part)?:
                if part.isEmpty { continue }
                text = text.map { $0 + "\n" + part } ?? part
            case let other?:
                throw failure("text field '\(field)' must be a string, found \(other.typeName)")
            }
        }
        let metadata = try readMetadata(object, failure)
        return ImportRecord(id: id, vector: vector, text: text, metadata: metadata, location: location)
    }

    private func readID(_ object: [String: JSONValue],
                        _ failure: (String) -> ImportError) throws(ImportError) -> String? {
        let candidates = options.idField.map { [$0] } ?? ["id", "_id"]
        // `null` counts as absent, as for the other fields.
        guard let field = candidates.first(where: { object[$0] != nil && object[$0] != .null }),
              let value = object[field]
        else {
            guard options.idRequired else { return nil }
            let names = candidates.map { "'\($0)'" }.joined(separator: " or ")
            throw failure("missing id field \(names)")
        }
        switch value {
        case .string(let id):
            return id
        case .number(let number):
            guard number.rounded(.towardZero) == number, number >= -0x1p63, number < 0x1p63 else {
                throw failure("id field '\(field)' must be a string or an integer, found \(value)")
            }
            return String(Int64(number))
        default:
            throw failure("id field '\(field)' must be a string or a number, found \(value.typeName)")
        }
    }

    private func readVector(_ object: [String: JSONValue],
                            _ failure: (String) -> ImportError) throws(ImportError) -> [Float] {
        let field = options.vectorField
        guard let value = object[field], value != .null else {
            if options.vectorRequired {
                throw failure("missing vector field '\(field)'")
            }
            return []
        }
        guard case .array(let elements) = value else {
            throw failure("vector field '\(field)' must be an array of numbers, found \(value.typeName)")
        }
        if elements.isEmpty && options.vectorRequired {
            throw failure("vector field '\(field)' is empty")
        }
        var vector: [Float] = []
        vector.reserveCapacity(elements.count)
        for (index, element) in elements.enumerated() {
            guard case .number(let number) = element else {
                throw failure("\(field)[\(index)] must be a number, found \(element.typeName)")
            }
            let component = Float(number)
            guard component.isFinite else {
                throw failure("\(field)[\(index)] = \(element) is not a finite 32-bit float")
            }
            vector.append(component)
        }
        return vector
    }

    private func readMetadata(_ object: [String: JSONValue],
                              _ failure: (String) -> ImportError) throws(ImportError) -> [String: JSONValue]? {
        let field = options.metadataField
        guard let value = object[field], value != .null else { return nil }
        guard case .object(let metadata) = value else {
            throw failure("metadata field '\(field)' must be an object, found \(value.typeName)")
        }
        for key in metadata.keys.sorted() {
            let path = "\(field).\(key)"
            switch metadata[key] {
            case .string?, .number?, .bool?, nil:
                continue
            case .null?:
                throw failure("\(path): null metadata values are not supported")
            case .object?:
                throw failure("\(path): nested objects are not supported in metadata")
            case .array(let items)?:
                for (index, item) in items.enumerated() {
                    switch item {
                    case .string, .number, .bool:
                        continue
                    case .null:
                        throw failure("\(path)[\(index)]: null metadata values are not supported")
                    case .array:
                        throw failure("\(path)[\(index)]: arrays of arrays are not supported in metadata")
                    case .object:
                        throw failure("\(path)[\(index)]: objects inside arrays are not supported in metadata")
                    }
                }
            }
        }
        return metadata
    }
}
