import Foundation
import Testing
@testable import VecStore

#if canImport(Glibc)
import Glibc
#endif

/// Processes around compaction, map growth under readers, full disks and concurrent importers.
@Suite(.serialized) struct ReliabilityTests {
    func input(_ dir: TempDir, _ name: String, ids: Range<Int>, dimension: Int = 8, seed: UInt64 = 1) throws -> String {
        let docs = makeDocuments(ids.count, dimension: dimension, seed: seed).enumerated().map { i, d in
            Document(id: "r\(ids.lowerBound + i)", vector: d.vector, text: d.text, metadata: d.metadata)
        }
        let path = dir.path(name)
        try jsonl(docs).write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("an open waiting for a compaction of one store does not hold up opens of another store")
    func waitingOpenDoesNotBlockOthers() throws {
        let dir = try TempDir()
        let a = dir.path("a.vecstore"), b = dir.path("b.vecstore")
        try VecStore(path: a).close()
        // Another process holds a's guard exclusively, as a compaction does, for 3 s.
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
        holder.arguments = ["-x", VecStore.guardPath(a), "sleep", "3"]
        try holder.run()
        defer { holder.waitUntilExit() }
        usleep(300_000)
        let done = DispatchSemaphore(value: 0)
        let waiting = Thread {
            var options = StoreOptions()
            options.compactionWait = 5
            _ = try? VecStore(path: a, options: options)
            done.signal()
        }
        waiting.start()
        usleep(200_000)
        let started = Date()
        try VecStore(path: b).close()
        #expect(Date().timeIntervalSince(started) < 1.5, "opening b waited for a's compaction")
        done.wait()
    }

    @Test("a damaged next-collection-id that names an existing collection is refused and reported, never reused")
    func damagedCollectionCounter() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("n.vecstore"))
        let a = try store.collection("a", dimension: 4, index: .flat)
        try a.upsert([Document(id: "x", vector: [1, 0, 0, 0])])
        #expect(try store.verify().isOK)
        // Roll the counter back onto collection a's id.
        try store.write { txn in try txn.put(store.dbs.meta, Format.nextCollectionKey, Format.encodeInternalID(a.collectionID)) }
        let report = try store.verify()
        #expect(report.faults.contains { $0.contains("next-collection-id") }, "\(report.faults)")
        #expect(throws: VecStoreError.self) { _ = try store.collection("b", dimension: 4, index: .flat) }
        #expect(try store.collectionNames() == ["a"])
        #expect(try a.get(id: "x") != nil)
    }

    @Test("a reader holding the store open makes a compaction in another process fail cleanly, not race")
    func readerAcrossCompaction() throws {
        let dir = try TempDir()
        let store = dir.path("s.vecstore")
        #expect(try runCLI(["import", store, "-c", "c", try input(dir, "a.jsonl", ids: 0..<3000)]).status == 0)
        #expect(try runCLI(["delete", store, "-c", "c", "r1", "r2", "r3"]).status == 0)
        do {
            let reader = try VecStore(path: store, options: StoreOptions(readOnly: true))
            let c = try reader.collection("c")
            let query = makeDocuments(1, dimension: 8, seed: 5)[0].vector
            let expected = try c.search(query, k: 5).map(\.id)
            let done = SharedBox(false)
            let failures = SharedBox(0)
            let thread = Thread {
                while !done.value {
                    do {
                        if try c.count() != 2997 || (try c.search(query, k: 5).map(\.id)) != expected { failures.add(1) }
                    } catch { failures.add(1) }
                }
            }
            thread.start()
            let r = try runCLI(["compact", store])
            done.value = true
            while !thread.isFinished { usleep(1000) }
            #expect(r.status == 7, "\(r.stderr)")
            #expect(r.stderr.contains("open in another process"))
            #expect(failures.value == 0)
            #expect(try c.info().rows == 3000)
        }
        // Closed: now the compaction runs, and leaves nothing behind.
        let r = try runCLI(["compact", store])
        #expect(r.status == 0, "\(r.stderr)")
        let after = try VecStore(path: store, options: StoreOptions(readOnly: true)).collection("c")
        #expect(try after.count() == 2997 && after.info().rows == 2997)
        #expect(!FileManager.default.fileExists(atPath: store + ".compacting"))
    }

    @Test("opens racing compactions always see a whole store; two compactions at once never both run")
    func openRacingRename() throws {
        let dir = try TempDir()
        let store = dir.path("s.vecstore")
        #expect(try runCLI(["import", store, "-c", "c", "--index", "flat", try input(dir, "a.jsonl", ids: 0..<4000)]).status == 0)
        var succeeded = 0, busy = 0, opens = 0
        for round in 0..<4 {
            // Two compactions at once, and this process opening and reading meanwhile.
            let p1 = try startCLI(["compact", store]), p2 = try startCLI(["compact", store])
            while p1.isRunning || p2.isRunning {
                if let n = try countUnlessBusy(store) {
                    #expect(n == 4000, "round \(round)")
                    opens += 1
                }
                usleep(UInt32(2_000 + round * 3_000))
            }
            for p in [p1, p2] {
                #expect(p.terminationReason == .exit)
                if p.terminationStatus == 0 { succeeded += 1 } else {
                    #expect(p.terminationStatus == 7)
                    busy += 1
                }
            }
            let v = try runCLI(["verify", store])
            #expect(v.status == 0, "\(v.stdout)")
        }
        #expect(succeeded >= 1 && succeeded + busy == 8)
        #expect(opens > 0)
        #expect(!FileManager.default.fileExists(atPath: store + ".compacting"))
    }

    /// The document count of collection `c`, or nil when the open reports the store busy.
    func countUnlessBusy(_ store: String) throws -> Int? {
        let s: VecStore
        do {
            s = try VecStore(path: store, options: StoreOptions(readOnly: true))
        } catch {
            if case .busy = error { return nil }
            throw error
        }
        return try s.collection("c").count()
    }

    @Test("the map grows while readers run; a write inside a read closure fails clearly instead of hanging")
    func mapGrowthWithReaders() throws {
        let dir = try TempDir()
        var options = StoreOptions()
        options.initialMapSize = 1 << 20
        let store = try VecStore(path: dir.path("g.vecstore"), options: options)
        let c = try store.collection("c", dimension: 32, metric: .l2, index: .flat)
        try c.add(makeDocuments(200, dimension: 32, seed: 3))
        let done = SharedBox(false)
        let reads = SharedBox(0), failures = SharedBox(0)
        let readers = (0..<2).map { _ in
            Thread {
                let q = [Float](repeating: 0.1, count: 32)
                while !done.value {
                    do {
                        if try c.search(q, k: 3).count != 3 { failures.add(1) }
                        reads.add(1)
                    } catch { failures.add(1) }
                }
            }
        }
        readers.forEach { $0.start() }
        let before = try store.stats().mapSize
        for b in 0..<15 { try c.add(makeDocuments(400, dimension: 32, seed: 100 + UInt64(b), idPrefix: "b\(b)")) }
        done.value = true
        while readers.contains(where: { !$0.isFinished }) { usleep(1000) }
        #expect(try store.stats().mapSize > before)
        #expect(failures.value == 0 && reads.value > 0)
        // A write from inside a read closure: works, or (when the map must grow) a clear error.
        var outcome = "not run"
        try c.forEachBatch(batchSize: 50) { _ in
            guard outcome == "not run" else { return }
            do {
                try c.add(makeDocuments(3000, dimension: 32, seed: 7, idPrefix: "inner"))
                outcome = "ok"
            } catch {
                outcome = "\(error)"
            }
        }
        #expect(outcome == "ok" || outcome.contains("inside another transaction"), "\(outcome)")
        #expect(try store.verify().isOK)
    }

    @Test("import and compaction against the file-size limit stop with a disk-full message; the store stays whole")
    func fileSizeLimit() throws {
        let dir = try TempDir()
        let store = dir.path("f.vecstore")
        let big = try input(dir, "big.jsonl", ids: 0..<20_000, dimension: 64)
        // 12 MiB limit (ulimit -f counts 1 KiB blocks): a few batches fit, the rest does not.
        let r = try runShell("ulimit -f 12288; exec \"$0\" import \"$1\" -c c --index flat \"$2\" --batch-size 2000",
                             [vecstoreBinary, store, big])
        #expect(r.status == 6, "\(r.stderr)")
        #expect(r.stderr.contains("disk full"), "\(r.stderr)")
        #expect(!r.stderr.contains("--skip-invalid"))
        let s = try VecStore(path: store, options: StoreOptions(readOnly: true))
        #expect(try s.verify().isOK)
        let n = try s.collection("c").count()
        #expect(n > 0 && n < 20_000 && n % 2000 == 0, "\(n) documents: not whole batches")
        s.close()
        let sizeBefore = try FileManager.default.attributesOfItem(atPath: store)[.size] as? Int
        let compacted = try runShell("ulimit -f 4096; exec \"$0\" compact \"$1\"", [vecstoreBinary, store])
        #expect(compacted.status == 6, "\(compacted.stderr)")
        #expect(compacted.stderr.contains("disk full"), "\(compacted.stderr)")
        #expect(try FileManager.default.attributesOfItem(atPath: store)[.size] as? Int == sizeBefore)
        #expect(!FileManager.default.fileExists(atPath: store + ".compacting"))
        #expect(!FileManager.default.fileExists(atPath: store + ".compacting-lock"))
        #expect(try runCLI(["verify", store]).status == 0)
    }

    @Test("processes creating the same new store at once all succeed (none sees the half-created file as foreign)")
    func concurrentCreation() throws {
        // The creating process commits its databases before its format record; an opener in between used
        // to refuse the file as "not a vecstore store" (3 of 150 processes in a shell loop).
        let samples = packageRoot.appendingPathComponent("Samples/docs.jsonl").path
        for round in 0..<8 {
            let dir = try TempDir()
            let store = dir.path("new.vecstore")
            let pipes = (0..<6).map { _ in Pipe() }
            let processes = try pipes.map { pipe in
                try startCLI(["import", store, "-c", "c", samples, "--batch-size", "50"], output: pipe)
            }
            for (p, pipe) in zip(processes, pipes) {
                let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                p.waitUntilExit()
                #expect(p.terminationStatus == 0, "round \(round): \(output)")
            }
            #expect(try runCLI(["verify", store]).status == 0)
        }
    }

    @Test("a failed import takes back only an empty store nobody else has open")
    func removeIfEmpty() throws {
        let dir = try TempDir()
        let store = dir.path("s.vecstore")
        let held = try VecStore(path: store)
        #expect(!VecStore.removeIfEmpty(path: store), "another handle has it open")
        held.close()
        let other = try startCLI(["import", store, "-c", "c",
                               packageRoot.appendingPathComponent("Samples/docs.jsonl").path], output: Pipe())
        other.waitUntilExit()
        #expect(other.terminationStatus == 0)
        #expect(!VecStore.removeIfEmpty(path: store), "it holds a collection now")
        #expect(FileManager.default.fileExists(atPath: store))

        let empty = dir.path("empty.vecstore")
        try VecStore(path: empty).close()
        #expect(VecStore.removeIfEmpty(path: empty))
        for suffix in ["", "-lock", "-guard"] { #expect(!FileManager.default.fileExists(atPath: empty + suffix)) }
        // A later open creates a fresh store at the path.
        let again = try VecStore(path: empty)
        #expect(try again.collectionNames().isEmpty)
        again.close()
    }

    @Test("several processes import into one new collection: nothing lost or duplicated, one creates it")
    func concurrentImporters() throws {
        let dir = try TempDir()
        let store = dir.path("w.vecstore")
        // Three importers: two with their own ids, all three sharing r9000..<9500 (upserts).
        let files = [try input(dir, "0.jsonl", ids: 0..<3000, seed: 1),
                     try input(dir, "1.jsonl", ids: 3000..<6000, seed: 2),
                     try input(dir, "2.jsonl", ids: 9000..<9500, seed: 3)]
        let shared = try input(dir, "s.jsonl", ids: 9000..<9500, seed: 4)
        let pipes = files.indices.map { _ in Pipe() }
        let processes = try files.indices.map { i in
            try startCLI(["import", store, "-c", "c", files[i], shared, "--batch-size", "250"], output: pipes[i])
        }
        var outputs: [String] = []
        for (p, pipe) in zip(processes, pipes) {
            outputs.append(String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
            p.waitUntilExit()
            #expect(p.terminationStatus == 0, "\(outputs.last ?? "")")
        }
        let created = outputs.map { $0.components(separatedBy: "(new collection)").count - 1 }.reduce(0, +)
        #expect(created == 1, "\(outputs)")
        let s = try VecStore(path: store, options: StoreOptions(readOnly: true))
        let c = try s.collection("c")
        #expect(try c.count() == 6500)
        #expect(try s.verify().isOK)
        for id in ["r0", "r2999", "r3000", "r5999", "r9000", "r9499"] { #expect(try c.get(id: id) != nil) }
    }
}

/// A lock-protected value shared with test threads.
final class SharedBox<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); stored = newValue; lock.unlock() }
    }
}

extension SharedBox where T == Int {
    func add(_ n: Int) {
        lock.lock()
        stored += n
        lock.unlock()
    }
}
