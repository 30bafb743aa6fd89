import Foundation
import Testing
@testable import VecStore

@Suite("Exact search")
struct SearchTests {
    @Test("single queries equal brute force", arguments: Metric.allCases)
    func singleMatchesBruteForce(metric: Metric) throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("s.vecstore"))
        // 37-d: not a multiple of the SIMD width, exercising the kernel tails.
        let docs = makeDocuments(2500, dimension: 37, seed: 11)
        let coll = try store.collection("c", dimension: 37, metric: metric)
        try coll.add(docs)
        var rng = SeededRandom(seed: 99)
        for threads in [1, 3] {
            for _ in 0..<10 {
                let q = rng.vector(37)
                let results = try coll.search(q, k: 10, options: SearchOptions(threads: threads))
                expectMatches(results, bruteForce(docs, q, k: 10, metric: metric))
            }
        }
    }

    @Test("batches (SIMD scan below 20 queries, tiled kernel from 20) equal single queries",
          arguments: [5, 20, 67])
    func batchMatchesSingle(queries: Int) throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("s.vecstore"))
        for metric in Metric.allCases {
            let docs = makeDocuments(1500, dimension: 50, seed: 5)
            let coll = try store.collection("c-\(metric)", dimension: 50, metric: metric)
            try coll.add(docs)
            try coll.delete(ids: (0..<100).map { "doc-\($0 * 3)" })
            let live = docs.filter { d in !(0..<100).contains { "doc-\($0 * 3)" == d.id } }
            var rng = SeededRandom(seed: 4)
            let qs = (0..<queries).map { _ in rng.vector(50) }
            let batch = try coll.searchBatch(qs, k: 7, options: SearchOptions(threads: 2))
            #expect(batch.count == queries)
            for (q, results) in zip(qs, batch) {
                expectMatches(results, bruteForce(live, q, k: 7, metric: metric))
            }
        }
    }

    @Test("k larger than the collection returns every live document; k = 0 returns none")
    func kBounds() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("s.vecstore"))
        let coll = try store.collection("c", dimension: 3, metric: .l2)
        try coll.add(makeDocuments(10, dimension: 3))
        try coll.delete(ids: ["doc-1"])
        #expect(try coll.search([0, 0, 0], k: 100).count == 9)
        #expect(try coll.search([0, 0, 0], k: 0).isEmpty)
        #expect(try coll.searchBatch([[0, 0, 0], [1, 1, 1]], k: 100).map(\.count) == [9, 9])
        #expect(throws: VecStoreError.self) { try coll.search([0, 0], k: 1) }
    }

    @Test("search(similarTo:) excludes the document itself")
    func similarTo() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("s.vecstore"))
        let docs = makeDocuments(200, dimension: 8)
        let coll = try store.collection("c", dimension: 8, metric: .cosine)
        try coll.add(docs)
        let results = try coll.search(similarTo: "doc-3", k: 5)
        #expect(results.count == 5)
        #expect(!results.contains { $0.id == "doc-3" })
        let expected = bruteForce(docs.filter { $0.id != "doc-3" }, docs[3].vector, k: 5, metric: .cosine)
        expectMatches(results, expected)
        #expect(throws: VecStoreError.self) { try coll.search(similarTo: "nope", k: 5) }
    }

    @Test("recall@10 = 1.0 on siftsmall against its ground truth", .enabled(if: hasSharedData))
    func siftsmallRecall() throws {
        let base = sharedData.appendingPathComponent("siftsmall/siftsmall_base.fvecs").path
        let queries = sharedData.appendingPathComponent("siftsmall/siftsmall_query.fvecs").path
        let truthPath = sharedData.appendingPathComponent("siftsmall/siftsmall_groundtruth.ivecs").path
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("sift.vecstore"))
        var options = ImportOptions()
        options.metric = .l2
        options.metricIsExplicit = true
        var reader = try VecStore.reader(for: base, options: options)
        let report = try store.importRecords(from: &reader, into: "sift", options: options)
        #expect(report.imported == 10_000)
        var qreader = try VecStore.reader(for: queries, options: options)
        var qs: [[Float]] = []
        while let r = try qreader.next() { qs.append(r.vector) }
        let truth = try Data(contentsOf: URL(fileURLWithPath: truthPath))
        let coll = try store.collection("sift")
        let results = try coll.searchBatch(qs, k: 10, options: SearchOptions(threads: 2))
        let single = try coll.search(qs[0], k: 10)
        #expect(single.map(\.id) == results[0].map(\.id))
        truth.withUnsafeBytes { raw in
            for (q, hits) in results.enumerated() {
                let rowBytes = 4 + 100 * 4
                let expected = (0..<10).map { String(raw.loadUnaligned(fromByteOffset: q * rowBytes + 4 + 4 * $0, as: Int32.self)) }
                // Ties at equal distance may swap ids at the cut-off: compare distances there.
                let missing = Set(expected).subtracting(hits.map(\.id))
                if !missing.isEmpty {
                    let worst = hits.last?.score ?? 0
                    for id in missing {
                        let row = Int(id) ?? 0
                        let d = zip(qs[q], loadRow(base, row)).reduce(Float(0)) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
                        #expect(d == worst, "query \(q): ground-truth id \(id) (distance \(d)) missing")
                    }
                }
            }
        }
    }

    private func loadRow(_ path: String, _ row: Int) -> [Float] {
        guard let handle = FileHandle(forReadingAtPath: path) else { return [] }
        defer { try? handle.close() }
        try? handle.seek(toOffset: UInt64(row * (4 + 128 * 4) + 4))
        let data = handle.readData(ofLength: 128 * 4)
        return data.withUnsafeBytes { raw in (0..<128).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
    }
}
