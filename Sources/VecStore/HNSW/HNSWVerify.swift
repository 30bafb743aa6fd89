import LMDB
import VecStoreKernels

/// The HNSW graph checks `vecstore verify` runs for a collection with a graph.
enum HNSWVerifier {
    /// Filter links (Spec/HNSW.md §7.5): the record's fields have blocks matching the graph's (checked by
    /// opening the view), no key belongs to another field number, the feature is declared, and every
    /// list has at most 2·M links to graph rows other than itself, without duplicates; a live row's links
    /// to live rows join rows holding the same value, and a live row without a value has none.
    static func verifyFilterLinks(_ txn: Transaction, _ dbs: Databases, _ name: String, _ record: CollectionRecord,
                                  _ config: HNSWConfig, _ graph: HNSWGraphView, _ view: CollectionView,
                                  _ fault: (String) -> Void) throws -> Int {
        let fields = config.filterLinks
        guard let db = dbs.handle(Format.DB.graphFlinks) else {
            if !fields.isEmpty { fault("has filter links on \(fields) but the store has no '\(Format.DB.graphFlinks)' database") }
            return 0
        }
        var strayKeys = 0
        try txn.withCursor(db) { (c: Cursor) throws -> Void in
            let prefix = Format.prefix(record.id)
            var entry = try c.seek(atLeast: prefix)
            while let (key, _) = entry, key.starts(with: prefix) {
                if key.count != 12 || Int(readBE32(key, at: 4)) >= fields.count { strayKeys += 1 }
                entry = try c.next()
            }
        }
        if strayKeys > 0 { fault("\(strayKeys) filter-links keys belong to no linked field (\(fields.count) declared)") }
        guard !fields.isEmpty else { return 0 }
        let declared = try txn.get(dbs.meta, Format.featuresKey).map { v in try Format.decodeFeatures(v) } ?? []
        if !declared.contains(where: { $0.name == HNSWFilterLinks.feature.name }) {
            fault("has filter links but the store does not declare feature '\(HNSWFilterLinks.feature.name)'")
        }
        if graph.valueLinks.count != fields.count {
            fault("filter links of \(fields.count) fields declared, \(graph.valueLinks.count) opened")
            return 0
        }
        let rows = graph.rows
        var checked = 0
        for (i, links) in graph.valueLinks.enumerated() {
            let values: [UInt32]
            do {
                values = try HNSWFilterLinks.values(txn, dbs, collection: record.id, field: fields[i], rows: rows, name: name)
            } catch let e as VecStoreError {
                fault("filter links of field '\(fields[i])': \(e)")
                continue
            }
            for node in 0..<UInt32(rows) {
                checked += 1
                let list = links.list(node)
                let n = Int(list[0])
                if n > config.maxLinks0 {
                    fault("row \(node) has \(n) filter links on '\(fields[i])', more than 2·M = \(config.maxLinks0)")
                    continue
                }
                let live = view.isLive(node)
                let v = values[Int(node)]
                if live && v == HNSWFilterLinks.noValue && n > 0 {
                    fault("row \(node) has no value of '\(fields[i])' but \(n) filter links")
                }
                var seen = Set<UInt32>()
                for j in 0..<n {
                    let t = list[1 + j]
                    if Int(t) >= rows { fault("row \(node) has a filter link on '\(fields[i])' to row \(t) ≥ \(rows)"); continue }
                    if t == node { fault("row \(node) has a filter link on '\(fields[i])' to itself") }
                    if !seen.insert(t).inserted { fault("row \(node) has two filter links on '\(fields[i])' to \(t)") }
                    if live && view.isLive(t) && values[Int(t)] != v {
                        fault("row \(node) has a filter link on '\(fields[i])' to row \(t), which holds another value")
                    }
                }
            }
        }
        return checked
    }

