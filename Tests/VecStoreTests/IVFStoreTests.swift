import Foundation
import LMDB
import Testing
import VecStoreQuant
@testable import VecStore

private let siftDirectory = sharedData.appendingPathComponent("siftsmall").path

/// Mean fraction of the exact top-k ids that `options` also returns.
private func recall(_ c: VectorCollection, _ queries: [[Float]], k: Int, options: SearchOptions,
                    filter: Filter? = nil) throws -> Double {
    var total = 0.0
    for q in queries {
        let exact = Set(try c.search(q, k: k, filter: filter, options: SearchOptions(exact: true)).map(\.id))
        let got = try c.search(q, k: k, filter: filter, options: options).map(\.id)
        total += Double(got.filter { exact.contains($0) }.count) / Double(max(1, exact.count))
    }
    return total / Double(queries.count)
}

/// One document per vector, ids `prefix` + its position in `vectors` (counted from 0).
private func documents<S: Sequence<[Float]>>(_ vectors: S, prefix: String = "r") -> [Document] {
    vectors.enumerated().map { Document(id: "\(prefix)\($0.offset)", vector: $0.element) }
}

/// Clustered random vectors (so lists are uneven, as real data makes them).
private func clustered(_ count: Int, dimension: Int, seed: UInt64) -> [[Float]] {
    var rng = SeededRandom(seed: seed)
    let centres = (0..<12).map { _ in rng.vector(dimension) }
    return (0..<count).map { _ in
        let c = centres[rng.below(centres.count)]
        return c.map { $0 + 0.3 * Float.random(in: -1...1, using: &rng) }
    }
}

@Suite("IVF index in the store")
struct IVFStoreTests {
    @Test("siftsmall: IVF-Flat at nprobe = nlist returns exactly what exact search returns; IVF-PQ with refine ≥ 0.9",
          .enabled(if: FileManager.default.fileExists(atPath: siftDirectory + "/siftsmall_query.fvecs")))
    func siftsmallRecall() throws {
        let base = try readVecs(siftDirectory + "/siftsmall_base.fvecs", as: Float.self)
        let queries = Array(try readVecs(siftDirectory + "/siftsmall_query.fvecs", as: Float.self).prefix(40))
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("s.vecstore"))
        let c = try store.collection("sift", dimension: 128, metric: .l2, index: .flat)
        try c.add(base.enumerated().map { Document(id: String($0.offset), vector: $0.element) })
        let report = try c.buildIVF(IVFParameters(nlist: 32))
        #expect(report.nlist == 32 && report.rows == 10_000)
        #expect(try c.indexKind().name == "ivf")
        for q in queries.prefix(20) {
            let exact = try c.search(q, k: 10, options: SearchOptions(exact: true))
            let ivf = try c.search(q, k: 10, options: SearchOptions(nprobe: 32))
            #expect(ivf.map(\.id) == exact.map(\.id))
            #expect(ivf.map(\.score) == exact.map(\.score))
        }
        // Recall never falls as nprobe grows (flat lists: each probe set contains the previous one).
        var last = 0.0
        for nprobe in [1, 2, 4, 8, 16, 32] {
            let r = try recall(c, queries, k: 10, options: SearchOptions(nprobe: nprobe))
            #expect(r >= last, "recall \(r) at nprobe \(nprobe) below \(last)")
            last = r
        }
        #expect(last == 1)
        #expect(try store.verify().isOK)

