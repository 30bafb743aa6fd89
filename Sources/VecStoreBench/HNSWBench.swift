import ArgumentParser
import Foundation
import VecStore
import VecStoreIO

/// HNSW: build time (1 thread and all), open + first query, recall@10 vs QPS per ef (one query at a
/// time on one thread, and batches on all threads), incremental adds, deletes and compaction, filtered
/// search. Writes one JSON file read by `Tools/bench_hnsw.py report`.
struct HNSWBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "hnsw", abstract: "HNSW benchmark.")

    @Option(help: "Base vectors (.fvecs).") var base: String
    @Option(help: "JSONL records aligned with --base (ids + metadata, for the filter runs).") var jsonl: String?
    @Option(help: "Query vectors.") var queries: String
    @Option(help: "Ground truth (.ivecs, base row numbers).") var groundtruth: String
    @Option(help: "cosine, l2 or dot.") var metric: String
    @Option(help: "Store file to create (replaced if present); <store>.inc is used for the update runs.")
    var store: String
    @Option(help: "Output JSON file.") var json: String
    @Option(help: "Use only the first N queries.") var maxQueries: Int?
    @Option(help: "ef values, comma-separated.") var efs = "10,16,32,64,128,256"
    @Option(help: "HNSW M.") var m = 16
    @Option(help: "HNSW efConstruction.") var efConstruction = 200
    @Option(help: "Timed repetitions (best kept).") var runs = 3
    @Flag(help: "Skip the 1-thread build (it takes longest).") var skipSerialBuild = false
    @Flag(help: "Skip incremental/delete/compact runs.") var skipUpdates = false
    @Flag(help: "Reuse an existing store (skip import and build; for profiling).") var reuseStore = false

    func run() throws {
        guard let metricValue = Metric(name: metric) else { throw BenchError(description: "unknown metric \(metric)") }
        let queryRows = try readVectors(queries, limit: maxQueries)
        let truth = try readIvecs(groundtruth)
        let threadsAll = ProcessInfo.processInfo.activeProcessorCount
        let dataset = datasetName(base)
        let params = HNSWParameters(m: m, efConstruction: efConstruction)
        let efList = efs.split(separator: ",").compactMap { Int($0) }
        var metrics: [String: Any] = ["threads_all": threadsAll, "m": m, "ef_construction": efConstruction]

        // Import without an index, then build it (timed separately): 1 thread, then all threads.
        if !reuseStore { removeStore(store) }
        var importOptions = ImportOptions()
        importOptions.metric = metricValue
        importOptions.metricIsExplicit = true
        importOptions.index = .flat
        if jsonl != nil { importOptions.vectorsFile = base }
        var n = 0, dim = 0
        var rowOfID: [String: Int] = [:]
        if reuseStore {
            let vs = try VecStore(path: store)
            let coll = try vs.collection("bench")
            n = try coll.count()
            dim = coll.dimension
        } else {
            let vs = try VecStore(path: store)
            var reader = try VecStore.reader(for: jsonl ?? base, options: importOptions)
            let report = try vs.importRecords(from: &reader, into: "bench", options: importOptions)
            n = report.imported
            let coll = try vs.collection("bench")
            dim = coll.dimension
            if !skipSerialBuild {
                let t = now()
                try coll.buildIndex(params, threads: 1)
                metrics["build_s_1t"] = now() - t
                print("\(dataset): build 1 thread \(String(format: "%.1f", now() - t)) s")
            }
            let t = now()
            try coll.buildIndex(params, threads: threadsAll)
            metrics["build_s_all"] = now() - t
            print("\(dataset): build \(threadsAll) threads \(String(format: "%.1f", now() - t)) s")
            let v = try vs.verify()
            metrics["verify_ok"] = v.isOK
            if !v.isOK { print("verify: \(v.faults.prefix(5))") }
        }
        if let jsonl {
            var o = ImportOptions()
            o.vectorsFile = base
            var reader = try VecStore.reader(for: jsonl, options: o)
            var row = 0
            while let r = try reader.next() {
                rowOfID[r.id ?? String(row)] = row
                row += 1
            }
        }
        func rowsOf(_ results: [[SearchResult]]) -> [[String]] {
            results.map { hits in hits.map { h in rowOfID.isEmpty ? h.id : String(rowOfID[h.id] ?? -1) } }
        }
        metrics["store_bytes"] = fileBytes(store)
        do {
            // Pages in use (the file also holds pages freed by the rebuilds above, reused by later writes).
            let st = try VecStore(path: store, options: StoreOptions(readOnly: true, create: false)).stats()
            metrics["store_used_bytes"] = (st.usedPages - st.freePages) * st.pageSize
            var parts: [String: Int] = [:]
            for d in st.databases { parts[d.name] = d.bytes }
            metrics["db_bytes"] = parts
        }
        metrics["raw_bytes"] = n * dim * 4

        // Open from disk + first query.
        let t0 = now()
        let opened = try VecStore(path: store, options: StoreOptions(readOnly: true, create: false))
        let coll = try opened.collection("bench")
        _ = try coll.search(queryRows[0], k: 10, options: SearchOptions(threads: 1))
        metrics["open_first_query_ms"] = (now() - t0) * 1000

        // Recall vs QPS.
        var curve: [[String: Any]] = []
        var efFor95: Int?
        for ef in efList {
            var results: [[SearchResult]] = []
            var lat = Latency()
            let single = try bestOf(runs) {
                results = []
                lat = Latency()
                for q in queryRows {
                    let t = now()
                    results.append(try coll.search(q, k: 10, options: SearchOptions(threads: 1, ef: ef)))
                    lat.record(seconds: now() - t)
                }
            }
            let recall = recallOfRows(rowsOf(results), truth, k: 10)
            let batch1 = try bestOf(runs) {
                _ = try coll.searchBatch(queryRows, k: 10, options: SearchOptions(threads: 1, ef: ef))
            }
            let batchAll = try bestOf(runs) {
                _ = try coll.searchBatch(queryRows, k: 10, options: SearchOptions(threads: threadsAll, ef: ef))
            }
            let q = Double(queryRows.count)
            curve.append(["ef": ef, "recall": recall, "qps_1t": q / single, "qps_batch_1t": q / batch1, "qps_all": q / batchAll,
                          "p50_ms": lat.percentileMs(50), "p99_ms": lat.percentileMs(99)])
            if efFor95 == nil && recall >= 0.95 { efFor95 = ef }
            print("\(dataset) ef=\(ef): recall@10 \(String(format: "%.4f", recall)), 1t \(Int(q / single)) q/s, "
                  + "batch 1t \(Int(q / batch1)) q/s, all \(Int(q / batchAll)) q/s")
        }
        metrics["curve"] = curve
        let ef95 = efFor95 ?? efList.last ?? 64
        metrics["ef_for_095"] = ef95

        // Filtered by metadata.source.
        if jsonl != nil {
            var filtered: [[String: Any]] = []
            let total = try coll.count()
            for source in ["linux", "python", "sphinx"] {
                let filter = Filter.field("source", .equals(.string(source)))
                let exact = try coll.searchBatch(queryRows, k: 10, filter: filter, options: SearchOptions(threads: threadsAll, exact: true))
                func measure(_ strategy: FilterStrategy) throws -> (Double, Double) {
                    var approx: [[SearchResult]] = []
                    let seconds = try bestOf(runs) {
                        approx = try queryRows.map {
                            try coll.search($0, k: 10, filter: filter, options: SearchOptions(threads: 1, filterStrategy: strategy))
                        }
                    }
                    var hit = 0.0
                    for (a, e) in zip(approx, exact) {
                        let want = Set(e.map(\.id))
                        hit += Double(a.filter { want.contains($0.id) }.count) / Double(max(1, want.count))
                    }
                    return (hit / Double(queryRows.count), Double(queryRows.count) / seconds)
                }
                let (recall, qps) = try measure(.automatic)
                let (graphRecall, graphQPS) = try measure(.graph)
                let exactSeconds = try bestOf(1) {
                    _ = try queryRows.map { try coll.search($0, k: 10, filter: filter, options: SearchOptions(threads: 1, exact: true)) }
                }
                let matches = try countMatches(coll, source)
                // The library's automatic switch at the default ef, as the planner decides it.
                let path = try coll.explainSearch(k: 10, filter: filter, options: SearchOptions(threads: 1)).path == .index
                    ? "graph" : "exact"
                filtered.append(["source": source, "selectivity": Double(matches) / Double(total), "recall": recall,
                                 "qps_1t": qps, "path": path, "graph_recall": graphRecall, "graph_qps_1t": graphQPS,
                                 "exact_qps_1t": Double(queryRows.count) / exactSeconds])
                print("\(dataset) filter source=\(source) (\(matches) docs): auto (\(path)) recall \(String(format: "%.4f", recall)), "
                      + "\(Int(qps)) q/s; graph recall \(String(format: "%.4f", graphRecall)) \(Int(graphQPS)) q/s; "
                      + "exact \(Int(Double(queryRows.count) / exactSeconds)) q/s")
            }
            metrics["filtered"] = filtered
        }

        if !skipUpdates {
            try updates(metricValue: metricValue, queryRows: queryRows, truth: truth, ef: ef95, params: params,
                        rowsOf: rowsOf, metrics: &metrics)
        }
        metrics["peak_rss_bytes"] = peakRSSBytes()
        try writeResult(json, dataset: dataset, n: n, dim: dim, metric: metric, metrics: metrics)
    }

    private func countMatches(_ coll: VectorCollection, _ source: String) throws -> Int {
        var n = 0
        try coll.forEachBatch(batchSize: 4096) { docs in
            n += docs.filter { $0.metadata["source"] == .string(source) }.count
        }
        return n
    }

    /// Incremental adds (first 90% bulk, the rest in batches of 100), deletes of a random 20%, compaction.
    private func updates(metricValue: Metric, queryRows: [[Float]], truth: [[Int32]], ef: Int, params: HNSWParameters,
                         rowsOf: ([[SearchResult]]) -> [[String]], metrics: inout [String: Any]) throws {
        let path = store + ".inc"
        removeStore(path)
        var options = ImportOptions()
        options.metric = metricValue
        options.metricIsExplicit = true
        options.index = .hnsw(params)
        if jsonl != nil { options.vectorsFile = base }
        var all: [ImportRecord] = []
        var reader = try VecStore.reader(for: jsonl ?? base, options: options)
        while let r = try reader.next() { all.append(r) }
        let bulkCount = all.count * 9 / 10
        let vs = try VecStore(path: path)
        let coll = try vs.collection("bench", dimension: all[0].vector.count, metric: metricValue, index: .hnsw(params))
        func docs(_ slice: ArraySlice<ImportRecord>) -> [Document] {
            slice.map { r in Document(id: r.id ?? String(r.location.record), vector: r.vector, text: r.text,
                                      metadata: r.metadata ?? [:]) }
        }
        var start = 0
        while start < bulkCount {
            let end = min(bulkCount, start + 10_000)
            try coll.upsert(docs(all[start..<end]))
            start = end
        }
        let t = now()
        var batches = 0
        while start < all.count {
            let end = min(all.count, start + 100)
            try coll.upsert(docs(all[start..<end]))
            start = end
            batches += 1
        }
        let addSeconds = now() - t
        metrics["incremental_adds_per_s"] = Double(all.count - bulkCount) / addSeconds
        let options1 = SearchOptions(threads: 1, ef: ef)
        let incRecall = recallOfRows(rowsOf(try coll.searchBatch(queryRows, k: 10, options: options1)), truth, k: 10)
        metrics["incremental_recall"] = incRecall
        print("incremental: \(Int(Double(all.count - bulkCount) / addSeconds)) adds/s in batches of 100, recall@10 at ef=\(ef) \(incRecall)")
        var v = try vs.verify()
        metrics["incremental_verify_ok"] = v.isOK

        // Delete a random 20% (fixed seed).
        var rng = SplitMix64(seed: 42)
        var ids = all.map { $0.id ?? String($0.location.record) }
        for i in stride(from: ids.count - 1, to: 0, by: -1) { ids.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        let doomed = Array(ids.prefix(ids.count / 5))
        let td = now()
        var d = 0
        while d < doomed.count {
            try coll.delete(ids: Array(doomed[d..<min(doomed.count, d + 1000)]))
            d += 1000
        }
        metrics["deletes_per_s"] = Double(doomed.count) / (now() - td)
        func recallVsExact(_ c: VectorCollection) throws -> Double {
            let exact = try c.searchBatch(queryRows, k: 10, options: SearchOptions(threads: 2, exact: true))
            let approx = try c.searchBatch(queryRows, k: 10, options: options1)
            var hit = 0.0
            for (a, e) in zip(approx, exact) {
                let want = Set(e.map(\.id))
                hit += Double(a.filter { want.contains($0.id) }.count) / Double(max(1, want.count))
            }
            return hit / Double(queryRows.count)
        }
        let afterDelete = try recallVsExact(coll)
        metrics["delete_recall"] = afterDelete
        v = try vs.verify()
        metrics["delete_verify_ok"] = v.isOK
        let tc = now()
        let report = try VecStore.compact(path: path)
        metrics["compact_s"] = now() - tc
        let reopened = try VecStore(path: path)
        let afterCompact = try recallVsExact(try reopened.collection("bench"))
        metrics["compact_recall"] = afterCompact
        metrics["compact_verify_ok"] = try reopened.verify().isOK
        print("deletes 20%: recall vs exact at ef=\(ef) \(String(format: "%.4f", afterDelete)); after compact "
              + "\(String(format: "%.4f", afterCompact)) (\(report.tombstonesDropped) dropped)")
        removeStore(path)
    }
}

/// Mean recall@k of id lists (row numbers as strings) against ground-truth rows.
func recallOfRows(_ results: [[String]], _ truth: [[Int32]], k: Int) -> Double {
    var total = 0.0
    for (q, hits) in results.enumerated() {
        let expected = Set(truth[q].prefix(k).map { String($0) })
        total += Double(hits.prefix(k).filter { expected.contains($0) }.count) / Double(min(k, expected.count))
    }
    return total / Double(max(results.count, 1))
}
