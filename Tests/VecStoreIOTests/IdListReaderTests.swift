import PropertyBased
import Testing
@testable import VecStoreIO

@Suite("IdListReader")
struct IdListReaderTests {
    static func readIDs(_ reader: inout IdListReader) throws(ImportError) -> [String] {
        var ids: [String] = []
        while let id = try reader.next() { ids.append(id) }
        return ids
    }

    static func idError(_ reader: inout IdListReader) -> ImportError? {
        do {
            while try reader.next() != nil {}
            Issue.record("expected an ImportError")
            return nil
        } catch {
            return error
        }
    }

    @Test("ids come back in order; LF, CRLF and a missing final newline are accepted")
    func basic() throws {
        let dir = try IOTempDir()
        let text = "a\nb\r\n  spaced id \nünï😀\r\n42\nlast"
        let path = try dir.write("ids.txt", text)
        var reader = try IdListReader(path: path)
        #expect(reader.totalBytes == UInt64(text.utf8.count))
        #expect(try Self.readIDs(&reader) == ["a", "b", "  spaced id ", "ünï😀", "42", "last"])
        #expect(reader.count == 6)
        #expect(reader.bytesRead == UInt64(text.utf8.count))
        #expect(try reader.next() == nil)
        #expect(reader.count == 6)
    }

    @Test("count and bytesRead advance per id")
    func progress() throws {
        let dir = try IOTempDir()
        let path = try dir.write("ids.txt", "one\r\ntwo\nthree\n")
        var reader = try IdListReader(path: path)
        #expect(reader.count == 0 && reader.bytesRead == 0)
        #expect(try reader.next() == "one")
        #expect(reader.count == 1 && reader.bytesRead == 5)
        #expect(try reader.next() == "two")
        #expect(reader.count == 2 && reader.bytesRead == 9)
        #expect(try reader.next() == "three")
        #expect(reader.count == 3 && reader.bytesRead == 15)
        #expect(try reader.next() == nil)
    }

    @Test(arguments: [
        ("a\n\nb\n", 2), ("a\nb\n\n", 3), ("\n", 1), ("a\r\n\r\nb", 2), ("a\n  \t\nb\n", 2), ("a\n \r\n", 2),
    ] as [(String, Int)])
    func blankLines(text: String, line: Int) throws {
        let dir = try IOTempDir()
        let path = try dir.write("ids.txt", text)
        var reader = try IdListReader(path: path)
        let error = try #require(Self.idError(&reader))
        #expect(error.location == VecStoreIO.SourceLocation(file: path, line: line, record: line - 1))
        #expect(error.description == "\(path):\(line): blank line in id list")
    }

    @Test("invalid UTF-8 is rejected")
    func invalidUTF8() throws {
        let dir = try IOTempDir()
        let path = try dir.write("ids.txt", Array("ok\n".utf8) + [0x61, 0xFF, 0x62, 0x0A])
        var reader = try IdListReader(path: path)
        #expect(Self.idError(&reader)?.description == "\(path):2: id is not valid UTF-8")
    }

    @Test("an empty file has no ids")
    func empty() throws {
        let dir = try IOTempDir()
        var reader = try IdListReader(path: try dir.write("ids.txt", ""))
        #expect(try reader.next() == nil)
        #expect(reader.count == 0)
    }

    @Test("random id lists read back identically with small buffers")
    func randomLists() async {
        let idGen = Gen.character(in: " "..."\u{2FF}").string(of: 1...60).filter { !$0.allSatisfy { $0 == " " } }
        await propertyCheck(count: 80, input: idGen.array(of: 0...40), Gen.int(in: 16...48), Gen.uint64(in: 0...UInt64.max)) {
            ids, bufferSize, seed in
            var rng = SplitMix(seed: seed)
            var text = ids.map { $0 + (Bool.random(using: &rng) ? "\n" : "\r\n") }.joined()
            if !text.isEmpty, Bool.random(using: &rng) { text = String(text.dropLast()) }  // drops "\n" or the whole "\r\n"
            let dir = try IOTempDir()
            var reader = try IdListReader(path: try dir.write("ids.txt", text), bufferSize: bufferSize)
            #expect(try Self.readIDs(&reader) == ids)
            #expect(reader.count == ids.count)
            #expect(reader.bytesRead == UInt64(text.utf8.count))
        }
    }
}

@Suite("IdAttachingReader")
struct IdAttachingReaderTests {
    static func make(vectors: [[Float]], ids: String, in dir: IOTempDir) throws
        -> (reader: IdAttachingReader<FvecsReader>, vectorsPath: String, idsPath: String)
    {
        let vectorsPath = try dir.write("v.fvecs", fvecsBytes(vectors))
        let idsPath = try dir.write("ids.txt", ids)
        let reader = IdAttachingReader(base: try FvecsReader(path: vectorsPath), ids: try IdListReader(path: idsPath))
        return (reader, vectorsPath, idsPath)
    }

