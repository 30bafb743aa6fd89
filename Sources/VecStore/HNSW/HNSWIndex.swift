import Foundation
import LMDB
import VecStoreKernels

/// HNSW behind the index seam (Spec/HNSW.md): the `hnsw:<cid>` header, layer-0 blocks in `graph`,
/// upper levels in `graph-upper`, binary16 traversal copies in `graph-vectors`.
enum HNSWIndex: VectorIndexKind {
    static let name = "hnsw"
    static let databases: [Schema.Entry] = [
        Schema.Entry(name: Format.DB.graph, flags: [], owner: name, perCollection: true),
        Schema.Entry(name: Format.DB.graphUpper, flags: [], owner: name, perCollection: true),
        Schema.Entry(name: Format.DB.graphVectors, flags: [], owner: name, perCollection: true),
    ]
    static let metaPrefix = HNSWConfig.keyPrefix
    /// Part of the base format: every store has HNSW's databases.
    static let feature: Format.Feature? = nil
    static var defaultParameters: IndexKind { .hnswDefault }

    static func accepts(_ parameters: IndexKind) -> Bool {
        if case .hnsw = parameters { return true }
        return false
    }

    static func hnswParameters(_ parameters: IndexKind) throws(VecStoreError) -> HNSWParameters {
        guard case .hnsw(let p) = parameters else {
            throw .invalidArgument("\(parameters.name) parameters given to the HNSW index")
        }
        return p
    }

    static func validate(_ parameters: IndexKind, dimension: Int, metric: Metric) throws(VecStoreError) {
        try hnswParameters(parameters).validate()
    }

    static func create(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, parameters: IndexKind)
        throws
    {
        let p = try hnswParameters(parameters)
        try HNSWConfig.create(p, collection: record.id).store(txn, dbs, record.id)
        if !p.filterLinks.isEmpty { try HNSWFilterLinks.storeRecord(txn, dbs, record.id, fields: p.filterLinks) }
    }

    static func load(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord) throws -> IndexKind? {
        try HNSWConfig.load(txn, dbs, record.id).map { IndexKind.hnsw($0.parameters) }
    }

    static func drop(_ txn: Transaction, _ dbs: Databases, collection: UInt32) throws {
        try HNSWConfig.dropGraph(txn, dbs, collection)
    }

    static func verify(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, name: String,
                       _ view: CollectionView) throws -> (checked: Int, faults: [String]) {
        var faults: [String] = []
        let checked = try HNSWVerifier.verifyGraph(txn, dbs, name, record, view, &faults)
        return (checked, faults)
    }

    static func stats(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, name: String,
                      depth: IndexStatsDepth) throws -> IndexStats
    {
        guard let c = try HNSWConfig.load(txn, dbs, record.id) else {
            throw VecStoreError.corrupt("collection \(name): no HNSW header")
        }
        var upperNodes = 0
        try txn.withCursor(dbs.graphUpper) { (cur: Cursor) throws -> Void in
            let prefix = Format.prefix(record.id)
            var entry = try cur.seek(atLeast: prefix)
            while let (key, value) = entry, key.starts(with: prefix) {
                if value.count >= 4 { upperNodes += Int(UInt32(littleEndian: value.loadUnaligned(as: UInt32.self))) }
                entry = try cur.next()
            }
        }
        return IndexStats(kind: Self.name, lines: [
            .init("M", "\(c.m)"), .init("efConstruction", "\(c.efConstruction)"), .init("efSearch", "\(c.efSearch)"),
            .init("nodes", "\(c.nodes)"),
            .init("unlinked tail", "\(max(0, Int(record.nextInternalID) - Int(c.nodes)))"),
            .init("max level", "\(c.maxLevel)"),
            .init("upper-level nodes", "\(upperNodes)"),
            .init("entry point", c.entryPoint == HNSWConfig.noEntry ? "none" : "\(c.entryPoint)"),
        ] + (depth == .full ? [.init("unreachable live rows", unreachableLine(txn, dbs, record, c, name: name))] : [])
            + (c.filterLinks.isEmpty ? [] : [.init("filter links", c.filterLinks.joined(separator: ", "))])
            + (try HNSWInt8Record.statsLines(txn, dbs, record, traversal: c.traversal)))
    }

