import CDistance
import CQuant
import VecStoreKernels

/// 4-bit PQ "fast scan": codes of 32 rows interleaved so that SIMD byte shuffles (`vpshufb`) look up 16-entry
/// tables for 32 rows × 2 (AVX2) or × 4 (AVX-512BW) sub-quantizers per instruction, with the float tables
/// quantized to 8 bits and sums kept exactly in 16 bits.
///
/// Block layout (Spec/PQ.md §4): `M` is padded to `paddedSubquantizers` (even); a block is
/// `blockBytes` = `paddedSubquantizers / 2 × 32` bytes. For the sub-quantizer pair `p` (j = 2p, 2p+1) the
/// block holds 32 bytes at offset `32p`; byte `16h + i` (h ∈ {0, 1}, i < 16) carries the code of
/// sub-quantizer `2p + h` of row `i` in its low nibble and of row `i + 16` in its high nibble. Rows past
/// the last real row of the last block and the padding sub-quantizer have code 0.
public enum FastScan {
    /// Rows per interleaved block.
    public static let blockRows = Int(VQ_FS_BLOCK_ROWS)

    /// Sub-quantizers rounded up to an even count (the kernels consume pairs).
    @inlinable
    public static func paddedSubquantizers(_ m: Int) -> Int { (m + 1) & ~1 }

    /// Bytes of one 32-row block for `m` sub-quantizers.
    @inlinable
    public static func blockBytes(_ m: Int) -> Int { paddedSubquantizers(m) / 2 * 32 }

    /// Blocks needed for `count` rows.
    @inlinable
    public static func blockCount(_ count: Int) -> Int { (count + blockRows - 1) / blockRows }

    /// Interleaves `count` packed 4-bit codes (the `ProductQuantizer` layout, ⌈m/2⌉ bytes a row) into
    /// `blockCount(count) × blockBytes(m)` bytes at `out`.
    public static func pack(_ codes: UnsafePointer<UInt8>, count: Int, subquantizers m: Int,
                            into out: UnsafeMutablePointer<UInt8>) {
        let bytesPerRow = (m + 1) / 2, blockSize = blockBytes(m)
        out.update(repeating: 0, count: blockCount(count) * blockSize)
        for row in 0..<count {
            let src = codes + row * bytesPerRow
            let block = out + (row / blockRows) * blockSize
            let r = row % blockRows, lane = r % 16, shift = UInt8(r < 16 ? 0 : 4)
            for j in 0..<m {
                let code = (src[j >> 1] >> UInt8((j & 1) * 4)) & 15
                block[(j >> 1) * 32 + (j & 1) * 16 + lane] |= code << shift
            }
        }
    }

    /// The code of sub-quantizer `j` of row `r` (< 32) in one block.
    @inlinable
    public static func code(block: UnsafePointer<UInt8>, row r: Int, subquantizer j: Int) -> Int {
        let byte = block[(j >> 1) * 32 + (j & 1) * 16 + (r % 16)]
        return Int(r < 16 ? byte & 15 : byte >> 4)
    }

    /// Recovers the packed 4-bit codes (⌈m/2⌉ bytes a row) of `count` rows from interleaved blocks.
    public static func unpack(_ blocks: UnsafePointer<UInt8>, count: Int, subquantizers m: Int,
                              into codes: UnsafeMutablePointer<UInt8>) {
        let bytesPerRow = (m + 1) / 2, blockSize = blockBytes(m)
        codes.update(repeating: 0, count: count * bytesPerRow)
        for row in 0..<count {
            let block = blocks + (row / blockRows) * blockSize
            for j in 0..<m {
                let c = UInt8(code(block: block, row: row % blockRows, subquantizer: j))
                codes[row * bytesPerRow + (j >> 1)] |= c << UInt8((j & 1) * 4)
            }
        }
    }

    /// Scans `blockCount` blocks with a quantized table: `out[32b + r]` = the table sum of row `r` of block
    /// `b` (dispatched to AVX-512BW, AVX2 or portable code; every path gives the same integers).
    public static func scan(_ blocks: UnsafePointer<UInt8>, blockCount: Int, table: QuantizedTable,
                            into out: UnsafeMutablePointer<UInt16>) {
        table.entries.withUnsafeBufferPointer { t in
            guard let tb = t.baseAddress else { return }
            vq_fs4_scan(blocks, blockCount, table.paddedSubquantizers, tb, out)
        }
    }
}

/// A 4-bit ADC look-up table quantized to 8 bits for fast scan.
///
/// Values are turned into distances (lower is closer: the L2 table as it is, the inner-product table
/// negated). Each sub-quantizer's 16 entries are shifted by their minimum `min_j`, and all are scaled by one
/// factor `scale = 255 / max_j(max_j − min_j)` and rounded. A row's approximate distance is
/// `bias + sum / scale` with `bias = Σ min_j`; it differs from the float ADC distance by at most
/// `errorBound = M / (2 · scale)` (half a quantization step per sub-quantizer).
public struct QuantizedTable: Sendable {
    /// `paddedSubquantizers × 16` uint8 entries (padding sub-quantizer all 0).
    public var entries: [UInt8]
    /// Sub-quantizers the table covers (before padding).
    public var subquantizers: Int
    /// Even count the kernel consumes.
    public var paddedSubquantizers: Int
    /// Quantization scale (table units per distance unit).
    public var scale: Float
    /// Sum of the per-sub-quantizer minima (in distance units).
    public var bias: Float
    /// Whether the source table held inner products (distances are their negation).
    public var negated: Bool

