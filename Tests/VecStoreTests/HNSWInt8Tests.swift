import Foundation
import LMDB
import Testing
@testable import VecStore
import VecStoreKernels

/// int8 traversal copies of HNSW graphs (HNSW/HNSWTraversalInt8.swift, Spec/HNSW.md §3.4).
@Suite("HNSW int8 traversal copies")
struct HNSWInt8Tests {
    static let int8 = HNSWParameters(m: 10, efConstruction: 60, efSearch: 32, traversal: .int8)

    /// The collection's record, header, quantizer and an open graph view, in one read snapshot.
    static func withGraph<R>(_ store: VecStore, _ name: String,
                             _ body: (CollectionRecord, HNSWConfig, HNSWGraphView, CollectionView) throws -> R) throws -> R {
        let c = try store.collection(name)
        let dbs = store.dbs
        return try store.read { txn in
            let record = try c.currentRecord(txn)
            guard let config = try HNSWConfig.load(txn, dbs, record.id) else { throw VecStoreError.corrupt("no header") }
            let graph = try HNSWGraphView(txn, dbs, record, config, name: name)
            let view = try CollectionView(txn, dbs, record, name: name)
            return try body(record, config, graph, view)
        }
    }

    @Test("training and round trip: every component decodes within half a step; outside the range it clamps")
    func quantizerRoundTrip() throws {
        var r = SeededRandom(seed: 3)
        let dim = 37, n = 500
        let rows = (0..<(n * dim)).map { i in Float.random(in: -1...1, using: &r) * Float(1 + i % dim) }
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("q.vecstore"))
        let c = try store.collection("c", dimension: dim, metric: .l2, index: .hnsw(Self.int8))
        try c.add((0..<n).map { i in Document(id: "r\(i)", vector: Array(rows[(i * dim)..<((i + 1) * dim)])) })
        try Self.withGraph(store, "c") { record, config, graph, view in
            #expect(config.traversal == .int8)
            #expect(graph.copyStride == 44)  // 37 codes, padded to 40 bytes, then |x̂|²
            guard let s = graph.int8 else { Issue.record("no int8 scoring"); return }
            var decoded = [Float](repeating: 0, count: dim)
            for row in 0..<UInt32(n) {
                let codes = graph.int8Codes(row)
                s.quantizer.decode(codes, count: 1, into: &decoded)
                let v = view.vector(row)
                for t in 0..<dim {
                    #expect(abs(decoded[t] - v[t]) <= s.scales[t] * 0.5001 + 1e-6, "row \(row) component \(t)")
                }
                #expect(HNSWInt8Verify.check(codes, v, s) == nil)
                for pad in dim..<40 { #expect(codes[pad] == 0) }
                let norm = UnsafeRawPointer(codes).load(fromByteOffset: 40, as: Float.self)
                #expect(norm == HNSWInt8Record.decodedSquaredNorm(codes, s.quantizer))
            }
            // Out of the trained range: the code is clamped, and the check accepts the clamp only.
            var far = (0..<dim).map { Float($0) * 100 + 1000 }
            var codes = [Int8](repeating: 0, count: 44)
            s.quantizer.encode(&far, count: 1, into: &codes)
            #expect(codes.prefix(dim).allSatisfy { $0 == 127 })
            let farNorm = HNSWInt8Record.decodedSquaredNorm(codes, s.quantizer).bitPattern
            for i in 0..<4 { codes[40 + i] = Int8(bitPattern: UInt8(truncatingIfNeeded: farNorm >> (8 * i))) }
            #expect(HNSWInt8Verify.check(codes, far, s) == nil)
            codes[41] ^= 0x40  // the stored norm no longer matches
            #expect(HNSWInt8Verify.check(codes, far, s) == 40)
            codes[41] ^= 0x40
            codes[3] = 126
            #expect(HNSWInt8Verify.check(codes, far, s) == 3)
        }
    }

