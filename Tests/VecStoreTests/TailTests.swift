import Foundation
import Testing
@testable import VecStore

/// The unlinked tail of an HNSW graph (Spec/HNSW.md §4.1): bulk imports link their batches in large
/// steps, searches scan the tail exactly, verify checks it, and any later write links it.
@Suite("HNSW unlinked tail", .serialized)
struct TailTests {
    static let dimension = 16

    /// A policy under which a deferred batch into a non-empty graph links nothing.
    static let neverLink = HNSWTailPolicy(minimumTail: 1, growth: 1e9)

    /// Writes `docs` in one transaction with the given linking (as an import batch does).
    @discardableResult
    static func write(_ store: VecStore, _ c: VectorCollection, _ docs: [Document], deleting: [String] = [],
                      replace: Bool = false, linking: IndexLinking) throws -> Int {
        let prepared = try c.prepare(docs)
        return try store.write { txn in
            var writer = try CollectionWriter(txn, store.dbs, name: c.name, record: try c.currentRecord(txn))
            writer.indexLinking = linking
            for id in deleting { _ = try writer.delete(id: id) }
            try writer.append(prepared, replace: replace)
            try writer.finish()
            return writer.indexBlocksWritten
        }
    }

    /// A collection of `graphRows` linked rows followed by `tailRows` rows left in the tail; metadata
    /// `n` is the row number.
    static func withTail(_ dir: TempDir, graphRows: Int, tailRows: Int, metric: Metric = .cosine) throws
        -> (VecStore, VectorCollection, [Document])
    {
        let store = try VecStore(path: dir.path("t.vecstore"))
        let c = try store.collection("c", dimension: dimension, metric: metric,
                                     index: .hnsw(HNSWParameters(m: 8, efConstruction: 64)))
        var docs = makeDocuments(graphRows + tailRows, dimension: dimension, seed: 5)
        for i in docs.indices { docs[i].metadata = ["n": .number(Double(i)), "even": .bool(i % 2 == 0)] }
        try c.add(Array(docs[..<graphRows]))
        for start in stride(from: graphRows, to: docs.count, by: 500) {
            try write(store, c, Array(docs[start..<min(docs.count, start + 500)]),
                      linking: IndexLinking(mode: .deferred, policy: neverLink))
        }
        return (store, c, docs)
    }

    /// The row number in a `makeDocuments` id ("doc-12" → 12), or -1.
    static func row(_ id: String) -> Int { id.split(separator: "-").last.flatMap { Int($0) } ?? -1 }

    /// Bytes this thread passed to write system calls (LMDB writes a commit on the committing thread).
    static func threadWriteBytes() -> Int? { WriteCostTests.threadWriteBytes() }

    @Test("a bulk import with a tail writes O(final size), far less than linking every batch")
    func importWriteCost() throws {
        let dir = try TempDir()
        // Vectors and ids only: the keyword and field indexes have write costs of their own.
        let docs = makeDocuments(8000, dimension: 32, seed: 9).map { Document(id: $0.id, vector: $0.vector) }
        func importAll(_ name: String, _ policy: HNSWTailPolicy, index: IndexKind = .hnswDefault) throws
            -> (written: Int, file: Int, free: Int, used: Int)
        {
            let path = dir.path("\(name).vecstore")
            let store = try VecStore(path: path)
            var options = ImportOptions()
            options.batchSize = 250
            options.index = index
            options.tailPolicy = policy
            var reader = ArrayReader(docs)
            let before = Self.threadWriteBytes() ?? 0
            _ = try store.importRecords(from: &reader, into: "c", options: options)
            let written = (Self.threadWriteBytes() ?? 0) - before
            let c = try store.collection("c")
            #expect(try c.unindexedRows() == 0)
            let report = try store.verify()
            #expect(report.isOK, "\(report.faults)")
            let stats = try store.stats()
            return (written, stats.fileBytes, stats.freePages, stats.usedPages)
        }
        // The same rows without a graph: what the vectors, ids and documents cost (each batch rewrites the
        // partly filled last vector block), subtracted below so the graph's share is compared.
        let flat = try importAll("flat", HNSWTailPolicy(), index: .flat)
        // Every batch linked in its own commit (the behaviour before the tail).
        let eager = try importAll("eager", HNSWTailPolicy(minimumTail: 0, growth: 0))
        // Linked when the tail reaches the graph's size (and at least 500 rows).
        let tail = try importAll("tail", HNSWTailPolicy(minimumTail: 500, growth: 1))
        // Layer 0 (1 + 2·16 words per row) and the binary16 copies of the final graph.
        let graphBytes = docs.count * (4 * 33 + HNSWConfig.halfRowBytes(dimension: 32))
        print("tail tests: import wrote \(tail.written) bytes with a tail, \(eager.written) linking every batch, "
              + "\(flat.written) flat; graph \(graphBytes) bytes; store \(tail.file) / \(eager.file) bytes; "
              + "free pages \(tail.free) of \(tail.used) / \(eager.free) of \(eager.used)")
        guard Self.threadWriteBytes() != nil else { return }
        let tailGraph = tail.written - flat.written, eagerGraph = eager.written - flat.written
        #expect(tailGraph * 3 < eagerGraph, "graph writes: \(tailGraph) bytes with a tail, \(eagerGraph) without")
        #expect(tailGraph < 6 * graphBytes, "graph writes: \(tailGraph) bytes for a \(graphBytes)-byte graph")
        #expect(tail.free < eager.free)
    }

