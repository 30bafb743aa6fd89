import Foundation
import LMDB
import VecStoreIO
import VecStoreKernels

/// Size and page figures of one named database.
public struct DatabaseUsage: Sendable {
    /// Database name.
    public var name: String
    /// Entries (key/value pairs, counting duplicates).
    public var entries: Int
    /// Bytes in branch, leaf and overflow pages.
    public var bytes: Int
    /// Overflow pages (values larger than half a page, such as vector blocks).
    public var overflowPages: Int
    /// B-tree depth.
    public var depth: Int
}

/// What `VecStore.stats()` reports.
public struct StoreStats: Sendable {
    /// Data file path.
    public var path: String
    /// Data file size in bytes.
    public var fileBytes: Int
    /// LMDB page size.
    public var pageSize: Int
    /// Current memory-map size.
    public var mapSize: Int
    /// Pages in use up to the high-water mark.
    public var usedPages: Int
    /// Pages on LMDB's free list, reusable by later writes (compaction returns them to the file system).
    public var freePages: Int
    /// The format version.
    public var formatVersion: UInt32
    /// Per-database usage.
    public var databases: [DatabaseUsage]
    /// Per-collection shape and counts.
    public var collections: [CollectionInfo]
    /// Each collection's vector index (kind "flat" when it has none), in `collections` order.
    public var indexes: [IndexStats] = []
}

/// The outcome of `VecStore.verify()`.
public struct VerifyReport: Sendable {
    /// Every broken invariant found, each naming where.
    public var faults: [String]
    /// Number of checks run (documents, rows, keys visited).
    public var checked: Int
    /// LMDB pages and overflow extents whose structure was checked first (Spec/FORMAT.md §21).
    public var pages = 0
    /// Whether no fault was found.
    public var isOK: Bool { faults.isEmpty }
}

/// The outcome of `VecStore.compact(path:)`.
public struct CompactReport: Sendable {
    /// File size before.
    public var bytesBefore: Int
    /// File size after.
    public var bytesAfter: Int
    /// Live documents copied.
    public var documents: Int
    /// Deleted rows dropped.
    public var tombstonesDropped: Int
    /// What happened to each collection's vector index, in collection order (flat collections have none).
    public var indexes: [CompactedIndex] = []
}

/// How compaction brought one collection's vector index into the new store.
public struct CompactedIndex: Sendable {
    /// The collection.
    public var collection: String
    /// Whether the index was carried over by renumbering (true) or rebuilt from the copied rows (false).
    public var carried: Bool
    /// What was done: for a carried HNSW graph, the lists that lost links to deleted rows and how many
    /// were refilled; for a rebuilt index, why it was not carried.
    public var detail: String
}

extension VecStore {
    // MARK: Stats

    /// Counts, sizes per database, and free pages, from one snapshot. Each index is described by its
    /// summary (`IndexStatsDepth.summary`), so the cost does not grow with the collections' sizes
    /// beyond LMDB's per-database counters.
    public func stats() throws(VecStoreError) -> StoreStats {
        let dbs = self.dbs, env = self.env, path = self.path
        return try read { txn in
            var infos: [CollectionInfo] = [], indexes: [IndexStats] = []
            for name in try collectionNames(in: txn) {
                guard let record = try record(txn, name) else { continue }
                infos.append(try VectorCollection.info(txn, dbs, record, name: name))
                indexes.append(try VectorCollection.indexStats(txn, dbs, record, name: name, depth: .summary))
            }
            let usage = try dbs.all.map { db in
                let s = try txn.stats(db)
                return DatabaseUsage(name: db.name, entries: s.entries, bytes: s.bytes, overflowPages: s.overflowPages,
                                     depth: s.depth)
            }
            let info = env.info()
            return StoreStats(path: path, fileBytes: Self.fileSize(path), pageSize: env.pageSize, mapSize: info.mapSize,
                              usedPages: info.lastPage + 1, freePages: try txn.freePageCount(),
                              formatVersion: try Self.formatAccess(txn, dbs.meta, path: path)?.readVersion ?? Format.version,
                              databases: usage, collections: infos, indexes: indexes)
        }
    }

    // MARK: Verify