    /// Quantizes an `m × 16` float table (`ProductQuantizer.lookupTable` with 4-bit codes). For an
    /// inner-product table pass `innerProduct: true`.
    public init(_ table: UnsafePointer<Float>, subquantizers m: Int, innerProduct: Bool) {
        subquantizers = m
        paddedSubquantizers = FastScan.paddedSubquantizers(m)
        negated = innerProduct
        scale = 1
        bias = 0
        entries = [UInt8](repeating: 0, count: paddedSubquantizers * 16)
        update(table, plus: nil, innerProduct: innerProduct)
    }

    /// An all-zero table of `m` sub-quantizers (scale 1, bias 0): storage that `update` fills in place, so a
    /// query that quantizes one table per probed list allocates it once.
    public init(subquantizers m: Int) {
        subquantizers = m
        paddedSubquantizers = FastScan.paddedSubquantizers(m)
        negated = false
        scale = 1
        bias = 0
        entries = [UInt8](repeating: 0, count: paddedSubquantizers * 16)
    }

    /// Re-quantizes the table `table + addend` (entry-wise; `addend` nil for none) of the same shape in place,
    /// in one dispatched C pass with no allocation (the L2 list table, one per probed list, is the
    /// precomputed list terms plus the query's terms).
    public mutating func update(_ table: UnsafePointer<Float>, plus addend: UnsafePointer<Float>?, innerProduct: Bool) {
        negated = innerProduct
        var s: Float = 1, b: Float = 0
        let m = subquantizers
        entries.withUnsafeMutableBufferPointer { e in
            guard let out = e.baseAddress else { return }
            vq_fs4_quantize_table(table, addend, m, innerProduct ? -1 : 1, out, &s, &b)
        }
        scale = s
        bias = b
    }

    /// Largest difference between `distance(sum)` and the float ADC distance of the same code.
    public var errorBound: Float { Float(subquantizers) * 0.5 / scale }

    /// The largest kernel sum whose approximate distance is at most `distance` (−1 when none is), so scans
    /// can compare integers against a heap threshold.
    @inlinable @inline(__always)
    public func sumLimit(forDistance distance: Float) -> Int {
        let x = (distance - bias) * scale
        guard x >= 0 else { return -1 }
        return x >= 65535 ? 65535 : Int(x)
    }

    /// The approximate distance (lower is closer) of a kernel sum.
    @inlinable @inline(__always)
    public func distance(_ sum: UInt16) -> Float { bias + Float(sum) / scale }

    /// The approximate score in the table's own sense (squared distance for L2, inner product otherwise).
    @inlinable @inline(__always)
    public func value(_ sum: UInt16) -> Float { negated ? -distance(sum) : distance(sum) }
}

/// Re-ranking of approximate candidates with the float32 vectors, so reported scores are exact.
public enum ExactRerank {
    /// Exact distances of scattered rows: `out[i]` = squared L2 distance (`metric == .l2`) or inner product
    /// (otherwise) of `query` and `rows[i]` (each `dimension` floats), for `i < count`. Four rows are scored
    /// together while rows further on are prefetched line by line (`vq_score_rows`), so the cache misses of
    /// rows scattered over a large table overlap.
    public static func score(_ query: UnsafePointer<Float>, rows: UnsafePointer<UnsafePointer<Float>?>, count: Int,
                             dimension: Int, metric: Metric, into out: UnsafeMutablePointer<Float>) {
        vq_score_rows(query, rows, count, dimension, metric == .l2 ? 1 : 0, out)
    }

    /// The `k` best of `candidates` by exact score against `query`: `(row, score)` best first, where score is
    /// the squared distance for L2 (ascending) and the inner product for dot and cosine (descending); ties go
    /// to the lower row. `vector(row)` gives a row's `dimension` floats, or nil for a row to skip (deleted).
    public static func rerank(_ candidates: [UInt32], query: UnsafePointer<Float>, dimension: Int, metric: Metric,
                              k: Int, vector: (UInt32) -> UnsafePointer<Float>?) -> [(id: UInt32, score: Float)] {
        var top = TopK(k: k)
        var rows: [UInt32] = []
        var pointers: [UnsafePointer<Float>?] = []
        rows.reserveCapacity(candidates.count)
        pointers.reserveCapacity(candidates.count)
        for row in candidates {
            guard let v = vector(row) else { continue }
            rows.append(row)
            pointers.append(v)
        }
        var scores = [Float](repeating: 0, count: rows.count)
        pointers.withUnsafeBufferPointer { p in
            scores.withUnsafeMutableBufferPointer { s in
                guard let pb = p.baseAddress, let sb = s.baseAddress else { return }
                score(query, rows: pb, count: p.count, dimension: dimension, metric: metric, into: sb)
            }
        }
        for (j, row) in rows.enumerated() {
            let s = metric == .l2 ? -scores[j] : scores[j]
            if s >= top.threshold { top.insert(s, row) }
        }
        let sorted = top.sorted()
        return metric == .l2 ? sorted.map { (id: $0.id, score: -$0.score) } : sorted
    }
}
