import Foundation
import LMDB
import Testing
@testable import VecStore

/// Compaction that carries the HNSW graph over by renumbering (HNSW/HNSWRemap.swift, Spec/HNSW.md §5.5).
@Suite("Compaction carries the HNSW graph over")
struct CompactRemapTests {
    /// Clustered vectors (so neighbourhoods mean something), ids `d0`…, a `tag` field.
    static func docs(_ n: Int, dim: Int, seed: UInt64, prefix: String = "d") -> [Document] {
        var r = SeededRandom(seed: seed)
        let centres = (0..<25).map { _ in r.vector(dim) }
        return (0..<n).map { i in
            let c = centres[Int(r.next() % 25)]
            let v = c.map { $0 + 0.35 * Float.random(in: -1...1, using: &r) }
            return Document(id: "\(prefix)\(i)", vector: v, metadata: ["tag": .string(i % 3 == 0 ? "a" : "b")])
        }
    }

    static let params = HNSWParameters(m: 10, efConstruction: 60, efSearch: 16)

    /// Queries near the documents (a document's vector plus noise), as real queries are.
    static func queries(_ n: Int, dim: Int, seed: UInt64) -> [[Float]] {
        let all = docs(3000, dim: dim, seed: 21)
        var r = SeededRandom(seed: seed)
        return (0..<n).map { _ in all[Int(r.next() % 3000)].vector.map { $0 + 0.2 * Float.random(in: -1...1, using: &r) } }
    }

    /// Mean recall@k of graph search at `ef` against exact search.
    static func recall(_ c: VectorCollection, _ queries: [[Float]], k: Int = 10, ef: Int) throws -> Double {
        var total = 0.0
        for q in queries {
            let exact = Set(try c.search(q, k: k, options: SearchOptions(exact: true)).map(\.id))
            let approx = try c.search(q, k: k, options: SearchOptions(ef: ef)).map(\.id)
            total += Double(approx.filter { exact.contains($0) }.count) / Double(max(1, exact.count))
        }
        return total / Double(queries.count)
    }

    static func header(_ store: VecStore, _ name: String) throws -> HNSWConfig? {
        let c = try store.collection(name)
        let dbs = store.dbs
        return try store.read { txn in try HNSWConfig.load(txn, dbs, try c.currentRecord(txn).id) }
    }

    /// A store with `n` documents, of which those with `deleted(i)` are deleted.
    static func makeStore(_ path: String, n: Int, dim: Int, deleted: (Int) -> Bool) throws {
        let store = try VecStore(path: path)
        let c = try store.collection("c", dimension: dim, metric: .cosine, index: .hnsw(params))
        let all = docs(n, dim: dim, seed: 21)
        for chunk in stride(from: 0, to: n, by: 1000) { try c.add(Array(all[chunk..<min(n, chunk + 1000)])) }
        let doomed = (0..<n).filter(deleted).map { "d\($0)" }
        if !doomed.isEmpty { try c.delete(ids: doomed) }
    }