    @Test("searches scan the tail exactly: single, batch, filtered, near-duplicates")
    func searchWithTail() throws {
        let dir = try TempDir()
        let (store, c, docs) = try Self.withTail(dir, graphRows: 1500, tailRows: 1500)
        #expect(try c.unindexedRows() == 1500)
        #expect(try c.indexStats().lines.contains(.init("unlinked tail", "1500")))
        // Rows of the tail are found by their own vectors, which the graph alone cannot do.
        for i in stride(from: 1500, to: 3000, by: 97) {
            let hits = try c.search(docs[i].vector, k: 10)
            #expect(hits.first?.id == docs[i].id)
        }
        // Against exact search: every tail row of the exact top 10 is returned, and recall is high.
        var found = 0
        let queries = (0..<30).map { i in docs[(i * 101) % docs.count].vector.map { $0 + 0.05 } }
        let batch = try c.searchBatch(queries, k: 10, options: SearchOptions(ef: 128))
        for (qi, q) in queries.enumerated() {
            let exact = try c.search(q, k: 10, options: SearchOptions(exact: true)).map(\.id)
            let got = try c.search(q, k: 10, options: SearchOptions(ef: 128))
            #expect(got.map(\.id) == batch[qi].map(\.id))
            let ids = Set(got.map(\.id))
            for id in exact where Self.row(id) >= 1500 { #expect(ids.contains(id), "tail row \(id) missed") }
            found += exact.filter(ids.contains).count
        }
        #expect(found >= 30 * 10 * 9 / 10)
        // Filtered through the graph: only matches, and the tail's matches among them.
        let even = Filter.field("even", .equals(.bool(true)))
        for q in queries.prefix(10) {
            let exact = try c.search(q, k: 10, filter: even, options: SearchOptions(exact: true)).map(\.id)
            let got = try c.search(q, k: 10, filter: even, options: SearchOptions(ef: 128, filterStrategy: .graph))
            #expect(got.allSatisfy { Self.row($0.id) % 2 == 0 })
            let ids = Set(got.map(\.id))
            for id in exact where Self.row(id) >= 1500 { #expect(ids.contains(id), "tail row \(id) missed") }
        }
        // Near-duplicates through the index find a pair that lies in the tail.
        var twin = docs[2100]
        twin.id = "twin"
        try Self.write(store, c, [twin], linking: IndexLinking(mode: .deferred, policy: Self.neverLink))
        let pairs = try c.nearDuplicates(threshold: 0.9999)
        #expect(pairs.contains { Set([$0.a, $0.b]) == Set([docs[2100].id, "twin"]) })
        let report = try store.verify()
        #expect(report.isOK, "\(report.faults)")
    }

    @Test("deletes and upserts of tail rows write no graph block; the next write links the tail")
    func deleteAndUpsertInTail() throws {
        let dir = try TempDir()
        let (store, c, docs) = try Self.withTail(dir, graphRows: 1500, tailRows: 1000)
        let deferred = IndexLinking(mode: .deferred, policy: Self.neverLink)
        let gone = docs[1700]
        let blocks = try Self.write(store, c, [], deleting: [gone.id], linking: deferred)
        #expect(blocks == 0)
        #expect(try c.search(gone.vector, k: 5).allSatisfy { $0.id != gone.id })
        var moved = docs[1800]
        moved.vector = docs[10].vector.map { -$0 }
        let upsertBlocks = try Self.write(store, c, [moved], replace: true, linking: deferred)
        #expect(upsertBlocks == 0)
        #expect(try c.search(moved.vector, k: 1).first?.id == moved.id)
        #expect(try c.count() == 2499)
        var report = try store.verify()
        #expect(report.isOK, "\(report.faults)")
        // A single add links the whole tail (and itself).
        try c.add([Document(id: "late", vector: docs[0].vector.map { $0 * 0.5 + 0.1 })])
        #expect(try c.unindexedRows() == 0)
        report = try store.verify()
        #expect(report.isOK, "\(report.faults)")
        for i in stride(from: 1501, to: 2500, by: 111) where i != 1700 && i != 1800 {
            #expect(try c.search(docs[i].vector, k: 1).first?.id == docs[i].id)
        }
    }

    @Test("verify accepts a tail, declares the feature, and rejects a link into the tail")
    func verifyTail() throws {
        let dir = try TempDir()
        let (store, c, _) = try Self.withTail(dir, graphRows: 1200, tailRows: 600)
        #expect(try store.verify().isOK)
        let declared: [Format.Feature] = try store.read { txn in
            try txn.get(store.dbs.meta, Format.featuresKey).map { v in try Format.decodeFeatures(v) } ?? []
        }
        #expect(declared.contains(HNSWIndex.tailFeature))
        // Row 0's layer-0 list made to point at tail row 1500.
        try store.write { txn in
            let record = try c.currentRecord(txn)
            let key = Format.key(record.id, 0)
            let value = try #require(try txn.get(try store.dbs.graph, key))
            var bytes = Array(value)
            bytes.withUnsafeMutableBytes { b in
                b.storeBytes(of: UInt32(1).littleEndian, toByteOffset: 0, as: UInt32.self)
                b.storeBytes(of: UInt32(1500).littleEndian, toByteOffset: 4, as: UInt32.self)
            }
            try txn.put(try store.dbs.graph, key, bytes)
        }
        let report = try store.verify()
        #expect(report.faults.contains { $0.contains("links to row 1500") }, "\(report.faults)")
    }

    @Test("an import stopped by a bad record leaves whole batches, a valid graph and a tail the next import links")
    func interruptedImport() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("i.vecstore"))
        var docs = makeDocuments(3000, dimension: Self.dimension, seed: 3)
        var options = ImportOptions()
        options.batchSize = 200
        options.tailPolicy = HNSWTailPolicy(minimumTail: 500, growth: 1)
        var bad = docs
        bad[2650].vector = [1, 2, 3]  // wrong dimension: the batch of rows 2600..<2800 fails
        var reader = ArrayReader(bad)
        #expect(throws: ImportFailure.self) { _ = try store.importRecords(from: &reader, into: "c", options: options) }
        let c = try store.collection("c")
        #expect(try c.count() == 2600)
        // Linked at 600, 1200 and 2400 rows: 200 rows are left in the tail.
        #expect(try c.unindexedRows() == 200)
        #expect(try store.verify().isOK)
        #expect(try c.search(docs[2550].vector, k: 1).first?.id == docs[2550].id)
        docs.removeFirst(2600)
        var rest = ArrayReader(docs)
        _ = try store.importRecords(from: &rest, into: "c", options: options)
        #expect(try c.unindexedRows() == 0)
        #expect(try c.count() == 3000)
        #expect(try store.verify().isOK)
    }

