import Foundation
import Testing
@testable import VecStore
import VecStoreIO
import LMDB
@testable import VecStoreKernels

/// A fresh store path in the temporary directory, removed with its lock file by `cleanup`.
private func temporaryStorePath(_ tag: String) -> String {
    NSTemporaryDirectory() + "hnsw-\(tag)-\(UUID().uuidString).vecstore"
}

private func cleanup(_ path: String) {
    for p in [path, path + "-lock", path + ".compacting", path + ".compacting-lock"] {
        try? FileManager.default.removeItem(atPath: p)
    }
}

/// `../shared/data` beside the package root, found from this file's path.
private let dataDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/data").path

/// Deterministic pseudo-random vectors.
private struct Rand {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func float() -> Float { Float(next() >> 40) / Float(1 << 24) * 2 - 1 }
    mutating func vector(_ d: Int) -> [Float] { (0..<d).map { _ in float() } }
}

/// Documents with clustered random vectors (so neighbourhoods are meaningful) and a `tag` field:
/// "rare" on every 50th document, "half" on even ones, "other" otherwise.
/// Rewrites every layer-0 list of `c`'s graph in place (test damage): `edit(row, list)` returns the list to store.
private func rewriteLayer0(_ store: VecStore, _ c: VectorCollection, _ edit: (UInt32, [UInt32]) -> [UInt32]) throws {
    try store.write { txn in
        let record = try c.currentRecord(txn)
        let config = try #require(try HNSWConfig.load(txn, store.dbs, c.collectionID))
        let prefix = Format.prefix(c.collectionID)
        var blocks: [([UInt8], [UInt8])] = []
        try txn.withCursor(store.dbs.graph) { (cur: Cursor) throws -> Void in
            var entry = try cur.seek(atLeast: prefix)
            while let (key, value) = entry, key.starts(with: prefix) {
                blocks.append((Array(key), Array(value)))
                entry = try cur.next()
            }
        }
        let slotWords = config.slotWords0
        for (block, (key, value)) in blocks.enumerated() {
            var words = value.withUnsafeBytes { raw in (0..<(raw.count / 4)).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self) } }
            for slot in stride(from: 0, to: words.count, by: slotWords) {
                let row = UInt32(block * record.blockCapacity + slot / slotWords)
                let list = edit(row, Array(words[(slot + 1)..<(slot + 1 + Int(words[slot]))]))
                words[slot] = UInt32(list.count)
                for (j, t) in list.enumerated() { words[slot + 1 + j] = t }
            }
            try txn.put(store.dbs.graph, key, words.withUnsafeBytes { Array($0) })
        }
    }
}

/// Runs the reconnection a large parallel insert step ends with (`HNSWEditor.reconnectUnreachable`) on
/// `c`'s graph in one write; returns the links it added or replaced.
private func reconnect(_ store: VecStore, _ c: VectorCollection) throws -> Int {
    try store.write { txn in
        let record = try c.currentRecord(txn)
        let config = try #require(try HNSWConfig.load(txn, store.dbs, c.collectionID))
        let view = try CollectionView(txn, store.dbs, record, name: c.name)
        let editor = try HNSWEditor(txn, store.dbs, record: record, config: config, name: c.name, fresh: false)
        let added = CandidateMask.with(view.liveWords) { live in
            editor.reconnectUnreachable(L2Distance.self, VectorTable(view), live: live)
        }
        try editor.write(txn, store.dbs)
        return added
    }
}

private func makeDocs(_ n: Int, dim: Int, seed: UInt64, idPrefix: String = "d") -> [Document] {
    var r = Rand(state: seed)
    let centres = (0..<20).map { _ in r.vector(dim) }
    return (0..<n).map { i in
        let c = centres[Int(r.next() % 20)]
        let v = c.map { $0 + 0.3 * r.float() }
        let tag = i % 50 == 0 ? "rare" : (i % 2 == 0 ? "half" : "other")
        return Document(id: "\(idPrefix)\(i)", vector: v, metadata: ["tag": .string(tag), "i": .number(Double(i))])
    }
}

/// Mean overlap of the result id sets with the exact results.
private func recallVsExact(_ c: VectorCollection, _ queries: [[Float]], k: Int, filter: Filter? = nil,
                           ef: Int? = nil) throws -> Double {
    var total = 0.0
    for q in queries {
        let exact = Set(try c.search(q, k: k, filter: filter, options: SearchOptions(exact: true)).map(\.id))
        let approx = try c.search(q, k: k, filter: filter, options: SearchOptions(ef: ef)).map(\.id)
        total += Double(approx.filter { exact.contains($0) }.count) / Double(max(1, exact.count))
    }
    return total / Double(queries.count)
}

