import Foundation
import Testing
@testable import VecStore
import LMDB

/// A temporary store removed when the test ends.
private final class TempStore {
    let path: String
    let store: VecStore
    init() throws {
        path = NSTemporaryDirectory() + "bm25-\(UUID().uuidString).vecstore"
        store = try VecStore(path: path)
    }
    deinit {
        for p in [path, path + "-lock", path + ".compacting", path + ".compacting-lock"] {
            try? FileManager.default.removeItem(atPath: p)
        }
    }
}

private func doc(_ id: String, _ text: String?, _ metadata: [String: JSONValue] = [:], vector: [Float] = [1, 0]) -> Document {
    Document(id: id, vector: vector, text: text, metadata: metadata)
}

/// Lucene BM25 computed from scratch over (already analysed) documents.
private func referenceScore(query: [String], doc: [String], all: [[String]], k1: Double = 1.2, b: Double = 0.75) -> Double {
    let live = all.filter { !$0.isEmpty }
    let n = Double(live.count)
    let avgdl = Double(live.reduce(0) { $0 + $1.count }) / n
    var score = 0.0
    for term in Set(query) {
        let df = Double(live.filter { $0.contains(term) }.count)
        guard df > 0 else { continue }
        let idf = log(1 + (n - df + 0.5) / (df + 0.5))
        let tf = Double(doc.filter { $0 == term }.count)
        guard tf > 0 else { continue }
        let norm: Double = k1 * (1 - b + b * Double(doc.count) / avgdl)
        let part: Double = idf * tf * (k1 + 1) / (tf + norm)
        score += part
    }
    return score
}