    @Test("the int8 scorer's distances equal the distances to the decoded rows, for every metric",
          arguments: [Metric.l2, .cosine, .dot])
    func scorerMatchesDecoded(metric: Metric) throws {
        let dim = 45
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("s.vecstore"))
        let c = try store.collection("c", dimension: dim, metric: metric, index: .hnsw(Self.int8))
        try c.add(CompactRemapTests.docs(300, dim: dim, seed: 4))
        var r = SeededRandom(seed: 9)
        let query = (0..<dim).map { _ in Float.random(in: -1...1, using: &r) }
        try Self.withGraph(store, "c") { _, _, graph, _ in
            guard let s = graph.int8 else { Issue.record("no int8 scoring"); return }
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: dim)
            defer { buffer.deallocate() }
            var decoded = [Float](repeating: 0, count: dim)
            try query.withUnsafeBufferPointer { qb in
                let q = try #require(qb.baseAddress)
                for row in stride(from: UInt32(0), to: 300, by: 7) {
                    s.quantizer.decode(graph.int8Codes(row), count: 1, into: &decoded)
                    let got: Float, want: Float
                    if metric == .l2 {
                        got = Int8Scorer<L2Int8Distance, HNSWGraphView>(copies: graph, scoring: s, query: q, buffer: buffer).distance(row)
                        want = zip(query, decoded).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
                    } else {
                        got = Int8Scorer<InnerProductInt8Distance, HNSWGraphView>(copies: graph, scoring: s, query: q, buffer: buffer)
                            .distance(row)
                        want = -zip(query, decoded).reduce(0) { $0 + $1.0 * $1.1 }
                    }
                    #expect(abs(got - want) <= 1e-4 * max(1, abs(want)), "row \(row): \(got) vs \(want)")
                }
            }
        }
        // And the search through them finds what exact search finds.
        #expect(try CompactRemapTests.recall(c, CompactRemapTests.queries(40, dim: dim, seed: 2), ef: 32) >= 0.9)
        #expect(try store.verify().isOK)
    }

    @Test("siftsmall: int8 copies keep recall@10 within 0.02 of binary16 and ≥ 0.95 at ef=64",
          .enabled(if: FileManager.default.fileExists(atPath: sharedData.appendingPathComponent("siftsmall/siftsmall_base.fvecs").path)))
    func siftsmallInt8Recall() throws {
        let dir = sharedData.appendingPathComponent("siftsmall").path
        let base = try readVecs(dir + "/siftsmall_base.fvecs", as: Float.self)
        let queries = Array(try readVecs(dir + "/siftsmall_query.fvecs", as: Float.self).prefix(50))
        let truth = try readVecs(dir + "/siftsmall_groundtruth.ivecs", as: Int32.self)
        let tmp = try TempDir()
        let store = try VecStore(path: tmp.path("sift.vecstore"))
        let c = try store.collection("sift", dimension: 128, metric: .l2, index: .flat)
        try c.add(base.enumerated().map { Document(id: String($0.offset), vector: $0.element) })
        func recall() throws -> Double {
            var total = 0.0
            for (qi, q) in queries.enumerated() {
                let hits = try c.search(q, k: 10, options: SearchOptions(ef: 64)).map(\.id)
                let want = Set(truth[qi].prefix(10).map { String($0) })
                total += Double(hits.filter { want.contains($0) }.count) / 10
            }
            return total / Double(queries.count)
        }
        try c.buildIndex(HNSWParameters(m: 16, efConstruction: 100))
        let f16 = try recall()
        try c.buildIndex(HNSWParameters(m: 16, efConstruction: 100, traversal: .int8))
        #expect(try c.indexStats().lines.contains { $0.key == "traversal" && $0.value.hasPrefix("int8 (132 bytes/row, 26%") })
        let i8 = try recall()
        #expect(i8 >= 0.95 && i8 >= f16 - 0.02, "int8 recall@10 \(i8), binary16 \(f16)")
        #expect(try store.verify().isOK)
    }

    @Test("compaction carries int8 copies byte for byte with their quantizer; --rebuild-index retrains")
    func compactionCarriesCopies() throws {
        let dir = try TempDir()
        let path = dir.path("c.vecstore")
        let dim = 24
        do {
            let store = try VecStore(path: path)
            let c = try store.collection("c", dimension: dim, metric: .cosine, index: .hnsw(Self.int8))
            let all = CompactRemapTests.docs(2500, dim: dim, seed: 21)
            try c.add(Array(all[0..<1500]))  // the quantizer is trained on this first batch
            try c.add(Array(all[1500...]))
            try c.delete(ids: (0..<2500).filter { $0 % 10 == 3 }.map { "d\($0)" })
        }
        let queries = CompactRemapTests.queries(100, dim: dim, seed: 6)
        let (before, codesBefore, quantBefore) = try {
            let store = try VecStore(path: path)
            let codes = try Self.withGraph(store, "c") { _, _, graph, _ in
                // Row 4 (d4, live) becomes row 3 after compaction drops d3.
                Array(UnsafeBufferPointer(start: graph.int8Codes(4), count: graph.copyStride))
            }
            let q = try Self.withGraph(store, "c") { _, _, g, _ in g.int8?.quantizer }
            return (try CompactRemapTests.recall(try store.collection("c"), queries, ef: 16), codes, q)
        }()
        let report = try VecStore.compact(path: path)
        #expect(report.indexes.count == 1 && report.indexes[0].carried, "\(report.indexes)")
        let store = try VecStore(path: path)
        #expect(try store.verify().isOK)
        try Self.withGraph(store, "c") { _, config, graph, _ in
            #expect(config.traversal == .int8)
            #expect(graph.int8?.quantizer == quantBefore)
            #expect(Array(UnsafeBufferPointer(start: graph.int8Codes(3), count: graph.copyStride)) == codesBefore)
        }
        let after = try CompactRemapTests.recall(try store.collection("c"), queries, ef: 16)
        #expect(abs(after - before) <= 0.03, "recall@10 \(before) before, \(after) after compaction")
        // Rebuilding retrains on every live row.
        _ = try VecStore.compact(path: path, rebuildIndexes: true)
        let rebuilt = try VecStore(path: path)
        #expect(try rebuilt.verify().isOK)
        #expect(try rebuilt.collection("c").indexStats().lines.contains { $0.value == "per dimension, trained on 2250 rows" })
    }

    @Test("verify finds a damaged code; a damaged quantizer record gives corrupt, never a crash")
    func damage() throws {
        let dir = try TempDir()
        let path = dir.path("d.vecstore")
        let store = try VecStore(path: path)
        let c = try store.collection("c", dimension: 16, metric: .l2, index: .hnsw(Self.int8))
        try c.add(CompactRemapTests.docs(1200, dim: 16, seed: 8))
        #expect(try store.verify().isOK)
        let id = try store.read { txn in try c.currentRecord(txn).id }
        let dbs = store.dbs
        // A code pushed far from its row (the block's size is unchanged).
        try store.write { txn in
            let key = Format.key(id, 0)
            guard var block = try txn.get(try dbs.graphVectors, key).map({ Array($0) }) else { throw VecStoreError.corrupt("no block") }
            block[20 * 5 + 2] = Int8(bitPattern: block[20 * 5 + 2]) > 0 ? 0x9C : 100  // −100 or 100 (rows of 16 + 4 bytes)
            try txn.put(try dbs.graphVectors, key, block)
        }
        let faults = try store.verify().faults
        #expect(faults.contains { $0.contains("node 5: int8 copy") }, "\(faults)")
        // A non-finite scale in the quantizer record.
        try store.write { txn in
            guard var rec = try txn.get(dbs.meta, HNSWInt8Record.key(id)).map({ Array($0) }) else {
                throw VecStoreError.corrupt("no record")
            }
            let scale0 = HNSWInt8Record.headerBytes + 4 * 16
            rec.replaceSubrange(scale0..<(scale0 + 4), with: [0, 0, 0xC0, 0x7F])  // NaN
            try txn.put(dbs.meta, HNSWInt8Record.key(id), rec)
        }
        var message = ""
        do { _ = try c.search(Array(repeating: 0.1, count: 16), k: 5) } catch { message = "\(error)" }
        #expect(message.contains("int8 quantizer"), "\(message)")
        #expect(try !store.verify().isOK)
        // A missing record.
        _ = try store.write { txn in try txn.delete(dbs.meta, HNSWInt8Record.key(id)) }
        #expect(throws: VecStoreError.self) { try c.search(Array(repeating: 0.1, count: 16), k: 5) }
        #expect(try !store.verify().isOK)
    }

    @Test("every kind of damage to the quantizer record or an int8 block: the CLI reports it, never crashes")
    func damagedInt8NeverCrashes() throws {
        let tmp = try TempDir()
        let base = tmp.path("base.vecstore")
        let id: UInt32
        do {
            let store = try VecStore(path: base)
            let c = try store.collection("c", dimension: 8, metric: .l2, index: .hnsw(HNSWParameters(m: 4, traversal: .int8)))
            try c.add(makeDocuments(1_100, dimension: 8, seed: 3))
            id = try store.read { txn in try c.currentRecord(txn).id }
        }
        var rng = SeededRandom(seed: 77)
        var failures: [String] = []
        var damaged = 0
        for (db, key) in [("meta", HNSWInt8Record.key(id)), ("graph-vectors", Format.key(id, 0))] {
            for kind in Damage.allCases {
                let store = tmp.path("\(db)-\(kind).vecstore")
                try FileManager.default.copyItem(atPath: base, toPath: store)
                guard let what = try FuzzTests.damage(store, db: db, key: key, kind, &rng) else { continue }
                damaged += 1
                for command in [["verify", store], ["query", store, "-c", "c", "--vector", "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8", "-k", "5"],
                                ["index", "show", store, "-c", "c"], ["compact", store]] {
                    let r = try runGuarded(command, timeout: 30)
                    if r.timedOut || r.signal != nil {
                        failures.append("\(what): vecstore \(command[0]) crashed or hung: \(r.output.suffix(300))")
                    }
                }
            }
        }
        #expect(damaged >= 10)
        #expect(failures.isEmpty, "\(failures.prefix(5).joined(separator: "\n"))")
    }

    @Test("binary16 stores are unchanged: header flags 1, no feature; int8 declares hnsw-int8 (read and write)")
    func formatCompatibility() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("f.vecstore"))
        let a = try store.collection("a", dimension: 8, metric: .cosine, index: .hnsw(HNSWParameters(m: 8)))
        try a.add(makeDocuments(50, dimension: 8))
        let dbs = store.dbs
        let aid = try store.read { txn in try a.currentRecord(txn).id }
        let (featuresA, flagsA) = try store.read { txn in
            (try txn.get(dbs.meta, Format.featuresKey).map { Array($0) }, try txn.get(dbs.meta, HNSWConfig.key(aid)).map { $0[1] })
        }
        #expect(featuresA == nil)
        #expect(flagsA == 1)
        #expect(try a.indexStats().lines.contains { $0.key == "traversal" && $0.value.hasPrefix("f16") })
        let b = try store.collection("b", dimension: 8, metric: .cosine, index: .hnsw(HNSWParameters(m: 8, traversal: .int8)))
        try b.add(makeDocuments(50, dimension: 8))
        let bid = try store.read { txn in try b.currentRecord(txn).id }
        let (features, flagsB, recordBytes) = try store.read { txn in
            (try txn.get(dbs.meta, Format.featuresKey).map { try Format.decodeFeatures($0) } ?? [],
             try txn.get(dbs.meta, HNSWConfig.key(bid)).map { $0[1] }, try txn.get(dbs.meta, HNSWInt8Record.key(bid))?.count)
        }
        #expect(features.contains(Format.Feature(name: "hnsw-int8", neededToRead: true, neededToWrite: true)))
        #expect(flagsB == 2)
        #expect(recordBytes == 12 + 8 * 8)
        #expect(Format.knownFeatures.contains("hnsw-int8"))
        // `vecstore stats` shows the traversal in the index column when it is not binary16.
        #expect(try b.indexStats().summary == "hnsw M=8 efConstruction=200 efSearch=64 traversal=int8")
        #expect(try a.indexStats().summary == "hnsw M=8 efConstruction=200 efSearch=64")
        // Dropping the index removes the quantizer record with the graph.
        try b.dropIndex()
        let gone = try store.read { txn in try txn.get(dbs.meta, HNSWInt8Record.key(bid)) == nil }
        #expect(gone)
        #expect(try store.verify().isOK)
    }
}
