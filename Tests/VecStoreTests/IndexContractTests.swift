import Foundation
import LMDB
import Testing
@testable import VecStore

/// The contract every index kind behind the seam keeps (Index/VectorIndex.swift), run once per
/// registered kind and for flat collections: a kind joins by being listed in `IndexRegistry.kinds`.
@Suite("Index contract", .serialized)
struct IndexContractTests {
    static let dimension = 16
    /// Above `SearchPlan.exactBelowRows`, so unfiltered searches go through the index.
    static let rows = 3000

    /// Every kind a collection can have, with its default parameters (flat first).
    static let kinds: [IndexKind] = IndexRegistry.allDefaults
    /// The registered kinds' names (flat has no index record).
    static let kindNames: [String] = IndexRegistry.kinds.map { kind in kind.name }

    /// Documents whose metadata `g` is `i % 10` (a 10% filter) and `n` is `i`.
    static func documents(_ count: Int, from start: Int = 0, seed: UInt64, prefix: String = "d") -> [Document] {
        var rng = SeededRandom(seed: seed)
        return (start..<(start + count)).map { i in
            Document(id: "\(prefix)\(i)", vector: rng.vector(dimension), text: "document \(i)",
                     metadata: ["g": .number(Double(i % 10)), "n": .number(Double(i))])
        }
    }

    /// The `vecstore import` options that create a collection with index `kind` and its parameters.
    static func cliIndexArguments(_ kind: IndexKind) -> [String] {
        switch kind {
        case .flat: return ["--index", "flat"]
        case .hnsw(let p):
            return ["--index", "hnsw", "--m", "\(p.m)", "--ef-construction", "\(p.efConstruction)", "--ef-search", "\(p.efSearch)"]
        case .ivf(let p):
            var args = ["--index", p.coding == .flat ? "ivf" : "ivf-pq"]
            if let nlist = p.nlist { args += ["--nlist", "\(nlist)"] }
            if p.coding == .flat && p.lists == .f16 { args += ["--ivf-lists", "f16"] }
            if case .pq(let m, let bits) = p.coding {
                args += (m > 0 ? ["--pq-m", "\(m)"] : []) + ["--pq-bits", "\(bits)", "--pq-residual", p.pqResidual ? "on" : "off"]
            }
            if let nprobe = p.nprobe { args += ["--nprobe", "\(nprobe)"] }
            if let refine = p.refine { args += ["--refine", "\(refine)"] }
            return args + ["--seed", "\(p.seed)"]
        }
    }

    static func queries(_ count: Int, seed: UInt64) -> [[Float]] {
        var rng = SeededRandom(seed: seed)
        return (0..<count).map { _ in rng.vector(dimension) }
    }

    /// Mean recall@k of the collection's default search against exact search, over `queries`.
    static func recall(_ c: VectorCollection, _ queries: [[Float]], k: Int, filter: Filter? = nil,
                       options: SearchOptions = SearchOptions()) throws -> Double {
        var found = 0, total = 0
        for q in queries {
            let truth = Set(try c.search(q, k: k, filter: filter, options: SearchOptions(exact: true)).map(\.id))
            let got = try c.search(q, k: k, filter: filter, options: options)
            found += got.filter { truth.contains($0.id) }.count
            total += truth.count
        }
        return total == 0 ? 1 : Double(found) / Double(total)
    }

    /// Every result's score is the exact metric value of its stored vector, results are best first.
    static func expectExactScores(_ c: VectorCollection, _ q: [Float], _ results: [SearchResult]) throws {
        let docs = try c.get(ids: results.map(\.id))
        for (r, d) in zip(results, docs) {
            let d = try #require(d, "result \(r.id) is not stored")
            let v = d.vector
            let expected: Double
            switch c.metric {
            case .l2: expected = zip(q, v).reduce(0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }
            case .dot: expected = zip(q, v).reduce(0) { $0 + Double($1.0 * $1.1) }
            case .cosine:
                let qn = q.reduce(0) { $0 + Double($1 * $1) }.squareRoot()
                let vn = v.reduce(0) { $0 + Double($1 * $1) }.squareRoot()
                expected = zip(q, v).reduce(0) { $0 + Double($1.0 * $1.1) } / (qn * vn)
            }
            #expect(abs(Double(r.score) - expected) < 1e-3 * max(1, abs(expected)), "\(r.id): \(r.score) ≠ \(expected)")
        }
        for (a, b) in zip(results, results.dropFirst()) {
            #expect(c.metric.higherIsCloser ? a.score >= b.score : a.score <= b.score)
        }
    }

