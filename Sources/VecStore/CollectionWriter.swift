import Foundation
import LMDB
import VecStoreIO
import VecStoreKernels

/// Applies one batch of changes to a collection inside a write transaction: appends vector rows
/// (rewriting only the tail block), keeps the live bitmap, documents, id map and field index in step,
/// and writes the collection record last. All state lives in the transaction, so an aborted (or
/// retried) transaction leaves nothing behind.
struct CollectionWriter {
    let txn: Transaction
    let dbs: Databases
    let name: String
    var record: CollectionRecord
    /// Live bitmap blocks changed in this batch, written once at `finish`.
    private var liveEdits: [UInt32: [UInt8]] = [:]
    /// Rows at the start of the batch: rows from here on were appended by it (the index adds them).
    let initialNextID: UInt32
    /// Rows deleted by this batch (the index removes them or repairs around them).
    var deletedRows: [UInt32] = []
    /// The collection's vector index kind, or nil for a flat collection (Index/VectorIndex.swift).
    let indexKind: (any VectorIndexKind.Type)?
    /// Whether `finish` brings the index up to date; compaction turns it off while it copies rows and
    /// carries the index over (or rebuilds it) once at the end.
    var updatesIndex = true
    /// The keyword index, updated in the same transaction (BM25/TextIndexWriter.swift).
    var text: TextIndexWriter
    /// The vector blocks as the transaction found them, resolved before its first append when the
    /// collection has an index (the index update reads old rows from these unwritten pages).
    var preBatch: CollectionView?
    /// The rows appended by this batch, with the old rows of the tail block before them.
    var appended: BatchVectors?
    /// Index blocks the last index update wrote (tests check a small batch writes few).
    var indexBlocksWritten = 0
    /// How much of a graph's unlinked tail the index update links: every row (`.all`, single writes), or
    /// only in large steps (mode `.deferred`, bulk import batches; Spec/HNSW.md §4.1).
    var indexLinking: IndexLinking = .all
    /// Cores the index update and the keyword index's text analysis may use (`ImportOptions.indexThreads`).
    var indexThreads = ProcessInfo.processInfo.activeProcessorCount
    /// The external-id index (IDIndex.swift): base plus levelled runs.
    var ids: IDIndex
    /// Whether the batch keeps the id index: compaction copies rows without it and writes each
    /// collection's ids afterwards as one sorted base.
    var writesIDs = true

    init(_ txn: Transaction, _ dbs: Databases, name: String, record: CollectionRecord) throws {
        self.txn = txn
        self.dbs = dbs
        self.name = name
        self.record = record
        self.initialNextID = record.nextInternalID
        self.text = try TextIndexWriter(txn, dbs, collection: record.id, name: name)
        self.indexKind = try IndexRegistry.find(txn, dbs, record)?.kind
        self.ids = try IDIndex(txn, dbs, record, name: name)
        self.linkedFields = try HNSWFilterLinks.load(txn, dbs, record.id)
    }

    /// Metadata fields the collection's graph keeps filter links on (Spec/HNSW.md §7): each may hold at
    /// most one value per document, checked before anything of a batch is written.
    private let linkedFields: [String]

    /// Refuses a document whose linked field holds more than one distinct value (an array), before the
    /// batch writes anything: linked later (a step or `index build`), it would make every linking write fail.
    private func checkLinkedFields(_ docs: [Prepared]) throws {
        guard !linkedFields.isEmpty else { return }
        for doc in docs {
            for field in linkedFields {
                guard case .array(let items)? = doc.metadata[field] else { continue }
                let keys = Set(items.compactMap { FieldKey.key(record.id, field, $0)?.key })
                if keys.count > 1 {
                    throw VecStoreError.invalidMetadata(
                        id: doc.id, reason: "field '\(field)' holds several values (an array) in collection \(name), "
                            + "which has filter links on it; filter links need one value per document")
                }
            }
        }
    }

    /// A validated document ready to write: its vector as stored (unit length for cosine) and the norm
    /// of the vector as given.
    struct Prepared {
        var id: String
        var stored: [Float]
        var norm: Float
        var text: String?
        var metadata: [String: JSONValue]
        var metadataJSON: [UInt8]
    }

    // MARK: Live bitmap

