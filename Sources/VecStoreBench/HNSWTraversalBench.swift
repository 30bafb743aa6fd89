import ArgumentParser
import Foundation
import VecStore

/// HNSW traversal copies, binary16 against int8 (`Tools/bench-hnsw --traversal`): for each, a store
/// imported flat and indexed with that traversal (quantizer trained on every row), its size on disk and
/// in `graph-vectors`, and recall@10 and QPS per ef with one query per call on one thread. Writes one
/// JSON file read by `Tools/bench_hnsw.py traversal-report`.
struct HNSWTraversalBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "hnsw-traversal",
                                                    abstract: "HNSW binary16 against int8 traversal copies.")

    @Option(help: "Base vectors (.fvecs); ids are row numbers.") var base: String
    @Option(help: "Query vectors.") var queries: String
    @Option(help: "Ground truth (.ivecs, base row numbers).") var groundtruth: String
    @Option(help: "cosine, l2 or dot.") var metric: String
    @Option(help: "Directory for the stores (one per traversal, replaced if present).") var dir: String
    @Option(help: "Output JSON file.") var json: String
    @Option(help: "Use only the first N queries.") var maxQueries: Int?
    @Option(help: "ef values, comma-separated.") var efs = "10,16,32,64,128,256"
    @Option(help: "HNSW M.") var m = 16
    @Option(help: "HNSW efConstruction.") var efConstruction = 200
    @Option(help: "Timed repetitions (best kept).") var runs = 3
    @Option(help: "Dataset name in the results (default: the base file's directory).") var dataset: String?

    func run() throws {
        guard let metricValue = Metric(name: metric) else { throw BenchError(description: "unknown metric \(metric)") }
        let queryRows = try readVectors(queries, limit: maxQueries)
        let truth = try readIvecs(groundtruth)
        let dataset = self.dataset ?? datasetName(base)
        let efList = efs.split(separator: ",").compactMap { Int($0) }
        var variants: [[String: Any]] = []
        var n = 0, dim = 0
        for traversal in HNSWTraversal.allCases {
            let store = (dir as NSString).appendingPathComponent("\(traversal.rawValue).vecstore")
            removeStore(store)
            var options = ImportOptions()
            options.metric = metricValue
            options.metricIsExplicit = true
            options.index = .flat
            var m: [String: Any] = ["traversal": traversal.rawValue]
            do {
                let vs = try VecStore(path: store)
                var reader = try VecStore.reader(for: base, options: options)
                n = try vs.importRecords(from: &reader, into: "bench", options: options).imported
                let coll = try vs.collection("bench")
                dim = coll.dimension
                let t = now()
                try coll.buildIndex(HNSWParameters(m: self.m, efConstruction: efConstruction, traversal: traversal),
                                    threads: ProcessInfo.processInfo.activeProcessorCount)
                m["build_s_all"] = now() - t
                m["verify_ok"] = try vs.verify().isOK
            }
            let opened = try VecStore(path: store, options: StoreOptions(readOnly: true, create: false))
            let st = try opened.stats()
            m["store_bytes"] = fileBytes(store)
            m["store_used_bytes"] = (st.usedPages - st.freePages) * st.pageSize
            m["copies_bytes"] = st.databases.first { $0.name == "graph-vectors" }?.bytes ?? 0
            m["vectors_bytes"] = st.databases.first { $0.name == "vectors" }?.bytes ?? 0
            let coll = try opened.collection("bench")
            var curve: [[String: Any]] = []
            for ef in efList {
                var results: [[SearchResult]] = []
                let single = try bestOf(runs) {
                    results = []
                    for q in queryRows {
                        results.append(try coll.search(q, k: 10, options: SearchOptions(threads: 1, ef: ef)))
                    }
                }
                let recall = recallOfRows(results.map { $0.map(\.id) }, truth, k: 10)
                let qps = Double(queryRows.count) / single
                curve.append(["ef": ef, "recall": recall, "qps_1t": qps])
                print("\(dataset) \(traversal.rawValue) ef=\(ef): recall@10 \(String(format: "%.4f", recall)), \(Int(qps)) q/s")
            }
            m["curve"] = curve
            variants.append(m)
            removeStore(store)
        }
        try writeResult(json, dataset: dataset, n: n, dim: dim, metric: metric, metrics: ["variants": variants])
    }
}