        // 4-bit fast scan over residual codes and over codes of the raw vectors (the 4-bit default).
        for residual in [true, false] {
            try c.buildIVF(IVFParameters(nlist: 32, coding: .pq(m: 32, bits: 4), pqResidual: residual))
            #expect(try c.ivfInfo()?.parameters.pqResidual == residual)
            let pq = try recall(c, queries, k: 10, options: SearchOptions(nprobe: 8, refine: 10))
            #expect(pq >= 0.9, "IVF-PQ fast-scan recall@10 \(pq) at nprobe 8, refine 10, residual \(residual)")
            var last = 0.0
            for nprobe in [1, 2, 4, 8, 16, 32] {
                let r = try recall(c, queries, k: 10, options: SearchOptions(nprobe: nprobe, refine: 10))
                #expect(r >= last, "fast scan (residual \(residual)) recall \(r) at nprobe \(nprobe) below \(last)")
                last = r
            }
            let check = try store.verify()
            #expect(check.isOK, "\(check.faults.prefix(3))")
        }
        try c.buildIVF(IVFParameters(nlist: 32, coding: .pq(m: 16, bits: 8)))
        let pq8 = try recall(c, queries, k: 10, options: SearchOptions(nprobe: 8, refine: 10))
        #expect(pq8 >= 0.9, "IVF-PQ 8-bit recall@10 \(pq8) at nprobe 8, refine 10")
        let info = try #require(try c.ivfInfo())
        #expect(info.codeSize == 16 && info.listSizes.reduce(0, +) == 10_000)
        let check = try store.verify()
        #expect(check.isOK, "\(check.faults.prefix(3))")
    }

    @Test("training is deterministic: the same seed gives the same centroids, codebooks and lists")
    func deterministicTraining() throws {
        let dir = try TempDir()
        let vectors = clustered(2000, dimension: 16, seed: 7)
        var records: [[[UInt8]]] = []
        for name in ["a", "b"] {
            let store = try VecStore(path: dir.path("\(name).vecstore"))
            let c = try store.collection("c", dimension: 16, metric: .cosine, index: .flat)
            try c.add(documents(vectors))
            try c.buildIVF(IVFParameters(nlist: 16, coding: .pq(m: 4, bits: 8), seed: 99), threads: name == "a" ? 1 : 2)
            records.append(try store.read { txn in
                let lists = try #require(store.dbs.handle(IVFFormat.DB.lists))
                let ivf = try #require(store.dbs.handle(IVFFormat.DB.ivf))
                var out: [[UInt8]] = [Array(try #require(try txn.get(store.dbs.meta, IVFFormat.headerKey(1))))]
                for db in [ivf, lists] {
                    try txn.withCursor(db) { (cur: Cursor) throws -> Void in
                        var e = try cur.first()
                        while let (k, v) = e { out.append(Array(k) + Array(v)); e = try cur.next() }
                    }
                }
                return out
            })
        }
        #expect(records[0] == records[1])
        #expect(records[0].count > 3)
    }

    @Test("writes after training: appends go to lists (one block per touched list), deletes are skipped, verify holds",
          arguments: [IVFCoding.flat, .pq(m: 8, bits: 4), .pq(m: 4, bits: 8)])
    func writesAfterTraining(coding: IVFCoding) throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("w.vecstore"))
        let vectors = clustered(3000, dimension: 16, seed: 3)
        let c = try store.collection("c", dimension: 16, metric: .l2, index: .flat)
        try c.add(vectors.prefix(2000).enumerated().map {
            Document(id: "r\($0.offset)", vector: $0.element, metadata: ["g": .number(Double($0.offset % 10))])
        })
        try c.buildIVF(IVFParameters(nlist: 8, coding: coding))
        // Appends in several batches, some small.
        var start = 2000
        for size in [1, 7, 300, 692] {
            try c.add((start..<(start + size)).map { Document(id: "r\($0)", vector: vectors[$0]) })
            start += size
        }
        #expect(try c.count() == 3000)
        var report = try store.verify()
        #expect(report.isOK, "\(report.faults.prefix(3))")
        #expect(try c.ivfInfo()?.listSizes.reduce(0, +) == 3000)
        // A one-row batch rewrites one block.
        let written = try store.write { txn -> Int in
            let record = try c.currentRecord(txn)
            var writer = try CollectionWriter(txn, store.dbs, name: "c", record: record)
            try writer.append(try c.prepare([Document(id: "one", vector: vectors[0])]), replace: false)
            try writer.finish()
            return writer.indexBlocksWritten
        }
        #expect(written == 1)
        // Deletes and upserts: deleted rows stay in the lists but are never returned.
        let gone = (0..<200).map { "r\($0 * 7)" }
        #expect(try c.delete(ids: gone) == 200)
        try c.upsert([Document(id: "r1", vector: vectors[2])])
        report = try store.verify()
        #expect(report.isOK, "\(report.faults.prefix(3))")
        let goneSet = Set(gone)
        for q in vectors.prefix(30) {
            let hits = try c.search(q, k: 20, options: SearchOptions(nprobe: 8, refine: 50))
            #expect(!hits.contains { goneSet.contains($0.id) })
            if coding == .flat {
                #expect(hits.map(\.id) == (try c.search(q, k: 20, options: SearchOptions(exact: true))).map(\.id))
            }
        }
        // Filters go through the planner: a selective one is answered exactly, a broad one under the mask.
        let filter = Filter.field("g", .equals(.number(3)))
        #expect(try c.search(vectors[0], k: 5, filter: Filter.field("missing", .exists)).isEmpty)
        for q in vectors.suffix(10) {
            let exact = try c.search(q, k: 10, filter: filter, options: SearchOptions(exact: true))
            let graph = try c.search(q, k: 10, filter: filter,
                                     options: SearchOptions(filterStrategy: .graph, nprobe: 8, refine: 100))
            #expect(graph.allSatisfy { Int($0.id.dropFirst()).map { $0 % 10 == 3 && $0 < 2000 } ?? false })
            if coding == .flat { #expect(graph.map(\.id) == exact.map(\.id)) }
        }
    }

    @Test("compaction carries the index over: same model, renumbered lists without deleted rows")
    func compactionRemapsLists() throws {
        let dir = try TempDir()
        let path = dir.path("c.vecstore")
        let vectors = clustered(2500, dimension: 12, seed: 5)
        do {
            let store = try VecStore(path: path)
            let c = try store.collection("c", dimension: 12, metric: .dot, index: .flat)
            try c.add(documents(vectors))
            try c.buildIVF(IVFParameters(nlist: 16, coding: .pq(m: 6, bits: 4), refine: 8))
            try c.delete(ids: (0..<500).map { "r\($0 * 5)" })
            store.close()
        }
        try VecStore.compact(path: path)
        let store = try VecStore(path: path)
        let c = try store.collection("c")
        let info = try #require(try c.ivfInfo())
        #expect(info.listSizes.reduce(0, +) == 2000)
        #expect(info.parameters.coding == .pq(m: 6, bits: 4) && info.parameters.refine == 8)
        let report = try store.verify()
        #expect(report.isOK, "\(report.faults.prefix(3))")
        #expect(try recall(c, Array(vectors.prefix(20)), k: 10, options: SearchOptions(nprobe: 16, refine: 50)) >= 0.95)
    }

    @Test("raw-vector codes: pending record flag, header flags 0 and feature ivf-pq-raw; residual codes declare nothing new")
    func rawCodingFormat() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("r.vecstore"))
        let vectors = clustered(400, dimension: 8, seed: 5)
        let dbs = store.dbs
        func records(_ cid: UInt32) throws -> (features: [Format.Feature], ivf: [UInt8]?) {
            try store.read { txn in
                (try txn.get(dbs.meta, Format.featuresKey).map { try Format.decodeFeatures($0) } ?? [],
                 try txn.get(dbs.meta, IVFFormat.headerKey(cid)).map { Array($0) })
            }
        }
        // Residual codes (explicit for 4 bits, the default for 8): flags bit 0 set, no new feature.
        let a = try store.collection("a", dimension: 8, metric: .l2,
                                     index: .ivf(IVFParameters(nlist: 4, coding: .pq(m: 4, bits: 4), pqResidual: true)))
        #expect(try records(1).ivf?[3] == 0)  // pending: raw flag clear
        try a.add(documents(vectors.prefix(200)))
        var (features, header) = try records(1)
        #expect(header?.count == 64 && header?[3] == 1)
        #expect(!features.contains { $0.name == "ivf-pq-raw" })
        #expect(try a.indexKind() == .ivf(IVFParameters(nlist: 4, coding: .pq(m: 4, bits: 4), pqResidual: true)))
        // The 4-bit default: codes of the raw vectors.
        #expect(IVFParameters(coding: .pq(m: 4, bits: 4)).pqResidual == false)
        #expect(IVFParameters(coding: .pq(m: 4, bits: 8)).pqResidual == true)
        let b = try store.collection("b", dimension: 8, metric: .l2, index: .ivf(IVFParameters(nlist: 4, coding: .pq(m: 4, bits: 4))))
        (features, header) = try records(2)
        #expect(header?.count == 32 && header?[3] == 1)  // pending: raw flag set, feature declared already
        #expect(features.contains(Format.Feature(name: "ivf-pq-raw", neededToRead: true, neededToWrite: true)))
        #expect(Format.knownFeatures.contains("ivf-pq-raw"))
        try b.add(documents(vectors.prefix(200)))
        header = try records(2).ivf
        #expect(header?.count == 64 && header?[3] == 0)
        #expect(try b.indexKind() == .ivf(IVFParameters(nlist: 4, coding: .pq(m: 4, bits: 4))))
        #expect(try b.indexStats().lines.contains { $0.key == "coding" && $0.value.contains("raw vectors") })
        // Writes after training encode raw vectors; verify checks every code against its row.
        try b.add(documents(vectors[200..<400], prefix: "s"))
        #expect(try store.verify().isOK)
        // A flipped flag is caught: residual-decoded raw codes are not the nearest codes of their residuals.
        try store.write { txn in
            var h = try #require(try txn.get(dbs.meta, IVFFormat.headerKey(2)).map { Array($0) })
            h[3] = 1
            try txn.put(dbs.meta, IVFFormat.headerKey(2), h)
        }
        #expect(!(try store.verify().isOK))
    }

    @Test("a raw-codes flag in a store that does not declare ivf-pq-raw is a damaged record, not raw codes")
    func rawFlagWithoutFeature() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("f.vecstore"))
        let vectors = clustered(400, dimension: 8, seed: 7)
        let dbs = store.dbs
        func clearFlag(_ cid: UInt32) throws {
            try store.write { txn in
                var h = try #require(try txn.get(dbs.meta, IVFFormat.headerKey(cid)).map { Array($0) })
                h[3] = 0
                try txn.put(dbs.meta, IVFFormat.headerKey(cid), h)
            }
        }
        // Trained residual codes (header flags bit 0 set) and a pending residual index (flag clear, then set).
        let c = try store.collection("c", dimension: 8, metric: .l2, index: .flat)
        try c.add(documents(vectors))
        try c.buildIVF(IVFParameters(nlist: 4, coding: .pq(m: 4, bits: 4), pqResidual: true))
        let p = try store.collection("p", dimension: 8, metric: .l2,
                                     index: .ivf(IVFParameters(nlist: 4, coding: .pq(m: 4, bits: 8))))
        _ = try c.search(vectors[0], k: 5)
        try clearFlag(c.collectionID)
        try store.write { txn in
            var h = try #require(try txn.get(dbs.meta, IVFFormat.headerKey(p.collectionID)).map { Array($0) })
            h[3] = 1
            try txn.put(dbs.meta, IVFFormat.headerKey(p.collectionID), h)
        }
        for (name, call) in [("search", { _ = try c.search(vectors[0], k: 5) }), ("index kind", { _ = try c.indexKind() }),
                             ("pending", { _ = try p.indexKind() }), ("pending info", { _ = try p.ivfInfo() })] {
            do {
                try call()
                Issue.record("\(name): a raw-codes flag without the feature was accepted")
            } catch { #expect("\(error)".contains("ivf-pq-raw"), "\(name): \(error)") }
        }
        #expect(!(try store.verify().isOK))
    }

    @Test("an index given at creation is searched exactly until the batch that reaches its training threshold")
    func trainsAtThreshold() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("t.vecstore"))
        let vectors = clustered(400, dimension: 8, seed: 9)
        let c = try store.collection("c", dimension: 8, metric: .cosine, index: .ivf(IVFParameters(nlist: 4)))
        #expect(IVFParameters(nlist: 4).trainingThreshold == 156)
        try c.add(documents(vectors.prefix(150)))
        #expect(try c.ivfInfo() == nil)
        #expect(try c.indexKind() == .ivf(IVFParameters(nlist: 4)))
        #expect(try c.indexStats().lines.contains { $0.key == "state" })
        try c.add(documents(vectors[150..<200], prefix: "s"))
        let info = try #require(try c.ivfInfo())
        #expect(info.listSizes.reduce(0, +) == 200 && info.parameters.nlist == 4)
        #expect(try store.verify().isOK)
    }

    @Test("index show prints only what applies: no refine or PQ error for IVF-Flat, both for IVF-PQ")
    func statsLinesPerCoding() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("s.vecstore"))
        let vectors = clustered(300, dimension: 8, seed: 4)
        for (name, coding) in [("f", IVFCoding.flat), ("p", .pq(m: 4, bits: 4))] {
            let c = try store.collection(name, dimension: 8, metric: .l2)
            try c.add(documents(vectors))
            _ = try c.buildIVF(IVFParameters(nlist: 4, coding: coding), threads: 1)
            let keys = Set(try c.indexStats().lines.map(\.key))
            #expect(keys.isSuperset(of: ["coding", "nlist", "nprobe", "list sizes", "code size", "coarse error"]))
            #expect(keys.contains("PQ error") == (coding != .flat), "\(name): \(keys)")
            #expect(keys.contains("refine") == (coding != .flat), "\(name): \(keys)")
        }
    }

    @Test("the CLI rejects out-of-range IVF options with the library's messages (one source of the ranges)")
    func cliOptionRanges() throws {
        let dir = try TempDir()
        let store = dir.path("r.vecstore")
        for (args, message) in [(["--nlist", "0"], "--nlist 0 is outside 1…65536"),
                                (["--pq-bits", "5"], "--pq-bits must be 8 or 4"),
                                (["--pq-m", "300"], "--pq-m 300 is outside 1…256"),
                                (["--pq-m", "0"], "--pq-m 0 is outside 1…256"),
                                (["--refine=-1"], "--refine -1 is outside 0…65535"),
                                (["--nprobe", "70000"], "--nprobe 70000 is outside 1…65535")] {
            let r = try runCLI(["index", "build", store, "-c", "c", "--index", "ivf-pq"] + args)
            #expect(r.status != 0 && r.stderr.contains(message), "\(args): \(r.stderr)")
        }
        // Codes' options with an index that has none are refused, not ignored (import and index build).
        for (index, args, message) in [("ivf", ["--pq-residual", "off"], "--pq-residual applies to --index ivf-pq only"),
                                       ("hnsw", ["--pq-m", "4"], "--pq-m applies to --index ivf-pq only")] {
            let b = try runCLI(["index", "build", store, "-c", "c", "--index", index] + args)
            #expect(b.status == 2 && b.stderr.contains(message), "build \(index) \(args): \(b.stderr)")
            let i = try runCLI(["import", store, "-c", "c", "--index", index] + args + [dir.path("absent.jsonl")])
            #expect(i.status == 2 && i.stderr.contains(message), "import \(index) \(args): \(i.stderr)")
        }
        #expect(throws: VecStoreError.self) { try IVFParameters(nprobe: 0).validateRanges() }
        #expect(throws: VecStoreError.self) { try IVFParameters(coding: .pq(m: 8, bits: 6)).validateRanges() }
        try IVFParameters(nlist: 16, coding: .pq(m: 0, bits: 4), nprobe: 2, refine: 0).validateRanges()
    }

    @Test("import --index ivf-pq trains at the end; index show prints list sizes, errors and code size")
    func cliImportAndShow() throws {
        let dir = try TempDir()
        let store = dir.path("cli.vecstore")
        let samples = packageRoot.appendingPathComponent("Samples/docs.jsonl").path
        let imported = try runCLI(["import", store, "-c", "pq", "--index", "ivf-pq", "--pq-m", "16", samples])
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect(imported.stdout.contains("trained IVF index"))
        let shown = try runCLI(["index", "show", store, "-c", "pq"])
        #expect(shown.stdout.contains("pq4 M=16"), "\(shown.stdout)")
        #expect(shown.stdout.contains("list sizes") && shown.stdout.contains("min "))
        #expect(shown.stdout.contains("8 bytes per vector"))
        let query = try runCLI(["query", store, "-c", "pq", "--id", "astronomy/mars/tip", "--nprobe", "7", "--refine", "30",
                                "-k", "3", "--format", "jsonl"])
        let exact = try runCLI(["query", store, "-c", "pq", "--id", "astronomy/mars/tip", "--exact", "-k", "3",
                                "--format", "jsonl"])
        #expect(query.status == 0 && query.stdout == exact.stdout)
        let verify = try runCLI(["verify", store])
        #expect(verify.status == 0, "\(verify.stdout)")
        let bad = try runCLI(["index", "build", store, "-c", "pq", "--index", "ivf-pq", "--pq-m", "7"])
        #expect(bad.status != 0 && bad.stderr.contains("divide"))
    }

    @Test("damaged IVF records give errors naming the record, never a crash; verify reports them")
    func damagedRecords() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("d.vecstore"))
        let vectors = clustered(1500, dimension: 8, seed: 11)
        let c = try store.collection("c", dimension: 8, metric: .l2, index: .flat)
        try c.add(documents(vectors))
        try c.buildIVF(IVFParameters(nlist: 8, coding: .pq(m: 4, bits: 4)))
        let lists = try #require(store.dbs.handle(IVFFormat.DB.lists))
        let ivf = try #require(store.dbs.handle(IVFFormat.DB.ivf))
        let headerKey = IVFFormat.headerKey(c.collectionID), blockKey = IVFFormat.blockKey(c.collectionID, list: 0, block: 0)
        let centroidKey = IVFFormat.centroidKey(c.collectionID)
        let original = try store.read { txn in
            (Array(try #require(try txn.get(store.dbs.meta, headerKey))), Array(try #require(try txn.get(lists, blockKey))),
             Array(try #require(try txn.get(ivf, centroidKey))))
        }
        // Each damage: (database, key, damaged value, words the error must contain).
        var nanCentroids = original.2
        nanCentroids.replaceSubrange(4..<8, with: [0, 0, 0xC0, 0x7F])
        var badRows = original.1
        badRows[8] = 0xFF  // row count no longer matches the length
        var badKind = original.0
        badKind[1] = 9
        var bigRow = original.1
        bigRow.replaceSubrange(16..<20, with: [0xFF, 0xFF, 0xFF, 0x7F])  // first row id far past the collection
        let cases: [(Database, [UInt8], [UInt8], String)] = [
            (store.dbs.meta, headerKey, badKind, "payload kind"),
            (store.dbs.meta, headerKey, Array(original.0.prefix(40)), "IVF"),
            (ivf, centroidKey, nanCentroids, "not finite"),
            (ivf, centroidKey, Array(nanCentroids.prefix(12)), "IVF centroids"),
            (lists, blockKey, badRows, "IVF list block"),
            (lists, blockKey, Array(original.1.prefix(10)), "IVF list block"),
        ]
        for (db, key, value, words) in cases {
            try store.write { txn in try txn.put(db, key, value) }
            #expect(throws: VecStoreError.self) { _ = try c.search(vectors[0], k: 5) }
            do { _ = try c.search(vectors[0], k: 5) } catch {
                #expect("\(error)".contains(words), "\(error)")
            }
            let report = try store.verify()
            #expect(!report.isOK)
            try store.write { txn in
                try txn.put(store.dbs.meta, headerKey, original.0)
                try txn.put(lists, blockKey, original.1)
                try txn.put(ivf, centroidKey, original.2)
            }
        }
        // A row id past the collection passes the constant-time checks: searches never return it, verify finds it.
        try store.write { txn in try txn.put(lists, blockKey, bigRow) }
        _ = try c.search(vectors[0], k: 5, options: SearchOptions(nprobe: 8))
        let report = try store.verify()
        #expect(report.faults.contains { $0.contains("IVF list 0") }, "\(report.faults.prefix(3))")
        try store.write { txn in try txn.put(lists, blockKey, original.1) }
        #expect(try store.verify().isOK)
    }

    @Test("verify and search reject a list block holding more rows than the header's capacity, or a short non-last block")
    func blockCapacityChecked() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("cap.vecstore"))
        let vectors = clustered(300, dimension: 8, seed: 6)
        let c = try store.collection("c", dimension: 8, metric: .l2, index: .flat)
        try c.add(documents(vectors))
        try c.buildIVF(IVFParameters(nlist: 1, lists: .f32))  // float32 lists: block 0 holds 256 rows (the capacity), block 1 the rest
        let lists = try #require(store.dbs.handle(IVFFormat.DB.lists))
        let key = IVFFormat.blockKey(c.collectionID, list: 0, block: 0)
        let original = try store.read { txn in Array(try #require(try txn.get(lists, key))) }
        func block(rows: Int) throws -> [UInt8] {
            try IVFListBlock.encode(kind: .flat, list: 0, width: 8, rows: (0..<rows).map(UInt32.init),
                                    payloadBytes: FloatMatrixRecord.encode(Array(vectors.prefix(rows).joined())))
        }
        for (rows, words) in [(257, "capacity 256"), (10, "is not the last")] {
            let damaged = try block(rows: rows)
            try store.write { txn in try txn.put(lists, key, damaged) }
            do {
                _ = try c.search(vectors[0], k: 5)
                Issue.record("a \(rows)-row block 0 was accepted")
            } catch { #expect("\(error)".contains(words), "\(error)") }
            let report = try store.verify()
            #expect(report.faults.contains { $0.contains(words) }, "\(report.faults.prefix(3))")
        }
        try store.write { txn in try txn.put(lists, key, original) }
        #expect(try store.verify().isOK)
    }

    @Test("searchBatch (probes found for the whole batch by matrix products) returns what one-by-one searches return",
          arguments: [IVFCoding.flat, .pq(m: 4, bits: 4), .pq(m: 4, bits: 8)])
    func batchProbesMatchSingleQueries(coding: IVFCoding) throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("b.vecstore"))
        let vectors = clustered(1200, dimension: 8, seed: 21)
        // 8-bit codes: a batch builds its tables eight queries at a time (`IVFProbeScorer.beginTile`, 40 queries:
        // full tiles and, with 2 threads, a short one), a single search one at a time; residual and raw codes.
        let codings: [Bool] = coding == .flat ? [true] : [true, false]
        for metric in [Metric.l2, .cosine, .dot] where coding != .flat || metric != .dot {
          for residual in codings {
            let c = try store.collection("c\(metric)\(residual)", dimension: 8, metric: metric)
            try c.add(documents(vectors))
            try c.buildIVF(IVFParameters(nlist: 16, coding: coding, refine: 4, pqResidual: residual))
            let queries = clustered(40, dimension: 8, seed: 22)
            // nprobe 1 (the batch's argmax), 3 and 16 = nlist (its sorted buffer, every list).
            for (threads, nprobe) in [(1, 3), (2, 3), (1, 1), (1, 16)] {
                let options = SearchOptions(threads: threads, nprobe: nprobe)
                let batch = try c.searchBatch(queries, k: 5, options: options)
                for (i, q) in queries.enumerated() {
                    let one = try c.search(q, k: 5, options: options)
                    #expect(batch[i].map(\.id) == one.map(\.id), "\(metric) nprobe \(nprobe) query \(i)")
                    #expect(batch[i].map(\.score) == one.map(\.score), "\(metric) nprobe \(nprobe) query \(i)")
                }
            }
          }
        }
    }

    @Test func batchedProbesMarkListsNaNScoresLeftOutAsNoList() {
        // The centroid [inf, -inf] scores NaN against [1, 1]: never picked, so nprobe 4 finds 3 lists and the
        // fourth slot is `noList` (it was list 0, scanned twice), as `probes` returns 3 lists.
        let header = IVFHeader(kind: .flat, metric: .dot, nlist: 4, dimension: 2, subquantizers: 0, bits: 0,
                               blockCapacity: 256, defaultNprobe: 1, defaultRefine: 0, seed: 1, coarseError: 0,
                               codeError: 0, trainingRows: 4, iterations: 1)
        let model = IVFModel(header: header, centroids: [1, 0, .infinity, -.infinity, 0, 1, -1, 0], quantizer: nil)
        let query: [Float] = [1, 1, 1, 1]
        for nprobe in [4, 20] {  // 20: cut to nlist
            let (lists, scores) = query.withUnsafeBufferPointer { model.batchProbes($0.baseAddress!, count: 2, nprobe: nprobe) }
            #expect(lists == [0, 2, 3, IVFModel.noList, 0, 2, 3, IVFModel.noList])
            #expect(scores.prefix(3) == [1, 1, -1])
        }
        let single = query.withUnsafeBufferPointer { model.probes($0.baseAddress!, count: 4) }
        #expect(single == [0, 2, 3])
    }

    @Test("float32-list batches scanned list by list (a block read once for every query probing it) return what one-by-one searches return: several blocks a list, deleted rows, filters, dot")
    func listMajorBatchesMatchSingleQueries() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("m.vecstore"))
        let vectors = clustered(1500, dimension: 12, seed: 31)
        for metric in [Metric.l2, .cosine, .dot] {
            let c = try store.collection("c\(metric)", dimension: 12, metric: metric)
            try c.add(vectors.enumerated().map {
                Document(id: "r\($0.offset)", vector: $0.element, metadata: ["g": .number(Double($0.offset % 4))])
            })
            // nlist 3: lists of ~500 rows, two or three 256-row blocks each.
            try c.buildIVF(IVFParameters(nlist: 3))
            try c.delete(ids: (0..<150).map { "r\($0 * 9)" })
            let queries = clustered(50, dimension: 12, seed: 32)
            let filter = Filter.field("g", .equals(.number(1)))
            for (threads, nprobe, f) in [(1, 1, nil), (1, 2, nil), (2, 2, nil), (1, 3, nil), (1, 2, filter)] as [(Int, Int, Filter?)] {
                let options = SearchOptions(threads: threads, filterStrategy: f == nil ? .automatic : .graph, nprobe: nprobe)
                let batch = try c.searchBatch(queries, k: 7, filter: f, options: options)
                for (i, q) in queries.enumerated() {
                    let one = try c.search(q, k: 7, filter: f, options: options)
                    #expect(batch[i].map(\.id) == one.map(\.id), "\(metric) nprobe \(nprobe) query \(i)")
                    #expect(batch[i].map(\.score) == one.map(\.score), "\(metric) nprobe \(nprobe) query \(i)")
                }
                if nprobe == 3 {
                    // Every list probed: the exact answer.
                    let exact = try c.searchBatch(queries, k: 7, options: SearchOptions(exact: true))
                    #expect(batch.map { $0.map(\.id) } == exact.map { $0.map(\.id) })
                }
            }
        }
    }

    @Test("refining fast-scan batches scanned list by list (each query's nearest list first, then the others in list order) return what one-by-one searches return: tied rows, several blocks a list, deleted rows, filters, residual and raw codes")
    func listMajorFastScanMatchesSingleQueries() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("f.vecstore"))
        var vectors = clustered(2400, dimension: 16, seed: 41)
        // Exact duplicates: equal codes, so equal ADC and exact scores, ties the reservoir and the re-ranking break
        // by the lower row whatever order the lists come in.
        for i in 0..<300 { vectors[2399 - i] = vectors[i * 3] }
        let filter = Filter.field("g", .equals(.number(1)))
        for metric in [Metric.cosine, .dot, .l2] {
            for residual in [true, false] {  // residual L2 has a table per list: scanned query by query
                let c = try store.collection("f\(metric)\(residual)", dimension: 16, metric: metric)
                try c.add(vectors.enumerated().map {
                    Document(id: "r\($0.offset)", vector: $0.element, metadata: ["g": .number(Double($0.offset % 3))])
                })
                // nlist 4: lists of ~600 rows, two or three 256-row blocks each; refine 3 × k 6 = 18 candidates, so
                // each reservoir trims many times.
                try c.buildIVF(IVFParameters(nlist: 4, coding: .pq(m: 8, bits: 4), refine: 3, pqResidual: residual))
                try c.delete(ids: (0..<100).map { "r\($0 * 17)" })
                let queries = clustered(60, dimension: 16, seed: 42) + Array(vectors[100..<104])
                // 64 queries × nprobe ≥ 2 × nlist × threads, and the code-size floor lifted: every batch below is
                // scanned list by list.
                // Chunk budgets: the default (one chunk a worker) and 1 byte (chunks of the fewest queries that keep
                // two probes a list: 8 at nprobe 1, so several chunks a worker).
                for (threads, nprobe, f, chunkBytes) in [(1, 1, nil, 8 << 20), (1, 1, nil, 1), (1, 2, nil, 8 << 20),
                                                         (2, 3, nil, 8 << 20), (2, 2, nil, 1), (1, 4, nil, 8 << 20),
                                                         (1, 2, filter, 8 << 20)] as [(Int, Int, Filter?, Int)] {
                    let options = SearchOptions(threads: threads, filterStrategy: f == nil ? .automatic : .graph,
                                                nprobe: nprobe, refine: 3)
                    let probe = IVFListMajorProbe()
                    let batch = try IVFView.$listMajorCodeBytes.withValue(0) {
                        try IVFView.$listMajorChunkBytes.withValue(chunkBytes) {
                            try IVFView.$listMajorProbe.withValue(probe) {
                                try c.searchBatch(queries, k: 6, filter: f, options: options)
                            }
                        }
                    }
                    // The list-by-list path ran (residual L2 excepted: a table per list), in several chunks when the
                    // budget is 1 byte.
                    let listMajor = !(residual && metric == .l2)
                    #expect(listMajor ? probe.chunks >= (chunkBytes == 1 ? 64 / max(1, (2 * 4 + nprobe - 1) / nprobe) : 1)
                                      : probe.chunks == 0, "\(metric) \(residual) nprobe \(nprobe): \(probe.chunks) chunks")
                    for (i, q) in queries.enumerated() {
                        let one = try c.search(q, k: 6, filter: f, options: options)
                        #expect(batch[i].map(\.id) == one.map(\.id), "\(metric) \(residual) nprobe \(nprobe) query \(i)")
                        #expect(batch[i].map(\.score) == one.map(\.score), "\(metric) \(residual) nprobe \(nprobe) query \(i)")
                    }
                }
            }
        }
    }

    @Test("a damaged list key numbering its full last block 2³²−1 makes an append throw, not trap")
    func appendAfterHugeBlockNumber() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("h.vecstore"))
        let vectors = clustered(300, dimension: 8, seed: 5)
        let c = try store.collection("c", dimension: 8, metric: .l2, index: .flat)
        try c.add(documents(vectors))
        try c.buildIVF(IVFParameters(nlist: 1))  // flat lists: block 0 holds 256 rows (full), block 1 the rest
        let lists = try #require(store.dbs.handle(IVFFormat.DB.lists))
        let first = IVFFormat.blockKey(c.collectionID, list: 0, block: 0)
        let second = IVFFormat.blockKey(c.collectionID, list: 0, block: 1)
        try store.write { txn in
            let full = Array(try #require(try txn.get(lists, first)))
            _ = try txn.delete(lists, first)
            _ = try txn.delete(lists, second)
            try txn.put(lists, IVFFormat.blockKey(c.collectionID, list: 0, block: Int(UInt32.max)), full)
        }
        #expect(throws: VecStoreError.self) { try c.add([Document(id: "new", vector: vectors[0])]) }
    }
}
