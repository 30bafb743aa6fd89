import Foundation
import Testing
@testable import VecStore

/// Golden stores written by earlier builds (Tests/Fixtures/<tag>, made by Tools/make-fixtures) must be
/// read by every later build: documents, counts, exact and keyword searches, the graph, and verify.
@Suite("Golden fixtures")
struct FixtureTests {
    static let fixtures = packageRoot.appendingPathComponent("Tests/Fixtures")

    static var tags: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: fixtures.path)) ?? []).filter {
            FileManager.default.fileExists(atPath: fixtures.appendingPathComponent("\($0)/store.vecstore").path)
        }.sorted()
    }

    /// A private copy of the fixture store (opening creates a lock file; a write must not touch the original).
    static func copy(_ tag: String, into dir: TempDir) throws -> String {
        let path = dir.path("\(tag).vecstore")
        try FileManager.default.copyItem(atPath: fixtures.appendingPathComponent("\(tag)/store.vecstore").path,
                                         toPath: path)
        return path
    }

    static func lines(_ tag: String, _ file: String) throws -> [String] {
        try String(contentsOf: fixtures.appendingPathComponent("\(tag)/\(file)"), encoding: .utf8)
            .split(separator: "\n").map(String.init)
    }

    /// `(id, score)` lists of a `--format jsonl` query output line.
    static func results(_ line: String) throws -> [(String, Double)] {
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        let hits = object?["results"] as? [[String: Any]] ?? []
        return hits.map { ($0["id"] as? String ?? "", ($0["score"] as? NSNumber)?.doubleValue ?? .nan) }
    }

    @Test("there is at least one fixture")
    func present() {
        #expect(Self.tags.contains("v2"))
    }

    @Test("every fixture opens, verifies and lists its collections", arguments: tags)
    func opensAndVerifies(tag: String) throws {
        let dir = try TempDir()
        let path = try Self.copy(tag, into: dir)
        let store = try VecStore(path: path, options: StoreOptions(readOnly: true, create: false))
        let report = try store.verify()
        #expect(report.isOK, "\(report.faults.prefix(5))")
        for line in try Self.lines(tag, "expected-collections.txt") {
            let parts = line.split(separator: "\t").map(String.init)
            let info = try store.collection(parts[0]).info()
            #expect("\(info.count) documents" == parts[1])
            #expect("dimension \(info.dimension)" == parts[2])
            #expect("\(info.metric)" == parts[3])
        }
    }

    @Test("every fixture answers the recorded queries (CLI)", arguments: tags)
    func answersQueries(tag: String) throws {
        let dir = try TempDir()
        let path = try Self.copy(tag, into: dir)
        let queries = Self.fixtures.appendingPathComponent("\(tag)/queries.fvecs").path
        var got: [String] = []
        for args in [["-c", "docs", "--id", "cooking/risotto/overview", "-k", "5", "--exact"],
                     ["-c", "points", "--queries", queries, "-k", "5", "--exact"],
                     ["-c", "raw", "--queries", queries, "-k", "5"],
                     ["-c", "docs", "--text", "write-ahead log", "-k", "5"]] {
            let r = try runCLI(["query", path] + args + ["--format", "jsonl"])
            #expect(r.status == 0, "\(r.stderr)")
            got += r.stdout.split(separator: "\n").map(String.init)
        }
        let expected = try Self.lines(tag, "expected-queries.jsonl")
        #expect(got.count == expected.count)
        for (g, e) in zip(got, expected) {
            let a = try Self.results(g), b = try Self.results(e)
            #expect(a.map(\.0) == b.map(\.0), "got \(g)\nexpected \(e)")
            for (x, y) in zip(a, b) { #expect(abs(x.1 - y.1) <= 1e-4 * max(1, abs(y.1))) }
        }
        let doc = try runCLI(["get", path, "-c", "docs", "cooking/risotto/overview"])
        let parse = { (s: String) in try JSONSerialization.jsonObject(with: Data(s.utf8)) as? NSDictionary }
        let want = try Self.lines(tag, "expected-get.jsonl")[0]
        #expect(try parse(doc.stdout) == parse(want))
    }

    @Test("every fixture's graph is searchable and close to exact", arguments: tags)
    func graphSearch(tag: String) throws {
        let dir = try TempDir()
        let path = try Self.copy(tag, into: dir)
        let store = try VecStore(path: path, options: StoreOptions(readOnly: true, create: false))
        let points = try store.collection("points")
        guard case .hnsw = try points.indexKind() else {
            Issue.record("points has no graph")
            return
        }
        var found = 0, total = 0
        var rng = SeededRandom(seed: 7)
        for _ in 0..<20 {
            let q = rng.vector(8)
            let exact = try points.search(q, k: 10, options: SearchOptions(exact: true)).map(\.id)
            let graph = try points.search(q, k: 10, options: SearchOptions(ef: 64, filterStrategy: .graph)).map(\.id)
            found += Set(exact).intersection(graph).count
            total += exact.count
        }
        #expect(Double(found) / Double(total) >= 0.9)
    }
}