    @Test("linking a tail in bounded steps, and a batched rebuild, leave a valid graph")
    func steppedLinking() throws {
        let dir = try TempDir()
        let (store, c, docs) = try Self.withTail(dir, graphRows: 1100, tailRows: 1900)
        let policy = HNSWTailPolicy(minimumTail: 1, growth: 0.25, minimumStep: 400)
        #expect(try c.linkIndexTail(threads: 2, policy: policy) == 1900)
        #expect(try c.unindexedRows() == 0)
        #expect(try store.verify().isOK)
        try c.buildIndex(HNSWParameters(m: 8, efConstruction: 64))
        #expect(try c.unindexedRows() == 0)
        #expect(try store.verify().isOK)
        var hits = 0
        for i in stride(from: 0, to: 3000, by: 50) where try c.search(docs[i].vector, k: 1).first?.id == docs[i].id {
            hits += 1
        }
        #expect(hits >= 58)
    }

    @Test("a batch that leaves an existing tail unlinked does not declare hnsw-tail again")
    func tailDeclaredOnce() throws {
        let dir = try TempDir()
        let (store, c, _) = try Self.withTail(dir, graphRows: 1200, tailRows: 600)
        // A batch through the HNSW writer that appends, deletes and links nothing: it must write nothing,
        // so its commit leaves the snapshot id (LMDB's last transaction id) where it was.
        let snapshot = { try store.read { txn in try txn.snapshotID() } }
        let before = try snapshot()
        try store.write { txn in
            let record = try c.currentRecord(txn)
            let view = try CollectionView(txn, store.dbs, record, name: c.name)
            let vectors = VectorTable(view)
            defer { vectors.deallocate() }
            var writer = try HNSWIndex.makeWriter(txn, store.dbs, record, name: c.name)
            let end = record.nextInternalID
            try writer.apply(IndexBatch(record: record, appended: end..<end, deleted: [], vectors: vectors,
                                        liveWords: view.liveWords, threads: 1,
                                        linking: IndexLinking(mode: .deferred, policy: Self.neverLink)))
        }
        #expect(try snapshot() == before)
        #expect(try c.unindexedRows() == 600)
    }

