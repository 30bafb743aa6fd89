import ArgumentParser
import Foundation
import VecStore

struct DedupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dedup",
        abstract: "Find near-duplicate documents: every pair of vectors at or above a similarity threshold.",
        discussion: """
            With an HNSW index, each document's --neighbours nearest documents are found through the graph \
            and the pairs at the threshold kept (approximate, linear in the collection size). --exact (and \
            flat collections) compare all pairs with a blocked self-join (work grows with the square of the \
            size). Scores are exact either way. Under l2 the threshold is a maximum squared distance. \
            --known-pairs takes a file of expected pairs (two ids per line, tab-separated, or space-separated when \
            the line has no tab) and \
            reports precision and recall of the pairs found.

            Examples:
              vecstore dedup demo.vecstore -c docs --threshold 0.95
              vecstore dedup demo.vecstore -c docs --threshold 0.9 --exact --limit 5
              vecstore dedup demo.vecstore -c docs --format jsonl > pairs.jsonl
            """)

    @OptionGroup var target: StoreArguments

    @Option(help: "Similarity threshold (cosine/dot: at least; l2: squared distance at most).")
    var threshold: Float = 0.85

    @Option(help: "Metadata filter (JSON): only documents matching it are compared.")
    var filter: String?

    @Option(help: "Expected pairs (two ids a line) to score the result against.")
    var knownPairs: String?

    @Option(help: "Output: table (first --limit pairs) or jsonl (every pair).")
    var format: OutputFormat = .table

    @Option(help: "Pairs printed in the table.")
    var limit = 20

    @Flag(help: "Compare all pairs exactly instead of searching the HNSW graph.")
    var exact = false

    @Option(help: "Graph search: nearest documents examined per document.")
    var neighbours = 64

    @Option(help: "Worker threads (default: all cores).")
    var threads: Int?

    func validate() throws {
        if limit < 0 { throw ValidationError("--limit must be at least 0") }
        if !(1...4096).contains(neighbours) { throw ValidationError("--neighbours must be in 1...4096") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        try reportingErrors {
            let store = try target.open()
            let collection = try store.collection(target.collection)
            let parsedFilter = try filter.map { try Filter(json: $0) }
            let started = Date()
            let pairs = try collection.nearDuplicates(threshold: threshold, filter: parsedFilter,
                                                      method: exact ? .exact : .automatic, neighbours: neighbours,
                                                      threads: threads ?? ProcessInfo.processInfo.activeProcessorCount)
            let seconds = Date().timeIntervalSince(started)
            switch format {
            case .jsonl:
                var out = ""
                for p in pairs {
                    out += JSONValue.object(["a": .string(p.a), "b": .string(p.b), "score": .number(Double(p.score))]).serialized() + "\n"
                    if out.utf8.count > 1 << 16 { FileHandle.standardOutput.write(Data(out.utf8)); out = "" }
                }
                FileHandle.standardOutput.write(Data(out.utf8))
            case .table:
                print("\(pairs.count) pairs at threshold \(threshold) among \(try collection.count()) documents "
                      + String(format: "(%.2f s)", seconds))
                for p in pairs.prefix(limit) { print(String(format: "%.6f  ", p.score) + p.a + "  " + p.b) }
                if pairs.count > limit { print("… \(pairs.count - limit) more (--format jsonl prints all)") }
            }
            if let knownPairs {
                let text: String
                do { text = try String(contentsOfFile: knownPairs, encoding: .utf8) } catch {
                    throw VecStoreError.io("\(knownPairs): \(error.localizedDescription)")
                }
                func key(_ a: String, _ b: String) -> String { a < b ? a + "\u{0}" + b : b + "\u{0}" + a }
                var known = Set<String>()
                for line in text.split(whereSeparator: \.isNewline) {
                    // Tab-separated when the line has a tab (ids may contain spaces), else whitespace-separated.
                    let cols = (line.contains("\t") ? line.split(separator: "\t")
                                                     : line.split(whereSeparator: { $0 == " " })).map(String.init)
                    if cols.count >= 2 { known.insert(key(cols[0], cols[1])) }
                }
                let found = Set(pairs.map { key($0.a, $0.b) })
                let hit = found.intersection(known).count
                let precision = found.isEmpty ? 0 : Double(hit) / Double(found.count)
                let recall = known.isEmpty ? 0 : Double(hit) / Double(known.count)
                printError(String(format: "known pairs: %d; found %d of them: precision %.4f, recall %.4f",
                                  known.count, hit, precision, recall))
            }
        }
    }
}