    private mutating func setLive(_ row: UInt32, _ live: Bool) throws {
        let block = row / UInt32(Format.liveBlockIDs)
        var bitmap: [UInt8]
        if let edited = liveEdits.removeValue(forKey: block) {
            bitmap = edited
        } else if let existing = try txn.get(dbs.live, Format.key(record.id, block)) {
            bitmap = Array(existing)
        } else {
            bitmap = [UInt8](repeating: 0, count: Format.liveBlockBytes)
        }
        let bit = Int(row % UInt32(Format.liveBlockIDs))
        if live {
            bitmap[bit / 8] |= UInt8(1 << (bit % 8))
        } else {
            bitmap[bit / 8] &= ~UInt8(1 << (bit % 8))
        }
        liveEdits[block] = bitmap
    }

    // MARK: Deleting

    /// Deletes the document stored at `row`: its record, field-index entries and live bit (the caller
    /// removes or replaces its id entry).
    mutating func deleteRow(_ row: UInt32) throws {
        let docKey = Format.key(record.id, row)
        guard let value = try txn.get(dbs.docs, docKey) else {
            throw VecStoreError.corrupt("collection \(name): id map points at row \(row), which has no document")
        }
        let doc = try DocumentRecord.decode(value, context: "docs row \(row)")
        if !doc.metadataJSON.isEmpty {
            let parsed = try doc.metadataJSON.withUnsafeBytes { try JSONValue.parse($0) }
            if case .object(let metadata) = parsed {
                let rowValue = Self.rowValue(row)
                for key in FieldKey.keys(record.id, metadata) { try txn.delete(dbs.fields, key, value: rowValue) }
            }
        }
        try text.remove(row: row, text: doc.text)
        try txn.delete(dbs.docs, docKey)
        try setLive(row, false)
        deletedRows.append(row)
        guard record.liveCount > 0 else {
            throw VecStoreError.corrupt("collection \(name): deleting row \(row) from a collection whose record counts 0 live documents")
        }
        record.liveCount -= 1
    }

    /// Deletes by external id; returns false when the id is not stored.
    mutating func delete(id: String) throws -> Bool {
        guard let row = try ids.remove(id) else { return false }
        try deleteRow(row)
        return true
    }

    static func rowValue(_ row: UInt32) -> [UInt8] {
        var b: [UInt8] = []
        b.appendBE(row)
        return b
    }

    // MARK: Appending

    /// Writes documents as new rows. With `replace`, an id already stored is deleted first (upsert);
    /// without it, an existing id throws `idExists`.
    mutating func append(_ docs: [Prepared], replace: Bool) throws {
        guard !docs.isEmpty else { return }
        try checkLinkedFields(docs)
        let start = record.nextInternalID
        guard UInt64(start) + UInt64(docs.count) < UInt64(UInt32.max) else {
            throw VecStoreError.invalidArgument("collection \(name) is full (2^32 rows); compact it")
        }
        // Stored ids, looked up in byte order; an upsert keeps each id where it lives.
        var places = [IDIndex.Place?](repeating: nil, count: docs.count)
        if writesIDs {
            for (i, found) in try ids.lookupAll(docs.map(\.id)).enumerated() {
                guard let found else { continue }
                if !replace { throw VecStoreError.idExists(docs[i].id) }
                try deleteRow(found.row)
                places[i] = found.place
            }
        }
        if preBatch == nil, appended == nil, indexKind != nil, updatesIndex {
            preBatch = try CollectionView(txn, dbs, record, name: name, vectorsOnly: true)
        }
        try appendRows(docs, start: start)
        for (i, doc) in docs.enumerated() {
            let row = start + UInt32(i)
            let rec = DocumentRecord(externalID: doc.id, norm: doc.norm, text: doc.text, metadataJSON: doc.metadataJSON)
            try txn.put(dbs.docs, Format.key(record.id, row), rec.encoded())
            if let place = places[i] {
                try ids.replace(doc.id, row: row, at: place)
            } else if writesIDs {
                ids.add(doc.id, row: row)
            }
            let rowValue = Self.rowValue(row)
            for key in FieldKey.keys(record.id, doc.metadata) { try txn.put(dbs.fields, key, rowValue) }
            try setLive(row, true)
        }
        try text.add(firstRow: start, texts: docs.map(\.text), threads: indexThreads)
        record.nextInternalID = start + UInt32(docs.count)
        record.liveCount += UInt32(docs.count)
    }

