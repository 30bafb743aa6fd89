import ArgumentParser
import Foundation
import VecStore
import VecStoreIO

/// Scale: one import of a large set in batches (time, CPU, peak anonymous memory, per-row cost of the
/// first and last 10% of batches, bytes written against the store size, free pages), then rows added
/// in small batches, recall@10 against QPS per ef (one query per call, one thread), open plus first
/// query, filtered search per `source`, and compaction after deleting 1% of the rows. Writes JSON for
/// `Tools/bench_scale.py report`.
struct ScaleBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "scale", abstract: "Scale benchmark (docs1m).")

    @Option(help: "Base vectors (.fvecs).") var base: String
    @Option(help: "Ids, one per line, aligned with --base.") var ids: String?
    @Option(help: "metadata.source per row, one per line, aligned with --base (filtered runs).") var sources: String?
    @Option(help: "Query vectors.") var queries: String
    @Option(help: "Ground truth (.ivecs, base row numbers).") var groundtruth: String
    @Option(help: "Store file to create (replaced).") var store: String
    @Option(help: "Output JSON file.") var json: String
    @Option(help: "Rows per import batch.") var batch = 10_000
    @Option(help: "The last N rows are added after the import, in batches of --add-batch.") var addRows = 0
    @Option(help: "Rows per batch of the add phase.") var addBatch = 1_000
    @Option(help: "Import threads (HNSW linking).") var threads = ProcessInfo.processInfo.activeProcessorCount
    @Option(help: "ef values, comma-separated.") var efs = "16,32,64,128,256"
    @Option(help: "Use only the first N queries.") var maxQueries: Int?
    @Option(help: "Phases, comma-separated: import,add,open,exact,search,ids,filter,compact,compact-rebuild (ids: lookups by id; the last compacts the store as the compact phase found it, rebuilding the graph).") var phases = "import,add,search,filter,compact"
    @Option(help: "Open phase: page-cache states, comma-separated: warm (store file read through and confirmed resident with mincore before each open) and/or as-found (as the machine left it; run first so the warm runs' reads do not hide evictions) and/or cold (the file's pages dropped from the cache before each open). Warm is the headline figure.") var openCache = "as-found,warm"
    @Option(help: "Fresh opens for the open phase (open + first query, open + first filtered query per source; medians).") var openRuns = 5
    @Option(help: "Filter phase: also measure filtered and unfiltered search at these ef values (comma-separated; the aim compares them at the same ef).") var filterEfs = ""
    @Option(help: "Filter phase: the sources to filter by, comma-separated.") var filterSources = "linux,python,sphinx"
    @Option(help: "Filter phase: timed passes over the queries per measurement (the best is reported; more for a profile).") var filterRuns = 2
    @Option(help: "Queries for the exact phase (single-query exact search, 1 thread).") var exactQueries = 100
    @Option(help: "Index of the imported collection: hnsw or flat (flat shows what the rows alone write).") var index = "hnsw"
    @Option(help: "HNSW traversal copies of the import: f16 or int8.") var traversal = "f16"
    @Option(help: "Metadata fields of the import that get HNSW filter links, comma-separated (e.g. source).") var filterLinks = ""
    @Option(help: "Queries for the compact phase's recall against exact search (before the deletes, after them, after compaction).") var compactQueries = 200

    func run() throws {
        let phaseSet = Set(phases.split(separator: ",").map(String.init))
        let queryRows = try readVectors(queries, limit: maxQueries)
        let truth = try readIvecs(groundtruth)
        let dataset = datasetName(base)
        var metrics: [String: Any] = ["threads": threads, "batch": batch]
        let efList = efs.split(separator: ",").compactMap { Int($0) }
        let total = fileBytes(base) / (4 + 4 * (queryRows.first?.count ?? 1))
        let importRows = total - addRows
        var dim = queryRows.first?.count ?? 0

        if phaseSet.contains("import") {
            removeStore(store)
            let vs = try VecStore(path: store)
            var reader = try AttachingReader(base: base, ids: ids, sources: sources, limit: importRows)
            var options = ImportOptions()
            options.metric = .cosine
            options.batchSize = batch
            options.indexThreads = threads
            if index == "flat" {
                options.index = .flat
            } else if let t = HNSWTraversal(rawValue: traversal) {
                options.index = .hnsw(HNSWParameters(traversal: t, filterLinks: filterLinks.split(separator: ",").map(String.init)))
                metrics["filter_links"] = filterLinks
            } else {
                throw ValidationError("--traversal is f16 or int8")
            }
            metrics["traversal"] = traversal
            var batchEnds: [(rows: Int, t: Double)] = []
            // VECSTORE_BENCH_TIMELINE=path writes one line per committed batch (rows, seconds since the
            // start, wall and CPU seconds of the batch, CPU% of the batch): where a core idles.
            var timeline: [String] = []
            let timelinePath = ProcessInfo.processInfo.environment["VECSTORE_BENCH_TIMELINE"]
            var lastMark = (t: 0.0, cpu: 0.0)
            let sampler = AnonSampler()
            let io0 = ProcessIO.read(), cpu0 = cpuSeconds(), t0 = now()
            lastMark = (t0, cpu0)
            let report = try vs.importRecords(from: &reader, into: "bench", options: options) { p in
                if timelinePath != nil {
                    let t = now(), c = cpuSeconds()
                    timeline.append(String(format: "%d %.3f %.3f %.3f %.0f", p.committed, t - t0, t - lastMark.t,
                                           c - lastMark.cpu, 100 * (c - lastMark.cpu) / max(1e-9, t - lastMark.t)))
                    lastMark = (t, c)
                }
                // The import reports once more after linking the graph's tail at the end (Spec/HNSW.md
                // §4.1): that time is counted with the last batch.
                if let last = batchEnds.last, last.rows == p.committed {
                    batchEnds[batchEnds.count - 1].t = now()
                } else {
                    batchEnds.append((p.committed, now()))
                }
            }
            let seconds = now() - t0, cpu = cpuSeconds() - cpu0, io1 = ProcessIO.read()
            sampler.stop()
            if let timelinePath {
                try ("rows t_s batch_wall_s batch_cpu_s cpu_pct\n" + timeline.joined(separator: "\n") + "\n")
                    .write(toFile: timelinePath, atomically: true, encoding: .utf8)
            }
            let stats = try vs.stats()
            let written = io1.writeBytes - io0.writeBytes
            metrics["import_rows"] = report.imported
            metrics["import_s"] = seconds
            metrics["import_cpu_pct"] = 100 * cpu / seconds
            metrics["import_peak_anon_bytes"] = sampler.peak
            metrics["import_write_bytes"] = written
            metrics["store_bytes"] = stats.fileBytes
            metrics["free_pages"] = stats.freePages
            metrics["used_pages"] = stats.usedPages
            metrics["raw_vector_bytes"] = report.imported * dim * 4
            metrics["databases"] = Dictionary(uniqueKeysWithValues: stats.databases.map { ($0.name, $0.bytes) })
            // Per-row cost of the first and last 10% of batches.
            var perRow: [Double] = []
            var prev = (rows: 0, t: t0)
            for e in batchEnds {
                perRow.append((e.t - prev.t) / Double(max(1, e.rows - prev.rows)))
                prev = e
            }
            let tenth = max(1, perRow.count / 10)
            let first = perRow.prefix(tenth).reduce(0, +) / Double(tenth)
            let last = perRow.suffix(tenth).reduce(0, +) / Double(tenth)
            metrics["first10_us_per_row"] = first * 1e6
            metrics["last10_us_per_row"] = last * 1e6
            print(String(format: "%@: import %d rows in %.1f s (%.0f%% CPU), %.0f rows/s; peak anon %.0f MB; wrote %.2f GB for a %.2f GB store (%.2fx); free pages %d of %d (%.1f%%); per row first/last 10%%: %.0f/%.0f us",
                         dataset, report.imported, seconds, 100 * cpu / seconds, Double(report.imported) / seconds,
                         Double(sampler.peak) / 1e6, Double(written) / 1e9, Double(stats.fileBytes) / 1e9,
                         Double(written) / Double(max(1, stats.fileBytes)), stats.freePages, stats.usedPages,
                         100 * Double(stats.freePages) / Double(max(1, stats.usedPages)), first * 1e6, last * 1e6))
        }
        if phaseSet.contains("open") {
            // Before any other open in this process: each run opens the store afresh (new map, new
            // snapshot caches; the page cache stays warm) and closes it again.
            try openPhase(queryRows: queryRows, dataset: dataset, metrics: &metrics)
        }
        if phaseSet.contains("exact") {
            // Before any other open in this process: the first query maps the vectors in (page cache warm
            // or cold as the machine has it), which is the "first exact query" figure.
            try exactPhase(queryRows: queryRows, truth: truth, dataset: dataset, metrics: &metrics)
        }
        let vs = try VecStore(path: store)
        let coll = try vs.collection("bench")
        dim = coll.dimension
        if phaseSet.contains("add"), addRows > 0 {
            var reader = try AttachingReader(base: base, ids: ids, sources: sources, limit: total, skip: importRows)
            let size0 = fileBytes(store), io0 = ProcessIO.read(), t0 = now()
            var docs: [Document] = []
            while let r = try reader.next() {
                docs.append(Document(id: r.id ?? "", vector: r.vector, metadata: r.metadata ?? [:]))
                if docs.count == addBatch { try coll.add(docs); docs.removeAll(keepingCapacity: true) }
            }
            if !docs.isEmpty { try coll.add(docs) }
            let seconds = now() - t0, written = ProcessIO.read().writeBytes - io0.writeBytes
            let growth = fileBytes(store) - size0
            metrics["add_rows"] = addRows
            metrics["add_batch"] = addBatch
            metrics["add_s"] = seconds
            metrics["add_write_bytes"] = written
            metrics["add_store_growth_bytes"] = growth
            print(String(format: "%@: added %d rows in batches of %d in %.1f s (%.0f rows/s): wrote %.1f MiB, store grew %.1f MiB (%.1fx)",
                         dataset, addRows, addBatch, seconds, Double(addRows) / seconds, Double(written) / 1048576,
                         Double(growth) / 1048576, Double(written) / Double(max(1, growth))))
        }
        if phaseSet.contains("search") {
            let t0 = now()
            let reopened = try VecStore(path: store, options: StoreOptions(readOnly: true, create: false))
            _ = try reopened.collection("bench").search(queryRows[0], k: 10)
            metrics["open_first_query_ms"] = (now() - t0) * 1000
            var curve: [[String: Any]] = []
            for ef in efList {
                let options = SearchOptions(ef: ef)
                var results: [[SearchResult]] = []
                let seconds = try bestOf(2) {
                    results = try queryRows.map { try coll.search($0, k: 10, options: options) }
                }
                let recall = recallOfRows(results.map { $0.map(\.id) }, truth, k: 10, rowOfID: rowID)
                curve.append(["ef": ef, "recall": recall, "qps_1t": Double(queryRows.count) / seconds])
                print(String(format: "%@ ef=%d: recall@10 %.4f, %.0f q/s (1 thread)", dataset, ef, recall,
                             Double(queryRows.count) / seconds))
            }
            metrics["curve"] = curve
        }
        if phaseSet.contains("ids") {
            // Lookups by id through the id index (base plus runs, Spec/FORMAT.md §8): 20,000 random stored
            // ids one call each, and the same ids 1,000 per call.
            var reader = try AttachingReader(base: base, ids: ids, sources: nil, limit: importRows)
            var allIDs: [String] = []
            while let r = try reader.next() { allIDs.append(r.id ?? "") }
            var rng = SplitMix64(seed: 7)
            let picked = (0..<20_000).map { _ in allIDs[Int(rng.next() % UInt64(allIDs.count))] }
            allIDs = []
            var found = 0
            let single = try bestOf(2) {
                found = 0
                for id in picked { if try coll.get(id: id) != nil { found += 1 } }
            }
            let batched = try bestOf(2) {
                for start in stride(from: 0, to: picked.count, by: 1_000) {
                    _ = try coll.get(ids: Array(picked[start..<min(picked.count, start + 1_000)]))
                }
            }
            let runs = try coll.info().idRuns
            metrics["get_us"] = single / Double(picked.count) * 1e6
            metrics["get_batched_us"] = batched / Double(picked.count) * 1e6
            metrics["id_runs"] = runs
            print(String(format: "%@: get by id %.2f us each (%d of %d found), %.2f us each 1,000 per call; id runs per level %@",
                         dataset, single / Double(picked.count) * 1e6, found, picked.count,
                         batched / Double(picked.count) * 1e6, runs.isEmpty ? "none" : runs.map(String.init).joined(separator: ",")))
        }
        if phaseSet.contains("filter"), let sources {
            let all = try String(contentsOfFile: sources, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
            var counts: [String: Int] = [:]
            for s in all.prefix(total) { counts[String(s), default: 0] += 1 }
            var filtered: [[String: Any]] = [], filteredByEf: [[String: Any]] = []
            for source in filterSources.split(separator: ",").map(String.init) where counts[source] != nil {
                let filter = Filter.field("source", .equals(.string(source)))
                let qs = Array(queryRows.prefix(200))
                let reopened = try VecStore(path: store, options: StoreOptions(readOnly: true, create: false))
                let c2 = try reopened.collection("bench")
                let tf = now()
                _ = try c2.search(qs[0], k: 10, filter: filter)
                let firstMs = (now() - tf) * 1000
                var got: [[String]] = [], exact: [[String]] = []
                let seconds = try bestOf(filterRuns) { got = try qs.map { try coll.search($0, k: 10, filter: filter).map(\.id) } }
                exact = try qs.map { try coll.search($0, k: 10, filter: filter, options: SearchOptions(exact: true)).map(\.id) }
                var hit = 0, all = 0
                // Queries by how many of the exact top 10 they found (0…10): the misses of a filtered search
                // concentrate in a few queries whose filter is far from their neighbourhood.
                var byHits = [Int](repeating: 0, count: 11)
                for (g, e) in zip(got, exact) {
                    let h = Set(g).intersection(e).count
                    hit += h
                    all += e.count
                    byHits[min(10, h)] += 1
                }
                let recall = Double(hit) / Double(max(1, all))
                print("\(dataset) filter source=\(source): queries by hits@10 (0…10) \(byHits)")
                filtered.append(["source": source, "share": Double(counts[source] ?? 0) / Double(total), "recall": recall,
                                 "queries_by_hits": byHits,
                                 "qps_1t": Double(qs.count) / seconds, "first_ms": firstMs])
                print(String(format: "%@ filter source=%@ (%.1f%%): recall %.4f vs exact filtered, %.0f q/s, first query %.1f ms",
                             dataset, source, 100 * Double(counts[source] ?? 0) / Double(total), recall,
                             Double(qs.count) / seconds, firstMs))
                for ef in filterEfs.split(separator: ",").compactMap({ Int($0) }) {
                    let options = SearchOptions(ef: ef)
                    let fs = try bestOf(filterRuns) { got = try qs.map { try coll.search($0, k: 10, filter: filter, options: options).map(\.id) } }
                    let us = try bestOf(filterRuns) { for q in qs { _ = try coll.search(q, k: 10, options: options) } }
                    var hitEf = 0
                    for (g, e) in zip(got, exact) { hitEf += Set(g).intersection(e).count }
                    let recallEf = Double(hitEf) / Double(max(1, all))
                    filteredByEf.append(["source": source, "ef": ef, "recall": recallEf, "qps_1t": Double(qs.count) / fs,
                                         "unfiltered_qps_1t": Double(qs.count) / us])
                    print(String(format: "%@ filter source=%@ ef=%d: recall %.4f, %.0f q/s; unfiltered %.0f q/s (%.2fx)",
                                 dataset, source, ef, recallEf, Double(qs.count) / fs, Double(qs.count) / us, us / fs))
                }
            }
            metrics["filtered"] = filtered
            if !filteredByEf.isEmpty { metrics["filtered_by_ef"] = filteredByEf }
        }
        // The store as it was before compaction (after the deletes), kept for the `compact-rebuild` phase.
        let deletedCopy = store + ".deleted"
        func recallVsExact(_ c: VectorCollection) throws -> Double {
            let qs = Array(queryRows.prefix(compactQueries))
            var hit = 0, all = 0
            for q in qs {
                let e = try c.search(q, k: 10, options: SearchOptions(exact: true)).map(\.id)
                let g = try c.search(q, k: 10).map(\.id)
                hit += Set(g).intersection(e).count
                all += e.count
            }
            return Double(hit) / Double(max(1, all))
        }
        /// Compacts `path` (carrying the graph over, or rebuilding it) and records time, peak anonymous
        /// memory (and the process's before it) and recall after under `prefix`.
        func compactMeasured(_ path: String, rebuild: Bool, prefix: String, deletedRows: Int, before: Double) throws {
            let base = rssAnonBytes()
            let sampler = AnonSampler()
            let t0 = now()
            let report = try VecStore.compact(path: path, rebuildIndexes: rebuild)
            let seconds = now() - t0
            sampler.stop()
            let after = try recallVsExact(try VecStore(path: path).collection("bench"))
            metrics[prefix + "_s"] = seconds
            metrics[prefix + "_peak_anon_bytes"] = sampler.peak
            metrics[prefix + "_base_anon_bytes"] = base
            metrics[prefix + "_recall_before"] = before
            metrics[prefix + "_recall_after"] = after
            metrics[prefix + "_index"] = report.indexes.first?.detail ?? "flat"
            print(String(format: "%@: compact (%@) after deleting %d rows: %.1f s, peak anon %.0f MB (%.0f MB before), recall vs exact %.4f -> %.4f; %@",
                         dataset, rebuild ? "graph rebuilt" : "graph carried over", deletedRows, seconds,
                         Double(sampler.peak) / 1e6, Double(base) / 1e6, before, after,
                         report.indexes.first?.detail ?? "flat"))
        }
        if phaseSet.contains("compact") {
            let n = try coll.count()
            // Recall of the intact graph (no deletes: plain beam search) against exact search over all
            // rows: the figure compaction's recall is compared with. After the deletes and before
            // compaction the live mask makes the search two-hop (it looks through deleted rows), a
            // different algorithm, so that figure is reported beside it.
            let intact = try recallVsExact(coll)
            metrics["compact_recall_intact"] = intact
            var rng = SplitMix64(seed: 99)
            var doomed = Set<String>()
            var reader = try AttachingReader(base: base, ids: ids, sources: nil, limit: total)
            var allIDs: [String] = []
            while let r = try reader.next() { allIDs.append(r.id ?? "") }
            while doomed.count < n / 100 { doomed.insert(allIDs[Int(rng.next() % UInt64(allIDs.count))]) }
            allIDs = []
            try coll.delete(ids: Array(doomed))
            let before = try recallVsExact(coll)
            print(String(format: "%@: recall vs exact (%d queries) before the deletes %.4f, after deleting %d rows %.4f",
                         dataset, compactQueries, intact, doomed.count, before))
            metrics["compact_deleted_rows"] = doomed.count
            try? FileManager.default.removeItem(atPath: deletedCopy)
            try FileManager.default.copyItem(atPath: store, toPath: deletedCopy)
            try compactMeasured(store, rebuild: false, prefix: "compact", deletedRows: doomed.count, before: before)
        }
        if phaseSet.contains("compact-rebuild") {
            // The same deleted state compacted the old way: the graph rebuilt from the kept rows.
            let path = store + ".rebuild"
            for p in [path, path + "-lock", path + "-guard"] { try? FileManager.default.removeItem(atPath: p) }
            try FileManager.default.copyItem(atPath: deletedCopy, toPath: path)
            let before = try recallVsExact(try VecStore(path: path).collection("bench"))
            let deleted = try VecStore(path: path).collection("bench").info()
            try compactMeasured(path, rebuild: true, prefix: "compact_rebuild", deletedRows: deleted.rows - deleted.count,
                                before: before)
            for p in [path, path + "-lock", path + "-guard", deletedCopy] { try? FileManager.default.removeItem(atPath: p) }
        }
        try writeResult(json, dataset: dataset, n: total, dim: dim, metric: "cosine", metrics: metrics)
    }

    /// Open + first query (default search) and open + first filtered query per source, each in a fresh
    /// process (`vecstore-bench open-once`: new heap, new map; the process start is not timed),
    /// `openRuns` times per page-cache state; medians and every run go to the JSON.
    ///
    /// Page-cache states (`--open-cache`): `warm` reads the store file through before each run and
    /// confirms with `mincore` that its pages are resident (the read is not counted: it is the cache's
    /// cost, not the store's); `as-found` opens the store as the machine left it (this VM's proactive
    /// reclaim evicts mapped pages between runs, so its times swing) and reports the resident share
    /// `mincore` found. Each part (open, snapshot, first query, second query on the same handle) also
    /// reports its minor and major page faults.
    private func openPhase(queryRows: [[Float]], dataset: String, metrics: inout [String: Any]) throws {
        func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }
        let modes = openCache.split(separator: ",").map(String.init)
        for mode in modes where !["warm", "as-found", "cold"].contains(mode) {
            throw ValidationError("--open-cache takes warm, as-found and/or cold, not \(mode)")
        }
        /// Brings the cache to `mode`'s state and returns the resident share of the store file.
        func prepare(_ mode: String) -> Double {
            if mode == "warm" { PageCache.readThrough(store) }
            if mode == "cold" { PageCache.evict(store) }
            let r = PageCache.residency(store)
            return Double(r.resident) / Double(max(1, r.pages))
        }
        let partNames = ["open", "snapshot", "first query", "second query"]
        var byMode: [String: Any] = [:]
        for mode in modes {
            var totals: [Double] = [], resident: [Double] = []
            var parts: [[Double]] = [], minor: [[Int]] = [], major: [[Int]] = []
            for r in 0..<openRuns {
                resident.append(prepare(mode))
                let run = try OpenOnceBench.child(store: store, queries: queries, query: r % max(1, queryRows.count - 1),
                                                  source: nil)
                parts.append(run.ms)
                totals.append(run.ms[0] + run.ms[1] + run.ms[2])
                minor.append(run.minor)
                major.append(run.major)
            }
            let medianParts = Dictionary(uniqueKeysWithValues: partNames.indices.map { i in
                (partNames[i], median(parts.map { $0[i] }))
            })
            let medianMinor = partNames.indices.map { i in minor.map { $0[i] }.sorted()[minor.count / 2] }
            let medianMajor = partNames.indices.map { i in major.map { $0[i] }.sorted()[major.count / 2] }
            byMode[mode] = ["median_ms": median(totals), "runs_ms": totals, "resident_share": resident,
                            "parts_median_ms": medianParts,
                            "minor_faults_median": Dictionary(uniqueKeysWithValues: zip(partNames, medianMinor).map { ($0, $1) }),
                            "major_faults_median": Dictionary(uniqueKeysWithValues: zip(partNames, medianMajor).map { ($0, $1) })]
            print(String(format: "%@ open + first query, %@ page cache (store file %@ resident): median %.2f ms (runs %@)",
                         dataset, mode, resident.map { String(format: "%.0f%%", 100 * $0) }.joined(separator: "/"),
                         median(totals), totals.map { String(format: "%.2f", $0) }.joined(separator: ", ")))
            print("  parts (median ms, minor/major faults): " + partNames.indices.map { i in
                String(format: "%@ %.2f (%d/%d)", partNames[i], median(parts.map { $0[i] }), medianMinor[i], medianMajor[i])
            }.joined(separator: ", "))
            if mode == (modes.contains("warm") ? "warm" : modes.first) {
                metrics["open_parts_median_ms"] = medianParts
                metrics["open_first_query_runs_ms"] = totals
                metrics["open_first_query_median_ms"] = median(totals)
                metrics["open_cache"] = mode
            }
        }
        metrics["open_by_cache"] = byMode
        guard sources != nil else { return }
        var filtered: [String: Any] = [:]
        let mode = modes.contains("warm") ? "warm" : modes.first ?? "warm"
        for source in ["linux", "python", "sphinx"] {
            var runs: [Double] = []
            for r in 0..<openRuns {
                _ = prepare(mode)
                let run = try OpenOnceBench.child(store: store, queries: queries,
                                                  query: (r + 7) % max(1, queryRows.count - 1), source: source)
                runs.append(run.ms[0] + run.ms[1] + run.ms[2])
            }
            filtered[source] = ["median_ms": median(runs), "runs_ms": runs]
            print(String(format: "%@ open + first filtered query source=%@, %@ page cache: median %.2f ms (runs %@)", dataset,
                         source, mode, median(runs), runs.map { String(format: "%.2f", $0) }.joined(separator: ", ")))
        }
        metrics["open_first_filtered"] = filtered
    }

    /// Single-query exact search on one thread (the issue 9 item 7 comparison with FAISS IndexFlatIP):
    /// open + first query, then QPS over `exactQueries` queries (best of 2), and recall@10.
    private func exactPhase(queryRows: [[Float]], truth: [[Int32]], dataset: String,
                            metrics: inout [String: Any]) throws {
        let qs = Array(queryRows.prefix(exactQueries))
        let options = SearchOptions(threads: 1, exact: true)
        let t0 = now()
        let opened = try VecStore(path: store, options: StoreOptions(readOnly: true, create: false))
        let c = try opened.collection("bench")
        _ = try c.search(qs[0], k: 10, options: options)
        let firstMs = (now() - t0) * 1000
        let t1 = now()
        _ = try c.search(qs[1 % qs.count], k: 10, options: options)
        let secondMs = (now() - t1) * 1000
        var results: [[SearchResult]] = []
        var lat = Latency()
        let seconds = try bestOf(2) {
            lat = Latency()
            results = try qs.map { q in
                let t = now()
                defer { lat.record(seconds: now() - t) }
                return try c.search(q, k: 10, options: options)
            }
        }
        let recall = recallOfRows(results.map { $0.map(\.id) }, truth, k: 10, rowOfID: rowID)
        metrics["exact_first_query_ms"] = firstMs
        metrics["exact_second_query_ms"] = secondMs
        metrics["exact_qps_1t"] = Double(qs.count) / seconds
        metrics["exact_p50_ms"] = lat.percentileMs(50)
        metrics["exact_recall"] = recall
        print(String(format: "%@ exact: open + first query %.1f ms, second %.1f ms; %.1f q/s single-query 1 thread (p50 %.2f ms), recall@10 %.4f",
                     dataset, firstMs, secondMs, Double(qs.count) / seconds, lat.percentileMs(50), recall))
    }

    /// Ground-truth rows are base row numbers; ids from --ids map back to them.
    var rowID: [String: Int] {
        guard let ids, let text = try? String(contentsOfFile: ids, encoding: .utf8) else { return [:] }
        var map: [String: Int] = [:]
        for (i, line) in text.split(separator: "\n").enumerated() { map[String(line)] = i }
        return map
    }
}

