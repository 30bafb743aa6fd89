import CDistance
import CQuant
import VecStoreKernels

/// What the rows of an inverted-list block carry next to their row ids.
public enum IVFPayloadKind: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// float32 vectors (IVF-Flat); width = dimension.
    case flat = 1
    /// 8-bit PQ codes, M bytes a row; width = M.
    case pq8 = 2
    /// 4-bit PQ codes packed two per byte, ⌈M/2⌉ bytes a row; width = M.
    case pq4 = 3
    /// 4-bit PQ codes in the 32-row interleaved fast-scan layout; width = M.
    case pq4FastScan = 4
    /// IEEE binary16 vectors (IVF-Flat with binary16 lists): each component the round-to-nearest-even
    /// conversion of the float32 row in `vectors`; width = dimension. Scans bound every row's float32 score
    /// from its copy and score exactly (from `vectors`) only the rows whose bound can still enter the top k.
    case flat16 = 5

    /// The kinds that hold the vectors themselves (float32 or binary16), not PQ codes.
    public var isFlat: Bool { self == .flat || self == .flat16 }

    /// The kind's name in the Spec and in `index show`.
    public var description: String {
        switch self {
        case .flat: "flat"
        case .pq8: "pq8"
        case .pq4: "pq4"
        case .pq4FastScan: "pq4-fastscan"
        case .flat16: "flat16"
        }
    }

    /// Largest width the kind accepts.
    public var maxWidth: Int { isFlat ? 65535 : 256 }

    /// Payload bytes of `count` rows of `width`.
    public func payloadBytes(count: Int, width: Int) -> Int {
        switch self {
        case .flat: count * width * 4
        case .flat16: count * (8 + 2 * width)
        case .pq8: count * width
        case .pq4: count * ((width + 1) / 2)
        case .pq4FastScan: FastScan.blockCount(count) * FastScan.blockBytes(width)
        }
    }
}

/// The byte layout of one inverted-list block, an LMDB value holding up to a block's capacity of one list's
/// rows: a 16-byte header, the rows' ids, zero padding to a 16-byte boundary, then the payload (vectors or
/// codes) in the same row order. Spec/IVF.md §4 describes it byte by byte.
///
/// | offset | size | field |
/// |---:|---:|---|
/// | 0 | 1 | version (1) |
/// | 1 | 1 | payload kind (`IVFPayloadKind`) |
/// | 2 | 2 | width: dimension (flat) or M (PQ), LE |
/// | 4 | 4 | list number, LE |
/// | 8 | 4 | row count n ≥ 1, LE |
/// | 12 | 4 | reserved, 0 |
/// | 16 | 4n | row ids, LE, strictly ascending |
/// | 16 + 4n | pad | zeros up to `payloadOffset` = ⌈(16 + 4n) / 16⌉ · 16 |
/// | payloadOffset | … | payload (`IVFPayloadKind.payloadBytes`) |
///
/// The value's length must equal `payloadOffset + payloadBytes` exactly.
public enum IVFListBlock {
    /// Header bytes.
    public static let headerSize = 16
    /// Layout version this code writes and reads.
    public static let version: UInt8 = 1

    /// Offset of the payload for `count` rows.
    @inlinable
    public static func payloadOffset(count: Int) -> Int { (headerSize + 4 * count + 15) & ~15 }

    /// Total value length for `count` rows of `width`.
    public static func encodedSize(kind: IVFPayloadKind, count: Int, width: Int) -> Int {
        payloadOffset(count: count) + kind.payloadBytes(count: count, width: width)
    }

