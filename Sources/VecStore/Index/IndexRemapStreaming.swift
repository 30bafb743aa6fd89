import LMDB

/// An index kind that carries its index through a compaction while the rows are copied, batch by
/// batch (Spec/FORMAT.md §20.4), so that no transaction of the new store holds the whole index. A kind
/// that does not conform is carried over by `VectorIndexKind.remap` in one transaction after the rows,
/// or rebuilt.
protocol StreamingRemapKind: VectorIndexKind {
    /// Checks the old index of `source` and prepares its renumbering by `source.newRow`. Throws `corrupt`
    /// (naming what does not fit) when it cannot be renumbered: the caller then rebuilds it. Reads the
    /// old store through `source.txn`, which stays open until the remapper's `finish`.
    static func makeRemapper(_ source: IndexRemapSource, name: String) throws -> any IndexRemapper
}

/// The new-store side of a streaming remap.
protocol IndexRemapper: AnyObject {
    /// In the transaction that appended rows `before.nextInternalID ..< after.nextInternalID` to the new
    /// collection: writes the parts of the index those rows complete. A rerun transaction calls it again
    /// with the same records.
    func rowsCopied(_ txn: Transaction, _ dbs: Databases, before: CollectionRecord, after: CollectionRecord) throws
    /// After the last batch, in one more transaction: the rest of the index and its meta record.
    func finish(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord) throws
    /// What was carried over, for `CompactReport.indexes`.
    var detail: String { get }
}
