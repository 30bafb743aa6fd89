import Foundation
import VecStoreKernels
import Testing
@testable import VecStore

/// A temporary directory removed when the value is released.
final class TempDir: @unchecked Sendable {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("vecstore-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
    deinit { try? FileManager.default.removeItem(at: url) }
}

/// Deterministic random numbers (the project's SplitMix64) so failures reproduce.
typealias SeededRandom = SplitMix64

extension SplitMix64 {
    /// A vector of `dim` components uniform in -1...1.
    mutating func vector(_ dim: Int) -> [Float] { (0..<dim).map { _ in Float.random(in: -1...1, using: &self) } }
}

/// Random documents with metadata of every supported type (some fields absent).
func makeDocuments(_ count: Int, dimension: Int, seed: UInt64 = 1, idPrefix: String = "doc") -> [Document] {
    var rng = SeededRandom(seed: seed)
    let categories = ["tech", "science", "art", "Ünïcode ✓"]
    return (0..<count).map { i in
        var meta: [String: JSONValue] = [:]
        meta["category"] = .string(categories[Int.random(in: 0..<categories.count, using: &rng)])
        if i % 7 != 0 { meta["year"] = .number(Double(Int.random(in: 2000...2025, using: &rng))) }
        meta["score"] = .number(Double.random(in: -5...5, using: &rng))
        meta["flag"] = .bool(i % 3 == 0)
        meta["tags"] = .array((0..<Int.random(in: 0...3, using: &rng)).map { _ in
            .string(["a", "b", "c", "d"][Int.random(in: 0..<4, using: &rng)])
        })
        return Document(id: "\(idPrefix)-\(i)", vector: rng.vector(dimension),
                        text: i % 5 == 0 ? nil : "text of document \(i) — ünïcödé", metadata: meta)
    }
}

/// The exact top-k by brute force in Double: (id, score) best first, ties broken by position.
func bruteForce(_ docs: [Document], _ query: [Float], k: Int, metric: Metric) -> [(id: String, score: Double)] {
    func norm(_ v: [Float]) -> Double { sqrt(v.reduce(0) { $0 + Double($1) * Double($1) }) }
    let qn = norm(query)
    let scored = docs.map { d -> (id: String, score: Double) in
        switch metric {
        case .l2: return (d.id, zip(query, d.vector).reduce(0) { $0 + pow(Double($1.0) - Double($1.1), 2) })
        case .dot: return (d.id, zip(query, d.vector).reduce(0) { $0 + Double($1.0) * Double($1.1) })
        case .cosine:
            return (d.id, zip(query, d.vector).reduce(0) { $0 + Double($1.0) * Double($1.1) } / (qn * norm(d.vector)))
        }
    }
    let sorted = scored.sorted { metric.higherIsCloser ? $0.score > $1.score : $0.score < $1.score }
    return Array(sorted.prefix(k))
}

/// Checks search results against brute force: same scores rank by rank, and the same ids except
/// where scores tie within `tolerance`.
func expectMatches(_ results: [SearchResult], _ expected: [(id: String, score: Double)], tolerance: Double = 1e-4,
                   sourceLocation: Testing.SourceLocation = #_sourceLocation) {
    #expect(results.count == expected.count, sourceLocation: sourceLocation)
    for (r, e) in zip(results, expected) {
        #expect(abs(Double(r.score) - e.score) <= tolerance * max(1, abs(e.score)),
                "score of \(r.id) is \(r.score), expected \(e.score) (\(e.id))", sourceLocation: sourceLocation)
    }
    let got = Set(results.map(\.id)), want = Set(expected.map(\.id))
    if got != want {
        // Ids may differ only at the cut-off score.
        let cutoff = expected.last?.score ?? 0
        for id in got.symmetricDifference(want) {
            let s = results.first { $0.id == id }.map { Double($0.score) } ?? expected.first { $0.id == id }?.score ?? .nan
            #expect(abs(s - cutoff) <= tolerance * max(1, abs(cutoff)), "unexpected id \(id)", sourceLocation: sourceLocation)
        }
    }
}

