import Foundation
import Testing
@testable import VecStore

/// Processes killed with SIGKILL mid-write, and readers in another process while a writer works.
@Suite("Crash safety and concurrency", .serialized)
struct CrashTests {
    /// A JSONL file of `count` 16-d documents whose vector encodes the row (so content can be checked).
    func bigInput(_ dir: TempDir, count: Int) throws -> String {
        let path = dir.path("big.jsonl")
        var text = ""
        text.reserveCapacity(count * 160)
        for i in 0..<count {
            let v = (0..<16).map { j in String(Float(i % 1000) + Float(j) / 16) }.joined(separator: ",")
            text += #"{"id":"r\#(i)","vector":[\#(v)],"metadata":{"n":\#(i)}}"# + "\n"
        }
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Every committed batch is whole and correct; returns the document count.
    func checkStore(_ path: String, batch: Int) throws -> Int {
        let store = try VecStore(path: path)
        let report = try store.verify()
        #expect(report.isOK, "\(report.faults)")
        guard let coll = try? store.collection("c") else { return 0 }
        let count = try coll.count()
        #expect(count % batch == 0, "count \(count) is not a whole number of \(batch)-record batches")
        if count > 0 {
            let last = try #require(try coll.get(id: "r\(count - 1)"))
            #expect(last.metadata["n"] == .number(Double(count - 1)))
            #expect(abs(last.vector[3] - (Float((count - 1) % 1000) + 3.0 / 16)) < 1e-3)
            #expect(try coll.get(id: "r\(count)") == nil)
        }
        return count
    }

    @Test("SIGKILL during import leaves every committed batch and nothing else")
    func killDuringImport() throws {
        let dir = try TempDir()
        let input = try bigInput(dir, count: 60_000)
        var sawPartial = false
        for (attempt, delay) in [0.15, 0.4, 0.8].enumerated() {
            let store = dir.path("s\(attempt).vecstore")
            try killCLI(["import", store, "-c", "c", "--index", "flat", input, "--batch-size", "2000"], after: delay)
            guard FileManager.default.fileExists(atPath: store) else { continue }
            let count = try checkStore(store, batch: 2000)
            if count > 0 && count < 60_000 { sawPartial = true }
            // The store takes more writes after the crash.
            let resumed = try runCLI(["import", store, "-c", "c", "--index", "flat", input, "--batch-size", "20000"])
            #expect(resumed.status == 0, "\(resumed.stderr)")
            #expect(try VecStore(path: store).collection("c").count() == 60_000)
        }
        withKnownIssue("timing-dependent: the import may finish or not start before the kill", isIntermittent: true) {
            #expect(sawPartial)
        }
    }

    @Test("SIGKILL during an import into an HNSW collection leaves whole batches and a valid graph")
    func killDuringHNSWImport() throws {
        let dir = try TempDir()
        let input = try bigInput(dir, count: 6000)
        let store = dir.path("h.vecstore")
        try killCLI(["import", store, "-c", "c", "--index", "hnsw", input, "--batch-size", "500"], after: 1.0)
        guard FileManager.default.fileExists(atPath: store) else { return }
        _ = try checkStore(store, batch: 500)  // verify() includes the graph invariants
        let coll = try VecStore(path: store).collection("c")
        if try coll.count() > 0 {
            let hits = try coll.search(Array(repeating: 2, count: 16), k: 3)
            #expect(hits.count == 3)
        }
    }

    @Test("SIGKILL during compaction leaves the old or the new store, whole")
    func killDuringCompaction() throws {
        let dir = try TempDir()
        let input = try bigInput(dir, count: 40_000)
        for (attempt, delay) in [0.05, 0.2, 0.5, 1.0].enumerated() {
            let store = dir.path("s\(attempt).vecstore")
            #expect(try runCLI(["import", store, "-c", "c", "--index", "flat", input, "--batch-size", "10000"]).status == 0)
            // Delete the upper half so the compacted store is distinguishable from the old one. (Handles
            // are closed before each compaction: it needs the store alone.)
            do {
                let coll = try VecStore(path: store).collection("c")
                try coll.delete(ids: (20_000..<40_000).map { "r\($0)" })
            }
            try killCLI(["compact", store], after: delay)
            do {
                let reopened = try VecStore(path: store)
                #expect(try reopened.verify().isOK)
                let c = try reopened.collection("c")
                #expect(try c.count() == 20_000)
                let info = try c.info()
                #expect(info.rows == 40_000 || info.rows == 20_000, "rows \(info.rows): neither old nor new store")
                #expect(try c.get(id: "r19999")?.metadata["n"] == .number(19_999))
            }
            // Compaction can be run again to completion after the crash (leftovers are cleaned up).
            let again = try runCLI(["compact", store])
            #expect(again.status == 0, "\(again.stderr)")
            #expect(try VecStore(path: store).collection("c").info().rows == 20_000)
            #expect(!FileManager.default.fileExists(atPath: store + ".compacting"))
        }
    }

    @Test("a reader sees consistent snapshots while another process imports")
    func readerDuringImport() throws {
        let dir = try TempDir()
        let input = try bigInput(dir, count: 50_000)
        let store = dir.path("s.vecstore")
        // Create the collection first so the reader has something to open.
        let first = try runCLI(["import", store, "-c", "c", "--index", "flat", input, "--batch-size", "1000"])
        #expect(first.status == 0)
        let p = try startCLI(["import", store, "-c", "c", "--index", "flat", input, "--batch-size", "1000"])  // upserts every id again
        let reader = try VecStore(path: store, options: StoreOptions(readOnly: true, create: false))
        let coll = try reader.collection("c")
        var checks = 0
        while p.isRunning || checks < 3 {
            let info = try coll.info()
            // Upserts replace rows: live count is constant in every snapshot, rows only grow by batches.
            #expect(info.count == 50_000)
            #expect((info.rows - 50_000) % 1000 == 0, "rows \(info.rows) not a whole number of batches")
            let hits = try coll.search(Array(repeating: 1, count: 16), k: 5,
                                       filter: .field("n", .lessThan(10)))
            #expect(hits.count == 5)
            checks += 1
            if checks % 5 == 0 { #expect(try reader.verify().isOK) }
        }
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        #expect(checks > 3)
    }
}
