import Foundation
import LMDB
import PropertyBased
import Testing
@testable import VecStore

/// The version rule (Spec/FORMAT.md §5): read version apart from write version, declared features,
/// and codes only a newer vecstore knows reported as such, not as damage.
@Suite("Format versions and features")
struct FormatVersionTests {
    /// A store with one small collection; `edit` then changes raw meta records in one transaction.
    static func store(_ dir: TempDir, edit: ((Transaction, Database) throws -> Void)? = nil) throws -> String {
        let path = dir.path("v.vecstore")
        let s = try VecStore(path: path)
        try s.collection("c", dimension: 2, metric: .l2, index: .flat).add([Document(id: "a", vector: [1, 2])])
        if let edit {
            try s.env.write { txn in try edit(txn, s.dbs.meta) }
        }
        return path
    }

    static func isNewer(_ body: () throws -> Void) -> Bool {
        do { try body() } catch let e as VecStoreError {
            if case .newerFormat = e { return "\(e)".contains("newer vecstore") }
            return false
        } catch { return false }
        return false
    }

    @Test("a new store is byte for byte a version-2 store: read version 2, write version field 0")
    func newStoreRecord() throws {
        let dir = try TempDir()
        let path = try Self.store(dir)
        let s = try VecStore(path: path)
        let record = try s.read { txn in Array(try #require(try txn.get(s.dbs.meta, Format.formatKey))) }
        #expect(record == Array("VECSTORE".utf8) + [2, 0, 0, 0, 0, 0, 0, 0])
        #expect(try s.stats().formatVersion == 2)
    }

    @Test("a read version above this build's refuses the store as newer; a write version above it opens read-only")
    func readAndWriteVersions() throws {
        let dir = try TempDir()
        let path = try Self.store(dir) { txn, meta in
            try txn.put(meta, Format.formatKey, Format.encodeFormatRecord(readVersion: 2, writeVersion: 9))
        }
        let s = try VecStore(path: path)
        #expect(try s.collection("c").get(id: "a") != nil)
        #expect(Self.isNewer { try s.collection("c").add([Document(id: "b", vector: [0, 1])]) })
        #expect(try s.verify().isOK)

        let dir2 = try TempDir()
        let path2 = try Self.store(dir2) { txn, meta in
            try txn.put(meta, Format.formatKey, Format.encodeFormatRecord(readVersion: 4, writeVersion: 4))
        }
        #expect(Self.isNewer { _ = try VecStore(path: path2) })
        // The CLI says so too, and leaves the file alone.
        let r = try runCLI(["collections", path2])
        #expect(r.status != 0 && r.stderr.contains("newer vecstore"))
    }

    @Test("features: unknown and needed to read refuses, needed to write opens read-only, otherwise ignored with its keys")
    func features() throws {
        for (read, write) in [(true, false), (false, true), (false, false)] {
            let dir = try TempDir()
            let path = try Self.store(dir)
            let s = try VecStore(path: path)
            try s.declareFeature("shiny-index", neededToRead: read, neededToWrite: write)
            try s.env.write { txn in try txn.put(s.dbs.meta, Array("shiny-index:x".utf8), [1, 2, 3]) }
            // Declaring moved the store to version 3, so builds before the rule refuse it.
            let record = try s.read { txn in Array(try #require(try txn.get(s.dbs.meta, Format.formatKey))) }
            #expect(record[8] == 3)
            if read {
                #expect(Self.isNewer { _ = try VecStore(path: path) })
                continue
            }
            let reopened = try VecStore(path: path)
            #expect(try reopened.collection("c").count() == 1)
            let report = try reopened.verify()
            #expect(report.isOK, "\(report.faults)")
            let wrote = Result { try reopened.collection("c").add([Document(id: "b", vector: [0, 1])]) }
            if write {
                #expect(Self.isNewer { try wrote.get() })
                // Nor is it compacted: the copy would drop what the unknown feature keeps.
                #expect(Self.isNewer { try VecStore.compact(path: path) })
            } else {
                #expect((try? wrote.get()) != nil)
            }
        }
        // A feature this build implements is no obstacle (no global state is changed: tests run in parallel).
        let dir = try TempDir()
        let path = try Self.store(dir)
        try VecStore(path: path).declareFeature(EmbedderInfo.feature, neededToRead: true, neededToWrite: true)
        try VecStore(path: path).collection("c").add([Document(id: "b", vector: [0, 1])])
    }

    @Test("unknown metric, element type, flags or reserved bytes mean a newer vecstore, not damage")
    func newerCodes() throws {
        for (offset, value) in [(8, UInt8(7)), (9, UInt8(1)), (11, UInt8(4)), (20, UInt8(1))] {
            let dir = try TempDir()
            let path = try Self.store(dir) { txn, meta in
                let key = Format.collectionKey("c")
                var bytes = Array(try #require(try txn.get(meta, key)))
                bytes[offset] = value
                try txn.put(meta, key, bytes)
            }
            let s = try VecStore(path: path)
            #expect(Self.isNewer { _ = try s.collection("c").count() }, "offset \(offset)")
        }
        // The HNSW header: an unknown record version or a reserved byte.
        for (offset, value) in [(0, UInt8(2)), (13, UInt8(1)), (28, UInt8(1))] {
            let dir = try TempDir()
            let path = dir.path("h.vecstore")
            let s = try VecStore(path: path)
            let c = try s.collection("h", dimension: 2, metric: .l2)
            try c.add([Document(id: "a", vector: [1, 2])])
            try s.env.write { txn in
                let key = HNSWConfig.key(c.collectionID)
                var bytes = Array(try #require(try txn.get(s.dbs.meta, key)))
                bytes[offset] = value
                try txn.put(s.dbs.meta, key, bytes)
            }
            #expect(Self.isNewer { _ = try c.indexKind() }, "HNSW offset \(offset)")
        }
    }

    @Test("Format.declares finds exactly the names decodeFeatures finds, and never reads past a cut record")
    func declaresAgreesWithDecode() async {
        let names = Gen.element(of: ["ivf", "ivf-pq-raw", "ivf-flat16", "hnsw-tail", "a", "x-9"]).map { $0 ?? "a" }
        await propertyCheck(input: names.array(of: 0...5), names, Gen.int(in: 0...64)) { list, probe, cut in
            var seen = Set<String>()
            let features = list.filter { seen.insert($0).inserted }
                .map { Format.Feature(name: $0, neededToRead: true, neededToWrite: false) }
            let record = Format.encodeFeatures(features)
            record.withUnsafeBytes { bytes in
                #expect(Format.declares(Array(probe.utf8), in: bytes) == seen.contains(probe))
                // A record cut short: only names wholly inside the kept bytes may be found.
                let kept = UnsafeRawBufferPointer(rebasing: bytes.prefix(min(cut, bytes.count)))
                if Format.declares(Array(probe.utf8), in: kept) { #expect(seen.contains(probe)) }
            }
        }
        #expect(Format.declares(Array("ivf".utf8), in: UnsafeRawBufferPointer(start: nil, count: 0)) == false)
    }
}