    @Test("after deletes: verify clean, graph valid, recall@10 as a rebuilt graph's (within run-to-run noise)")
    func carriedMatchesRebuilt() throws {
        let dir = try TempDir()
        let carried = dir.path("carried.vecstore"), rebuilt = dir.path("rebuilt.vecstore")
        // 3,000 rows, every 20th deleted (5%) plus a run of 100 (a hole in one neighbourhood).
        try Self.makeStore(carried, n: 3000, dim: 24) { $0 % 20 == 7 || (1200..<1300).contains($0) }
        try FileManager.default.copyItem(atPath: carried, toPath: rebuilt)
        let queries = Self.queries(200, dim: 24, seed: 5)
        let before = try Self.recall(try VecStore(path: carried).collection("c"), queries, ef: 16)

        let report = try VecStore.compact(path: carried)
        #expect(report.tombstonesDropped == 245)
        #expect(report.indexes.count == 1 && report.indexes[0].carried, "\(report.indexes)")
        #expect(report.indexes.first?.detail.contains("refilled") ?? false)
        let slow = try VecStore.compact(path: rebuilt, rebuildIndexes: true)
        #expect(slow.indexes.count == 1 && !slow.indexes[0].carried)

        let a = try VecStore(path: carried), b = try VecStore(path: rebuilt)
        for s in [a, b] {
            let v = try s.verify()
            #expect(v.isOK, "\(v.faults.prefix(5))")
            #expect(try s.collection("c").info().rows == 2755)
            #expect(try s.collection("c").indexKind() == .hnsw(Self.params))
        }
        // Same rows, same levels (a function of the new row numbers), same header but for the entry.
        let ha = try #require(try Self.header(a, "c")), hb = try #require(try Self.header(b, "c"))
        #expect(ha.nodes == 2755 && ha.seed == hb.seed && ha.maxLevel == hb.maxLevel)
        for ef in [10, 16, 32] {
            let ra = try Self.recall(try a.collection("c"), queries, ef: ef)
            let rb = try Self.recall(try b.collection("c"), queries, ef: ef)
            // The rebuilt graph comes from the parallel insert, whose link order varies from run to run:
            // over 200 queries its recall moves by up to ~0.01 (0.962 against 0.970 seen once), so the
            // bound here is 0.02; a broken renumbering loses far more. The 0.005 aim is checked at scale by
            // Tools/bench-scale (BENCHMARKS.md).
            #expect(ra >= rb - 0.02, "ef \(ef): carried \(ra), rebuilt \(rb)")
            // Before compaction searches still route through the deleted nodes; a rebuilt graph loses
            // about as much as the carried one (0.003–0.007 here at ef 16).
            if ef == 16 { #expect(ra >= before - 0.01, "carried \(ra), before compaction \(before)") }
        }
        // The carried graph takes further writes: adds, deletes, then verify and search.
        let c = try a.collection("c")
        try c.add(Self.docs(300, dim: 24, seed: 77, prefix: "n"))
        try c.delete(ids: (0..<50).map { "d\($0 * 3)" })
        #expect(try a.verify().isOK)
        #expect(try Self.recall(c, Array(queries.prefix(40)), ef: 32) >= 0.9)
    }

    @Test("the binary16 copies and the kept links are renumbered exactly")
    func renumberedBytes() throws {
        let dir = try TempDir()
        let path = dir.path("s.vecstore")
        try Self.makeStore(path, n: 1500, dim: 10) { $0 % 7 == 3 }
        // Old graph, by id: layer-0 links (as ids) and binary16 copies.
        func snapshot(_ store: VecStore) throws -> [String: (links: Set<String>, half: [UInt16])] {
            let c = try store.collection("c")
            let dbs = store.dbs
            return try store.read { txn in
                let record = try c.currentRecord(txn)
                let config = try #require(try HNSWConfig.load(txn, dbs, record.id))
                let g = try HNSWGraphView(txn, dbs, record, config, name: "c")
                let view = try CollectionView(txn, dbs, record, name: "c")
                var idOf: [UInt32: String] = [:]
                for row in 0..<record.nextInternalID where view.isLive(row) {
                    let doc = try #require(try txn.get(dbs.docs, Format.key(record.id, row)))
                    idOf[row] = try DocumentRecord.decode(doc, context: "test").externalID
                }
                var out: [String: (Set<String>, [UInt16])] = [:]
                for (row, id) in idOf {
                    let list = g.links0(row)
                    let links = Set((0..<Int(list[0])).compactMap { idOf[list[1 + $0]] })
                    out[id] = (links, Array(UnsafeBufferPointer(start: g.halfVector(row), count: 10)))
                }
                return out
            }
        }
        let old = try snapshot(try VecStore(path: path))
        let report = try VecStore.compact(path: path)
        #expect(report.indexes.first?.carried == true)
        let new = try snapshot(try VecStore(path: path))
        #expect(Set(old.keys) == Set(new.keys))
        var refilled = 0
        for (id, o) in old {
            let n = try #require(new[id])
            #expect(n.half == o.half, "binary16 copy of \(id)")
            // Every kept link survives; links are only added where some were lost.
            #expect(o.links.isSubset(of: n.links), "links of \(id)")
            if n.links.count > o.links.count { refilled += 1 }
        }
        #expect(refilled > 0)
    }

    @Test("deleting the entry point: a new entry on the top level, verify clean")
    func entryPointDeleted() throws {
        let dir = try TempDir()
        let path = dir.path("s.vecstore")
        try Self.makeStore(path, n: 1200, dim: 8) { _ in false }
        do {
            let store = try VecStore(path: path)
            let entry = try #require(try Self.header(store, "c")).entryPoint
            let c = try store.collection("c")
            // Rows are ids here (no deletes yet): delete the entry point and its neighbours' block.
            try c.delete(ids: ["d\(entry)"] + (0..<40).map { "d\($0 * 29)" })
        }
        let report = try VecStore.compact(path: path)
        #expect(report.indexes.first?.carried == true)
        let store = try VecStore(path: path)
        let v = try store.verify()
        #expect(v.isOK, "\(v.faults.prefix(5))")
        #expect(try Self.recall(try store.collection("c"), Self.queries(40, dim: 8, seed: 8), ef: 32) >= 0.9)
    }

    @Test("deleting everything: an empty graph that takes new rows")
    func everythingDeleted() throws {
        let dir = try TempDir()
        let path = dir.path("s.vecstore")
        try Self.makeStore(path, n: 700, dim: 8) { _ in true }
        let report = try VecStore.compact(path: path)
        #expect(report.documents == 0 && report.tombstonesDropped == 700)
        #expect(report.indexes.first?.carried == true)
        let store = try VecStore(path: path)
        #expect(try store.verify().isOK)
        let header = try #require(try Self.header(store, "c"))
        #expect(header.nodes == 0 && header.entryPoint == HNSWConfig.noEntry)
        let c = try store.collection("c")
        try c.add(Self.docs(2000, dim: 8, seed: 3, prefix: "x"))
        #expect(try store.verify().isOK)
        #expect(try Self.recall(c, Self.queries(30, dim: 8, seed: 4), ef: 32) >= 0.9)
    }

    @Test("a damaged graph is rebuilt instead, and the report says why; flat collections are copied")
    func damagedGraphFallsBack() throws {
        let dir = try TempDir()
        let path = dir.path("s.vecstore")
        try Self.makeStore(path, n: 900, dim: 8) { $0 % 5 == 0 }
        do {
            let store = try VecStore(path: path)
            try store.collection("flat", dimension: 8, metric: .l2, index: .flat).add(Self.docs(50, dim: 8, seed: 2))
            let c = try store.collection("c")
            let dbs = store.dbs
            // Row 1's first layer-0 link made a self link.
            try store.write { txn in
                let record = try c.currentRecord(txn)
                let key = Format.key(record.id, 0)
                var block = Array(try #require(try txn.get(dbs.graph, key)))
                let slot = HNSWConfig.create(Self.params, collection: record.id).slotWords0 * 4
                block.replaceSubrange((slot + 4)..<(slot + 8), with: [1, 0, 0, 0])
                block.replaceSubrange(slot..<(slot + 4), with: [max(block[slot], 1), 0, 0, 0])
                try txn.put(dbs.graph, key, block)
            }
            #expect(try !store.verify().isOK)
        }
        let report = try VecStore.compact(path: path)
        #expect(report.indexes.count == 1)
        let index = try #require(report.indexes.first)
        #expect(!index.carried && index.detail.contains("cannot be renumbered"), "\(index.detail)")
        let store = try VecStore(path: path)
        let v = try store.verify()
        #expect(v.isOK, "\(v.faults.prefix(5))")
        #expect(try store.collection("flat").indexKind() == .flat)
        #expect(try store.collection("flat").count() == 50)
        #expect(try store.collection("c").count() == 720)
    }

    @Test("the CLI prints what happened to each graph; --rebuild-index rebuilds")
    func cli() throws {
        let dir = try TempDir()
        let path = dir.path("s.vecstore")
        try Self.makeStore(path, n: 600, dim: 8) { $0 % 9 == 0 }
        let carried = try runCLI(["compact", path])
        #expect(carried.status == 0, "\(carried.stderr)")
        #expect(carried.stdout.contains("c: HNSW carried over"), "\(carried.stdout)")
        try VecStore(path: path).collection("c").delete(ids: ["d1", "d2"])
        let rebuilt = try runCLI(["compact", path, "--rebuild-index"])
        #expect(rebuilt.status == 0, "\(rebuilt.stderr)")
        #expect(rebuilt.stdout.contains("c: rebuilt as asked"), "\(rebuilt.stdout)")
        #expect(try VecStore(path: path).verify().isOK)
    }

    @Test("SIGKILL while a graph is carried over leaves the old or the new store, whole and verified")
    func killWhileCarrying() throws {
        let dir = try TempDir()
        let source = dir.path("source.vecstore")
        try Self.makeStore(source, n: 8000, dim: 16) { $0 % 3 == 0 }
        for (attempt, delay) in [0.05, 0.3, 0.8, 1.5].enumerated() {
            let store = dir.path("s\(attempt).vecstore")
            try FileManager.default.copyItem(atPath: source, toPath: store)
            try killCLI(["compact", store], after: delay)
            do {
                let reopened = try VecStore(path: store)
                let v = try reopened.verify()
                #expect(v.isOK, "delay \(delay): \(v.faults.prefix(3))")
                let info = try reopened.collection("c").info()
                #expect(info.count == 5333)
                #expect(info.rows == 8000 || info.rows == 5333, "rows \(info.rows): neither old nor new store")
            }
            let again = try runCLI(["compact", store])
            #expect(again.status == 0, "\(again.stderr)")
            #expect(again.stdout.contains("HNSW carried over"), "\(again.stdout)")
            #expect(try VecStore(path: store).verify().isOK)
        }
    }

    @Test("HNSWIndex.remap (the index seam's one-transaction hook) renumbers a graph into another store")
    func remapInOneTransaction() throws {
        let dir = try TempDir()
        let old = try VecStore(path: dir.path("old.vecstore"))
        let c = try old.collection("c", dimension: 12, metric: .l2, index: .hnsw(Self.params))
        let all = Self.docs(1500, dim: 12, seed: 31)
        try c.add(all)
        try c.delete(ids: (0..<1500).filter { $0 % 4 == 2 }.map { "d\($0)" })
        // The new store gets the kept rows, in order, as a flat collection; then the graph is remapped.
        let new = try VecStore(path: dir.path("new.vecstore"))
        let target = try new.collection("c", dimension: 12, metric: .l2, index: .flat)
        try target.add((0..<1500).filter { $0 % 4 != 2 }.map { all[$0] })
        let oldDBs = old.dbs, newDBs = new.dbs
        try old.read { oldTxn in
            let oldRecord = try c.currentRecord(oldTxn)
            let config = try #require(try HNSWConfig.load(oldTxn, oldDBs, oldRecord.id))
            let live = try CollectionView.liveWords(oldTxn, oldDBs, oldRecord, name: "c")
            let map = RowMap(liveWords: live, rows: Int(oldRecord.nextInternalID))
            #expect(map.newCount == 1125 && map.oldCount == 1500)
            #expect(config.nodes == 1500)
            let source = IndexRemapSource(txn: oldTxn, dbs: oldDBs, record: oldRecord, newRow: map.newRow)
            let outcome = try new.write { newTxn in
                try HNSWIndex.remap(source, into: newTxn, newDBs, try target.currentRecord(newTxn), name: "c")
            }
            #expect(outcome == .remapped)
        }
        let v = try new.verify()
        #expect(v.isOK, "\(v.faults.prefix(5))")
        #expect(try target.indexKind() == .hnsw(Self.params))
        var r = SeededRandom(seed: 6)
        let queries = (0..<40).map { _ in all[Int(r.next() % 1500)].vector.map { $0 + 0.2 * Float.random(in: -1...1, using: &r) } }
        #expect(try Self.recall(target, queries, ef: 32) >= 0.9)
    }
}
