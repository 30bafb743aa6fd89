import LMDB
import VecStoreIO

/// Where new ids go (Spec/FORMAT.md §8.3). Tests lower the thresholds to exercise runs and merges on
/// small collections.
struct IDRunPolicy: Sendable {
    /// A collection without runs takes a batch's ids into its base when the base then holds at most this
    /// many (a small base costs little to change), or when the batch is at least as large as the base.
    var smallBase = 32_768
    /// When level 0 holds more ids than this, it and the occupied levels above it merge into the first
    /// empty level.
    var levelZero = 32_768
}

/// The external-id index of one collection: external id → row (Spec/FORMAT.md §8).
///
/// Ids live in one of two places: the base (`ids`, key `BE32(cid) · id`) or one level of the run database
/// (`idruns`, key `BE32(cid) · u8 level · id`), never in both. A write puts its new ids into level 0 (one
/// small key range, so it dirties pages in proportion to the batch, not to the collection); when level 0
/// grows past its capacity it merges, with every occupied level above it, into the first empty level;
/// a merged run at least as large as the base merges into the base. So each id is rewritten about once
/// per level and the base O(log n) times, where inserting random ids straight into one large B-tree
/// dirties most of its leaves with every batch. The meta record `idruns:BE32(cid)` holds each level's
/// count; it exists only while the collection has runs, and its first use declares the feature `idruns`
/// (needed to read and to write: an older build would miss the ids in runs).
///
/// Every value read is checked: a value that is not 4 bytes, a row at or past the collection's rows, a
/// record that does not decode, or a level holding other than its recorded count is `corrupt`.
struct IDIndex {
    /// The feature a store declares once a collection has runs.
    static let feature = "idruns"
    /// Meta key prefix of the per-collection run record.
    static let recordPrefix: [UInt8] = Array("idruns:".utf8)
    /// Version byte of the run record.
    static let recordVersion: UInt8 = 1
    /// Run levels a record may describe.
    static let maxLevels = 32
    /// Entries each merge reads from a run at a time.
    static let chunk = 4096

    /// Where an id lives.
    enum Place: Equatable, CustomStringConvertible {
        case base
        case run(Int)
        var description: String {
            switch self {
            case .base: "the base"
            case .run(let level): "run level \(level)"
            }
        }
    }

    let txn: Transaction
    let base: Database
    let runs: Database?
    let meta: Database
    let collection: UInt32
    let name: String
    /// Ids in each run level, level 0 first (empty: the collection keeps its ids in the base alone).
    private(set) var levels: [UInt32]
    /// Rows an id may map to lie below this (the collection's rows; raised by the writer for its batch).
    var rowBound: UInt32
    /// Where new ids go.
    var policy = IDRunPolicy()
    private let hadRecord: Bool
    private var levelsChanged = false
    /// Ids this batch added, placed by `finish`.
    private var added: [(id: [UInt8], row: UInt32)] = []

    /// The index of `record`'s collection in `txn`, its run record read and checked.
    init(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, name: String) throws {
        self.init(txn, dbs, record, name: name, levels: try Self.loadLevels(txn, dbs.meta, record, name: name))
        if hadRecord && runs == nil {
            throw VecStoreError.corrupt("collection \(name) has id runs but the store has no '\(Format.DB.idruns)' database")
        }
    }

    /// Meta key of the run record of collection `cid`.
    static func recordKey(_ cid: UInt32) -> [UInt8] { recordPrefix + Format.prefix(cid) }

    /// The level counts of the run record, or nil when the collection has none. The record is
    /// `u8 version (1) · u8 n (1…32) · u16 reserved (0) · n × u32 LE count`, the last count non-zero; the
    /// counts add up to at most the collection's live documents.
    static func loadLevels(_ txn: Transaction, _ meta: Database, _ record: CollectionRecord, name: String) throws
        -> [UInt32]?
    {
        guard let v = try txn.get(meta, recordKey(record.id)) else { return nil }
        return try decodeLevels(v, name: name, liveCount: record.liveCount)
    }

