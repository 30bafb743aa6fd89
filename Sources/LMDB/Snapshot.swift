import CLMDB

extension Transaction {
    /// The id of the snapshot this transaction reads (`mdb_txn_id`): for a read transaction, the id of the
    /// last write transaction committed when it began. Two read transactions with the same id see
    /// byte-identical data at the same offsets of the map, which lets callers reuse structures resolved
    /// in an earlier transaction (after checking that the map was not moved).
    public func snapshotID() throws(LMDBError) -> Int {
        Int(mdb_txn_id(try handle()))
    }
}
