import ArgumentParser
import Foundation
import VecStore

/// Exact (flat) search: import throughput, store size, open + first query, single and batched QPS.
struct ExactBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "exact", abstract: "Exact-search benchmark.")

    @Option(help: "Base vectors (.fvecs/.bvecs/.npy).") var base: String
    @Option(help: "Query vectors.") var queries: String
    @Option(help: "Ground truth (.ivecs).") var groundtruth: String
    @Option(help: "cosine, l2 or dot.") var metric: String
    @Option(help: "Store file to create (replaced if present).") var store: String
    @Option(help: "Output JSON file.") var json: String
    @Option(help: "Use only the first N queries.") var maxQueries: Int?
    @Option(help: "Timed repetitions (best kept).") var runs = 3

    func run() throws {
        guard let metricValue = Metric(name: metric) else { throw BenchError(description: "unknown metric \(metric)") }
        let queryRows = try readVectors(queries, limit: maxQueries)
        let truth = try readIvecs(groundtruth)
        let threadsAll = ProcessInfo.processInfo.activeProcessorCount
        let dataset = datasetName(base)

        // Import.
        removeStore(store)
        var importOptions = ImportOptions()
        importOptions.metric = metricValue
        importOptions.metricIsExplicit = true
        importOptions.index = .flat  // this benchmark measures exact search (collections default to HNSW)
        var n = 0, dim = 0
        var importSeconds = 0.0
        do {
            let vs = try VecStore(path: store)
            var reader = try VecStore.reader(for: base, options: importOptions)
            let t = now()
            let report = try vs.importRecords(from: &reader, into: "bench", options: importOptions)
            importSeconds = now() - t
            n = report.imported
            dim = try vs.collection("bench").dimension
        }
        let storeBytes = fileBytes(store)

        // Open + first query, on a store not opened before in this process.
        let t0 = now()
        let opened = try VecStore(path: store, options: StoreOptions(readOnly: true, create: false))
        let coll = try opened.collection("bench")
        _ = try coll.search(queryRows[0], k: 10, options: SearchOptions(threads: 1))
        let openFirstMs = (now() - t0) * 1000

        func singleLoop(threads: Int, latency: inout Latency) throws {
            let options = SearchOptions(threads: threads)
            for q in queryRows {
                let t = now()
                _ = try coll.search(q, k: 10, options: options)
                latency.record(seconds: now() - t)
            }
        }
        var lat1 = Latency(), latAll = Latency()
        try singleLoop(threads: 1, latency: &lat1)  // warm-up
        lat1 = Latency()
        let single1 = try bestOf(runs) { try singleLoop(threads: 1, latency: &lat1) }
        let singleAll = try bestOf(runs) { try singleLoop(threads: threadsAll, latency: &latAll) }
        var batchResults: [[SearchResult]] = []
        let batch1 = try bestOf(runs) {
            batchResults = try coll.searchBatch(queryRows, k: 10, options: SearchOptions(threads: 1))
        }
        let batchAll = try bestOf(runs) {
            batchResults = try coll.searchBatch(queryRows, k: 10, options: SearchOptions(threads: threadsAll))
        }
        let recall = recallAtK(batchResults, truth, k: 10)
        let q = Double(queryRows.count)
        let metrics: [String: Any] = [
            "import_vps": Double(n) / importSeconds,
            "store_bytes": storeBytes,
            "raw_bytes": n * dim * 4,
            "open_first_query_ms": openFirstMs,
            "qps_single_1t": q / single1,
            "qps_single_all": q / singleAll,
            "qps_batch_1t": q / batch1,
            "qps_batch_all": q / batchAll,
            "latency_p50_ms_1t": lat1.percentileMs(50),
            "latency_p99_ms_1t": lat1.percentileMs(99),
            "recall@10": recall,
            "threads_all": threadsAll,
        ]
        try writeResult(json, dataset: dataset, n: n, dim: dim, metric: metric, metrics: metrics)
        print("\(dataset): import \(Int(Double(n) / importSeconds)) v/s, single 1t \(Int(q / single1)) q/s, "
              + "batch 1t \(Int(q / batch1)) q/s, batch all \(Int(q / batchAll)) q/s, recall@10 \(recall)")
    }
}
