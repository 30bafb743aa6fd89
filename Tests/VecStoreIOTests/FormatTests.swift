import Testing
@testable import VecStoreIO

@Suite("VectorFileFormat, SourceLocation and ImportError")
struct FormatTests {
    @Test(arguments: [
        ("docs.jsonl", VectorFileFormat.jsonl), ("DOCS.JSONL", .jsonl), ("a.ndjson", .jsonl), ("a.json", .jsonl),
        ("a.Json", .jsonl), ("/data/set/base.fvecs", .fvecs), ("BASE.FVECS", .fvecs), ("x.bvecs", .bvecs),
        ("x.BVecs", .bvecs), ("emb.npy", .npy), ("emb.NPY", .npy), ("a.b.c.fvecs", .fvecs), ("./rel/dir.v2/a.npy", .npy),
        ("weird name with spaces.jsonl", .jsonl), ("dir.jsonl/file.npy", .npy),
    ] as [(String, VectorFileFormat)])
    func detected(path: String, format: VectorFileFormat) {
        #expect(VectorFileFormat.detectFormat(path: path) == format)
    }

    @Test(arguments: [
        "", "noext", "a.txt", "a.csv", "a.jsonl.gz", "a.fvecs.bak", "a.", ".npy", "dir/.fvecs", "dir.npy/file",
        "dir.fvecs/", "a.npz", "a.jsonlx", "a.f vecs", "a.npy ",
    ])
    func undetected(path: String) {
        #expect(VectorFileFormat.detectFormat(path: path) == nil)
    }

    @Test("formats and their raw values")
    func cases() {
        #expect(VectorFileFormat.allCases == [.jsonl, .fvecs, .bvecs, .npy])
        #expect(VectorFileFormat.allCases.map(\.rawValue) == ["jsonl", "fvecs", "bvecs", "npy"])
        #expect(VectorFileFormat(rawValue: "npy") == .npy)
    }

    @Test("SourceLocation and ImportError descriptions")
    func descriptions() {
        let line = VecStoreIO.SourceLocation(file: "docs.jsonl", line: 17, record: 12)
        #expect(line.description == "docs.jsonl:17")
        let binary = VecStoreIO.SourceLocation(file: "base.fvecs", record: 42)
        #expect(binary.line == nil)
        #expect(binary.description == "base.fvecs record 42")
        #expect(ImportError(location: line, reason: "bad").description == "docs.jsonl:17: bad")
        #expect(ImportError(location: binary, reason: "bad").description == "base.fvecs record 42: bad")
        #expect(ImportError(location: nil, reason: "cannot open").description == "cannot open")
        #expect(line != VecStoreIO.SourceLocation(file: "docs.jsonl", line: 17, record: 13))
        let record = ImportRecord(id: "x", vector: [1], location: binary)
        #expect(record.text == nil && record.metadata == nil)
    }

    @Test("dimension and finiteness checks")
    func checks() throws {
        let location = VecStoreIO.SourceLocation(file: "f", record: 0)
        #expect(maximumVectorDimension == 65536)
        for valid in [1, 2, 65536] {
            #expect(throws: Never.self) { try checkDimension(valid, location: location, context: "") }
        }
        for invalid in [0, -1, 65537, Int.max] {
            let error = try #require(importError { () throws(ImportError) in
                try checkDimension(invalid, location: location, context: " here")
            })
            #expect(error.reason == "invalid vector dimension \(invalid) here (must be 1...65536)")
        }
        #expect(throws: Never.self) {
            try checkFinite([0, -0.0, .greatestFiniteMagnitude, -.leastNonzeroMagnitude], location: location)
        }
        let error = try #require(importError { () throws(ImportError) in
            try checkFinite([1, 2, .nan, .infinity], location: location)
        })
        #expect(error.reason == "vector component 2 is not a finite number (nan)")
    }
}
