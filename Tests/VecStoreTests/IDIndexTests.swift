import Foundation
import LMDB
import Testing
@testable import VecStore

/// The external-id index (IDIndex.swift, Spec/FORMAT.md §8): a base B-tree plus levelled sorted runs.
/// Small thresholds (`IDRunPolicy`) put small collections through every level and merge.
@Suite("Id index")
struct IDIndexTests {
    static let dimension = 4

    /// Random-looking ids (hex of a seeded generator), so batches land all over the key space.
    static func documents(_ count: Int, _ rng: inout SeededRandom, prefix: String = "", dimension: Int = dimension)
        -> [Document]
    {
        (0..<count).map { _ in
            Document(id: prefix + String(rng.next(), radix: 16), vector: rng.vector(dimension))
        }
    }

    /// Writes `docs` through the collection writer with `policy`.
    static func write(_ store: VecStore, _ c: VectorCollection, _ docs: [Document], replace: Bool = false,
                      policy: IDRunPolicy, writesIDs: Bool = true) throws
    {
        let prepared = try c.prepare(docs)
        try store.write { txn in
            var writer = try CollectionWriter(txn, store.dbs, name: c.name, record: try c.currentRecord(txn))
            writer.ids.policy = policy
            writer.writesIDs = writesIDs
            try writer.append(prepared, replace: replace)
            try writer.finish()
        }
    }

    /// Writes `batches` batches of `size` new documents with `policy`; returns them all in order.
    static func writeBatches(_ batches: Int, of size: Int, _ store: VecStore, _ c: VectorCollection,
                             _ rng: inout SeededRandom, policy: IDRunPolicy) throws -> [Document]
    {
        var all: [Document] = []
        for _ in 0..<batches {
            let docs = documents(size, &rng)
            all += docs
            try write(store, c, docs, policy: policy)
        }
        return all
    }

    /// Where each id lives, read in one snapshot.
    static func places(_ store: VecStore, _ c: VectorCollection, _ ids: [String]) throws -> [IDIndex.Place?] {
        try store.read { txn in
            let index = try IDIndex(txn, store.dbs, try c.currentRecord(txn), name: c.name)
            return try ids.map { try index.lookup($0)?.place }
        }
    }

