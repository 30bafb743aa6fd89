import LMDB
import VecStoreIO
import VecStoreKernels

/// Turns a `Filter` into a bitset of live rows using the `fields` index: each condition is one key or
/// one key range, whose row lists are read a page at a time (`MDB_GET_MULTIPLE`).
struct FilterEvaluator {
    let txn: Transaction
    let dbs: Databases
    let view: CollectionView
    let collection: VectorCollection

    var wordCount: Int { view.liveWords.count }

    /// Rows that are live and match `filter`.
    func evaluate(_ filter: Filter) throws -> [UInt64] {
        var words = try rows(filter)
        for i in 0..<words.count { words[i] &= view.liveWords[i] }
        return words
    }

    private func rows(_ filter: Filter) throws -> [UInt64] {
        switch filter {
        case .and(let parts):
            var acc = view.liveWords
            for p in parts {
                let r = try rows(p)
                for i in 0..<acc.count { acc[i] &= r[i] }
            }
            return acc
        case .or(let parts):
            var acc = [UInt64](repeating: 0, count: wordCount)
            for p in parts {
                let r = try rows(p)
                for i in 0..<acc.count { acc[i] |= r[i] }
            }
            return acc
        case .not(let inner):
            var r = try rows(inner)
            for i in 0..<r.count { r[i] = ~r[i] & view.liveWords[i] }
            return r
        case .field(let name, let condition):
            return try field(name, condition)
        }
    }

    private func field(_ name: String, _ condition: Filter.Condition) throws -> [UInt64] {
        var out = [UInt64](repeating: 0, count: wordCount)
        let prefix = FieldKey.fieldPrefix(view.record.id, name)
        switch condition {
        case .equals(let v):
            try equals(name, v, into: &out)
        case .in(let values):
            for v in values { try equals(name, v, into: &out) }
        case .notEquals(let v):
            return try rows(.not(.field(name, .equals(v))))
        case .notIn(let values):
            return try rows(.not(.field(name, .in(values))))
        case .exists:
            try scan(from: prefix, while: { $0.starts(with: prefix) }, into: &out)
        case .greaterThan(let x), .greaterThanOrEqual(let x), .lessThan(let x), .lessThanOrEqual(let x):
            guard !x.isNaN else { throw VecStoreError.invalidFilter("NaN bound on \(name)") }
            let numberPrefix = prefix + [FieldKey.numberTag]
            func keyFor(_ d: Double) -> [UInt8] {
                var k = numberPrefix
                k.appendBE(FieldKey.encodeNumber(d))
                return k
            }
            let decode = { (key: UnsafeRawBufferPointer) -> Double in
                var v: UInt64 = 0
                for b in key.suffix(8) { v = v << 8 | UInt64(b) }
                return FieldKey.decodeNumber(v)
            }
            let start: [UInt8]
            switch condition {
            case .greaterThan, .greaterThanOrEqual: start = keyFor(x)
            default: start = numberPrefix
            }
            try scan(from: start, while: { key in
                guard key.count == numberPrefix.count + 8, key.starts(with: numberPrefix) else { return false }
                let value = decode(key)
                switch condition {
                case .lessThan: return value < x
                case .lessThanOrEqual: return value <= x
                default: return true
                }
            }, skip: { key in
                if case .greaterThan = condition { return decode(key) == x }
                return false
            }, into: &out)
        }
        return out
    }

    private func equals(_ name: String, _ value: JSONValue, into out: inout [UInt64]) throws {
        guard let (key, truncated) = FieldKey.key(view.record.id, name, value) else {
            throw VecStoreError.invalidFilter("\(name): only strings, numbers and booleans can be compared")
        }
        if !truncated {
            try scan(from: key, while: { $0.elementsEqual(key) }, into: &out)
            return
        }
        // A string longer than the key limit shares its key with every string of the same prefix:
        // confirm each candidate against the stored metadata.
        var candidates = [UInt64](repeating: 0, count: wordCount)
        try scan(from: key, while: { $0.elementsEqual(key) }, into: &candidates)
        for (w, word) in candidates.enumerated() where word != 0 {
            var bits = word
            while bits != 0 {
                let row = UInt32(w * 64 + bits.trailingZeroBitCount)
                bits &= bits - 1
                let doc = try collection.document(txn, view, row: row)
                let stored = doc.metadata[name]
                let match: Bool
                if case .array(let items)? = stored { match = items.contains(value) } else { match = stored == value }
                if match { out[w] |= 1 << UInt64(row & 63) }
            }
        }
    }

    /// Sets the rows of every key from `start` on while `condition` holds for the key.
    private func scan(from start: [UInt8], while condition: (UnsafeRawBufferPointer) -> Bool,
                      skip: (UnsafeRawBufferPointer) -> Bool = { _ in false }, into out: inout [UInt64]) throws {
        let words = out.count
        try txn.withCursor(dbs.fields) { (c: Cursor) throws -> Void in
            var entry = try c.seek(atLeast: start)
            while let (key, _) = entry, condition(key) {
                if !skip(key) {
                    var page = try c.multipleValues(first: true)
                    while let rows = page {
                        var o = 0
                        while o + 4 <= rows.count {
                            let row = Int(readBE32(rows, at: o))
                            if row >> 6 < words { out[row >> 6] |= 1 << UInt64(row & 63) }
                            o += 4
                        }
                        page = try c.multipleValues(first: false)
                    }
                }
                entry = try c.nextKey()
            }
        }
    }
}
