import LMDB
import VecStoreKernels

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
    /// Terms touched in this batch → slot in the arrays below.
    private var slots: [String: Int] = [:]
    private var slotTerms: [String] = []
    /// New postings of this batch by slot, rows ascending.
    private var slotRows: [[UInt32]] = []
    private var slotTFs: [[UInt32]] = []
    /// Change of live document frequency by slot.
    private var slotDF: [Int64] = []
    /// Document-length blocks changed in this batch.
    private var lengthEdits: [UInt32: [UInt32]] = [:]
    /// Per-document scratch: analyzer term ids seen, tf by id, and batch slot by id (−1 = none yet).
    private var touched: [Int32] = []
    private var localCounts: [UInt32] = []
    private var localSlots: [Int32] = []

    private mutating func slot(_ term: String) -> Int {
        if let s = slots[term] { return s }
        let s = slotTerms.count
        slots[term] = s
        slotTerms.append(term)
        slotRows.append([])
        slotTFs.append([])
        slotDF.append(0)
        return s
    }

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

    /// The writer's own analyzer (deletes and one-row adds), made on first use.
    private mutating func currentAnalyzer() throws -> Analyzer {
        if let analyzer { return analyzer }
        do {
            let a = try Analyzer(info.options.analyzer)
            analyzer = a
            return a
        } catch {
            throw VecStoreError.invalidArgument("collection \(name): \(error)")
        }
    }

    /// Analyses `text` into `touched` (distinct analyzer term ids) and `localCounts` (tf by id).
    private mutating func countTerms(_ text: String) throws {
        let a = try currentAnalyzer()
        touched.removeAll(keepingCapacity: true)
        a.analyzeIDs(text) { id in
            let i = Int(id)
            if i >= localCounts.count {
                localCounts.append(contentsOf: repeatElement(0, count: max(i + 1 - localCounts.count, 1024)))
                localSlots.append(contentsOf: repeatElement(-1, count: localCounts.count - localSlots.count))
            }
            if localCounts[i] == 0 { touched.append(id) }
            localCounts[i] += 1
        }
    }

    /// The batch slot of an analyzer term id.
    @inline(__always)
    private mutating func slot(local id: Int32, _ analyzer: Analyzer) -> Int {
        let s = localSlots[Int(id)]
        if s >= 0 { return Int(s) }
        let new = slot(analyzer.term(id))
        localSlots[Int(id)] = Int32(new)
        return new
    }

    /// Indexes the text of a newly appended row (rows must come in increasing order).
    mutating func add(row: UInt32, text: String?) throws {
        guard info.options.enabled, let text else { return }
        try countTerms(text)
        let analyzer = try currentAnalyzer()
        var length: UInt32 = 0
        for id in touched {
            let tf = localCounts[Int(id)]
            localCounts[Int(id)] = 0
            length += tf
            let s = slot(local: id, analyzer)
            slotRows[s].append(row)
            slotTFs[s].append(tf)
            slotDF[s] += 1
        }
        guard length > 0 else { return }
        try setLength(row, length)
        info.docCount += 1
        info.totalLength += UInt64(length)
        changed = true
    }

    /// Texts per worker from which `add(firstRow:texts:threads:)` analyses on more than one core: below it
    /// a second worker's start costs more than the analysis it takes over.
    static let textsPerWorker = 256
    /// At most this many workers analyse one batch: `AnalyzerPool` keeps 16 idle analyzers per option set
    /// (each with a stemming cache of up to 200k tokens), so more would be created and dropped every batch.
    static let maxTextWorkers = 16

    /// Indexes the texts of newly appended rows `firstRow, firstRow + 1, …` (nil: a row without text): the
    /// same index as `add(row:text:)` for each row in order. The texts are analysed on up to `threads` cores
    /// (contiguous runs of at least `textsPerWorker`, each with an analyzer from `AnalyzerPool.shared`, whose
    /// caches of stemmed tokens outlive the batch); the postings are then gathered in row order on the
    /// calling thread.
    mutating func add(firstRow: UInt32, texts: [String?], threads: Int) throws {
        // A batch without texts needs no analyzer (and so cannot fail on the collection's analyzer options).
        guard info.options.enabled, texts.contains(where: { $0 != nil }) else { return }
        let options = info.options.analyzer
        let workers = max(1, min(threads, Self.maxTextWorkers, texts.count / Self.textsPerWorker))
        let parts = QueryWorkers.map(count: workers, threads: workers,
                                     placeholder: Result<AnalysedTexts, AnalyzerError>.success(AnalysedTexts())) { chunks, put in
            for w in chunks {
                let lower = texts.count * w / workers, upper = texts.count * (w + 1) / workers
                put(w, AnalysedTexts.analyse(texts[lower..<upper], options: options))
            }
        }
        var row = firstRow
        for part in parts {
            let analysed: AnalysedTexts
            switch part {
            case .success(let a): analysed = a
            case .failure(let error): throw VecStoreError.invalidArgument("collection \(name): \(error)")
            }
            // Batch slot of each of the part's terms, looked up once per part.
            let partSlots = analysed.terms.map { slot($0) }
            var start = 0
            for end in analysed.ends {
                defer { row += 1 }
                guard let end else { continue }  // no text
                let first = start
                start = end
                var length: UInt32 = 0
                for e in first..<end {
                    let tf = analysed.counts[e]
                    length += tf
                    let s = partSlots[Int(analysed.entries[e])]
                    slotRows[s].append(row)
                    slotTFs[s].append(tf)
                    slotDF[s] += 1
                }
                guard length > 0 else { continue }
                try setLength(row, length)
                info.docCount += 1
                info.totalLength += UInt64(length)
                changed = true
            }
        }
        // Every text has its entry in its part's `ends`: the rows numbered are exactly the batch's.
        guard row == firstRow &+ UInt32(texts.count) else {
            throw VecStoreError.corrupt("collection \(name): text analysis of rows \(firstRow)… gave \(row &- firstRow) documents for \(texts.count)")
        }
    }

    /// Takes a deleted row's terms out of the statistics (its postings stay until compaction).
    mutating func remove(row: UInt32, text: String?) throws {
        guard info.options.enabled, let text else { return }
        try countTerms(text)
        let analyzer = try currentAnalyzer()
        var length: UInt32 = 0
        for id in touched {
            length += localCounts[Int(id)]
            localCounts[Int(id)] = 0
            slotDF[slot(local: id, analyzer)] -= 1
        }
        guard length > 0 else { return }
        guard info.docCount > 0, info.totalLength >= UInt64(length) else {
            throw VecStoreError.corrupt(
                "collection \(name): text statistics (\(info.docCount) documents, \(info.totalLength) terms) are smaller than the deleted document")
        }
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
                lengthEdits[block] = (0..<TextFormat.lengthBlockRows).map {
                    UInt32(littleEndian: existing.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))
                }
            } else {
                lengthEdits[block] = [UInt32](repeating: 0, count: TextFormat.lengthBlockRows)
            }
        }
        lengthEdits[block, default: []][Int(row & UInt32(TextFormat.lengthBlockRows - 1))] = length
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
        let order = slotTerms.indices.sorted { slotTerms[$0].utf8.lexicographicallyPrecedes(slotTerms[$1].utf8) }
        for s in order {
            let term = slotTerms[s]
            let key = TextFormat.termKey(collection, term)
            var entry: TermEntry
            if let value = try txn.get(dbs.terms, key) {
                entry = try TermEntry.decode(value, context: "collection \(name) term '\(term)'")
            } else {
                entry = TermEntry(termID: info.nextTermID, df: 0, postings: 0, blocks: 0)
                info.nextTermID += 1
                changed = true
            }
            let delta = slotDF[s]
            let df = Int64(entry.df) + delta
            guard df >= 0 else {
                throw VecStoreError.corrupt("collection \(name): document frequency of '\(term)' would fall below 0")
            }
            entry.df = UInt32(df)
            if !slotRows[s].isEmpty {
                try appendPostings(&entry, rows: slotRows[s], tfs: slotTFs[s])
            }
            try txn.put(dbs.terms, key, entry.encoded())
        }
        resetSlots()
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
                let scratch = UnsafeMutablePointer<UInt32>.allocate(capacity: 2 * h.count)
                defer { scratch.deallocate() }
                let ok = PostingBlock.decode(value, count: h.count, firstRow: h.firstRow, lastRow: h.lastRow,
                                             rows: scratch, tfs: scratch + h.count)
                let oldRows = Array(UnsafeBufferPointer(start: scratch, count: h.count))
                let oldTFs = Array(UnsafeBufferPointer(start: scratch + h.count, count: h.count))
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

    private mutating func resetSlots() {
        for i in localSlots.indices { localSlots[i] = -1 }
        slots.removeAll()
        slotTerms.removeAll()
        slotRows.removeAll()
        slotTFs.removeAll()
        slotDF.removeAll()
    }

    /// Drops the whole index of the collection (terms, postings, lengths) and resets statistics,
    /// keeping the options, so it can be rebuilt.
    mutating func clear() throws {
        let prefix = Format.prefix(collection)
        for db in [dbs.terms, dbs.postings, dbs.doclens] {
            try txn.deletePrefix(db, prefix)
        }
        info.nextTermID = 0
        info.docCount = 0
        info.totalLength = 0
        resetSlots()
        lengthEdits.removeAll()
        changed = true
    }

    /// Sets new options (the caller rebuilds when the analysis changes).
    mutating func setOptions(_ options: TextIndexOptions) {
        info.options = options
        analyzer = nil
        localCounts.removeAll()
        localSlots.removeAll()
        changed = true
    }
}