@Suite("HNSW index")
struct HNSWTests {
    @Test("siftsmall: recall@10 ≥ 0.95 at ef=64 against the published ground truth",
          .enabled(if: FileManager.default.fileExists(atPath: dataDirectory + "/siftsmall/siftsmall_base.fvecs")))
    func siftsmallRecall() throws {
        let dir = dataDirectory + "/siftsmall"
        let base = try readVecs(dir + "/siftsmall_base.fvecs", as: Float.self)
        let queries = Array(try readVecs(dir + "/siftsmall_query.fvecs", as: Float.self).prefix(50))
        let truth = try readVecs(dir + "/siftsmall_groundtruth.ivecs", as: Int32.self)
        let path = temporaryStorePath("sift")
        defer { cleanup(path) }
        let store = try VecStore(path: path)
        let c = try store.collection("sift", dimension: 128, metric: .l2,
                                     index: .hnsw(HNSWParameters(m: 16, efConstruction: 100)))
        try c.add(base.enumerated().map { Document(id: String($0.offset), vector: $0.element) })
        #expect(try store.verify().isOK)
        var total = 0.0
        for (qi, q) in queries.enumerated() {
            let hits = try c.search(q, k: 10, options: SearchOptions(ef: 64)).map(\.id)
            let want = Set(truth[qi].prefix(10).map { String($0) })
            total += Double(hits.filter { want.contains($0) }.count) / 10
        }
        let recall = total / Double(queries.count)
        #expect(recall >= 0.95, "recall@10 \(recall)")
        // --exact is the ground truth: it matches the published neighbours.
        let exact = try c.search(queries[0], k: 10, options: SearchOptions(exact: true)).map(\.id)
        #expect(exact == truth[0].prefix(10).map { String($0) })
    }

    @Test("incremental adds in small batches keep the graph valid and the recall high")
    func incrementalAdds() throws {
        let path = temporaryStorePath("inc")
        defer { cleanup(path) }
        let store = try VecStore(path: path)
        let docs = makeDocs(1500, dim: 24, seed: 1)
        let c = try store.collection("c", dimension: 24, metric: .cosine)
        try c.add(Array(docs[0..<1000]))
        var start = 1000
        while start < docs.count {
            try c.add(Array(docs[start..<min(docs.count, start + 37)]))
            start += 37
        }
        let report = try store.verify()
        #expect(report.isOK, "\(report.faults.prefix(5))")
        var r = Rand(state: 99)
        let queries = (0..<30).map { _ in r.vector(24) }
        #expect(try recallVsExact(c, queries, k: 10) >= 0.95)
        #expect(try c.indexKind() == .hnswDefault)
    }

    @Test("serial inserts raise the entry point when a row lands above the top level")
    func serialInsertsRaiseEntryPoint() throws {
        let path = temporaryStorePath("entry")
        defer { cleanup(path) }
        let store = try VecStore(path: path)
        let c = try store.collection("c", dimension: 8, metric: .l2)
        let docs = makeDocs(1200, dim: 8, seed: 19)
        var start = 0
        while start < docs.count {  // batches below the parallel threshold: the serial insert path
            try c.add(Array(docs[start..<min(docs.count, start + 100)]))
            start += 100
            let report = try store.verify()
            #expect(report.isOK, "after \(start) rows: \(report.faults.prefix(3))")
        }
        let config = try #require(try store.read { txn in try HNSWConfig.load(txn, store.dbs, c.collectionID) })
        let top = (0..<UInt32(1200)).map { config.level(of: $0) }.max() ?? 0
        #expect(config.maxLevel == top)
        #expect(config.level(of: config.entryPoint) == top)
        var r = Rand(state: 20)
        let queries = (0..<20).map { _ in r.vector(8) }
        #expect(try recallVsExact(c, queries, k: 10) >= 0.95)
    }

