import LMDB

/// When a graph links its unlinked tail (Spec/HNSW.md §4.4). The header's `nodes` says how many rows the
/// graph covers; rows `[nodes, rows)` are the tail, stored like every row (vector, document, id, live
/// bit) but without graph slots or binary16 copies, and searched exactly. A bulk import adds its
/// batches to the tail and links it in large steps, so the whole layer-0 graph is rewritten a few
/// times per doubling of the collection instead of once per batch.
struct HNSWTailPolicy: Equatable, Sendable {
    /// A deferred batch links the tail once it has at least this many rows …
    var minimumTail = 10_000
    /// … and at least this fraction of the rows the graph covers (geometric steps: 1 = the graph at
    /// least doubles with each step).
    var growth = 1.0
    /// Binary16 copies one transaction may write at most (LMDB holds every page a transaction writes in
    /// anonymous memory until it commits), which bounds the rows linked per transaction.
    var stepBytes = 48 << 20

    /// Rows linked per transaction at most, for vectors of `dimension`.
    func stepRows(dimension: Int) -> Int {
        max(1, min(Int(UInt32.max), stepBytes / HNSWConfig.halfRowBytes(dimension: dimension)))
    }

    /// The graph's row count after a batch that leaves the collection with `rows` rows, when the graph
    /// covered `nodes` before it.
    func linkEnd(nodes: UInt32, rows: UInt32, linking: IndexLinking.Mode, dimension: Int) -> UInt32 {
        let tail = Int(rows) - Int(nodes)
        guard tail > 0 else { return nodes }
        let step = UInt32(min(tail, stepRows(dimension: dimension)))
        switch linking {
        case .all: return rows
        case .step: return nodes + step
        case .deferred:
            let due = max(minimumTail, Int((growth * Double(nodes)).rounded(.up)))
            return tail >= due ? nodes + step : nodes
        }
    }

}

extension HNSWIndex {
    /// Declared by every store that has (or had) a graph with an unlinked tail: a reader must scan the
    /// tail rows exactly (a reader without the rule would miss them), and a writer must keep `nodes`
    /// apart from the row count. Stores whose graphs always cover every row do not declare it.
    static let tailFeature = Format.Feature(name: "hnsw-tail", neededToRead: true, neededToWrite: true)
}