    static func decodeLevels(_ v: UnsafeRawBufferPointer, name: String, liveCount: UInt32) throws -> [UInt32] {
        let what = "collection \(name): id-run record"
        guard v.count >= 4 else { throw VecStoreError.corrupt("\(what) has \(v.count) bytes, fewer than 4") }
        guard v[0] == recordVersion else {
            throw VecStoreError.newerFormat("\(what) has version \(v[0]); this vecstore reads version \(recordVersion)")
        }
        guard v[2] == 0, v[3] == 0 else { throw VecStoreError.newerFormat("\(what) has non-zero reserved bytes") }
        let n = Int(v[1])
        guard (1...maxLevels).contains(n) else { throw VecStoreError.corrupt("\(what) names \(n) levels, not 1…\(maxLevels)") }
        guard v.count == 4 + 4 * n else { throw VecStoreError.corrupt("\(what) has \(v.count) bytes for \(n) levels") }
        let levels = (0..<n).map { UInt32(littleEndian: v.loadUnaligned(fromByteOffset: 4 + 4 * $0, as: UInt32.self)) }
        guard levels[n - 1] > 0 else { throw VecStoreError.corrupt("\(what) ends with an empty level") }
        let total = levels.reduce(UInt64(0)) { $0 + UInt64($1) }
        guard total <= UInt64(liveCount) else {
            throw VecStoreError.corrupt("\(what) counts \(total) ids, more than the \(liveCount) live documents")
        }
        return levels
    }

    static func encodeLevels(_ levels: [UInt32]) -> [UInt8] {
        var b: [UInt8] = [recordVersion, UInt8(levels.count), 0, 0]
        for c in levels { b.appendLE(c) }
        return b
    }

    // MARK: Keys

    func baseKey(_ id: [UInt8]) -> [UInt8] { Format.prefix(collection) + id }
    func levelPrefix(_ level: Int) -> [UInt8] { Format.prefix(collection) + [UInt8(level)] }
    func key(_ id: [UInt8], _ place: Place) -> [UInt8] {
        switch place {
        case .base: baseKey(id)
        case .run(let level): levelPrefix(level) + id
        }
    }

    func database(_ place: Place) throws -> Database {
        switch place {
        case .base: return base
        case .run:
            guard let runs else { throw VecStoreError.corrupt("database '\(Format.DB.idruns)' is missing") }
            return runs
        }
    }

    /// The places that may hold ids, newest first: the occupied run levels, then the base.
    var places: [Place] { levels.indices.filter { levels[$0] > 0 }.map { .run($0) } + [.base] }

    /// Ids in the runs.
    var runCount: Int { levels.reduce(0) { $0 + Int($1) } }

    func row(_ v: UnsafeRawBufferPointer, _ id: [UInt8], _ place: Place) throws -> UInt32 {
        guard v.count == 4 else {
            throw VecStoreError.corrupt("collection \(name): id '\(String(decoding: id, as: UTF8.self))' in \(place) has a \(v.count)-byte value")
        }
        let row = UInt32(littleEndian: v.loadUnaligned(as: UInt32.self))
        guard row < rowBound else {
            throw VecStoreError.corrupt("collection \(name): id '\(String(decoding: id, as: UTF8.self))' in \(place) points at row \(row) ≥ \(rowBound)")
        }
        return row
    }

    // MARK: Lookups

    /// The row of `id` and where it is stored, or nil.
    func lookup(_ id: String) throws -> (row: UInt32, place: Place)? {
        let bytes = Array(id.utf8)
        for place in places {
            if let v = try txn.get(try database(place), key(bytes, place)) { return (try row(v, bytes, place), place) }
        }
        return nil
    }