/// Mean recall@k of ids against ground-truth rows, through an id → row map (ids are row numbers
/// when the map is empty).
func recallOfRows(_ results: [[String]], _ truth: [[Int32]], k: Int, rowOfID: [String: Int]) -> Double {
    if rowOfID.isEmpty { return recallOfRows(results, truth, k: k) }
    let asRows = results.map { $0.map { rowOfID[$0].map(String.init) ?? "-1" } }
    return recallOfRows(asRows, truth, k: k)
}

/// Rows of an .fvecs file with ids and `{"source": …}` metadata from aligned text files.
struct AttachingReader: RecordReader {
    var vectors: FvecsReader
    var ids: [Substring]?
    var sources: [Substring]?
    var row = 0
    let limit: Int

    init(base: String, ids: String?, sources: String?, limit: Int, skip: Int = 0) throws {
        vectors = try FvecsReader(path: base, format: .fvecs)
        self.ids = try ids.map { try String(contentsOfFile: $0, encoding: .utf8).split(separator: "\n") }
        self.sources = try sources.map {
            try String(contentsOfFile: $0, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        }
        self.limit = limit
        for _ in 0..<skip { _ = try vectors.next(); row += 1 }
    }

    var bytesRead: UInt64 { vectors.bytesRead }
    var totalBytes: UInt64? { vectors.totalBytes }
    var dimension: Int? { vectors.dimension }

    mutating func next() throws(ImportError) -> ImportRecord? {
        guard row < limit, var r = try vectors.next() else { return nil }
        if let ids, row < ids.count { r.id = String(ids[row]) } else { r.id = String(row) }
        if let sources, row < sources.count, !sources[row].isEmpty {
            r.metadata = ["source": .string(String(sources[row]))]
        }
        row += 1
        return r
    }
}

/// `/proc/self/io` counters.
struct ProcessIO {
    var writeBytes = 0
    static func read() -> ProcessIO {
        var io = ProcessIO()
        guard let text = try? String(contentsOfFile: "/proc/self/io", encoding: .utf8) else { return io }
        for line in text.split(separator: "\n") where line.hasPrefix("write_bytes:") {
            io.writeBytes = Int(line.dropFirst(12).trimmingCharacters(in: .whitespaces)) ?? 0
        }
        return io
    }
}

/// User + system CPU seconds of this process.
func cpuSeconds() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) / 1e6 + Double(u.ru_stime.tv_sec)
        + Double(u.ru_stime.tv_usec) / 1e6
}

/// `RssAnon` of this process in bytes.
func rssAnonBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("RssAnon:") {
        return (line.split(separator: " ").compactMap { Int($0) }.first ?? 0) * 1024
    }
    return 0
}

/// Samples `RssAnon` every 50 ms on a background thread and keeps the peak (mapped store pages are page
/// cache, not anonymous memory).
final class AnonSampler: @unchecked Sendable {
    private let lock = NSLock()
    private var running = true
    private var value = 0
    var peak: Int { lock.lock(); defer { lock.unlock() }; return max(value, rssAnonBytes()) }

    init() {
        value = rssAnonBytes()
        Thread.detachNewThread { [self] in
            while true {
                let v = rssAnonBytes()
                lock.lock()
                value = max(value, v)
                let go = running
                lock.unlock()
                if !go { return }
                usleep(50_000)
            }
        }
    }

    func stop() { lock.lock(); running = false; lock.unlock() }
}

