/// Reads a sidecar text file with one id per line, used to name the vectors of a binary file.
///
/// Lines may end with "\n" or "\r\n"; the final newline is optional. Blank lines are errors.
/// The file is streamed.
public struct IdListReader {
    /// The path of the file being read.
    public let path: String
    /// The number of ids returned so far (= the 1-based line number of the last one).
    public private(set) var count = 0

    private let file: BufferedFile

    /// Opens `path` for reading.
    public init(path: String) throws(ImportError) {
        try self.init(path: path, bufferSize: BufferedFile.defaultBufferSize)
    }

    init(path: String, bufferSize: Int) throws(ImportError) {
        self.path = path
        file = try BufferedFile(path: path, bufferSize: bufferSize)
    }

    /// The number of bytes consumed so far.
    public var bytesRead: UInt64 { file.consumed }

    /// The file size, when it is a regular file.
    public var totalBytes: UInt64? { file.totalBytes }

    /// Returns the next id, or nil at the end of the file.
    public mutating func next() throws(ImportError) -> String? {
        let location = SourceLocation(file: path, line: count + 1, record: count)
        let id = try file.nextLine { line throws(ImportError) -> String in
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) {
                throw ImportError(location: location, reason: "blank line in id list")
            }
            guard let id = String(validating: line, as: UTF8.self) else {
                throw ImportError(location: location, reason: "id is not valid UTF-8")
            }
            return id
        }
        if id != nil { count += 1 }
        return id
    }
}

/// Wraps a reader of id-less records (e.g. `FvecsReader`, `NpyReader`) and assigns each record
/// the next id from an `IdListReader`.
///
/// It is an error when the id list ends before the vectors do, or has ids left over after the
/// last vector.
public struct IdAttachingReader<Base: RecordReader>: RecordReader {
    /// The wrapped reader.
    public private(set) var base: Base
    /// The id source.
    public private(set) var ids: IdListReader
    private var finished = false

    /// Creates a reader that names the records of `base` with the ids from `ids`, in order.
    public init(base: Base, ids: IdListReader) {
        self.base = base
        self.ids = ids
    }

    /// The bytes consumed from the vector file.
    public var bytesRead: UInt64 { base.bytesRead }

    /// The size of the vector file, when known.
    public var totalBytes: UInt64? { base.totalBytes }

    /// The dimension reported by the wrapped reader.
    public var dimension: Int? { base.dimension }

    /// Returns the next record with its id set, or nil after the last one.
    public mutating func next() throws(ImportError) -> ImportRecord? {
        if finished { return nil }
        guard var record = try base.next() else {
            finished = true
            if let extra = try ids.next() {
                throw ImportError(location: SourceLocation(file: ids.path, line: ids.count, record: ids.count - 1),
                                  reason: "the id list has more ids than there are vectors (\(ids.count - 1) vectors, next id '\(extra)')")
            }
            return nil
        }
        guard let id = try ids.next() else {
            throw ImportError(location: record.location,
                              reason: "the id list '\(ids.path)' ran out after \(ids.count) ids")
        }
        record.id = id
        return record
    }
}
