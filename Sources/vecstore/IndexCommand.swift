import ArgumentParser
import Foundation
import VecStore

struct IndexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index", abstract: "Show, build or drop a collection's vector index.",
        subcommands: [IndexShowCommand.self, IndexBuildCommand.self, IndexDropCommand.self],
        defaultSubcommand: IndexShowCommand.self)
}

struct IndexShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "Print the collection's index, its parameters and its size.",
        discussion: "Example:\n  vecstore index show demo.vecstore -c docs")
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

struct IndexBuildCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build", abstract: "(Re)build the HNSW graph with new parameters, in one transaction.",
        discussion: """
            Replaces any previous graph; searches keep using the old one until the build commits.
            Examples:
              vecstore index build demo.vecstore -c docs
              vecstore index build demo.vecstore -c docs --m 32 --ef-construction 400 \\
                --ef-search 128
            """)
    @OptionGroup var target: StoreArguments
    @Option(help: "Links per node (layer 0 keeps 2·M).") var m = 16
    @Option(help: "Beam width while building.") var efConstruction = 200
    @Option(help: "Default beam width of searches.") var efSearch = 64
    @Option(help: "Build threads (default: all cores).") var threads: Int?

    func run() throws {
        try reportingErrors {
            let collection = try target.open(readOnly: false).collection(target.collection)
            let started = Date()
            try collection.buildIndex(HNSWParameters(m: m, efConstruction: efConstruction, efSearch: efSearch),
                                      threads: threads ?? ProcessInfo.processInfo.activeProcessorCount)
            print(String(format: "built HNSW index of '%@' (M=%d, efConstruction=%d) over %d documents in %.1f s",
                         target.collection, m, efConstruction, try collection.count(),
                         Date().timeIntervalSince(started)))
        }
    }
}

struct IndexDropCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drop", abstract: "Remove the HNSW graph: the collection is searched exactly from now on.",
        discussion: "Example:\n  vecstore index drop demo.vecstore -c small")
    @OptionGroup var target: StoreArguments

    func run() throws {
        try reportingErrors {
            try target.open(readOnly: false).collection(target.collection).dropIndex()
            print("\(target.collection): index dropped (flat)")
        }
    }
}