    @Test("deleting documents removes them from results at once, repairs the graph and moves the entry point")
    func deleteRepair() throws {
        let path = temporaryStorePath("del")
        defer { cleanup(path) }
        let store = try VecStore(path: path)
        let docs = makeDocs(2000, dim: 16, seed: 2)
        let c = try store.collection("c", dimension: 16, metric: .l2)
        try c.add(docs)
        let entryBefore = try store.read { txn in try HNSWConfig.load(txn, store.dbs, c.collectionID)?.entryPoint }
        // Delete 30%, including the entry point's document.
        var doomed = Set(stride(from: 0, to: 2000, by: 3).map { "d\($0)" })
        if let e = entryBefore { doomed.insert("d\(e)") }
        try c.delete(ids: Array(doomed))
        let config = try store.read { txn in try HNSWConfig.load(txn, store.dbs, c.collectionID) }
        #expect(config?.entryPoint != entryBefore)
        let report = try store.verify()
        #expect(report.isOK, "\(report.faults.prefix(5))")
        var r = Rand(state: 7)
        let queries = (0..<40).map { _ in r.vector(16) }
        for q in queries {
            let hits = try c.search(q, k: 10)
            #expect(hits.count == 10)
            #expect(hits.allSatisfy { !doomed.contains($0.id) })
        }
        #expect(try recallVsExact(c, queries, k: 10) >= 0.9)
        // The repaired lists no longer point at deleted nodes that listed them.
        try store.read { txn in
            let record = try c.currentRecord(txn)
            let view = try CollectionView(txn, store.dbs, record, name: "c")
            let graph = try HNSWGraphView(txn, store.dbs, record, #require(config), name: "c")
            var danglingMutual = 0
            for node in 0..<record.nextInternalID where view.isLive(node) {
                let list = graph.links0(node)
                for j in 0..<Int(list[0]) where !view.isLive(list[1 + j]) {
                    let back = graph.links0(list[1 + j])
                    if (0..<Int(back[0])).contains(where: { back[1 + $0] == node }) { danglingMutual += 1 }
                }
            }
            #expect(danglingMutual == 0)
        }
        // Deleting everything leaves an empty, valid graph; adding again works.
        try c.delete(ids: docs.map(\.id))
        #expect(try store.verify().isOK)
        #expect(try c.search(queries[0], k: 5).isEmpty)
        try c.add(Array(makeDocs(50, dim: 16, seed: 3, idPrefix: "n")))
        #expect(try store.verify().isOK)
        #expect(try c.search(queries[0], k: 5).count == 5)
    }

    @Test("index show counts the live rows no link reaches from the entry point")
    func unreachableRowsCounted() throws {
        let path = temporaryStorePath("reach")
        defer { cleanup(path) }
        let store = try VecStore(path: path)
        let c = try store.collection("c", dimension: 16, metric: .l2)
        try c.add(makeDocs(400, dim: 16, seed: 4))
        func line() throws -> String? { try c.indexStats().lines.first { $0.key == "unreachable live rows" }?.value }
        // Serial insertion on a seeded level draw: every row is reachable.
        #expect(try line() == "0")
        let config = try #require(try store.read { txn in try HNSWConfig.load(txn, store.dbs, c.collectionID) })
        // Cut every layer-0 link to two rows of level 0 (not the entry point): still a valid graph, but a search
        // can no longer reach them.
        let cut = (0..<UInt32(400)).filter { config.level(of: $0) == 0 && $0 != config.entryPoint }.suffix(2)
        try rewriteLayer0(store, c) { _, list in list.filter { !cut.contains($0) } }
        let value = try #require(try line())
        #expect(value.hasPrefix("2 (rows \(cut.map(String.init).joined(separator: ", "));"), "\(value)")
        // Not an invariant (construction does not guarantee it): verify still passes.
        #expect(try store.verify().isOK)
        // The walk is `index show`'s alone: `vecstore stats` reads the summary, which leaves the line out.
        let summary = try c.indexStats(depth: .summary)
        #expect(!summary.lines.contains { $0.key == "unreachable live rows" })
        #expect(summary.lines == (try c.indexStats()).lines.filter { $0.key != "unreachable live rows" })
        #expect(try store.stats().indexes == [summary])
        // Deleting one of them leaves one.
        try c.delete(ids: ["d\(cut.first ?? 0)"])
        #expect(try line()?.hasPrefix("1 (rows \(cut.last ?? 0);") == true)
        // The reconnection a parallel insert step ends with gives it a link back (from its nearest reachable
        // neighbour) and leaves a valid graph.
        let added = try reconnect(store, c)
        #expect(added == 1)
        #expect(try line() == "0")
        #expect(try store.verify().isOK)
    }

    @Test("reconnection into a full list replaces its farthest link and leaves every row reachable")
    func reconnectIntoFullList() throws {
        let path = temporaryStorePath("reachfull")
        defer { cleanup(path) }
        let store = try VecStore(path: path)
        // M = 4: layer-0 lists hold at most 8 links, so most are full.
        let c = try store.collection("c", dimension: 16, metric: .l2, index: .hnsw(HNSWParameters(m: 4)))
        let docs = makeDocs(400, dim: 16, seed: 6)
        try c.add(docs)
        func l2(_ a: UInt32, _ b: UInt32) -> Float {
            zip(docs[Int(a)].vector, docs[Int(b)].vector).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
        }
        let (u, n, cap) = try store.read { txn -> (UInt32, UInt32, Int) in
            let record = try c.currentRecord(txn)
            let config = try #require(try HNSWConfig.load(txn, store.dbs, c.collectionID))
            let graph = try HNSWGraphView(txn, store.dbs, record, config, name: "c")
            let u = try #require((0..<UInt32(400)).first { config.level(of: $0) == 0 && $0 != config.entryPoint })
            let own = graph.links0(u)
            let n = try #require((0..<Int(own[0])).map { own[1 + $0] }.min { l2(u, $0) < l2(u, $1) })
            return (u, n, config.maxLinks0)
        }
        // Cut every layer-0 link to u, and fill n's list (u's nearest own link, where the reconnection
        // will put it) to 2M links, so the reconnection must replace one.
        try rewriteLayer0(store, c) { row, list in
            var kept = list.filter { $0 != u }
            if row == n {
                for r in UInt32(0)..<400 where kept.count < cap && r != u && r != n && !kept.contains(r) { kept.append(r) }
            }
            return kept
        }
        #expect(try c.indexStats().lines.first { $0.key == "unreachable live rows" }?.value.hasPrefix("1 (rows \(u);") == true)
        let added = try reconnect(store, c)
        #expect(added >= 1)
        #expect(try c.indexStats().lines.first { $0.key == "unreachable live rows" }?.value == "0")
        #expect(try store.verify().isOK)
        // The list that took u is still full: u replaced a link, the count did not grow past 2M.
        try store.read { txn in
            let record = try c.currentRecord(txn)
            let config = try #require(try HNSWConfig.load(txn, store.dbs, c.collectionID))
            let graph = try HNSWGraphView(txn, store.dbs, record, config, name: "c")
            let holders = (0..<UInt32(400)).filter { r in
                let l = graph.links0(r)
                return (0..<Int(l[0])).contains { l[1 + $0] == u }
            }
            #expect(holders.contains(n))
            #expect(Int(graph.links0(n)[0]) == cap)
        }
    }

    @Test("upserts replace the old row in the graph")
    func upsertReplaces() throws {
        let path = temporaryStorePath("ups")
        defer { cleanup(path) }
        let store = try VecStore(path: path)
        let c = try store.collection("c", dimension: 8, metric: .cosine)
        try c.add(makeDocs(1300, dim: 8, seed: 4))
        var moved = makeDocs(1300, dim: 8, seed: 5)
        moved = Array(moved[0..<100])
        try c.upsert(moved)
        #expect(try store.verify().isOK)
        let hit = try c.search(moved[7].vector, k: 1)
        #expect(hit.first?.id == moved[7].id)
        #expect(try c.count() == 1300)
        #expect(try c.info().rows == 1400)
    }

    @Test("collections of at most 1,024 live rows are searched exactly")
    func smallCollectionsAreExact() throws {
        let path = temporaryStorePath("small")
        defer { cleanup(path) }
        let store = try VecStore(path: path)
        let c = try store.collection("c", dimension: 8, metric: .l2)
        try c.add(makeDocs(SearchPlan.exactBelowRows, dim: 8, seed: 17))
        var r = Rand(state: 18)
        for _ in 0..<10 {
            let q = r.vector(8)
            let a = try c.search(q, k: 10, options: SearchOptions(ef: 1))
            let e = try c.search(q, k: 10, options: SearchOptions(exact: true))
            #expect(a == e)
        }
    }

    @Test("graph search reports the same scores as exact search, bit for bit, under every metric")
    func graphScoresEqualExactScores() throws {
        for metric in [Metric.l2, .cosine, .dot] {
            let path = temporaryStorePath("score")
            defer { cleanup(path) }
            let store = try VecStore(path: path)
            let c = try store.collection("c", dimension: 16, metric: metric)
            try c.add(makeDocs(2000, dim: 16, seed: 31))
            var r = Rand(state: 32)
            for _ in 0..<10 {
                let q = r.vector(16)
                let graph = try c.search(q, k: 10, options: SearchOptions(ef: 32))
                let exact = try c.search(q, k: 2000, options: SearchOptions(exact: true))
                let exactScore = Dictionary(uniqueKeysWithValues: exact.map { ($0.id, $0.score.bitPattern) })
                #expect(graph.count == 10)
                for hit in graph {
                    #expect(exactScore[hit.id] == hit.score.bitPattern, "\(metric) \(hit.id): \(hit.score)")
                }
            }
        }
    }

    @Test("filtered search equals exact filtered search for selective filters")
    func filteredSearch() throws {
        let path = temporaryStorePath("flt")
        defer { cleanup(path) }
        let store = try VecStore(path: path)
        let c = try store.collection("c", dimension: 16, metric: .cosine)
        try c.add(makeDocs(3000, dim: 16, seed: 6))
        var r = Rand(state: 8)
        let queries = (0..<25).map { _ in r.vector(16) }
        let rare = Filter.field("tag", .equals(.string("rare")))  // 2%: answered exactly
        for q in queries {
            let a = try c.search(q, k: 10, filter: rare)
            let e = try c.search(q, k: 10, filter: rare, options: SearchOptions(exact: true))
            #expect(a.map(\.id) == e.map(\.id))
            #expect(a.allSatisfy { Int($0.id.dropFirst())! % 50 == 0 })
        }
        // Traversing the graph (through non-matching nodes, collecting only matches): 50% and 2% filters.
        let graph = SearchOptions(filterStrategy: .graph)
        for filter in [Filter.field("tag", .equals(.string("half"))), rare] {
            var total = 0.0
            for q in queries {
                let e = Set(try c.search(q, k: 10, filter: filter, options: SearchOptions(exact: true)).map(\.id))
                let a = try c.search(q, k: 10, filter: filter, options: graph)
                #expect(a.count == 10)
                #expect(a.allSatisfy { Int($0.id.dropFirst())! % (filter == rare ? 50 : 2) == 0 })
                total += Double(a.filter { e.contains($0.id) }.count) / 10
            }
            #expect(total / Double(queries.count) >= 0.95, "filter \(filter): recall \(total / Double(queries.count))")
        }
        // The planner's choice, as `explainSearch` reports it (3,000 rows: 1,440 "half", 60 "rare").
        let half = Filter.field("tag", .equals(.string("half")))
        #expect(try c.explainSearch(k: 10, filter: half, options: SearchOptions(ef: 4))
            == SearchExplanation(path: .index, candidates: 1440))
        #expect(try c.explainSearch(k: 10, filter: half) == SearchExplanation(path: .exactOverMatches, candidates: 1440))
        #expect(try c.explainSearch(k: 10, filter: rare, options: SearchOptions(ef: 4)).path == .exactOverMatches)
        #expect(try c.explainSearch(k: 10, filter: rare, options: SearchOptions(filterStrategy: .graph)).path == .index)
        #expect(try c.explainSearch(k: 10) == SearchExplanation(path: .index, candidates: 3000))
        #expect(try c.explainSearch(k: 10, options: SearchOptions(exact: true)).path == .exact)
        // The switch point: exact below 5·M·ef matches (5,120 at M=16, ef=64) or below live/(2M).
        #expect(HNSWSearch.prefersExact(matches: 5_000, live: 59_647, m: 16, ef: 64))
        #expect(!HNSWSearch.prefersExact(matches: 7_800, live: 59_647, m: 16, ef: 64))
        #expect(!HNSWSearch.prefersExact(matches: 31_500, live: 59_647, m: 16, ef: 64))
        #expect(HNSWSearch.prefersExact(matches: 20_000, live: 1_000_000, m: 16, ef: 64))
        #expect(!HNSWSearch.prefersExact(matches: 40_000, live: 1_000_000, m: 16, ef: 64))
        #expect(HNSWSearch.prefersExact(matches: 9_000, live: 59_647, m: 16, ef: 128))
        // The two-hop search's beam widens with selectivity: ef · (1 + log2(rows/matches)/4), rounded.
        #expect(HNSWSearch.filteredEf(64, matches: 504_576, rows: 954_352) == 79)  // docs1m `linux`, 52.9%
        #expect(HNSWSearch.filteredEf(64, matches: 124_816, rows: 954_352) == 111)  // `python`, 13.1%
        #expect(HNSWSearch.filteredEf(64, matches: 250, rows: 1_000) == 96)
        #expect(HNSWSearch.filteredEf(128, matches: 500, rows: 1_000) == 160)
        #expect(HNSWSearch.filteredEf(64, matches: 990, rows: 1_000) == 64)  // 1% deleted, no filter
        #expect(HNSWSearch.filteredEf(64, matches: 1_000, rows: 1_000) == 64)
        #expect(HNSWSearch.filteredEf(64, matches: -1, rows: 1_000) == 64)  // count unknown
        // A beam wider than the rows is the rows; a huge ef neither traps nor shrinks (review of filter1m).
        #expect(HNSWSearch.filteredEf(900, matches: 250, rows: 1_000) == 1_000)
        #expect(HNSWSearch.filteredEf(5_000, matches: 250, rows: 1_000) == 5_000)
        #expect(HNSWSearch.filteredEf(.max, matches: 250, rows: 1_000) == .max)
        #expect(HNSWSearch.prefersExact(matches: 500_000, live: 1_000_000, m: 16, ef: .max))
    }

