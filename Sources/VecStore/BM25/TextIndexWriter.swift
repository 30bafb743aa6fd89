import LMDB

/// Keeps a collection's keyword index in step with a batch of writes, inside the batch's write
/// transaction (driven by `CollectionWriter`). Added documents' postings are gathered per term and
/// appended at `finish` — rows only grow, so a term's new postings go after its last block, whose
/// free slots are filled first. Deleted documents keep their postings (tombstones filtered by the
/// live bitmap at query time, dropped by compaction) but leave the statistics at once: document
/// frequencies, N and total length count live documents only.
struct TextIndexWriter {
    let txn: Transaction
    let dbs: Databases
    let collection: UInt32
    let name: String
    private(set) var info: TextInfo
    private var changed = false
    private var analyzer: Analyzer?
    /// New postings of this batch by term, rows ascending.
    private var pending: [String: (rows: [UInt32], tfs: [UInt32])] = [:]
    /// Change of live document frequency by term.
    private var dfDelta: [String: Int64] = [:]
    /// Document-length blocks changed in this batch.
    private var lengthEdits: [UInt32: [UInt32]] = [:]
    private var counts: [String: UInt32] = [:]

    init(_ txn: Transaction, _ dbs: Databases, collection: UInt32, name: String) throws {
        self.txn = txn
        self.dbs = dbs
        self.collection = collection
        self.name = name
        if let value = try txn.get(dbs.textinfo, Format.prefix(collection)) {
            info = try TextInfo.decode(value, context: "textinfo of \(name)")
        } else {
            info = TextInfo(options: TextIndexOptions())
            changed = true
        }
    }

    private mutating func termCounts(_ text: String) throws -> [String: UInt32] {
        if analyzer == nil {
            do { analyzer = try Analyzer(info.options.analyzer) } catch {
                throw VecStoreError.invalidArgument("collection \(name): \(error)")
            }
        }
        counts.removeAll(keepingCapacity: true)
        analyzer!.analyze(text) { counts[$0, default: 0] += 1 }
        return counts
    }

    /// Indexes the text of a newly appended row (rows must come in increasing order).
    mutating func add(row: UInt32, text: String?) throws {
        guard info.options.enabled, let text else { return }
        let counts = try termCounts(text)
        var length: UInt32 = 0
        for (term, tf) in counts {
            length += tf
            pending[term, default: ([], [])].rows.append(row)
            pending[term]!.tfs.append(tf)
            dfDelta[term, default: 0] += 1
        }
        guard length > 0 else { return }
        try setLength(row, length)
        info.docCount += 1
        info.totalLength += UInt64(length)
        changed = true
    }

    /// Takes a deleted row's terms out of the statistics (its postings stay until compaction).
    mutating func remove(row: UInt32, text: String?) throws {
        guard info.options.enabled, let text else { return }
        let counts = try termCounts(text)
        var length: UInt32 = 0
        for (term, tf) in counts {
            length += tf
            dfDelta[term, default: 0] -= 1
        }
        guard length > 0 else { return }
        info.docCount -= 1
        info.totalLength -= UInt64(length)
        changed = true
    }

    private mutating func setLength(_ row: UInt32, _ length: UInt32) throws {
        let block = row >> TextFormat.lengthBlockShift
        if lengthEdits[block] == nil {
            if let existing = try txn.get(dbs.doclens, Format.key(collection, block)) {
                guard existing.count == TextFormat.lengthBlockRows * 4 else {
                    throw VecStoreError.corrupt("collection \(name): length block \(block) has \(existing.count) bytes")
                }
                lengthEdits[block] = Array(existing.bindMemory(to: UInt32.self)).map { UInt32(littleEndian: $0) }
            } else {
                lengthEdits[block] = [UInt32](repeating: 0, count: TextFormat.lengthBlockRows)
            }
        }
        lengthEdits[block]![Int(row & UInt32(TextFormat.lengthBlockRows - 1))] = length
    }

    /// The stored (or pending) length of `row`.
    private func length(_ row: UInt32) throws -> UInt32 {
        let block = row >> TextFormat.lengthBlockShift
        let slot = Int(row & UInt32(TextFormat.lengthBlockRows - 1))
        if let edits = lengthEdits[block] { return edits[slot] }
        guard let existing = try txn.get(dbs.doclens, Format.key(collection, block)),
              existing.count == TextFormat.lengthBlockRows * 4 else { return 0 }
        return UInt32(littleEndian: existing.loadUnaligned(fromByteOffset: slot * 4, as: UInt32.self))
    }

