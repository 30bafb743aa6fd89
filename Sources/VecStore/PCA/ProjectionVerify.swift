import LMDB

extension VecStore {
    /// Faults for `pca:` meta records that are malformed or whose collection id is not a collection.
    func verifyProjectionOwners(_ txn: Transaction, known: Set<UInt32>) throws -> [String] {
        var faults: [String] = []
        try txn.withCursor(dbs.meta) { (c: Cursor) throws -> Void in
            var entry = try c.seek(atLeast: ProjectionRecord.keyPrefix)
            while let (key, _) = entry, key.starts(with: ProjectionRecord.keyPrefix) {
                if key.count != ProjectionRecord.keyPrefix.count + 4 {
                    faults.append("meta: malformed PCA key of \(key.count) bytes")
                } else {
                    let id = readBE32(key, at: ProjectionRecord.keyPrefix.count)
                    if !known.contains(id) { faults.append("meta: PCA record of unknown collection id \(id)") }
                }
                entry = try c.next()
            }
        }
        return faults
    }

    /// Checks a collection's projection record (Spec/PCA.md §Invariants): it decodes (version, flags,
    /// sizes, finite values), projects to the collection's dimension, and its components are orthonormal.
    func verifyProjection(_ txn: Transaction, _ record: CollectionRecord, name: String) throws -> [String] {
        guard let value = try txn.get(dbs.meta, ProjectionRecord.key(record.id)) else { return [] }
        do {
            let projection = try ProjectionRecord.decode(value, context: "\(name): meta pca:\(record.id)")
            var faults = projection.faults(collection: name, dimension: record.dimension)
            if projection.normalizesInput != (record.metric == .cosine) {
                faults.append("\(name): PCA record \(projection.normalizesInput ? "normalises" : "does not normalise") inputs under metric \(record.metric)")
            }
            return faults
        } catch {
            return ["\(error)"]
        }
    }
}