    /// Checks every invariant of the format (Spec/FORMAT.md §Invariants) and reports each fault found.
    ///
    /// First, in the same snapshot, the LMDB page structure of every database is checked in full
    /// (Spec/FORMAT.md §21: every branch, leaf and sub-page, every overflow header) before any cursor
    /// walks it: a structural fault there throws `.corrupt` naming the database and the page, since
    /// nothing past it can be read safely.
    public func verify() throws(VecStoreError) -> VerifyReport {
        // `checkedRead` retries in a newer snapshot when a writer rewrote the checked one's meta page.
        try checkedRead(.full) { txn, pages in
            var report = try verifyContents(txn)
            report.pages = pages.pages + pages.overflowExtents
            return report
        }
    }

    /// The invariant checks of `verify()`, on a snapshot whose pages were checked.
    private func verifyContents(_ txn: Transaction) throws -> VerifyReport {
        let dbs = self.dbs
        var faults: [String] = []
        var checked = 0
        var prefixes: [UInt32: String] = [:]
        // Keys `<feature>:…` belong to a declared feature (known to this build or not).
        let featurePrefixes = try (txn.get(dbs.meta, Format.featuresKey).map { v in try Format.decodeFeatures(v) } ?? [])
            .map { Array("\($0.name):".utf8) }
        var embedderKeys: [(UInt32, [UInt8])] = []
        var idRunRecords: [UInt32] = []
        try txn.withCursor(dbs.meta) { (c: Cursor) throws -> Void in
            var entry = try c.first()
            while let (key, value) = entry {
                checked += 1
                let name = String(decoding: key, as: UTF8.self)
                if key.starts(with: Format.collectionPrefix) {
                    let cname = String(name.dropFirst(Format.collectionPrefix.count))
                    do {
                        let r = try CollectionRecord.decode(value, name: cname)
                        if let other = prefixes[r.id] { faults.append("collections \(other) and \(cname) share id \(r.id)") }
                        prefixes[r.id] = cname
                    } catch { faults.append("\(error)") }
                } else if IndexRegistry.kinds.contains(where: { key.starts(with: $0.metaPrefix) && key.count == $0.metaPrefix.count + 4 }) {
                    // an index record: checked with its collection (verifyIndex), its owner below
                } else if key.starts(with: ProjectionRecord.keyPrefix) && key.count == ProjectionRecord.keyPrefix.count + 4 {
                    // checked with its collection (verifyProjection)
                } else if key.starts(with: EmbedderInfo.keyPrefix) && key.count == EmbedderInfo.keyPrefix.count + 4 {
                    embedderKeys.append((readBE32(key, at: EmbedderInfo.keyPrefix.count), Array(value)))
                } else if key.starts(with: IDIndex.recordPrefix) && key.count == IDIndex.recordPrefix.count + 4 {
                    // checked with its collection (the id index); it needs its feature and a collection
                    if !featurePrefixes.contains(IDIndex.recordPrefix) {
                        faults.append("meta: id-run record '\(name.prefix(7))…' but the store does not declare feature '\(IDIndex.feature)'")
                    }
                    idRunRecords.append(readBE32(key, at: IDIndex.recordPrefix.count))
                } else if featurePrefixes.contains(where: { key.starts(with: $0) }) {
                    // a declared feature's record: checked by the module that implements it
                } else if !["format", "next-collection-id", "superseded", "features"].contains(name) {
                    faults.append("meta: unknown key '\(name)'")
                }
                entry = try c.next()
            }
        }
        for (_, cname) in prefixes.sorted(by: { $0.key < $1.key }) {
            checked += try verifyCollection(txn, cname, &faults)
        }
        faults += try verifyEmbedders(txn, embedderKeys, collections: prefixes)
        for cid in idRunRecords where prefixes[cid] == nil {
            faults.append("meta: id-run record of unknown collection id \(cid)")
        }
        // Every collection id was handed out by the counter: the next one is above them all.
        do {
            let next = try nextCollectionID(txn)
            if let (id, cname) = prefixes.max(by: { $0.key < $1.key }), id >= next {
                faults.append("meta: next-collection-id \(next) is not above the id \(id) of collection '\(cname)'")
            }
        } catch let e as VecStoreError { faults.append("\(e)") }
        // Every key of the per-collection databases must belong to a known collection.
        faults += try verifyIndexOwners(txn, known: Set(prefixes.keys))
        faults += try verifyProjectionOwners(txn, known: Set(prefixes.keys))
        for db in dbs.perCollection {
            try txn.withCursor(db) { (c: Cursor) throws -> Void in
                var entry = try c.first()
                while let (key, _) = entry {
                    guard key.count >= 4 else {
                        faults.append("\(db.name): key shorter than a collection id"); entry = try c.nextKey(); continue
                    }
                    let cid = readBE32(key, at: 0)
                    if prefixes[cid] == nil {
                        faults.append("\(db.name): keys of unknown collection id \(cid)")
                        entry = try c.seek(atLeast: Format.prefix(cid &+ 1))
                        if cid == UInt32.max { entry = nil }
                    } else {
                        entry = try c.nextKey()
                    }
                }
            }
        }
        return VerifyReport(faults: faults, checked: checked)
    }

