import ArgumentParser
import Foundation
import VecStore
import VecStoreIO

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, jsonl
}

struct QueryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Find the nearest documents to a vector, a stored document, or each vector of a file.",
        discussion: """
            Scores are cosine similarity (cosine), inner product (dot) or squared Euclidean distance (l2). \
            --filter takes a JSON filter on metadata: {"source": "linux"}, {"year": {"$gte": 2020}}, \
            {"tag": {"$in": ["a", "b"]}}, {"$or": [...]}, {"$not": {...}}, {"field": {"$exists": true}}. \
            In a collection imported with --pca, query vectors of the input dimension are projected \
            (and renormalised under cosine) before the search.

            Examples (demo.vecstore as made by the examples of import):
              vecstore query demo.vecstore -c small --vector '[0.5, -0.2, 0.1, 0.3]' -k 5
              vecstore query demo.vecstore -c docs --id cooking/risotto/overview \\
                --filter '{"year": {"$gte": 2020}}'
              vecstore query demo.vecstore -c docs --queries Samples/queries.fvecs -k 3 \\
                --format jsonl
              vecstore query demo.vecstore -c docs --id astronomy/mars/tip --ef 128
              vecstore query demo.vecstore -c docs --id astronomy/mars/tip --exact
              vecstore query demo.vecstore -c compressed --id astronomy/mars/tip \\
                --nprobe 4 --refine 8
              vecstore query demo.vecstore -c docs --text "creamy rice stock" -k 5
              vecstore query demo.vecstore -c docs --id cooking/risotto/tip \\
                --text "rice stock" --rrf
              vecstore query demo.vecstore -c notes --text "cook rice"  # needs the model
              vecstore query demo.vecstore -c notes --text "cook rice" --semantic-only \\
                                                                # needs the model
              vecstore query demo.vecstore -c notes --text "risotto" --keyword-only \\
                                                                # needs the model

            --ef widens the HNSW beam of one search; --nprobe probes more IVF lists and --refine re-ranks more \
            IVF-PQ candidates with the float32 vectors; --exact ignores the index and searches exactly.

            --text alone on a collection imported with --embed embeds the query with the collection's model and \
            runs hybrid search (BM25 + vector, weighted fusion alpha \(Fusion.defaultAlpha) unless --alpha/--rrf); \
            --semantic-only keeps the vector side, --keyword-only the BM25 side. On other collections --text \
            alone is BM25.
            """)

    @OptionGroup var target: StoreArguments

    @Option(help: "Query vector: a JSON array or comma-separated numbers.")
    var vector: String?

    @Option(help: "Use the vector of this stored document (the document itself is left out).")
    var id: String?

    @Option(help: "File of query vectors (.jsonl, .fvecs, .bvecs, .npy); one result set per row.")
    var queries: String?

    @Option(name: .customShort("k"), help: "Number of results per query.")
    var k = 10

    @Option(help: "Metadata filter (JSON).")
    var filter: String?

    @Option(help: "Output: table or jsonl (one line per query: {\"query\": row, \"results\": [{\"id\", \"score\"}]}).")
    var format: OutputFormat = .table

    @Option(help: "Worker threads (default: all cores for a query file, 1 for a single query).")
    var threads: Int?

    @Option(help: "HNSW beam width (default: the collection's efSearch); larger is slower and more exact.")
    var ef: Int?

    @Flag(help: "Search exactly, ignoring the collection's index.")
    var exact = false

    @Flag(help: "Search through the collection's index even when it is small enough (at most 1,024 live rows) to be scanned exactly, and under any filter (library: SearchOptions.filterStrategy .graph). For tests of the index: the golden fixtures record such answers.")
    var forceIndex = false

    /// The planner's strategy: `.graph` (always through the index) with `--force-index`.
    var strategy: FilterStrategy { forceIndex ? .graph : .automatic }

    @Option(help: "IVF lists to probe (default: the index's nprobe); more is slower and more exact.")
    var nprobe: Int?

    @Option(help: "IVF-PQ re-ranking factor: the best refine × k ADC candidates are re-scored exactly (default: the index's).")
    var refine: Int?

    @Flag(help: "Print how the vector search would be answered (exact, exact over the filter's matches, or through the index) and how many documents it may return from, instead of searching.")
    var explain = false

    @OptionGroup(title: "Keyword and hybrid search") var textOptions: TextQueryOptions

    func validate() throws {
        let given = [vector != nil, id != nil, queries != nil].filter { $0 }.count
        if given > 1 || (given == 0 && textOptions.text == nil) {
            throw ValidationError("give exactly one of --vector, --id or --queries, and/or --text")
        }
        try textOptions.validate(hasVectorQuery: vector != nil || id != nil, hasQueryFile: queries != nil)
        if !(1...VectorCollection.maxK).contains(k) { throw ValidationError("-k must be in 1...\(VectorCollection.maxK)") }
        if let ef, ef > 4096 { throw ValidationError("--ef must be at most 4096") }
        if let ef, ef < 1 { throw ValidationError("--ef must be at least 1") }
        if let nprobe, !(1...65535).contains(nprobe) { throw ValidationError("--nprobe must be in 1...65535") }
        if let refine, !(0...65535).contains(refine) { throw ValidationError("--refine must be in 0...65535") }
        if forceIndex && exact { throw ValidationError("give at most one of --exact and --force-index") }
    }

    func run() throws {
        try reportingErrors {
            let store = try target.open()
            let collection = try store.collection(target.collection)
            let parsedFilter = try filter.map { try Filter(json: $0) }
            if explain {
                // The plan does not depend on the query, but a query the search would refuse is refused here too.
                if let vector, case let v = try Self.parseVector(vector), v.count != collection.dimension {
                    throw VecStoreError.dimensionMismatch(expected: collection.dimension, got: v.count, id: nil)
                }
                if let id, try collection.get(id: id) == nil {
                    throw VecStoreError.invalidArgument("no document with id '\(id)' in \(collection.name)")
                }
                let plan = try collection.explainSearch(k: k, filter: parsedFilter,
                                                        options: SearchOptions(ef: ef, exact: exact,
                                                                               filterStrategy: strategy,
                                                                               nprobe: nprobe, refine: refine))
                switch format {
                case .jsonl: print("{\"path\": \"\(plan.path.rawValue)\", \"candidates\": \(plan.candidates)}")
                case .table: print("path: \(plan.path.rawValue)\ncandidates: \(plan.candidates)")
                }
                return
            }
            let results: [[SearchResult]]
            if textOptions.text != nil {
                let queryVector = try id.map { id throws -> [Float] in
                    guard let doc = try collection.get(id: id) else {
                        throw VecStoreError.invalidArgument("no document with id '\(id)' in \(collection.name)")
                    }
                    return doc.vector
                } ?? vector.map { try Self.parseVector($0) }
                results = [try textOptions.run(collection, vector: queryVector, excluding: id, k: k, filter: parsedFilter,
                                               options: SearchOptions(threads: threads ?? 1, ef: ef, exact: exact,
                                                                      filterStrategy: strategy,
                                                                      includeText: format == .table, nprobe: nprobe,
                                                                      refine: refine)) ?? []]
            } else if let id {
                // The table shows texts: they come from the search's own read transaction.
                let options = SearchOptions(threads: threads ?? 1, ef: ef, exact: exact, filterStrategy: strategy,
                                            includeText: format == .table, nprobe: nprobe, refine: refine)
                results = [try collection.search(similarTo: id, k: k, filter: parsedFilter, options: options)]
            } else if let vector {
                let options = SearchOptions(threads: threads ?? 1, ef: ef, exact: exact, filterStrategy: strategy,
                                            includeText: format == .table, nprobe: nprobe, refine: refine)
                results = [try collection.search(try Self.parseVector(vector), k: k, filter: parsedFilter, options: options)]
            } else {
                let path = queries ?? ""
                var options = ImportOptions()
                options.jsonl.idRequired = false
                var reader = try VecStore.reader(for: path, options: options)
                var vectors: [[Float]] = []
                do throws(ImportError) {
                    while let r = try reader.next() { vectors.append(r.vector) }
                } catch { throw VecStoreError.invalidInput(error) }
                let options2 = SearchOptions(threads: threads ?? ProcessInfo.processInfo.activeProcessorCount, ef: ef,
                                             exact: exact, filterStrategy: strategy, includeText: format == .table,
                                             nprobe: nprobe, refine: refine)
                results = try collection.searchBatch(vectors, k: k, filter: parsedFilter, options: options2)
            }
            switch format {
            case .jsonl:
                var out = ""
                for (row, hits) in results.enumerated() {
                    let items = hits.map { JSONValue.object(["id": .string($0.id), "score": .number(shortestDouble($0.score))]) }
                    out += JSONValue.object(["query": .number(Double(row)), "results": .array(items)]).serialized() + "\n"
                    if out.utf8.count > 1 << 16 { FileHandle.standardOutput.write(Data(out.utf8)); out = "" }
                }
                FileHandle.standardOutput.write(Data(out.utf8))
            case .table:
                for (row, hits) in results.enumerated() {
                    if results.count > 1 { print("query \(row)") }
                    // Every search brought its results' texts from its own read transaction.
                    let texts = hits.map(\.text)
                    print("rank  score         id")
                    for (rank, hit) in hits.enumerated() {
                        var line = String(format: "%4d  %-12.6f  ", rank + 1, hit.score) + hit.id
                        if let text = texts[rank] {
                            let flat = text.replacingOccurrences(of: "\n", with: " ")
                            line += "  " + (flat.count > 70 ? flat.prefix(69) + "…" : flat)
                        }
                        print(line)
                    }
                    if hits.isEmpty { print("   (no results)") }
                }
            }
        }
    }

    static func parseVector(_ text: String) throws -> [Float] {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let body = trimmed.hasPrefix("[") && trimmed.hasSuffix("]") ? String(trimmed.dropFirst().dropLast()) : trimmed
        var result: [Float] = []
        for (i, part) in body.split(separator: ",").enumerated() {
            guard let x = Float(part.trimmingCharacters(in: .whitespaces)) else {
                throw VecStoreError.invalidArgument("--vector: component \(i) '\(part)' is not a number")
            }
            result.append(x)
        }
        return result
    }
}
