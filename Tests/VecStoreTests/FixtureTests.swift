import Foundation
import Testing
@testable import VecStore

/// Golden stores written by earlier builds (Tests/Fixtures/<tag>, made by Tools/make-fixtures) must be
/// read by every later build: documents, counts, exact and keyword searches, the graph, and verify (v2);
/// one collection per index kind added after v2 with its recorded exact and index searches (v3).
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

    /// The tags of the v2 layout (collections docs, points and raw; expected-get.jsonl).
    static var v2Layout: [String] {
        tags.filter { FileManager.default.fileExists(atPath: fixtures.appendingPathComponent("\($0)/expected-get.jsonl").path) }
    }

    /// The tags whose searches are recorded as {"collection", "args", "results"} lines (expected-searches.jsonl).
    static var recordedSearches: [String] {
        tags.filter {
            FileManager.default.fileExists(atPath: fixtures.appendingPathComponent("\($0)/expected-searches.jsonl").path)
        }
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
        #expect(Self.tags.contains("v3"))
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

    @Test("every fixture answers the recorded queries (CLI)", arguments: v2Layout)
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

    @Test("every fixture's graph is searchable and close to exact", arguments: v2Layout)
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

    // MARK: recorded searches (v3 and later)

    /// One recorded search: `query STORE -c collection args… --format jsonl` and its `(id, score)` lists,
    /// one per query row ("QUERIES" in args stands for the fixture's queries.fvecs).
    struct RecordedSearch {
        var collection: String
        var args: [String]
        var results: [[(String, Double)]]
    }

    static func recorded(_ tag: String) throws -> [RecordedSearch] {
        try lines(tag, "expected-searches.jsonl").map { line in
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] ?? [:]
            let rows = object["results"] as? [[String: Any]] ?? []
            return RecordedSearch(
                collection: object["collection"] as? String ?? "",
                args: object["args"] as? [String] ?? [],
                results: rows.map { row in
                    (row["results"] as? [[String: Any]] ?? []).map {
                        ($0["id"] as? String ?? "", ($0["score"] as? NSNumber)?.doubleValue ?? .nan)
                    }
                })
        }
    }

    /// Compares got against expected: the same ids in the same order, scores within 1e-4 (relative).
    static func expectSame(_ got: [[(String, Double)]], _ want: [[(String, Double)]], _ what: String) {
        #expect(got.count == want.count, "\(what): \(got.count) result lists, expected \(want.count)")
        for (row, (a, b)) in zip(got, want).enumerated() {
            #expect(a.map(\.0) == b.map(\.0), "\(what), query \(row): got \(a.map(\.0)), expected \(b.map(\.0))")
            for (x, y) in zip(a, b) {
                #expect(abs(x.1 - y.1) <= 1e-4 * max(1, abs(y.1)), "\(what), query \(row): \(x) against \(y)")
            }
        }
    }

    /// The vectors of an .fvecs file (little-endian dimension, then that many float32s, per row).
    static func fvecs(_ path: String) throws -> [[Float]] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        var rows: [[Float]] = [], at = 0
        while at + 4 <= data.count {
            let d = Int(data[at]) | Int(data[at + 1]) << 8 | Int(data[at + 2]) << 16 | Int(data[at + 3]) << 24
            at += 4
            rows.append((0..<d).map { i in
                let o = at + 4 * i
                return Float(bitPattern: UInt32(data[o]) | UInt32(data[o + 1]) << 8 | UInt32(data[o + 2]) << 16
                    | UInt32(data[o + 3]) << 24)
            })
            at += 4 * d
        }
        return rows
    }

    @Test("every fixture answers its recorded searches (CLI)", arguments: recordedSearches)
    func answersRecordedSearchesCLI(tag: String) throws {
        let dir = try TempDir()
        let path = try Self.copy(tag, into: dir)
        let queries = Self.fixtures.appendingPathComponent("\(tag)/queries.fvecs").path
        let searches = try Self.recorded(tag)
        #expect(!searches.isEmpty)
        for search in searches {
            let args = search.args.map { $0 == "QUERIES" ? queries : $0 }
            let r = try runCLI(["query", path, "-c", search.collection] + args + ["--format", "jsonl"])
            #expect(r.status == 0, "\(search.collection) \(args): \(r.stderr)")
            let got = try r.stdout.split(separator: "\n").map { try Self.results(String($0)) }
            Self.expectSame(got, search.results, "\(tag) \(search.collection) \(search.args)")
        }
    }

    /// The library's options for a recorded search's CLI arguments (--exact, --force-index, --nprobe,
    /// --refine, --ef, -k).
    static func options(_ args: [String]) -> (k: Int, options: SearchOptions, filter: Filter?) {
        var options = SearchOptions(threads: 2)
        var filter: Filter?
        var k = 10
        var i = 0
        while i < args.count {
            let value = i + 1 < args.count ? Int(args[i + 1]) : nil
            switch args[i] {
            case "--exact": options.exact = true
            case "--force-index": options.filterStrategy = .graph
            case "--nprobe": options.nprobe = value
            case "--refine": options.refine = value
            case "--ef": options.ef = value
            case "-k": k = value ?? k
            case "--filter": filter = i + 1 < args.count ? try? Filter(json: args[i + 1]) : nil
            default: break
            }
            i += 1
        }
        return (k, options, filter)
    }

    @Test("every fixture answers its recorded searches (library, read-only)", arguments: recordedSearches)
    func answersRecordedSearchesLibrary(tag: String) throws {
        let dir = try TempDir()
        let path = try Self.copy(tag, into: dir)
        let store = try VecStore(path: path, options: StoreOptions(readOnly: true, create: false))
        let queries = try Self.fvecs(Self.fixtures.appendingPathComponent("\(tag)/queries.fvecs").path)
        #expect(!queries.isEmpty)
        for search in try Self.recorded(tag) {
            let (k, options, filter) = Self.options(search.args)
            let collection = try store.collection(search.collection)
            if options.filterStrategy == .graph {  // through the index, not the small-collection scan
                #expect(try collection.explainSearch(k: k, filter: filter, options: options).path == .index,
                        "\(search.collection) \(search.args)")
            }
            let got = try collection.searchBatch(queries, k: k, filter: filter, options: options)
                .map { $0.map { ($0.id, Double($0.score)) } }
            Self.expectSame(got, search.results, "\(tag) \(search.collection) \(search.args) (library)")
        }
    }

    @Test("v3: every index kind reads back with its parameters")
    func v3IndexKinds() throws {
        let dir = try TempDir()
        let path = try Self.copy("v3", into: dir)
        let store = try VecStore(path: path, options: StoreOptions(readOnly: true, create: false))
        // collection → (parameters as asked, the trained index's refine, rows in the lists: the live rows and
        // those deleted after compaction)
        let ivf: [String: (IVFParameters, Int, Int)] = [
            "ivf": (IVFParameters(nlist: 8, coding: .flat, lists: .f32), 0, 152),
            "ivf16": (IVFParameters(nlist: 8, coding: .flat, lists: .f16), 0, 152),
            "pq8": (IVFParameters(nlist: 4, coding: .pq(m: 4, bits: 8), pqResidual: true), 4, 260),
            "pq8raw": (IVFParameters(nlist: 4, coding: .pq(m: 2, bits: 8), pqResidual: false), 4, 260),
            "pq4": (IVFParameters(nlist: 8, coding: .pq(m: 4, bits: 4), refine: 2, pqResidual: false), 2, 152),
            "pq4res": (IVFParameters(nlist: 8, coding: .pq(m: 8, bits: 4), pqResidual: true), 4, 152),
        ]
        for (name, (parameters, refine, rows)) in ivf {
            let collection = try store.collection(name)
            let kind = try collection.indexKind()
            #expect(kind == .ivf(parameters), "\(name): \(kind)")
            let info = try #require(try collection.ivfInfo(), "\(name) is not trained")
            var resolved = parameters  // the trained header's values of the fields left to the trainer
            resolved.nprobe = 1
            resolved.refine = refine
            #expect(info.parameters == resolved, "\(name): \(info.parameters)")
            #expect(info.listSizes.count == parameters.nlist)
            #expect(info.listSizes.reduce(0, +) == rows, "\(name): \(info.listSizes)")
        }
        let graph = try store.collection("hnsw8")
        guard case .hnsw(let p) = try graph.indexKind() else {
            Issue.record("hnsw8 has no graph")
            return
        }
        #expect(p.m == 8 && p.traversal == .int8)
        let untrained = try store.collection("untrained")
        #expect(try untrained.indexKind() == .ivf(IVFParameters(nlist: 8, coding: .flat)))
        #expect(try untrained.ivfInfo() == nil)
        #expect(try store.collection("untrained").info().count == 4)
    }
}
