import Foundation
import Testing
import LMDB
@testable import VecStore

@Suite("Documents: add, upsert, delete, get")
struct EngineTests {
    @Test("round trip of every field and metadata type", arguments: Metric.allCases)
    func roundTrip(metric: Metric) throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("s.vecstore"))
        let docs = makeDocuments(300, dimension: 24, seed: 7)
        let coll = try store.collection("docs", dimension: 24, metric: metric)
        try coll.add(docs)
        #expect(try coll.count() == 300)
        let got = try coll.get(ids: docs.map(\.id) + ["missing"])
        #expect(got.count == 301)
        #expect(got[300] == nil)
        for (doc, stored) in zip(docs, got) {
            let s = try #require(stored)
            #expect(s.id == doc.id)
            #expect(s.text == doc.text)
            #expect(s.metadata == doc.metadata)
            for (a, b) in zip(s.vector, doc.vector) { #expect(abs(a - b) <= 1e-5 * max(1, abs(b))) }
        }
    }

    @Test("unicode and long ids, empty metadata, reopening the store")
    func idsAndReopen() throws {
        let dir = try TempDir()
        let path = dir.path("s.vecstore")
        let longID = String(repeating: "é", count: 250)  // 500 bytes, the limit
        do {
            let store = try VecStore(path: path)
            let coll = try store.collection("c", dimension: 3, metric: .l2)
            try coll.add([Document(id: longID, vector: [1, 2, 3]), Document(id: "日本語 id", vector: [0, 0, 0])])
        }
        let reopened = try VecStore(path: path, options: StoreOptions(readOnly: true, create: false))
        let coll = try reopened.collection("c")
        #expect(coll.dimension == 3 && coll.metric == .l2)
        #expect(try coll.get(id: longID)?.vector == [1, 2, 3])
        #expect(try coll.get(id: "日本語 id")?.metadata == [:])
        #expect(throws: VecStoreError.self) { try coll.add([Document(id: "x", vector: [1, 2, 3])]) }
    }

    @Test("invalid input is rejected before anything is written")
    func validation() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("s.vecstore"))
        let coll = try store.collection("c", dimension: 2, metric: .cosine)
        try coll.add([Document(id: "a", vector: [1, 0])])
        func rejects(_ docs: [Document], _ check: (VecStoreError) -> Bool) {
            do {
                try coll.add(docs)
                Issue.record("expected an error for \(docs.map(\.id))")
            } catch {
                #expect(check(error), "unexpected error \(error)")
            }
        }
        rejects([Document(id: "b", vector: [1, 0, 0])]) { if case .dimensionMismatch = $0 { true } else { false } }
        rejects([Document(id: "b", vector: [.nan, 0])]) { if case .invalidVector = $0 { true } else { false } }
        rejects([Document(id: "b", vector: [.infinity, 0])]) { if case .invalidVector = $0 { true } else { false } }
        rejects([Document(id: "b", vector: [0, 0])]) { if case .invalidVector = $0 { true } else { false } }  // cosine zero
        rejects([Document(id: "", vector: [1, 0])]) { if case .invalidID = $0 { true } else { false } }
        rejects([Document(id: String(repeating: "x", count: 501), vector: [1, 0])]) {
            if case .invalidID = $0 { true } else { false }
        }
        rejects([Document(id: "b", vector: [1, 0]), Document(id: "b", vector: [0, 1])]) {
            if case .duplicateIDInBatch = $0 { true } else { false }
        }
        rejects([Document(id: "c", vector: [1, 1]), Document(id: "a", vector: [0, 1])]) {
            if case .idExists = $0 { true } else { false }
        }
        rejects([Document(id: "b", vector: [1, 0], metadata: ["nested": ["x": 1]])]) {
            if case .invalidMetadata = $0 { true } else { false }
        }
        // Nothing of the failed batches is stored.
        #expect(try coll.count() == 1)
        #expect(try coll.get(id: "c") == nil)
        #expect(try store.verify().isOK)
    }

    @Test("upsert replaces; delete tombstones are honoured at once")
    func upsertAndDelete() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("s.vecstore"))
        let coll = try store.collection("c", dimension: 4, metric: .dot)
        try coll.add(makeDocuments(100, dimension: 4, seed: 3))
        try coll.upsert([Document(id: "doc-5", vector: [9, 9, 9, 9], text: "new", metadata: ["category": "new"])])
        #expect(try coll.count() == 100)
        #expect(try coll.get(id: "doc-5")?.text == "new")
        let top = try coll.search([1, 1, 1, 1], k: 1)
        #expect(top.first?.id == "doc-5")
        #expect(try coll.search([1, 1, 1, 1], k: 5, filter: .field("category", .equals("new"))).map(\.id) == ["doc-5"])

        #expect(try coll.delete(ids: ["doc-5", "doc-6", "nope"]) == 2)
        #expect(try coll.count() == 98)
        #expect(try coll.get(id: "doc-5") == nil)
        let after = try coll.search([1, 1, 1, 1], k: 100)
        #expect(after.count == 98)
        #expect(!after.contains { $0.id == "doc-5" || $0.id == "doc-6" })
        #expect(try coll.search([1, 1, 1, 1], k: 5, filter: .field("category", .equals("new"))).isEmpty)
        let info = try coll.info()
        // Rows 0–99, then doc-5's replacement at row 100; dead: old doc-5 (5), doc-6 (6) and new doc-5 (100).
        #expect(info.rows == 101 && info.tombstones == 3)
        #expect(try store.verify().isOK)
    }

    @Test("collections are independent; drop removes one")
    func collections() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("s.vecstore"))
        let a = try store.collection("a", dimension: 2, metric: .l2)
        let b = try store.collection("b", dimension: 3, metric: .cosine)
        try a.add([Document(id: "x", vector: [1, 2])])
        try b.add([Document(id: "x", vector: [1, 2, 3])])
        #expect(try store.collectionNames() == ["a", "b"])
        #expect(try store.collection("a", dimension: 2, metric: .l2).count() == 1)
        #expect(throws: VecStoreError.self) { try store.collection("a", dimension: 5, metric: .l2) }
        #expect(try store.dropCollection("a"))
        #expect(try store.collectionNames() == ["b"])
        #expect(throws: VecStoreError.self) { try store.collection("a") }
        #expect(try b.get(id: "x")?.vector.count == 3)
        #expect(try store.verify().isOK)
    }

    @Test("a foreign LMDB file and a newer format are refused untouched")
    func refusesForeignFiles() throws {
        let dir = try TempDir()
        let path = dir.path("plain.txt")
        try Data("not lmdb at all".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: VecStoreError.self) { try VecStore(path: path) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data("not lmdb at all".utf8))
        #expect(throws: VecStoreError.self) { try VecStore(path: path, options: StoreOptions(readOnly: true)) }
        // Nothing is left beside a refused file: no LMDB lock file, no guard.
        let fm = FileManager.default
        #expect(!fm.fileExists(atPath: path + "-lock") && !fm.fileExists(atPath: path + "-guard"))
        do {
            _ = try VecStore(path: path)
            Issue.record("a text file opened as a store")
        } catch {
            guard case .notAVecStore = error else { Issue.record("wrong error \(error)"); return }
        }

        // A valid LMDB file of another program: refused untouched, and the side files this open created
        // are taken back (the lock file the other program made is left as it was).
        let foreign = dir.path("other.mdb")
        do {
            var options = EnvironmentOptions()
            options.maxDatabases = 4
            let env = try Environment(path: foreign, options: options)
            let db = try env.openDatabases([(name: "theirs", flags: [])], create: true)[0]
            try env.write { txn in try txn.put(db, Array("k".utf8), Array("v".utf8)) }
            env.close()
        }
        let before = try Data(contentsOf: URL(fileURLWithPath: foreign))
        #expect(throws: VecStoreError.self) { try VecStore(path: foreign) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: foreign)) == before)
        #expect(fm.fileExists(atPath: foreign + "-lock") && !fm.fileExists(atPath: foreign + "-guard"))
        try fm.removeItem(atPath: foreign + "-lock")
        #expect(throws: VecStoreError.self) { try VecStore(path: foreign, options: StoreOptions(readOnly: true)) }
        #expect(throws: VecStoreError.self) { try VecStore(path: foreign) }
        #expect(!fm.fileExists(atPath: foreign + "-lock") && !fm.fileExists(atPath: foreign + "-guard"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: foreign)) == before)
        // A directory: refused, with nothing left beside it.
        let folder = dir.path("folder")
        try fm.createDirectory(atPath: folder, withIntermediateDirectories: false)
        #expect(throws: VecStoreError.self) { try VecStore(path: folder) }
        #expect(!fm.fileExists(atPath: folder + "-lock") && !fm.fileExists(atPath: folder + "-guard"))
        #expect(throws: VecStoreError.self) {
            try VecStore(path: dir.path("absent.vecstore"), options: StoreOptions(readOnly: true, create: false))
        }
    }

    @Test("many batches grow the map past its initial size")
    func mapGrowth() throws {
        let dir = try TempDir()
        var options = StoreOptions()
        options.initialMapSize = 1 << 20  // 1 MiB: the import must grow it several times
        let store = try VecStore(path: dir.path("s.vecstore"), options: options)
        let coll = try store.collection("c", dimension: 64, metric: .l2, index: .flat)
        for batch in 0..<5 {
            try coll.add(makeDocuments(1000, dimension: 64, seed: UInt64(batch), idPrefix: "b\(batch)"))
        }
        #expect(try coll.count() == 5000)
        #expect(try store.stats().mapSize > 1 << 20)
        #expect(try store.verify().isOK)
    }
}

