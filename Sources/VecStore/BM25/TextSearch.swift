import Foundation
import LMDB

/// Options of a keyword search.
public struct TextSearchOptions: Sendable {
    /// Score every posting of the query's terms instead of pruning with block-max MaxScore
    /// (same results; for checking and measuring the pruning).
    public var exhaustive: Bool
    /// Overrides the collection's k1 for this search (for tuning).
    public var k1: Float?
    /// Overrides the collection's b for this search (for tuning).
    public var b: Float?
    /// Rows per accumulator window of the pruned search (a multiple of 64; tests use small ones).
    var windowRows = 4096
    /// Also return each result's text (read in the search's own snapshot).
    public var includeText: Bool
    /// Creates options.
    public init(exhaustive: Bool = false, k1: Float? = nil, b: Float? = nil, includeText: Bool = false) {
        self.includeText = includeText
        self.exhaustive = exhaustive
        self.k1 = k1
        self.b = b
    }

    func apply(_ info: TextInfo) -> TextInfo {
        var info = info
        if let k1 { info.options.k1 = k1 }
        if let b { info.options.b = b }
        return info
    }
}

/// How `hybridSearch` combines the keyword and the vector ranking.
public enum Fusion: Sendable, Equatable {
    /// `alpha · vector + (1 − alpha) · bm25`, each score min-max normalised over the union of both
    /// candidate lists (a document missing from one list gets its exact score on that side: the
    /// vector similarity is computed, the BM25 score is looked up in the postings).
    case weighted(alpha: Float)
    /// Reciprocal rank fusion: Σ 1 / (k + rank), rank counted from 1 in each candidate list.
    case rrf(k: Int)

    /// The default: weighted fusion with the alpha chosen on SciFact's training queries (Spec/BM25.md).
    public static let `default` = Fusion.weighted(alpha: Fusion.defaultAlpha)
    /// Default vector weight of `.weighted`.
    public static let defaultAlpha: Float = 0.5
}

extension VecStore {
    /// Copies a collection's text-index options from `txn` of another store into `target` here
    /// (compaction: the new store must analyse exactly as the old one did).
    func copyTextOptions(from txn: Transaction, old: VecStore, collection: UInt32, to target: VectorCollection) throws {
        guard let value = try txn.get(old.dbs.textinfo, Format.prefix(collection)) else { return }
        let info = try TextInfo.decode(value, context: "textinfo of \(target.name)")
        try write { t in
            var writer = try TextIndexWriter(t, dbs, collection: target.collectionID, name: target.name)
            writer.setOptions(info.options)
            try writer.finish()
        }
    }
}

extension VectorCollection {
    func textInfo(_ txn: Transaction) throws -> TextInfo {
        guard let value = try txn.get(store.dbs.textinfo, Format.prefix(collectionID)) else {
            return TextInfo(options: TextIndexOptions())
        }
        return try TextInfo.decode(value, context: "textinfo of \(name)")
    }

    /// The keyword-index options of this collection.
    public func textIndexOptions() throws(VecStoreError) -> TextIndexOptions {
        try store.read { txn in try textInfo(txn).options }
    }

    /// Sets the keyword-index options. Changing only k1 or b takes effect at once; changing the
    /// analyzer or turning indexing on or off rebuilds the index from the stored texts, in one
    /// transaction.
    public func configureTextIndex(_ options: TextIndexOptions) throws(VecStoreError) {
        try TextIndexOptions.validate(options)
        try store.write { txn in
            let record = try currentRecord(txn)
            var writer = try CollectionWriter(txn, store.dbs, name: name, record: record)
            let old = writer.text.info.options
            writer.text.setOptions(options)
            if old.analyzer != options.analyzer || old.enabled != options.enabled {
                try writer.text.clear()
                if options.enabled {
                    let prefix = Format.prefix(collectionID)
                    try txn.withCursor(store.dbs.docs) { (c: Cursor) throws -> Void in
                        var entry = try c.seek(atLeast: prefix)
                        while let (key, value) = entry, key.starts(with: prefix) {
                            let row = readBE32(key, at: 4)
                            let doc = try DocumentRecord.decode(value, context: "\(name) docs row \(row)")
                            try writer.text.add(row: row, text: doc.text)
                            entry = try c.next()
                        }
                    }
                }
            }
            try writer.finish()
        }
    }