    @Test("a batch goes to the base or level 0, and full levels merge as the policy says")
    func mergeBoundaries() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("m.vecstore"))
        let c = try store.collection("c", dimension: Self.dimension, metric: .l2, index: .flat)
        let policy = IDRunPolicy(smallBase: 4, levelZero: 4)
        var rng = SeededRandom(seed: 3)
        // Batches of 3. 1: base (3 ≤ 4). 2: base (the batch is as large as the base). 3: level 0.
        // 4: level 0 holds 6 > 4, merges into level 1, which holds as many as the base (6): into the base.
        // 5: level 0. 6: level 0 into level 1 (6 < base 12). 7: level 0. 8: levels 0 and 1 into level 2
        // (12 ≥ base 12): into the base.
        let expected: [[Int]] = [[], [], [3], [], [3], [0, 6], [3, 6], []]
        var all: [Document] = []
        for (batch, levels) in expected.enumerated() {
            let docs = Self.documents(3, &rng)
            all += docs
            try Self.write(store, c, docs, policy: policy)
            #expect(try c.info().idRuns == levels, "after batch \(batch + 1)")
        }
        #expect(try Self.places(store, c, all.map(\.id)).allSatisfy { $0 == .base })
        #expect(try c.get(ids: all.map(\.id)).map { $0?.id } == all.map(\.id))
        #expect(try store.verify().isOK)
    }

    @Test("lookups, upserts, deletes and duplicates work in every place")
    func everyPlace() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("p.vecstore"))
        let c = try store.collection("c", dimension: Self.dimension, metric: .l2, index: .flat)
        let policy = IDRunPolicy(smallBase: 8, levelZero: 8)
        var rng = SeededRandom(seed: 5)
        let all = try Self.writeBatches(13, of: 5, store, c, &rng, policy: policy)
        let runs = try c.info().idRuns
        #expect(runs.filter { $0 > 0 }.count >= 2, "levels \(runs)")
        let places = try Self.places(store, c, all.map(\.id))
        #expect(places.allSatisfy { $0 != nil })
        let distinct = Set(places.compactMap { $0.map { "\($0)" } })
        #expect(distinct.contains("the base") && distinct.count >= 3, "\(distinct)")
        // One id from each place: get, add again (refused), upsert (stays where it was), delete.
        var chosen: [Int] = []
        for p in distinct.sorted() { if let i = places.firstIndex(where: { $0.map { "\($0)" } == p }) { chosen.append(i) } }
        for i in chosen {
            let doc = all[i]
            #expect(try c.get(id: doc.id)?.vector == doc.vector)
            #expect(try c.search(similarTo: doc.id, k: 3).count == 3)
            let again = Result { () throws(VecStoreError) -> Void in try c.add([doc]) }
            guard case .failure(.idExists(let id)) = again, id == doc.id else {
                Issue.record("adding stored id \(doc.id) again gave \(again)")
                continue
            }
            let moved = Document(id: doc.id, vector: rng.vector(Self.dimension))
            try Self.write(store, c, [moved], replace: true, policy: policy)
            #expect(try Self.places(store, c, [doc.id])[0] == places[i])
            #expect(try c.get(id: doc.id)?.vector == moved.vector)
        }
        #expect(try store.verify().isOK)
        let doomed = chosen.map { all[$0].id }
        #expect(try c.delete(ids: doomed + ["never-stored"]) == doomed.count)
        #expect(try c.get(ids: doomed).allSatisfy { $0 == nil })
        #expect(try c.count() == all.count - doomed.count)
        #expect(try store.verify().isOK)
        // Deleted ids come back as new ids; the levels' counts stay consistent (verify checks them).
        try Self.write(store, c, doomed.map { Document(id: $0, vector: rng.vector(Self.dimension)) }, policy: policy)
        #expect(try c.count() == all.count)
        #expect(try store.verify().isOK)
        // The import path (default policy) finds ids in runs too.
        var options = ImportOptions()
        options.index = .flat
        options.metric = .l2
        let lines = all.prefix(3).map { d in
            "{\"id\":\"\(d.id)\",\"vector\":[\(d.vector.map { "\($0)" }.joined(separator: ","))]}"
        }
        let file = dir.path("again.jsonl")
        try lines.joined(separator: "\n").write(toFile: file, atomically: true, encoding: .utf8)
        var reader = AnyRecordReader(try VecStore.reader(for: file, options: options))
        _ = try store.importRecords(from: &reader, into: "c", options: options)
        #expect(try c.count() == all.count)
        #expect(try store.verify().isOK)
    }

    /// Bytes this thread wrote, as WriteCostTests measures them.
    static func written(_ body: () throws -> Void) rethrows -> Int? {
        let before = WriteCostTests.threadWriteBytes()
        try body()
        guard let before, let after = WriteCostTests.threadWriteBytes() else { return nil }
        return after - before
    }

    @Test("random-id batches into a growing collection write id pages in proportion to the batch")
    func writeCostFollowsTheBatch() throws {
        let dir = try TempDir()
        // The same rows in the same batches: ids in runs (levelZero 2,000), ids in the base alone, and no
        // ids at all (what the rest of each batch writes, subtracted from the other two).
        let policies = [("runs", IDRunPolicy(smallBase: 2_000, levelZero: 2_000), true),
                        ("base", IDRunPolicy(smallBase: .max, levelZero: .max), true),
                        ("none", IDRunPolicy(), false)]
        var late: [String: Int] = [:], early: [String: Int] = [:]
        let batch = 500, batches = 80, window = 20
        for (label, policy, writesIDs) in policies {
            let store = try VecStore(path: dir.path("\(label).vecstore"))
            let c = try store.collection("c", dimension: Self.dimension, metric: .l2, index: .flat)
            var rng = SeededRandom(seed: 17)
            for b in 0..<batches {
                let docs = Self.documents(batch, &rng, prefix: "some-longer-external-id-")
                guard let bytes = try Self.written({ try Self.write(store, c, docs, policy: policy, writesIDs: writesIDs) })
                else { return }
                if (10..<10 + window).contains(b) { early[label, default: 0] += bytes }
                if b >= batches - window { late[label, default: 0] += bytes }
            }
            if writesIDs { #expect(try store.verify().isOK) }
        }
        // Id bytes per id written, over batches 10–30 (into 5,000–15,000 ids) and the last 20 (into
        // 30,000–40,000).
        func perID(_ totals: [String: Int], _ label: String) -> Double {
            Double((totals[label] ?? 0) - (totals["none"] ?? 0)) / Double(window * batch)
        }
        let runsEarly = perID(early, "runs"), runsLate = perID(late, "runs"), baseLate = perID(late, "base")
        print(String(format: "id bytes written per id: runs %.0f (batches 10-30), %.0f (last 20); base alone %.0f, %.0f",
                     runsEarly, runsLate, perID(early, "base"), baseLate))
        // Random ids into one B-tree of many leaves dirty about a page each; in runs each id is written
        // about once per level (some 60 bytes a time), so its cost stays a fraction of a page and grows
        // only with the number of levels.
        #expect(baseLate >= 2_000, "base alone: \(baseLate) bytes per id")
        #expect(runsLate <= 1_000 && runsLate * 3 <= baseLate, "runs: \(runsLate) bytes per id, base alone \(baseLate)")
        // (A window that holds a merge into the base costs more than one that does not: the bound is loose.)
        #expect(runsLate <= 2.5 * max(runsEarly, 100), "runs: \(runsEarly) bytes per id early, \(runsLate) late")
    }

    @Test("verify finds an id in two places, an id missing, and a level count that disagrees")
    func verifyFindsDamage() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("v.vecstore"))
        let c = try store.collection("c", dimension: Self.dimension, metric: .l2, index: .flat)
        let policy = IDRunPolicy(smallBase: 8, levelZero: 8)
        var rng = SeededRandom(seed: 9)
        let all = try Self.writeBatches(6, of: 5, store, c, &rng, policy: policy)
        #expect(try store.verify().isOK)
        let places = try Self.places(store, c, all.map(\.id))
        guard let inRun = places.firstIndex(where: { if case .run = $0 { true } else { false } }),
              case .run(let level) = places[inRun] ?? .base
        else {
            Issue.record("no id in a run: \(places)")
            return
        }
        let id = Array(all[inRun].id.utf8)
        let runKey = Format.prefix(c.collectionID) + [UInt8(level)] + id
        let runsDB = try #require(store.dbs.handle(Format.DB.idruns))
        // The id also in the base: in two places.
        let row = try #require(try store.read { txn in try txn.get(runsDB, runKey).map { Array($0) } })
        try store.write { txn in try txn.put(store.dbs.ids, Format.prefix(c.collectionID) + id, row) }
        var faults = try store.verify().faults
        #expect(faults.contains { $0.contains("is in 2 places") }, "\(faults)")
        try store.write { txn in _ = try txn.delete(store.dbs.ids, Format.prefix(c.collectionID) + id) }
        #expect(try store.verify().isOK)
        // The id gone from its run: missing, and the level holds one fewer than recorded.
        try store.write { txn in _ = try txn.delete(runsDB, runKey) }
        faults = try store.verify().faults
        #expect(faults.contains { $0.contains("missing from the id map") }, "\(faults)")
        #expect(faults.contains { $0.contains("id run level \(level) holds") }, "\(faults)")
    }

    @Test("a damaged run record or run value is a corrupt store, never a crash; an unknown version is newer")
    func damagedRecord() throws {
        let dir = try TempDir()
        let path = dir.path("d.vecstore")
        let store = try VecStore(path: path)
        let c = try store.collection("c", dimension: Self.dimension, metric: .l2, index: .flat)
        let policy = IDRunPolicy(smallBase: 4, levelZero: 100)
        var rng = SeededRandom(seed: 13)
        // 4 ids into the base (≤ smallBase), then 3 into level 0.
        let first = Self.documents(4, &rng), second = Self.documents(3, &rng)
        try Self.write(store, c, first, policy: policy)
        try Self.write(store, c, second, policy: policy)
        #expect(try c.info().idRuns == [3])
        let key = IDIndex.recordKey(c.collectionID)
        let good = try #require(try store.read { txn in try txn.get(store.dbs.meta, key).map { Array($0) } })
        func put(_ bytes: [UInt8]) throws { try store.write { txn in try txn.put(store.dbs.meta, key, bytes) } }
        let damaged: [(String, [UInt8])] = [
            ("too short", [1, 1]),
            ("no levels", [1, 0, 0, 0]),
            ("33 levels", [1, 33, 0, 0] + [UInt8](repeating: 0, count: 132)),
            ("length", good + [0]),
            ("counts above the live documents", [1, 1, 0, 0, 0xFF, 0xFF, 0, 0]),
            ("an empty last level", [1, 2, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]),
        ]
        for (what, bytes) in damaged {
            try put(bytes)
            for (op, outcome) in [
                ("get", Result { () throws(VecStoreError) -> Void in _ = try c.get(id: second[0].id) }),
                ("add", Result { () throws(VecStoreError) -> Void in try c.add(Self.documents(1, &rng)) }),
                ("delete", Result { () throws(VecStoreError) -> Void in _ = try c.delete(ids: [first[0].id]) }),
            ] {
                guard case .failure(.corrupt) = outcome else {
                    Issue.record("\(what): \(op) gave \(outcome), not corrupt")
                    continue
                }
            }
            #expect(!(try store.verify().isOK), "\(what)")
        }
        try put([2] + good.dropFirst())
        guard case .failure(.newerFormat) = Result(catching: { () throws(VecStoreError) -> Document? in try c.get(id: second[0].id) }) else {
            Issue.record("record version 2 is not reported as a newer format")
            return
        }
        try put(good)
        // A run value of 3 bytes, and one pointing past the rows.
        let runsDB = try #require(store.dbs.handle(Format.DB.idruns))
        let runKey = Format.prefix(c.collectionID) + [0] + Array(second[1].id.utf8)
        for bad: [UInt8] in [[1, 0, 0], [0xFF, 0xFF, 0, 0]] {
            try store.write { txn in try txn.put(runsDB, runKey, bad) }
            guard case .failure(.corrupt) = Result(catching: { () throws(VecStoreError) -> Document? in try c.get(id: second[1].id) }) else {
                Issue.record("run value \(bad) is not reported as corrupt")
                continue
            }
            #expect(!(try store.verify().isOK))
        }
    }

    @Test("a store written before runs existed reads unchanged and gets runs (and the feature) on its next write")
    func oldStoreGetsRuns() throws {
        let dir = try TempDir()
        let path = try FixtureTests.copy("v2", into: dir)
        let store = try VecStore(path: path)
        let c = try store.collection("points")
        var before: [String] = []
        try c.forEachBatch { batch in before += batch.map(\.id) }
        #expect(try c.info().idRuns.isEmpty)
        #expect(try c.get(ids: before).allSatisfy { $0 != nil })
        var rng = SeededRandom(seed: 21)
        let docs = Self.documents(20, &rng, prefix: "new-", dimension: c.dimension)
        try Self.write(store, c, docs, policy: IDRunPolicy(smallBase: 8, levelZero: 1_000))
        #expect(try c.info().idRuns == [20])
        let features = try store.read { txn in
            try txn.get(store.dbs.meta, Format.featuresKey).map { try Format.decodeFeatures($0) } ?? []
        }
        #expect(features.contains(Format.Feature(name: IDIndex.feature, neededToRead: true, neededToWrite: true)))
        #expect(try c.get(ids: before + docs.map(\.id)).allSatisfy { $0 != nil })
        #expect(try store.verify().isOK)
    }

    @Test("compaction writes ids as one sorted base and no runs")
    func compactionMergesRuns() throws {
        let dir = try TempDir()
        let path = dir.path("c.vecstore")
        var rng = SeededRandom(seed: 29)
        var all: [Document] = []
        do {
            let store = try VecStore(path: path)
            for name in ["a", "b"] {
                let c = try store.collection(name, dimension: Self.dimension, metric: .l2, index: .flat)
                for _ in 0..<9 {
                    let docs = Self.documents(7, &rng, prefix: name)
                    if name == "b" { all += docs }
                    try Self.write(store, c, docs, policy: IDRunPolicy(smallBase: 8, levelZero: 8))
                }
                #expect(!(try c.info().idRuns.isEmpty))
            }
            _ = try store.collection("b").delete(ids: [all[0].id, all[40].id])
            all.remove(at: 40)
            all.remove(at: 0)
            store.close()
        }
        try VecStore.compact(path: path)
        let store = try VecStore(path: path)
        let b = try store.collection("b")
        #expect(try b.info().idRuns.isEmpty)
        #expect(try store.collection("a").info().idRuns.isEmpty)
        #expect(try b.get(ids: all.map(\.id)).map { $0?.id } == all.map(\.id))
        #expect(try store.verify().isOK)
        let runsDB = try #require(store.dbs.handle(Format.DB.idruns))
        #expect(try store.read { txn in try txn.stats(runsDB).entries } == 0)
    }

    @Test("an id added twice by an internal caller is duplicateIDInBatch, in the base and in level 0, and writes nothing")
    func internalDuplicate() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("d.vecstore"))
        let c = try store.collection("c", dimension: Self.dimension, metric: .l2, index: .flat)
        var rng = SeededRandom(seed: 37)
        let policy = IDRunPolicy(smallBase: 4, levelZero: 100)
        for intoRuns in [false, true] {
            if intoRuns { try Self.write(store, c, Self.documents(6, &rng), policy: policy) }  // the next batch: level 0
            let before = try c.count(), runsBefore = try c.info().idRuns
            let docs = Self.documents(3, &rng)
            let twin = Document(id: docs[1].id, vector: rng.vector(Self.dimension))
            // Each half passes `prepare`'s own check; together they name docs[1] twice, in one append or two.
            let first = try c.prepare(docs), second = try c.prepare([twin])
            for prepared in [[first + second], [first, second]] {
                let error = #expect(throws: VecStoreError.self) {
                    try store.write { txn in
                        var writer = try CollectionWriter(txn, store.dbs, name: c.name, record: try c.currentRecord(txn))
                        writer.ids.policy = policy
                        for batch in prepared { try writer.append(batch, replace: false) }
                        try writer.finish()
                    }
                }
                guard case .duplicateIDInBatch(let id) = error else {
                    Issue.record("expected duplicateIDInBatch, got \(String(describing: error))")
                    continue
                }
                #expect(id == docs[1].id)
                #expect(try c.count() == before && c.info().idRuns == runsBefore)
                #expect(try c.get(id: docs[0].id) == nil)
            }
        }
        #expect(try store.verify().isOK)
    }

    @Test("vecstore stats prints each collection's id runs per level, and no line once compaction folds them")
    func statsShowsRuns() throws {
        let dir = try TempDir()
        let path = dir.path("s.vecstore")
        var rng = SeededRandom(seed: 31)
        var expected: [String: [Int]] = [:]
        do {
            let store = try VecStore(path: path)
            // "a": batches of 3 with levels of 4 (mergeBoundaries' sequence, after 7 batches [3, 6]); "b": one
            // batch, into the base, no runs; "c": two batches into the base, two into level 0.
            for (name, batches, size, levelZero) in [("a", 7, 3, 4), ("b", 1, 5, 4), ("c", 4, 5, 40)] {
                let c = try store.collection(name, dimension: Self.dimension, metric: .l2, index: .flat)
                for _ in 0..<batches {
                    try Self.write(store, c, Self.documents(size, &rng, prefix: name),
                                   policy: IDRunPolicy(smallBase: 4, levelZero: levelZero))
                }
                expected[name] = try c.info().idRuns
            }
            store.close()
        }
        #expect(expected == ["a": [3, 6], "b": [], "c": [10]], "the setup: \(expected)")
        let stats = try runCLI(["stats", path])
        #expect(stats.status == 0, "\(stats.stderr)")
        let lines = stats.stdout.split(separator: "\n").filter { $0.hasPrefix("id runs") }.map(String.init)
        #expect(lines == [
            "id runs    a: 9 of 21 ids in runs (per level: 3, 6); the rest in the base",
            "id runs    c: 10 of 20 ids in runs (per level: 10); the rest in the base",
        ], "\(stats.stdout)")
        let compact = try runCLI(["compact", path])
        #expect(compact.status == 0, "\(compact.stderr)")
        let after = try runCLI(["stats", path])
        #expect(after.status == 0 && after.stdout.contains("documents"), "\(after.stderr)")
        #expect(!after.stdout.contains("id runs"), "\(after.stdout)")
    }

    @Test("compaction refuses an id index in which two ids name one row (it would copy the damage)")
    func compactionRefusesSharedRow() throws {
        let dir = try TempDir()
        let path = dir.path("s.vecstore")
        var rng = SeededRandom(seed: 31)
        let docs = Self.documents(12, &rng)
        do {
            let store = try VecStore(path: path)
            let c = try store.collection("c", dimension: Self.dimension, metric: .l2, index: .flat)
            try Self.write(store, c, docs, policy: IDRunPolicy(smallBase: 100, levelZero: 100))
            // docs[0]'s id entry now names docs[1]'s row: as many entries as documents, one row named twice.
            let key0 = Format.prefix(c.collectionID) + Array(docs[0].id.utf8)
            let key1 = Format.prefix(c.collectionID) + Array(docs[1].id.utf8)
            let row1 = try #require(try store.read { txn in try txn.get(store.dbs.ids, key1).map { Array($0) } })
            try store.write { txn in try txn.put(store.dbs.ids, key0, row1) }
            #expect(!(try store.verify().isOK))
            store.close()
        }
        guard case .failure(.corrupt) = Result(catching: { () throws(VecStoreError) -> Void in
            _ = try VecStore.compact(path: path)
        }) else {
            Issue.record("compaction copied an id index naming one row twice")
            return
        }
    }
}