    @Test("compaction carries a tail over as a tail: graph renumbered, no rebuild, same results and recall")
    func compactCarriesTail() throws {
        let dir = try TempDir()
        let path = dir.path("t.vecstore")
        // 1,500 linked rows and 1,500 in the tail; deletes in both parts.
        let gone = Set(Array(stride(from: 3, to: 1500, by: 17)) + Array(stride(from: 1505, to: 3000, by: 13)))
        let queries = (0..<40).map { i in makeDocuments(3000, dimension: Self.dimension, seed: 5)[(i * 73) % 3000]
            .vector.map { $0 + 0.03 } }
        let before: [[SearchResult]], exactBefore: [[SearchResult]]
        do {
            let (store, c, docs) = try Self.withTail(dir, graphRows: 1500, tailRows: 1500)
            try Self.write(store, c, [], deleting: gone.map { docs[$0].id },
                           linking: IndexLinking(mode: .deferred, policy: Self.neverLink))
            #expect(try c.unindexedRows() == 1500)
            before = try queries.map { try c.search($0, k: 10, options: SearchOptions(ef: 64)) }
            exactBefore = try queries.map { try c.search($0, k: 10, options: SearchOptions(exact: true)) }
        }
        func recall(_ got: [[SearchResult]], _ exact: [[SearchResult]]) -> Double {
            let hits = zip(got, exact).map { g, e in Set(g.map(\.id)).intersection(e.map(\.id)).count }
            return Double(hits.reduce(0, +)) / Double(10 * exact.count)
        }
        for batchSize in [10_000, 700] {
            let copy = dir.path("t\(batchSize).vecstore")
            try FileManager.default.copyItem(atPath: path, toPath: copy)
            let report = try VecStore.compact(path: copy, batchSize: batchSize)
            #expect(report.indexes.count == 1 && report.indexes[0].carried, "\(report.indexes)")
            let store = try VecStore(path: copy)
            let c = try store.collection("c")
            let keptGraph = 1500 - gone.filter { $0 < 1500 }.count, keptTail = 1500 - gone.filter { $0 >= 1500 }.count
            #expect(try c.count() == keptGraph + keptTail)
            #expect(try c.unindexedRows() == keptTail)
            #expect(try CompactRemapTests.header(store, "c")?.nodes == UInt32(keptGraph))
            let declared: [Format.Feature] = try store.read { txn in
                try txn.get(store.dbs.meta, Format.featuresKey).map { v in try Format.decodeFeatures(v) } ?? []
            }
            #expect(declared.contains(HNSWIndex.tailFeature))
            let v = try store.verify()
            #expect(v.isOK, "\(v.faults.prefix(5))")
            // The same rows and vectors: exact search answers as before. The graph (its upper levels relinked
            // by parallel inserts) answers as well as before, and every tail row of the exact top 10 is
            // found (the tail is scanned exactly), with the exact score.
            let exact = try queries.map { try c.search($0, k: 10, options: SearchOptions(exact: true)) }
            #expect(exact.map { $0.map(\.id) } == exactBefore.map { $0.map(\.id) })
            #expect(exact.map { $0.map(\.score) } == exactBefore.map { $0.map(\.score) })
            let after = try queries.map { try c.search($0, k: 10, options: SearchOptions(ef: 64)) }
            #expect(recall(after, exact) >= recall(before, exactBefore) - 0.01,
                    "recall \(recall(after, exact)) after, \(recall(before, exactBefore)) before")
            for (got, e) in zip(after, exact) {
                for hit in e where Self.row(hit.id) >= 1500 { #expect(got.contains(hit), "tail row \(hit.id) missed") }
            }
            // The carried tail is linked by the next write like any tail.
            try c.add([Document(id: "late", vector: queries[0])])
            #expect(try c.unindexedRows() == 0)
            #expect(try store.verify().isOK)
        }
    }