@Suite("Index upkeep through many small writes")
struct IndexUpkeepTests {
    /// Small batches are linked into the HNSW graph serially; nodes drawn above the current top level
    /// must become the entry point (a regression: serial inserts once left the header's max level
    /// behind, which verify reports).
    @Test("small batches of adds, upserts and deletes keep every invariant", arguments: [Metric.cosine, .l2])
    func smallBatches(metric: Metric) throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("s.vecstore"))
        let coll = try store.collection("c", dimension: 16, metric: metric)
        var rng = SeededRandom(seed: 12)
        var live = Set<String>()
        for batch in 0..<25 {
            var docs = makeDocuments(37, dimension: 16, seed: UInt64(100 + batch), idPrefix: "b\(batch)")
            if batch > 0 {
                // Replace a few earlier documents in the same batch.
                for i in 0..<3 { docs.append(Document(id: "b\(batch - 1)-\(i)", vector: rng.vector(16))) }
            }
            try coll.upsert(docs)
            live.formUnion(docs.map(\.id))
            let doomed = (0..<4).map { "b\(batch)-\($0 * 5)" }
            try coll.delete(ids: doomed)
            live.subtract(doomed)
            let report = try store.verify()
            #expect(report.isOK, "after batch \(batch): \(report.faults)")
        }
        #expect(try coll.count() == live.count)
        let hits = try coll.search(rng.vector(16), k: 10)
        #expect(hits.count == 10)
        #expect(hits.allSatisfy { live.contains($0.id) })
    }
}
