import LMDB
import VecStoreIO
import VecStoreKernels

/// A collection as one read transaction sees it: where each vector block lives in the memory map and
/// which rows are live. Resolving it costs one cursor pass over the block keys (a few hundred entries per
/// million vectors), after which row `i` is found by pointer arithmetic. Valid only inside the
/// transaction that built it.
final class CollectionView {
    let record: CollectionRecord
    /// Vector blocks in row order; block `b` holds rows `b << shift ..< b << shift + count`.
    private(set) var blocks: [VectorBlock] = []
    /// Live rows as a bitset (bit `i` = row `i`).
    private(set) var liveWords: [UInt64]
    /// Copies made for the rare block whose value is not 4-byte aligned in the map (small values that live
    /// inside a leaf page rather than on overflow pages).
    private var ownedCopies: [UnsafeMutableRawBufferPointer] = []

    /// Resolves the collection's vector blocks and (unless `vectorsOnly`) copies its live bitmap.
    init(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, name: String, vectorsOnly: Bool = false)
        throws
    {
        self.record = record
        let rows = Int(record.nextInternalID)
        // The live bitmap is sized once the vector blocks confirm `rows` (a damaged record could claim 2³² rows).
        liveWords = []
        let dim = record.dimension
        let rowBytes = (dim + 1) * 4
        let prefix = Format.prefix(record.id)
        try txn.withCursor(dbs.vectors) { (c: Cursor) throws -> Void in
            var entry = try c.seek(atLeast: prefix)
            var expected: UInt32 = 0
            while let (key, value) = entry, key.starts(with: prefix) {
                guard key.count == 8 else { throw VecStoreError.corrupt("vectors key of \(name) has \(key.count) bytes") }
                let blockNumber = readBE32(key, at: 4)
                guard blockNumber == expected else {
                    throw VecStoreError.corrupt("collection \(name): vector block \(expected) missing (found \(blockNumber))")
                }
                guard value.count % rowBytes == 0, value.count / rowBytes <= record.blockCapacity,
                      value.count > 0 else {
                    throw VecStoreError.corrupt("collection \(name): vector block \(blockNumber) has \(value.count) bytes")
                }
                let count = value.count / rowBytes
                guard var base = value.baseAddress else {
                    throw VecStoreError.corrupt("collection \(name): vector block \(blockNumber) has no data")
                }
                if Int(bitPattern: base) % 4 != 0 {
                    // A small block stored inside a leaf page may be misaligned: read a copy.
                    let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: value.count, alignment: 64)
                    copy.copyMemory(from: value)
                    ownedCopies.append(copy)
                    if let copied = copy.baseAddress { base = UnsafeRawPointer(copied) }
                }
                let vectors = base.assumingMemoryBound(to: Float.self)
                blocks.append(VectorBlock(firstID: blockNumber << UInt32(record.blockShift), count: count,
                                          vectors: vectors, squaredNorms: vectors + count * dim))
                expected += 1
                entry = try c.next()
            }
        }
        let stored = blocks.reduce(0) { $0 + $1.count }
        guard stored == rows, blocks.dropLast().allSatisfy({ $0.count == record.blockCapacity }) else {
            throw VecStoreError.corrupt("collection \(name): \(stored) vector rows stored, record says \(rows)")
        }
        if !vectorsOnly { liveWords = try Self.liveWords(txn, dbs, record, name: name) }
    }

    /// The collection's live bitmap as words (bit `i` = row `i`), copied out of the `live` blocks.
    static func liveWords(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, name: String) throws
        -> [UInt64]
    {
        let rows = Int(record.nextInternalID)
        let prefix = Format.prefix(record.id)
        var liveWords = [UInt64](repeating: 0, count: (rows + 63) / 64)
        try liveWords.withUnsafeMutableBytes { words in
            try txn.withCursor(dbs.live) { (c: Cursor) throws -> Void in
                var entry = try c.seek(atLeast: prefix)
                while let (key, value) = entry, key.starts(with: prefix) {
                    guard key.count == 8, value.count == Format.liveBlockBytes else {
                        throw VecStoreError.corrupt("collection \(name): live block has \(value.count) bytes")
                    }
                    let start = Int(readBE32(key, at: 4)) * Format.liveBlockBytes
                    if start < words.count {
                        let n = min(value.count, words.count - start)
                        UnsafeMutableRawBufferPointer(rebasing: words[start..<(start + n)])
                            .copyMemory(from: UnsafeRawBufferPointer(rebasing: value[0..<n]))
                    }
                    entry = try c.next()
                }
            }
        }
        // Bits past the last row are not rows.
        if rows % 64 != 0, !liveWords.isEmpty { liveWords[liveWords.count - 1] &= (UInt64(1) << UInt64(rows % 64)) - 1 }
        return liveWords
    }

    deinit {
        for copy in ownedCopies { copy.deallocate() }
    }

    /// Pointer to row `i` (which must be < rows).
    @inline(__always)
    func vector(_ i: UInt32) -> UnsafePointer<Float> {
        let block = blocks[Int(i >> UInt32(record.blockShift))]
        return block.vectors + Int(i - block.firstID) * record.dimension
    }

    /// Whether row `i` is live.
    @inline(__always)
    func isLive(_ i: UInt32) -> Bool {
        let w = Int(i >> 6)
        return w < liveWords.count && (liveWords[w] >> UInt64(i & 63)) & 1 == 1
    }

    /// Number of live rows according to the bitmap.
    var liveBitCount: Int { liveWords.reduce(0) { $0 + $1.nonzeroBitCount } }
}
