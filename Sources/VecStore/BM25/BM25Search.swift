import Foundation
import LMDB

/// One block of a term's postings, as found in the memory map.
struct BlockRef {
    var bytes: UnsafeRawBufferPointer
    var count: Int
    var firstRow: UInt32
    var lastRow: UInt32
    /// Upper bound of the term's score in this block (from its max tf and min document length).
    var upperBound: Float
}

/// Reads a term's posting blocks in row order, decoding one block at a time into scratch memory.
/// `doc` is always a real posting (or `UInt32.max` when exhausted); a block is decoded only when a
/// posting other than its first is needed.
struct PostingCursor {
    let blocks: UnsafeBufferPointer<BlockRef>
    let rows: UnsafeMutablePointer<UInt32>
    let tfs: UnsafeMutablePointer<UInt32>
    let weight: Float
    let upperBound: Float
    var block = 0
    var decoded = -1
    var pos = 0
    var doc: UInt32
    var corrupt = false

    init(blocks: UnsafeBufferPointer<BlockRef>, rows: UnsafeMutablePointer<UInt32>, tfs: UnsafeMutablePointer<UInt32>,
         weight: Float, upperBound: Float) {
        self.blocks = blocks
        self.rows = rows
        self.tfs = tfs
        self.weight = weight
        self.upperBound = upperBound
        doc = blocks.isEmpty ? .max : blocks[0].firstRow
    }

    @inline(__always)
    mutating func ensureDecoded() {
        if decoded == block { return }
        let b = blocks[block]
        if !PostingBlock.decode(b.bytes, count: b.count, firstRow: b.firstRow, lastRow: b.lastRow, rows: rows, tfs: tfs) {
            corrupt = true
            doc = .max
            block = blocks.count
            return
        }
        decoded = block
    }

    /// The term frequency of the current posting.
    @inline(__always)
    mutating func tf() -> UInt32 {
        ensureDecoded()
        return corrupt ? 0 : tfs[pos]
    }

    @inline(__always)
    mutating func next() {
        ensureDecoded()
        if corrupt { return }
        pos += 1
        if pos < blocks[block].count {
            doc = rows[pos]
            return
        }
        block += 1
        pos = 0
        doc = block < blocks.count ? blocks[block].firstRow : .max
    }

    /// Moves to the first posting at or after `target`, skipping whole blocks by their last row.
    @inline(__always)
    mutating func advance(to target: UInt32) {
        if doc >= target { return }
        if blocks[block].lastRow < target {
            block += 1
            while block < blocks.count && blocks[block].lastRow < target { block += 1 }
            pos = 0
            guard block < blocks.count else { doc = .max; return }
            doc = blocks[block].firstRow
            if doc >= target { return }
        }
        ensureDecoded()
        if corrupt { return }
        let n = blocks[block].count
        while pos < n && rows[pos] < target { pos += 1 }
        doc = rows[pos]  // lastRow ≥ target, so pos < n
    }

    /// Upper bound of this term's score at row `target` from the block that could hold it, moving
    /// past blocks that end before it (without decoding).
    @inline(__always)
    mutating func blockUpperBound(at target: UInt32) -> Float {
        if doc >= target { return doc == target ? blocks[block].upperBound : 0 }
        if blocks[block].lastRow < target {
            block += 1
            while block < blocks.count && blocks[block].lastRow < target { block += 1 }
            pos = 0
            guard block < blocks.count else { doc = .max; return 0 }
            doc = blocks[block].firstRow
            if doc > target { return 0 }
        }
        return blocks[block].upperBound
    }
}

/// Min-heap of the best `k` (score, row) pairs; among equal scores the lower row is better.
struct ScoreHeap {
    let k: Int
    private(set) var items: [(score: Double, row: UInt32)] = []

    init(k: Int) {
        self.k = k
        items.reserveCapacity(k)
    }

    /// The score a new row must beat (rows come in increasing order, so a tie never wins).
    var threshold: Double { items.count < k ? -.infinity : items[0].score }

    @inline(__always)
    private static func worse(_ a: (score: Double, row: UInt32), _ b: (score: Double, row: UInt32)) -> Bool {
        a.score < b.score || (a.score == b.score && a.row > b.row)
    }