    @Test("SIGKILL during a bulk import leaves whole batches and a valid graph; the next write links the tail")
    func killDuringImport() throws {
        let dir = try TempDir()
        let path = dir.path("big.jsonl")
        var text = ""
        for i in 0..<24_000 {
            let v = (0..<16).map { j in String(Float((i * 7 + j * 13) % 101) / 50 - 1) }.joined(separator: ",")
            text += #"{"id":"r\#(i)","vector":[\#(v)]}"# + "\n"
        }
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        var sawTail = false
        for (attempt, delay) in [1.5, 3.0, 5.0].enumerated() {
            let store = dir.path("k\(attempt).vecstore")
            try killCLI(["import", store, "-c", "c", "--index", "hnsw", path, "--batch-size", "1000"], after: delay)
            guard FileManager.default.fileExists(atPath: store) else { continue }
            let s = try VecStore(path: store)
            var report = try s.verify()
            #expect(report.isOK, "\(report.faults)")
            guard let c = try? s.collection("c") else { continue }
            let count = try c.count()
            #expect(count % 1000 == 0)
            if try c.unindexedRows() > 0 { sawTail = true }
            try c.add([Document(id: "after", vector: Array(repeating: 0.5, count: 16))])
            #expect(try c.unindexedRows() == 0)
            report = try s.verify()
            #expect(report.isOK, "\(report.faults)")
        }
        withKnownIssue("timing-dependent: the kill may come before the first commit or after a link step",
                       isIntermittent: true) {
            #expect(sawTail)
        }
    }

    @Test("ImportOptions.indexThreads = 1 links large batches serially: two imports build the same graph")
    func serialImportThreads() throws {
        let dir = try TempDir()
        // Batches of 1,000 rows (above the 512-row parallel threshold) with a tail linked in steps.
        let docs = makeDocuments(3000, dimension: Self.dimension, seed: 21).map { Document(id: $0.id, vector: $0.vector) }
        func importSerially(_ name: String) throws -> VectorCollection {
            let store = try VecStore(path: dir.path("\(name).vecstore"))
            var options = ImportOptions()
            options.batchSize = 1000
            options.index = .hnsw(HNSWParameters(m: 8, efConstruction: 64))
            options.indexThreads = 1
            options.tailPolicy = HNSWTailPolicy(minimumTail: 500, growth: 1)
            var reader = ArrayReader(docs)
            _ = try store.importRecords(from: &reader, into: "c", options: options)
            return try store.collection("c")
        }
        let a = try importSerially("a"), b = try importSerially("b")
        #expect(try a.unindexedRows() == 0)
        var found = 0
        for i in 0..<40 {
            let q = docs[(i * 71) % docs.count].vector.map { $0 + 0.03 }
            // A serial build is deterministic (fixed level seed, one insertion order): same results, same scores.
            let ra = try a.search(q, k: 10, options: SearchOptions(ef: 32))
            let rb = try b.search(q, k: 10, options: SearchOptions(ef: 32))
            #expect(ra.map(\.id) == rb.map(\.id))
            #expect(ra.map(\.score) == rb.map(\.score))
            let exact = Set(try a.search(q, k: 10, options: SearchOptions(exact: true)).map(\.id))
            found += ra.filter { exact.contains($0.id) }.count
        }
        #expect(found >= 40 * 10 * 9 / 10, "recall@10 \(Double(found) / 400)")
    }