    /// The live graph rows a search cannot reach from the entry point (`HNSWReachability`), with a few
    /// of them, as `index show` prints it.
    /// A graph that cannot be read says so in the line (`verify` names the damage).
    private static func unreachableLine(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord,
                                        _ config: HNSWConfig, name: String) -> String {
        let graph: HNSWGraphView
        let live: [UInt64]
        do {
            graph = try HNSWGraphView(txn, dbs, record, config, name: name)
            live = try CollectionView.liveWords(txn, dbs, record, name: name)
        } catch {
            return "unknown (\(error))"
        }
        let outcome = CandidateMask.with(live) { mask in HNSWReachability.walk(graph) { mask.contains($0) } }
        guard outcome.unreachableLive > 0 else { return "0" }
        let more = outcome.unreachableLive > outcome.sample.count ? ", …" : ""
        return "\(outcome.unreachableLive) (rows \(outcome.sample.map(String.init).joined(separator: ", "))\(more); "
            + "a graph search cannot return them, exact search can)"
    }

    static func unindexedRows(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord) throws -> Int {
        guard let c = try HNSWConfig.load(txn, dbs, record.id) else { return 0 }
        return max(0, Int(record.nextInternalID) - Int(c.nodes))
    }

    static func makeWriter(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, name: String) throws
        -> any VectorIndexWriter
    {
        guard let config = try HNSWConfig.load(txn, dbs, record.id) else {
            throw VecStoreError.corrupt("collection \(name): no HNSW header")
        }
        return HNSWWriter(txn: txn, dbs: dbs, name: name, config: config)
    }

    static func openView(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, name: String,
                         _ rows: CollectionView) throws -> any VectorIndexView {
        guard let config = try HNSWConfig.load(txn, dbs, record.id) else {
            throw VecStoreError.corrupt("collection \(name): no HNSW header")
        }
        return HNSWIndexView(graph: try HNSWGraphView(txn, dbs, record, config, name: name), rows: rows,
                             reads: txn.mapReads)
    }

    /// Renumbers the graph in one transaction (`HNSWRemap`, Spec/HNSW.md §5.5); `.rebuild`, with nothing
    /// written, when the old graph fails the remap's checks. (Compaction uses the per-batch
    /// `makeRemapper` instead, HNSW/HNSWRemap.swift.)
    static func remap(_ source: IndexRemapSource, into txn: Transaction, _ dbs: Databases,
                      _ record: CollectionRecord, name: String) throws -> IndexRemapOutcome {
        guard let config = try HNSWConfig.load(source.txn, source.dbs, source.record.id) else { return .rebuild }
        do {
            try HNSWRemap.remap(from: source.txn, source.dbs, source.record, config: config, to: txn, dbs, record,
                                map: try RowMap(newRow: source.newRow), name: name)
        } catch VecStoreError.corrupt {
            return .rebuild  // thrown by the checks, before anything is written
        }
        return .remapped
    }
}

/// Applies write batches to a collection's graph: appended live rows are linked in, neighbours of
/// deleted rows are repaired, and every touched block is written once.
struct HNSWWriter: VectorIndexWriter {
    let txn: Transaction
    let dbs: Databases
    let name: String
    var config: HNSWConfig
    private(set) var blocksWritten = 0

    init(txn: Transaction, dbs: Databases, name: String, config: HNSWConfig) {
        self.txn = txn
        self.dbs = dbs
        self.name = name
        self.config = config
    }

