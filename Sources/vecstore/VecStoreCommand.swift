import ArgumentParser
import Foundation
import VecStore

@main
struct VecStoreCommand: ParsableCommand {
    /// Parses and runs a command; a command-line error exits with `ExitStatus.usage` (2) instead of
    /// ArgumentParser's 64, so every failure kind has its own documented status.
    static func main() {
        // Past the file-size limit (`ulimit -f`) a write then fails with EFBIG, reported as a full
        // disk, instead of the process being killed by SIGXFSZ.
        signal(SIGXFSZ, SIG_IGN)
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                printError(fullMessage(for: error))
                Foundation.exit(ExitStatus.usage)
            }
            exit(withError: error)
        }
    }

    static let configuration = CommandConfiguration(
        commandName: "vecstore",
        abstract: "An embedded vector database on LMDB: import, search, inspect and maintain a store file.",
        discussion: """
            A store is one file (plus FILE-lock and FILE-guard beside it) holding named collections of documents: \
            an id, a vector, optional text and optional JSON metadata.

            Quick start (from the repository root):
              vecstore import demo.vecstore -c docs Samples/docs.jsonl
              vecstore query demo.vecstore -c docs --id cooking/risotto/overview -k 5
              vecstore stats demo.vecstore

            The examples in every command's help run as written from the repository root, on the files in \
            Samples/, in the order of the command list below (import first makes demo.vecstore). Lines \
            marked "# needs the model" need all-MiniLM-L6-v2 (bash Tools/install-deps --model); "# needs \
            rsvg-convert" needs the Debian package librsvg2-bin.
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

    @Flag(help: "Check every LMDB page of the store before reading it: O(file), for files you do not trust (also VECSTORE_CHECK_PAGES=full).")
    var checkPages = false

    func open(readOnly: Bool = true) throws -> VecStore {
        try VecStore(path: store, options: storeOptions(readOnly: readOnly, create: !readOnly, checkPages: checkPages))
    }
}

/// Prints to standard error.
func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// The documented exit statuses of every command (README "Exit status").
enum ExitStatus {
    /// Success.
    static let ok: Int32 = 0
    /// `verify` found faults; `get`/`delete` did not find every id.
    static let faultsFound: Int32 = 1
    /// The command line is wrong (unknown option, missing argument, value out of range).
    static let usage: Int32 = 2
    /// An input file, vector, filter, id or argument value is invalid.
    static let badInput: Int32 = 3
    /// The store, collection or document named does not exist.
    static let notFound: Int32 = 4
    /// The store is damaged, not a vecstore store, or written by a newer vecstore.
    static let corruptStore: Int32 = 5
    /// A file-system failure, including a full disk.
    static let io: Int32 = 6
    /// The store is busy (a compaction holds it) or was replaced by a compaction: try again.
    static let busy: Int32 = 7

    static func of(_ error: VecStoreError) -> Int32 {
        switch error.category {
        case .badInput: badInput
        case .notFound: notFound
        case .corruptStore: corruptStore
        case .io: io
        case .busy: busy
        }
    }
}

/// Runs `body`, printing library errors plainly (no usage text) and exiting with the status of the
/// error's category (`ExitStatus`).
func reportingErrors<R>(_ body: () throws -> R) throws -> R {
    do {
        return try body()
    } catch let e as VecStoreError {
        printError("error: \(e)")
        throw ExitCode(ExitStatus.of(e))
    } catch let e as EmbedError {
        printError("error: \(e)")
        throw ExitCode(ExitStatus.of(VecStoreError.embedding(e)))
    } catch let e as ImportFailure {
        printError("error: \(e)")
        // Only a bad record can be skipped; a refused option or collection cannot.
        if case .invalidInput = e.error { printError("(use --skip-invalid to skip bad records)") }
        throw ExitCode(ExitStatus.of(e.error))
    }
}
