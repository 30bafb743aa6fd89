import Foundation
import Testing
@testable import VecStore

/// Keyword search, hybrid, eval, text-index and dedup through the CLI.
@Suite("vecstore CLI: keyword search, eval, dedup")
struct BM25CLITests {
    func write(_ dir: TempDir, _ name: String, _ text: String) throws -> String {
        let path = dir.path(name)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// A small BEIR-like corpus: ids, titles, texts and 2-d vectors.
    func corpus(_ dir: TempDir) throws -> String {
        let lines = [
            #"{"_id": "d1", "title": "Vitamin D", "text": "Vitamin D deficiency and bone health.", "vector": [1, 0]}"#,
            #"{"_id": "d2", "title": "Sleep", "text": "Sleep deprivation harms memory.", "vector": [0, 1]}"#,
            #"{"_id": "d3", "title": "Codes", "text": "The part XYZ-123 failed twice.", "vector": [0.7, 0.7]}"#,
            #"{"_id": "d4", "title": "Bones", "text": "Calcium and vitamin intake for bones.", "vector": [0.9, 0.1]}"#,
        ]
        let input = try write(dir, "corpus.jsonl", lines.joined(separator: "\n") + "\n")
        let store = dir.path("s.vecstore")
        let r = try runCLI(["import", store, "-c", "c", input, "--text-field", "title", "--text-field", "text"])
        #expect(r.status == 0, "\(r.stderr)")
        return store
    }

    @Test("query --text: BM25 alone, hybrid with --vector/--id, --rrf, jsonl")
    func keywordAndHybridQueries() throws {
        let dir = try TempDir()
        let store = try corpus(dir)
        let text = try runCLI(["query", store, "-c", "c", "--text", "xyz123", "--format", "jsonl"])
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.contains("\"d3\"") && !text.stdout.contains("\"d1\""))
        let table = try runCLI(["query", store, "-c", "c", "--text", "vitamin deficiency", "-k", "2"])
        #expect(table.status == 0)
        #expect(table.stdout.contains("d1"))
        let hybrid = try runCLI(["query", store, "-c", "c", "--text", "memory", "--vector", "1,0", "--alpha", "0", "-k", "1",
                                 "--format", "jsonl"])
        #expect(hybrid.status == 0, "\(hybrid.stderr)")
        #expect(hybrid.stdout.contains("\"d2\""))
        let byID = try runCLI(["query", store, "-c", "c", "--text", "bones", "--id", "d1", "--rrf", "-k", "3", "--format", "jsonl"])
        #expect(byID.status == 0, "\(byID.stderr)")
        #expect(!byID.stdout.contains("\"d1\""))
        #expect(byID.stdout.contains("\"d4\""))
        let bad = try runCLI(["query", store, "-c", "c", "--text", "x", "--vector", "1,0", "--alpha", "0.5", "--rrf"])
        #expect(bad.status != 0)
        #expect(try runCLI(["query", store, "-c", "c", "--alpha", "0.5", "--vector", "1,0"]).status != 0)
    }