    /// The row and place of each id (nil where absent). The ids are looked up in byte order, one cursor
    /// per place, so consecutive seeks land on neighbouring pages.
    func lookupAll(_ ids: [String]) throws -> [(row: UInt32, place: Place)?] {
        let bytes = ids.map { Array($0.utf8) }
        let order = bytes.indices.sorted { bytes[$0].lexicographicallyPrecedes(bytes[$1]) }
        var found = [(row: UInt32, place: Place)?](repeating: nil, count: ids.count)
        var missing = ids.count
        for place in places where missing > 0 {
            try txn.withCursor(try database(place)) { (c: Cursor) throws -> Void in
                for i in order where found[i] == nil {
                    let k = key(bytes[i], place)
                    if let (fk, v) = try c.seek(atLeast: k), fk.count == k.count, fk.elementsEqual(k) {
                        found[i] = (try row(v, bytes[i], place), place)
                        missing -= 1
                    }
                }
            }
        }
        return found
    }

    /// Every place holding `id`, with its value (nil for a value that does not decode): `verify` checks
    /// it is exactly one.
    func allPlaces(_ id: [UInt8]) throws -> [(place: Place, row: UInt32?)] {
        var out: [(place: Place, row: UInt32?)] = []
        for place in places {
            if let v = try txn.get(try database(place), key(id, place)) {
                out.append((place, v.count == 4 ? UInt32(littleEndian: v.loadUnaligned(as: UInt32.self)) : nil))
            }
        }
        return out
    }

    // MARK: Writes

    /// Removes `id` from where it lives; returns its row, or nil when it is not stored.
    mutating func remove(_ id: String) throws -> UInt32? {
        guard let (row, place) = try lookup(id) else { return nil }
        try txn.delete(try database(place), key(Array(id.utf8), place))
        if case .run(let level) = place {
            guard levels[level] > 0 else { throw VecStoreError.corrupt("collection \(name): id run level \(level) counts 0 ids") }
            levels[level] -= 1
            levelsChanged = true
        }
        return row
    }

    /// Points an id already stored at `place` to a new row (an upsert keeps the id where it lives).
    func replace(_ id: String, row: UInt32, at place: Place) throws {
        try txn.put(try database(place), key(Array(id.utf8), place), Format.encodeInternalID(row))
    }

    /// Adds a new id; `finish` places it.
    mutating func add(_ id: String, row: UInt32) {
        added.append((Array(id.utf8), row))
    }

    /// Places the batch's new ids (sorted) in the base or level 0, merges levels that outgrew their
    /// capacity, and writes the run record. `liveCount` is the collection's live documents after the
    /// batch, `rows` its rows.
    mutating func finish(liveCount: UInt32, rows: UInt32) throws {
        rowBound = rows
        if !added.isEmpty {
            added.sort { $0.id.lexicographicallyPrecedes($1.id) }
            // Public writes reject a repeated id before anything is written (`prepare`, the importer); an
            // internal caller that adds one id twice (one batch, or two appends before `finish`) gets the
            // same typed error here, not a `corrupt` from the second `putNew`. Sorted, repeats are neighbours.
            for i in added.indices.dropFirst() where added[i].id == added[i - 1].id {
                throw VecStoreError.duplicateIDInBatch(String(decoding: added[i].id, as: UTF8.self))
            }
            let baseCount = Int(liveCount) - runCount - added.count
            guard baseCount >= 0 else {
                throw VecStoreError.corrupt("collection \(name): id runs hold \(runCount) ids, more than its \(liveCount) live documents")
            }
            let intoBase = runs == nil
                || (runCount == 0 && (baseCount + added.count <= policy.smallBase || added.count >= baseCount))
            let target: Place = intoBase ? .base : .run(0)
            let db = try database(target)
            for (id, row) in added {
                guard try txn.putNew(db, key(id, target), Format.encodeInternalID(row)) else {
                    throw VecStoreError.corrupt("collection \(name): new id '\(String(decoding: id, as: UTF8.self))' is already in \(target)")
                }
            }
            if !intoBase {
                if levels.isEmpty { levels = [0] }
                levels[0] += UInt32(added.count)
                levelsChanged = true
            }
            added.removeAll()
            try cascade(liveCount: liveCount)
        }
        guard levelsChanged else { return }
        while let last = levels.last, last == 0 { levels.removeLast() }
        if levels.isEmpty {
            try txn.delete(meta, Self.recordKey(collection))
        } else {
            try txn.put(meta, Self.recordKey(collection), Self.encodeLevels(levels))
            if !hadRecord {
                try Format.declare(Format.Feature(name: Self.feature, neededToRead: true, neededToWrite: true), txn, meta: meta)
            }
        }
        levelsChanged = false
    }