    @Test("the construction beam's binary16 table: committed blocks from the snapshot, the batch's rows converted, Float16 bit for bit")
    func constructionHalfTable() throws {
        let dir = try TempDir()
        // 384-d rows: 512-row blocks. 1,300 rows committed (two full blocks, one partial), then a batch of
        // 600 that fills the partial block and starts another.
        let dim = 384
        let store = try VecStore(path: dir.path("h.vecstore"))
        let c = try store.collection("c", dimension: dim, metric: .l2, index: .hnsw(HNSWParameters(m: 8, efConstruction: 32)))
        let docs = makeDocuments(1900, dimension: dim, seed: 33).map { Document(id: $0.id, vector: $0.vector) }
        try c.add(Array(docs[..<1300]))
        let prepared = try c.prepare(Array(docs[1300...]))
        try store.write { txn in
            var writer = try CollectionWriter(txn, store.dbs, name: c.name, record: try c.currentRecord(txn))
            try writer.append(prepared, replace: false)
            let record = writer.record
            #expect(record.blockCapacity == 512)
            let before = try #require(writer.preBatch)
            let vt = VectorTable(before, appended: writer.appended)
            defer { vt.deallocate() }
            let rowBytes = HNSWTraversal.f16.rowBytes(dimension: dim)
            // The batch's own copies are written after the table is made (as `HNSWWriter.apply` does).
            let table = try #require(try HNSWCopyTable(txn, store.dbs, collection: record.id, blockShift: Int(record.blockShift),
                                                       dimension: dim, rowBytes: rowBytes, committedRows: 1300,
                                                       rows: 1900) { row, out in
                HNSWTraversalCopies.encodeHalf(vt.vector(row), dimension: dim, rowBytes: rowBytes, into: out)
            })
            try HNSWTraversalCopies.write(txn, store.dbs, traversal: .f16, collection: record.id, name: c.name,
                                          dimension: dim, blockCapacity: record.blockCapacity, initialRows: 1300,
                                          rows: 1900, vectors: vt)
            var wrong = 0
            for r in 0..<1900 {
                let h = table.traversalCopy(UInt32(r)).assumingMemoryBound(to: UInt16.self)
                for i in 0..<dim where h[i] != Float16(docs[r].vector[i]).bitPattern { wrong += 1 }
            }
            #expect(wrong == 0, "\(wrong) components differ from Float16 of the row")
        }
    }

    @Test("a 2-thread import holds what a 1-thread import holds: rows, a valid graph, recall (binary16 and int8 construction beams)")
    func parallelImportMatchesSerial() throws {
        let dir = try TempDir()
        // Batches of 1,000 rows (above the 512-row parallel threshold), a tail linked in steps, binary16
        // construction beam.
        let docs = makeDocuments(3000, dimension: 48, seed: 23).map { Document(id: $0.id, vector: $0.vector) }
        for traversal in [HNSWTraversal.f16, .int8] {
        func importWith(threads: Int) throws -> (VecStore, VectorCollection) {
            let store = try VecStore(path: dir.path("t\(threads)-\(traversal).vecstore"))
            var options = ImportOptions()
            options.batchSize = 1000
            options.index = .hnsw(HNSWParameters(m: 8, efConstruction: 64, traversal: traversal))
            options.indexThreads = threads
            options.tailPolicy = HNSWTailPolicy(minimumTail: 500, growth: 1)
            var reader = ArrayReader(docs)
            let report = try store.importRecords(from: &reader, into: "c", options: options)
            #expect(report.imported == docs.count && report.batches == 3)
            return (store, try store.collection("c"))
        }
        let (s1, serial) = try importWith(threads: 1)
        let (s2, parallel) = try importWith(threads: 2)
        #expect(try s1.verify().isOK)
        #expect(try s2.verify().isOK)
        #expect(try serial.count() == docs.count && parallel.count() == docs.count)
        #expect(try serial.unindexedRows() == 0 && parallel.unindexedRows() == 0)
        var found = [0, 0]
        for i in 0..<50 {
            let q = docs[(i * 53) % docs.count].vector.map { $0 + 0.02 }
            let exact = Set(try serial.search(q, k: 10, options: SearchOptions(exact: true)).map(\.id))
            #expect(exact == Set(try parallel.search(q, k: 10, options: SearchOptions(exact: true)).map(\.id)))
            for (j, c) in [serial, parallel].enumerated() {
                found[j] += try c.search(q, k: 10, options: SearchOptions(ef: 32)).filter { exact.contains($0.id) }.count
            }
        }
        #expect(found[0] >= 450 && found[1] >= 450, "recall@10 serial \(found[0]) / parallel \(found[1]) of 500")
        #expect(abs(found[0] - found[1]) <= 15, "recall@10 serial \(found[0]) / parallel \(found[1]) of 500")
        }
    }
}
