/// Reads `.fvecs` and `.bvecs` files (the TEXMEX/SIFT formats).
///
/// Each record is a little-endian int32 dimension followed by that many little-endian float32
/// (`.fvecs`) or uint8 (`.bvecs`) components. All records must have the same dimension.
/// Records have no ids; pair the reader with an `IdAttachingReader` or number them.
public struct FvecsReader: RecordReader {
    /// The component type of the file.
    public enum Format: Sendable, Hashable {
        /// float32 components.
        case fvecs
        /// uint8 components (converted to Float).
        case bvecs
    }

    /// The path of the file being read.
    public let path: String
    /// The component type.
    public let format: Format
    /// The vector dimension, known after the first record.
    public private(set) var dimension: Int?

    private let file: BufferedFile
    private var recordIndex = 0
    private var byteScratch: [UInt8] = []

    /// Opens `path` for reading as `format`.
    public init(path: String, format: Format = .fvecs) throws(ImportError) {
        self.path = path
        self.format = format
        file = try BufferedFile(path: path)
    }

    /// The number of bytes consumed so far.
    public var bytesRead: UInt64 { file.consumed }

    /// The file size, when it is a regular file.
    public var totalBytes: UInt64? { file.totalBytes }

    /// Returns the next record, or nil at the end of the file.
    public mutating func next() throws(ImportError) -> ImportRecord? {
        let location = SourceLocation(file: path, record: recordIndex)
        let offset = file.consumed
        var rawDimension: UInt32 = 0
        let headerCount = try withUnsafeMutableBytes(of: &rawDimension) { header in
            Result { () throws(ImportError) in try file.readBytes(into: header) }
        }.get()
        if headerCount == 0 { return nil }
        guard headerCount == 4 else {
            throw ImportError(location: location,
                              reason: "truncated record at byte offset \(offset): the file ends inside the 4-byte dimension header")
        }
        let recordDimension = Int(Int32(bitPattern: UInt32(littleEndian: rawDimension)))
        try checkDimension(recordDimension, location: location, context: " at byte offset \(offset)")
        if let dimension, dimension != recordDimension {
            throw ImportError(location: location,
                              reason: "dimension changes from \(dimension) to \(recordDimension) at byte offset \(offset)")
        }
        dimension = recordDimension

        let vector: [Float]
        let payloadCount: Int
        switch format {
        case .fvecs:
            var floats = [Float](repeating: 0, count: recordDimension)
            payloadCount = try floats.withUnsafeMutableBytes { payload in
                Result { () throws(ImportError) in try file.readBytes(into: payload) }
            }.get()
            #if _endian(big)
            for index in floats.indices {
                floats[index] = Float(bitPattern: UInt32(littleEndian: floats[index].bitPattern))
            }
            #endif
            vector = floats
        case .bvecs:
            if byteScratch.count != recordDimension {
                byteScratch = [UInt8](repeating: 0, count: recordDimension)
            }
            payloadCount = try byteScratch.withUnsafeMutableBytes { payload in
                Result { () throws(ImportError) in try file.readBytes(into: payload) }
            }.get()
            vector = byteScratch.map { Float($0) }
        }
        let expected = recordDimension * (format == .fvecs ? 4 : 1)
        guard payloadCount == expected else {
            throw ImportError(location: location,
                              reason: "truncated record at byte offset \(offset): expected \(expected) bytes of vector data after the header, found \(payloadCount)")
        }
        try checkFinite(vector, location: location)
        recordIndex += 1
        return ImportRecord(id: nil, vector: vector, location: location)
    }
}
