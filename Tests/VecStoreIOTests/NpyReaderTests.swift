import PropertyBased
import Testing
@testable import VecStoreIO

@Suite("NpyReader")
struct NpyReaderTests {
    static func write(_ bytes: [UInt8], in dir: IOTempDir) throws -> String {
        try dir.write("a.npy", bytes)
    }

    /// Opens a file expected to be rejected by the initializer and returns the error.
    static func openError(_ bytes: [UInt8], in dir: IOTempDir,
                          sourceLocation: Testing.SourceLocation = #_sourceLocation) throws -> (ImportError, String) {
        let path = try write(bytes, in: dir)
        let failure = importError({ () throws(ImportError) in _ = try NpyReader(path: path) }, sourceLocation: sourceLocation)
        let error = try #require(failure, sourceLocation: sourceLocation)
        return (error, path)
    }

    static func f4(_ rows: [[Float]]) -> [UInt8] { rows.flatMap { $0.flatMap(leBytes) } }

    @Test("'<f4' 2-D arrays round trip for every header version, padded or not")
    func float32RoundTrip() async {
        await propertyCheck(count: 80, input: Gen.int(in: 0...20), Gen.int(in: 1...20), Gen.element(of: [UInt8(1), 2, 3]),
                            Gen.bool, Gen.uint64(in: 0...UInt64.max)) { rows, columns, major, pad, seed in
            var rng = SplitMix(seed: seed)
            let matrix = (0..<rows).map { _ in (0..<columns).map { _ in Float.random(in: -1e6...1e6, using: &rng) } }
            let bytes = npyBytes(header: npyHeader(descr: "<f4", shape: "(\(rows), \(columns))"), payload: Self.f4(matrix),
                                 major: major!, pad: pad)
            let dir = try IOTempDir()
            let path = try Self.write(bytes, in: dir)
            var reader = try NpyReader(path: path)
            #expect(reader.dtype == .float32)
            #expect(reader.rowCount == rows)
            #expect(reader.dimension == columns)
            let headerSize = UInt64(bytes.count - rows * columns * 4)
            #expect(reader.bytesRead == headerSize)
            if pad { #expect(headerSize % 64 == 0) }
            let records = try readAll(&reader)
            #expect(records.map { bits($0.vector) } == matrix.map(bits))
            #expect(records.map(\.location) == (0..<rows).map { VecStoreIO.SourceLocation(file: path, record: $0) })
            #expect(records.allSatisfy { $0.id == nil })
            #expect(reader.bytesRead == UInt64(bytes.count))
            #expect(reader.totalBytes == UInt64(bytes.count))
        }
    }

    @Test("a 1-D array is one vector")
    func oneDimensional() throws {
        let dir = try IOTempDir()
        for shape in ["(4,)", "(4, )", "( 4 , )"] {
            let path = try Self.write(npyBytes(header: npyHeader(descr: "<f4", shape: shape), payload: Self.f4([[1, 2, 3, 4]])),
                                      in: dir)
            var reader = try NpyReader(path: path)
            #expect(reader.rowCount == 1)
            #expect(reader.dimension == 4)
            #expect(try readAll(&reader).map(\.vector) == [[1, 2, 3, 4]])
        }
    }

    @Test("zero rows: no records")
    func zeroRows() throws {
        let dir = try IOTempDir()
        let path = try Self.write(npyBytes(header: npyHeader(descr: "<f4", shape: "(0, 3)"), payload: []), in: dir)
        var reader = try NpyReader(path: path)
        #expect(reader.rowCount == 0)
        #expect(reader.dimension == 3)
        #expect(try reader.next() == nil)
    }

    @Test("'<f2' values are converted exactly")
    func float16() throws {
        let dir = try IOTempDir()
        let halves: [UInt16] = [0x3C00, 0xC000, 0x3800, 0x7BFF, 0x0001, 0x03FF, 0x0400, 0x8000, 0x0000, 0x3555, 0xFBFF]
        let expected: [Float] = [1, -2, 0.5, 65504, 0x1p-24, 1023 * 0x1p-24, 0x1p-14, -0.0, 0, 0.333251953125, -65504]
        let path = try Self.write(npyBytes(header: npyHeader(descr: "<f2", shape: "(1, \(halves.count))"),
                                           payload: halves.flatMap(leBytes)), in: dir)
        var reader = try NpyReader(path: path)
        #expect(reader.dtype == .float16)
        #expect(bits(try #require(try reader.next()).vector) == bits(expected))
    }

    #if !(os(macOS) && arch(x86_64))
    @Test("floatFromHalf agrees with Float16 for all 65536 bit patterns")
    func halfConversionExhaustive() {
        var mismatches: [UInt16] = []
        for pattern in 0...UInt16.max {
            let reference = Float(Float16(bitPattern: pattern))
            let value = NpyReader.floatFromHalf(pattern)
            let same = reference.isNaN ? value.isNaN && value.sign == reference.sign : value.bitPattern == reference.bitPattern
            if !same { mismatches.append(pattern) }
        }
        #expect(mismatches.isEmpty, "first mismatches: \(mismatches.prefix(8))")
    }
    #endif

    @Test("'<f8' values are rounded to Float; values beyond Float range are rejected")
    func float64() throws {
        let dir = try IOTempDir()
        let values: [Double] = [0.1, -1.5, 1e-50, 3.4028234663852886e38, 16777217, -0.0]
        let path = try Self.write(npyBytes(header: npyHeader(descr: "<f8", shape: "(2, 3)"), payload: values.flatMap(leBytes)),
                                  in: dir)
        var reader = try NpyReader(path: path)
        #expect(reader.dtype == .float64)
        let records = try readAll(&reader)
        #expect(records.map { bits($0.vector) } == [bits([Float(0.1), -1.5, 0]), bits([.greatestFiniteMagnitude, 16777216, -0.0])])

        let big = try Self.write(npyBytes(header: npyHeader(descr: "<f8", shape: "(2, 2)"),
                                          payload: ([1, 2, 3, 1e300] as [Double]).flatMap(leBytes)), in: dir)
        var bigReader = try NpyReader(path: big)
        #expect(try bigReader.next()?.vector == [1, 2])
        #expect(nextError(&bigReader)?.description == "\(big) record 1: vector component 1 is not a finite number (inf)")
    }

    @Test("non-finite values in the data are rejected with the row")
    func nonFinite() throws {
        let dir = try IOTempDir()
        let path = try Self.write(npyBytes(header: npyHeader(descr: "<f2", shape: "(3, 2)"),
                                           payload: [0x3C00, 0x3C00, 0x3C00, 0x3C00, 0x7E00, 0x3C00].flatMap { leBytes(UInt16($0)) }),
                                  in: dir)
        var reader = try NpyReader(path: path)
        #expect(try reader.next()?.vector == [1, 1])
        #expect(try reader.next()?.vector == [1, 1])
        #expect(nextError(&reader)?.description == "\(path) record 2: vector component 0 is not a finite number (nan)")
        let infPath = try dir.write("inf.npy", npyBytes(header: npyHeader(descr: "<f4", shape: "(1, 2)"),
                                                       payload: Self.f4([[1, -.infinity]])))
        var infReader = try NpyReader(path: infPath)
        #expect(nextError(&infReader)?.reason == "vector component 1 is not a finite number (-inf)")
    }

    @Test("header variants numpy and Python 2 wrote are accepted")
    func headerVariants() throws {
        let dir = try IOTempDir()
        let headers = [
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2)}",
            "{'shape': (2, 2), 'fortran_order': False, 'descr': '<f4'}",
            "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2L, 2L), }",
            "{ 'descr' : '<f4' ,\n 'fortran_order' : False , 'shape' : ( 2 , 2 , ) , }",
        ]
        for header in headers {
            let path = try Self.write(npyBytes(header: header, payload: Self.f4([[1, 2], [3, 4]])), in: dir)
            var reader = try NpyReader(path: path)
            #expect(try readAll(&reader).map(\.vector) == [[1, 2], [3, 4]], "\(header)")
        }
    }

    @Test("trailing bytes after the declared rows are not read")
    func trailingBytes() throws {
        let dir = try IOTempDir()
        let path = try Self.write(npyBytes(header: npyHeader(descr: "<f4", shape: "(1, 2)"),
                                           payload: Self.f4([[1, 2], [3, 4]])), in: dir)
        var reader = try NpyReader(path: path)
        #expect(try readAll(&reader).map(\.vector) == [[1, 2]])
    }

    @Test("Fortran-ordered arrays are rejected")
    func fortranOrder() throws {
        let dir = try IOTempDir()
        let (error, path) = try Self.openError(npyBytes(header: npyHeader(descr: "<f4", fortran: true, shape: "(2, 2)"),
                                                        payload: Self.f4([[1, 2], [3, 4]])), in: dir)
        #expect(error.description
            == "\(path) record 0: Fortran-ordered arrays are not supported (fortran_order must be False)")
    }

    @Test(arguments: [">f4", "<i4", "|u1", "<f16", "<c8", "float32", "f4", "|b1", "<U10"])
    func unsupportedDType(descr: String) throws {
        let dir = try IOTempDir()
        let (error, _) = try Self.openError(npyBytes(header: npyHeader(descr: descr, shape: "(1, 4)"),
                                                     payload: [UInt8](repeating: 0, count: 64)), in: dir)
        #expect(error.reason == "unsupported dtype '\(descr)' (supported: '<f4', '<f2', '<f8')")
        #expect(error.location?.record == 0)
    }

    @Test("invalid headers are rejected with a reason")
    func invalidHeaders() throws {
        let dir = try IOTempDir()
        let payload = [UInt8](repeating: 0, count: 64)
        let cases: [(String, String)] = [
            ("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}",
             "unsupported dtype (structured arrays are not supported)"),
            ("{'fortran_order': False, 'shape': (1, 4)}", "the .npy header has no 'descr'"),
            ("{'descr': '<f4', 'shape': (1, 4)}", "the .npy header has no boolean 'fortran_order'"),
            ("{'descr': '<f4', 'fortran_order': 0, 'shape': (1, 4)}", "the .npy header has no boolean 'fortran_order'"),
            ("{'descr': '<f4', 'fortran_order': False}", "the .npy header has no tuple 'shape'"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': [1, 4]}", "the .npy header has no tuple 'shape'"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, -4)}", "invalid shape entry in .npy header"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 'x')}", "invalid shape entry in .npy header"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': ()}", "expected a 1-D or 2-D array, found shape ()"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 1)}",
             "expected a 1-D or 2-D array, found shape (2, 2, 1)"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 0)}", "invalid vector dimension 0 (must be 1...65536)"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (0,)}", "invalid vector dimension 0 (must be 1...65536)"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 65537)}",
             "invalid vector dimension 65537 (must be 1...65536)"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4)", "malformed .npy header: expected ',' or '}'"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4)} x", "malformed .npy header: unexpected text after the dictionary"),
            ("{'descr': '<f4, 'fortran_order': False, 'shape': (1, 4)}", "malformed .npy header: expected ',' or '}'"),
            ("{'descr': '<f4', 'fortran_order': Nope, 'shape': (1, 4)}", "malformed .npy header: unexpected 'Nope'"),
            ("{1: 2}", "malformed .npy header: dictionary keys must be strings"),
            ("('descr', '<f4')", "malformed .npy header: not a dictionary"),
            ("", "malformed .npy header: unexpected end"),
            (String(repeating: "[", count: 20) + String(repeating: "]", count: 20), "malformed .npy header: nested too deeply"),
        ]
        for (header, reason) in cases {
            let (error, path) = try Self.openError(npyBytes(header: header, payload: payload), in: dir)
            #expect(error.reason == reason, "\(header)")
            #expect(error.description == "\(path) record 0: \(error.reason)")
        }
    }

    @Test("bad magic, unknown versions and truncated headers")
    func badPreamble() throws {
        let dir = try IOTempDir()
        let good = npyBytes(header: npyHeader(descr: "<f4", shape: "(1, 1)"), payload: Self.f4([[1]]))
        #expect(try Self.openError([], in: dir).0.reason == "not a .npy file (bad magic)")
        #expect(try Self.openError(Array(good.prefix(7)), in: dir).0.reason == "not a .npy file (bad magic)")
        #expect(try Self.openError(Array("{\"id\":1}\n".utf8), in: dir).0.reason == "not a .npy file (bad magic)")
        var otherVersion = good
        otherVersion[6] = 4
        otherVersion[7] = 1
        #expect(try Self.openError(otherVersion, in: dir).0.reason == "unsupported .npy format version 4.1")
        #expect(try Self.openError(Array(good.prefix(9)), in: dir).0.reason == "truncated .npy header")
        #expect(try Self.openError(Array(good.prefix(40)), in: dir).0.reason == "truncated or oversized .npy header (118 bytes)")
        // A version-2 file whose 4-byte header length is absurd.
        let huge: [UInt8] = [0x93] + Array("NUMPY".utf8) + [2, 0] + leBytes(UInt32(1 << 30))
        #expect(try Self.openError(huge, in: dir).0.reason == "truncated or oversized .npy header (1073741824 bytes)")
    }

    @Test("data shorter than the header declares is rejected when opening, naming the first incomplete row")
    func truncatedData() throws {
        let dir = try IOTempDir()
        let header = npyHeader(descr: "<f4", shape: "(3, 4)")
        let payload = Self.f4([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]])
        for (cut, row, available) in [(8, 2, 40), (16, 2, 32), (47, 0, 1), (48, 0, 0)] {
            let (error, path) = try Self.openError(npyBytes(header: header, payload: Array(payload.dropLast(cut))), in: dir)
            #expect(error.location == VecStoreIO.SourceLocation(file: path, record: row))
            #expect(error.reason
                == "truncated data: the header declares 3 rows of 16 bytes but the file holds only \(available) bytes of data")
        }
        let (f2Error, _) = try Self.openError(npyBytes(header: npyHeader(descr: "<f2", shape: "(2,3)"), payload: [0, 0, 0]),
                                              in: dir)
        #expect(f2Error.reason == "truncated data: the header declares 2 rows of 6 bytes but the file holds only 3 bytes of data")
    }

    @Test("dtype raw values and sizes")
    func dtypes() {
        #expect(NpyReader.DType.allCases.map(\.rawValue) == ["<f2", "<f4", "<f8"])
        #expect(NpyReader.DType.allCases.map(\.byteCount) == [2, 4, 8])
    }
}
