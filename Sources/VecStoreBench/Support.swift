import Foundation
import Histogram
import VecStore

/// Monotonic wall-clock time in seconds.
func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Errors of the harness itself (bad data files).
struct BenchError: Error, CustomStringConvertible {
    let description: String
}

/// Reads every vector of an .fvecs/.bvecs/.npy file.
func readVectors(_ path: String, limit: Int? = nil) throws -> [[Float]] {
    var reader = try VecStore.reader(for: path, options: ImportOptions())
    var rows: [[Float]] = []
    while let r = try reader.next() {
        rows.append(r.vector)
        if let limit, rows.count >= limit { break }
    }
    return rows
}

/// Reads an .ivecs file (ground-truth neighbour ids per query).
func readIvecs(_ path: String) throws -> [[Int32]] {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    var rows: [[Int32]] = []
    try data.withUnsafeBytes { raw in
        var offset = 0
        while offset < raw.count {
            guard offset + 4 <= raw.count else { throw BenchError(description: "\(path): truncated at \(offset)") }
            let n = Int(raw.loadUnaligned(fromByteOffset: offset, as: Int32.self))
            guard n >= 0, offset + 4 + 4 * n <= raw.count else {
                throw BenchError(description: "\(path): bad row length \(n) at byte \(offset)")
            }
            rows.append((0..<n).map { raw.loadUnaligned(fromByteOffset: offset + 4 + 4 * $0, as: Int32.self) })
            offset += 4 + 4 * n
        }
    }
    return rows
}

/// Mean recall@k of result id lists (ids are row numbers as strings) against ground truth rows.
func recallAtK(_ results: [[SearchResult]], _ truth: [[Int32]], k: Int) -> Double {
    var total = 0.0
    for (q, hits) in results.enumerated() {
        let expected = Set(truth[q].prefix(k).map { String($0) })
        total += Double(hits.prefix(k).filter { expected.contains($0.id) }.count) / Double(min(k, expected.count))
    }
    return total / Double(max(results.count, 1))
}

/// Latency recorder (microseconds) over HdrHistogram.
struct Latency {
    var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    mutating func record(seconds: Double) { _ = histogram.record(UInt64(max(1, (seconds * 1e6).rounded()))) }
    func percentileMs(_ p: Double) -> Double { Double(histogram.valueAtPercentile(p)) / 1000 }
}

/// Size of a file in bytes (0 when missing).
func fileBytes(_ path: String) -> Int {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
}

/// Removes a store file and its lock file.
func removeStore(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
    try? FileManager.default.removeItem(atPath: path + "-lock")
}

/// Peak resident set size of this process in bytes (VmHWM).
func peakRSSBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kb = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
        return kb * 1024
    }
    return 0
}

/// Writes one result file in the shape `Tools/bench_report.py` reads.
func writeResult(_ path: String, system: String = "vecstore", dataset: String, n: Int, dim: Int, metric: String,
                 metrics: [String: Any], extra: [String: Any] = [:]) throws {
    var doc: [String: Any] = ["system": system, "dataset": dataset, "n": n, "dim": dim, "metric": metric,
                              "metrics": metrics]
    for (k, v) in extra { doc[k] = v }
    let data = try JSONSerialization.data(withJSONObject: doc, options: [.prettyPrinted, .sortedKeys])
    try data.write(to: URL(fileURLWithPath: path))
}

/// The dataset name of a base file: its directory name (`../docs60k/base.fvecs` → `docs60k`).
func datasetName(_ basePath: String) -> String {
    let url = URL(fileURLWithPath: basePath)
    let dir = url.deletingLastPathComponent().lastPathComponent
    return dir.isEmpty ? url.deletingPathExtension().lastPathComponent : dir
}

/// Runs `body` `runs` times and returns the best wall time.
func bestOf(_ runs: Int, _ body: () throws -> Void) rethrows -> Double {
    var best = Double.infinity
    for _ in 0..<runs {
        let t = now()
        try body()
        best = min(best, now() - t)
    }
    return best
}
