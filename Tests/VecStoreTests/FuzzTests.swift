import Foundation
import LMDB
import Testing
@testable import VecStore

#if canImport(Glibc)
import Glibc
#endif

/// The result of a CLI run that may crash or hang.
struct GuardedResult {
    var status: Int32
    /// The signal that ended the process, or nil when it exited.
    var signal: Int32?
    var timedOut: Bool
    /// Standard output and standard error together.
    var output: String
}

/// Runs `vecstore` as a subprocess (so a crash is seen, not suffered), killing it after `timeout` seconds.
func runGuarded(_ arguments: [String], timeout: Double) throws -> GuardedResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: vecstoreBinary)
    process.arguments = arguments
    process.standardInput = FileHandle.nullDevice
    // Both streams go to one pipe: a command reports faults on either (verify lists them on stdout).
    let err = Pipe()
    process.standardOutput = err
    process.standardError = err
    try process.run()
    let pid = process.processIdentifier
    let killer = DispatchWorkItem { kill(pid, SIGKILL) }
    DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: killer)
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let timedOut = killer.isCancelled == false && process.terminationReason == .uncaughtSignal
        && process.terminationStatus == SIGKILL
    killer.cancel()
    return GuardedResult(status: process.terminationStatus,
                         signal: process.terminationReason == .uncaughtSignal ? process.terminationStatus : nil,
                         timedOut: timedOut, output: String(decoding: errData, as: UTF8.self))
}

/// How one stored value is damaged.
enum Damage: CaseIterable, CustomStringConvertible {
    case flipBit, randomByte, truncate, extend, allOnesWord, highBitWord

    var description: String {
        switch self {
        case .flipBit: "flip a bit"
        case .randomByte: "random byte"
        case .truncate: "truncate"
        case .extend: "extend"
        case .allOnesWord: "0xFFFFFFFF word"
        case .highBitWord: "0x80000000 word"
        }
    }

    /// Whether the damaged value keeps its size (the only kind a dupFixed database accepts).
    var keepsSize: Bool { self != .truncate && self != .extend }

