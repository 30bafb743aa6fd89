import ArgumentParser
import Foundation
import VecStore
import VecStoreQuant

/// IVF-Flat, IVF-PQ (8-bit) and 4-bit fast scan (residual and raw-vector codes) with re-ranking: k-means training time, build time, and
/// recall@10 / QPS against nprobe, on one thread, for the in-memory core (`VecStoreQuant.IVFIndex`, one query
/// at a time) and, with `--store`, for the store's index kinds (`buildIVF`, then `searchBatch` with one
/// thread: LMDB snapshot, list scan from the map, re-ranking and id resolution included). Writes one JSON file
/// read by `Tools/bench_ivf.py report`.
struct IVFBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ivf", abstract: "IVF / PQ core benchmark (in memory).")

    @Option(help: "Base vectors (.fvecs).") var base: String
    @Option(help: "Query vectors.") var queries: String
    @Option(help: "Ground truth (.ivecs, base row numbers).") var groundtruth: String
    @Option(help: "cosine, l2 or dot.") var metric: String
    @Option(help: "Lists (coarse centroids).") var nlist: Int
    @Option(help: "Sub-quantizers of the 8-bit IVF-PQ index.") var pqM: Int
    @Option(help: "Sub-quantizers of the 4-bit fast-scan index.") var fsM: Int
    @Option(help: "Re-ranking factor of the fast-scan index (refine × k candidates).") var refine = 10
    @Option(help: "Comma-separated nprobe values.") var nprobes = "1,2,4,8,16,32,64"
    @Option(help: "Coarse k-means iterations (FAISS IndexIVF uses 10).") var iterations = 10
    @Option(help: "k-means seed.") var seed: UInt64 = 1234
    @Option(help: "Use only the first N queries.") var maxQueries: Int?
    @Option(help: "Timed repetitions of each query loop (best kept).") var runs = 3
    @Option(help: "Output JSON file.") var json: String
    @Option(help: "Also build and search the IVF kinds in a store at this path (replaced), through the public API.")
    var store: String?
    @Option(help: "Comma-separated kinds to run (flat = float32 lists, flat16 = binary16 lists, pq8, pq8_raw, fastscan, fastscan_raw; core only: pq4, pq4_raw, the fast-scan codes with float tables); all but pq4* when absent.")
    var kinds: String?
    @Flag(help: "Skip k-means alone and the in-memory core (store only; for profiling).") var noCore = false
    @Flag(help: "Keep the --store file after the run and reuse it: its rows when the collection holds them all, and its IVF index when it has the kind's parameters (only the queries are timed again; build times are then 0).")
    var reuseStore = false

    /// Whether kind `name` is selected by `--kinds`.
    func selected(_ name: String) -> Bool {
        guard let kinds else { return true }
        return kinds.split(separator: ",").contains { $0 == name }
    }

    func run() throws {
        guard let metricValue = Metric(name: metric) else { throw BenchError(description: "unknown metric \(metric)") }
        let baseRows = try readVectors(base)
        let queryRows = try readVectors(queries, limit: maxQueries)
        let truth = try readIvecs(groundtruth)
        guard let dim = baseRows.first?.count else { throw BenchError(description: "\(base) is empty") }
        let n = baseRows.count
        func flatten(_ rows: [[Float]]) -> [Float] {
            var out = [Float]()
            out.reserveCapacity(rows.count * dim)
            for r in rows {
                if metricValue == .cosine {
                    let norm = r.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
                    out.append(contentsOf: r.map { norm > 0 ? $0 / norm : 0 })
                } else {
                    out.append(contentsOf: r)
                }
            }
            return out
        }
        let x = flatten(baseRows), q = flatten(queryRows)
        let nq = queryRows.count
        let probes = nprobes.split(separator: ",").compactMap { Int($0) }.filter { $0 <= nlist }
        var metrics: [String: Any] = ["nlist": nlist, "pq_m": pqM, "fs_m": fsM, "refine": refine,
                                      "iterations": iterations, "kernel_isa": ScalarQuantizer8.kernelISA,
                                      "matrix_kernel": "\(MatrixProduct.kernelName)",
                                      "kmeans_kernel": "\(MatrixProduct.computeKernelName)"]
        try x.withUnsafeBufferPointer { xb in
            guard let xp = xb.baseAddress, !noCore else { return }
            // k-means alone, as faiss.Kmeans(d, nlist, niter, seed, max_points_per_centroid=256) on 1 thread.
            let t0 = now()
            let km = try KMeans.train(xp, count: n, dimension: dim, k: nlist, metric: metricValue,
                                      options: KMeansOptions(iterations: iterations, seed: seed))
            metrics["kmeans_s"] = now() - t0
            metrics["kmeans_mse"] = km.meanSquaredError
            metrics["kmeans_sample"] = km.sampleCount
            print("k-means nlist=\(nlist): \(String(format: "%.3f", now() - t0)) s, training error \(km.meanSquaredError)")

            let coarse = KMeansOptions(iterations: iterations, seed: seed)
            let kinds: [(String, IVFBuildOptions, Int)] = [
                ("flat", IVFBuildOptions(nlist: nlist, kind: .flat, blockCapacity: 256, kmeans: coarse), 0),
                ("pq8", IVFBuildOptions(nlist: nlist, kind: .pq8, subquantizers: pqM, kmeans: coarse), 0),
                ("pq8_raw", IVFBuildOptions(nlist: nlist, kind: .pq8, subquantizers: pqM, kmeans: coarse, residual: false), 0),
                ("fastscan", IVFBuildOptions(nlist: nlist, kind: .pq4FastScan, subquantizers: fsM, kmeans: coarse), refine),
                ("fastscan_raw", IVFBuildOptions(nlist: nlist, kind: .pq4FastScan, subquantizers: fsM, kmeans: coarse,
                                                 residual: false), refine),
                // Diagnostic (only with --kinds): the fast-scan codes scored with float tables (no 8-bit table
                // quantization), to separate the table rounding from the codebooks in recall.
                ("pq4", IVFBuildOptions(nlist: nlist, kind: .pq4, subquantizers: fsM, kmeans: coarse), refine),
                ("pq4_raw", IVFBuildOptions(nlist: nlist, kind: .pq4, subquantizers: fsM, kmeans: coarse,
                                            residual: false), refine),
            ]
            for (name, options, refineFactor) in kinds where selected(name) && (self.kinds != nil || !name.hasPrefix("pq4")) {
                let tb = now()
                let index = try IVFIndex.build(xp, count: n, dimension: dim, metric: metricValue, options: options)
                let buildSeconds = now() - tb
                var curve: [[String: Any]] = []
                for nprobe in probes {
                    var results = [[UInt32]](repeating: [], count: nq)
                    let searchOptions = IVFSearchOptions(nprobe: nprobe, refine: refineFactor)
                    let seconds = try bestOf(runs) {
                        try q.withUnsafeBufferPointer { qb in
                            guard let qp = qb.baseAddress else { return }
                            for i in 0..<nq {
                                let hits = try index.search(qp + i * dim, k: 10, options: searchOptions, vectors: xp)
                                results[i] = hits.map(\.id)
                            }
                        }
                    }
                    let recall = rowRecall(results, truth, k: 10)
                    curve.append(["nprobe": nprobe, "recall": recall, "qps_1t": Double(nq) / seconds])
                    print("\(name) nprobe=\(nprobe): recall@10 \(String(format: "%.4f", recall)), \(Int(Double(nq) / seconds)) q/s")
                }
                let sizes = index.listSizes.sorted()
                metrics[name] = ["build_s": buildSeconds, "curve": curve, "code_bytes": index.codeSize,
                                 "list_bytes": index.listBytes, "coarse_mse": index.header.coarseError,
                                 "code_mse": index.header.codeError, "list_min": sizes.first ?? 0,
                                 "list_median": sizes[sizes.count / 2], "list_max": sizes.last ?? 0,
                                 "refine": refineFactor] as [String: Any]
                print("\(name): build \(String(format: "%.2f", buildSeconds)) s, \(index.codeSize) B/vector, lists \(sizes.first ?? 0)/\(sizes[sizes.count / 2])/\(sizes.last ?? 0)")
            }
        }
        if let store {
            try benchStore(path: store, baseRows: baseRows, queryRows: queryRows, truth: truth, metric: metricValue,
                           probes: probes, metrics: &metrics)
        }
        metrics["peak_rss_bytes"] = peakRSSBytes()
        try writeResult(json, dataset: datasetName(base), n: n, dim: dim, metric: metric, metrics: metrics)
    }
}

