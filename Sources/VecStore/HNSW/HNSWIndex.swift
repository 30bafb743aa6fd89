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
        try HNSWConfig.create(try hnswParameters(parameters), collection: record.id).store(txn, dbs, record.id)
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

    static func stats(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, name: String) throws
        -> IndexStats
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
            .init("nodes", "\(c.nodes)"), .init("max level", "\(c.maxLevel)"),
            .init("upper-level nodes", "\(upperNodes)"),
            .init("entry point", c.entryPoint == HNSWConfig.noEntry ? "none" : "\(c.entryPoint)"),
        ] + (try HNSWInt8Record.statsLines(txn, dbs, record, traversal: c.traversal)))
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
        return HNSWIndexView(graph: try HNSWGraphView(txn, dbs, record, config, name: name), rows: rows)
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

    mutating func apply(_ batch: IndexBatch) throws {
        guard config.nodes == batch.appended.lowerBound else {
            throw VecStoreError.corrupt(
                "collection \(name): HNSW graph covers \(config.nodes) rows, the collection had \(batch.appended.lowerBound)")
        }
        if batch.deleted.isEmpty && batch.appended.isEmpty { return }
        let record = batch.record
        let editor = try HNSWEditor(txn, dbs, record: record, config: config, name: name, fresh: config.nodes == 0)
        let liveWords = batch.liveWords
        let isLive = { (row: UInt32) in (liveWords[Int(row) >> 6] >> UInt64(row & 63)) & 1 == 1 }
        let inserted = batch.appended.filter(isLive)
        HNSWIndexing.apply(editor, batch.vectors, liveWords: liveWords, rows: Int(record.nextInternalID),
                           metric: record.metric, deleted: batch.deleted, inserted: inserted,
                           threads: max(1, batch.threads))
        try editor.write(txn, dbs, vectors: batch.vectors)
        config = editor.config
        blocksWritten = editor.lastWrittenBlocks
    }
}

/// A graph opened in one snapshot, with the float32 rows its search re-ranks with.
final class HNSWIndexView: VectorIndexView, @unchecked Sendable {
    let graph: HNSWGraphView
    /// Keeps the vector blocks (and any aligned copies) `vectors` points into alive.
    let rows: CollectionView
    let vectors: VectorTable
    let metric: Metric

    init(graph: HNSWGraphView, rows: CollectionView) {
        self.graph = graph
        self.rows = rows
        self.vectors = VectorTable(rows)
        self.metric = rows.record.metric
    }

    deinit { vectors.deallocate() }

    /// The beam width of a search for `k` results: `options.ef`, or the collection's efSearch, and at
    /// least `k`.
    func ef(k: Int, _ options: SearchOptions) -> Int { max(options.ef ?? graph.config.efSearch, k) }

    func search(queries: UnsafePointer<Float>, count: Int, k: Int, mask: CandidateMask?, options: SearchOptions,
                threads: Int) -> [TopK] {
        HNSWSearch.run(vectors, graph, metric: metric, queries: queries, count: count, k: k, ef: ef(k: k, options),
                       allowed: mask, threads: threads)
    }

    /// `HNSWSearch.knn` re-ranks with the float32 vectors.
    var scoresAreExact: Bool { true }

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
