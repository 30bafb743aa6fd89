import ArgumentParser
import Foundation
import VecStore

/// One fresh open of a store in this (fresh) process: open, snapshot, first query and a second query on
/// the same handle, each timed with its minor and major page faults, printed as one JSON line. The
/// scale benchmark's open phase runs it as a child process per run, so every run starts with a new
/// heap and a new map, as a real first query does.
struct OpenOnceBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "open-once", abstract: "One fresh open + first query of a store (JSON line; used by `scale --phases open`).")

    @Option(help: "Store file.") var store: String
    @Option(help: "Collection name.") var collection = "bench"
    @Option(help: "Query vectors.") var queries: String
    @Option(help: "Row of --queries to ask first (the next row is the second query).") var query = 0
    @Option(help: "Filter the first query by metadata.source = this value.") var source: String?
    @Flag(help: "Open with the full LMDB page check (StoreOptions.checkPages = .full) instead of the roots check.")
    var checkPages = false

    func run() throws {
        let rows = try readVectors(queries, limit: query + 2)
        guard rows.count >= 2 else { throw ValidationError("--queries holds fewer than \(query + 2) rows") }
        let q = rows[rows.count - 2], q2 = rows[rows.count - 1]
        let filter = source.map { Filter.field("source", .equals(.string($0))) }
        let f0 = PageCache.faults(), t0 = now()
        var options = StoreOptions(readOnly: true, create: false)
        if checkPages { options.checkPages = .full }
        let opened = try VecStore(path: store, options: options)
        let f1 = PageCache.faults(), t1 = now()
        let c = try opened.collection(collection)
        _ = try c.explainSearch(k: 10)
        let f2 = PageCache.faults(), t2 = now()
        _ = try c.search(q, k: 10, filter: filter)
        let f3 = PageCache.faults(), t3 = now()
        _ = try c.search(q2, k: 10, filter: filter)
        let f4 = PageCache.faults(), t4 = now()
        let out: [String: Any] = [
            "ms": [t1 - t0, t2 - t1, t3 - t2, t4 - t3].map { $0 * 1000 },
            "minor": [f1.minor - f0.minor, f2.minor - f1.minor, f3.minor - f2.minor, f4.minor - f3.minor],
            "major": [f1.major - f0.major, f2.major - f1.major, f3.major - f2.major, f4.major - f3.major],
        ]
        let data = try JSONSerialization.data(withJSONObject: out)
        print(String(decoding: data, as: UTF8.self))
        opened.close()
    }

    /// Runs `open-once` in a child process of this executable and returns its parts: milliseconds,
    /// minor and major faults of open, snapshot, first query, second query.
    static func child(store: String, queries: String, query: Int, source: String?) throws
        -> (ms: [Double], minor: [Int], major: [Int])
    {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = ["open-once", "--store", store, "--queries", queries, "--query", String(query)]
            + (source.map { ["--source", $0] } ?? [])
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0,
              let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let ms = obj["ms"] as? [Double], let minor = obj["minor"] as? [Int], let major = obj["major"] as? [Int]
        else { throw ValidationError("open-once failed (status \(p.terminationStatus))") }
        return (ms, minor, major)
    }
}
