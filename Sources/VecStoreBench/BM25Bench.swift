import ArgumentParser
import Foundation
import VecStore

/// Keyword search: indexing throughput, index size, single-thread BM25 QPS and latency (query text →
/// top-10 ids, analysis included), pruning gain, and retrieval quality on SciFact.
struct BM25Bench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bm25", abstract: "BM25 keyword-search benchmark.")

    @Option(help: "SciFact directory (corpus.jsonl, queries.jsonl, qrels/test.tsv, minilm/).") var scifact: String
    @Option(help: "docs60k base.jsonl (indexing throughput only); its vectors are base.fvecs beside it.") var docs60k: String?
    @Option(help: "Directory for the store files (replaced).") var workdir: String
    @Option(help: "Output JSON file.") var json: String
    @Option(help: "Timed repetitions of the query set (best kept).") var runs = 5
    @Option(help: "Timed repetitions without pruning (default: --runs).") var exhaustiveRuns: Int?

    func run() throws {
        let corpus = scifact + "/corpus.jsonl"
        var result: [String: Any] = [:]

        // Import SciFact with and without the keyword index.
        func importCorpus(_ path: String, jsonl: String, vectors: String, idField: String?, textFields: [String],
                          keyword: Bool) throws -> (seconds: Double, docs: Int, store: VecStore) {
            removeStore(path)
            let store = try VecStore(path: path)
            if !keyword {
                let dim = try readVectors(vectors, limit: 1)[0].count
                try store.collection("c", dimension: dim, index: .flat).configureTextIndex(TextIndexOptions(enabled: false))
            }
            var options = ImportOptions()
            // Flat vectors: these rows time keyword indexing; the HNSW build is measured by `hnsw`.
            options.index = .flat
            options.vectorsFile = vectors
            options.jsonl = JSONLReader.Options(idField: idField, textFields: textFields)
            options.jsonl.metadataField = "metadata"
            var reader = try VecStore.reader(for: jsonl, options: options)
            let t = now()
            let report = try store.importRecords(from: &reader, into: "c", options: options)
            return (now() - t, report.imported, store)
        }
        let sfVectors = scifact + "/minilm/corpus.fvecs"
        let plain = try importCorpus(workdir + "/scifact-plain.vecstore", jsonl: corpus, vectors: sfVectors, idField: "_id",
                                     textFields: ["title", "text"], keyword: false)
        let (seconds, docs, store) = try importCorpus(workdir + "/scifact.vecstore", jsonl: corpus, vectors: sfVectors,
                                                      idField: "_id", textFields: ["title", "text"], keyword: true)
        let coll = try store.collection("c")
        let stats = try coll.textIndexStats()
        var rawText = 0
        try coll.forEachBatch { batch in for d in batch { rawText += d.text?.utf8.count ?? 0 } }
        result["scifact_docs"] = docs
        result["scifact_index_docs_per_s"] = Double(docs) / seconds
        result["scifact_import_no_keyword_docs_per_s"] = Double(plain.docs) / plain.seconds
        result["scifact_raw_text_bytes"] = rawText
        result["scifact_postings_bytes"] = stats.postingBytes
        result["scifact_dictionary_bytes"] = stats.dictionaryBytes
        result["scifact_lengths_bytes"] = stats.lengthBytes
        result["scifact_terms"] = stats.terms
        result["scifact_postings"] = stats.postings
        print("scifact: \(docs) docs indexed at \(Int(Double(docs) / seconds)) docs/s "
              + "(\(Int(Double(plain.docs) / plain.seconds)) docs/s without the keyword index); postings \(stats.postingBytes) B, "
              + "dictionary \(stats.dictionaryBytes) B, lengths \(stats.lengthBytes) B for \(rawText) B of text")

        // Queries: the 300 test queries, one at a time on one thread, text in, top-10 ids out.
        let qrels = try RetrievalMetrics.readQrels(path: scifact + "/qrels/test.tsv")
        let queries = try RetrievalMetrics.readQueries(path: scifact + "/queries.jsonl").filter { qrels[$0.id] != nil }
        func loop(_ options: TextSearchOptions, _ latency: inout Latency, _ out: inout [String: [String]]) throws {
            for q in queries {
                let t = now()
                let ids = try coll.searchText(q.text, k: 10, options: options).map(\.id)
                latency.record(seconds: now() - t)
                out[q.id] = ids
            }
        }
        var runsOut: [String: [String]] = [:]
        var warm = Latency()
        try loop(TextSearchOptions(), &warm, &runsOut)
        var latency = Latency()
        let best = try bestOf(runs) { try loop(TextSearchOptions(), &latency, &runsOut) }
        var exLatency = Latency()
        var exOut: [String: [String]] = [:]
        let bestExhaustive = try bestOf(max(1, exhaustiveRuns ?? runs)) { try loop(TextSearchOptions(exhaustive: true), &exLatency, &exOut) }
        let metrics = RetrievalMetrics.evaluate(results: runsOut, qrels: qrels, ks: [10])
        result["queries"] = queries.count
        result["bm25_qps_1t"] = Double(queries.count) / best
        result["bm25_latency_p50_ms"] = latency.percentileMs(50)
        result["bm25_latency_p99_ms"] = latency.percentileMs(99)
        result["bm25_exhaustive_qps_1t"] = Double(queries.count) / bestExhaustive
        result["bm25_ndcg@10"] = metrics["ndcg@10"] ?? 0
        result["bm25_exhaustive_ndcg@10"] = RetrievalMetrics.evaluate(results: exOut, qrels: qrels, ks: [10])["ndcg@10"] ?? 0
        print("scifact: BM25 \(Int(Double(queries.count) / best)) q/s on 1 thread (exhaustive \(Int(Double(queries.count) / bestExhaustive)) q/s), "
              + "p50 \(latency.percentileMs(50)) ms, p99 \(latency.percentileMs(99)) ms, nDCG@10 \(metrics["ndcg@10"] ?? 0)")

        // Dense, hybrid and RRF quality, and hybrid throughput, with the MiniLM query vectors.
        var idsOptions = ImportOptions()
        idsOptions.idsFile = scifact + "/minilm/queries_ids.txt"
        var vreader = try VecStore.reader(for: scifact + "/minilm/queries.fvecs", options: idsOptions)
        var queryVectors: [String: [Float]] = [:]
        while let r = try vreader.next() { if let id = r.id { queryVectors[id] = r.vector } }
        var dense: [String: [String]] = [:], hybrid: [String: [String]] = [:], rrf: [String: [String]] = [:]
        for q in queries {
            guard let v = queryVectors[q.id] else { throw BenchError(description: "no vector for query \(q.id)") }
            dense[q.id] = try coll.search(v, k: 10, options: SearchOptions(exact: true)).map(\.id)
            rrf[q.id] = try coll.hybridSearch(text: q.text, vector: v, k: 10, fusion: .rrf(k: 60)).map(\.id)
        }
        var hybridLatency = Latency()
        let bestHybrid = try bestOf(max(1, runs / 2)) {
            for q in queries {
                let t = now()
                hybrid[q.id] = try coll.hybridSearch(text: q.text, vector: queryVectors[q.id] ?? [], k: 10).map(\.id)
                hybridLatency.record(seconds: now() - t)
            }
        }
        func ndcg(_ run: [String: [String]]) -> Double {
            RetrievalMetrics.evaluate(results: run, qrels: qrels, ks: [10])["ndcg@10"] ?? 0
        }
        result["dense_ndcg@10"] = ndcg(dense)
        result["hybrid_ndcg@10"] = ndcg(hybrid)
        result["rrf_ndcg@10"] = ndcg(rrf)
        result["hybrid_qps_1t"] = Double(queries.count) / bestHybrid
        result["hybrid_latency_p50_ms"] = hybridLatency.percentileMs(50)
        print("scifact: nDCG@10 dense \(ndcg(dense)), hybrid \(ndcg(hybrid)), RRF \(ndcg(rrf)); "
              + "hybrid \(Int(Double(queries.count) / bestHybrid)) q/s")

        // docs60k: indexing throughput.
        if let docs60k {
            let vectors = (docs60k as NSString).deletingLastPathComponent + "/base.fvecs"
            let plain = try importCorpus(workdir + "/docs60k-plain.vecstore", jsonl: docs60k, vectors: vectors, idField: "id",
                                         textFields: ["title", "text"], keyword: false)
            let (s, n, st) = try importCorpus(workdir + "/docs60k.vecstore", jsonl: docs60k, vectors: vectors, idField: "id",
                                              textFields: ["title", "text"], keyword: true)
            let ds = try st.collection("c").textIndexStats()
            result["docs60k_docs"] = n
            result["docs60k_index_docs_per_s"] = Double(n) / s
            result["docs60k_import_no_keyword_docs_per_s"] = Double(plain.docs) / plain.seconds
            result["docs60k_postings_bytes"] = ds.postingBytes
            result["docs60k_dictionary_bytes"] = ds.dictionaryBytes
            print("docs60k: \(n) docs indexed at \(Int(Double(n) / s)) docs/s (\(Int(Double(plain.docs) / plain.seconds)) docs/s without the keyword index)")
            removeStore(workdir + "/docs60k.vecstore")
            removeStore(workdir + "/docs60k-plain.vecstore")
        }
        removeStore(workdir + "/scifact-plain.vecstore")
        try writeResult(json, dataset: "scifact", n: docs, dim: coll.dimension, metric: "bm25", metrics: result)
    }
}