    private func verifyCollection(_ txn: Transaction, _ name: String, _ faults: inout [String]) throws -> Int {
        guard let record = try record(txn, name) else { return 0 }
        let dbs = self.dbs
        let view: CollectionView
        do { view = try CollectionView(txn, dbs, record, name: name) } catch {
            faults.append("\(error)")
            return 1
        }
        var checked = 0
        let dim = record.dimension
        let prefix = Format.prefix(record.id)
        if view.liveBitCount != Int(record.liveCount) {
            faults.append("\(name): live bitmap has \(view.liveBitCount) rows, record says \(record.liveCount)")
        }
        // Live blocks must not carry bits past the last row.
        try txn.withCursor(dbs.live) { (c: Cursor) throws -> Void in
            var entry = try c.seek(atLeast: prefix)
            while let (key, value) = entry, key.starts(with: prefix) {
                let base = Int(readBE32(key, at: 4)) * Format.liveBlockIDs
                for (byteIndex, byte) in value.enumerated() where byte != 0 {
                    let firstRow = base + byteIndex * 8 + (7 - Int(byte.leadingZeroBitCount))
                    if firstRow >= Int(record.nextInternalID) {
                        faults.append("\(name): live bit set for row \(firstRow) ≥ rows \(record.nextInternalID)")
                        break
                    }
                }
                entry = try c.next()
            }
        }
        // Rows: stored norms match, vectors finite, unit length under cosine for live rows.
        for block in view.blocks {
            for r in 0..<block.count {
                let row = block.firstID + UInt32(r)
                let v = block.vectors + r * dim
                let norm2 = squaredNorm(v, dim)
                checked += 1
                if !norm2.isFinite {
                    let finite = (0..<dim).allSatisfy { v[$0].isFinite }
                    faults.append("\(name): row \(row) " + (finite ? "has a squared norm that overflows float32" : "has a non-finite component"))
                    continue
                }
                if abs(norm2 - block.squaredNorms[r]) > 1e-4 * max(1, norm2) {
                    faults.append("\(name): row \(row) stored squared norm \(block.squaredNorms[r]) ≠ \(norm2)")
                }
                if record.metric == .cosine && view.isLive(row) && abs(norm2 - 1) > 1e-3 {
                    faults.append("\(name): live row \(row) is not unit length (|v|² = \(norm2)) under cosine")
                }
            }
        }
        // Documents: exactly the live rows, each mapped back by the id index from exactly one place.
        let (idIndex, recordedLevels, baseEntries, runEntries) = try verifiableIDIndex(txn, record, name: name, &faults)
        var docRows = 0
        var metadataKeys = Set<[UInt8]>()
        try txn.withCursor(dbs.docs) { (c: Cursor) throws -> Void in
            var entry = try c.seek(atLeast: prefix)
            while let (key, value) = entry, key.starts(with: prefix) {
                checked += 1
                docRows += 1
                let row = readBE32(key, at: 4)
                if !view.isLive(row) { faults.append("\(name): document at row \(row), which is not live") }
                do {
                    let doc = try DocumentRecord.decode(value, context: "\(name) docs row \(row)")
                    let found = try idIndex.allPlaces(Array(doc.externalID.utf8))
                    if found.isEmpty {
                        faults.append("\(name): id '\(doc.externalID)' (row \(row)) missing from the id map")
                    } else if found.count > 1 {
                        faults.append("\(name): id '\(doc.externalID)' is in \(found.count) places (\(found.map { "\($0.place)" }.joined(separator: ", ")))")
                    }
                    for (place, target) in found where target != row {
                        faults.append("\(name): id '\(doc.externalID)' maps to row \(target.map(String.init) ?? "(damaged value)") in \(place), stored at \(row)")
                    }
                    if !doc.metadataJSON.isEmpty {
                        guard case .object(let m) = try doc.metadataJSON.withUnsafeBytes({ try JSONValue.parse($0) }) else {
                            faults.append("\(name): row \(row) metadata is not an object"); entry = try c.next(); continue
                        }
                        for k in FieldKey.keys(record.id, m) {
                            metadataKeys.insert(k + CollectionWriter.rowValue(row))
                        }
                    }
                } catch { faults.append("\(error)") }
                entry = try c.next()
            }
        }
        if docRows != Int(record.liveCount) { faults.append("\(name): \(docRows) documents, record says \(record.liveCount) live") }
        for level in Set(runEntries.keys).union(recordedLevels.indices).sorted() {
            let found = runEntries[level] ?? 0
            let recorded = level < recordedLevels.count ? Int(recordedLevels[level]) : 0
            if found != recorded { faults.append("\(name): id run level \(level) holds \(found) ids, its record says \(recorded)") }
        }
        let idEntries = baseEntries + runEntries.values.reduce(0, +)
        if idEntries != docRows { faults.append("\(name): \(idEntries) id-map entries for \(docRows) documents") }
        // Field index: exactly the entries the documents' metadata implies.
        var indexEntries = 0
        try txn.withCursor(dbs.fields) { (c: Cursor) throws -> Void in
            var entry = try c.seek(atLeast: prefix)
            while let (key, value) = entry, key.starts(with: prefix) {
                checked += 1
                indexEntries += 1
                let full = Array(key) + Array(value)
                if !metadataKeys.contains(full) {
                    let row = value.count == 4 ? readBE32(value, at: 0) : .max
                    faults.append("\(name): field-index entry for row \(row) not backed by its metadata")
                }
                entry = try c.next()
            }
        }
        if indexEntries != metadataKeys.count {
            faults.append("\(name): field index has \(indexEntries) entries, metadata implies \(metadataKeys.count)")
        }
        checked += try verifyIndex(txn, name, record, view, &faults)
        faults += try verifyTextIndex(txn, record, name: name)
        faults += try verifyProjection(txn, record, name: name)
        return checked
    }