    /// Writes the traversal copies of the batch's rows, then links the tail (the batch's rows included) or
    /// part of it, as `batch.linking` says (Spec/HNSW.md §4.1); deleted graph rows are repaired around,
    /// deleted tail rows need nothing (their live bit is off and no list names them).
    mutating func apply(_ batch: IndexBatch) throws {
        let nodes = config.nodes
        guard nodes <= batch.appended.lowerBound else {
            throw VecStoreError.corrupt(
                "collection \(name): HNSW graph covers \(nodes) rows, the collection had \(batch.appended.lowerBound)")
        }
        let record = batch.record
        let end = batch.linking.policy.linkEnd(nodes: nodes, rows: record.nextInternalID, linking: batch.linking.mode)
        // The beam of a linking step scores the traversal copies (Spec/HNSW.md §5.3): blocks before the
        // batch's first block from the map, resolved before this transaction writes any copy (so no
        // pointer goes into a page it wrote), the rest encoded from the batch's float32 rows. The batch
        // that trains an int8 quantizer (a graph's first) links with the float32 rows.
        var copies: HNSWCopyTable?
        var int8: HNSWInt8Scoring?
        if end > nodes {
            let dim = record.dimension, rowBytes = config.traversal.rowBytes(dimension: dim), vt = batch.vectors
            let shift = Int(record.blockShift), committed = Int(batch.appended.lowerBound)
            switch config.traversal {
            case .f16:
                copies = try HNSWCopyTable(txn, dbs, collection: record.id, blockShift: shift, dimension: dim,
                                           rowBytes: rowBytes, committedRows: committed, rows: Int(end)) { row, out in
                    HNSWTraversalCopies.encodeHalf(vt.vector(row), dimension: dim, rowBytes: rowBytes, into: out)
                }
            case .int8:
                if let q = try HNSWInt8Record.load(txn, dbs, record.id, dimension: dim)?.quantizer {
                    copies = try HNSWCopyTable(txn, dbs, collection: record.id, blockShift: shift, dimension: dim,
                                               rowBytes: rowBytes, committedRows: committed, rows: Int(end)) { row, out in
                        HNSWTraversalCopies.encodeInt8(vt.vector(row), quantizer: q, dimension: dim, into: out)
                    }
                    if copies != nil { int8 = HNSWInt8Scoring(q) }
                }
            }
        }
        try HNSWTraversalCopies.write(txn, dbs, traversal: config.traversal, collection: record.id, name: name,
                                      dimension: record.dimension, blockCapacity: record.blockCapacity,
                                      initialRows: Int(batch.appended.lowerBound), rows: Int(batch.appended.upperBound),
                                      vectors: batch.vectors)
        let deleted = batch.deleted.filter { $0 < nodes }
        blocksWritten = 0
        if end > nodes || !deleted.isEmpty {
            let editor = try HNSWEditor(txn, dbs, record: record, config: config, name: name, fresh: nodes == 0)
            editor.copies = copies
            editor.int8 = int8
            let liveWords = batch.liveWords
            let isLive = { (row: UInt32) in (liveWords[Int(row) >> 6] >> UInt64(row & 63)) & 1 == 1 }
            let inserted = (nodes..<end).filter(isLive)
            HNSWIndexing.apply(editor, batch.vectors, liveWords: liveWords, rows: Int(end), metric: record.metric,
                               deleted: deleted, inserted: inserted, threads: max(1, batch.threads))
            try editor.write(txn, dbs)
            config = editor.config
            blocksWritten = editor.lastWrittenBlocks
            // Filter links (Spec/HNSW.md §7.3): the rows just linked join their values' graphs. Deletes
            // leave them (the live mask hides deleted rows; compaction drops them).
            if end > nodes {
                blocksWritten += try HNSWFilterLinks.link(txn, dbs, record: record, config: config, main: editor,
                                                          vectors: batch.vectors, liveWords: liveWords,
                                                          from: Int(nodes), to: Int(end), threads: max(1, batch.threads),
                                                          name: name)
            }
        }
        // Declared by the batch that starts a tail: a tail that was already there was declared when it
        // started (or by `resetGraph`, or by compaction carrying it), and the feature is never withdrawn.
        // Re-declaring in every deferred batch would rewrite the `features` record each commit.
        if config.nodes < record.nextInternalID && nodes == batch.appended.lowerBound {
            try Format.declare(HNSWIndex.tailFeature, txn, meta: dbs.meta)
        }
    }
}

/// A graph opened in one snapshot, with the float32 rows its search re-ranks with.
final class HNSWIndexView: VectorIndexView, @unchecked Sendable {
    let graph: HNSWGraphView
    /// Keeps the vector blocks (and any aligned copies) `vectors` points into alive.
    let rows: CollectionView
    let vectors: VectorTable
    let metric: Metric
    /// The snapshot's cold reads (`MapReads`; nil for a write transaction's view): searches read the map
    /// through them until it settles (Spec/HNSW.md §5.1, "Cold reads").
    let reads: MapReads?

    init(graph: HNSWGraphView, rows: CollectionView, reads: MapReads? = nil) {
        self.graph = graph
        self.rows = rows
        self.reads = reads
        self.vectors = VectorTable(rows)
        self.metric = rows.record.metric
    }

    deinit { vectors.deallocate() }

    /// The beam width of a search for `k` results: `options.ef`, or the collection's efSearch, and at
    /// least `k`.
    func ef(k: Int, _ options: SearchOptions) -> Int { max(options.ef ?? graph.config.efSearch, k) }