    /// Size and statistics of the keyword index.
    public func textIndexStats() throws(VecStoreError) -> TextIndexStats {
        try store.read { txn in
            let info = try textInfo(txn)
            let prefix = Format.prefix(collectionID)
            var terms = 0, postings = 0, dictionaryBytes = 0, postingBytes = 0, lengthBytes = 0
            try txn.withCursor(store.dbs.terms) { (c: Cursor) throws -> Void in
                var e = try c.seek(atLeast: prefix)
                while let (key, value) = e, key.starts(with: prefix) {
                    terms += 1
                    dictionaryBytes += key.count + value.count
                    postings += Int(try TermEntry.decode(value, context: "term entry").postings)
                    e = try c.next()
                }
            }
            try txn.withCursor(store.dbs.postings) { (c: Cursor) throws -> Void in
                var e = try c.seek(atLeast: prefix)
                while let (key, value) = e, key.starts(with: prefix) { postingBytes += value.count; e = try c.next() }
            }
            try txn.withCursor(store.dbs.doclens) { (c: Cursor) throws -> Void in
                var e = try c.seek(atLeast: prefix)
                while let (key, value) = e, key.starts(with: prefix) { lengthBytes += value.count; e = try c.next() }
            }
            return TextIndexStats(options: info.options, documents: Int(info.docCount), totalLength: info.totalLength,
                                  terms: terms, postings: postings, dictionaryBytes: dictionaryBytes,
                                  postingBytes: postingBytes, lengthBytes: lengthBytes)
        }
    }

    /// The terms `text` is analysed into under this collection's options (what a query matches on).
    public func analyze(_ text: String) throws(VecStoreError) -> [String] {
        let options = try textIndexOptions()
        return try Self.analyze(text, options.analyzer)
    }

    static func analyze(_ text: String, _ options: AnalyzerOptions) throws(VecStoreError) -> [String] {
        do {
            return try AnalyzerPool.shared.withAnalyzer(options) { (a: Analyzer) throws(Never) -> [String] in a.terms(text) }
        } catch {
            switch error {
            case .analyzer(let e): throw .invalidArgument(e.description)
            }
        }
    }

    /// The `k` live documents that best match `query` by BM25 (Lucene idf, the collection's k1 and b),
    /// optionally restricted by `filter`. Scores are BM25 scores. Documents without any query term are
    /// not returned, so fewer than `k` results may come back.
    public func searchText(_ query: String, k: Int, filter: Filter? = nil,
                           options: TextSearchOptions = TextSearchOptions()) throws(VecStoreError) -> [SearchResult] {
        guard k > 0 else { return [] }
        try VectorCollection.checkK(k)
        return try store.read { txn in
            let info = options.apply(try textInfo(txn))
            guard info.options.enabled else {
                throw VecStoreError.invalidArgument("collection \(name) has keyword indexing turned off")
            }
            let terms = try Self.analyze(query, info.options.analyzer)
            let searcher = try BM25Searcher(txn, store.dbs, collection: collectionID, name: name, info: info)
            let queryTerms = try searcher.queryTerms(terms)
            let mask = try textMask(txn, filter)
            let (hits, _) = try searcher.topK(queryTerms, k: k, mask: mask, exhaustive: options.exhaustive,
                                              window: options.windowRows)
            return try hits.map { hit in
                try result(txn, row: hit.row, score: Float(hit.score), includeText: options.includeText)
            }
        }
    }

    /// The rows a keyword search may return: live rows, or the filter's live matches from the
    /// snapshot's filter cache (shared with vector search, built once per snapshot).
    func textMask(_ txn: Transaction, _ filter: Filter?) throws -> RowMask {
        guard let filter else { return try BM25Searcher.liveMask(txn, store.dbs, collection: collectionID) }
        let snap = try snapshot(txn)
        return RowMask(words: try snap.filterBitmap(filter) { try candidateRows(txn, snap.view, filter) }.0)
    }

    /// A keyword or hybrid result for `row`: its external id, and its text with `includeText`, read in
    /// the search's own transaction.
    func result(_ txn: Transaction, row: UInt32, score: Float, includeText: Bool) throws -> SearchResult {
        guard includeText else { return SearchResult(id: try externalID(txn, row: row), score: score, internalID: row) }
        guard let value = try txn.get(store.dbs.docs, Format.key(collectionID, row)) else {
            throw VecStoreError.corrupt("collection \(name): live row \(row) has no document record")
        }
        let doc = try DocumentRecord.decode(value, context: "\(name) docs row \(row)")
        var r = SearchResult(id: doc.externalID, score: score, internalID: row)
        r.text = doc.text
        return r
    }

    func externalID(_ txn: Transaction, row: UInt32) throws -> String {
        guard let value = try txn.get(store.dbs.docs, Format.key(collectionID, row)) else {
            throw VecStoreError.corrupt("collection \(name): live row \(row) has no document record")
        }
        return try DocumentRecord.externalID(value, context: "docs row \(row)")
    }