    /// The collection's id index for verify: from its run record, or (when the record is damaged, reported
    /// as a fault) looking in every run level present; with the recorded level counts and the entries
    /// found in the base and in each run level (one walk of each).
    private func verifiableIDIndex(_ txn: Transaction, _ record: CollectionRecord, name: String,
                                   _ faults: inout [String]) throws
        -> (IDIndex, recorded: [UInt32], base: Int, levels: [Int: Int])
    {
        let index: IDIndex
        do {
            index = try IDIndex(txn, dbs, record, name: name)
        } catch let e as VecStoreError {
            faults.append("\(e)")
            index = IDIndex(unrecorded: txn, dbs, record, name: name)
        }
        let entries = try index.countEntries()
        return (index.lookingEverywhere(Array(entries.levels.keys)), index.levels, entries.base, entries.levels)
    }

    // MARK: Compact

    /// Rewrites the store at `path` without deleted rows and free pages, renumbering rows densely in
    /// their old order, into `<path>.compacting`, then renames it over the original. A crash at any
    /// point leaves either the old or the new store whole.
    ///
    /// Compaction needs the store alone: it takes `FILE-guard` exclusively and fails with
    /// `alreadyOpen` while another process has the store open (every open holds it shared). Handles
    /// of this process share one environment with the compaction; after it they get `superseded`
    /// and must reopen. It checks the free space first (`diskFull`), and on any failure removes its
    /// temporary files, leaving the old store as it was.
    ///
    /// An HNSW graph is carried over by renumbering its rows (Spec/HNSW.md §5.5), which costs a small
    /// part of a rebuild; with `rebuildIndexes`, or when the old graph is inconsistent, it is rebuilt from
    /// the copied rows instead. `CompactReport.indexes` says which happened.
    @discardableResult
    public static func compact(path: String, batchSize: Int = 10_000, rebuildIndexes: Bool = false)
        throws(VecStoreError) -> CompactReport
    {
        let old = try VecStore(path: path, options: StoreOptions(create: false))
        defer { old.close() }
        // A store this build may read but not write (a feature needed to write that it does not know) is
        // not compacted either: the copy would drop what that feature keeps.
        if let refusal = old.writeRefusal { throw .newerFormat(refusal) }
        do {
            try old.env.lockExclusive()
        } catch {
            throw .alreadyOpen("\(path) is open in another process; compaction needs it alone (\(error))")
        }
        var replaced = false
        defer { if !replaced { old.env.unlockExclusive() } }
        // Compaction reads every page of the old file: its page structure is checked in full first, once
        // no other process can commit, so the snapshot checked is the one copied.
        _ = try checkPages(old.env, .full)
        let before = fileSize(path)
        let temporary = path + ".compacting"
        try removeIfPresent(temporary)
        try removeIfPresent(temporary + "-lock")
        // The new file holds at most the old one's used pages (plus a little for the rebuilt indexes).
        let used = (old.env.info().lastPage + 1) * old.env.pageSize
        let needed = used + used / 10 + (4 << 20)
        if let free = DiskSpace.available(near: path), free < needed {
            throw .diskFull("compacting \(path) needs about \(needed / 1_048_576) MiB free beside it, \(free / 1_048_576) MiB available; the store is unchanged")
        }
        if let limit = DiskSpace.fileSizeLimit(), limit < needed {
            throw .diskFull("compacting \(path) writes a file of up to \(needed / 1_048_576) MiB, above the file-size limit of \(limit / 1_048_576) MiB; the store is unchanged")
        }
        var documents = 0, tombstones = 0
        var indexes: [CompactedIndex] = []
        do {
            // One write transaction on the old file, never rerun (`writeOnce`): it holds LMDB's writer
            // lock against this process's other handles, and the file-system steps inside it happen once.
            try classifyWriteFailure(path) { () throws(VecStoreError) in
                try storage {
                    try old.env.writeOnce { txn in
                        if try txn.get(old.dbs.meta, Format.supersededKey) != nil {
                            throw VecStoreError.superseded("\(path) was already compacted into a new file; reopen it")
                        }
                        // First, so that a full map fails here, before any file is touched; invisible to
                        // readers until the commit after the rename.
                        try txn.put(old.dbs.meta, Format.supersededKey, Array(path.utf8))
                        (documents, tombstones, indexes) = try copyLive(txn, old, into: temporary, batchSize: batchSize,
                                                                         rebuildIndexes: rebuildIndexes)
                        try removeIfPresent(temporary + "-lock")
                        guard rename(temporary, path) == 0 else {
                            throw VecStoreError.io("could not rename \(temporary) to \(path): \(String(cString: strerror(errno)))")
                        }
                        replaced = true
                        // New openers must build a fresh lock file for the new data file.
                        if unlink(path + "-lock") != 0 && errno != ENOENT {
                            throw VecStoreError.io("could not remove \(path)-lock: \(String(cString: strerror(errno)))")
                        }
                        try syncDirectory(of: path)
                    }
                }
            }
        } catch {
            if !replaced {
                try? removeIfPresent(temporary)
                try? removeIfPresent(temporary + "-lock")
                throw error
            }
            // The new file is in place (its data synced before the rename); only the old inode's
            // `superseded` record or the directory sync failed. Handles of this process are told below.
        }
        old.env.markSuperseded()
        return CompactReport(bytesBefore: before, bytesAfter: fileSize(path), documents: documents,
                             tombstonesDropped: tombstones, indexes: indexes)
    }