    /// Level 0 past its capacity merges, with the occupied levels above it, into the first empty level;
    /// that run merges into the base when it holds at least as many ids.
    private mutating func cascade(liveCount: UInt32) throws {
        guard let first = levels.first, first > UInt32(policy.levelZero) else { return }
        var target = 1
        while target < levels.count && levels[target] > 0 { target += 1 }
        if target >= Self.maxLevels {
            try merge(Array(levels.indices), into: .base)
            return
        }
        try merge(Array(0..<target), into: .run(target))
        let baseCount = Int(liveCount) - runCount
        if Int(levels[target]) >= baseCount { try merge([target], into: .base) }
    }

    /// Moves every id of the run levels `sources` into `target`, in id order (so an empty target level is
    /// written sequentially and fills its pages), then deletes the sources. Each level must hold exactly
    /// its recorded count, and no id may already be in `target`.
    private mutating func merge(_ sources: [Int], into target: Place) throws {
        guard let runs else { throw VecStoreError.corrupt("database '\(Format.DB.idruns)' is missing") }
        let db = try database(target)
        var stream = SortedIDStream(txn: txn, ranges: sources.map { (runs, levelPrefix($0)) }, rowBound: rowBound, name: name)
        var moved = [Int](repeating: 0, count: sources.count)
        while let (id, row, source) = try stream.next() {
            guard try txn.putNew(db, key(id, target), Format.encodeInternalID(row)) else {
                throw VecStoreError.corrupt("collection \(name): id '\(String(decoding: id, as: UTF8.self))' of run level \(sources[source]) is also in \(target)")
            }
            moved[source] += 1
        }
        for (i, level) in sources.enumerated() {
            guard moved[i] == Int(levels[level]) else {
                throw VecStoreError.corrupt("collection \(name): id run level \(level) holds \(moved[i]) ids, its record says \(levels[level])")
            }
            try txn.deletePrefix(runs, levelPrefix(level))
            levels[level] = 0
        }
        if case .run(let level) = target {
            while levels.count <= level { levels.append(0) }
            levels[level] += UInt32(moved.reduce(0, +))
        }
        levelsChanged = true
    }

    // MARK: Whole-index reads (compaction, verify, stats)

    /// Every id of the collection with its row, in id order, merged from the base and the runs.
    func sortedStream() throws -> SortedIDStream {
        var ranges: [(Database, [UInt8])] = [(base, Format.prefix(collection))]
        if let runs { ranges += levels.indices.filter { levels[$0] > 0 }.map { (runs, levelPrefix($0)) } }
        return SortedIDStream(txn: txn, ranges: ranges, rowBound: rowBound, name: name)
    }

    /// Entries found in the base and in each level byte of the run database (counted by walking them).
    func countEntries() throws -> (base: Int, levels: [Int: Int]) {
        var baseCount = 0
        let prefix = Format.prefix(collection)
        try txn.withCursor(base) { (c: Cursor) throws -> Void in
            var entry = try c.seek(atLeast: prefix)
            while let (key, _) = entry, key.starts(with: prefix) { baseCount += 1; entry = try c.next() }
        }
        var perLevel: [Int: Int] = [:]
        if let runs {
            try txn.withCursor(runs) { (c: Cursor) throws -> Void in
                var entry = try c.seek(atLeast: prefix)
                while let (key, _) = entry, key.starts(with: prefix) {
                    if key.count > prefix.count { perLevel[Int(key[prefix.count]), default: 0] += 1 }
                    entry = try c.next()
                }
            }
        }
        return (baseCount, perLevel)
    }

    /// A copy of this index that looks in every level the run database holds for the collection (verify
    /// uses it when the run record is damaged or disagrees with the runs).
    func lookingEverywhere(_ present: [Int]) -> IDIndex {
        var copy = self
        let count = max(levels.count, (present.max() ?? -1) + 1)
        copy.levels = (0..<count).map { level in
            if level < levels.count && levels[level] > 0 { return levels[level] }
            return present.contains(level) ? 1 : 0  // looked in; the count is not used
        }
        return copy
    }

