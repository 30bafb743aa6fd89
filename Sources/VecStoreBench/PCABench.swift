import ArgumentParser
import Foundation
import VecStore

/// PCA-reduced collections: for each target dimension, import the base vectors with `ImportOptions.pca`
/// (HNSW built during the import), then recall@10 against the full-dimensional ground truth and
/// single-query QPS of exact and HNSW search with full-dimensional queries (projected by the collection),
/// store size, import and fit time. Dimension = input dimension means no reduction (the baseline).
/// Writes one JSON file read by `Tools/bench_pca.py report`.
struct PCABench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pca", abstract: "PCA reduction benchmark.")

    @Option(help: "Base vectors (.fvecs).") var base: String
    @Option(help: "Query vectors.") var queries: String
    @Option(help: "Ground truth (.ivecs, base row numbers).") var groundtruth: String
    @Option(help: "cosine, l2 or dot.") var metric = "cosine"
    @Option(help: "Target dimensions, comma-separated (the input dimension = no reduction).") var dims = "384,192,128,64"
    @Option(help: "Records the PCA is fitted on (the first ones).") var pcaSample = 10_000
    @Option(help: "HNSW ef values, comma-separated.") var efs = "16,64,128"
    @Option(help: "Store file to create (replaced for each dimension).") var store: String
    @Option(help: "Output JSON file.") var json: String
    @Option(help: "Use only the first N queries.") var maxQueries: Int?
    @Option(help: "Timed repetitions (best kept).") var runs = 3

    func run() throws {
        guard let metricValue = Metric(name: metric) else { throw BenchError(description: "unknown metric \(metric)") }
        let queryRows = try readVectors(queries, limit: maxQueries)
        let truth = try readIvecs(groundtruth)
        let dataset = datasetName(base)
        let efList = efs.split(separator: ",").compactMap { Int($0) }
        var points: [[String: Any]] = []
        var n = 0
        guard let inputDim = try readVectors(base, limit: 1).first?.count else {
            throw BenchError(description: "\(base) holds no vectors")
        }
        for d in dims.split(separator: ",").compactMap({ Int($0) }) {
            removeStore(store)
            var options = ImportOptions()
            options.metric = metricValue
            options.metricIsExplicit = true
            var point: [String: Any] = ["dim": d]
            let vs = try VecStore(path: store)
            var reader = try VecStore.reader(for: base, options: options)
            if d < inputDim {
                options.pca = PCAReduction(dimensions: d, sampleSize: pcaSample)
                // The fit alone, on the same sample, for its time (the import repeats it).
                let sample = try readVectors(base, limit: pcaSample)
                let flat = sample.flatMap { v -> [Float] in
                    guard metricValue == .cosine else { return v }
                    let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
                    return v.map { $0 / norm }
                }
                let t = now()
                let fitted = try PCA.fit(flat, dimension: inputDim, components: d, subtractsMean: metricValue == .l2)
                point["fit_s"] = now() - t
                point["explained_variance"] = Double(fitted.explainedVarianceRatio.reduce(0, +))
            }
            let t = now()
            let report = try vs.importRecords(from: &reader, into: "bench", options: options)
            point["import_s"] = now() - t
            n = report.imported
            let coll = try vs.collection("bench")
            point["verify_ok"] = try vs.verify().isOK
            point["store_bytes"] = fileBytes(store)
            let st = try vs.stats()
            point["store_used_bytes"] = (st.usedPages - st.freePages) * st.pageSize
            var parts: [String: Int] = [:]
            for db in st.databases { parts[db.name] = db.bytes }
            point["db_bytes"] = parts

            func measure(_ options: SearchOptions) throws -> (recall: Double, qps: Double) {
                var results: [[SearchResult]] = []
                let best = try bestOf(runs) {
                    results = []
                    for q in queryRows { results.append(try coll.search(q, k: 10, options: options)) }
                }
                return (recallAtK(results, truth, k: 10), Double(queryRows.count) / best)
            }
            if let pca = coll.pca {
                // What the projection alone costs per query (the search does this once per query vector).
                var sink: Float = 0
                let t = bestOf(runs) { for q in queryRows { sink += pca.project(q)[0] } }
                point["projection_us"] = t / Double(queryRows.count) * 1e6
                if sink.isNaN { print("") }
            }
            let exact = try measure(SearchOptions(threads: 1, exact: true))
            point["exact_recall"] = exact.recall
            point["exact_qps_1t"] = exact.qps
            var curve: [[String: Any]] = []
            for ef in efList {
                let r = try measure(SearchOptions(threads: 1, ef: ef))
                curve.append(["ef": ef, "recall": r.recall, "qps_1t": r.qps])
            }
            point["hnsw"] = curve
            print("\(dataset) d=\(d): exact recall \(String(format: "%.4f", exact.recall)), "
                  + String(format: "%.0f q/s", exact.qps) + "; HNSW " + curve.map { c in
                      String(format: "ef %d %.4f %.0f q/s", c["ef"] as? Int ?? 0, c["recall"] as? Double ?? 0,
                             c["qps_1t"] as? Double ?? 0)
                  }.joined(separator: ", ") + "; store \(fileBytes(store) / 1_000_000) MB")
            points.append(point)
        }
        removeStore(store)
        try writeResult(json, dataset: dataset, n: n, dim: inputDim, metric: metric,
                        metrics: ["points": points, "pca_sample": pcaSample, "queries": queryRows.count])
    }
}