    /// Checks a collection's graph (Spec/HNSW.md §Invariants): it covers rows `[0, nodes)` (the rest is
    /// its unlinked tail, which needs the `hnsw-tail` feature); links point at
    /// other rows in range, without duplicates, within the degree bounds (2·M on layer 0, M above);
    /// upper-level links point at nodes of that level; each node's levels are exactly 1...level(row)
    /// from the seed; the entry point is live and on the top level, and no live node is above it.
    static func verifyGraph(_ txn: Transaction, _ dbs: Databases, _ name: String, _ record: CollectionRecord,
                            _ view: CollectionView, _ faults: inout [String]) throws -> Int {
        let prefix = Format.prefix(record.id)
        guard let config = try HNSWConfig.load(txn, dbs, record.id) else { return 0 }
        // The graph covers rows `[0, nodes)`; the rest is the unlinked tail (Spec/HNSW.md §4.1): traversal
        // copies (checked below) but no slots, no upper-level entries, and no link from the graph points
        // into it (every check below bounds links by `rows` = nodes).
        guard config.nodes <= record.nextInternalID else {
            faults.append("\(name): HNSW graph covers \(config.nodes) rows, the collection has \(record.nextInternalID)")
            return 1
        }
        let rows = Int(config.nodes)
        if rows < Int(record.nextInternalID) {
            let declared = try txn.get(dbs.meta, Format.featuresKey).map { v in try Format.decodeFeatures(v) } ?? []
            if !declared.contains(where: { $0.name == HNSWIndex.tailFeature.name }) {
                faults.append("\(name): HNSW graph has an unlinked tail of \(Int(record.nextInternalID) - rows) rows, "
                    + "but the store does not declare feature '\(HNSWIndex.tailFeature.name)'")
            }
        }
        let graph: HNSWGraphView
        do { graph = try HNSWGraphView(txn, dbs, record, config, name: name) } catch {
            faults.append("\(error)")
            return 1
        }
        var checked = 0
        let before = faults.count
        func fault(_ s: String) { if faults.count - before < 50 { faults.append("\(name): HNSW \(s)") } }
        // The traversal copy of every row's vector, tail rows included (binary16: equal to its conversion;
        // int8: within half a step of it, or clamped; the quantizer record was checked opening the view).
        for row in 0..<record.nextInternalID {
            let v = view.vector(row)
            if let int8 = graph.int8 {
                if let t = HNSWInt8Verify.check(graph.int8Codes(row), v, int8) {
                    fault("node \(row): int8 copy is off at byte \(t) (a code outside the quantizer's bound of its component, a non-zero padding byte, or a wrong |x̂|²)")
                }
            } else {
                let half = graph.halfVector(row)
                for i in 0..<record.dimension where half[i] != Float16(v[i]).bitPattern {
                    fault("node \(row): binary16 copy differs from the stored vector at component \(i)")
                    break
                }
            }
        }
        // Layer 0: links.
        for node in 0..<UInt32(rows) {
            checked += 1
            let list = graph.links0(node)
            let n = Int(list[0])
            if n > config.maxLinks0 { fault("node \(node) has \(n) layer-0 links, more than 2·M = \(config.maxLinks0)"); continue }
            var seen = Set<UInt32>()
            for j in 1...max(1, n) where j <= n {
                let t = list[j]
                if Int(t) >= rows { fault("node \(node) links to row \(t) ≥ \(rows) on layer 0") }
                if t == node { fault("node \(node) links to itself on layer 0") }
                if !seen.insert(t).inserted { fault("node \(node) links twice to \(t) on layer 0") }
            }
        }
        // Upper levels, all stored blocks.
        var levelOf = [UInt8](repeating: 0, count: rows)
        var members: [Int: Set<UInt32>] = [:]
        var stored: [(Int, [UInt32], [UInt32])] = []
        try txn.withCursor(dbs.graphUpper) { (c: Cursor) throws -> Void in
            var entry = try c.seek(atLeast: prefix)
            while let (key, value) = entry, key.starts(with: prefix) {
                let level = Int(readBE32(key, at: 4))
                let n = value.count >= 4 ? Int(UInt32(littleEndian: value.loadUnaligned(as: UInt32.self))) : -1
                if key.count != 8 || level < 1 || level > HNSWConfig.levelCap || n < 0 || value.count != 4 + 4 * n + 4 * n * config.slotWordsUpper {
                    fault("level block \(level) is malformed (\(value.count) bytes)")
                } else {
                    var ids: [UInt32] = [], slots: [UInt32] = []
                    for i in 0..<n { ids.append(UInt32(littleEndian: value.loadUnaligned(fromByteOffset: 4 + 4 * i, as: UInt32.self))) }
                    for i in 0..<(n * config.slotWordsUpper) {
                        slots.append(UInt32(littleEndian: value.loadUnaligned(fromByteOffset: 4 + 4 * n + 4 * i, as: UInt32.self)))
                    }
                    stored.append((level, ids, slots))
                    members[level] = Set(ids)
                }
                entry = try c.next()
            }
        }
        for (level, ids, slots) in stored {
            for (i, node) in ids.enumerated() {
                checked += 1
                if i > 0 && ids[i - 1] >= node { fault("level \(level) ids not strictly ascending at \(node)") }
                guard Int(node) < rows else { fault("level \(level) lists row \(node) ≥ \(rows)"); continue }
                levelOf[Int(node)] = max(levelOf[Int(node)], UInt8(level))
                let base = i * config.slotWordsUpper
                let n = Int(slots[base])
                if n > config.m { fault("node \(node) has \(n) links on level \(level), more than M = \(config.m)"); continue }
                for j in 0..<n {
                    let t = slots[base + 1 + j]
                    if t == node { fault("node \(node) links to itself on level \(level)") }
                    if !(members[level]?.contains(t) ?? false) { fault("node \(node) links to \(t), which is not on level \(level)") }
                }
            }
        }
        for row in 0..<rows {
            let expected = config.level(of: UInt32(row))
            let has = Int(levelOf[row])
            if has != expected { fault("row \(row) is on levels up to \(has), its level is \(expected)"); continue }
            if has > 0 {
                for l in 1...has where !(members[l]?.contains(UInt32(row)) ?? false) {
                    fault("row \(row) of level \(has) is missing from level \(l)")
                }
            }
        }
        // Entry point.
        var topLive = -1
        for row in 0..<rows where view.isLive(UInt32(row)) { topLive = max(topLive, Int(levelOf[row])) }
        if topLive < 0 {
            if config.entryPoint != HNSWConfig.noEntry && record.liveCount == 0 && rows == 0 {
                fault("entry point \(config.entryPoint) set in an empty graph")
            }
        } else {
            let e = config.entryPoint
            if e == HNSWConfig.noEntry || Int(e) >= rows {
                fault("entry point \(e) is not a row")
            } else {
                if !view.isLive(e) { fault("entry point \(e) is deleted") }
                if Int(levelOf[Int(e)]) != config.maxLevel {
                    fault("entry point \(e) is on level \(levelOf[Int(e)]), the header says max level \(config.maxLevel)")
                }
                if topLive != config.maxLevel { fault("a live node is on level \(topLive), max level is \(config.maxLevel)") }
            }
        }
        checked += try verifyFilterLinks(txn, dbs, name, record, config, graph, view, fault)
        return checked
    }
}