    /// Whether database `name` holds a key starting with `prefix`.
    static func hasKeys(_ store: VecStore, _ name: String, prefix: [UInt8]) throws -> Bool {
        guard let db = store.dbs.handle(name) else { return false }
        return try store.read { txn -> Bool in
            try txn.withCursor(db) { (cur: Cursor) throws -> Bool in
                guard let found = try cur.seek(atLeast: prefix) else { return false }
                return found.key.starts(with: prefix)
            }
        }
    }

    static func expectVerified(_ store: VecStore, _ what: String) throws {
        let report = try store.verify()
        #expect(report.isOK, "\(what): \(report.faults.prefix(5))")
    }

    @Test("add, upsert and delete keep the index searchable, exact in scores, and verified", arguments: kinds)
    func writes(kind: IndexKind) throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("s.vecstore"))
        let c = try store.collection("c", dimension: Self.dimension, metric: .l2, index: kind)
        #expect(try c.indexKind() == kind)
        #expect(try c.indexStats().kind == kind.name)
        let docs = Self.documents(Self.rows, seed: 1)
        // Several batches, so the writer's later batches extend an existing index.
        for start in stride(from: 0, to: docs.count, by: 1000) {
            try c.add(Array(docs[start..<min(docs.count, start + 1000)]))
        }
        try Self.expectVerified(store, "after add")
        let qs = Self.queries(30, seed: 2)
        #expect(try Self.recall(c, qs, k: 10) >= 0.9)
        for q in qs.prefix(5) { try Self.expectExactScores(c, q, try c.search(q, k: 10)) }

        // Upsert: moved vectors are found at their new place (each is its own nearest neighbour).
        var rng = SeededRandom(seed: 3)
        let moved = (0..<100).map { i in
            Document(id: "d\(i * 7)", vector: rng.vector(Self.dimension), metadata: ["g": .number(Double(i % 10))])
        }
        try c.upsert(moved)
        #expect(try c.count() == Self.rows)
        var selfFound = 0
        for d in moved where try c.search(d.vector, k: 1).first?.id == d.id { selfFound += 1 }
        #expect(selfFound >= 95, "\(selfFound) of 100 upserted vectors are their own nearest neighbour")
        try Self.expectVerified(store, "after upsert")

        // Delete: gone from every result, counts follow.
        let deleted = (0..<300).map { "d\($0 * 10 + 3)" }
        #expect(try c.delete(ids: deleted) == 300)
        #expect(try c.count() == Self.rows - 300)
        let gone = Set(deleted)
        for q in qs { #expect(try c.search(q, k: 20).allSatisfy { !gone.contains($0.id) }) }
        #expect(try Self.recall(c, qs, k: 10) >= 0.9)
        try Self.expectVerified(store, "after delete")
    }

    @Test("filtered search returns only matches, by every strategy, close to exact filtered search",
          arguments: kinds)
    func filters(kind: IndexKind) throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("s.vecstore"))
        let c = try store.collection("c", dimension: Self.dimension, metric: .cosine, index: kind)
        try c.add(Self.documents(Self.rows, seed: 4))
        try c.delete(ids: (0..<50).map { "d\($0 * 20)" })
        let qs = Self.queries(20, seed: 5)
        let broad: Filter = .field("g", .lessThan(5))  // half the rows
        let narrow: Filter = .field("g", .equals(.number(3)))  // a tenth
        for filter in [broad, narrow] {
            for strategy in [FilterStrategy.automatic, .graph, .exact] {
                let options = SearchOptions(filterStrategy: strategy)
                for q in qs.prefix(5) {
                    let hits = try c.search(q, k: 10, filter: filter, options: options)
                    #expect(hits.count == 10)
                    for doc in try c.get(ids: hits.map(\.id)) {
                        let g = try #require(doc?.metadata["g"])
                        #expect(filter == broad ? (g == .number(0) || g == .number(1) || g == .number(2)
                                                   || g == .number(3) || g == .number(4)) : g == .number(3))
                    }
                    try Self.expectExactScores(c, q, hits)
                }
                #expect(try Self.recall(c, qs, k: 10, filter: filter, options: options) >= 0.85,
                        "\(kind.name) \(strategy)")
            }
        }
        // Through the planner's other users: batch search, search by a stored document, hybrid, dedup.
        let batch = try c.searchBatch(qs, k: 5, filter: narrow)
        #expect(batch.count == qs.count && batch.allSatisfy { $0.count == 5 })
        let similar = try c.search(similarTo: "d1", k: 5)
        #expect(similar.count == 5 && !similar.contains { $0.id == "d1" })
        let hybrid = try c.hybridSearch(text: "document", vector: qs[0], k: 5, filter: narrow)
        #expect(hybrid.count == 5)
        try c.upsert([Document(id: "twin", vector: try #require(try c.get(id: "d1")).vector)])
        let pairs = try c.nearDuplicates(threshold: 0.9999)
        #expect(pairs.contains { Set([$0.a, $0.b]) == ["d1", "twin"] })
    }

    @Test("compaction carries the index over (remap or rebuild): same kind, verified, same answers",
          arguments: kinds)
    func compact(kind: IndexKind) throws {
        let dir = try TempDir()
        let path = dir.path("s.vecstore")
        let qs = Self.queries(30, seed: 7)
        var before: [[String]] = []
        do {
            let store = try VecStore(path: path)
            let c = try store.collection("c", dimension: Self.dimension, metric: .cosine, index: kind)
            try c.add(Self.documents(Self.rows, seed: 6))
            try c.delete(ids: (0..<500).map { "d\($0 * 6)" })
            before = try qs.map { try c.search($0, k: 10, options: SearchOptions(exact: true)).map(\.id) }
            store.close()
        }
        let report = try VecStore.compact(path: path)
        #expect(report.documents == Self.rows - 500 && report.tombstonesDropped == 500)
        let store = try VecStore(path: path)
        let c = try store.collection("c")
        #expect(try c.indexKind() == kind)
        #expect(try c.info().rows == Self.rows - 500)
        try Self.expectVerified(store, "after compaction")
        let after = try qs.map { try c.search($0, k: 10, options: SearchOptions(exact: true)).map(\.id) }
        #expect(after == before, "exact answers changed by compaction")
        #expect(try Self.recall(c, qs, k: 10) >= 0.9)
        // Writes after compaction extend the carried-over index.
        try c.add(Self.documents(200, from: Self.rows, seed: 8))
        try Self.expectVerified(store, "after a write following compaction")
        #expect(try Self.recall(c, qs, k: 10) >= 0.9)
    }

    @Test("dropping and rebuilding the index: flat in between, verified, same kind after", arguments: kinds)
    func rebuild(kind: IndexKind) throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("s.vecstore"))
        let c = try store.collection("c", dimension: Self.dimension, metric: .l2, index: kind)
        try c.add(Self.documents(2000, seed: 9))
        try c.dropIndex()
        #expect(try c.indexKind() == .flat)
        #expect(try c.indexStats() == IndexStats(kind: "flat", lines: []))
        try Self.expectVerified(store, "after drop")
        // A dropped index leaves nothing behind in the kinds' databases.
        let prefix = Format.prefix(c.collectionID)
        for kind in IndexRegistry.kinds {
            for entry in kind.databases {
                #expect(try !Self.hasKeys(store, entry.name, prefix: prefix),
                        "\(entry.name) keeps keys of a collection without an index")
            }
        }
        try c.buildIndex(kind: kind, threads: 2)
        #expect(try c.indexKind() == kind)
        try Self.expectVerified(store, "after rebuild")
        #expect(try Self.recall(c, Self.queries(20, seed: 10), k: 10) >= 0.9)
        // Dropping the collection removes its index records too.
        #expect(try store.dropCollection("c"))
        try Self.expectVerified(store, "after dropping the collection")
    }

    @Test("verify reports an index record whose collection does not exist", arguments: kindNames)
    func orphanRecord(kindName: String) throws {
        let kind = try #require(IndexRegistry.kind(named: kindName))
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("s.vecstore"))
        _ = try store.collection("c", dimension: 4, metric: .l2, index: kind.defaultParameters)
        try store.write { txn in
            guard let v = try txn.get(store.dbs.meta, kind.metaPrefix + Format.prefix(1)) else {
                throw VecStoreError.corrupt("no index record")
            }
            try txn.put(store.dbs.meta, kind.metaPrefix + Format.prefix(77), Array(v))
        }
        let report = try store.verify()
        #expect(report.faults.contains { $0.contains("unknown collection id 77") }, "\(report.faults)")
    }

    @Test("an index record of a newer version means 'written by a newer vecstore', not damage",
          arguments: kindNames)
    func newerRecord(kindName: String) throws {
        let kind = try #require(IndexRegistry.kind(named: kindName))
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("s.vecstore"))
        let c = try store.collection("c", dimension: 4, metric: .l2, index: kind.defaultParameters)
        try c.add(Self.documents(10, seed: 13).map { d in Document(id: d.id, vector: Array(d.vector.prefix(4))) })
        // Byte 0 of every kind's record is its record version (Spec/FORMAT.md §20.2).
        try store.write { txn in
            let key = kind.metaPrefix + Format.prefix(c.collectionID)
            guard let v = try txn.get(store.dbs.meta, key) else { throw VecStoreError.corrupt("no index record") }
            var bytes = Array(v)
            bytes[0] = 0xFE
            try txn.put(store.dbs.meta, key, bytes)
        }
        func isNewer(_ body: () throws -> Void) -> Bool {
            do { try body() } catch let e as VecStoreError {
                if case .newerFormat = e { return "\(e)".contains("newer vecstore") }
                return false
            } catch { return false }
            return false
        }
        #expect(isNewer { _ = try c.indexKind() })
        #expect(isNewer { _ = try c.search([1, 0, 0, 0], k: 3) })
        #expect(isNewer { try c.add([Document(id: "x", vector: [1, 2, 3, 4])]) })
        #expect(try c.count() == 10, "the refused write changed nothing")
    }

    @Test("SIGKILL of an importing process mid-batch leaves whole batches and a valid index", arguments: kinds)
    func crash(kind: IndexKind) throws {
        let dir = try TempDir()
        let input = dir.path("in.jsonl")
        let total = 8000, batch = 1000
        try Data(jsonl(Self.documents(total, seed: 11)).utf8).write(to: URL(fileURLWithPath: input))
        let path = dir.path("s.vecstore")
        let p = try startCLI(["import", path, "-c", "c"] + Self.cliIndexArguments(kind) + [input, "--batch-size", "\(batch)"])
        // Kill once the first batch is on disk (or the import has finished).
        let deadline = Date().addingTimeInterval(60)
        while p.isRunning && Date() < deadline {
            if FileManager.default.fileExists(atPath: path),
               let s = try? VecStore(path: path, options: StoreOptions(readOnly: true, create: false)),
               let n = try? s.collection("c").count(), n > 0 {
                s.close()
                break
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        Thread.sleep(forTimeInterval: 0.05)
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let store = try VecStore(path: path)
        try Self.expectVerified(store, "after SIGKILL")
        let c = try store.collection("c")
        #expect(try c.indexKind() == kind)
        let count = try c.count()
        #expect(count > 0 && count % batch == 0, "\(count) documents: not whole batches of \(batch)")
        #expect(try c.get(id: "d\(count - 1)") != nil && c.get(id: "d\(count)") == nil)
        // The store takes the rest of the input, and the index answers as before.
        let resumed = try runCLI(["import", path, "-c", "c", input, "--batch-size", "\(batch)"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try c.count() == total)
        try Self.expectVerified(store, "after resuming")
        #expect(try Self.recall(c, Self.queries(20, seed: 12), k: 10) >= 0.9)
    }
}