    @Test("ids are attached in order; progress and dimension come from the vector file")
    func attach() throws {
        let dir = try IOTempDir()
        let vectors: [[Float]] = [[1, 2], [3, 4], [5, 6]]
        var (reader, vectorsPath, _) = try Self.make(vectors: vectors, ids: "a\r\nb\nc\n", in: dir)
        #expect(reader.totalBytes == 36)
        #expect(reader.dimension == nil)
        let records = try readAll(&reader)
        #expect(records.map(\.id) == ["a", "b", "c"])
        #expect(records.map(\.vector) == vectors)
        #expect(records.map(\.location) == (0..<3).map { VecStoreIO.SourceLocation(file: vectorsPath, record: $0) })
        #expect(reader.dimension == 2)
        #expect(reader.bytesRead == 36)
        #expect(reader.ids.count == 3)
        #expect(try reader.next() == nil)
    }

    @Test("too few ids: the record that has no id is named")
    func tooFewIDs() throws {
        let dir = try IOTempDir()
        var (reader, vectorsPath, idsPath) = try Self.make(vectors: [[1], [2], [3]], ids: "a\nb", in: dir)
        #expect(try reader.next()?.id == "a")
        #expect(try reader.next()?.id == "b")
        let error = try #require(nextError(&reader))
        #expect(error.location == VecStoreIO.SourceLocation(file: vectorsPath, record: 2))
        #expect(error.description == "\(vectorsPath) record 2: the id list '\(idsPath)' ran out after 2 ids")
    }

    @Test("too many ids: the first extra id is named, then the reader ends")
    func tooManyIDs() throws {
        let dir = try IOTempDir()
        var (reader, _, idsPath) = try Self.make(vectors: [[1], [2]], ids: "a\nb\nextra\nmore\n", in: dir)
        #expect(try reader.next()?.id == "a")
        #expect(try reader.next()?.id == "b")
        let error = try #require(nextError(&reader))
        #expect(error.location == VecStoreIO.SourceLocation(file: idsPath, line: 3, record: 2))
        #expect(error.description == "\(idsPath):3: the id list has more ids than there are vectors (2 vectors, next id 'extra')")
        #expect(try reader.next() == nil)
    }

    @Test("no vectors and no ids is fine; no vectors but an id is not")
    func emptyVectors() throws {
        let dir = try IOTempDir()
        var (empty, _, _) = try Self.make(vectors: [], ids: "", in: dir)
        #expect(try empty.next() == nil)
        var (extra, _, idsPath) = try Self.make(vectors: [], ids: "x\n", in: dir)
        #expect(nextError(&extra)?.description
            == "\(idsPath):1: the id list has more ids than there are vectors (0 vectors, next id 'x')")
    }

    @Test("a blank line in the id list is reported at its line")
    func blankID() throws {
        let dir = try IOTempDir()
        var (reader, _, idsPath) = try Self.make(vectors: [[1], [2], [3]], ids: "a\n\nc\n", in: dir)
        #expect(try reader.next()?.id == "a")
        #expect(nextError(&reader)?.description == "\(idsPath):2: blank line in id list")
    }

    @Test("errors of the wrapped reader pass through")
    func baseErrors() throws {
        let dir = try IOTempDir()
        let vectorsPath = try dir.write("v.fvecs", fvecsBytes([[1, 2], [3]]))
        let idsPath = try dir.write("ids.txt", "a\nb\n")
        var reader = IdAttachingReader(base: try FvecsReader(path: vectorsPath), ids: try IdListReader(path: idsPath))
        #expect(try reader.next()?.id == "a")
        #expect(nextError(&reader)?.description == "\(vectorsPath) record 1: dimension changes from 2 to 1 at byte offset 12")
    }

    @Test("works over an NpyReader too")
    func overNpy() throws {
        let dir = try IOTempDir()
        let npy = try dir.write("v.npy", npyBytes(header: npyHeader(descr: "<f4", shape: "(2, 2)"),
                                                  payload: [1, 2, 3, 4].flatMap { leBytes(Float($0)) }))
        let ids = try dir.write("ids.txt", "first\nsecond\n")
        var reader = IdAttachingReader(base: try NpyReader(path: npy), ids: try IdListReader(path: ids))
        #expect(reader.dimension == 2)
        let records = try readAll(&reader)
        #expect(records.map(\.id) == ["first", "second"])
        #expect(records.map(\.vector) == [[1, 2], [3, 4]])
    }
}
