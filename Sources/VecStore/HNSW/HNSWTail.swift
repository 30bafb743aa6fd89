import LMDB

/// When a graph links its unlinked tail (Spec/HNSW.md §4.1). The header's `nodes` says how many rows the
/// graph covers; rows `[nodes, rows)` are the tail, stored like every row (vector, document, id, live
/// bit, binary16 copy) but without graph links, and searched exactly. A bulk import adds its batches to
/// the tail and links it in geometric steps, so the layer-0 graph is rewritten O(log n) times over the
/// import instead of once per batch.
struct HNSWTailPolicy: Equatable, Sendable {
    /// A deferred batch links the whole tail while the graph has fewer than this many rows, and later once
    /// the tail has at least this many rows …
    var minimumTail = 10_000
    /// … and at least this fraction of the rows the graph covers (1: the graph at least doubles with each
    /// step).
    var growth = 1.0
    /// A bounded step (`IndexLinking.Mode.step`: rebuilds, `linkIndexTail`) links at most
    /// `max(minimumStep, growth · nodes)` rows, each step its own transaction.
    var minimumStep = 65_536

    /// The graph's row count after a batch that leaves the collection with `rows` rows, when the graph
    /// covered `nodes` before it.
    func linkEnd(nodes: UInt32, rows: UInt32, linking: IndexLinking.Mode) -> UInt32 {
        let tail = Int(rows) - Int(nodes)
        guard tail > 0 else { return nodes }
        let share = Int((growth * Double(nodes)).rounded(.up))
        switch linking {
        case .all: return rows
        case .step: return nodes + UInt32(min(tail, max(minimumStep, share)))
        // A graph smaller than `minimumTail` costs little to relink, and linking it keeps small imports
        // free of any tail (and of the `hnsw-tail` feature).
        case .deferred: return Int(nodes) < minimumTail || tail >= max(minimumTail, share) ? rows : nodes
        }
    }
}

extension HNSWIndex {
    /// Declared by every store that has (or had) a graph with an unlinked tail: a reader must scan the
    /// tail rows exactly (a reader without the rule would miss them), and a writer must keep `nodes`
    /// apart from the row count. Stores whose graphs always cover every row do not declare it.
    static let tailFeature = Format.Feature(name: "hnsw-tail", neededToRead: true, neededToWrite: true)

    /// Replaces the collection's graph by an empty one with `parameters` (header `nodes` 0, every row in
    /// the tail), keeping its traversal copies (and int8 quantizer), which depend on the vectors alone:
    /// the first transaction of a batched rebuild. Returns false, with nothing written, when the
    /// collection has no HNSW graph or its copies are of another element type than `parameters` ask for.
    static func resetGraph(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord,
                           parameters: HNSWParameters) throws -> Bool {
        // The copies are kept, so they must be of the element type the new parameters ask for.
        guard let old = try HNSWConfig.load(txn, dbs, record.id), old.traversal == parameters.traversal else {
            return false
        }
        let prefix = Format.prefix(record.id)
        for db in [try dbs.graph, try dbs.graphUpper] { try txn.deletePrefix(db, prefix) }
        try HNSWFilterLinks.drop(txn, dbs, record.id, record: false)
        try HNSWFilterLinks.storeRecord(txn, dbs, record.id, fields: parameters.filterLinks)
        try HNSWConfig.create(parameters, collection: record.id).store(txn, dbs, record.id)
        if record.nextInternalID > 0 { try Format.declare(tailFeature, txn, meta: dbs.meta) }
        return true
    }
}
