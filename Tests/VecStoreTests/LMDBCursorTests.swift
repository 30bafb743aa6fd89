import Foundation
@testable import LMDB
import Testing

/// `Transaction.deletePrefix` against a model of the database: prefixes whose entries fill whole leaf
/// pages, end on a page's last entry, hold one entry, overflow pages, or every entry of the database.
@Suite("LMDB cursor walks")
struct LMDBCursorTests {
    /// A key: one byte of group, then the row in big-endian (so keys sort by group, then row).
    static func key(_ group: UInt8, _ row: Int) -> [UInt8] {
        [group] + withUnsafeBytes(of: UInt32(row).bigEndian) { Array($0) }
    }

    /// Every entry of `db`, in key order (each value of a dupSort key).
    static func entries(_ env: Environment, _ db: Database) throws -> [[UInt8]: [[UInt8]]] {
        try env.read { txn in
            var all: [[UInt8]: [[UInt8]]] = [:]
            try txn.withCursor(db) { (c: Cursor) throws -> Void in
                var e = try c.first()
                while let (k, v) = e {
                    all[Array(k), default: []].append(Array(v))
                    e = try c.next()
                }
            }
            return all
        }
    }

    /// Opens a fresh environment with one database of `flags`.
    static func open(_ dir: TempDir, _ flags: DatabaseFlags) throws -> (Environment, Database) {
        let env = try Environment(path: dir.path("t.mdb"))
        return (env, try env.openDatabases([("t", flags)], create: true)[0])
    }

    /// Writes every value of `model`, then checks the database reads back as `model`.
    static func store(_ env: Environment, _ db: Database, _ model: [[UInt8]: [[UInt8]]],
                      sourceLocation: Testing.SourceLocation = #_sourceLocation) throws {
        try env.write { txn in
            for (k, values) in model { for v in values { try txn.put(db, k, v) } }
        }
        #expect(try entries(env, db) == model, sourceLocation: sourceLocation)
    }

    /// Deletes `prefix` from both the database and the model, then checks they agree (entry count too).
    static func deleteAndCheck(_ env: Environment, _ db: Database, _ model: inout [[UInt8]: [[UInt8]]],
                               _ prefix: [UInt8], sourceLocation: Testing.SourceLocation = #_sourceLocation) throws {
        try env.write { txn in try txn.deletePrefix(db, prefix) }
        model = model.filter { !$0.key.starts(with: prefix) }
        let stored = try entries(env, db)
        #expect(stored == model, "after deleting prefix \(prefix)", sourceLocation: sourceLocation)
        let count = try env.read { txn in try txn.stats(db).entries }
        #expect(count == model.values.reduce(0) { $0 + $1.count }, sourceLocation: sourceLocation)
    }

    @Test("deletes whole groups at page boundaries and leaves their neighbours")
    func groupsAtPageBoundaries() throws {
        let dir = try TempDir()
        let (env, db) = try Self.open(dir, [])
        // 200-byte values: about 19 entries a 4 KiB leaf page, so groups of 1, 18–21 and 400 entries start
        // and end at every position of a page; group 7 holds values on overflow pages.
        let sizes: [UInt8: Int] = [1: 1, 2: 19, 3: 20, 4: 21, 5: 400, 6: 18, 7: 5, 8: 1, 9: 37]
        var model: [[UInt8]: [[UInt8]]] = [:]
        for (group, n) in sizes {
            for row in 0..<n {
                model[Self.key(group, row)] = [[UInt8](repeating: group &* 31 &+ UInt8(row & 0xff),
                                                        count: group == 7 ? 9_000 : 200)]
            }
        }
        try Self.store(env, db, model)
        try Self.deleteAndCheck(env, db, &model, [0])            // no key: nothing changes
        try Self.deleteAndCheck(env, db, &model, [5, 0, 0, 0, 7])  // one key, mid-group
        try Self.deleteAndCheck(env, db, &model, [5, 0, 0, 1])   // the rows 256–399 of group 5
        try Self.deleteAndCheck(env, db, &model, [3])            // between two groups that stay
        try Self.deleteAndCheck(env, db, &model, [1])            // the database's first entry
        try Self.deleteAndCheck(env, db, &model, [9])            // the database's last entries
        try Self.deleteAndCheck(env, db, &model, [7])            // overflow values
        try Self.deleteAndCheck(env, db, &model, [5])
        try Self.deleteAndCheck(env, db, &model, [2, 0, 0, 0, 18, 0])  // longer than every key: nothing
        try Self.deleteAndCheck(env, db, &model, [])             // everything
        #expect(model.isEmpty)
        try Self.deleteAndCheck(env, db, &model, [4])            // an empty database
    }