    @Test("filtered graph search finds matches that lie away from the query (correlated filters)")
    func correlatedFilters() throws {
        let path = temporaryStorePath("corr")
        defer { cleanup(path) }
        let store = try VecStore(path: path)
        let c = try store.collection("c", dimension: 16, metric: .cosine)
        // 20 clusters; `cluster` is each document's cluster, so a filter on it selects whole regions of
        // the space and most queries' nearest matches are far from their nearest rows.
        var r = Rand(state: 11)
        let centres = (0..<20).map { _ in r.vector(16) }
        var cluster: [String: Int] = [:]
        let docs = (0..<4000).map { i -> Document in
            let k = Int(r.next() % 20)
            cluster["d\(i)"] = k
            return Document(id: "d\(i)", vector: centres[k].map { $0 + 0.3 * r.float() },
                            metadata: ["cluster": .number(Double(k))])
        }
        try c.add(docs)
        let queries = (0..<30).map { _ in r.vector(16) }
        let graph = SearchOptions(filterStrategy: .graph)
        // About 50%, 15% and 5% of the rows.
        for limit in [10, 3, 1] {
            let filter = Filter.field("cluster", .lessThan(Double(limit)))
            var total = 0.0
            for q in queries {
                let e = Set(try c.search(q, k: 10, filter: filter, options: SearchOptions(exact: true)).map(\.id))
                let a = try c.search(q, k: 10, filter: filter, options: graph)
                #expect(a.count == 10)
                #expect(a.allSatisfy { (cluster[$0.id] ?? 99) < limit })
                total += Double(a.filter { e.contains($0.id) }.count) / 10
            }
            let recall = total / Double(queries.count)
            #expect(recall >= 0.95, "clusters < \(limit): recall \(recall)")
        }
    }

