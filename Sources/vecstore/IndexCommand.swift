import ArgumentParser
import Foundation
import VecStore

struct IndexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index", abstract: "Show, build or drop a collection's vector index (HNSW, IVF or IVF-PQ).",
        subcommands: [IndexShowCommand.self, IndexBuildCommand.self, IndexDropCommand.self],
        defaultSubcommand: IndexShowCommand.self)
}

struct IndexShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "Print the collection's index, its parameters and its size.",
        discussion: """
            HNSW shows the rows its graph does not cover yet ("unlinked tail": left by an import that was \
            stopped, searched exactly, linked by the next write) and its unreachable live rows (rows no \
            link leads to from the entry point: a graph search cannot return them, exact search can). IVF indexes also show their list sizes (min / median / max), training errors and code size.
            Examples:
              vecstore index show demo.vecstore -c docs
              vecstore index show demo.vecstore -c compressed
            """)
    @OptionGroup var target: StoreArguments

    func run() throws {
        try reportingErrors {
            let stats = try target.open().collection(target.collection).indexStats()
            if stats.lines.isEmpty {
                print("\(target.collection): flat (exact search)")
            } else {
                print("\(target.collection): \(stats.kind)")
                let width = stats.lines.map(\.key.count).max() ?? 0
                for line in stats.lines {
                    print("  " + line.key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + line.value)
                }
            }
        }
    }
}

/// `--index` values of `index build`.
enum BuildIndexChoice: String, ExpressibleByArgument, CaseIterable {
    case hnsw, ivf
    case ivfPQ = "ivf-pq"
}

struct IndexBuildCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build", abstract: "(Re)build the collection's index with new parameters.",
        discussion: """
            Replaces any previous index (a collection has one). HNSW is rebuilt in bounded steps, each its own \
            transaction: the first replaces the graph by an empty one whose rows are all searched exactly (the \
            unlinked tail), the next ones link them; searches stay correct throughout, and a build that is \
            interrupted is finished by the next write. IVF and IVF-PQ are built in one transaction (searches keep \
            using the old index until it commits). IVF and IVF-PQ train k-means on a seeded sample of at most 256 rows per list, assign every \
            live row to its nearest list and (IVF-PQ) encode it: 4-bit codes of the raw vector by default (one \
            look-up table per query), 8-bit codes of its residual against the list's centroid (--pq-residual \
            on|off chooses); run it again to retrain when the data \
            has drifted (see README, "Choosing an index").
            Examples:
              vecstore index build demo.vecstore -c docs
              vecstore index build demo.vecstore -c docs --m 32 --ef-construction 400 \\
                --ef-search 128
              vecstore index build demo.vecstore -c docs --traversal int8
              vecstore index build demo.vecstore -c exact --index ivf --nlist 4
              vecstore index build demo.vecstore -c exact --index ivf-pq \\
                --nlist 4 --pq-m 16 --pq-bits 4
              vecstore index build demo.vecstore -c exact --index ivf-pq \\
                --nlist 4 --pq-m 16 --pq-residual on
            """)
    @OptionGroup var target: StoreArguments
    @Option(help: "Index kind: hnsw, ivf or ivf-pq.") var index: BuildIndexChoice = .hnsw
    @Option(help: "HNSW links per node (layer 0 keeps 2·M).") var m = 16
    @Option(help: "HNSW beam width while building.") var efConstruction = 200
    @Option(help: "HNSW default beam width of searches.") var efSearch = 64
    @Option(help: "HNSW traversal copies: f16 (default; half the float32 bytes) or int8 (a quarter; quantizer trained on all rows).")
    var traversal: HNSWTraversal?
    @Option(help: "Metadata fields that get HNSW filter links, comma-separated (e.g. source); without it the rebuilt graph has none.")
    var filterLinks: String?
    @OptionGroup(title: "IVF") var ivf: IVFTrainingOptions
    @Option(help: "Build threads (default: all cores).") var threads: Int?

    func validate() throws {
        if traversal != nil && index != .hnsw { throw ValidationError("--traversal applies to --index hnsw only") }
        if filterLinks != nil && index != .hnsw { throw ValidationError("--filter-links applies to --index hnsw only") }
        try ivf.rejectPQOptions(pq: index == .ivfPQ)
        if ivf.ivfLists != nil && index != .ivf { throw ValidationError("--ivf-lists applies to --index ivf only") }
    }

    func run() throws {
        try reportingErrors {
            let collection = try target.open(readOnly: false).collection(target.collection)
            let started = Date()
            let threads = threads ?? ProcessInfo.processInfo.activeProcessorCount
            if index == .hnsw {
                let links = filterLinkFields(filterLinks)
                try collection.buildIndex(HNSWParameters(m: m, efConstruction: efConstruction, efSearch: efSearch,
                                                         traversal: traversal ?? .f16, filterLinks: links),
                                          threads: threads)
                print(String(format: "built HNSW index of '%@' (M=%d, efConstruction=%d, traversal %@) over %d documents in %.1f s",
                             target.collection, m, efConstruction, (traversal ?? .f16).rawValue, try collection.count(),
                             Date().timeIntervalSince(started)))
                if !links.isEmpty { print("filter links on: \(links.joined(separator: ", "))") }
                return
            }
            let parameters = ivf.parameters(pq: index == .ivfPQ)
            let bar = IVFProgressBar(enabled: isatty(STDERR_FILENO) == 1)
            let report = try collection.buildIVF(parameters, threads: threads, progress: { bar.update($0) })
            bar.finish()
            print(String(format: "built %@ index of '%@' (nlist=%d, %@) over %d documents in %.1f s; trained on %d rows, coarse error %.4g",
                         index.rawValue, target.collection, report.nlist, parameters.coding.description, report.rows,
                         Date().timeIntervalSince(started), report.trainingRows, report.coarseError))
        }
    }
}

struct IndexDropCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drop", abstract: "Remove the index: the collection is searched exactly from now on.",
        discussion: "Example:\n  vecstore index drop demo.vecstore -c small")
    @OptionGroup var target: StoreArguments

    func run() throws {
        try reportingErrors {
            try target.open(readOnly: false).collection(target.collection).dropIndex()
            print("\(target.collection): index dropped (flat)")
        }
    }
}

/// `--traversal f16|int8` (HNSW traversal copies).
extension HNSWTraversal: ExpressibleByArgument {}

/// The field names of a `--filter-links a,b` option (none for nil).
func filterLinkFields(_ option: String?) -> [String] {
    guard let option else { return [] }
    return option.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
}
