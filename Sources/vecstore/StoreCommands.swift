import ArgumentParser
import Foundation
import VecStore

func formatBytes(_ n: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(n), unit = 0
    while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
    return unit == 0 ? "\(n) B" : String(format: "%.1f %@", value, units[unit])
}

/// Store options for a command: `--check-pages`, or `VECSTORE_CHECK_PAGES=full` in the environment,
/// checks every LMDB page of the file before it is read (Spec/FORMAT.md §21); otherwise the open checks
/// the meta page, the main tree and each database's root page.
func storeOptions(readOnly: Bool, create: Bool, checkPages: Bool) -> StoreOptions {
    var options = StoreOptions(readOnly: readOnly, create: create)
    if checkPages || ProcessInfo.processInfo.environment["VECSTORE_CHECK_PAGES"] == "full" { options.checkPages = .full }
    return options
}

struct CollectionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "collections", abstract: "List the collections of a store.",
        discussion: "Example:\n  vecstore collections demo.vecstore")
    @Argument(help: "Path of the store file.") var store: String
    @Flag(help: "Check every LMDB page of the store before reading it: O(file), for files you do not trust (also VECSTORE_CHECK_PAGES=full).")
    var checkPages = false

    func run() throws {
        try reportingErrors {
            let s = try VecStore(path: store, options: storeOptions(readOnly: true, create: false, checkPages: checkPages))
            for name in try s.collectionNames() {
                let info = try s.collection(name).info()
                print("\(name)\t\(info.count) documents\tdimension \(info.dimension)\t\(info.metric)")
            }
        }
    }
}

struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats", abstract: "Show counts, tombstones, id runs, sizes per database and free pages.",
        discussion: "Reads headers and LMDB's counters only, so it is quick at any size; an index's full figures "
            + "are `vecstore index show`'s (with an HNSW graph's unreachable live rows, which walk the whole graph).\n\n"
            + "Example:\n  vecstore stats demo.vecstore")
    @Argument(help: "Path of the store file.") var store: String
    @Flag(help: "Check every LMDB page of the store before reading it: O(file), for files you do not trust (also VECSTORE_CHECK_PAGES=full).")
    var checkPages = false

    func run() throws {
        try reportingErrors {
            let s = try VecStore(path: store, options: storeOptions(readOnly: true, create: false, checkPages: checkPages))
                .stats()
            print("store      \(s.path)  (format \(s.formatVersion))")
            print("file       \(formatBytes(s.fileBytes)); map \(formatBytes(s.mapSize)); page \(s.pageSize) B")
            print("pages      \(s.usedPages) used, \(s.freePages) free (\(formatBytes(s.freePages * s.pageSize)) reusable; compact returns it)")
            print("")
            print(formatTable(["collection", "documents", "tombstones", "dimension", "metric", "rows/block", "index"],
                              zip(s.collections, s.indexes).map { c, index in
                                  [c.name, "\(c.count)", "\(c.tombstones)", "\(c.dimension)", c.metric.description,
                                   "\(c.blockCapacity)", index.summary + index.unlinkedNote]
                              }, rightAligned: [1, 2, 3, 5]))
            for c in s.collections where !c.idRuns.isEmpty {
                print("id runs    \(c.name): \(c.idRuns.reduce(0, +)) of \(c.count) ids in runs (per level: "
                      + c.idRuns.map(String.init).joined(separator: ", ") + "); the rest in the base")
            }
            print("")
            print(formatTable(["database", "entries", "size", "overflow pages", "depth"],
                              s.databases.map { d in
                                  [d.name, "\(d.entries)", formatBytes(d.bytes), "\(d.overflowPages)", "\(d.depth)"]
                              }, rightAligned: [1, 2, 3, 4]))
        }
    }
}

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Check every invariant of the store; exit 1 on any fault.",
        discussion: """
            First checks the LMDB page structure of every database (every branch, leaf and sub-page and \
            every overflow header, before any of it is read); a damaged page stops verify with exit \
            status 5 and names the database and the page. Then checks every invariant of the format.
            Example:
              vecstore verify demo.vecstore
            """)
    @Argument(help: "Path of the store file.") var store: String

    func run() throws {
        try reportingErrors {
            let report = try VecStore(path: store, options: .init(readOnly: true, create: false)).verify()
            if report.isOK {
                print("ok: \(report.pages) pages and \(report.checked) items checked, no faults")
            } else {
                for fault in report.faults { print("FAULT: \(fault)") }
                print("\(report.faults.count) fault(s) in \(report.checked) items checked (\(report.pages) pages sound)")
                throw ExitCode.failure
            }
        }
    }
}

struct CompactCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compact",
        abstract: "Rewrite the store without deleted documents and free pages (atomic file swap).",
        discussion: """
            Writes FILE.compacting, then renames it over FILE: a crash leaves either the old or the new \
            store intact. It needs the store to itself: while another process has it open, compact exits with \
            status 7 (busy), and opens in other processes wait until it has finished.
            An HNSW graph is carried over: its links are renumbered (links to deleted rows dropped, the lists \
            that lose some refilled from the deleted rows' neighbours) and only its upper levels are relinked, \
            a small part of the cost of building it again. A graph that fails the checks is rebuilt instead, \
            and the output says so; --rebuild-index rebuilds every graph from the kept rows.
            Example:
              vecstore compact demo.vecstore
            """)
    @Argument(help: "Path of the store file.") var store: String
    @Flag(help: "Rebuild each HNSW graph from the kept rows instead of renumbering the old one.")
    var rebuildIndex = false

    func run() throws {
        try reportingErrors {
            let r = try VecStore.compact(path: store, rebuildIndexes: rebuildIndex)
            print("compacted \(store): \(formatBytes(r.bytesBefore)) -> \(formatBytes(r.bytesAfter)), "
                  + "\(r.documents) documents kept, \(r.tombstonesDropped) deleted rows dropped")
            for index in r.indexes { print("  \(index.collection): \(index.detail)") }
        }
    }
}
