import LMDB

extension VecStore {
    /// Checks a collection's keyword index against its documents (Spec/BM25.md §Invariants): statistics,
    /// document frequencies and lengths of live documents, every live posting present with its term
    /// frequency, block headers and row order. Returns one message per fault.
    func verifyTextIndex(_ txn: Transaction, _ record: CollectionRecord, name: String) throws -> [String] {
        var faults: [String] = []
        let prefix = Format.prefix(record.id)
        guard let infoValue = try txn.get(dbs.textinfo, prefix) else {
            // A collection never written to has no text record; then nothing may be indexed.
            var any = false
            for db in [dbs.terms, dbs.postings, dbs.doclens] {
                try txn.withCursor(db) { (c: Cursor) throws -> Void in
                    if let (key, _) = try c.seek(atLeast: prefix), key.starts(with: prefix) { any = true }
                }
            }
            return any ? ["\(name): keyword index entries without a textinfo record"] : []
        }
        let info: TextInfo
        do { info = try TextInfo.decode(infoValue, context: "textinfo of \(name)") } catch { return ["\(error)"] }
        let analyzer: Analyzer
        do { analyzer = try Analyzer(info.options.analyzer) } catch { return ["\(name): \(error)"] }
        let searcher = try BM25Searcher(txn, dbs, collection: record.id, name: name, info: info)

        // What the live documents imply.
        var expected: [String: [UInt32: UInt32]] = [:]
        var docCount: UInt32 = 0
        var totalLength: UInt64 = 0
        var live = Set<UInt32>()
        if info.options.enabled {
            try txn.withCursor(dbs.docs) { (c: Cursor) throws -> Void in
                var entry = try c.seek(atLeast: prefix)
                while let (key, value) = entry, key.starts(with: prefix) {
                    let row = readBE32(key, at: 4)
                    live.insert(row)
                    let doc = try DocumentRecord.decode(value, context: "\(name) docs row \(row)")
                    if let text = doc.text {
                        var counts: [String: UInt32] = [:]
                        analyzer.analyze(text) { counts[$0, default: 0] += 1 }
                        let length = counts.values.reduce(0, +)
                        if length > 0 {
                            docCount += 1
                            totalLength += UInt64(length)
                            if searcher.length(row) != length {
                                faults.append("\(name): row \(row) stored length \(searcher.length(row)), text has \(length) terms")
                            }
                        }
                        for (term, tf) in counts { expected[term, default: [:]][row] = tf }
                    }
                    entry = try c.next()
                }
            }
        }
        if info.docCount != docCount || info.totalLength != totalLength {
            faults.append("\(name): text statistics say \(info.docCount) documents / \(info.totalLength) terms, documents give \(docCount) / \(totalLength)")
        }

        // The dictionary and postings as stored.
        var seenTerms = Set<String>()
        var termIDs = Set<UInt32>()
        let rows = UnsafeMutablePointer<UInt32>.allocate(capacity: TextFormat.blockSize)
        let tfs = UnsafeMutablePointer<UInt32>.allocate(capacity: TextFormat.blockSize)
        defer { rows.deallocate(); tfs.deallocate() }
        var entries: [(String, TermEntry)] = []
        try txn.withCursor(dbs.terms) { (c: Cursor) throws -> Void in
            var e = try c.seek(atLeast: prefix)
            while let (key, value) = e, key.starts(with: prefix) {
                let term = String(decoding: UnsafeRawBufferPointer(rebasing: key[4...]), as: UTF8.self)
                do { entries.append((term, try TermEntry.decode(value, context: "\(name) term '\(term)'"))) } catch {
                    faults.append("\(error)")
                }
                e = try c.next()
            }
        }
        for (term, entry) in entries {
            seenTerms.insert(term)
            if !termIDs.insert(entry.termID).inserted { faults.append("\(name): term id \(entry.termID) used twice") }
            if entry.termID >= info.nextTermID { faults.append("\(name): term '\(term)' id \(entry.termID) ≥ next id \(info.nextTermID)") }
            let want = expected[term] ?? [:]
            if Int(entry.df) != want.count { faults.append("\(name): term '\(term)' df \(entry.df), live documents give \(want.count)") }
            var found: [UInt32: UInt32] = [:]
            var postings = 0, blocks = 0
            var lastRow: Int64 = -1
            let start = TextFormat.postingKey(record.id, entry.termID, 0)
            let termPrefix = Array(start[0..<8])
            try txn.withCursor(dbs.postings) { (c: Cursor) throws -> Void in
                var e = try c.seek(atLeast: start)
                while let (key, value) = e, key.starts(with: termPrefix) {
                    defer { blocks += 1 }
                    if key.count != 12 || readBE32(key, at: 8) != UInt32(blocks) {
                        faults.append("\(name): term '\(term)' block keys not numbered 0, 1, …")
                    }
                    let h: PostingBlock.Header
                    do { h = try PostingBlock.header(value, context: "\(name) term '\(term)'") } catch {
                        faults.append("\(error)"); e = try c.next(); continue
                    }
                    guard PostingBlock.decode(value, count: h.count, firstRow: h.firstRow, lastRow: h.lastRow, rows: rows, tfs: tfs) else {
                        faults.append("\(name): term '\(term)' block \(blocks) does not decode"); e = try c.next(); continue
                    }
                    var maxTF: UInt32 = 0, minLength = UInt32.max
                    for i in 0..<h.count {
                        if Int64(rows[i]) <= lastRow { faults.append("\(name): term '\(term)' rows not increasing at \(rows[i])") }
                        lastRow = Int64(rows[i])
                        if rows[i] >= record.nextInternalID { faults.append("\(name): term '\(term)' posting for row \(rows[i]) ≥ rows") }
                        if tfs[i] == 0 { faults.append("\(name): term '\(term)' zero tf at row \(rows[i])") }
                        maxTF = max(maxTF, tfs[i])
                        minLength = min(minLength, searcher.length(rows[i]))
                        if live.contains(rows[i]) { found[rows[i]] = tfs[i] }
                    }
                    if h.maxTF < min(maxTF, 65_535) || h.minLength > minLength {
                        faults.append("\(name): term '\(term)' block \(blocks) header bound (tf \(h.maxTF), length \(h.minLength)) below its postings")
                    }
                    postings += h.count
                    e = try c.next()
                }
            }
            if blocks != Int(entry.blocks) || postings != Int(entry.postings) {
                faults.append("\(name): term '\(term)' has \(blocks) blocks / \(postings) postings, entry says \(entry.blocks) / \(entry.postings)")
            }
            if found != want { faults.append("\(name): term '\(term)' live postings differ from its documents' text") }
        }
        for term in expected.keys where !seenTerms.contains(term) {
            faults.append("\(name): term '\(term)' of a live document is missing from the dictionary")
        }
        return faults
    }
}

extension VectorCollection {
    /// Checks the keyword index against the stored documents; returns the faults found (empty when sound).
    public func verifyTextIndex() throws(VecStoreError) -> [String] {
        try store.read { txn in try store.verifyTextIndex(txn, try currentRecord(txn), name: name) }
    }
}
