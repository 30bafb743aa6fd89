import Foundation
import Testing
@testable import VecStore

private let modelInstalled = (try? EmbeddingModels.locate(EmbeddingModels.miniLM.name)) != nil
private let missingModel = Comment(rawValue: "all-minilm-l6-v2 is not installed in \(EmbeddingModels.directory) (bash Tools/install-deps --model)")

private func readFvecs(_ path: String) throws -> [[Float]] {
    var reader = try FvecsReader(path: path, format: .fvecs)
    var rows: [[Float]] = []
    while let r = try reader.next() { rows.append(r.vector) }
    return rows
}

/// Samples/notes.jsonl: the demo notes as text only.
private let notes = packageRoot.appendingPathComponent("Samples/notes.jsonl").path

@Suite(.enabled(if: modelInstalled, missingModel))
struct EmbedCLITests {
    @Test func embedWritesFvecsNpyAndJsonlThatMatchTheLibrary() throws {
        let dir = try TempDir()
        let input = dir.path("texts.txt")
        try "how do I cook rice\n\nLMDB is a B-tree\n".write(toFile: input, atomically: true, encoding: .utf8)
        let r = try runCLI(["embed", input, "-o", dir.path("out.fvecs"), "--threads", "2"])
        #expect(r.status == 0, "\(r.stderr)")
        let rows = try readFvecs(dir.path("out.fvecs"))
        #expect(rows.count == 3)
        let embedder = try Embedder()
        let expected = try embedder.embed(["how do I cook rice", "", "LMDB is a B-tree"])
        for (a, b) in zip(rows, expected) { #expect(zip(a, b).reduce(Float(0)) { $0 + $1.0 * $1.1 } > 0.99999) }

        let npy = try runCLI(["embed", input, "-o", dir.path("out.npy")])
        #expect(npy.status == 0, "\(npy.stderr)")
        var npyReader = try NpyReader(path: dir.path("out.npy"))
        var npyRows = 0
        while let row = try npyReader.next() { #expect(row.vector == rows[npyRows]); npyRows += 1 }
        #expect(npyRows == 3)

        // JSONL in, JSONL out (the default), ready for import.
        let jsonl = dir.path("in.jsonl")
        try #"{"id": "a", "text": "hello", "metadata": {"n": 1}}"# .appending("\n{\"text\": \"world\"}\n")
            .write(toFile: jsonl, atomically: true, encoding: .utf8)
        let j = try runCLI(["embed", jsonl])
        #expect(j.status == 0, "\(j.stderr)")
        let lines = j.stdout.split(separator: "\n")
        #expect(lines.count == 2)
        guard case .object(let first)? = try? JSONValue.parse(String(lines[0])) else { Issue.record("bad JSONL"); return }
        #expect(first["id"] == .string("a"))
        #expect(first["metadata"] == .object(["n": 1]))
        if case .array(let v)? = first["vector"] { #expect(v.count == 384) } else { Issue.record("no vector") }
        let imported = try runCLI(["import", dir.path("s.vecstore"), "-c", "c", "--quiet", dir.path("in.jsonl")])
        #expect(imported.status != 0) // no vectors and no --embed: the records are refused
        try j.stdout.write(toFile: dir.path("embedded.jsonl"), atomically: true, encoding: .utf8)
        let again = try runCLI(["import", dir.path("s.vecstore"), "-c", "c", "--quiet", dir.path("embedded.jsonl")])
        #expect(again.status == 0, "\(again.stderr)")
    }

    @Test func embedJsonlKeepsAMetadataMemberNamedVector() throws {
        let dir = try TempDir()
        let input = dir.path("in.jsonl")
        try #"{"id": "a", "text": "hello", "metadata": {"vector": [], "z": "\"vector\":[]"}}"#.appending("\n")
            .write(toFile: input, atomically: true, encoding: .utf8)
        let r = try runCLI(["embed", input])
        #expect(r.status == 0, "\(r.stderr)")
        guard case .object(let o)? = try? JSONValue.parse(String(r.stdout.split(separator: "\n").first ?? "")) else {
            Issue.record("bad JSONL: \(r.stdout.prefix(200))")
            return
        }
        #expect(o["metadata"] == .object(["vector": .array([]), "z": .string(#""vector":[]"#)]))
        #expect(o["text"] == .string("hello"))
        if case .array(let v)? = o["vector"] { #expect(v.count == 384) } else { Issue.record("no vector") }
    }

    @Test func embedReportsInvalidUTF8WithFileAndLine() throws {
        let dir = try TempDir()
        let input = dir.path("bad.txt")
        var bytes = Array("fine\n".utf8)
        bytes += [0x62, 0x72, 0xFF, 0x6F, 0x0A]
        try Data(bytes).write(to: URL(fileURLWithPath: input))
        let r = try runCLI(["embed", input, "-o", dir.path("out.fvecs")])
        #expect(r.status != 0)
        #expect(r.stderr.contains("\(input):2: invalid UTF-8 at byte 3"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.path("out.fvecs")))
    }

    @Test func importEmbedCreatesACosineCollectionAndQueriesByMeaning() throws {
        let dir = try TempDir()
        let store = dir.path("notes.vecstore")
        let sample = dir.path("sample.jsonl")
        let lines = try String(contentsOfFile: notes, encoding: .utf8).split(separator: "\n")
        try (lines.prefix(40).joined(separator: "\n") + "\n").write(toFile: sample, atomically: true, encoding: .utf8)
        let r = try runCLI(["import", store, "-c", "notes", sample, "--embed", "all-minilm-l6-v2", "--quiet"])
        #expect(r.status == 0, "\(r.stderr)")
        let s = try VecStore(path: store, options: StoreOptions(readOnly: true))
        let c = try s.collection("notes")
        #expect(c.dimension == 384 && c.metric == .cosine)
        #expect(try c.count() == 40)
        let info = try #require(try c.embedderInfo())
        #expect(info.name == "all-minilm-l6-v2" && info.dimension == 384 && info.maxTokens == 256)
        let checksum = try Embedder().checksum
        #expect(info.checksum == checksum)
        #expect(try s.verify().faults.isEmpty)

        // The stored vector of a note is its embedding.
        let first = try #require(try c.get(ids: ["databases/b-tree-pages/overview"]).first ?? nil)
        let expected = try Embedder().embed([first.text ?? ""])[0]
        #expect(zip(first.vector, expected).reduce(Float(0)) { $0 + $1.0 * $1.1 } > 0.99999)

        // --text alone: hybrid by default; each side alone on request.
        let query = "how are keys kept in order on disk pages"
        let hybrid = try runCLI(["query", store, "-c", "notes", "--text", query, "-k", "3", "--format", "jsonl"])
        #expect(hybrid.status == 0, "\(hybrid.stderr)")
        let semantic = try runCLI(["query", store, "-c", "notes", "--text", query, "-k", "3", "--semantic-only", "--format", "jsonl"])
        #expect(semantic.stdout.contains("b-tree-pages"), "\(semantic.stdout)")
        let library = try c.search(text: query, k: 3)
        #expect(semantic.stdout.contains(library[0].id))
        let fused = try c.hybridSearch(text: query, k: 3)
        #expect(hybrid.stdout.contains(fused[0].id))
        let keyword = try runCLI(["query", store, "-c", "notes", "--text", "pages", "-k", "3", "--keyword-only", "--format", "jsonl"])
        #expect(keyword.status == 0)
        #expect(try keyword.stdout.contains(c.searchText("pages", k: 1)[0].id))
        let both = try runCLI(["query", store, "-c", "notes", "--text", "x", "--keyword-only", "--semantic-only"])
        #expect(both.status != 0)

        // A later import without --embed embeds the same way; a record with its own vector must be 384-d.
        let more = dir.path("more.jsonl")
        try #"{"id": "extra", "text": "Risotto needs warm stock added slowly"}"#.appending("\n")
            .write(toFile: more, atomically: true, encoding: .utf8)
        let later = try runCLI(["import", store, "-c", "notes", more, "--quiet"])
        #expect(later.status == 0, "\(later.stderr)")
        #expect(try c.count() == 41)
        let wrong = dir.path("wrong.jsonl")
        try #"{"id": "v", "text": "x", "vector": [1, 2, 3]}"#.appending("\n").write(toFile: wrong, atomically: true, encoding: .utf8)
        let w = try runCLI(["import", store, "-c", "notes", wrong])
        #expect(w.status != 0)
        #expect(w.stderr.contains("3 components") && w.stderr.contains("384"), "\(w.stderr)")

        // eval --embed: the queries are embedded with the collection's model.
        let queries = dir.path("q.jsonl"), qrels = dir.path("qrels.tsv")
        try #"{"_id": "q1", "text": "how are keys kept in order on disk pages"}"#.appending("\n")
            .write(toFile: queries, atomically: true, encoding: .utf8)
        try "query-id\tcorpus-id\tscore\nq1\tdatabases/b-tree-pages/overview\t1\n".write(toFile: qrels, atomically: true, encoding: .utf8)
        let e = try runCLI(["eval", store, "-c", "notes", "--queries", queries, "--qrels", qrels, "--embed", "--format", "json"])
        #expect(e.status == 0, "\(e.stderr)")
        #expect(e.stdout.contains("\"vector\"") && e.stdout.contains("\"hybrid\""))

        // Compaction keeps the embedder; dropping the collection removes it.
        try VecStore.compact(path: store)
        let compacted = try VecStore(path: store)
        #expect(try compacted.collection("notes").embedderInfo() == info)
        #expect(try compacted.verify().faults.isEmpty)
        #expect(try compacted.dropCollection("notes"))
        #expect(try compacted.verify().faults.isEmpty)
    }

    @Test func importEmbedIsRefusedForForeignCollectionsAndMetrics() throws {
        let dir = try TempDir()
        let store = dir.path("s.vecstore")
        let vectors = dir.path("v.jsonl")
        try #"{"id": "a", "vector": [1, 0, 0], "text": "x"}"#.appending("\n").write(toFile: vectors, atomically: true, encoding: .utf8)
        #expect(try runCLI(["import", store, "-c", "c", vectors, "--quiet"]).status == 0)
        let text = dir.path("t.jsonl")
        try #"{"id": "b", "text": "hello"}"#.appending("\n").write(toFile: text, atomically: true, encoding: .utf8)
        let r = try runCLI(["import", store, "-c", "c", text, "--embed", "all-minilm-l6-v2"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("has no embedder"), "\(r.stderr)")
        let m = try runCLI(["import", store, "-c", "d", text, "--embed", "all-minilm-l6-v2", "--metric", "l2"])
        #expect(m.status != 0)
        #expect(try VecStore(path: store).collectionNames() == ["c"])
        // --semantic-only on a collection without an embedder names the problem.
        let q = try runCLI(["query", store, "-c", "c", "--text", "x", "--semantic-only"])
        #expect(q.status != 0 && q.stderr.contains("no embedder"), "\(q.stderr)")
    }

    @Test func aMissingOrDamagedModelWritesNothing() throws {
        let dir = try TempDir()
        let store = dir.path("s.vecstore")
        let text = dir.path("t.jsonl")
        try #"{"id": "b", "text": "hello"}"#.appending("\n").write(toFile: text, atomically: true, encoding: .utf8)
        let missing = try runCLI(["import", store, "-c", "c", text, "--embed", "all-minilm-l6-v2"],
                                 environment: ["VECSTORE_MODELS": dir.path("no-models")])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("not installed") && missing.stderr.contains("Tools/install-deps --model"), "\(missing.stderr)")
        #expect(!FileManager.default.fileExists(atPath: store))
        let list = try runCLI(["model", "list"], environment: ["VECSTORE_MODELS": dir.path("no-models")])
        #expect(list.status == 0 && list.stdout.contains("no embedding models installed"))

        // A copy of the model with its weights cut short.
        let installed = try EmbeddingModels.locate(EmbeddingModels.miniLM.name)
        let models = dir.path("models")
        let copy = models + "/all-minilm-l6-v2"
        try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
        for f in ["config.json", "vocab.txt", "sentence_bert_config.json"] {
            try FileManager.default.copyItem(atPath: installed + "/" + f, toPath: copy + "/" + f)
        }
        // Copied whole, then cut (a single `read(upToCount:)` may return fewer bytes than asked for).
        try FileManager.default.copyItem(atPath: installed + "/model.safetensors", toPath: copy + "/model.safetensors")
        #expect(truncate(copy + "/model.safetensors", 5_000_000) == 0)
        let damaged = try runCLI(["import", store, "-c", "c", text, "--embed", "all-minilm-l6-v2"],
                                 environment: ["VECSTORE_MODELS": models])
        #expect(damaged.status != 0)
        #expect(damaged.stderr.contains("model.safetensors") && damaged.stderr.contains("truncated"), "\(damaged.stderr)")
        #expect(!FileManager.default.fileExists(atPath: store))

        let good = try runCLI(["model", "list"])
        let checksum = try Embedder().checksum
        #expect(good.stdout.contains("all-minilm-l6-v2") && good.stdout.contains(checksum))
    }

    @Test func aModelTruncatingAtAnotherLengthIsRefused() throws {
        let embedder = try Embedder()
        var info = EmbedderInfo(embedder)
        try VectorCollection.check(embedder, matches: info, collection: "c")
        info.maxTokens = 128
        #expect(throws: VecStoreError.self) { try VectorCollection.check(embedder, matches: info, collection: "c") }
    }
}