extension IVFBench {
    /// The store side: one collection with every base row (ids are row numbers), then each IVF kind built with
    /// `buildIVF` (one thread) and searched with `searchBatch` (one thread, k = 10) at every nprobe.
    func benchStore(path: String, baseRows: [[Float]], queryRows: [[Float]], truth: [[Int32]], metric: Metric,
                    probes: [Int], metrics: inout [String: Any]) throws {
        if !reuseStore {
            for suffix in ["", "-lock", "-guard"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        }
        defer {
            if !reuseStore {
                for suffix in ["", "-lock", "-guard"] { try? FileManager.default.removeItem(atPath: path + suffix) }
            }
        }
        let vs = try VecStore(path: path)
        defer { vs.close() }
        let collection = try vs.collection("bench", dimension: baseRows[0].count, metric: metric, index: .flat)
        let held = reuseStore ? try collection.count() : 0
        var start = held == baseRows.count ? baseRows.count : 0
        while start < baseRows.count {
            let end = min(baseRows.count, start + 10_000)
            try collection.add((start..<end).map { Document(id: String($0), vector: baseRows[$0]) })
            start = end
        }
        let n = baseRows.count
        let kinds: [(String, IVFCoding, Int, Bool)] = [
            ("flat", .flat, 0, false), ("flat16", .flat, 0, false), ("pq8", .pq(m: pqM, bits: 8), 0, true), ("pq8_raw", .pq(m: pqM, bits: 8), 0, false),
            ("fastscan", .pq(m: fsM, bits: 4), refine, true), ("fastscan_raw", .pq(m: fsM, bits: 4), refine, false),
        ]
        for (name, coding, refineFactor, residual) in kinds where selected(name) {
            let tb = now()
            let parameters = IVFParameters(nlist: nlist, coding: coding, refine: refineFactor, seed: seed,
                                           iterations: iterations, pqResidual: residual,
                                           lists: name == "flat16" ? .f16 : .f32)
            var coarseError = 0.0, codeError = 0.0, reused = false
            if reuseStore, let had = try collection.ivfInfo()?.parameters, had.nlist == nlist, had.coding == coding,
               had.seed == seed, had.iterations == iterations, had.pqResidual == residual, had.lists == parameters.lists {
                print("store \(name): reusing the index in \(path)")
                reused = true
            } else {
                let report = try collection.buildIVF(parameters, threads: 1)
                coarseError = report.coarseError
                codeError = report.codeError
            }
            let buildSeconds = now() - tb
            let stats = try vs.stats()
            let indexBytes = stats.databases.filter { $0.name == "ivf" || $0.name == "ivf-lists" }.reduce(0) { $0 + $1.bytes }
            let info = try collection.ivfInfo()
            if reused, let info { coarseError = info.coarseError; codeError = info.codeError }
            var curve: [[String: Any]] = []
            for nprobe in probes {
                var hits: [[SearchResult]] = []
                let options = SearchOptions(threads: 1, nprobe: nprobe, refine: refineFactor)
                // Timed: the search with its string ids; parsing them back to row numbers is the harness's
                // own work (FAISS returns row numbers), done after the clock stops.
                let seconds = try bestOf(runs) {
                    hits = try collection.searchBatch(queryRows, k: 10, options: options)
                }
                let results = hits.map { $0.compactMap { UInt32($0.id) } }
                let recall = rowRecall(results, truth, k: 10)
                curve.append(["nprobe": nprobe, "recall": recall, "qps_1t": Double(queryRows.count) / seconds])
                print("store \(name) nprobe=\(nprobe): recall@10 \(String(format: "%.4f", recall)), \(Int(Double(queryRows.count) / seconds)) q/s")
            }
            metrics["store_" + name] = ["build_s": buildSeconds, "curve": curve, "index_bytes": indexBytes,
                                        "bytes_per_vector": Double(indexBytes) / Double(n),
                                        "code_bytes": info?.codeSize ?? 0, "coarse_mse": coarseError,
                                        "code_mse": codeError, "refine": refineFactor] as [String: Any]
            print("store \(name): build \(String(format: "%.2f", buildSeconds)) s, index \(indexBytes) bytes (\(String(format: "%.1f", Double(indexBytes) / Double(n))) B/vector)")
        }
    }
}

/// Mean recall@k of row-number results against ground-truth rows.
func rowRecall(_ results: [[UInt32]], _ truth: [[Int32]], k: Int) -> Double {
    var total = 0.0
    for (q, hits) in results.enumerated() {
        let expected = Set(truth[q].prefix(k).map { UInt32($0) })
        total += Double(hits.prefix(k).filter { expected.contains($0) }.count) / Double(min(k, expected.count))
    }
    return total / Double(max(results.count, 1))
}
