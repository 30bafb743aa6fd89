import ArgumentParser
import Foundation
import VecStore

/// Many searches of an existing store through the public API, for timing and profiling a query's fixed
/// cost on a small collection: each query by one `search` call (or all of them by one `searchBatch` call
/// with `--batch`), on one thread, `--repeat` passes, the fastest pass reported as queries per second.
/// Prints one line; the ids of the last pass are checksummed so two binaries can be compared.
struct QueryLoopBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query-loop",
        abstract: "Repeated one-thread searches of an existing store (q/s of the fastest pass; for profiling).")

    @Option(help: "Store file (opened read-only).") var store: String
    @Option(help: "Collection name.") var collection = "bench"
    @Option(help: "Query vectors (.fvecs).") var queries: String
    @Option(help: "Results per query.") var k = 10
    @Option(help: "HNSW beam width (SearchOptions.ef).") var ef: Int?
    @Option(help: "IVF lists probed (SearchOptions.nprobe).") var nprobe: Int?
    @Option(help: "IVF-PQ re-ranking factor (SearchOptions.refine).") var refine: Int?
    @Option(help: "Passes over the queries (the fastest is reported).") var `repeat` = 20
    @Flag(help: "One searchBatch call per pass instead of one search call per query.") var batch = false

    func run() throws {
        let rows = try readVectors(queries)
        guard !rows.isEmpty else { throw ValidationError("--queries holds no rows") }
        let vs = try VecStore(path: store, options: StoreOptions(readOnly: true, create: false))
        let c = try vs.collection(collection)
        let options = SearchOptions(threads: 1, ef: ef, nprobe: nprobe, refine: refine)
        var last: [[SearchResult]] = []
        let seconds = try bestOf(max(1, `repeat`)) {
            if batch {
                last = try c.searchBatch(rows, k: k, options: options)
            } else {
                last = []
                last.reserveCapacity(rows.count)
                for q in rows { last.append(try c.search(q, k: k, options: options)) }
            }
        }
        var check: UInt64 = 1469598103934665603
        for hits in last {
            for h in hits {
                for b in h.id.utf8 { check = (check ^ UInt64(b)) &* 1099511628211 }
                check = (check ^ UInt64(h.score.bitPattern)) &* 1099511628211
            }
        }
        print("query-loop \(batch ? "batch" : "single"): \(Int(Double(rows.count) / seconds)) q/s, "
              + "\(String(format: "%.3f", seconds / Double(rows.count) * 1e6)) us/query, checksum \(String(check, radix: 16))")
    }
}