    /// Serializes a block. `payload` must hold exactly `kind.payloadBytes(count: rows.count, width:)` bytes
    /// in the kind's layout (for `.pq4FastScan`, `FastScan.pack`'s output).
    ///
    /// - Throws: `QuantError.invalidParameter` for no rows, unsorted or repeated row ids, a width out of
    ///   range, a payload of the wrong length or a list number that does not fit 32 bits.
    public static func encode(kind: IVFPayloadKind, list: Int, width: Int, rows: [UInt32],
                              payload: UnsafeRawBufferPointer) throws(QuantError) -> [UInt8] {
        guard !rows.isEmpty else { throw .invalidParameter("an IVF list block needs at least one row") }
        guard width >= 1, width <= kind.maxWidth else {
            throw .invalidParameter("IVF \(kind) block width \(width) is outside 1…\(kind.maxWidth)")
        }
        guard list >= 0, list <= Int(UInt32.max) else { throw .invalidParameter("IVF list number \(list) out of range") }
        for i in 1..<rows.count where rows[i] <= rows[i - 1] {
            throw .invalidParameter("IVF block row ids must be strictly ascending (row \(i): \(rows[i]) after \(rows[i - 1]))")
        }
        let expected = kind.payloadBytes(count: rows.count, width: width)
        guard payload.count == expected else {
            throw .invalidParameter("IVF \(kind) payload is \(payload.count) bytes, expected \(expected)")
        }
        let offset = payloadOffset(count: rows.count)
        var out = [UInt8](repeating: 0, count: offset + expected)
        out[0] = version
        out[1] = kind.rawValue
        out.storeLE(UInt16(width), at: 2)
        out.storeLE(UInt32(list), at: 4)
        out.storeLE(UInt32(rows.count), at: 8)
        for (i, r) in rows.enumerated() { out.storeLE(r, at: headerSize + 4 * i) }
        out.withUnsafeMutableBytes { o in
            guard let dst = o.baseAddress, let src = payload.baseAddress, expected > 0 else { return }
            (dst + offset).copyMemory(from: src, byteCount: expected)
        }
        return out
    }

    /// Serializes a block whose payload is given as bytes (see `encode(kind:list:width:rows:payload:)`).
    public static func encode(kind: IVFPayloadKind, list: Int, width: Int, rows: [UInt32],
                              payloadBytes: [UInt8]) throws(QuantError) -> [UInt8] {
        let result = payloadBytes.withUnsafeBytes { p in
            Result { () throws(QuantError) -> [UInt8] in
                try encode(kind: kind, list: list, width: width, rows: rows, payload: p)
            }
        }
        return try result.get()
    }

    /// Checks a stored block and returns a view of it (no copy). Every header field, the exact length and the
    /// padding are checked in constant time; a damaged value gives `QuantError.damaged`, never a trap. What
    /// is left (row-id order and range, finite vectors, zero code padding) costs a pass over the block and is
    /// checked by `IVFListBlockView.validate` (verify); scans stay memory-safe without it because every
    /// offset they use comes from the checked length, and the row ids they return are checked by whoever
    /// resolves them (a row id is an index into the collection, never a pointer).
    ///
    /// - Parameters:
    ///   - kind, width, list: when given, the block must carry exactly these (the index header's values and
    ///     the key's list number).
    public static func view(_ bytes: UnsafeRawBufferPointer, kind: IVFPayloadKind? = nil, width: Int? = nil,
                            list: Int? = nil) throws(QuantError) -> IVFListBlockView {
        let record = "IVF list block"
        guard let base = bytes.baseAddress, bytes.count >= headerSize else {
            throw .damaged(record: record, offset: 0, reason: "value is \(bytes.count) bytes, shorter than the 16-byte header")
        }
        guard bytes[0] == version else {
            throw .damaged(record: record, offset: 0, reason: "version \(bytes[0]), this reader knows \(version)")
        }
        guard let k = IVFPayloadKind(rawValue: bytes[1]) else {
            throw .damaged(record: record, offset: 1, reason: "unknown payload kind \(bytes[1])")
        }
        if let kind, k != kind { throw .damaged(record: record, offset: 1, reason: "payload kind \(k), index uses \(kind)") }
        let w = Int(bytes.loadLE(UInt16.self, at: 2))
        guard w >= 1, w <= k.maxWidth else {
            throw .damaged(record: record, offset: 2, reason: "width \(w) outside 1…\(k.maxWidth) for \(k)")
        }
        if let width, w != width { throw .damaged(record: record, offset: 2, reason: "width \(w), index uses \(width)") }
        let l = Int(bytes.loadLE(UInt32.self, at: 4))
        if let list, l != list { throw .damaged(record: record, offset: 4, reason: "list number \(l) under the key of list \(list)") }
        let n = Int(bytes.loadLE(UInt32.self, at: 8))
        guard n >= 1 else { throw .damaged(record: record, offset: 8, reason: "row count 0 (empty blocks are not stored)") }
        guard bytes.loadLE(UInt32.self, at: 12) == 0 else {
            throw .damaged(record: record, offset: 12, reason: "reserved field is not 0")
        }
        let offset = payloadOffset(count: n)
        let expected = offset + k.payloadBytes(count: n, width: w)
        guard bytes.count == expected else {
            throw .damaged(record: record, offset: 8,
                           reason: "\(n) \(k) rows of width \(w) need \(expected) bytes, the value has \(bytes.count)")
        }
        for p in (headerSize + 4 * n)..<offset where bytes[p] != 0 {
            throw .damaged(record: record, offset: p, reason: "padding byte is not 0")
        }
        return IVFListBlockView(base: base, kind: k, width: w, list: l, count: n, payloadOffset: offset)
    }
}