    /// Writes postings, term entries, lengths and the text record.
    mutating func finish() throws {
        for (block, lengths) in lengthEdits {
            try txn.reserve(dbs.doclens, Format.key(collection, block), count: lengths.count * 4) { out in
                let words = out.bindMemory(to: UInt32.self)
                for (i, v) in lengths.enumerated() { words[i] = v.littleEndian }
            }
        }
        // Terms in key order: puts into LMDB are cheapest in order.
        let terms = Set(pending.keys).union(dfDelta.keys).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        for term in terms {
            let key = TextFormat.termKey(collection, term)
            var entry: TermEntry
            if let value = try txn.get(dbs.terms, key) {
                entry = try TermEntry.decode(value, context: "collection \(name) term '\(term)'")
            } else {
                entry = TermEntry(termID: info.nextTermID, df: 0, postings: 0, blocks: 0)
                info.nextTermID += 1
                changed = true
            }
            let delta = dfDelta[term] ?? 0
            let df = Int64(entry.df) + delta
            guard df >= 0 else {
                throw VecStoreError.corrupt("collection \(name): document frequency of '\(term)' would fall below 0")
            }
            entry.df = UInt32(df)
            if let (rows, tfs) = pending[term] {
                try appendPostings(&entry, rows: rows, tfs: tfs)
            }
            try txn.put(dbs.terms, key, entry.encoded())
        }
        pending.removeAll()
        dfDelta.removeAll()
        lengthEdits.removeAll()
        if changed { try txn.put(dbs.textinfo, Format.prefix(collection), info.encoded()) }
        changed = false
    }

    private func appendPostings(_ entry: inout TermEntry, rows newRows: [UInt32], tfs newTFs: [UInt32]) throws {
        var rows = newRows, tfs = newTFs
        var block = entry.blocks
        if entry.blocks > 0 {
            // Refill the last block when it has room.
            let last = entry.blocks - 1
            let key = TextFormat.postingKey(collection, entry.termID, last)
            guard let value = try txn.get(dbs.postings, key) else {
                throw VecStoreError.corrupt("collection \(name): posting block \(last) of term id \(entry.termID) missing")
            }
            let h = try PostingBlock.header(value, context: "collection \(name) term id \(entry.termID) block \(last)")
            if h.count < TextFormat.blockSize {
                var oldRows = [UInt32](repeating: 0, count: h.count), oldTFs = [UInt32](repeating: 0, count: h.count)
                let ok = oldRows.withUnsafeMutableBufferPointer { r in
                    oldTFs.withUnsafeMutableBufferPointer { t in
                        PostingBlock.decode(value, count: h.count, firstRow: h.firstRow, lastRow: h.lastRow,
                                            rows: r.baseAddress!, tfs: t.baseAddress!)
                    }
                }
                guard ok else { throw VecStoreError.corrupt("collection \(name): posting block \(last) of term id \(entry.termID) is damaged") }
                guard h.lastRow < rows[0] else {
                    throw VecStoreError.corrupt("collection \(name): posting rows out of order for term id \(entry.termID)")
                }
                rows = oldRows + rows
                tfs = oldTFs + tfs
                block = last
            }
        }
        var start = 0
        while start < rows.count {
            let end = min(rows.count, start + TextFormat.blockSize)
            var lengths: [UInt32] = []
            lengths.reserveCapacity(end - start)
            for r in rows[start..<end] { lengths.append(try length(r)) }
            var li = 0
            let bytes = PostingBlock.encode(rows: rows[start..<end], tfs: tfs[start..<end]) { _ in
                defer { li += 1 }
                return lengths[li]
            }
            try txn.put(dbs.postings, TextFormat.postingKey(collection, entry.termID, block), bytes)
            block += 1
            start = end
        }
        entry.postings += UInt32(newRows.count)
        entry.blocks = block
    }

    /// Drops the whole index of the collection (terms, postings, lengths) and resets statistics,
    /// keeping the options, so it can be rebuilt.
    mutating func clear() throws {
        let prefix = Format.prefix(collection)
        for db in [dbs.terms, dbs.postings, dbs.doclens] {
            try txn.withCursor(db) { (c: Cursor) throws -> Void in
                while let (key, _) = try c.seek(atLeast: prefix), key.starts(with: prefix) { try c.deleteCurrent() }
            }
        }
        info.nextTermID = 0
        info.docCount = 0
        info.totalLength = 0
        pending.removeAll()
        dfDelta.removeAll()
        lengthEdits.removeAll()
        changed = true
    }

    /// Sets new options (the caller rebuilds when the analysis changes).
    mutating func setOptions(_ options: TextIndexOptions) {
        info.options = options
        analyzer = nil
        changed = true
    }
}