    mutating func insert(_ score: Double, _ row: UInt32) {
        let item = (score: score, row: row)
        if items.count < k {
            items.append(item)
            var i = items.count - 1
            while i > 0 {
                let parent = (i - 1) / 2
                if Self.worse(items[i], items[parent]) { items.swapAt(i, parent); i = parent } else { break }
            }
            return
        }
        guard Self.worse(items[0], item) else { return }
        items[0] = item
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < items.count && Self.worse(items[l], items[m]) { m = l }
            if r < items.count && Self.worse(items[r], items[m]) { m = r }
            if m == i { break }
            items.swapAt(i, m)
            i = m
        }
    }

    /// Best first.
    func sorted() -> [(score: Double, row: UInt32)] {
        items.sorted { Self.worse($1, $0) }
    }
}

/// Which rows may be returned: the live bitmap read in place from the map, or a filter's bitset.
struct RowMask {
    var liveBlocks: [UnsafePointer<UInt8>?] = []
    var words: [UInt64]?

    @inline(__always)
    func contains(_ row: UInt32) -> Bool {
        if let words {
            let w = Int(row >> 6)
            return w < words.count && (words[w] >> UInt64(row & 63)) & 1 == 1
        }
        let b = Int(row >> 16)
        guard b < liveBlocks.count, let p = liveBlocks[b] else { return false }
        let bit = Int(row & 0xFFFF)
        return (p[bit >> 3] >> UInt8(bit & 7)) & 1 == 1
    }
}

/// Evaluates one BM25 query inside a read transaction. Posting blocks, document lengths and the live
/// bitmap are read through pointers into the memory map; nothing is copied but the current block's
/// decoded rows.
struct BM25Searcher {
    let txn: Transaction
    let dbs: Databases
    let collection: UInt32
    let name: String
    let info: TextInfo
    /// Document-length blocks by block number.
    private var lengthBlocks: [UnsafeRawPointer?] = []

    init(_ txn: Transaction, _ dbs: Databases, collection: UInt32, name: String, info: TextInfo) throws {
        self.txn = txn
        self.dbs = dbs
        self.collection = collection
        self.name = name
        self.info = info
        let prefix = Format.prefix(collection)
        var blocks: [UnsafeRawPointer?] = []
        try txn.withCursor(dbs.doclens) { (c: Cursor) throws -> Void in
            var entry = try c.seek(atLeast: prefix)
            while let (key, value) = entry, key.starts(with: prefix) {
                guard key.count == 8, value.count == TextFormat.lengthBlockRows * 4 else {
                    throw VecStoreError.corrupt("collection \(name): length block of \(value.count) bytes")
                }
                let b = Int(readBE32(key, at: 4))
                while blocks.count <= b { blocks.append(nil) }
                blocks[b] = value.baseAddress
                entry = try c.next()
            }
        }
        lengthBlocks = blocks
    }

    /// The live bitmap blocks of the collection, in place.
    static func liveMask(_ txn: Transaction, _ dbs: Databases, collection: UInt32) throws -> RowMask {
        let prefix = Format.prefix(collection)
        var blocks: [UnsafePointer<UInt8>?] = []
        try txn.withCursor(dbs.live) { (c: Cursor) throws -> Void in
            var entry = try c.seek(atLeast: prefix)
            while let (key, value) = entry, key.starts(with: prefix) {
                guard key.count == 8, value.count == Format.liveBlockBytes else {
                    throw VecStoreError.corrupt("live block of \(value.count) bytes")
                }
                let b = Int(readBE32(key, at: 4))
                while blocks.count <= b { blocks.append(nil) }
                blocks[b] = value.baseAddress?.assumingMemoryBound(to: UInt8.self)
                entry = try c.next()
            }
        }
        return RowMask(liveBlocks: blocks)
    }

    @inline(__always)
    func length(_ row: UInt32) -> UInt32 {
        let b = Int(row >> TextFormat.lengthBlockShift)
        guard b < lengthBlocks.count, let p = lengthBlocks[b] else { return 0 }
        return UInt32(littleEndian: p.loadUnaligned(fromByteOffset: Int(row & UInt32(TextFormat.lengthBlockRows - 1)) * 4,
                                                    as: UInt32.self))
    }