    func search(queries: UnsafePointer<Float>, count: Int, k: Int, mask: CandidateMask?, options: SearchOptions,
                threads: Int) -> [TopK] {
        var tops = HNSWSearch.run(vectors, graph, metric: metric, queries: queries, count: count, k: k,
                                  ef: ef(k: k, options), allowed: mask, threads: threads, reads: reads,
                                  valueLinks: mask == nil ? nil : graph.valueLinks(pinning: options.pinnedFields))
        if tail.count > 0 {
            if let mask {
                mergeTail(&tops, queries: queries, k: k, mask: mask, threads: threads)
            } else {
                CandidateMask.with(rows.liveWords) { live in
                    mergeTail(&tops, queries: queries, k: k, mask: live, threads: threads)
                }
            }
        }
        return tops
    }

    /// Rows the graph does not cover yet (Spec/HNSW.md §4.1): `[nodes, rows)`, searched exactly.
    var tail: Range<UInt32> { UInt32(graph.rows)..<rows.record.nextInternalID }

    /// Scans the tail rows allowed by `mask` exactly for each query and merges the best `k` into `tops`.
    /// The first tail rows up to a multiple of 64 are scored one by one; the rest go through the scan
    /// kernel over the vector blocks, with the mask rebased to start at that multiple (the kernel reads
    /// one mask word per 64 rows from a block's first row). Tail hits are scored with the same float32
    /// distance as the graph's re-ranking, so the two sides compare exactly.
    private func mergeTail(_ tops: inout [TopK], queries: UnsafePointer<Float>, k: Int, mask: CandidateMask,
                           threads: Int) {
        let dim = vectors.dimension
        let start = tail.lowerBound, end = tail.upperBound
        let aligned = min(end, (start + 63) & ~63)
        let base = Int(aligned >> 6)
        let shifted = CandidateMask(words: mask.words + min(base, mask.wordCount),
                                    wordCount: max(0, mask.wordCount - base))
        // Blocks (or their parts) holding rows `aligned ..< end`, numbered from `aligned`.
        var blocks: [VectorBlock] = []
        for b in rows.blocks {
            let first = max(aligned, b.firstID), last = min(end, b.firstID + UInt32(b.count))
            guard first < last else { continue }
            let offset = Int(first - b.firstID)
            blocks.append(VectorBlock(firstID: first - aligned, count: Int(last - first),
                                      vectors: b.vectors + offset * dim, squaredNorms: b.squaredNorms + offset))
        }
        let l2 = metric == .l2
        func score(_ q: UnsafePointer<Float>, _ id: UInt32) -> Float {
            l2 ? -L2Distance.distance(q, vectors.vector(id), dim) : -InnerProductDistance.distance(q, vectors.vector(id), dim)
        }
        for i in 0..<tops.count {
            let q = queries + i * dim
            var found = TopK(k: k)
            for id in start..<aligned where mask.contains(id) { found.insert(score(q, id), id) }
            if !blocks.isEmpty {
                let scanned = ExactSearch.search(query: q, dimension: dim, metric: metric, blocks: blocks,
                                                 mask: shifted, k: k, threads: tops.count == 1 ? threads : 1)
                for hit in scanned.sorted() { found.insert(score(q, hit.id + aligned), hit.id + aligned) }
            }
            tops[i].merge(found)
        }
    }

    /// `HNSWSearch.knn` re-ranks with the float32 vectors.
    var scoresAreExact: Bool { true }

    /// The binary16 traversal copies (every row, tail included) for the certified exact scan; nil when
    /// the copies are int8.
    var halfCopies: HalfCopies? {
        guard graph.config.traversal == .f16 else { return nil }
        let cap = rows.record.blockCapacity, total = Int(rows.record.nextInternalID)
        let blocks = stride(from: 0, to: total, by: cap).map { graph.halfVector(UInt32($0)) }
        return HalfCopies(blocks: blocks, shift: Int(rows.record.blockShift), stride: graph.copyStride / 2)
    }

    func prefersExact(matches: Int, live: Int, k: Int, options: SearchOptions) -> Bool {
        HNSWSearch.prefersExact(matches: matches, live: live, m: graph.config.m, ef: ef(k: k, options))
    }
}

extension Databases {
    /// HNSW layer-0 blocks (Spec/HNSW.md), looked up by name in the schema.
    var graph: Database { get throws(VecStoreError) { try required(Format.DB.graph) } }
    /// HNSW upper levels.
    var graphUpper: Database { get throws(VecStoreError) { try required(Format.DB.graphUpper) } }
    /// HNSW binary16 traversal copies.
    var graphVectors: Database { get throws(VecStoreError) { try required(Format.DB.graphVectors) } }
}