    /// Appends vector rows block by block: a partly filled tail block is rewritten with the new rows
    /// after the old ones, and each block value is written once, in place (`MDB_RESERVE`).
    private mutating func appendRows(_ docs: [Prepared], start: UInt32) throws {
        let dim = record.dimension
        let shift = UInt32(record.blockShift)
        let capacity = record.blockCapacity
        let end = Int(start) + docs.count
        var next = 0  // index into docs
        var block = start >> shift
        while Int(block) << shift < end {
            let blockStart = Int(block) << shift
            let oldCount = max(0, Int(start) - blockStart)
            let newCount = min(capacity, end - blockStart)
            let key = Format.key(record.id, block)
            var old: [Float] = []
            if oldCount > 0 {
                guard let existing = try txn.get(dbs.vectors, key), existing.count == oldCount * (dim + 1) * 4 else {
                    throw VecStoreError.corrupt("collection \(name): tail vector block \(block) does not hold \(oldCount) rows")
                }
                old = [Float](repeating: 0, count: oldCount * (dim + 1))
                old.withUnsafeMutableBytes { $0.copyMemory(from: existing) }
            }
            let added = newCount - oldCount
            let first = next
            if preBatch != nil {
                if appended == nil {
                    let batch = BatchVectors(firstRow: UInt32(blockStart), dimension: dim, capacity: oldCount + docs.count)
                    old.withUnsafeBufferPointer { o in
                        guard let base = o.baseAddress else { return }
                        for r in 0..<oldCount { batch.append(base + r * dim) }
                    }
                    appended = batch
                }
                if let batch = appended {
                    for j in 0..<added { docs[first + j].stored.withUnsafeBufferPointer { v in
                        if let base = v.baseAddress { batch.append(base) }
                    } }
                }
            }
            try txn.reserve(dbs.vectors, key, count: newCount * (dim + 1) * 4) { out in
                let floats = out.bindMemory(to: Float.self)
                if oldCount > 0 {
                    old.withUnsafeBufferPointer { o in
                        // old vectors, then old norms, each to its place in the larger block
                        _ = UnsafeMutableBufferPointer(rebasing: floats[0..<(oldCount * dim)])
                            .initialize(from: o[0..<(oldCount * dim)])
                        _ = UnsafeMutableBufferPointer(rebasing: floats[(newCount * dim)..<(newCount * dim + oldCount)])
                            .initialize(from: o[(oldCount * dim)..<(oldCount * (dim + 1))])
                    }
                }
                for j in 0..<added {
                    let doc = docs[first + j]
                    let row = oldCount + j
                    doc.stored.withUnsafeBufferPointer { v in
                        _ = UnsafeMutableBufferPointer(rebasing: floats[(row * dim)..<((row + 1) * dim)]).initialize(from: v)
                        floats[newCount * dim + row] = squaredNorm(doc.stored)
                    }
                }
            }
            next += added
            block += 1
        }
    }

    /// Writes the changed live blocks, the index's changes and the collection record.
    mutating func finish() throws {
        for (block, bytes) in liveEdits { try txn.put(dbs.live, Format.key(record.id, block), bytes) }
        liveEdits.removeAll()
        if updatesIndex { try updateIndex() }
        try ids.finish(liveCount: record.liveCount, rows: record.nextInternalID)
        try text.finish()
        try txn.put(dbs.meta, Format.collectionKey(name), record.encoded())
    }

    /// Brings the collection's vector index (if it has one) up to date with this batch, inside its
    /// transaction. Vectors come from the snapshot before the batch (pages this transaction has not
    /// written, which stay in place until it commits) and from the batch's own rows (`appended`), never
    /// from pages written in this transaction, which LMDB may spill and free in a large transaction.
    private mutating func updateIndex() throws {
        guard let kind = indexKind else { return }
        let added = initialNextID..<record.nextInternalID
        let deleted = deletedRows.filter { $0 < initialNextID }
        if deleted.isEmpty && added.isEmpty { return }
        let before = try preBatch ?? CollectionView(txn, dbs, record, name: name, vectorsOnly: true)
        let vectors = VectorTable(before, appended: appended)
        defer { vectors.deallocate() }
        let liveWords = try CollectionView.liveWords(txn, dbs, record, name: name)
        var writer = try kind.makeWriter(txn, dbs, record, name: name)
        try writer.apply(IndexBatch(record: record, appended: added, deleted: deleted, vectors: vectors,
                                    liveWords: liveWords, threads: indexThreads,
                                    linking: indexLinking))
        indexBlocksWritten = writer.blocksWritten
    }
}