/// The analysed texts of a run of documents: for each document its distinct terms, as indexes into `terms`,
/// with their counts (`AnalysedTexts.analyse`).
struct AnalysedTexts: Sendable {
    /// The distinct terms of the run, in order of first appearance.
    var terms: [String] = []
    /// Term index (into `terms`) of each (document, distinct term), documents in order.
    var entries: [UInt32] = []
    /// Term frequency of each entry.
    var counts: [UInt32] = []
    /// Per document, the end of its entries (its entries start where the previous document's end), or nil
    /// for a document without text.
    var ends: [Int?] = []

    /// Analyses `texts` with an analyzer for `options` from `AnalyzerPool.shared`.
    static func analyse(_ texts: ArraySlice<String?>, options: AnalyzerOptions) -> Result<AnalysedTexts, AnalyzerError> {
        do {
            return .success(try AnalyzerPool.shared.withAnalyzer(options) { (a: Analyzer) throws(Never) -> AnalysedTexts in
                var out = AnalysedTexts()
                out.ends.reserveCapacity(texts.count)
                var counts: [UInt32] = []     // tf by analyzer term id
                var index: [Int32] = []       // analyzer term id → index into `out.terms` (−1: none yet)
                var touched: [Int32] = []
                for text in texts {
                    guard let text else {
                        out.ends.append(nil)
                        continue
                    }
                    touched.removeAll(keepingCapacity: true)
                    a.analyzeIDs(text) { id in
                        let i = Int(id)
                        if i >= counts.count {
                            let grow = max(i + 1 - counts.count, 1024)
                            counts.append(contentsOf: repeatElement(0, count: grow))
                            index.append(contentsOf: repeatElement(-1, count: grow))
                        }
                        if counts[i] == 0 { touched.append(id) }
                        counts[i] += 1
                    }
                    for id in touched {
                        let i = Int(id)
                        if index[i] < 0 {
                            index[i] = Int32(out.terms.count)
                            out.terms.append(a.term(id))
                        }
                        out.entries.append(UInt32(index[i]))
                        out.counts.append(counts[i])
                        counts[i] = 0
                    }
                    out.ends.append(out.entries.count)
                }
                return out
            })
        } catch {
            switch error {
            case .analyzer(let e): return .failure(e)
            }
        }
    }
}