/// A checked, zero-copy view of one list block (valid while its buffer is: the read transaction).
public struct IVFListBlockView: @unchecked Sendable {
    /// Start of the value.
    public let base: UnsafeRawPointer
    /// Payload kind.
    public let kind: IVFPayloadKind
    /// Dimension (flat) or M (PQ).
    public let width: Int
    /// List number from the header.
    public let list: Int
    /// Rows in the block.
    public let count: Int
    /// Byte offset of the payload.
    public let payloadOffset: Int

    /// Row id of row `i` (< count). Unaligned-safe: LMDB values in leaf pages are only 2-byte aligned.
    @inlinable @inline(__always)
    public func rowID(_ i: Int) -> UInt32 {
        UInt32(littleEndian: base.loadUnaligned(fromByteOffset: IVFListBlock.headerSize + 4 * i, as: UInt32.self))
    }

    /// The payload bytes.
    public var payload: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + payloadOffset, count: kind.payloadBytes(count: count, width: width))
    }

    /// All row ids, in order.
    public var rowIDs: [UInt32] { (0..<count).map(rowID) }

    /// Runs `body` with the flat payload as floats, in place when the value is 4-byte aligned (overflow
    /// pages are page-aligned), through one copy otherwise. Only for `.flat` blocks.
    public func withFloatRows<R>(_ body: (UnsafePointer<Float>) -> R) -> R {
        let start = base + payloadOffset
        let floats = count * width
        if Int(bitPattern: start) % MemoryLayout<Float>.alignment == 0 {
            return body(start.assumingMemoryBound(to: Float.self))
        }
        return withUnsafeTemporaryAllocation(of: Float.self, capacity: floats) { buf in
            guard let dst = buf.baseAddress else { return body(start.assumingMemoryBound(to: Float.self)) }
            UnsafeMutableRawPointer(dst).copyMemory(from: start, byteCount: floats * 4)
            return body(dst)
        }
    }

    /// Deep checks for `verify` (beyond what `IVFListBlock.view` checked): row ids strictly ascending and
    /// below `rowLimit` (the collection's next internal id) when given; flat vectors finite; binary16 rows:
    /// components not NaN (a finite float32 converts to a finite half or, past 65504, to ±inf), norms finite
    /// and ≥ 0, error bounds ≥ 0 and +inf exactly for rows with an infinite component; the unused high
    /// nibble of an odd M 0; fast-scan padding (rows past `count`, the padding sub-quantizer) 0.
    public func validate(rowLimit: UInt32? = nil) throws(QuantError) {
        let record = "IVF list block (list \(list))"
        var previous: UInt32 = 0
        for i in 0..<count {
            let r = rowID(i)
            if i > 0 && r <= previous {
                throw .damaged(record: record, offset: IVFListBlock.headerSize + 4 * i,
                               reason: "row id \(r) after \(previous): not ascending")
            }
            if let rowLimit, r >= rowLimit {
                throw .damaged(record: record, offset: IVFListBlock.headerSize + 4 * i,
                               reason: "row id \(r) ≥ the collection's \(rowLimit) rows")
            }
            previous = r
        }
        let p = payload
        switch kind {
        case .flat:
            for i in 0..<(count * width) {
                let bits = p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)
                if !Float(bitPattern: UInt32(littleEndian: bits)).isFinite {
                    throw .damaged(record: record, offset: payloadOffset + 4 * i, reason: "vector component is not finite")
                }
            }
        case .flat16:
            for r in 0..<count {
                let e = halfError(r), nu = halfNorm(r)
                guard e >= 0, !e.isNaN else {
                    throw .damaged(record: record, offset: payloadOffset + 4 * r, reason: "row error bound \(e) is not ≥ 0")
                }
                guard nu >= 0, nu.isFinite else {
                    throw .damaged(record: record, offset: payloadOffset + 4 * (count + r), reason: "row norm \(nu) is not finite and ≥ 0")
                }
                var infinite = false
                for i in 0..<width {
                    let at = 8 * count + 2 * (r * width + i)
                    let bits = UInt16(littleEndian: p.loadUnaligned(fromByteOffset: at, as: UInt16.self))
                    if bits & 0x7c00 == 0x7c00 {
                        if bits & 0x03ff != 0 {
                            throw .damaged(record: record, offset: payloadOffset + at, reason: "binary16 component is NaN")
                        }
                        infinite = true
                    }
                }
                // +inf exactly when a component overflowed binary16: such a row is always scored exactly.
                if infinite != (e == .infinity) {
                    throw .damaged(record: record, offset: payloadOffset + 4 * r,
                                   reason: "row error bound \(e) \(infinite ? "is finite for a row with an infinite component" : "is +inf for a row without one")")
                }
            }
        case .pq8:
            break
        case .pq4:
            if width % 2 == 1 {
                let rowBytes = (width + 1) / 2
                for i in 0..<count where p[i * rowBytes + rowBytes - 1] >> 4 != 0 {
                    throw .damaged(record: record, offset: payloadOffset + i * rowBytes + rowBytes - 1,
                                   reason: "unused high nibble of an odd-M code is not 0")
                }
            }
        case .pq4FastScan:
            guard let pb = p.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
            let blockSize = FastScan.blockBytes(width), blocks = FastScan.blockCount(count)
            let padded = FastScan.paddedSubquantizers(width)
            for b in 0..<blocks {
                let block = pb + b * blockSize
                for r in 0..<FastScan.blockRows {
                    let real = b * FastScan.blockRows + r < count
                    for j in 0..<padded where (!real || j >= width) && FastScan.code(block: block, row: r, subquantizer: j) != 0 {
                        throw .damaged(record: record, offset: payloadOffset + b * blockSize,
                                       reason: "fast-scan padding code (row \(r), sub-quantizer \(j)) is not 0")
                    }
                }
            }
        }
    }
}