    /// Lucene's BM25 idf: log(1 + (N − df + 0.5) / (df + 0.5)).
    static func idf(n: Double, df: Double) -> Double { log(1 + (n - df + 0.5) / (df + 0.5)) }

    /// A term of the query with its weight (idf) and posting blocks.
    struct QueryTerm {
        var term: String
        var weight: Float
        var blocks: [BlockRef]
        var upperBound: Float
    }

    /// Looks up the query's distinct terms (a term repeated in the query counts once: chosen on
    /// SciFact's training queries, Spec/BM25.md) and collects their block refs.
    func queryTerms(_ terms: [String]) throws -> [QueryTerm] {
        var seen = Set<String>()
        var order: [String] = []
        for t in terms where seen.insert(t).inserted { order.append(t) }
        let n = Double(info.docCount)
        let avgdl = info.docCount == 0 ? 1 : Float(Double(info.totalLength) / n)
        let k1 = info.options.k1, b = info.options.b
        var result: [QueryTerm] = []
        for term in order {
            guard let value = try txn.get(dbs.terms, TextFormat.termKey(collection, term)) else { continue }
            let entry = try TermEntry.decode(value, context: "collection \(name) term '\(term)'")
            guard entry.df > 0, entry.blocks > 0 else { continue }
            let weight = Float(Self.idf(n: n, df: Double(entry.df)))
            var blocks: [BlockRef] = []
            blocks.reserveCapacity(Int(entry.blocks))
            var maxBound: Float = 0
            let start = TextFormat.postingKey(collection, entry.termID, 0)
            let prefix = Array(start[0..<8])
            try txn.withCursor(dbs.postings) { (c: Cursor) throws -> Void in
                var e = try c.seek(atLeast: start)
                while let (key, v) = e, key.starts(with: prefix) {
                    let h = try PostingBlock.header(v, context: "collection \(name) term '\(term)' block")
                    // Blocks hold ascending, disjoint row ranges: the cursors and the scoring window rely on it.
                    guard h.firstRow <= h.lastRow, h.count > 1 || h.firstRow == h.lastRow,
                          blocks.last.map({ $0.lastRow < h.firstRow }) ?? true else {
                        throw VecStoreError.corrupt(
                            "collection \(name): term '\(term)' block \(blocks.count) covers rows \(h.firstRow)...\(h.lastRow) out of order")
                    }
                    let tf = Float(h.maxTF)
                    let norm = k1 * (1 - b + b * Float(h.minLength) / avgdl)
                    // Slightly inflated so float rounding never makes a real score exceed it.
                    // A saturated max tf (65,535) bounds nothing: use BM25's limit as tf grows, idf · (k1 + 1).
                    let bound = h.maxTF >= 65_535 ? weight * (k1 + 1) * (1 + 1e-5)
                                                  : weight * tf * (k1 + 1) / (tf + norm) * (1 + 1e-5)
                    maxBound = max(maxBound, bound)
                    blocks.append(BlockRef(bytes: v, count: h.count, firstRow: h.firstRow, lastRow: h.lastRow,
                                           upperBound: bound))
                    e = try c.next()
                }
            }
            guard blocks.count == Int(entry.blocks) else {
                throw VecStoreError.corrupt("collection \(name): term '\(term)' has \(blocks.count) blocks, entry says \(entry.blocks)")
            }
            result.append(QueryTerm(term: term, weight: weight, blocks: blocks, upperBound: maxBound))
        }
        return result
    }