    @Test("in a dupSort database, deletes every value of the prefix's keys", arguments: [false, true])
    func dupSort(fixed: Bool) throws {
        let dir = try TempDir()
        let (env, db) = try Self.open(dir, fixed ? [.dupSort, .dupFixed] : [.dupSort])
        var model: [[UInt8]: [[UInt8]]] = [:]
        // Keys with 1 value (stored inline), a few (a sub-page) and hundreds (a sub-database).
        for group: UInt8 in 1...4 {
            for row in 0..<30 {
                let count = [1, 3, 300][(row + Int(group)) % 3]
                model[Self.key(group, row)] = (0..<count).map { v in
                    withUnsafeBytes(of: UInt64(v * 7 + row).bigEndian) { Array($0) }
                }
            }
        }
        try Self.store(env, db, model)
        try Self.deleteAndCheck(env, db, &model, Self.key(2, 4))
        try Self.deleteAndCheck(env, db, &model, [3])
        try Self.deleteAndCheck(env, db, &model, [4])
        try Self.deleteAndCheck(env, db, &model, [1])
        try Self.deleteAndCheck(env, db, &model, [2])
        #expect(model.isEmpty)
    }

    @Test("random keys and prefixes agree with a model")
    func randomPrefixes() throws {
        let dir = try TempDir()
        let (env, db) = try Self.open(dir, [])
        var rng = SeededRandom(seed: 41)
        var model: [[UInt8]: [[UInt8]]] = [:]
        // Keys over a small alphabet so prefixes of every length share many keys.
        func randomKey(_ length: Int) -> [UInt8] { (0..<length).map { _ in UInt8(rng.next() % 3) } }
        for _ in 0..<3_000 {
            model[randomKey(1 + Int(rng.next() % 8))] = [[UInt8](repeating: UInt8(rng.next() & 0xff),
                                                                 count: 16 + Int(rng.next() % 300))]
        }
        try Self.store(env, db, model)
        for _ in 0..<25 { try Self.deleteAndCheck(env, db, &model, randomKey(1 + Int(rng.next() % 4))) }
    }

    @Test("the map is found by the data file's device and inode: /proc/self/maps device fields decode as stat's")
    func mapDeviceFields() throws {
        #expect(Environment.majorMinor(0x0801) == (8, 1))
        // glibc's makedev(259, 0x12345): minor's high bits above bit 20, major's above bit 44.
        let dev: UInt64 = (259 & 0xfff) << 8 | (0x12345 & 0xff) | (0x12345 & ~UInt64(0xff)) << 12
        #expect(Environment.majorMinor(dev) == (259, 0x12345))
        #expect(Environment.deviceField("fd:01")! == (0xfd, 1))
        #expect(Environment.deviceField("103:12345")! == (0x103, 0x12345))
        #expect(Environment.deviceField("fd01") == nil)
        #expect(Environment.deviceField("zz:01") == nil)
    }

    @Test("contains(key:value:) finds exactly the stored pairs of a dupSort key, inline or in a sub-tree")
    func containsPair() throws {
        let dir = try TempDir()
        let (env, db) = try Self.open(dir, [.dupSort, .dupFixed])
        // Key 1 holds one value (stored inline), key 2 every third row below 5000 (a sub-tree of pages).
        let rows = stride(from: 0, to: 5000, by: 3).map { UInt32($0) }
        func be(_ r: UInt32) -> [UInt8] { withUnsafeBytes(of: r.bigEndian) { Array($0) } }
        try env.write { txn in
            try txn.put(db, [1], be(7))
            for r in rows { try txn.put(db, [2], be(r)) }
        }
        try env.read { txn in
            try txn.withCursor(db) { (c: Cursor) throws -> Void in
                #expect(try c.contains(key: [1], value: be(7)))
                #expect(try !c.contains(key: [1], value: be(8)))
                #expect(try !c.contains(key: [3], value: be(7)))
                for r in UInt32(0)..<5001 {
                    #expect(try c.contains(key: [2], value: be(r)) == (r % 3 == 0 && r < 5000))
                }
            }
        }
    }
}