/// Scans of checked list blocks into a `TopK` (larger score = closer: `−distance` for L2, the inner product
/// otherwise), restricted to the rows a `CandidateMask` allows (live rows, filter matches).
public enum IVFListScan {
    /// Exact scores of a flat block's rows against `query`, from the many-row kernels (`vs_l2_many` /
    /// `vs_dot_many`), which score each row exactly as the single-row kernels `squaredL2` / `dotProduct` do,
    /// bit for bit, in every kernel variant (`KernelVariantTests`): so `top` holds the values
    /// `VectorCollection.resolve` would compute, with no second pass over the rows that enter it.
    public static func flat(_ block: IVFListBlockView, query: UnsafePointer<Float>, metric: Metric,
                            mask: CandidateMask?, into top: inout TopK) {
        guard block.kind == .flat else { return }
        let d = block.width, l2 = metric == .l2
        block.withFloatRows { rows in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 64) { scratch in
                withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { picked in
                    guard let out = scratch.baseAddress, let candidates = picked.baseAddress else { return }
                    var start = 0
                    while start < block.count {
                        let n = min(64, block.count - start)
                        if l2 { vs_l2_many(query, rows + start * d, n, d, out) } else { vs_dot_many(query, rows + start * d, n, d, out) }
                        // Sixteen rows a pass (see `offerSelected`).
                        offerSelected(out, count: n, bias: nil, l2: l2, groupRows: 16, block: block, first: start,
                                      mask: mask, candidates: candidates, into: &top)
                        start += n
                    }
                }
            }
        }
    }

    /// `flat` for two queries probing the same list (a list-by-list batch): one kernel pass scores each chunk of
    /// rows against both (`vs_l2_many2` / `vs_dot_many2`: each row loaded once, each value the one-query
    /// kernel's bits), and each query's rows are offered to its own `TopK` as `flat` offers them. So `topA` and
    /// `topB` end as two `flat` calls leave them.
    public static func flat2(_ block: IVFListBlockView, queries qa: UnsafePointer<Float>, _ qb: UnsafePointer<Float>,
                             metric: Metric, mask: CandidateMask?, into topA: inout TopK, _ topB: inout TopK) {
        guard block.kind == .flat else { return }
        let d = block.width, l2 = metric == .l2
        block.withFloatRows { rows in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 128) { scratch in
                withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { picked in
                    guard let outA = scratch.baseAddress, let candidates = picked.baseAddress else { return }
                    let outB = outA + 64
                    var start = 0
                    while start < block.count {
                        let n = min(64, block.count - start)
                        if l2 {
                            vs_l2_many2(qa, qb, rows + start * d, n, d, outA, outB)
                        } else {
                            vs_dot_many2(qa, qb, rows + start * d, n, d, outA, outB)
                        }
                        offerSelected(outA, count: n, bias: nil, l2: l2, groupRows: 16, block: block, first: start,
                                      mask: mask, candidates: candidates, into: &topA)
                        offerSelected(outB, count: n, bias: nil, l2: l2, groupRows: 16, block: block, first: start,
                                      mask: mask, candidates: candidates, into: &topB)
                        start += n
                    }
                }
            }
        }
    }

    /// Offers to `top` the rows among `values[0..<count]` (rows `first…` of `block`) whose score reaches its
    /// threshold and that `mask` allows; a row's score is `value + bias` (`value` alone with no bias), negated
    /// for L2. `groupRows` rows a pass, one vector pass (`vq_f32_select`, `candidates` room for `groupRows`)
    /// keeps the rows that reach the threshold as it stands (L2: −(v + b) ≥ t is v + b ≤ −t, the same float32
    /// sum); it only rises as rows enter, so each pick is tested again. Short groups let the threshold the first
    /// rows set filter the next ones (a branch per row mispredicted often).
    @inline(__always)
    static func offerSelected<S: ScoredRowSink>(_ values: UnsafePointer<Float>, count n: Int, bias: Float?, l2: Bool,
                                                groupRows: Int, block: IVFListBlockView, first start: Int,
                                                mask: CandidateMask?, candidates: UnsafeMutablePointer<UInt32>,
                                                into sink: inout S) {
        sink.withRows { top in
            var threshold = top.threshold
            var group = 0
            while group < n {
                let g = min(groupRows, n - group)
                let count = vq_f32_select(values + group, g, bias ?? 0, l2 ? -threshold : threshold, l2 ? 1 : 0, candidates)
                for c in 0..<count {
                    let i = group + Int(candidates[c])
                    let v = bias.map { values[i] + $0 } ?? values[i]
                    let s = l2 ? -v : v
                    guard s >= threshold else { continue }
                    let id = block.rowID(start + i)
                    if let mask, !mask.contains(id) { continue }
                    top.insert(s, id)
                    threshold = top.threshold
                }
                group += g
            }
        }
    }

    /// ADC scores of a `.pq8` or `.pq4` block with an M × 2^bits `table`; `bias` is the list's constant term,
    /// added to every ADC value (q · centroid for inner product; |q − centroid|² for L2 with the
    /// precomputed-table decomposition, or 0 with a table built from q − centroid).
    public static func pq(_ block: IVFListBlockView, quantizer: ProductQuantizer, table: UnsafePointer<Float>,
                          metric: Metric, bias: Float, mask: CandidateMask?, into top: inout TopK) {
        pqRows(block, quantizer: quantizer, table: table, metric: metric, bias: bias, mask: mask, into: &top)
    }

    /// `planes`, when given, is `table`'s byte-plane form (`ProductQuantizer.buildPlanes`; 8-bit codes).
    @inline(__always)
    static func pqRows<S: ScoredRowSink>(_ block: IVFListBlockView, quantizer: ProductQuantizer,
                                         table: UnsafePointer<Float>, planes: UnsafePointer<UInt8>? = nil,
                                         metric: Metric, bias: Float, mask: CandidateMask?, into top: inout S) {
        guard block.kind == .pq8 || block.kind == .pq4, block.width == quantizer.subquantizers,
              (block.kind == .pq8) == (quantizer.bits == 8) else { return }
        let codes = (block.base + block.payloadOffset).assumingMemoryBound(to: UInt8.self)
        let l2 = metric == .l2, size = quantizer.codeSize
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 256) { scratch in
            withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 256) { picked in
                guard let out = scratch.baseAddress, let candidates = picked.baseAddress else { return }
                var start = 0
                while start < block.count {
                    let n = min(256, block.count - start)
                    quantizer.scan(table: table, planes: planes, codes: codes + start * size, count: n, into: out)
                    // Thirty-two rows a pass (see `offerSelected`); the threshold is read once per entry.
                    offerSelected(out, count: n, bias: bias, l2: l2, groupRows: 32, block: block, first: start,
                                  mask: mask, candidates: candidates, into: &top)
                    start += n
                }
            }
        }
    }

    /// Fast-scan approximate scores of a `.pq4FastScan` block with a quantized table; `bias` is the list's
    /// constant term as for `pq` (scores are `value + bias` for inner product, `−(value + bias)` for L2).
    public static func fastScan(_ block: IVFListBlockView, table: QuantizedTable, bias: Float, mask: CandidateMask?,
                                into top: inout TopK) {
        fastScanRows(block, table: table, bias: bias, mask: mask, into: &top)
    }

    /// `fastScan` into the re-ranking candidates of a refining search (the list-major batch scan offers each
    /// query's rows to its own reservoir).
    public static func fastScan(_ block: IVFListBlockView, table: QuantizedTable, bias: Float, mask: CandidateMask?,
                                into top: inout CandidateReservoir) {
        fastScanRows(block, table: table, bias: bias, mask: mask, into: &top)
    }

    @inline(__always)
    static func fastScanRows<S: ScoredRowSink>(_ block: IVFListBlockView, table: QuantizedTable, bias: Float,
                                               mask: CandidateMask?, into top: inout S) {
        guard block.kind == .pq4FastScan, block.width == table.subquantizers else { return }
        let codes = (block.base + block.payloadOffset).assumingMemoryBound(to: UInt8.self)
        let blocks = FastScan.blockCount(block.count), blockSize = FastScan.blockBytes(block.width)
        withUnsafeTemporaryAllocation(of: UInt16.self, capacity: 32 * 8) { scratch in
            withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 32 * 8) { picked in
                guard let out = scratch.baseAddress, let candidates = picked.baseAddress else { return }
                var b = 0
                while b < blocks {
                    let nb = min(8, blocks - b)
                    FastScan.scan(codes + b * blockSize, blockCount: nb, table: table, into: out)
                    let first = b * FastScan.blockRows
                    let rows = min(nb * FastScan.blockRows, block.count - first)
                    // Rank by −distance: larger is closer for every metric. A row can enter only if
                    // shift − distance ≥ threshold, i.e. its sum is at most the limit for distance
                    // shift − threshold. One vector pass picks the rows within the limit as it stands; the
                    // limit only falls as rows enter, so each pick is re-tested against the current one.
                    let shift = table.negated ? bias : -bias
                    var limit = top.threshold == -.infinity ? 65535 : table.sumLimit(forDistance: shift - top.threshold) + 1
                    guard limit >= 0 else { b += nb; continue }
                    let count = vq_u16_select_le(out, rows, UInt16(min(limit, 65535)), candidates)
                    for c in 0..<count {
                        let i = Int(candidates[c])
                        guard Int(out[i]) <= limit else { continue }
                        let s = shift - table.distance(out[i])
                        guard s >= top.threshold else { continue }
                        let id = block.rowID(first + i)
                        if let mask, !mask.contains(id) { continue }
                        top.insert(s, id)
                        if top.threshold != -.infinity { limit = table.sumLimit(forDistance: shift - top.threshold) + 1 }
                    }
                    b += nb
                }
            }
        }
    }
}