    /// Keyword and vector search fused into one ranking. The best `candidates` of each side (at least
    /// `k`) are fused by `fusion`; scores of the results are the fused scores. `filter` applies to both.
    public func hybridSearch(text: String, vector: [Float], k: Int, fusion: Fusion = .default,
                             candidates: Int = 100, filter: Filter? = nil,
                             textOptions: TextSearchOptions = TextSearchOptions()) throws(VecStoreError) -> [SearchResult] {
        guard k > 0 else { return [] }
        try VectorCollection.checkK(k)
        try VectorCollection.checkK(candidates, "candidates")
        switch fusion {
        case .weighted(let alpha):
            guard (0...1).contains(alpha) else { throw .invalidArgument("alpha must be in 0...1, got \(alpha)") }
        case .rrf(let rk):
            guard rk >= 0 else { throw .invalidArgument("RRF k must be ≥ 0, got \(rk)") }
        }
        let depth = max(k, candidates)
        let (stored, _) = try storedForm(vector, id: nil)
        // Both rankings and every score come from one read snapshot.
        return try store.read { txn in
            let info = textOptions.apply(try textInfo(txn))
            guard info.options.enabled else {
                throw VecStoreError.invalidArgument("collection \(name) has keyword indexing turned off")
            }
            // Vector side: top `depth` by the search planner (the index searching at least `depth` deep,
            // e.g. HNSW with ef ≥ depth, or exact for small collections and selective filters), in this
            // snapshot.
            let snap = try snapshot(txn)
            let view = snap.view
            let plan = try plan(txn, snap, filter: filter, k: depth, options: SearchOptions())
            let words = plan.mask ?? view.liveWords
            let vectorRows: [UInt32] = stored.withUnsafeBufferPointer { q in
                guard let query = q.baseAddress else { return [] }
                return execute(plan, snap, queries: query, count: 1, k: depth, threads: 1)[0].sorted().map(\.id)
            }
            func similarity(_ row: UInt32) -> Double {
                stored.withUnsafeBufferPointer { q in
                    guard let query = q.baseAddress else { return 0 }
                    let v = view.vector(row)
                    return metric == .l2 ? -Double(squaredL2(query, v, dimension)) : Double(dotProduct(query, v, dimension))
                }
            }
            // Keyword side.
            let terms = try Self.analyze(text, info.options.analyzer)
            let searcher = try BM25Searcher(txn, store.dbs, collection: collectionID, name: name, info: info)
            let queryTerms = try searcher.queryTerms(terms)
            let (textHits, _) = try searcher.topK(queryTerms, k: depth, mask: RowMask(words: words),
                                                  window: textOptions.windowRows)
            var fused: [UInt32: Double] = [:]
            switch fusion {
            case .rrf(let rk):
                for (rank, row) in vectorRows.enumerated() { fused[row, default: 0] += 1 / Double(rk + rank + 1) }
                for (rank, hit) in textHits.enumerated() { fused[hit.row, default: 0] += 1 / Double(rk + rank + 1) }
            case .weighted(let alpha):
                // Exact scores on both sides for the union of candidates.
                var rows = Set(vectorRows)
                for h in textHits { rows.insert(h.row) }
                let rowList = rows.sorted()
                let bm25 = try searcher.scores(queryTerms, rows: rowList)
                var vec: [UInt32: Double] = [:]
                for row in rowList { vec[row] = similarity(row) }
                func normalised(_ scores: [UInt32: Double]) -> (UInt32) -> Double {
                    let values = rowList.map { scores[$0] ?? 0 }
                    let lo = values.min() ?? 0, hi = values.max() ?? 0
                    return { row in hi > lo ? ((scores[row] ?? 0) - lo) / (hi - lo) : 0 }
                }
                let nv = normalised(vec), nt = normalised(bm25)
                for row in rowList { fused[row] = Double(alpha) * nv(row) + Double(1 - alpha) * nt(row) }
            }
            let ranked = fused.sorted { a, b in a.value != b.value ? a.value > b.value : a.key < b.key }.prefix(k)
            return try ranked.map { (row, score) in
                try result(txn, row: row, score: Float(score), includeText: textOptions.includeText)
            }
        }
    }
}

extension TextIndexOptions {
    /// Throws `invalidArgument` for BM25 parameters out of range or an unknown stemmer.
    static func validate(_ options: TextIndexOptions) throws(VecStoreError) {
        guard options.k1 >= 0, options.k1.isFinite, (0...1).contains(options.b) else {
            throw .invalidArgument("BM25 needs k1 ≥ 0 and 0 ≤ b ≤ 1 (got k1 \(options.k1), b \(options.b))")
        }
        if let stem = options.analyzer.stemmer, !Analyzer.stemmerLanguages.contains(stem) {
            throw .invalidArgument(AnalyzerError.unknownStemmer(stem).description)
        }
    }
}
