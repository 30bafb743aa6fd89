import Foundation
import Testing
@testable import VecStore

/// The CLI end to end: every command, and every error path of import naming file, line and reason.
@Suite("vecstore CLI")
struct CLITests {
    /// Writes `text` to a file in `dir` and returns its path.
    func write(_ dir: TempDir, _ name: String, _ text: String) throws -> String {
        let path = dir.path(name)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    func fvecs(_ rows: [[Float]]) -> Data {
        var data = Data()
        for r in rows {
            withUnsafeBytes(of: Int32(r.count).littleEndian) { data.append(contentsOf: $0) }
            for x in r { withUnsafeBytes(of: x.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        }
        return data
    }

    @Test("query with a selective filter on an HNSW collection: exact over the matches, equal to --exact")
    func selectiveFilterQuery() throws {
        let dir = try TempDir()
        // 2,400 rows with a graph; 40 scattered rows marked rare (1.7%, under 1/(2M)): exact over matches.
        var docs = makeDocuments(2_400, dimension: 16, seed: 5)
        for i in stride(from: 0, to: docs.count, by: 60) { docs[i].metadata["rare"] = .bool(true) }
        let store = dir.path("s.vecstore")
        let imported = try runCLI(["import", store, "-c", "docs", try write(dir, "docs.jsonl", jsonl(docs))])
        #expect(imported.status == 0, "\(imported.stderr)")
        let rare = #"{"rare": true}"#
        for qi in [3, 61, 1_000] {
            let q = docs[qi].vector.map { String($0) }.joined(separator: ",")
            let explained = try runCLI(["query", store, "-c", "docs", "--vector=\(q)", "--filter", rare, "--explain",
                                        "--format", "jsonl"])
            #expect(explained.stdout == "{\"path\": \"exact-over-matches\", \"candidates\": 40}\n",
                    "\(explained.stdout)\(explained.stderr)")
            let expected = bruteForce(docs.filter { $0.metadata["rare"] == .bool(true) }, docs[qi].vector, k: 5,
                                      metric: .cosine).map(\.id)
            for extra in [[], ["--exact"]] {
                let out = try runCLI(["query", store, "-c", "docs", "--vector=\(q)", "--filter", rare, "-k", "5",
                                      "--format", "jsonl"] + extra)
                #expect(out.status == 0, "\(out.stderr) \(extra)")
                let line = try JSONValue.parse(out.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
                guard case .object(let o) = line, case .array(let results)? = o["results"] else {
                    Issue.record("bad jsonl output \(out.stdout)")
                    continue
                }
                let ids = results.compactMap { r -> String? in
                    if case .object(let f) = r, case .string(let id)? = f["id"] { return id }
                    return nil
                }
                #expect(ids == expected, "query \(qi) \(extra)")
            }
        }
    }

    @Test("import, query (table and jsonl), get, delete, stats, verify, export, compact")
    func happyPath() throws {
        let dir = try TempDir()
        let docs = makeDocuments(120, dimension: 8, seed: 2)
        let input = try write(dir, "docs.jsonl", jsonl(docs))
        let store = dir.path("s.vecstore")
        let imported = try runCLI(["import", store, "-c", "docs", input, "--batch-size", "50"])
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect(imported.stdout.contains("imported 120 records"))
        #expect(imported.stdout.contains("3 batch(es)"))

        let table = try runCLI(["query", store, "-c", "docs", "--id", "doc-1", "-k", "3"])
        #expect(table.status == 0)
        #expect(table.stdout.contains("rank"))
        #expect(!table.stdout.contains(" doc-1 "))

        let q = docs[4].vector.map { String($0) }.joined(separator: ",")
        let json = try runCLI(["query", store, "-c", "docs", "--vector", q, "-k", "2", "--format", "jsonl",
                               "--filter", #"{"category": {"$in": ["tech", "art"]}}"#])
        #expect(json.status == 0, "\(json.stderr)")
        let line = try JSONValue.parse(json.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        guard case .object(let o) = line, case .array(let results)? = o["results"] else {
            Issue.record("bad jsonl output \(json.stdout)")
            return
        }
        #expect(o["query"] == .number(0))
        #expect(results.count == 2)
        let expected = bruteForce(docs.filter { referenceMatches(.field("category", .in(["tech", "art"])), $0.metadata) },
                                  docs[4].vector, k: 2, metric: .cosine)
        if case .object(let first) = results[0] { #expect(first["id"] == .string(expected[0].id)) }

        // --explain: the planner's path and candidate count instead of results (120 rows: searched exactly).
        let matching = docs.filter { referenceMatches(.field("category", .in(["tech", "art"])), $0.metadata) }.count
        let explained = try runCLI(["query", store, "-c", "docs", "--vector", q, "--explain", "--format", "jsonl",
                                    "--filter", #"{"category": {"$in": ["tech", "art"]}}"#])
        #expect(explained.status == 0, "\(explained.stderr)")
        #expect(explained.stdout == "{\"path\": \"exact\", \"candidates\": \(matching)}\n")
        let explainedTable = try runCLI(["query", store, "-c", "docs", "--vector", q, "--explain"])
        #expect(explainedTable.stdout == "path: exact\ncandidates: 120\n", "\(explainedTable.stdout)")
        // --force-index: through the graph although the collection is small; with --exact it is refused.
        let forced = try runCLI(["query", store, "-c", "docs", "--vector", q, "--explain", "--force-index"])
        #expect(forced.stdout == "path: index\ncandidates: 120\n", "\(forced.stdout)")
        #expect(try runCLI(["query", store, "-c", "docs", "--vector", q, "--exact", "--force-index"]).status != 0)

        let got = try runCLI(["get", store, "-c", "docs", "doc-7", "doc-8"])
        #expect(got.status == 0)
        #expect(got.stdout.split(separator: "\n").count == 2)
        #expect(got.stdout.contains("\"doc-7\""))

        let deleted = try runCLI(["delete", store, "-c", "docs", "doc-7", "doc-8", "doc-999"])
        #expect(deleted.status == 0, "\(deleted.stderr)")
        #expect(try runCLI(["get", store, "-c", "docs", "doc-7"]).status != 0)

        let stats = try runCLI(["stats", store])
        #expect(stats.status == 0)
        #expect(stats.stdout.contains("docs"))
        #expect(stats.stdout.contains("118"))
        #expect(try runCLI(["verify", store]).status == 0)

        let exported = dir.path("export.jsonl")
        #expect(try runCLI(["export", store, "-c", "docs", "-o", exported]).status == 0)
        let copy = dir.path("copy.vecstore")
        #expect(try runCLI(["import", copy, "-c", "docs", exported]).status == 0)
        do {
            // Closed before the compaction below, which needs the store alone.
            let a = try VecStore(path: store).collection("docs"), b = try VecStore(path: copy).collection("docs")
            #expect(try b.count() == 118)
            for id in ["doc-0", "doc-50", "doc-119"] {
                let x = try #require(try a.get(id: id)), y = try #require(try b.get(id: id))
                #expect(x.text == y.text && x.metadata == y.metadata)
                for (u, v) in zip(x.vector, y.vector) { #expect(abs(u - v) <= 1e-5) }
            }
        }

        let compacted = try runCLI(["compact", store])
        #expect(compacted.status == 0, "\(compacted.stderr)")
        let after = try VecStore(path: store).collection("docs")
        #expect(try after.count() == 118)
        #expect(try after.info().tombstones == 0)
        #expect(try runCLI(["verify", store]).status == 0)
    }

    @Test("fvecs import numbers rows \"0\", \"1\", …; --ids attaches a sidecar; export --format fvecs")
    func vectorFiles() throws {
        let dir = try TempDir()
        var rng = SeededRandom(seed: 3)
        let rows = (0..<30).map { _ in rng.vector(5) }
        let path = dir.path("v.fvecs")
        try fvecs(rows).write(to: URL(fileURLWithPath: path))
        let store = dir.path("s.vecstore")
        #expect(try runCLI(["import", store, "-c", "v", "--metric", "l2", path]).status == 0)
        let coll = try VecStore(path: store).collection("v")
        #expect(coll.metric == .l2)
        #expect(try coll.get(id: "29")?.vector == rows[29])
        let top = try runCLI(["query", store, "-c", "v", "--queries", path, "-k", "1", "--format", "jsonl"])
        #expect(top.status == 0)
        let lines = top.stdout.split(separator: "\n")
        #expect(lines.count == 30)
        #expect(lines[12].contains(#""id":"12""#))

        let ids = try write(dir, "ids.txt", (0..<30).map { "row-\($0)" }.joined(separator: "\n") + "\n")
        #expect(try runCLI(["import", store, "-c", "named", "--metric", "l2", path, "--ids", ids]).status == 0)
        #expect(try VecStore(path: store).collection("named").get(id: "row-3")?.vector == rows[3])

        let out = dir.path("out.fvecs")
        #expect(try runCLI(["export", store, "-c", "v", "--format", "fvecs", "-o", out]).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == fvecs(rows))
    }

    /// One bad record in the second batch: the error names file and line, the first batch stays, the
    /// failing batch is not written; `--skip-invalid` imports the rest and reports the bad line.
    @Test("bad input: error names file, line and reason; store keeps only whole batches", arguments: [
        ("{\"id\": \"bad\", \"vector\": [1, 2, 3", "in.jsonl:7:"),
        ("{\"id\": \"bad\", \"vector\": [1, 2]}", "dimension"),
        ("{\"id\": \"bad\", \"vector\": [1, 2, \"x\"]}", "in.jsonl:7:"),
        ("{\"id\": \"doc-5\", \"vector\": [1, 2, 3]}", "twice"),
        ("{\"id\": \"bad\", \"vector\": [1e999, 2, 3]}", "in.jsonl:7:"),
        ("{\"vector\": [1, 2, 3]}", "in.jsonl:7:"),
        ("[1, 2, 3]", "in.jsonl:7:"),
    ])
    func badInput(line: String, mentions: String) throws {
        let dir = try TempDir()
        var lines = (0..<10).map { #"{"id": "doc-\#($0)", "vector": [\#($0), 1, 2]}"# }
        lines[6] = line
        let input = try write(dir, "in.jsonl", lines.joined(separator: "\n") + "\n")
        let store = dir.path("s.vecstore")
        let result = try runCLI(["import", store, "-c", "c", input, "--batch-size", "4"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("in.jsonl"), "\(result.stderr)")
        #expect(result.stderr.contains(mentions), "\(result.stderr)")
        #expect(result.stderr.contains("1 earlier batch(es) with 4 records were committed"), "\(result.stderr)")
        let coll = try VecStore(path: store).collection("c")
        #expect(try coll.count() == 4)
        #expect(try VecStore(path: store).verify().isOK)

        let skipped = try runCLI(["import", dir.path("t.vecstore"), "-c", "c", input, "--skip-invalid"])
        #expect(skipped.status == 0, "\(skipped.stderr)")
        #expect(skipped.stdout.contains("skipped 1 invalid record"), "\(skipped.stdout)")
        let count = try VecStore(path: dir.path("t.vecstore")).collection("c").count()
        #expect(count == 9 || (mentions == "twice" && count == 9))
    }

    @Test("failing first batch leaves the store exactly as before")
    func firstBatchFails() throws {
        let dir = try TempDir()
        let store = dir.path("s.vecstore")
        let good = try write(dir, "good.jsonl", #"{"id": "a", "vector": [1, 2]}"# + "\n")
        #expect(try runCLI(["import", store, "-c", "c", good]).status == 0)
        let before = try Data(contentsOf: URL(fileURLWithPath: store))
        let bad = try write(dir, "bad.jsonl", #"{"id": "b", "vector": [1, 2]}"# + "\n" + #"{"id": "c", "vector": [1, NaN]}"# + "\n")
        let result = try runCLI(["import", store, "-c", "c", bad])
        #expect(result.status != 0)
        #expect(result.stderr.contains("bad.jsonl"))
        #expect(result.stderr.contains("bad.jsonl:2:"))
        #expect(result.stderr.contains("nothing was written"))
        #expect(try VecStore(path: store).collection("c").count() == 1)
        _ = before
        // A failing first batch into a new collection leaves no collection; into a new file, no file.
        #expect(try runCLI(["import", store, "-c", "fresh", bad]).status != 0)
        #expect(try VecStore(path: store).collectionNames() == ["c"])
        let newFile = dir.path("new.vecstore")
        #expect(try runCLI(["import", newFile, "-c", "c", bad]).status != 0)
        #expect(!FileManager.default.fileExists(atPath: newFile))
    }

    @Test("truncated vector files and other errors exit non-zero with a clear message")
    func otherErrors() throws {
        let dir = try TempDir()
        var data = fvecs([[1, 2, 3], [4, 5, 6]])
        data.removeLast(2)
        let truncated = dir.path("t.fvecs")
        try data.write(to: URL(fileURLWithPath: truncated))
        let store = dir.path("s.vecstore")
        let r = try runCLI(["import", store, "-c", "v", truncated])
        #expect(r.status != 0)
        #expect(r.stderr.contains("t.fvecs"), "\(r.stderr)")
        #expect(r.stderr.lowercased().contains("truncated") || r.stderr.contains("record 1"), "\(r.stderr)")

        let good = try write(dir, "g.jsonl", #"{"id": "a", "vector": [1, 2]}"# + "\n")
        #expect(try runCLI(["import", store, "-c", "c", good]).status == 0)
        let cases: [([String], String)] = [
            (["query", store, "-c", "nope", "--vector", "1,2"], "no collection named 'nope'"),
            (["query", store, "-c", "c", "--vector", "1,2,3"], "dimension"),
            (["query", store, "-c", "c", "--vector", "1,x"], "not a number"),
            (["query", store, "-c", "c", "--vector", "1,2", "--filter", "{bad"], "filter"),
            (["query", store, "-c", "c", "--id", "missing"], "missing"),
            (["query", store, "-c", "c", "--id", "missing", "--explain"], "missing"),
            (["query", store, "-c", "c", "--vector", "1,2,3", "--explain"], "dimension"),
            (["import", store, "-c", "c2", "--index", "flat", "--traversal", "int8", good], "--traversal applies to --index hnsw only"),
            (["index", "build", store, "-c", "c", "--index", "ivf", "--traversal", "int8"], "--traversal applies to --index hnsw only"),
            (["query", dir.path("absent.vecstore"), "-c", "c", "--vector", "1,2"], "absent.vecstore"),
            (["import", store, "-c", "c", dir.path("x.csv")], "unknown file type"),
            (["import", store, "-c", "c", "--metric", "dot", good], "metric"),
            (["import", store, "-c", "c", dir.path("missing.jsonl")], "missing.jsonl"),
        ]
        for (args, message) in cases {
            let result = try runCLI(args)
            #expect(result.status != 0, "\(args) should fail")
            #expect(result.stderr.contains(message), "\(args): \(result.stderr)")
        }
        #expect(try runCLI(["query", store, "-c", "c", "--help"]).stdout.contains("--filter"))
    }
}