extension Array where Element == UInt8 {
    /// Writes `value` little-endian at byte `offset` (the array must be long enough).
    mutating func storeLE<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        withUnsafeMutableBytes { $0.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self) }
    }

    /// Appends `value` little-endian.
    mutating func appendLE<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}

extension UnsafeRawBufferPointer {
    /// Reads a little-endian integer at byte `offset` (the caller checked the bounds).
    func loadLE<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

/// Rows of a binary16 list block (payload kind 5, Spec/IVF.md §4.2). A block of `n` rows of dimension `d`
/// stores `n` float32 errors `e`, then `n` float32 norms `ν`, then the `n × d` binary16 rows:
///
/// * `h = binary16(x)` per component, rounded to nearest with ties to even (±inf past 65504);
/// * `e = ‖x − h‖₂` (float64 sum of the squared differences in component order, square root, times
///   `1 + 2⁻⁴⁰`, rounded up to float32), +inf when a component of `h` is infinite;
/// * `ν = ‖x‖₂` (the same evaluation).
///
/// The per-row form (what compaction copies and `encode` returns) is `e · ν · h` (`8 + 2d` bytes).
public enum HalfRows {
    /// Bytes of one row in the per-row form.
    @inlinable
    public static func rowBytes(dimension d: Int) -> Int { 8 + 2 * d }