    @Test("a filter's bitmap is built once per snapshot and rebuilt after a write")
    func filterBitmapCache() throws {
        let path = temporaryStorePath("fbc")
        defer { cleanup(path) }
        let store = try VecStore(path: path)
        let c = try store.collection("c", dimension: 16, metric: .cosine)
        try c.add(makeDocs(3000, dim: 16, seed: 6))
        let half = Filter.field("tag", .equals(.string("half")))
        let q = makeDocs(1, dim: 16, seed: 99)[0].vector
        let first = try c.search(q, k: 10, filter: half)
        for _ in 0..<5 { #expect(try c.search(q, k: 10, filter: half).map(\.id) == first.map(\.id)) }
        _ = try c.search(q, k: 10, filter: .field("tag", .equals(.string("rare"))))
        #expect(try store.read { txn in try c.snapshot(txn).filterBuilds } == 2)
        try c.add([Document(id: "new", vector: q, metadata: ["tag": .string("half")])])
        #expect(try c.search(q, k: 10, filter: half).first?.id == "new")
        #expect(try store.read { txn in try c.snapshot(txn).filterBuilds } == 1)
    }

    @Test("exact search over a selective filter's matches scans their gathered copies: the in-place scan's results")
    func gatheredMatches() throws {
        for metric in [Metric.cosine, .l2, .dot] {
            let path = temporaryStorePath("gat")
            defer { cleanup(path) }
            let store = try VecStore(path: path)
            let c = try store.collection("c", dimension: 16, metric: metric)
            var docs = makeDocs(3000, dim: 16, seed: 6)
            // Ties: four "rare" rows (i % 50 == 0) share one vector; the query equal to it puts them all
            // in the top k, where the (score, id) order decides.
            for i in [50, 100, 150] { docs[i].vector = docs[0].vector }
            try c.add(docs)
            #expect(try c.delete(ids: ["d200", "d201"]) == 2)
            let rare = Filter.field("tag", .equals(.string("rare")))
            #expect(try c.explainSearch(k: 10, filter: rare) == SearchExplanation(path: .exactOverMatches, candidates: 59))
            var r = Rand(state: 21)
            let queries = (0..<20).map { _ in r.vector(16) } + [docs[0].vector]
            // The snapshot's first single query scans the matches in place, the second copies them.
            for (i, q) in queries.prefix(2).enumerated() {
                let a = try c.search(q, k: 10, filter: rare)
                let e = try c.search(q, k: 10, filter: rare, options: SearchOptions(exact: true))
                #expect(a.map(\.id) == e.map(\.id), "\(metric) use \(i)")
                #expect(a.map(\.score) == e.map(\.score), "\(metric) use \(i)")
                let builds = try store.read { txn in try c.snapshot(txn) }
                #expect(builds.inPlaceGatherBuilds == 1 && builds.gatheredBuilds == i)
            }
            for q in queries {
                let a = try c.search(q, k: 10, filter: rare)
                let e = try c.search(q, k: 10, filter: rare, options: SearchOptions(exact: true))
                #expect(a.map(\.id) == e.map(\.id), "\(metric)")
                #expect(a.map(\.score) == e.map(\.score), "\(metric)")
                #expect(!a.contains { $0.id == "d200" })
            }
            // A batch goes through the gathered copies too.
            let batch = try c.searchBatch(queries, k: 10, filter: rare)
            for (q, got) in zip(queries, batch) {
                let e = try c.search(q, k: 10, filter: rare, options: SearchOptions(exact: true))
                #expect(got.map(\.id) == e.map(\.id), "\(metric) batch")
            }
            // Built once for the snapshot; a filter the graph answers gathers nothing.
            _ = try c.search(queries[0], k: 10, filter: .field("tag", .equals(.string("half"))),
                             options: SearchOptions(ef: 4))
            #expect(try store.read { txn in try c.snapshot(txn).gatheredBuilds } == 1)
            // A filter whose first search is a batch copies its matches at once.
            let rareLow = Filter.and([rare, .field("i", .lessThan(1500))])
            let late = try c.searchBatch(Array(queries.prefix(3)), k: 10, filter: rareLow)
            for (q, got) in zip(queries.prefix(3), late) {
                let e = try c.search(q, k: 10, filter: rareLow, options: SearchOptions(exact: true))
                #expect(got.map(\.id) == e.map(\.id), "\(metric) batch first")
            }
            let snap = try store.read { txn in try c.snapshot(txn) }
            #expect(snap.inPlaceGatherBuilds == 1 && snap.gatheredBuilds == 2)
        }
    }

    @Test("gathered copies hold the mask's rows in row order and respect the row limit")
    func gatheredCopiesLimit() throws {
        let path = temporaryStorePath("gcl")
        defer { cleanup(path) }
        let store = try VecStore(path: path)
        let c = try store.collection("c", dimension: 16, metric: .cosine)
        try c.add(makeDocs(3000, dim: 16, seed: 6))
        try store.read { txn in
            let snap = try c.snapshot(txn)
            guard let halves = snap.exact.halves else {
                Issue.record("no binary16 copies")
                return
            }
            var words = [UInt64](repeating: 0, count: (3000 + 63) / 64)
            for i in stride(from: 7, to: 3000, by: 97) { words[i >> 6] |= 1 << UInt64(i & 63) }
            words.withUnsafeBufferPointer { w in
                let mask = CandidateMask(words: w.baseAddress!, wordCount: w.count)
                #expect(GatheredCopies(halves: halves, blocks: snap.view.blocks, dimension: 16, mask: mask,
                                       maxRows: 30) == nil)
                guard let g = GatheredCopies(halves: halves, blocks: snap.view.blocks, dimension: 16, mask: mask,
                                             maxRows: 31) else {
                    Issue.record("31 rows not gathered")
                    return
                }
                #expect(g.count == 31)
                #expect(g.rowIDs == Array(stride(from: UInt32(7), to: 3000, by: 97)))
            }
        }
    }

    @Test("copies read from the store file with pread equal the map's, and the scan's results")
    func gatheredCopiesPread() throws {
        let path = temporaryStorePath("gpr")
        defer { cleanup(path) }
        let store = try VecStore(path: path)
        let c = try store.collection("c", dimension: 16, metric: .cosine)
        try c.add(makeDocs(3000, dim: 16, seed: 8))
        guard let found = store.env.mappedFile() else {
            Issue.record("map not found")
            return
        }
        let file = GatheredCopies.MappedFile(fd: found.fd, base: found.base, length: found.length)
        var r = Rand(state: 5)
        let queries = (0..<5).map { _ in r.vector(16) }
        try store.read { txn in
            let snap = try c.snapshot(txn)
            guard let halves = snap.exact.halves else {
                Issue.record("no binary16 copies")
                return
            }
            var words = [UInt64](repeating: 0, count: (3000 + 63) / 64)
            for i in 0..<3000 where i % 3 != 1 { words[i >> 6] |= 1 << UInt64(i & 63) }
            words.withUnsafeBufferPointer { w in
                let mask = CandidateMask(words: w.baseAddress!, wordCount: w.count)
                for inPlace in [false, true] {
                    guard let mapped = GatheredCopies(halves: halves, blocks: snap.view.blocks, dimension: 16,
                                                      mask: mask, maxRows: .max),
                          let read = GatheredCopies(halves: halves, blocks: snap.view.blocks, dimension: 16,
                                                    mask: mask, maxRows: .max, inPlace: inPlace, file: file,
                                                    preadFaultShare: 0) else {
                        Issue.record("not gathered")
                        return
                    }
                    // Every chunk past its probed head came from the file, into the copied form.
                    #expect(read.count == 2000 && !read.isInPlace)
                    // 8 chunks of 256 (the last 208): probed, then 3 read whole, probed, then 3 whole.
                    #expect(read.preadRows == 2000 - 32 * 2)
                    #expect(memcmp(read.copies!, mapped.copies!, 2000 * read.stride * 2) == 0)
                    for q in queries {
                        q.withUnsafeBufferPointer { qb in
                            var a = TopK(k: 10), b = TopK(k: 10)
                            ExactSearch.scanGathered(query: qb.baseAddress!, dimension: 16, metric: .dot,
                                                     gathered: read, into: &a)
                            ExactSearch.scanGathered(query: qb.baseAddress!, dimension: 16, metric: .dot,
                                                     gathered: mapped, into: &b)
                            #expect(a.sorted().map(\.id) == b.sorted().map(\.id))
                        }
                    }
                }
                // A wrong base (the file does not hold the map's bytes there): nothing is read from it.
                let wrong = GatheredCopies.MappedFile(fd: file.fd, base: file.base + 4096, length: file.length)
                let g = GatheredCopies(halves: halves, blocks: snap.view.blocks, dimension: 16, mask: mask,
                                       maxRows: .max, file: wrong, preadFaultShare: 0)
                #expect(g?.preadRows == 0)
            }
        }
    }

    @Test("compaction drops deleted nodes and carries a valid graph over to the renumbered rows")
    func compaction() throws {
        let path = temporaryStorePath("cmp")
        defer { cleanup(path) }
        var r = Rand(state: 9)
        let queries = (0..<30).map { _ in r.vector(16) }
        // Recall@10 against exact search at the default ef 40 and at ef 160, before compaction.
        var before = (0.0, 0.0)
        do {
            let store = try VecStore(path: path)
            let c = try store.collection("c", dimension: 16, metric: .l2,
                                         index: .hnsw(HNSWParameters(m: 12, efConstruction: 80, efSearch: 40)))
            try c.add(makeDocs(2000, dim: 16, seed: 10))
            try c.delete(ids: (0..<2000).filter { $0 % 4 == 1 }.map { "d\($0)" })
            before = (try recallVsExact(c, queries, k: 10), try recallVsExact(c, queries, k: 10, ef: 160))
        }
        let report = try VecStore.compact(path: path)
        #expect(report.tombstonesDropped == 500)
        let store = try VecStore(path: path)
        let c = try store.collection("c")
        #expect(try c.indexKind() == .hnsw(HNSWParameters(m: 12, efConstruction: 80, efSearch: 40)))
        let v = try store.verify()
        #expect(v.isOK, "\(v.faults.prefix(5))")
        #expect(try c.info().rows == 1500)
        // The carried graph answers about as well as before. Uniform 16-d rows are hard for HNSW, the 2-thread
        // build is not deterministic, and compaction relinks the upper levels (levels follow the new row
        // numbers and the new seed, Spec/HNSW.md §5.5): recall at ef 40 was 0.93–0.97 before and 0.93–0.94 after in repeated runs,
        // with 0.927 and below 0.90 seen under load, so the small beam gets a loose floor and a wide beam
        // (ef 160: 0.997–1.0 in every run) the tight one.
        let after = (try recallVsExact(c, queries, k: 10), try recallVsExact(c, queries, k: 10, ef: 160))
        #expect(after.0 >= before.0 - 0.08 && after.0 >= 0.85, "recall@10 at ef 40: \(before.0) before, \(after.0) after")
        #expect(after.1 >= before.1 - 0.02 && after.1 >= 0.97, "recall@10 at ef 160: \(before.1) before, \(after.1) after")
    }

    @Test("a write transaction that fails after linking leaves graph and vectors as before")
    func interruptedInsert() throws {
        struct Interrupted: Error {}
        let path = temporaryStorePath("crash")
        defer { cleanup(path) }
        let store = try VecStore(path: path)
        let c = try store.collection("c", dimension: 12, metric: .cosine)
        try c.add(makeDocs(800, dim: 12, seed: 11))
        let more = try c.prepare(makeDocs(900, dim: 12, seed: 12, idPrefix: "x"))
        let doomed = ["d1", "d2", "d3"]
        let dbs = store.dbs
        #expect(throws: VecStoreError.self) {
            try store.write { txn in
                var writer = try CollectionWriter(txn, dbs, name: "c", record: try c.currentRecord(txn))
                for id in doomed { _ = try writer.delete(id: id) }
                try writer.append(more, replace: false)
                try writer.finish()  // graph linked and written inside the transaction …
                throw Interrupted()  // … which then aborts
            }
        }
        #expect(try store.verify().isOK)
        #expect(try c.count() == 800)
        #expect(try c.info().rows == 800)
        let config = try store.read { txn in try HNSWConfig.load(txn, store.dbs, c.collectionID) }
        #expect(config?.nodes == 800)
        #expect(try c.get(id: "d1") != nil)
        #expect(try c.search(more[0].stored, k: 3).allSatisfy { !$0.id.hasPrefix("x") })
        // The next write proceeds normally.
        try c.add(makeDocs(100, dim: 12, seed: 13, idPrefix: "y"))
        #expect(try store.verify().isOK)
    }

    @Test("index build, drop and per-query ef / exact options")
    func buildAndOptions() throws {
        let path = temporaryStorePath("bld")
        defer { cleanup(path) }
        let store = try VecStore(path: path)
        let c = try store.collection("c", dimension: 16, metric: .cosine, index: .flat)
        try c.add(makeDocs(1600, dim: 16, seed: 14))
        #expect(try c.indexKind() == .flat)
        try c.buildIndex(HNSWParameters(m: 8, efConstruction: 64, efSearch: 32), threads: 2)
        #expect(try c.indexKind() == .hnsw(HNSWParameters(m: 8, efConstruction: 64, efSearch: 32)))
        #expect(try store.verify().isOK)
        var r = Rand(state: 15)
        let queries = (0..<20).map { _ in r.vector(16) }
        #expect(try recallVsExact(c, queries, k: 10, ef: 200) >= 0.97)
        #expect(try recallVsExact(c, queries, k: 10, ef: 200) >= recallVsExact(c, queries, k: 10, ef: 10) - 1e-9)
        let batch = try c.searchBatch(queries, k: 5, options: SearchOptions(threads: 2))
        let single = try queries.map { try c.search($0, k: 5) }
        #expect(batch.map { $0.map(\.id) } == single.map { $0.map(\.id) })
        try c.dropIndex()
        #expect(try c.indexKind() == .flat)
        #expect(try store.verify().isOK)
        #expect(throws: VecStoreError.self) { try c.buildIndex(HNSWParameters(m: 2)) }
    }

    @Test("verify reports a damaged graph")
    func verifyDetectsDamage() throws {
        let path = temporaryStorePath("bad")
        defer { cleanup(path) }
        let store = try VecStore(path: path)
        let c = try store.collection("c", dimension: 8, metric: .l2)
        try c.add(makeDocs(200, dim: 8, seed: 16))
        #expect(try store.verify().isOK)
        let dbs = store.dbs
        try store.write { txn in
            let key = Format.key(c.collectionID, 0)
            guard let v = try txn.get(dbs.graph, key) else { throw VecStoreError.corrupt("no block") }
            var bytes = Array(v)
            // Node 5: a link to itself and one out of range.
            let slot = 5 * (1 + 2 * 16) * 4  // slot = count + 2M links
            bytes.replaceSubrange(slot..<(slot + 12), with: [2, 0, 0, 0, 5, 0, 0, 0, 0xFF, 0xFF, 0, 0])
            try txn.put(dbs.graph, key, bytes)
        }
        let report = try store.verify()
        #expect(!report.isOK)
        #expect(report.faults.contains { $0.contains("itself") })
        #expect(report.faults.contains { $0.contains("≥") })
        // A damaged binary16 copy is reported too.
        try store.write { txn in
            let key = Format.key(c.collectionID, 0)
            guard let v = try txn.get(dbs.graphVectors, key) else { throw VecStoreError.corrupt("no block") }
            var bytes = Array(v)
            bytes[9 * 16] ^= 0x55  // row 9, component 0 (8 halves = 16 bytes a row)
            try txn.put(dbs.graphVectors, key, bytes)
        }
        #expect(try store.verify().faults.contains { $0.contains("binary16") })
    }
}
