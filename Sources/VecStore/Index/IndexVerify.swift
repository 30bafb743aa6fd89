import LMDB

extension VecStore {
    /// Faults for index records (`<kind prefix>BE32(cid)` in meta) whose collection id is not a
    /// collection, or whose key is malformed.
    func verifyIndexOwners(_ txn: Transaction, known: Set<UInt32>) throws -> [String] {
        var faults: [String] = []
        for kind in IndexRegistry.kinds {
            let prefix = kind.metaPrefix
            try txn.withCursor(dbs.meta) { (c: Cursor) throws -> Void in
                var entry = try c.seek(atLeast: prefix)
                while let (key, _) = entry, key.starts(with: prefix) {
                    if key.count != prefix.count + 4 {
                        faults.append("meta: malformed \(kind.name) key of \(key.count) bytes")
                    } else {
                        let id = readBE32(key, at: prefix.count)
                        if !known.contains(id) { faults.append("meta: \(kind.name) record of unknown collection id \(id)") }
                    }
                    entry = try c.next()
                }
            }
        }
        // Filter links' records (`hnsw-flinks:BE32(cid)`, Spec/HNSW.md §7.1) belong to a collection too.
        let linksPrefix = HNSWFilterLinks.keyPrefix
        try txn.withCursor(dbs.meta) { (c: Cursor) throws -> Void in
            var entry = try c.seek(atLeast: linksPrefix)
            while let (key, _) = entry, key.starts(with: linksPrefix) {
                if key.count != linksPrefix.count + 4 {
                    faults.append("meta: malformed filter-links key of \(key.count) bytes")
                } else if !known.contains(readBE32(key, at: linksPrefix.count)) {
                    faults.append("meta: filter-links record of unknown collection id \(readBE32(key, at: linksPrefix.count))")
                }
                entry = try c.next()
            }
        }
        return faults
    }

    /// Checks a collection's vector index through its kind, and that no other kind's databases hold
    /// keys of the collection (a flat collection has none in any). Returns the items checked.
    func verifyIndex(_ txn: Transaction, _ name: String, _ record: CollectionRecord, _ view: CollectionView,
                     _ faults: inout [String]) throws -> Int {
        var checked = 0
        var owner: (any VectorIndexKind.Type)? = nil
        for kind in IndexRegistry.kinds {
            let present: Bool
            do {
                present = try kind.load(txn, dbs, record) != nil
            } catch let e as VecStoreError {
                faults.append("\(name): \(kind.name) record: \(e)")
                continue
            }
            if present {
                if let other = owner {
                    faults.append("\(name): has both a \(other.name) and a \(kind.name) index record")
                    continue
                }
                owner = kind
                if let feature = kind.feature {
                    let declared = try txn.get(dbs.meta, Format.featuresKey).map { v in try Format.decodeFeatures(v) } ?? []
                    if !declared.contains(where: { $0.name == feature.name }) {
                        faults.append("\(name): has a \(kind.name) index but the store does not declare feature '\(feature.name)'")
                    }
                }
                let (n, found) = try kind.verify(txn, dbs, record, name: name, view)
                checked += n
                faults += found
                continue
            }
            let prefix = Format.prefix(record.id)
            // A collection without a graph has no filter links either (their database and record).
            let links = kind.name == HNSWIndex.name ? [HNSWFilterLinks.schemaEntry] : []
            if !links.isEmpty, try txn.get(dbs.meta, HNSWFilterLinks.recordKey(record.id)) != nil {
                faults.append("\(name): a filter-links record but no \(kind.name) index record")
            }
            for entry in kind.databases + links {
                guard let db = dbs.handle(entry.name) else { continue }
                let stray = try txn.withCursor(db) { (c: Cursor) throws -> Bool in
                    guard let (key, _) = try c.seek(atLeast: prefix) else { return false }
                    return key.starts(with: prefix)
                }
                if stray { faults.append("\(name): \(db.name) entries but no \(kind.name) index record") }
            }
        }
        return checked
    }
}
