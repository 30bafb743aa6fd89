import PropertyBased
import Testing
@testable import VecStoreIO

@Suite("FvecsReader")
struct FvecsReaderTests {
    static func open(_ bytes: [UInt8], format: FvecsReader.Format, in dir: IOTempDir) throws -> (FvecsReader, String) {
        let path = try dir.write(format == .fvecs ? "v.fvecs" : "v.bvecs", bytes)
        return (try FvecsReader(path: path, format: format), path)
    }

    @Test("fvecs round trip: every component bit for bit, locations by record, no ids")
    func fvecsRoundTrip() async {
        await propertyCheck(count: 80, input: Gen.int(in: 1...40), Gen.int(in: 0...30), Gen.uint64(in: 0...UInt64.max)) {
            dimension, count, seed in
            var rng = SplitMix(seed: seed)
            let vectors: [[Float]] = (0..<count).map { _ in
                (0..<dimension).map { _ in
                    let value = Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &rng))
                    return value.isFinite ? value : Float.random(in: -1...1, using: &rng)
                }
            }
            let dir = try IOTempDir()
            var (reader, path) = try Self.open(fvecsBytes(vectors), format: .fvecs, in: dir)
            #expect(reader.dimension == nil)
            let records = try readAll(&reader)
            #expect(records.map { bits($0.vector) } == vectors.map(bits))
            #expect(records.allSatisfy { $0.id == nil && $0.text == nil && $0.metadata == nil })
            #expect(records.map(\.location) == (0..<count).map { VecStoreIO.SourceLocation(file: path, record: $0) })
            #expect(reader.dimension == (count > 0 ? dimension : nil))
            #expect(reader.bytesRead == UInt64(count * (4 + 4 * dimension)))
            #expect(reader.totalBytes == reader.bytesRead)
            #expect(try reader.next() == nil)
        }
    }

    @Test("bvecs round trip: bytes become the same Float values")
    func bvecsRoundTrip() async throws {
        await propertyCheck(count: 60, input: Gen.uint8().array(of: 1...50).array(of: 0...20)) { raw in
            // All records must share the first record's dimension.
            let dimension = raw.first?.count ?? 1
            let vectors = raw.map { Array(($0 + [UInt8](repeating: 7, count: dimension)).prefix(dimension)) }
            let dir = try IOTempDir()
            var (reader, _) = try Self.open(bvecsBytes(vectors), format: .bvecs, in: dir)
            let records = try readAll(&reader)
            #expect(records.map(\.vector) == vectors.map { $0.map(Float.init) })
            #expect(reader.bytesRead == UInt64(vectors.count * (4 + dimension)))
        }
        // Every byte value.
        let dir = try IOTempDir()
        var (reader, _) = try Self.open(bvecsBytes([Array(0...255)]), format: .bvecs, in: dir)
        #expect(try reader.next()?.vector == (0...255).map(Float.init))
    }

    @Test("records larger than the read buffer")
    func largeRecords() throws {
        let dir = try IOTempDir()
        let dimension = 40_000  // 160 kB per record, more than the 64 kB buffer
        let vectors = (0..<3).map { row in (0..<dimension).map { Float(row * dimension + $0) } }
        var (reader, _) = try Self.open(fvecsBytes(vectors), format: .fvecs, in: dir)
        #expect(try readAll(&reader).map(\.vector) == vectors)
        let max = [Float](repeating: 1, count: maximumVectorDimension)
        var (maxReader, _) = try Self.open(fvecsBytes([max]), format: .fvecs, in: dir)
        #expect(try maxReader.next()?.vector.count == 65536)
    }

    @Test("a file ending inside a dimension header names the record and byte offset")
    func truncatedHeader() throws {
        let dir = try IOTempDir()
        for extra in 1...3 {
            let bytes = fvecsBytes([[1, 2], [3, 4]]) + Array(leBytes(Int32(2)).prefix(extra))
            var (reader, path) = try Self.open(bytes, format: .fvecs, in: dir)
            #expect(try reader.next()?.vector == [1, 2])
            #expect(try reader.next()?.vector == [3, 4])
            let error = try #require(nextError(&reader))
            #expect(error.location == VecStoreIO.SourceLocation(file: path, record: 2))
            #expect(error.description
                == "\(path) record 2: truncated record at byte offset 24: the file ends inside the 4-byte dimension header")
        }
    }

    @Test("a file ending inside the vector data names the record and the byte counts")
    func truncatedPayload() throws {
        let dir = try IOTempDir()
        let full = fvecsBytes([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
        var (reader, path) = try Self.open(Array(full.dropLast(3)), format: .fvecs, in: dir)
        let error = try #require(firstError(&reader))
        #expect(error.location?.record == 2)
        #expect(error.location?.line == nil)
        #expect(error.description
            == "\(path) record 2: truncated record at byte offset 32: expected 12 bytes of vector data after the header, found 9")

        // A header with no data at all.
        var (headerOnly, _) = try Self.open(leBytes(Int32(5)), format: .fvecs, in: dir)
        #expect(nextError(&headerOnly)?.reason
            == "truncated record at byte offset 0: expected 20 bytes of vector data after the header, found 0")

        let bvecs = bvecsBytes([[1, 2, 3, 4], [5, 6, 7, 8]])
        var (bReader, bPath) = try Self.open(Array(bvecs.dropLast(1)), format: .bvecs, in: dir)
        #expect(try bReader.next()?.vector == [1, 2, 3, 4])
        #expect(nextError(&bReader)?.description
            == "\(bPath) record 1: truncated record at byte offset 8: expected 4 bytes of vector data after the header, found 3")
    }

    @Test("a record with a different dimension is rejected")
    func inconsistentDimension() throws {
        let dir = try IOTempDir()
        var (reader, path) = try Self.open(fvecsBytes([[1, 2, 3], [4, 5, 6], [7, 8, 9, 10]]), format: .fvecs, in: dir)
        let error = try #require(firstError(&reader))
        #expect(error.description == "\(path) record 2: dimension changes from 3 to 4 at byte offset 32")
        #expect(reader.dimension == 3)

        var (bReader, bPath) = try Self.open(bvecsBytes([[1, 2], [3]]), format: .bvecs, in: dir)
        #expect(firstError(&bReader)?.description == "\(bPath) record 1: dimension changes from 2 to 1 at byte offset 6")
    }

    @Test(arguments: [0, -1, -4, Int32.min, 65537, Int32.max])
    func invalidDimension(dimension: Int32) throws {
        let dir = try IOTempDir()
        for format in [FvecsReader.Format.fvecs, .bvecs] {
            // First record.
            var (reader, path) = try Self.open(leBytes(dimension) + [UInt8](repeating: 0, count: 64), format: format, in: dir)
            #expect(nextError(&reader)?.description
                == "\(path) record 0: invalid vector dimension \(dimension) at byte offset 0 (must be 1...65536)")
            // Later record.
            let first: [UInt8] = format == .fvecs ? fvecsBytes([[1]]) : bvecsBytes([[1]])
            var (later, laterPath) = try Self.open(first + leBytes(dimension) + [0, 0, 0, 0], format: format, in: dir)
            #expect(try later.next()?.vector == [1])
            #expect(nextError(&later)?.description
                == "\(laterPath) record 1: invalid vector dimension \(dimension) at byte offset \(first.count) (must be 1...65536)")
        }
    }

    @Test("non-finite fvecs components are rejected with their index")
    func nonFinite() throws {
        let dir = try IOTempDir()
        for (value, text) in [(Float.nan, "nan"), (.infinity, "inf"), (-.infinity, "-inf")] {
            var (reader, path) = try Self.open(fvecsBytes([[1, 2], [3, value]]), format: .fvecs, in: dir)
            #expect(try reader.next()?.vector == [1, 2])
            #expect(nextError(&reader)?.description == "\(path) record 1: vector component 1 is not a finite number (\(text))")
        }
    }

    @Test("an empty file has no records; a missing file fails to open")
    func emptyAndMissing() throws {
        let dir = try IOTempDir()
        var (reader, _) = try Self.open([], format: .fvecs, in: dir)
        #expect(try reader.next() == nil)
        #expect(reader.dimension == nil)
        #expect(reader.totalBytes == 0)
        let missing = dir.path("missing.fvecs")
        let error = try #require(importError { () throws(ImportError) in _ = try FvecsReader(path: missing) })
        #expect(error.description == "cannot open '\(missing)': No such file or directory")
    }
}