    @Test("eval: table and json with BEIR queries, qrels and query vectors")
    func eval() throws {
        let dir = try TempDir()
        let store = try corpus(dir)
        let queries = try write(dir, "q.jsonl", #"{"_id": "q1", "text": "vitamin D"}"# + "\n"
                                + #"{"_id": "q2", "text": "sleep memory"}"# + "\n" + #"{"_id": "q3", "text": "unjudged"}"# + "\n")
        let qrels = try write(dir, "qrels.tsv", "query-id\tcorpus-id\tscore\r\nq1\td1\t1\r\nq2\td2\t1\r\n")
        var fv = Data()
        for v: [Float] in [[1, 0], [0, 1], [1, 1]] {
            withUnsafeBytes(of: Int32(2).littleEndian) { fv.append(contentsOf: $0) }
            for x in v { withUnsafeBytes(of: x.bitPattern.littleEndian) { fv.append(contentsOf: $0) } }
        }
        let vectors = dir.path("q.fvecs")
        try fv.write(to: URL(fileURLWithPath: vectors))
        let ids = try write(dir, "q_ids.txt", "q1\nq2\nq3\n")
        let json = try runCLI(["eval", store, "-c", "c", "--queries", queries, "--qrels", qrels, "--query-vectors", vectors,
                               "--query-ids", ids, "--format", "json"])
        #expect(json.status == 0, "\(json.stderr)")
        guard case .object(let o) = try JSONValue.parse(json.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            Issue.record("not a JSON object: \(json.stdout)")
            return
        }
        for method in ["bm25", "vector", "hybrid", "rrf"] {
            guard case .object(let m)? = o[method] else { Issue.record("no \(method)"); continue }
            // Both judged queries find their document first with every method on this corpus.
            #expect(m["ndcg@10"] == .number(1), "\(method)")
            #expect(m["mrr"] == .number(1), "\(method)")
            #expect(m["p@1"] == .number(1), "\(method)")
            #expect(m["r@10"] == .number(1), "\(method)")
        }
        #expect(o["queries"] == .number(2))
        let table = try runCLI(["eval", store, "-c", "c", "--queries", queries, "--qrels", qrels])
        #expect(table.status == 0)
        #expect(table.stdout.contains("bm25") && table.stdout.contains("ndcg@10"))
        #expect(!table.stdout.contains("hybrid"))
    }

    @Test("text-index shows and changes options; dedup finds the planted pair")
    func textIndexAndDedup() throws {
        let dir = try TempDir()
        let store = try corpus(dir)
        let shown = try runCLI(["text-index", store, "-c", "c"])
        #expect(shown.status == 0)
        #expect(shown.stdout.contains("stemmer english") && shown.stdout.contains("k1 1.2"))
        let changed = try runCLI(["text-index", store, "-c", "c", "--stemmer", "none", "--no-stop-words", "--k1", "0.9"])
        #expect(changed.status == 0, "\(changed.stderr)")
        #expect(changed.stdout.contains("stemmer none") && changed.stdout.contains("stop words off"))
        #expect(try runCLI(["text-index", store, "-c", "c", "--stemmer", "klingon"]).status != 0)
        #expect(try runCLI(["verify", store]).status == 0)
        let dedup = try runCLI(["dedup", store, "-c", "c", "--threshold", "0.99", "--format", "jsonl"])
        #expect(dedup.status == 0, "\(dedup.stderr)")
        #expect(dedup.stdout.split(separator: "\n").count == 1)
        #expect(dedup.stdout.contains("\"d1\"") && dedup.stdout.contains("\"d4\""))
        // import sets the options of a new collection and re-analyses an existing one when they differ.
        let other = dir.path("o.vecstore")
        let input = try write(dir, "one.jsonl", #"{"id": "x", "vector": [1, 0], "text": "Running runs"}"# + "\n")
        #expect(try runCLI(["import", other, "-c", "c", input, "--stemmer", "none", "--no-stop-words"]).status == 0)
        let plain = try VecStore(path: other).collection("c")
        #expect(try plain.textIndexOptions().analyzer == AnalyzerOptions(stemmer: nil, stopWords: false))
        #expect(try plain.searchText("run", k: 1).isEmpty)
        #expect(try runCLI(["import", other, "-c", "c", input, "--stemmer", "english"]).status == 0)
        #expect(try plain.searchText("run", k: 1).map(\.id) == ["x"])
        #expect(try runCLI(["import", other, "-c", "c", input, "--stemmer", "klingon"]).status != 0)
        let known = try write(dir, "known.txt", "d4 d1\nd2 d3\n")
        let scored = try runCLI(["dedup", store, "-c", "c", "--threshold", "0.99", "--known-pairs", known])
        #expect(scored.stderr.contains("precision 1.0000, recall 0.5000"))
    }
}