    func apply(_ value: [UInt8], _ rng: inout SeededRandom) -> [UInt8] {
        var v = value
        switch self {
        case .flipBit:
            guard !v.isEmpty else { return [0] }
            let i = Int.random(in: 0..<v.count, using: &rng)
            v[i] ^= UInt8(1) << UInt8.random(in: 0...7, using: &rng)
        case .randomByte:
            guard !v.isEmpty else { return [0] }
            let i = Int.random(in: 0..<v.count, using: &rng)
            var b = UInt8.random(in: 0...255, using: &rng)
            if b == v[i] { b ^= 0x5A }
            v[i] = b
        case .truncate:
            v = Array(v.prefix(v.isEmpty ? 0 : Int.random(in: 0..<v.count, using: &rng)))
        case .extend:
            v += (0..<Int.random(in: 1...16, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        case .allOnesWord, .highBitWord:
            let word: UInt32 = self == .allOnesWord ? 0xFFFF_FFFF : 0x8000_0000
            guard v.count >= 4 else { return [UInt8](repeating: 0xFF, count: 4) }
            // Mostly the first words (counts, ids and headers live there), else any aligned word.
            let words = v.count / 4
            let w = Bool.random(using: &rng) ? Int.random(in: 0..<min(words, 4), using: &rng)
                                             : Int.random(in: 0..<words, using: &rng)
            for j in 0..<4 { v[4 * w + j] = UInt8(truncatingIfNeeded: word >> (8 * UInt32(j))) }
        }
        return v
    }
}

/// Seeded damage of single values in every database of a small store (HNSW, BM25, metadata, deletes),
/// then every CLI command on the damaged copy: each must exit (no signal, no hang) with either a result
/// or an error message. `VECSTORE_FUZZ_ROUNDS` / `VECSTORE_FUZZ_SEED` run it longer (Tools/fuzz-asan).
@Suite(.serialized) struct FuzzTests {
    static let databases = ["meta", "vectors", "docs", "ids", "live", "fields", "graph", "graph-upper",
                            "graph-vectors", "textinfo", "terms", "postings", "doclens", "ivf", "ivf-lists"]

    /// A store with an HNSW collection large enough to be searched through its graph (> 1,024 live
    /// rows), text, metadata and deletes, a small flat l2 collection and an IVF-PQ one.
    static func makeStore(_ path: String) throws {
        let store = try VecStore(path: path)
        let docs = try store.collection("docs", dimension: 8, metric: .cosine,
                                        index: .hnsw(HNSWParameters(m: 4, efConstruction: 16, efSearch: 16)))
        try docs.upsert(makeDocuments(1_200, dimension: 8, seed: 11))
        _ = try docs.delete(ids: Array(stride(from: 0, to: 1_200, by: 37).map { "doc-\($0)" }))
        let flat = try store.collection("flat", dimension: 3, metric: .l2, index: .flat)
        try flat.upsert(makeDocuments(40, dimension: 3, seed: 12, idPrefix: "f"))
        // An IVF-PQ collection (4-bit fast scan) searched through its lists (Spec/IVF.md).
        let quant = try store.collection("quant", dimension: 8, metric: .l2, index: .flat)
        try quant.upsert(makeDocuments(1_100, dimension: 8, seed: 13, idPrefix: "q"))
        try quant.buildIVF(IVFParameters(nlist: 8, coding: .pq(m: 4, bits: 4)), threads: 1)
        _ = try quant.delete(ids: ["q-3", "q-500"])
        // An HNSW collection with int8 traversal copies and its quantizer record (Spec/HNSW.md §3.4).
        let int8 = try store.collection("int8", dimension: 8, metric: .l2,
                                        index: .hnsw(HNSWParameters(m: 4, efConstruction: 16, efSearch: 16, traversal: .int8)))
        try int8.upsert(makeDocuments(1_100, dimension: 8, seed: 14, idPrefix: "i"))
    }

    /// Every (database, key) of the store, grouped by database.
    static func entries(_ path: String) throws -> [(db: String, keys: [[UInt8]])] {
        let env = try Environment(path: path, options: { var o = EnvironmentOptions(); o.readOnly = true; return o }())
        let handles = try env.openDatabases(databases.map { ($0, DatabaseFlags()) }, create: false)
        return try env.read { txn in
            try handles.map { db in
                var keys: [[UInt8]] = []
                try txn.withCursor(db) { (c: Cursor) throws -> Void in
                    var e = try c.first()
                    while let (k, _) = e {
                        keys.append(Array(k))
                        e = try c.nextKey()
                    }
                }
                return (db.name, keys)
            }.filter { !$0.keys.isEmpty }
        }
    }

    /// Damages the value under `key` of `dbName` through LMDB (so its B-tree stays valid). Returns a
    /// description, or nil when the damage does not apply.
    static func damage(_ path: String, db dbName: String, key: [UInt8], _ kind: Damage, _ rng: inout SeededRandom)
        throws -> String?
    {
        let env = try Environment(path: path)
        let flags: DatabaseFlags = dbName == "fields" ? [.dupSort, .dupFixed] : []
        let db = try env.openDatabases([(dbName, flags)], create: false)[0]
        if dbName == "fields" && !kind.keepsSize { return nil }
        return try env.write { txn -> String? in
            guard let value = try txn.get(db, key).map({ Array($0) }) else { return nil }
            let damaged = kind.apply(value, &rng)
            if damaged == value { return nil }
            if dbName == "fields" { try txn.delete(db, key, value: value) }
            try txn.put(db, key, damaged)
            return "\(dbName)[\(String(decoding: key.prefix(40), as: UTF8.self).debugDescription)] \(kind): \(value.count) → \(damaged.count) bytes"
        }
    }

    /// The commands run on each damaged store, read-only ones first.
    static func commands(_ store: String, dir: String) -> [[String]] {
        let v = "0.1,0.2,0.3,0.4,-0.5,0.6,-0.7,0.8"
        return [
            ["collections", store],
            ["stats", store],
            ["verify", store],
            ["query", store, "-c", "docs", "--id", "doc-5", "-k", "5"],
            ["query", store, "-c", "docs", "--vector", v, "-k", "10", "--ef", "32"],
            ["query", store, "-c", "docs", "--vector", v, "-k", "10", "--exact"],
            ["query", store, "-c", "docs", "--text", "text document", "-k", "5"],
            ["query", store, "-c", "docs", "--text", "document", "--vector", v, "--alpha", "0.5"],
            ["query", store, "-c", "docs", "--text", "document", "--id", "doc-9", "--rrf"],
            ["query", store, "-c", "docs", "--vector", v, "--filter", #"{"category": "tech", "year": {"$gte": 2010}}"#],
            ["query", store, "-c", "flat", "--vector", "0.5,0.5,0.5", "-k", "3"],
            ["query", store, "-c", "quant", "--vector", v, "-k", "5", "--nprobe", "4", "--refine", "4"],
            ["query", store, "-c", "int8", "--vector", v, "-k", "5"],
            ["get", store, "-c", "docs", "doc-3", "doc-10", "doc-1199"],
            ["export", store, "-c", "docs", "-o", dir + "/export.jsonl"],
            ["import", store, "-c", "docs", dir + "/batch.jsonl"],
            ["delete", store, "-c", "docs", "doc-4", "doc-800"],
            ["compact", store],
            ["verify", store],
            ["stats", store],
        ]
    }

    static func fuzz(rounds: Int, seed: UInt64) throws -> (rounds: Int, runs: Int, errors: Int, failures: [String]) {
        let tmp = try TempDir()
        let base = tmp.path("base.vecstore")
        try makeStore(base)
        let all = try entries(base)
        let batch = makeDocuments(30, dimension: 8, seed: 99).enumerated().map { i, d in
            Document(id: i < 15 ? "doc-\(i * 7 + 1)" : "new-\(i)", vector: d.vector, text: d.text, metadata: d.metadata)
        }
        try jsonl(batch).write(toFile: tmp.path("batch.jsonl"), atomically: true, encoding: .utf8)
        var rng = SeededRandom(seed: seed)
        var runs = 0, errors = 0, done = 0
        var failures: [String] = []
        var attempts = 0
        while done < rounds && attempts < rounds * 4 {
            attempts += 1
            let (dbName, keys) = all[Int.random(in: 0..<all.count, using: &rng)]
            let key = keys[Int.random(in: 0..<keys.count, using: &rng)]
            let kind = Damage.allCases[Int.random(in: 0..<Damage.allCases.count, using: &rng)]
            let dir = tmp.path("round-\(done)")
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let store = dir + "/s.vecstore"
            try FileManager.default.copyItem(atPath: base, toPath: store)
            guard let what = try damage(store, db: dbName, key: key, kind, &rng) else {
                try FileManager.default.removeItem(atPath: dir)
                continue
            }
            done += 1
            for command in commands(store, dir: dir) {
                runs += 1
                let r = try runGuarded(command, timeout: 30)
                let label = "round \(done) (\(what)): vecstore \(command.prefix(5).joined(separator: " "))"
                if r.timedOut {
                    failures.append("\(label): hung (killed after 30 s)")
                } else if let s = r.signal {
                    failures.append("\(label): died with signal \(s)\n\(r.output.suffix(600))")
                } else if r.status != 0 {
                    errors += 1
                    if r.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                        failures.append("\(label): exit status \(r.status) without a message")
                    }
                }
            }
            try FileManager.default.removeItem(atPath: dir)
        }
        return (done, runs, errors, failures)
    }

    @Test func damagedValuesNeverCrashTheCLI() throws {
        let env = ProcessInfo.processInfo.environment
        let rounds = env["VECSTORE_FUZZ_ROUNDS"].flatMap(Int.init) ?? 24
        let seed = env["VECSTORE_FUZZ_SEED"].flatMap(UInt64.init) ?? 20_261_130
        let result = try Self.fuzz(rounds: rounds, seed: seed)
        print("fuzz: seed \(seed), \(result.rounds) rounds, \(result.runs) command runs, \(result.errors) clean errors, \(result.failures.count) failures")
        #expect(result.rounds == rounds)
        #expect(result.failures.isEmpty, "\(result.failures.prefix(10).joined(separator: "\n"))")
    }
}