    /// Copies every collection's live rows from `txn` into a new store at `temporary` (synced and
    /// closed on return). Rows are copied without index updates. An index whose kind remaps while the
    /// rows are copied (`StreamingRemapKind`: HNSW) writes its parts with each batch and the rest after
    /// the last; another kind's `remap` runs once after the rows; an index that cannot be renumbered
    /// (or every index, with `rebuildIndexes`) is rebuilt from the copied rows. Returns the documents
    /// copied, the deleted rows dropped and what happened to each index.
    private static func copyLive(_ txn: Transaction, _ old: VecStore, into temporary: String, batchSize: Int,
                                 rebuildIndexes: Bool) throws -> (Int, Int, [CompactedIndex])
    {
        var options = StoreOptions()
        options.guarded = false
        let fresh = try VecStore(path: temporary, options: options)
        defer { fresh.close() }
        var documents = 0, tombstones = 0
        var indexes: [CompactedIndex] = []
        for name in try old.collectionNames(in: txn) {
            guard let record = try old.record(txn, name) else { continue }
            // Rows are copied without index updates; the index is carried over by its kind's remap
            // once all rows are in, or rebuilt from them when the kind cannot remap.
            let index = try IndexRegistry.find(txn, old.dbs, record)
            let target = try fresh.collection(name, dimension: record.dimension, metric: record.metric,
                                              index: index?.parameters ?? .flat,
                                              projection: try ProjectionRecord.load(txn, old.dbs, record.id),
                                              embedder: try EmbedderInfo.load(txn, old.dbs, record.id, name: name))
            try fresh.copyTextOptions(from: txn, old: old, collection: record.id, to: target)
            let view = try CollectionView(txn, old.dbs, record, name: name)
            tombstones += Int(record.nextInternalID - record.liveCount)
            var batch: [CollectionWriter.Prepared] = []
            let map = RowMap(liveWords: view.liveWords, rows: Int(record.nextInternalID))
            let source = IndexRemapSource(txn: txn, dbs: old.dbs, record: record, newRow: map.newRow)
            var remapper: (any IndexRemapper)?
            var notCarried: String?
            if let index {
                if rebuildIndexes {
                    notCarried = "rebuilt as asked"
                } else if let streaming = index.kind as? any StreamingRemapKind.Type {
                    do {
                        remapper = try streaming.makeRemapper(source, name: name)
                    } catch VecStoreError.corrupt(let reason) {
                        notCarried = "rebuilt: the old \(index.kind.name) index cannot be renumbered (\(reason))"
                    }
                }
            }
            func flush() throws {
                let prepared = batch
                try fresh.write { t in
                    let before = try target.currentRecord(t)
                    var writer = try CollectionWriter(t, fresh.dbs, name: name, record: before)
                    writer.updatesIndex = false
                    writer.writesIDs = false
                    try writer.append(prepared, replace: false)
                    try writer.finish()
                    try remapper?.rowsCopied(t, fresh.dbs, before: before, after: writer.record)
                }
                documents += batch.count
                batch.removeAll(keepingCapacity: true)
            }
            for row in map.oldRow {
                guard let value = try txn.get(old.dbs.docs, Format.key(record.id, row)) else {
                    throw VecStoreError.corrupt("\(name): live row \(row) has no document")
                }
                let rec = try DocumentRecord.decode(value, context: "\(name) docs row \(row)")
                var metadata: [String: JSONValue] = [:]
                if !rec.metadataJSON.isEmpty,
                   case .object(let m) = try rec.metadataJSON.withUnsafeBytes({ try JSONValue.parse($0) }) {
                    metadata = m
                }
                // Rows are copied as stored (already unit length under cosine): no re-normalising drift.
                let stored = Array(UnsafeBufferPointer(start: view.vector(row), count: record.dimension))
                batch.append(.init(id: rec.externalID, stored: stored, norm: rec.norm, text: rec.text,
                                   metadata: metadata, metadataJSON: rec.metadataJSON))
                if batch.count >= batchSize { try flush() }
            }
            if !batch.isEmpty { try flush() }
            try copyIDs(txn, old, record, name: name, map: map, into: fresh, target)
            if let index {
                let outcome: CompactedIndex = try fresh.write { t in
                    let current = try target.currentRecord(t)
                    if let remapper {
                        try remapper.finish(t, fresh.dbs, current)
                        return CompactedIndex(collection: name, carried: true, detail: remapper.detail)
                    }
                    if notCarried == nil, try index.kind.remap(source, into: t, fresh.dbs, current, name: name) == .remapped {
                        return CompactedIndex(collection: name, carried: true, detail: "\(index.kind.name) renumbered")
                    }
                    try VectorCollection.rebuild(t, fresh.dbs, index.kind, current, name: name,
                                                 threads: ProcessInfo.processInfo.activeProcessorCount)
                    return CompactedIndex(collection: name, carried: false,
                                          detail: notCarried ?? "rebuilt: \(index.kind.name) cannot be renumbered")
                }
                indexes.append(outcome)
            }
        }
        try fresh.env.sync()
        return (documents, tombstones, indexes)
    }