    /// `‖a‖₂` evaluated as the Spec says (float64, in order, times `1 + 2⁻⁴⁰`, rounded up to float32).
    @inline(__always)
    static func roundedUp(_ sumOfSquares: Double) -> Float {
        let v = sumOfSquares.squareRoot() * (1 + 0x1p-40)
        var f = Float(v)
        if Double(f) < v { f = f.nextUp }
        return f
    }

    /// `e` and `ν` of float32 row `x` and its binary16 copy `h`.
    public static func errorAndNorm(_ x: UnsafePointer<Float>, _ h: UnsafePointer<UInt16>, dimension d: Int)
        -> (error: Float, norm: Float) {
        var se = 0.0, sn = 0.0, infinite = false
        for i in 0..<d {
            let hv = Float(Float16(bitPattern: h[i]))
            if !hv.isFinite { infinite = true }
            let xv = Double(x[i])
            let diff = xv - Double(hv)
            se += diff * diff
            sn += xv * xv
        }
        return (infinite ? .infinity : roundedUp(se), roundedUp(sn))
    }

    /// Per-row forms of `count` float32 rows (row-major).
    public static func encode(_ x: UnsafePointer<Float>, count n: Int, dimension d: Int) -> [UInt8] {
        let rb = rowBytes(dimension: d)
        var out = [UInt8](repeating: 0, count: n * rb)
        withUnsafeTemporaryAllocation(of: UInt16.self, capacity: max(d, 1)) { hb in
            guard let h = hb.baseAddress else { return }
            out.withUnsafeMutableBytes { o in
                for r in 0..<n {
                    let row = x + r * d
                    vs_f32_to_f16(row, h, d)
                    let (e, nu) = errorAndNorm(row, h, dimension: d)
                    o.storeBytes(of: e.bitPattern.littleEndian, toByteOffset: r * rb, as: UInt32.self)
                    o.storeBytes(of: nu.bitPattern.littleEndian, toByteOffset: r * rb + 4, as: UInt32.self)
                    for i in 0..<d { o.storeBytes(of: h[i].littleEndian, toByteOffset: r * rb + 8 + 2 * i, as: UInt16.self) }
                }
            }
        }
        return out
    }