    /// The index as if the collection had no run record: verify uses it after reporting a damaged
    /// record, and `lookingEverywhere` then adds the levels present.
    init(unrecorded txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, name: String) {
        self.init(txn, dbs, record, name: name, levels: nil)
    }

    /// The index with the run record's level counts `levels` (nil: no record).
    private init(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, name: String, levels: [UInt32]?) {
        self.txn = txn
        self.base = dbs.ids
        self.runs = dbs.handle(Format.DB.idruns)
        self.meta = dbs.meta
        self.collection = record.id
        self.name = name
        self.rowBound = record.nextInternalID
        self.levels = levels ?? []
        self.hadRecord = levels != nil
    }
}

/// Merges sorted key ranges, each `prefix · id` in one database, into one stream in id order. Each range
/// is read in chunks whose keys are copied, so no cursor stays open while the caller writes.
struct SortedIDStream {
    private struct Range {
        let db: Database
        let prefix: [UInt8]
        var ids: [[UInt8]] = []
        var rows: [UInt32] = []
        var position = 0
        var done = false
        var last: [UInt8]?
    }

    private let txn: Transaction
    private var ranges: [Range]
    private let rowBound: UInt32
    private let name: String

    init(txn: Transaction, ranges: [(Database, [UInt8])], rowBound: UInt32, name: String) {
        self.txn = txn
        self.ranges = ranges.map { Range(db: $0.0, prefix: $0.1) }
        self.rowBound = rowBound
        self.name = name
    }

    /// The next id in byte order, its row and the index of the range holding it; nil at the end.
    mutating func next() throws -> (id: [UInt8], row: UInt32, range: Int)? {
        var best = -1
        for i in ranges.indices {
            if ranges[i].position == ranges[i].ids.count && !ranges[i].done { try load(i) }
            guard ranges[i].position < ranges[i].ids.count else { continue }
            if best < 0 || ranges[i].ids[ranges[i].position].lexicographicallyPrecedes(ranges[best].ids[ranges[best].position]) {
                best = i
            }
        }
        guard best >= 0 else { return nil }
        let p = ranges[best].position
        ranges[best].position += 1
        return (ranges[best].ids[p], ranges[best].rows[p], best)
    }

    private mutating func load(_ i: Int) throws {
        var r = ranges[i]
        r.ids.removeAll(keepingCapacity: true)
        r.rows.removeAll(keepingCapacity: true)
        r.position = 0
        let rowBound = self.rowBound, name = self.name
        try txn.withCursor(r.db) { (c: Cursor) throws -> Void in
            var entry: Cursor.Entry?
            if let last = r.last {
                let k = r.prefix + last
                entry = try c.seek(atLeast: k)
                if let (key, _) = entry, key.count == k.count, key.elementsEqual(k) { entry = try c.next() }
            } else {
                entry = try c.seek(atLeast: r.prefix)
            }
            while let (key, value) = entry, key.starts(with: r.prefix) {
                let id = Array(key[r.prefix.count...])
                guard !id.isEmpty else { throw VecStoreError.corrupt("collection \(name): an empty id in '\(r.db.name)'") }
                guard value.count == 4 else {
                    throw VecStoreError.corrupt("collection \(name): id '\(String(decoding: id, as: UTF8.self))' in '\(r.db.name)' has a \(value.count)-byte value")
                }
                let row = UInt32(littleEndian: value.loadUnaligned(as: UInt32.self))
                guard row < rowBound else {
                    throw VecStoreError.corrupt("collection \(name): id '\(String(decoding: id, as: UTF8.self))' in '\(r.db.name)' points at row \(row) ≥ \(rowBound)")
                }
                r.ids.append(id)
                r.rows.append(row)
                if r.ids.count == IDIndex.chunk { break }
                entry = try c.next()
            }
        }
        if r.ids.count < IDIndex.chunk { r.done = true }
        r.last = r.ids.last ?? r.last
        ranges[i] = r
    }
}