    /// Writes a compacted collection's ids as one sorted base and no runs: the old base and runs merged in
    /// id order, rows renumbered, appended (`MDB_APPEND`, which fills every page) in transactions of
    /// 100,000. Compaction creates collections in increasing id order, so each collection's keys sort
    /// after every key already in the new `ids`. An id stored twice, at a row that is not live, or at a
    /// row another id already names, is `corrupt`: with the count check at the end, the ids copied name
    /// each live row exactly once.
    private static func copyIDs(_ txn: Transaction, _ old: VecStore, _ record: CollectionRecord, name: String,
                                map: RowMap, into fresh: VecStore, _ target: VectorCollection) throws
    {
        var stream = try IDIndex(txn, old.dbs, record, name: name).sortedStream()
        let prefix = Format.prefix(target.collectionID)
        var copied = 0
        var chunk: [(key: [UInt8], row: [UInt8])] = []
        var named = [Bool](repeating: false, count: map.oldRow.count)
        repeat {
            // Read before the transaction, so that a transaction rerun for map growth writes the same chunk.
            chunk.removeAll(keepingCapacity: true)
            while chunk.count < 100_000, let (id, oldRow, _) = try stream.next() {
                let newRow = map.newRow[Int(oldRow)]
                guard newRow != RowMap.gone else {
                    throw VecStoreError.corrupt("\(name): id '\(String(decoding: id, as: UTF8.self))' maps to row \(oldRow), which is not live")
                }
                guard !named[Int(newRow)] else {
                    throw VecStoreError.corrupt("\(name): id '\(String(decoding: id, as: UTF8.self))' maps to row \(oldRow), which another id names")
                }
                named[Int(newRow)] = true
                chunk.append((prefix + id, Format.encodeInternalID(newRow)))
            }
            let entries = chunk
            try fresh.write { t in
                for (key, row) in entries where !(try t.putNew(fresh.dbs.ids, key, row, append: true)) {
                    throw VecStoreError.corrupt("\(name): id '\(String(decoding: key.dropFirst(4), as: UTF8.self))' is stored twice")
                }
            }
            copied += chunk.count
        } while chunk.count == 100_000
        guard copied == map.oldRow.count else {
            throw VecStoreError.corrupt("\(name): the id index holds \(copied) ids for \(map.oldRow.count) documents")
        }
    }