    /// The block payload of `count` rows given in the per-row form.
    public static func pack(_ rows: ArraySlice<UInt8>, count n: Int, dimension d: Int) -> [UInt8] {
        let rb = rowBytes(dimension: d)
        var out = [UInt8](repeating: 0, count: n * rb)
        let base = rows.startIndex
        for r in 0..<n {
            let src = base + r * rb
            for j in 0..<4 {
                out[4 * r + j] = rows[src + j]
                out[4 * n + 4 * r + j] = rows[src + 4 + j]
            }
            let dst = 8 * n + 2 * d * r
            for j in 0..<(2 * d) { out[dst + j] = rows[src + 8 + j] }
        }
        return out
    }

    /// The per-row form of a stored block's rows (the inverse of `pack`).
    public static func unpack(_ block: IVFListBlockView) -> [UInt8] {
        let n = block.count, d = block.width, rb = rowBytes(dimension: d)
        let p = block.payload
        var out = [UInt8](repeating: 0, count: n * rb)
        for r in 0..<n {
            for j in 0..<4 {
                out[r * rb + j] = p[4 * r + j]
                out[r * rb + 4 + j] = p[4 * n + 4 * r + j]
            }
            let src = 8 * n + 2 * d * r
            for j in 0..<(2 * d) { out[r * rb + 8 + j] = p[src + j] }
        }
        return out
    }
}

extension IVFListBlockView {
    /// Row `i`'s stored error bound `e` (binary16 blocks).
    @inlinable @inline(__always)
    public func halfError(_ i: Int) -> Float {
        Float(bitPattern: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: payloadOffset + 4 * i, as: UInt32.self)))
    }

    /// Row `i`'s stored norm `ν` (binary16 blocks).
    @inlinable @inline(__always)
    public func halfNorm(_ i: Int) -> Float {
        Float(bitPattern: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: payloadOffset + 4 * (count + i),
                                                                  as: UInt32.self)))
    }

    /// The binary16 rows of a binary16 block (`count × width` halves, 2-byte aligned: LMDB values are, and
    /// the rows start at an even offset).
    public var halfRows: UnsafePointer<UInt16> {
        (base + payloadOffset + 8 * count).assumingMemoryBound(to: UInt16.self)
    }
}