    /// Top `k` rows by BM25 among `mask`, with block-max MaxScore pruning (or scoring every posting
    /// when `exhaustive`). Also reports how many documents were fully or partly scored.
    func topK(_ queryTerms: [QueryTerm], k: Int, mask: RowMask, exhaustive: Bool = false, window: Int = 4096) throws
        -> (hits: [(score: Double, row: UInt32)], scored: Int)
    {
        guard k > 0, !queryTerms.isEmpty else { return ([], 0) }
        let k1 = info.options.k1, b = info.options.b
        let avgdl = info.docCount == 0 ? 1 : Float(Double(info.totalLength) / Double(info.docCount))
        let k1p1 = k1 + 1
        let lengthScale = k1 * b / avgdl
        let lengthBase = k1 * (1 - b)
        // Terms by upper bound, ascending.
        let terms = queryTerms.sorted { $0.upperBound < $1.upperBound }
        let n = terms.count
        let scratch = UnsafeMutablePointer<UInt32>.allocate(capacity: 2 * TextFormat.blockSize * n)
        defer { scratch.deallocate() }
        let blockStorage = terms.map { t -> UnsafeMutableBufferPointer<BlockRef> in
            let p = UnsafeMutableBufferPointer<BlockRef>.allocate(capacity: t.blocks.count)
            _ = p.initialize(from: t.blocks)
            return p
        }
        defer { for p in blockStorage { p.deallocate() } }
        var cursors: [PostingCursor] = (0..<n).map { i in
            PostingCursor(blocks: UnsafeBufferPointer(blockStorage[i]),
                          rows: scratch + 2 * TextFormat.blockSize * i,
                          tfs: scratch + 2 * TextFormat.blockSize * i + TextFormat.blockSize,
                          weight: terms[i].weight, upperBound: terms[i].upperBound)
        }
        var heap = ScoreHeap(k: k)
        var scored = 0
        // prefix[i] = sum of upper bounds of terms 0..<i.
        var prefix = [Double](repeating: 0, count: n + 1)
        for i in 0..<n { prefix[i + 1] = prefix[i] + Double(terms[i].upperBound) }
        var firstEssential = 0
        if !exhaustive {
            // Block-max MaxScore over windows of rows (as Lucene's MaxScoreBulkScorer): essential terms
            // add their scores into a window of accumulators term at a time, then the window's rows
            // are visited in order and only those that could still enter the top k look up the
            // non-essential terms. The essential/non-essential split is updated between windows.
            let acc = UnsafeMutablePointer<Double>.allocate(capacity: window)
            acc.initialize(repeating: 0, count: window)
            let bits = UnsafeMutablePointer<UInt64>.allocate(capacity: window / 64)
            bits.initialize(repeating: 0, count: window / 64)
            defer { acc.deallocate(); bits.deallocate() }
            let corrupt: Bool = cursors.withUnsafeMutableBufferPointer { c in
                while true {
                    let threshold0 = heap.threshold
                    while firstEssential < n && prefix[firstEssential + 1] <= threshold0 { firstEssential += 1 }
                    if firstEssential == n { break }
                    var start = UInt32.max
                    for i in firstEssential..<n where c[i].doc < start { start = c[i].doc }
                    if start == .max { break }
                    let end = UInt32(min(UInt64(start) + UInt64(window), UInt64(UInt32.max)))
                    for i in firstEssential..<n {
                        let weight = c[i].weight
                        // Whole blocks at a time: decode, then add every posting below `end`.
                        while c[i].doc < end {
                            c[i].ensureDecoded()
                            if c[i].corrupt { break }
                            let rows = c[i].rows, tfs = c[i].tfs
                            let count = c[i].blocks[c[i].block].count
                            var p = c[i].pos
                            while p < count {
                                let row = rows[p]
                                if row >= end { break }
                                let slot = Int(row &- start)
                                let tf = Float(tfs[p])
                                let norm = lengthBase + lengthScale * Float(length(row))
                                acc[slot] += Double(weight * tf * k1p1 / (tf + norm))
                                bits[slot >> 6] |= 1 << UInt64(slot & 63)
                                p += 1
                            }
                            if p < count {
                                c[i].pos = p
                                c[i].doc = rows[p]
                            } else {
                                c[i].block += 1
                                c[i].pos = 0
                                c[i].doc = c[i].block < c[i].blocks.count ? c[i].blocks[c[i].block].firstRow : .max
                            }
                        }
                    }
                    for w in 0..<(window / 64) {
                        var word = bits[w]
                        if word == 0 { continue }
                        bits[w] = 0
                        while word != 0 {
                            let slot = w << 6 | word.trailingZeroBitCount
                            word &= word - 1
                            let row = start &+ UInt32(slot)
                            var score = acc[slot]
                            acc[slot] = 0
                            guard mask.contains(row) else { continue }
                            let threshold = heap.threshold
                            if firstEssential > 0 {
                                if score + prefix[firstEssential] <= threshold { continue }
                                var bound = score
                                for i in 0..<firstEssential { bound += Double(c[i].blockUpperBound(at: row)) }
                                if bound <= threshold { continue }
                                let norm = lengthBase + lengthScale * Float(length(row))
                                for i in stride(from: firstEssential - 1, through: 0, by: -1) {
                                    if score + prefix[i + 1] <= threshold { break }
                                    c[i].advance(to: row)
                                    if c[i].doc == row {
                                        let tf = Float(c[i].tf())
                                        score += Double(c[i].weight * tf * k1p1 / (tf + norm))
                                    }
                                }
                            }
                            scored += 1
                            if score > threshold { heap.insert(score, row) }
                        }
                    }
                }
                return c.contains { $0.corrupt }
            }
            if corrupt { throw VecStoreError.corrupt("collection \(name): a posting block is damaged") }
            return (heap.sorted(), scored)
        }
        let corrupt: Bool = cursors.withUnsafeMutableBufferPointer { c in
            while true {
                var candidate = UInt32.max
                for i in firstEssential..<n where c[i].doc < candidate { candidate = c[i].doc }
                if candidate == .max { break }
                guard mask.contains(candidate) else {
                    for i in firstEssential..<n where c[i].doc == candidate { c[i].next() }
                    continue
                }
                let norm = lengthBase + lengthScale * Float(length(candidate))
                var score = 0.0
                for i in firstEssential..<n where c[i].doc == candidate {
                    let tf = Float(c[i].tf())
                    score += Double(c[i].weight * tf * k1p1 / (tf + norm))
                    c[i].next()
                }
                if !exhaustive {
                    var threshold = heap.threshold
                    if firstEssential > 0 {
                        if score + prefix[firstEssential] <= threshold { continue }
                        var bound = score
                        for i in 0..<firstEssential { bound += Double(c[i].blockUpperBound(at: candidate)) }
                        if bound <= threshold { continue }
                        for i in stride(from: firstEssential - 1, through: 0, by: -1) {
                            if score + prefix[i + 1] <= threshold { break }
                            c[i].advance(to: candidate)
                            if c[i].doc == candidate {
                                let tf = Float(c[i].tf())
                                score += Double(c[i].weight * tf * k1p1 / (tf + norm))
                            }
                        }
                    }
                    scored += 1
                    if score > threshold {
                        heap.insert(score, candidate)
                        threshold = heap.threshold
                        while firstEssential < n && prefix[firstEssential + 1] <= threshold { firstEssential += 1 }
                    }
                } else {
                    scored += 1
                    heap.insert(score, candidate)
                }
            }
            return c.contains { $0.corrupt }
        }
        if corrupt { throw VecStoreError.corrupt("collection \(name): a posting block is damaged") }
        return (heap.sorted(), scored)
    }