    /// Removes the store at `path`, with its `-lock` and `-guard` files, if it holds no collection and
    /// nothing else has it open: no other process, and no other handle of this one. Returns whether it
    /// was removed. `vecstore import` uses it to take back a store it created but never wrote to,
    /// without pulling the file from under another process that is filling it.
    @discardableResult
    public static func removeIfEmpty(path: String) -> Bool {
        Environment.removeUnused(path: path, sidecar: guardPath(path)) { env in
            let names = try env.read { txn in
                try txn.withCursor(Database.main) { (c: Cursor) throws -> [String] in
                    var names: [String] = []
                    var entry = try c.first()
                    while let e = entry {
                        names.append(String(decoding: e.key, as: UTF8.self))
                        entry = try c.next()
                    }
                    return names
                }
            }
            if names.isEmpty { return true }  // created, no database in it yet
            guard names.contains(Format.DB.meta) else { return false }
            let meta = try env.openDatabases([(Format.DB.meta, [])], create: false)[0]
            return try env.read { txn in
                try txn.withCursor(meta) { (c: Cursor) throws -> Bool in
                    guard let (key, _) = try c.seek(atLeast: Format.collectionPrefix) else { return true }
                    return !key.starts(with: Format.collectionPrefix)
                }
            }
        }
    }

    /// Removes `path` if it exists; any other failure is an error.
    private static func removeIfPresent(_ path: String) throws(VecStoreError) {
        if unlink(path) != 0 && errno != ENOENT {
            throw .io("could not remove \(path): \(String(cString: strerror(errno)))")
        }
    }

    func collectionNames(in txn: Transaction) throws -> [String] {
        try txn.withCursor(dbs.meta) { (c: Cursor) throws -> [String] in
            var names: [String] = []
            var entry = try c.seek(atLeast: Format.collectionPrefix)
            while let (key, _) = entry, key.starts(with: Format.collectionPrefix) {
                names.append(String(decoding: key.dropFirst(Format.collectionPrefix.count), as: UTF8.self))
                entry = try c.next()
            }
            return names
        }
    }

    /// `fsync` of the directory holding `path`, so a rename in it is durable.
    private static func syncDirectory(of path: String) throws(VecStoreError) {
        let dir = (path as NSString).deletingLastPathComponent
        let fd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { throw .io("could not open directory \(dir) to sync it: \(String(cString: strerror(errno)))") }
        defer { Glibc.close(fd) }
        if fsync(fd) != 0 { throw .io("could not sync directory \(dir): \(String(cString: strerror(errno)))") }
    }
}
