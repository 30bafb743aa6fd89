import PropertyBased
import Testing
@testable import VecStoreIO

@Suite("JSONLReader")
struct JSONLReaderTests {
    /// Writes `text` to a fresh file and reads all of it.
    static func read(_ text: String, options: JSONLReader.Options = .init(), bufferSize: Int? = nil,
                     in dir: IOTempDir) throws -> (records: [ImportRecord], reader: JSONLReader) {
        let path = try dir.write("in.jsonl", text)
        var reader = try bufferSize.map { try JSONLReader(path: path, options: options, bufferSize: $0) }
            ?? JSONLReader(path: path, options: options)
        let records = try readAll(&reader)
        return (records, reader)
    }

    /// Reads `text` and returns the first error (and the records read before it).
    static func failure(_ text: String, options: JSONLReader.Options = .init(), in dir: IOTempDir,
                        sourceLocation: Testing.SourceLocation = #_sourceLocation) throws -> (error: ImportError, path: String) {
        let path = try dir.write("bad.jsonl", text)
        var reader = try JSONLReader(path: path, options: options)
        let error = try #require(firstError(&reader, sourceLocation: sourceLocation),
                                 sourceLocation: sourceLocation)
        return (error, path)
    }

    // MARK: Extraction

    @Test("id, vector, text and metadata are extracted; locations name file, line and record")
    func extraction() throws {
        let dir = try IOTempDir()
        let text = """
            {"id":"a","vector":[1,2.5,-3e-2],"text":"hello","metadata":{"k":"v","n":3,"b":true,"tags":["x",1,false],"e":[]}}
            {"id":42,"vector":[0,0,1],"extra":{"ignored":[null]}}
            {"id":-7,"vector":[1e-50,-0.0,3.4e38]}
            {"id":1e3,"vector":[1,1,1],"text":"","metadata":null}

            """
        let (records, reader) = try Self.read(text, in: dir)
        #expect(records.count == 4)
        #expect(records.map(\.id) == ["a", "42", "-7", "1000"])
        #expect(records[0].vector == [1, 2.5, -0.03])
        #expect(records[0].text == "hello")
        #expect(records[0].metadata == ["k": "v", "n": 3, "b": true, "tags": ["x", 1, false], "e": []])
        #expect(records[1].text == nil && records[1].metadata == nil)
        #expect(bits(records[2].vector) == bits([0, -0.0, 3.4e38]))
        #expect(records[3].text == nil, "empty text is skipped")
        #expect(records[3].metadata == nil, "null metadata means none")
        #expect(reader.dimension == 3)
        for (index, record) in records.enumerated() {
            #expect(record.location == VecStoreIO.SourceLocation(file: dir.path("in.jsonl"), line: index + 1, record: index))
        }
        #expect(records[1].location.description == "\(dir.path("in.jsonl")):2")
    }

    @Test("'_id' is the fallback id field; 'id' wins when both are present")
    func underscoreIDFallback() throws {
        let dir = try IOTempDir()
        let (records, _) = try Self.read("""
            {"_id":"doc1","vector":[1]}
            {"id":"x","_id":"y","vector":[2]}
            {"_id":5,"vector":[3]}
            """, in: dir)
        #expect(records.map(\.id) == ["doc1", "x", "5"])
    }

    @Test("custom id, vector, text and metadata fields")
    func customFields() throws {
        let dir = try IOTempDir()
        let options = JSONLReader.Options(idField: "doc_id", vectorField: "emb", textFields: ["title", "body"],
                                          metadataField: "meta")
        let (records, _) = try Self.read("""
            {"doc_id":"d1","id":"ignored","emb":[1,2],"vector":"ignored","title":"T","body":"B","text":"no","meta":{"a":1},"metadata":7}
            {"doc_id":"d2","emb":[3,4],"title":null,"body":"only body"}
            {"doc_id":"d3","emb":[5,6],"title":"only title","body":""}
            {"doc_id":"d4","emb":[7,8]}
            """, options: options, in: dir)
        #expect(records.map(\.id) == ["d1", "d2", "d3", "d4"])
        #expect(records.map(\.vector) == [[1, 2], [3, 4], [5, 6], [7, 8]])
        #expect(records.map(\.text) == ["T\nB", "only body", "only title", nil])
        #expect(records[0].metadata == ["a": 1])
        #expect(records[1].metadata == nil)

        // With a custom id field there is no '_id' fallback.
        let (error, path) = try Self.failure("{\"_id\":\"x\",\"emb\":[1]}\n", options: options, in: dir)
        #expect(error.description == "\(path):1: missing id field 'doc_id'")
    }

    @Test("three text fields are joined in the given order with newlines")
    func multipleTextFields() throws {
        let dir = try IOTempDir()
        let options = JSONLReader.Options(textFields: ["c", "a", "b"])
        let (records, _) = try Self.read("{\"id\":\"1\",\"vector\":[1],\"a\":\"A\",\"b\":\"B\",\"c\":\"C\\nC\"}",
                                         options: options, in: dir)
        #expect(records.first?.text == "C\nC\nA\nB")
    }

    @Test("idRequired: false gives records without ids nil ids")
    func optionalID() throws {
        let dir = try IOTempDir()
        let (records, _) = try Self.read("{\"vector\":[1]}\n{\"id\":\"b\",\"vector\":[2]}\n",
                                         options: .init(idRequired: false), in: dir)
        #expect(records.map(\.id) == [nil, "b"])
    }

    @Test("vectorRequired: false accepts missing, null and empty vectors; the dimension comes from the first vector")
    func optionalVector() throws {
        let dir = try IOTempDir()
        let options = JSONLReader.Options(vectorRequired: false)
        let path = try dir.write("v.jsonl", """
            {"id":"a"}
            {"id":"b","vector":null}
            {"id":"c","vector":[]}
            {"id":"d","vector":[1,2]}
            {"id":"e"}
            {"id":"f","vector":[1,2,3]}
            """)
        var reader = try JSONLReader(path: path, options: options)
        for id in ["a", "b", "c"] {
            let record = try #require(try reader.next())
            #expect(record.id == id && record.vector.isEmpty)
            #expect(reader.dimension == nil)
        }
        #expect(try reader.next()?.vector == [1, 2])
        #expect(reader.dimension == 2)
        #expect(try reader.next()?.vector == [])
        let error = try #require(nextError(&reader))
        #expect(error.description == "\(path):6: vector has dimension 3 but earlier records have dimension 2")
    }

    // MARK: Errors

    @Test(arguments: [
        // (line 2 of the file, reason)
        ("{\"vector\":[1,2]}", "missing id field 'id' or '_id'"),
        ("{\"id\":1.5,\"vector\":[1,2]}", "id field 'id' must be a string or an integer, found 1.5"),
        ("{\"id\":1e300,\"vector\":[1,2]}", "id field 'id' must be a string or an integer, found 1e+300"),
        ("{\"id\":true,\"vector\":[1,2]}", "id field 'id' must be a string or a number, found boolean"),
        ("{\"_id\":[\"x\"],\"vector\":[1,2]}", "id field '_id' must be a string or a number, found array"),
        ("{\"id\":\"b\"}", "missing vector field 'vector'"),
        ("{\"id\":\"b\",\"vector\":null}", "missing vector field 'vector'"),
        ("{\"id\":\"b\",\"vector\":[]}", "vector field 'vector' is empty"),
        ("{\"id\":\"b\",\"vector\":\"1,2\"}", "vector field 'vector' must be an array of numbers, found string"),
        ("{\"id\":\"b\",\"vector\":{\"0\":1}}", "vector field 'vector' must be an array of numbers, found object"),
        ("{\"id\":\"b\",\"vector\":[1,\"2\"]}", "vector[1] must be a number, found string"),
        ("{\"id\":\"b\",\"vector\":[null,2]}", "vector[0] must be a number, found null"),
        ("{\"id\":\"b\",\"vector\":[1,[2]]}", "vector[1] must be a number, found array"),
        ("{\"id\":\"b\",\"vector\":[1,1e39]}", "vector[1] = 1e+39 is not a finite 32-bit float"),
        ("{\"id\":\"b\",\"vector\":[-3.5e38,1]}", "vector[0] = -3.5e+38 is not a finite 32-bit float"),
        ("{\"id\":\"b\",\"vector\":[1,2,3]}", "vector has dimension 3 but earlier records have dimension 2"),
        ("{\"id\":\"b\",\"vector\":[1]}", "vector has dimension 1 but earlier records have dimension 2"),
        ("{\"id\":\"b\",\"vector\":[1,NaN]}", "malformed JSON at column 23: unexpected character 'N', expected a value"),
        ("{\"id\":\"b\",\"vector\":[1,Infinity]}", "malformed JSON at column 23: unexpected character 'I', expected a value"),
        ("{\"id\":\"b\",\"vector\":[1,2,]}", "malformed JSON at column 25: unexpected character ']', expected a value"),
        ("{\"id\":\"b\",\"vector\":[1,2]", "malformed JSON at column 25: unterminated object"),
        ("{\"id\":\"b\" \"vector\":[1,2]}", "malformed JSON at column 11: expected ',' or '}' in object, found character '\"'"),
        ("{\"id\":\"b\",\"vector\":[1,2]} x", "malformed JSON at column 27: unexpected character 'x' after the JSON value"),
        ("\u{FEFF}{\"id\":\"b\",\"vector\":[1,2]}", "malformed JSON at column 1: unexpected byte 0xEF, expected a value"),
        ("[1,2]", "line is not a JSON object (found array)"),
        ("\"text\"", "line is not a JSON object (found string)"),
        ("null", "line is not a JSON object (found null)"),
        ("{\"id\":\"b\",\"vector\":[1,2],\"text\":5}", "text field 'text' must be a string, found number"),
        ("{\"id\":\"b\",\"vector\":[1,2],\"text\":[\"a\"]}", "text field 'text' must be a string, found array"),
        ("{\"id\":\"b\",\"vector\":[1,2],\"metadata\":[1]}", "metadata field 'metadata' must be an object, found array"),
        ("{\"id\":\"b\",\"vector\":[1,2],\"metadata\":\"x\"}", "metadata field 'metadata' must be an object, found string"),
        ("{\"id\":\"b\",\"vector\":[1,2],\"metadata\":{\"k\":null}}", "metadata.k: null metadata values are not supported"),
        ("{\"id\":\"b\",\"vector\":[1,2],\"metadata\":{\"k\":{\"x\":1}}}", "metadata.k: nested objects are not supported in metadata"),
        ("{\"id\":\"b\",\"vector\":[1,2],\"metadata\":{\"k\":[1,[2]]}}", "metadata.k[1]: arrays of arrays are not supported in metadata"),
        ("{\"id\":\"b\",\"vector\":[1,2],\"metadata\":{\"k\":[{}]}}", "metadata.k[0]: objects inside arrays are not supported in metadata"),
        ("{\"id\":\"b\",\"vector\":[1,2],\"metadata\":{\"k\":[\"a\",null]}}", "metadata.k[1]: null metadata values are not supported"),
        ("{\"id\":\"b\",\"vector\":[1,2],\"metadata\":{\"z\":null,\"a\":{}}}", "metadata.a: nested objects are not supported in metadata"),
    ] as [(String, String)])
    func errors(line: String, reason: String) throws {
        let dir = try IOTempDir()
        let (error, path) = try Self.failure("{\"id\":\"a\",\"vector\":[0.5,0.25]}\n" + line + "\n{\"id\":\"c\",\"vector\":[1,2]}\n",
                                             in: dir)
        #expect(error.reason == reason)
        #expect(error.location == VecStoreIO.SourceLocation(file: path, line: 2, record: 1))
        #expect(error.description == "\(path):2: \(reason)")
    }

    @Test("a dimension mismatch is reported against the first record's dimension, not the previous line's")
    func dimensionAgainstFirst() throws {
        let dir = try IOTempDir()
        let (error, path) = try Self.failure("""
            {"id":"a","vector":[1,2,3]}

            {"id":"b","vector":[4,5,6]}
            {"id":"c","vector":[7,8]}
            """, in: dir)
        #expect(error.description == "\(path):4: vector has dimension 2 but earlier records have dimension 3")
        #expect(error.location?.record == 2)
    }

    @Test("missing, unreadable and directory paths fail with no location")
    func openErrors() throws {
        let dir = try IOTempDir()
        let missing = dir.path("nope.jsonl")
        let error = try #require(importError { () throws(ImportError) in _ = try JSONLReader(path: missing) })
        #expect(error.location == nil)
        #expect(error.reason == "cannot open '\(missing)': No such file or directory")
        #expect(error.description == error.reason)
        let directory = try #require(importError { () throws(ImportError) in _ = try JSONLReader(path: dir.url.path) })
        #expect(directory.reason == "cannot read '\(dir.url.path)': it is a directory")
    }

    @Test("after a bad line the reader goes on with the next line and keeps counting lines")
    func continuesAfterErrors() throws {
        let dir = try IOTempDir()
        let path = try dir.write("mixed.jsonl", """
            {"id":"a","vector":[1,2]
            not json
            {"id":"b","vector":[3,4]}
            {"id":"c","vector":"oops"}
            {"id":"d","vector":[5,6]}
            """)
        var reader = try JSONLReader(path: path)
        #expect(nextError(&reader)?.location?.line == 1)
        #expect(nextError(&reader)?.location?.line == 2)
        let b = try #require(try reader.next())
        #expect(b.id == "b" && b.location.line == 3)
        #expect(nextError(&reader)?.location?.line == 4)
        let d = try #require(try reader.next())
        #expect(d.id == "d" && d.location.line == 5)
        #expect(try reader.next() == nil)
        #expect(reader.bytesRead == reader.totalBytes)
    }

    // MARK: Line handling

    @Test("blank and whitespace-only lines are skipped but counted; CRLF, BOM and a missing final newline are accepted")
    func lineHandling() throws {
        let dir = try IOTempDir()
        let text = "\u{FEFF}{\"id\":\"a\",\"vector\":[1],\"text\":\"x\"}\r\n\r\n  \t \n\n{\"id\":\"b\",\"vector\":[2],\"text\":\"y\\r\"}\r\n"
            + "\t{\"id\":\"c\" , \"vector\" : [3]}\t\r\n{\"id\":\"d\",\"vector\":[4]}"
        let (records, reader) = try Self.read(text, in: dir)
        #expect(records.map(\.id) == ["a", "b", "c", "d"])
        #expect(records.map(\.text) == ["x", "y\r", nil, nil])
        #expect(records.map { $0.location.line } == [1, 5, 6, 7])
        #expect(records.map(\.location.record) == [0, 1, 2, 3])
        #expect(reader.bytesRead == UInt64(text.utf8.count))
        #expect(reader.totalBytes == UInt64(text.utf8.count))
    }

    @Test("an empty file, or one with only blank lines, has no records")
    func emptyFiles() throws {
        let dir = try IOTempDir()
        for text in ["", "\n", "\r\n\r\n", "   \n\t\n  "] {
            let (records, reader) = try Self.read(text, in: dir)
            #expect(records.isEmpty)
            #expect(reader.dimension == nil)
            #expect(reader.bytesRead == UInt64(text.utf8.count))
        }
    }

    @Test("next() keeps returning nil at the end")
    func nilAtEnd() throws {
        let dir = try IOTempDir()
        let path = try dir.write("one.jsonl", "{\"id\":\"a\",\"vector\":[1]}")
        var reader = try JSONLReader(path: path)
        #expect(try reader.next() != nil)
        #expect(try reader.next() == nil)
        #expect(try reader.next() == nil)
    }

    @Test("bytesRead advances line by line, including terminators and skipped blank lines")
    func progress() throws {
        let dir = try IOTempDir()
        let lines = ["{\"id\":\"a\",\"vector\":[1,2]}\n", "\n", "{\"id\":\"b\",\"vector\":[3,4]}\r\n",
                     "   \n", "{\"id\":\"c\",\"vector\":[5,6]}"]
        let path = try dir.write("p.jsonl", lines.joined())
        var reader = try JSONLReader(path: path, options: .init(), bufferSize: 16)
        #expect(reader.bytesRead == 0)
        #expect(reader.totalBytes == UInt64(lines.joined().utf8.count))
        var expected = [1, 3, 5].map { count in UInt64(lines.prefix(count).joined().utf8.count) }
        while let _ = try reader.next() {
            #expect(reader.bytesRead == expected.removeFirst())
        }
        #expect(expected.isEmpty)
        #expect(reader.bytesRead == reader.totalBytes)
    }

    @Test("a character device has no total size")
    func devNull() throws {
        var reader = try JSONLReader(path: "/dev/null")
        #expect(reader.totalBytes == nil)
        #expect(try reader.next() == nil)
    }

    @Test("lines much longer than the buffer, with CRLF split across buffer refills")
    func longLines() throws {
        let dir = try IOTempDir()
        let vector = (0..<300).map { Float($0) / 8 }
        let vectorText = vector.map { "\($0)" }.joined(separator: ",")
        let longText = String(repeating: "é😀x", count: 2000)
        var text = ""
        for index in 0..<5 {
            text += "{\"id\":\"r\(index)\",\"vector\":[\(vectorText)],\"text\":\"\(longText)\"}\r\n"
            text += String(repeating: " ", count: 37 * index) + "\r\n"
        }
        for bufferSize in [16, 17, 31, 64, 1000, 1 << 16] {
            let (records, reader) = try Self.read(text, bufferSize: bufferSize, in: dir)
            #expect(records.map(\.id) == ["r0", "r1", "r2", "r3", "r4"], "buffer \(bufferSize)")
            #expect(records.allSatisfy { $0.vector == vector && $0.text == longText }, "buffer \(bufferSize)")
            #expect(records.map { $0.location.line } == [1, 3, 5, 7, 9])
            #expect(reader.bytesRead == UInt64(text.utf8.count))
        }
    }

    @Test("random files read identically with any buffer size and line-ending style")
    func randomFiles() async {
        struct Line: Sendable { var id: String; var vector: [Float]; var text: String? }
        let lineGen = zip(Gen.letterOrNumber.string(of: 1...12), Gen.int(in: 0...1000).array(of: 3),
                          Gen.character(in: " "..."\u{2FF}").string(of: 0...90).optional)
            .map { Line(id: $0, vector: $1.map { Float($0) / 4 }, text: $2) }
        await propertyCheck(count: 60, input: lineGen.array(of: 0...25), Gen.int(in: 16...80),
                            Gen.uint64(in: 0...UInt64.max)) { lines, bufferSize, seed in
            var rng = SplitMix(seed: seed)
            var text = ""
            var expectedLines: [Int] = []
            var lineNumber = 0
            for line in lines {
                while Int.random(in: 0..<5, using: &rng) == 0 {
                    text += [" ", "", "\t"].randomElement(using: &rng)! + (Bool.random(using: &rng) ? "\n" : "\r\n")
                    lineNumber += 1
                }
                var object: [String: JSONValue] = ["id": .string(line.id), "vector": .array(line.vector.map { .number(Double($0)) })]
                if let t = line.text { object["text"] = .string(t) }
                text += JSONValue.object(object).serialized()
                lineNumber += 1
                expectedLines.append(lineNumber)
                text += Bool.random(using: &rng) ? "\n" : "\r\n"
            }
            if !text.isEmpty, Bool.random(using: &rng) {
                // No final newline.
                text.removeLast()
            }
            let dir = try IOTempDir()
            let (records, reader) = try Self.read(text, bufferSize: bufferSize, in: dir)
            #expect(records.map(\.id) == lines.map(\.id))
            #expect(records.map(\.vector) == lines.map(\.vector))
            #expect(records.map(\.text) == lines.map { $0.text?.isEmpty == true ? nil : $0.text })
            #expect(records.map { $0.location.line } == expectedLines)
            #expect(reader.bytesRead == UInt64(text.utf8.count))
        }
    }
}