    /// BM25 scores of the query for the given rows only (for fusing with vector candidates).
    func scores(_ queryTerms: [QueryTerm], rows: [UInt32]) throws -> [UInt32: Double] {
        let k1 = info.options.k1, b = info.options.b
        let avgdl = info.docCount == 0 ? 1 : Float(Double(info.totalLength) / Double(info.docCount))
        let sortedRows = rows.sorted()
        var result: [UInt32: Double] = [:]
        let scratch = UnsafeMutablePointer<UInt32>.allocate(capacity: 2 * TextFormat.blockSize)
        defer { scratch.deallocate() }
        for t in queryTerms {
            try t.blocks.withUnsafeBufferPointer { blocks in
                var c = PostingCursor(blocks: blocks, rows: scratch, tfs: scratch + TextFormat.blockSize, weight: t.weight,
                                      upperBound: t.upperBound)
                for row in sortedRows {
                    c.advance(to: row)
                    if c.doc == .max { break }
                    if c.doc == row {
                        let tf = Float(c.tf())
                        let norm = k1 * (1 - b + b * Float(length(row)) / avgdl)
                        result[row, default: 0] += Double(t.weight * tf * (k1 + 1) / (tf + norm))
                    }
                }
                if c.corrupt { throw VecStoreError.corrupt("collection \(name): a posting block of '\(t.term)' is damaged") }
            }
        }
        return result
    }
}