/// The package root (this file is Tests/VecStoreTests/TestSupport.swift).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// `../shared/data` beside the checkout.
let sharedData = packageRoot.deletingLastPathComponent().appendingPathComponent("shared/data")

/// Whether the shared datasets are present (tests that need them are skipped otherwise).
let hasSharedData = FileManager.default.fileExists(atPath: sharedData.appendingPathComponent("siftsmall").path)

/// The `vecstore` executable built next to the test bundle.
let vecstoreBinary: String = {
    let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    var dir = exe.deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = dir.appendingPathComponent("vecstore").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    return packageRoot.appendingPathComponent(".build/debug/vecstore").path
}()

/// The result of running the CLI.
struct CLIResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs `executable` with `arguments` (in `directory`, with `environment` added to this process's) and
/// waits for it. `stdin` is written to its standard input, which is otherwise empty.
@discardableResult
func runProcess(_ executable: String, _ arguments: [String], stdin: String? = nil, in directory: URL? = nil,
                environment: [String: String] = [:]) throws -> CLIResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = directory }
    if !environment.isEmpty {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
    }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let input = stdin.map { _ in Pipe() }
    process.standardInput = input ?? FileHandle.nullDevice
    try process.run()
    if let input, let stdin {
        input.fileHandleForWriting.write(Data(stdin.utf8))
        try input.fileHandleForWriting.close()
    }
    // Read both pipes before waiting so a full pipe cannot deadlock the child.
    let group = DispatchGroup()
    nonisolated(unsafe) var errData = Data()
    DispatchQueue.global().async(group: group) { errData = err.fileHandleForReading.readDataToEndOfFile() }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    process.waitUntilExit()
    return CLIResult(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                     stderr: String(decoding: errData, as: UTF8.self))
}

/// Runs `vecstore` with `arguments` (and `environment` added to this process's) and waits for it.
@discardableResult
func runCLI(_ arguments: [String], stdin: String? = nil, environment: [String: String] = [:]) throws -> CLIResult {
    try runProcess(vecstoreBinary, arguments, stdin: stdin, environment: environment)
}

/// Starts `vecstore` with `arguments` and returns without waiting (tests that kill it mid-write, or run
/// several at once). Standard output and standard error both go to `output`, or are discarded.
func startCLI(_ arguments: [String], output: Pipe? = nil) throws -> Process {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: vecstoreBinary)
    p.arguments = arguments
    p.standardOutput = output ?? FileHandle.nullDevice
    p.standardError = output ?? FileHandle.nullDevice
    try p.run()
    return p
}

/// Starts `vecstore` with `arguments` (output discarded), kills it with SIGKILL after `delay` seconds
/// (or lets it finish first) and waits for it: a crash mid-write.
func killCLI(_ arguments: [String], after delay: Double) throws {
    let p = try startCLI(arguments)
    Thread.sleep(forTimeInterval: delay)
    kill(p.processIdentifier, SIGKILL)
    p.waitUntilExit()
}

/// Runs `script` with `bash -c`, `arguments` as `$0`, `$1`, ….
func runShell(_ script: String, _ arguments: [String]) throws -> CLIResult {
    try runProcess("/bin/bash", ["-c", script] + arguments)
}

/// Writes documents as import JSONL.
func jsonl(_ docs: [Document]) -> String {
    docs.map { d in
        var o: [String: JSONValue] = ["id": .string(d.id), "vector": .array(d.vector.map { .number(Double($0)) })]
        if let t = d.text { o["text"] = .string(t) }
        if !d.metadata.isEmpty { o["metadata"] = .object(d.metadata) }
        return JSONValue.object(o).serialized()
    }.joined(separator: "\n") + "\n"
}

/// Rows of an .fvecs / .ivecs file.
func readVecs<T>(_ path: String, as: T.Type) throws -> [[T]] {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    return data.withUnsafeBytes { raw -> [[T]] in
        var rows: [[T]] = []
        var o = 0
        while o + 4 <= raw.count {
            let n = Int(raw.loadUnaligned(fromByteOffset: o, as: Int32.self))
            rows.append((0..<n).map { raw.loadUnaligned(fromByteOffset: o + 4 + 4 * $0, as: T.self) })
            o += 4 + 4 * n
        }
        return rows
    }
}