@Suite struct BM25Tests {
    @Test("texts analysed on several cores write the same keyword index, byte for byte, as on one core")
    func parallelAnalysisMatchesSerial() throws {
        // 1,400 texts (two batches of 700: 2 workers each, above TextIndexWriter.textsPerWorker): repeated and
        // rare words, stop words only, no text, non-ASCII, hyphenated codes; the second batch appends to terms
        // the first created (posting blocks refilled).
        let words = ["alpha", "beta", "gamma", "delta", "running", "runs", "ran", "the", "of", "Zürich", "naïve",
                     "xyz-123", "COVID-19", "snake_case", "data", "databases", "quick", "brown", "fox", "über"]
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(state >> 33)
        }
        let docs = (0..<1_400).map { i -> Document in
            let text: String?
            switch i % 97 {
            case 0: text = nil
            case 1: text = "the of the"  // stop words only: no length, not counted
            case 2: text = ""
            default: text = (0..<(1 + next() % 30)).map { _ in words[next() % words.count] + (next() % 7 == 0 ? "\(i % 13)" : "") }
                .joined(separator: " ")
            }
            return doc("d\(i)", text, vector: [Float(i % 5), 1])
        }
        let dir = NSTemporaryDirectory() + "bm25-par-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func build(threads: Int) throws -> [String: [[UInt8]]] {
            let path = dir + "/t\(threads).vecstore"
            do {
                let store = try VecStore(path: path)
                var options = ImportOptions()
                options.batchSize = 700
                options.index = .flat
                options.indexThreads = threads
                var reader = ArrayReader(docs)
                let report = try store.importRecords(from: &reader, into: "c", options: options)
                #expect(report.imported == docs.count)
                // The verifier re-analyses every text with a fresh analyzer: tf, lengths and df as stored.
                #expect(try store.collection("c").verifyTextIndex().isEmpty)
            }
            let env = try Environment(path: path, options: { var o = EnvironmentOptions(); o.readOnly = true; return o }())
            let names = ["terms", "postings", "doclens", "textinfo"]
            let handles = try env.openDatabases(names.map { ($0, DatabaseFlags()) }, create: false)
            return try env.read { txn in
                var out: [String: [[UInt8]]] = [:]
                for db in handles {
                    try txn.withCursor(db) { (c: Cursor) throws -> Void in
                        var e = try c.first()
                        while let (k, v) = e {
                            out[db.name, default: []].append(Array(k) + [0xFF] + Array(v))
                            e = try c.next()
                        }
                    }
                }
                return out
            }
        }
        let serial = try build(threads: 1), parallel = try build(threads: 3)
        #expect(serial["terms"]?.count ?? 0 > 20)
        #expect(serial["postings"]?.isEmpty == false && serial["doclens"]?.isEmpty == false)
        for name in ["terms", "postings", "doclens", "textinfo"] {
            let a = serial[name] ?? [], b = parallel[name] ?? []
            let firstDifference = a.indices.first { $0 >= b.count || a[$0] != b[$0] } ?? (a.count == b.count ? nil : a.count)
            #expect(firstDifference == nil, "\(name): \(a.count) against \(b.count) entries, first difference at \(firstDifference ?? -1)")
        }
    }

    @Test func scoresMatchHandComputedBM25() throws {
        let t = try TempStore()
        let c = try t.store.collection("c", dimension: 2)
        let texts = ["the quick brown fox", "quick quick dogs run", "a lazy brown dog sleeps", "nothing relevant here",
                     "foxes and dogs"]
        try c.add(texts.enumerated().map { doc("d\($0.offset)", $0.element) })
        let analysed = try texts.map { try c.analyze($0) }
        #expect(analysed[1] == ["quick", "quick", "dog", "run"])
        let hits = try c.searchText("quick dog", k: 10)
        var expected: [(id: String, score: Double)] = []
        for (i, terms) in analysed.enumerated() {
            let s = referenceScore(query: ["quick", "dog"], doc: terms, all: analysed)
            if s > 0 { expected.append((id: "d\(i)", score: s)) }
        }
        expected.sort { $0.score > $1.score }
        #expect(hits.map(\.id) == expected.map(\.id))
        for (h, e) in zip(hits, expected) { #expect(abs(Double(h.score) - e.score) < 1e-4) }
        let stats = try c.textIndexStats()
        #expect(stats.documents == 5)
        #expect(stats.totalLength == UInt64(analysed.reduce(0) { $0 + $1.count }))
    }

    @Test func prunedSearchEqualsExhaustive() throws {
        let t = try TempStore()
        let c = try t.store.collection("c", dimension: 2)
        var rng = SplitMix64(seed: 42)
        let vocab = (0..<60).map { "w\($0)" }
        // Zipf-like term choice so some terms span many 128-posting blocks and others are rare.
        func word() -> String {
            let u = Double.random(in: 0..<1, using: &rng)
            return vocab[min(vocab.count - 1, Int(pow(u, 3) * Double(vocab.count)))]
        }
        var docs: [Document] = []
        for i in 0..<3000 {
            let n = Int.random(in: 1...40, using: &rng)
            docs.append(doc("d\(i)", (0..<n).map { _ in word() }.joined(separator: " ")))
        }
        // Several batches so that tail blocks are refilled across transactions.
        for chunk in stride(from: 0, to: docs.count, by: 700) { try c.add(Array(docs[chunk..<min(docs.count, chunk + 700)])) }
        try c.delete(ids: (0..<3000).filter { $0 % 7 == 3 }.map { "d\($0)" })
        for q in 0..<40 {
            let query = (0..<Int.random(in: 1...8, using: &rng)).map { _ in word() }.joined(separator: " ")
            for k in [1, 10, 100] {
                var small = TextSearchOptions()
                small.windowRows = [64, 256, 4096][q % 3]
                let pruned = try c.searchText(query, k: k, options: small)
                let full = try c.searchText(query, k: k, options: TextSearchOptions(exhaustive: true))
                #expect(pruned.count == full.count, "query \(q) k \(k)")
                for (a, b) in zip(pruned, full) {
                    #expect(abs(a.score - b.score) <= 1e-4 * max(1, abs(b.score)), "query \(q) '\(query)' k \(k)")
                }
                // Ids agree except where scores tie within rounding.
                let distinct = zip(pruned, full).filter { $0.id != $1.id && abs($0.score - $1.score) > 1e-4 }
                #expect(distinct.isEmpty, "query \(q) '\(query)' k \(k)")
                #expect(!pruned.contains { Int($0.id.dropFirst())! % 7 == 3 }, "deleted document returned")
            }
        }
    }

    @Test func saturatedTermFrequencyStillBoundsScores() throws {
        let t = try TempStore()
        let c = try t.store.collection("c", dimension: 2)
        // One document repeats a term more often than the block header's 16-bit max tf can say.
        var docs = (0..<300).map { doc("d\($0)", "alpha beta gamma \($0)") }
        docs.append(doc("big", String(repeating: "alpha ", count: 70_000) + "delta"))
        try c.add(docs)
        var tiny = TextSearchOptions()
        tiny.windowRows = 64
        let pruned = try c.searchText("alpha delta", k: 3, options: tiny)
        let full = try c.searchText("alpha delta", k: 3, options: TextSearchOptions(exhaustive: true))
        #expect(pruned.map(\.id) == full.map(\.id))
        #expect(pruned.first?.id == "big")
        #expect(try c.verifyTextIndex().isEmpty)
    }

    @Test func deletesAndUpsertsKeepStatisticsOfLiveDocuments() throws {
        let a = try TempStore(), b = try TempStore()
        let ca = try a.store.collection("c", dimension: 2)
        let cb = try b.store.collection("c", dimension: 2)
        try ca.add([doc("1", "apple banana"), doc("2", "apple cherry cherry"), doc("3", "banana split"),
                    doc("4", "grape apple apple apple")])
        try ca.delete(ids: ["2"])
        try ca.upsert([doc("4", "grape juice")])
        // The same live documents written fresh: every statistic and score must agree.
        try cb.add([doc("1", "apple banana"), doc("3", "banana split"), doc("4", "grape juice")])
        let sa = try ca.textIndexStats(), sb = try cb.textIndexStats()
        #expect(sa.documents == 3 && sb.documents == 3)
        #expect(sa.totalLength == sb.totalLength)
        #expect(sa.postings > sb.postings)  // tombstoned postings wait for compaction
        for q in ["apple", "banana", "cherry", "grape juice", "apple banana split"] {
            let ra = try ca.searchText(q, k: 10), rb = try cb.searchText(q, k: 10)
            #expect(ra.map(\.id) == rb.map(\.id), "\(q)")
            for (x, y) in zip(ra, rb) { #expect(abs(x.score - y.score) < 1e-5, "\(q)") }
        }
        #expect(try ca.searchText("cherry", k: 10).isEmpty)
    }

    @Test func failedBatchLeavesIndexUntouched() throws {
        let t = try TempStore()
        let c = try t.store.collection("c", dimension: 2)
        try c.add([doc("1", "alpha beta")])
        let before = try c.textIndexStats()
        #expect(throws: VecStoreError.self) { try c.add([doc("2", "gamma"), doc("1", "alpha")]) }
        #expect(try c.textIndexStats() == before)
        #expect(try c.searchText("gamma", k: 5).isEmpty)
    }

    @Test func filterRestrictsResults() throws {
        let t = try TempStore()
        let c = try t.store.collection("c", dimension: 2)
        try c.add([doc("1", "solar power", ["kind": "a"]), doc("2", "solar wind", ["kind": "b"]),
                   doc("3", "solar solar energy", ["kind": "b"])])
        let hits = try c.searchText("solar", k: 10, filter: .field("kind", .equals("b")))
        #expect(Set(hits.map(\.id)) == ["2", "3"])
        #expect(hits.first?.id == "3")
    }

    @Test func documentsWithoutTextAndDisabledIndexing() throws {
        let t = try TempStore()
        let c = try t.store.collection("c", dimension: 2)
        try c.add([doc("1", nil), doc("2", "the of and"), doc("3", "word")])
        let stats = try c.textIndexStats()
        #expect(stats.documents == 1)  // no text, and only stop words, are not counted
        try c.configureTextIndex(TextIndexOptions(enabled: false))
        #expect(throws: VecStoreError.self) { try c.searchText("word", k: 1) }
        #expect(try c.textIndexStats().terms == 0)
        try c.configureTextIndex(TextIndexOptions(analyzer: AnalyzerOptions(stemmer: nil, stopWords: false)))
        #expect(try c.searchText("the", k: 5).map(\.id) == ["2"])
        #expect(try c.textIndexStats().documents == 2)
    }

    @Test func analyzerOptionsAreStoredAndQueriesAnalysedTheSameWay() throws {
        let t = try TempStore()
        let c = try t.store.collection("c", dimension: 2)
        try c.add([doc("1", "running fast"), doc("2", "he runs")])
        #expect(Set(try c.searchText("run", k: 10).map(\.id)) == ["1", "2"])
        try c.configureTextIndex(TextIndexOptions(analyzer: AnalyzerOptions(stemmer: nil, stopWords: true)))
        #expect(try c.searchText("run", k: 10).isEmpty)
        #expect(try c.searchText("runs", k: 10).map(\.id) == ["2"])
        // Reopened from disk, the options hold.
        let reopened = try VecStore(path: t.path).collection("c")
        #expect(try reopened.textIndexOptions().analyzer.stemmer == nil)
        #expect(try reopened.searchText("running", k: 10).map(\.id) == ["1"])
        // k1 and b change without rebuilding.
        try c.configureTextIndex(TextIndexOptions(analyzer: AnalyzerOptions(stemmer: nil), k1: 2, b: 0.5))
        #expect(try c.textIndexOptions().k1 == 2)
        #expect(throws: VecStoreError.self) { try c.configureTextIndex(TextIndexOptions(b: 2)) }
        #expect(throws: VecStoreError.self) {
            try c.configureTextIndex(TextIndexOptions(analyzer: AnalyzerOptions(stemmer: "klingon")))
        }
    }

    @Test func compactionDropsDeadPostingsAndKeepsResults() throws {
        let t = try TempStore()
        let c = try t.store.collection("c", dimension: 2)
        try c.configureTextIndex(TextIndexOptions(analyzer: AnalyzerOptions(stemmer: "porter", stopWords: false)))
        try c.add((0..<400).map { doc("d\($0)", "common term\($0 % 13) " + String(repeating: "x ", count: $0 % 5)) })
        try c.delete(ids: (0..<400).filter { $0 % 3 == 0 }.map { "d\($0)" })
        let before = try ["common", "term4 x", "term7"].map { try c.searchText($0, k: 20) }
        let live = try c.textIndexStats()
        try VecStore.compact(path: t.path)
        let after = try VecStore(path: t.path).collection("c")
        let stats = try after.textIndexStats()
        #expect(stats.options == live.options)
        #expect(stats.documents == live.documents && stats.totalLength == live.totalLength)
        #expect(stats.postings < live.postings)
        #expect(try after.verifyTextIndex().isEmpty)
        for (q, old) in zip(["common", "term4 x", "term7"], before) {
            let new = try after.searchText(q, k: 20)
            #expect(new.map(\.id) == old.map(\.id))
            for (x, y) in zip(new, old) { #expect(abs(x.score - y.score) < 1e-5) }
        }
    }

    @Test func verifyFindsNoFaultInAHealthyIndex() throws {
        let t = try TempStore()
        let c = try t.store.collection("c", dimension: 2)
        try c.add((0..<300).map { doc("d\($0)", "alpha beta\($0 % 4) gamma-\($0 % 9)") })
        try c.delete(ids: ["d5", "d6"])
        try c.upsert([doc("d7", "changed text")])
        #expect(try c.verifyTextIndex().isEmpty)
        #expect(try t.store.verify().isOK)
    }

    @Test func concurrentSearchesAgreeAndDropRemovesTheIndex() throws {
        let t = try TempStore()
        let c = try t.store.collection("c", dimension: 2)
        try c.add((0..<500).map { doc("d\($0)", "word\($0 % 17) shared text number \($0 % 5) running") })
        let queries = ["word3 shared", "number 4", "running word16", "text"]
        let expected = try queries.map { try c.searchText($0, k: 10).map(\.id) }
        let failures = LockedCounter()
        DispatchQueue.concurrentPerform(iterations: 64) { i in
            let q = i % queries.count
            if (try? c.searchText(queries[q], k: 10).map(\.id)) != expected[q] { failures.increment() }
        }
        #expect(failures.value == 0)
        try t.store.dropCollection("c")
        let again = try t.store.collection("c", dimension: 2)
        #expect(try again.textIndexStats().terms == 0)
        #expect(try again.searchText("text", k: 5).isEmpty)
        #expect(try t.store.verify().isOK)
    }

    @Test func postingBlockCodecRoundTrips() throws {
        var rng = SplitMix64(seed: 9)
        for _ in 0..<500 {
            let n = Int.random(in: 1...128, using: &rng)
            var rows: [UInt32] = []
            var row = UInt32.random(in: 0...1_000_000, using: &rng)
            for _ in 0..<n {
                rows.append(row)
                // Gaps from 1 up to multi-byte varints.
                row += [1, 2, 127, 128, 16_384, 2_000_000][Int.random(in: 0..<6, using: &rng)]
            }
            let tfs = (0..<n).map { _ in [1, 2, 300, 70_000][Int.random(in: 0..<4, using: &rng)] as UInt32 }
            let bytes = PostingBlock.encode(rows: rows[...], tfs: tfs[...]) { $0 % 1000 + 1 }
            try bytes.withUnsafeBytes { raw in
                let h = try PostingBlock.header(raw, context: "test")
                #expect(h.count == n && h.firstRow == rows[0] && h.lastRow == rows[n - 1])
                #expect(h.maxTF == min(tfs.max()!, 65_535))
                #expect(h.minLength == rows.map { $0 % 1000 + 1 }.min()!)
                var r = [UInt32](repeating: 0, count: n), t = [UInt32](repeating: 0, count: n)
                let ok = r.withUnsafeMutableBufferPointer { rp in
                    t.withUnsafeMutableBufferPointer { tp in
                        PostingBlock.decode(raw, count: n, firstRow: h.firstRow, lastRow: h.lastRow,
                                            rows: rp.baseAddress!, tfs: tp.baseAddress!)
                    }
                }
                #expect(ok && r == rows && t == tfs)
                // A truncated value does not decode.
                let cut = UnsafeRawBufferPointer(rebasing: raw[0..<(raw.count - 1)])
                let bad = r.withUnsafeMutableBufferPointer { rp in
                    t.withUnsafeMutableBufferPointer { tp in
                        PostingBlock.decode(cut, count: n, firstRow: h.firstRow, lastRow: h.lastRow,
                                            rows: rp.baseAddress!, tfs: tp.baseAddress!)
                    }
                }
                #expect(!bad)
            }
        }
    }

    @Test func verifyReportsDamagedIndexes() throws {
        let t = try TempStore()
        let c = try t.store.collection("c", dimension: 2)
        try c.add((0..<200).map { doc("d\($0)", "alpha beta\($0 % 3)") })
        #expect(try c.verifyTextIndex().isEmpty)
        let cid = c.collectionID
        // 1. A wrong document frequency.
        try t.store.write { txn in
            let key = TextFormat.termKey(cid, "alpha")
            var entry = try TermEntry.decode(try #require(try txn.get(t.store.dbs.terms, key)), context: "test")
            entry.df += 1
            try txn.put(t.store.dbs.terms, key, entry.encoded())
        }
        #expect(try c.verifyTextIndex().contains { $0.contains("'alpha' df 201") })
        #expect(try !t.store.verify().isOK)
        try t.store.write { txn in
            let key = TextFormat.termKey(cid, "alpha")
            var entry = try TermEntry.decode(try #require(try txn.get(t.store.dbs.terms, key)), context: "test")
            entry.df -= 1
            try txn.put(t.store.dbs.terms, key, entry.encoded())
        }
        #expect(try c.verifyTextIndex().isEmpty)
        // 2. A posting block whose tf was changed.
        try t.store.write { txn in
            let entry = try TermEntry.decode(try #require(try txn.get(t.store.dbs.terms, TextFormat.termKey(cid, "beta0"))),
                                             context: "test")
            let key = TextFormat.postingKey(cid, entry.termID, 0)
            var bytes = Array(try #require(try txn.get(t.store.dbs.postings, key)))
            bytes[bytes.count - 1] = 2  // last tf 1 → 2
            try txn.put(t.store.dbs.postings, key, bytes)
        }
        #expect(try c.verifyTextIndex().contains { $0.contains("'beta0'") })
        // 3. Statistics off by one.
        try t.store.write { txn in
            var info = try TextInfo.decode(try #require(try txn.get(t.store.dbs.textinfo, Format.prefix(cid))), context: "test")
            info.totalLength += 1
            try txn.put(t.store.dbs.textinfo, Format.prefix(cid), info.encoded())
        }
        #expect(try c.verifyTextIndex().contains { $0.contains("text statistics") })
    }

    @Test func hybridFusion() throws {
        let t = try TempStore()
        let c = try t.store.collection("c", dimension: 2)
        try c.add([doc("text", "zebra zebra zebra", vector: [0, 1]), doc("vec", "horse", vector: [1, 0]),
                   doc("both", "zebra horse", vector: [0.9, 0.1])])
        let q: [Float] = [1, 0]
        let vectorOnly = try c.hybridSearch(text: "zebra", vector: q, k: 3, fusion: .weighted(alpha: 1))
        #expect(vectorOnly.map(\.id) == ["vec", "both", "text"])
        let textOnly = try c.hybridSearch(text: "zebra", vector: q, k: 2, fusion: .weighted(alpha: 0))
        #expect(textOnly.map(\.id) == ["text", "both"])
        let mixed = try c.hybridSearch(text: "zebra", vector: q, k: 3, fusion: .weighted(alpha: 0.5))
        #expect(mixed.first?.id == "both")
        // RRF: ranks vector (vec 1, both 2, text 3), text (text 1, both 2):
        // text = 1/61 + 1/63 = 0.0322664 just beats both = 2/62 = 0.0322581; vec = 1/61.
        let rrf = try c.hybridSearch(text: "zebra", vector: q, k: 3, fusion: .rrf(k: 60))
        #expect(rrf.map(\.id) == ["text", "both", "vec"])
        #expect(abs(Double(rrf[0].score) - (1.0 / 61 + 1.0 / 63)) < 1e-7)
        #expect(abs(Double(rrf[1].score) - 2.0 / 62) < 1e-7)
        #expect(abs(Double(rrf[2].score) - 1.0 / 61) < 1e-7)
        #expect(throws: VecStoreError.self) { try c.hybridSearch(text: "x", vector: q, k: 1, fusion: .weighted(alpha: 2)) }
        // The filter applies to both sides.
        try c.upsert([doc("text", "zebra zebra zebra", ["keep": true], vector: [0, 1]),
                      doc("vec", "horse", ["keep": true], vector: [1, 0])])
        for fusion in [Fusion.weighted(alpha: 0.5), .rrf(k: 60)] {
            let kept = try c.hybridSearch(text: "zebra", vector: q, k: 3, fusion: fusion, filter: .field("keep", .equals(true)))
            #expect(Set(kept.map(\.id)) == ["text", "vec"])
        }
    }
}

@Suite struct RetrievalMetricsTests {
    @Test func handComputedValues() {
        // q1: relevant a (grade 1), b (grade 1); ranking x, a, y, b.
        // q2: relevant c; ranking c.
        let qrels: RetrievalMetrics.Qrels = ["q1": ["a": 1, "b": 1], "q2": ["c": 1], "q3": ["z": 0]]
        let results = ["q1": ["x", "a", "y", "b"], "q2": ["c"]]
        let m = RetrievalMetrics.evaluate(results: results, qrels: qrels, ks: [1, 3, 5])
        // q3 has no relevant document and is not judged.
        #expect(abs(m["p@1"]! - 0.5) < 1e-12)                       // (0 + 1) / 2
        #expect(abs(m["p@3"]! - (1.0 / 3 + 1.0 / 3) / 2) < 1e-12)   // q1 1/3, q2 1/3
        #expect(abs(m["r@3"]! - (0.5 + 1) / 2) < 1e-12)
        #expect(abs(m["r@5"]! - 1) < 1e-12)
        #expect(abs(m["mrr"]! - (0.5 + 1) / 2) < 1e-12)
        // nDCG@5 of q1: DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3).
        let q1 = (1 / log2(3.0) + 1 / log2(5.0)) / (1 + 1 / log2(3.0))
        #expect(abs(m["ndcg@5"]! - (q1 + 1) / 2) < 1e-12)
        #expect(abs(m["ndcg@1"]! - 0.5) < 1e-12)
    }

    @Test func gradedRelevanceAndMissingRuns() {
        let qrels: RetrievalMetrics.Qrels = ["q": ["a": 2, "b": 1]]
        let m = RetrievalMetrics.evaluate(results: ["q": ["b", "a"]], qrels: qrels, ks: [2])
        let dcg = 1 + 2 / log2(3.0), idcg = 2 + 1 / log2(3.0)
        #expect(abs(m["ndcg@2"]! - dcg / idcg) < 1e-12)
        let none = RetrievalMetrics.evaluate(results: [:], qrels: qrels, ks: [2])
        #expect(none["ndcg@2"] == 0 && none["mrr"] == 0)
    }

    @Test func readsBEIRFiles() throws {
        let dir = NSTemporaryDirectory() + "qrels-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "query-id\tcorpus-id\tscore\r\n1\t31715818\t1\r\n3\t14717500\t1\r\n1\t7\t2\r\n".write(
            toFile: dir + "/q.tsv", atomically: true, encoding: .utf8)
        let q = try RetrievalMetrics.readQrels(path: dir + "/q.tsv")
        #expect(q == ["1": ["31715818": 1, "7": 2], "3": ["14717500": 1]])
        try #"{"_id": "0", "text": "a claim", "metadata": {"x": [{"y": 1}]}}"#.appending("\n")
            .write(toFile: dir + "/q.jsonl", atomically: true, encoding: .utf8)
        let queries = try RetrievalMetrics.readQueries(path: dir + "/q.jsonl")
        #expect(queries.count == 1 && queries[0].id == "0" && queries[0].text == "a claim")
    }
}

private final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