@Suite("BufferedFile")
struct BufferedFileTests {
    @Test("nextLine returns every line, with LF or CRLF removed, for any buffer size")
    func lines() async {
        let bytesGen = Gen.element(of: Array("ab\r\n\n\n é".utf8)).map { $0 ?? 0x61 }.array(of: 0...300)
        await propertyCheck(count: 150, input: bytesGen, Gen.int(in: 1...40)) { bytes, bufferSize in
            let dir = try IOTempDir()
            let path = try dir.write("f", bytes)
            let file = try BufferedFile(path: path, bufferSize: bufferSize)
            var lines: [[UInt8]] = []
            while let line = try file.nextLine({ Array($0) }) { lines.append(line) }
            var expected = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map { line -> [UInt8] in
                line.last == 0x0D ? Array(line.dropLast()) : Array(line)
            }
            if bytes.last == 0x0A || bytes.isEmpty { expected.removeLast() }
            #expect(lines == expected)
            #expect(file.consumed == UInt64(bytes.count))
            #expect(file.totalBytes == UInt64(bytes.count))
        }
    }

    @Test("readBytes returns exactly the file's bytes in chunks of any size")
    func chunks() async {
        await propertyCheck(count: 100, input: Gen.uint8().array(of: 0...500), Gen.int(in: 1...70),
                            Gen.int(in: 1...100)) { bytes, bufferSize, chunk in
            let dir = try IOTempDir()
            let path = try dir.write("f", bytes)
            let file = try BufferedFile(path: path, bufferSize: bufferSize)
            var collected: [UInt8] = []
            while true {
                var piece = [UInt8](repeating: 0, count: chunk)
                let count = try piece.withUnsafeMutableBytes { buffer in
                    Result { () throws(ImportError) in try file.readBytes(into: buffer) }
                }.get()
                collected += piece.prefix(count)
                #expect(file.consumed == UInt64(collected.count))
                if count < chunk { break }
            }
            #expect(collected == bytes)
        }
    }
}
