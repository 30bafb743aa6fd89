/// Reads a plain text file as one text per line (for `vecstore embed`): each line, without its "\n" or
/// "\r\n", becomes a record with that text, no id and no vector. Empty lines are empty texts (so row i
/// of the output is line i + 1); a UTF-8 byte order mark on the first line is dropped. A line that is
/// not valid UTF-8 is an error naming the file, the line and the byte offset.
public struct TextLineReader: RecordReader {
    /// The path of the file being read.
    public let path: String
    private let file: BufferedFile
    private var lineNumber = 0

    /// Opens `path` for reading.
    public init(path: String) throws(ImportError) {
        self.path = path
        file = try BufferedFile(path: path)
    }

    /// Bytes consumed so far.
    public var bytesRead: UInt64 { file.consumed }
    /// The file size, when it is a regular file.
    public var totalBytes: UInt64? { file.totalBytes }
    /// Always nil: text lines carry no vectors.
    public var dimension: Int? { nil }

    /// Returns the next line as a record, or nil at the end of the file.
    public mutating func next() throws(ImportError) -> ImportRecord? {
        let number = lineNumber + 1
        let location = SourceLocation(file: path, line: number, record: lineNumber)
        lineNumber = number
        let text = try file.nextLine { bytes throws(ImportError) -> String in
            var bytes = bytes
            if number == 1, bytes.starts(with: [0xEF, 0xBB, 0xBF]) {
                bytes = UnsafeRawBufferPointer(rebasing: bytes.dropFirst(3))
            }
            guard let text = String(validating: bytes, as: UTF8.self) else {
                throw ImportError(location: location, reason: "invalid UTF-8 at byte \(Self.firstInvalidByte(bytes) + 1) of the line")
            }
            return text
        }
        guard let text else { return nil }
        return ImportRecord(id: nil, vector: [], text: text, metadata: nil, location: location)
    }

    /// Offset of the first byte that does not start or continue a valid UTF-8 sequence.
    static func firstInvalidByte(_ bytes: UnsafeRawBufferPointer) -> Int {
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            let length = b < 0x80 ? 1 : b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 0
            if length == 0 || i + length > bytes.count { return i }
            let slice = UnsafeRawBufferPointer(rebasing: bytes[i..<(i + length)])
            if String(validating: slice, as: UTF8.self) == nil { return i }
            i += length
        }
        return i
    }
}
