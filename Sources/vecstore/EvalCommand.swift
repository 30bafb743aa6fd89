import ArgumentParser
import Foundation
import VecStore
import VecStoreIO

enum EvalFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json
}

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Measure retrieval quality (nDCG, precision, recall, MRR) of BM25, vector and hybrid search.",
        discussion: """
            Takes BEIR layouts: queries as JSONL lines {"_id": ..., "text": ...}, relevance judgements as TSV \
            (query-id, corpus-id, score; header line optional). Only queries with judgements are run. \
            Vector and hybrid search need the query vectors: a vector file aligned with a file of query ids. \
            Reports P@k, R@k and nDCG@k for each -k, and MRR at the largest k.

            Examples (the sample questions Samples/queries.* and their judgements Samples/qrels.tsv):
              vecstore eval demo.vecstore -c docs --queries Samples/queries.jsonl \\
                --qrels Samples/qrels.tsv -k 1 5
              vecstore eval demo.vecstore -c docs --queries Samples/queries.jsonl \\
                --qrels Samples/qrels.tsv --query-vectors Samples/queries.fvecs \\
                --query-ids Samples/queries_ids.txt
              vecstore eval demo.vecstore -c notes --queries Samples/queries.jsonl \\
                --qrels Samples/qrels.tsv --embed                  # needs the model

            --embed embeds the query texts with the collection's own model (a collection imported with \
            --embed), so no query vectors are needed.
            """)

    @OptionGroup var target: StoreArguments

    @Option(help: "Queries (BEIR JSONL: _id, text).")
    var queries: String

    @Option(help: "Relevance judgements (BEIR TSV: query-id, corpus-id, score).")
    var qrels: String

    @Option(help: "Query vectors (.fvecs/.bvecs/.npy), row i for line i of --query-ids.")
    var queryVectors: String?

    @Option(help: "Query ids, one a line, aligned with --query-vectors.")
    var queryIds: String?

    @Flag(help: "Embed the query texts with the collection's embedder instead of reading --query-vectors.")
    var embed = false

    @Option(name: .customShort("k"), parsing: .upToNextOption, help: "Cut-offs.")
    var ks: [Int] = [1, 3, 5, 10]

    @Option(help: "Weight of the vector side in weighted hybrid fusion (default \(Fusion.defaultAlpha)).")
    var alpha: Float = Fusion.defaultAlpha

    @Option(help: "k constant of reciprocal rank fusion.")
    var rrfK = 60

    @Option(help: "Hybrid: candidates from each side.")
    var candidates = 100

    @Option(help: "Override BM25 k1 for this run (tuning).")
    var k1: Float?

    @Option(help: "Override BM25 b for this run (tuning).")
    var b: Float?

    @Flag(help: "Vector side by exact search (the ground truth), not the collection's HNSW index.")
    var exact = false

    @Option(help: "Output: table or json.")
    var format: EvalFormat = .table

    func validate() throws {
        if (queryVectors == nil) != (queryIds == nil) { throw ValidationError("--query-vectors and --query-ids go together") }
        if embed && queryVectors != nil { throw ValidationError("give --embed or --query-vectors, not both") }
        if ks.isEmpty || ks.contains(where: { $0 < 1 }) { throw ValidationError("-k values must be at least 1") }
        if !(0...1).contains(alpha) { throw ValidationError("--alpha must be between 0 and 1") }
    }

    func run() throws {
        try reportingErrors {
            let store = try target.open()
            let collection = try store.collection(target.collection)
            let judgements = try RetrievalMetrics.readQrels(path: qrels)
            let allQueries = try RetrievalMetrics.readQueries(path: queries)
            let queryList = allQueries.filter { judgements[$0.id] != nil }
            if queryList.isEmpty { throw VecStoreError.invalidArgument("no query of \(queries) has judgements in \(qrels)") }
            let depth = max(ks.max() ?? 10, 1)
            let textOptions = TextSearchOptions(k1: k1, b: b)
            var runs: [(String, [String: [String]])] = []
            var bm25: [String: [String]] = [:]
            for q in queryList {
                bm25[q.id] = try collection.searchText(q.text, k: depth, options: textOptions).map(\.id)
            }
            runs.append(("bm25", bm25))
            var queryVectorSource: (vectors: [String: [Float]], name: String)?
            if embed {
                guard let model = try collection.embedder() else {
                    throw VecStoreError.collectionMismatch("collection '\(collection.name)' has no embedder (import it with --embed)")
                }
                let embedded = try model.embed(queryList.map(\.text))
                queryVectorSource = (Dictionary(zip(queryList.map(\.id), embedded), uniquingKeysWith: { a, _ in a }), model.name)
            } else if let queryVectors, let queryIds {
                var options = ImportOptions()
                options.idsFile = queryIds
                var reader = try VecStore.reader(for: queryVectors, options: options)
                var vectors: [String: [Float]] = [:]
                do throws(ImportError) {
                    while let r = try reader.next() { if let id = r.id { vectors[id] = r.vector } }
                } catch { throw VecStoreError.invalidInput(error) }
                queryVectorSource = (vectors, queryVectors)
            }
            if let (vectors, source) = queryVectorSource {
                var vector: [String: [String]] = [:], hybrid: [String: [String]] = [:], rrf: [String: [String]] = [:]
                for q in queryList {
                    guard let v = vectors[q.id] else {
                        throw VecStoreError.invalidArgument("query \(q.id) has no vector in \(source)")
                    }
                    vector[q.id] = try collection.search(v, k: depth, options: SearchOptions(exact: exact)).map(\.id)
                    hybrid[q.id] = try collection.hybridSearch(text: q.text, vector: v, k: depth, fusion: .weighted(alpha: alpha),
                                                               candidates: candidates, textOptions: textOptions).map(\.id)
                    rrf[q.id] = try collection.hybridSearch(text: q.text, vector: v, k: depth, fusion: .rrf(k: rrfK),
                                                            candidates: candidates, textOptions: textOptions).map(\.id)
                }
                runs.append(("vector", vector))
                runs.append(("hybrid", hybrid))
                runs.append(("rrf", rrf))
            }
            let measured = runs.map { ($0.0, RetrievalMetrics.evaluate(results: $0.1, qrels: judgements, ks: ks)) }
            switch format {
            case .json:
                var object: [String: JSONValue] = [:]
                for (name, m) in measured { object[name] = .object(m.mapValues { .number($0) }) }
                object["queries"] = .number(Double(queryList.count))
                object["alpha"] = .number(Double(alpha))
                object["rrf_k"] = .number(Double(rrfK))
                print(JSONValue.object(object).serialized())
            case .table:
                if queryVectorSource != nil {
                    print("\(queryList.count) queries with judgements; hybrid = weighted alpha \(alpha), rrf = k \(rrfK); "
                          + "\(candidates) candidates per side")
                } else {
                    print("\(queryList.count) queries with judgements (BM25 only; --query-vectors and --query-ids add vector "
                          + "and fused results)")
                }
                let columns = ks.flatMap { ["ndcg@\($0)"] } + ks.map { "p@\($0)" } + ks.map { "r@\($0)" } + ["mrr"]
                print("method  " + columns.map { $0.padding(toLength: 8, withPad: " ", startingAt: 0) }.joined(separator: " "))
                for (name, m) in measured {
                    let cells = columns.map { String(format: "%-8.4f", m[$0] ?? 0) }
                    print(name.padding(toLength: 8, withPad: " ", startingAt: 0) + cells.joined(separator: " "))
                }
            }
        }
    }
}
