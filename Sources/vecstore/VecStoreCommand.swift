import ArgumentParser
import Foundation
import VecStore

@main
struct VecStoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vecstore",
        abstract: "An embedded vector database on LMDB: import, search, inspect and maintain a store file.",
        discussion: """
            A store is one file (plus FILE-lock beside it) holding named collections of documents:
            an id, a vector, optional text and optional JSON metadata.

            Quick start:
              vecstore import demo.vecstore --collection docs Samples/docs.jsonl
              vecstore query demo.vecstore --collection docs --id python:tutorial#1 -k 5
              vecstore stats demo.vecstore
            """,
        version: "0.1.0 (store format \(VecStore.formatVersion))",
        subcommands: [ImportCommand.self, QueryCommand.self, GetCommand.self, DeleteCommand.self,
                      CollectionsCommand.self, StatsCommand.self, VerifyCommand.self, CompactCommand.self,
                      ExportCommand.self, IndexCommand.self, EvalCommand.self, TextIndexCommand.self, DedupCommand.self,
                      PlotCommand.self, EmbedCommand.self, ModelCommand.self]
    )
}

/// The store path and collection name most commands take.
struct StoreArguments: ParsableArguments {
    @Argument(help: "Path of the store file (created by import if missing).")
    var store: String

    @Option(name: [.customShort("c"), .long], help: "Collection name.")
    var collection: String = "default"

    func open(readOnly: Bool = true) throws -> VecStore {
        try VecStore(path: store, options: StoreOptions(readOnly: readOnly, create: !readOnly))
    }
}

/// Prints to standard error.
func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// Runs `body`, printing library errors plainly (no usage text) and exiting non-zero.
func reportingErrors<R>(_ body: () throws -> R) throws -> R {
    do {
        return try body()
    } catch let e as VecStoreError {
        printError("error: \(e)")
        throw ExitCode.failure
    } catch let e as EmbedError {
        printError("error: \(e)")
        throw ExitCode.failure
    } catch let e as ImportFailure {
        printError("error: \(e)")
        throw ExitCode.failure
    }
}
