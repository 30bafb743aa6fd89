import CDistance
import Foundation
import CQuant
import LMDB
import VecStoreKernels
import VecStoreQuant

/// Element type of an HNSW graph's traversal copies (the vectors its layer-0 beam search scores before
/// the best `2k` are re-ranked with the float32 rows; Spec/HNSW.md §3.3, §3.4).
public enum HNSWTraversal: String, Sendable, Equatable, CaseIterable {
    /// IEEE binary16: half of the float32 bytes, no measurable recall change. The default.
    case f16
    /// int8 codes under a per-dimension affine quantizer trained when the graph is created, and the
    /// decoded row's squared norm: a quarter of the float32 bytes plus 4 (README, "Approximate search").
    case int8

    /// Bytes of one row's copy: `⌈dim/2⌉·4` for binary16; for int8 `⌈dim/4⌉·4` code bytes then a
    /// float32 `|x̂|²` (all multiples of 4).
    func rowBytes(dimension: Int) -> Int {
        switch self {
        case .f16: return HNSWConfig.halfRowBytes(dimension: dimension)
        case .int8: return HNSWTraversal.int8NormOffset(dimension: dimension) + 4
        }
    }

    /// Offset of the float32 `|x̂|²` in an int8 row: the codes padded to a multiple of 4 bytes.
    static func int8NormOffset(dimension: Int) -> Int { (dimension + 3) / 4 * 4 }
}

/// The `hnsw-int8:<cid>` meta record (Spec/HNSW.md §3.4): the per-dimension quantizer of a graph with
/// int8 traversal copies. Component `t` of a row is coded `c = clamp(round((x − offset_t) / scale_t), −127, 127)`
/// and decodes to `offset_t + scale_t·c`.
struct HNSWInt8Record: Equatable {
    static let recordVersion: UInt8 = 1
    /// The store feature a graph with int8 copies declares: needed to read (a reader without it would take
    /// the codes for binary16) and to write (a writer without it would append binary16 copies).
    static let feature = "hnsw-int8"
    static let keyPrefix: [UInt8] = Array("hnsw-int8:".utf8)
    /// Bytes before the two float arrays.
    static let headerBytes = 12

    var quantizer: ScalarQuantizer8
    /// Rows the ranges were taken from.
    var trainingRows: Int

    static func key(_ collection: UInt32) -> [UInt8] {
        var k = keyPrefix
        k.appendBE(collection)
        return k
    }

    func encoded() -> [UInt8] {
        let d = quantizer.dimension
        var b: [UInt8] = []
        b.reserveCapacity(Self.headerBytes + 8 * d)
        b.append(Self.recordVersion)
        b.append(ScalarQuantizer8.Granularity.perDimension.rawValue)
        b.appendLE(UInt16(0))
        b.appendLE(UInt32(d))
        b.appendLE(UInt32(clamping: trainingRows))
        for x in quantizer.offsets { b.appendLE(x) }
        for x in quantizer.scales { b.appendLE(x) }
        return b
    }

    /// Decodes and checks the record: known version and granularity, the collection's dimension, the
    /// exact size, finite offsets and finite positive scales. Anything else is damage (`corrupt`), except an
    /// unknown version or granularity (`newerFormat`).
    static func decode(_ value: UnsafeRawBufferPointer, dimension: Int, context: String) throws(VecStoreError)
        -> HNSWInt8Record
    {
        var r = ByteReader(value, context: context)
        let version = try r.u8()
        guard version == recordVersion else { throw .newerFormat("\(context): int8 quantizer record version \(version)") }
        let granularity = try r.u8()
        guard granularity == ScalarQuantizer8.Granularity.perDimension.rawValue else {
            throw .newerFormat("\(context): int8 quantizer granularity \(granularity)")
        }
        guard try r.u16() == 0 else { throw .newerFormat("\(context): int8 quantizer reserved bytes are not zero") }
        let d = Int(try r.u32())
        let rows = Int(try r.u32())
        guard d == dimension, value.count == headerBytes + 8 * d else {
            throw .corrupt("\(context): int8 quantizer record has dimension \(d) and \(value.count) bytes; the collection has dimension \(dimension)")
        }
        var offsets = [Float](), scales = [Float]()
        offsets.reserveCapacity(d)
        scales.reserveCapacity(d)
        for _ in 0..<d { offsets.append(try r.f32()) }
        for _ in 0..<d { scales.append(try r.f32()) }
        // Scales also bound the codes' reach: offset ± 127·scale must be finite.
        if let t = (0..<d).first(where: { !(offsets[$0] + 127 * scales[$0]).isFinite || !(offsets[$0] - 127 * scales[$0]).isFinite }) {
            throw .corrupt("\(context): int8 quantizer range of component \(t) is not finite")
        }
        do {
            let q = try ScalarQuantizer8(dimension: d, granularity: .perDimension, offsets: offsets, scales: scales)
            return HNSWInt8Record(quantizer: q, trainingRows: rows)
        } catch {
            throw .corrupt("\(context): int8 quantizer: \(error)")
        }
    }

    /// The record of `collection`, or nil when there is none.
    static func load(_ txn: Transaction, _ dbs: Databases, _ collection: UInt32, dimension: Int) throws
        -> HNSWInt8Record?
    {
        guard let v = try txn.get(dbs.meta, key(collection)) else { return nil }
        return try decode(v, dimension: dimension, context: "meta hnsw-int8:\(collection)")
    }

    /// Writes the record and declares the feature, in the caller's transaction.
    func store(_ txn: Transaction, _ dbs: Databases, _ collection: UInt32) throws {
        try Format.declare(Format.Feature(name: Self.feature, neededToRead: true, neededToWrite: true), txn,
                           meta: dbs.meta)
        try txn.put(dbs.meta, Self.key(collection), encoded())
    }

    /// `index show` lines about the traversal copies: element type and bytes per row, and for int8 the
    /// rows the quantizer was trained on.
    static func statsLines(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord,
                           traversal: HNSWTraversal) throws -> [IndexStats.Line] {
        let bytes = traversal.rowBytes(dimension: record.dimension)
        let share = String(format: "%.0f%%", 100 * Double(bytes) / Double(4 * record.dimension))
        var lines = [IndexStats.Line("traversal", "\(traversal.rawValue) (\(bytes) bytes/row, \(share) of float32)")]
        if traversal == .int8, let r = try load(txn, dbs, record.id, dimension: record.dimension) {
            lines.append(.init("int8 quantizer", "per dimension, trained on \(r.trainingRows) rows"))
        }
        return lines
    }

    /// `|x̂|²` of a code row, summed in component order in float32 (writers and `verify` use this).
    static func decodedSquaredNorm(_ codes: UnsafePointer<Int8>, _ q: ScalarQuantizer8) -> Float {
        var sum: Float = 0
        for t in 0..<q.dimension {
            let x = q.offsets[t] + q.scales[t] * Float(codes[t])
            sum += x * x
        }
        return sum
    }

    static func drop(_ txn: Transaction, _ dbs: Databases, _ collection: UInt32) throws {
        try txn.delete(dbs.meta, key(collection))
    }

    /// Trains the quantizer from the range of `count` rows starting at row `first` of `vectors`: offset
    /// the midpoint, scale the half-range over 127 per component, at least 2⁻²⁰ of the largest scale.
    static func train(_ vectors: VectorTable, first: Int, count: Int) throws -> HNSWInt8Record {
        do {
            let q = try ScalarQuantizer8.train(count: count, dimension: vectors.dimension, granularity: .perDimension) {
                vectors.vector(UInt32(first + $0))
            }
            return HNSWInt8Record(quantizer: q, trainingRows: count)
        } catch {
            throw VecStoreError.invalidArgument("int8 traversal quantizer cannot be trained: \(error)")
        }
    }
}

/// Writing a graph's traversal copies (`graph-vectors`, Spec/HNSW.md §3.3/§3.4) for the rows a write
/// appends, from the batch's own float32 rows.
enum HNSWTraversalCopies {
    /// Writes the copies of rows `initialRows ..< rows` of `collection`, rewriting only the blocks they
    /// fall in (the old rows of the first one are kept byte for byte). For int8 copies, the quantizer
    /// record is loaded, or trained from these rows and stored when the graph has none yet (its first
    /// rows); a graph with rows but no record is damage.
    static func write(_ txn: Transaction, _ dbs: Databases, traversal: HNSWTraversal, collection: UInt32,
                      name: String, dimension: Int, blockCapacity: Int, initialRows: Int, rows: Int,
                      vectors: VectorTable) throws {
        guard rows > initialRows else { return }
        var quantizer: ScalarQuantizer8?
        if traversal == .int8 {
            if let r = try HNSWInt8Record.load(txn, dbs, collection, dimension: dimension) {
                quantizer = r.quantizer
            } else if initialRows == 0 {
                let r = try HNSWInt8Record.train(vectors, first: 0, count: rows)
                try r.store(txn, dbs, collection)
                quantizer = r.quantizer
            } else {
                throw VecStoreError.corrupt("collection \(name): HNSW graph has int8 copies but no hnsw-int8 quantizer record")
            }
        }
        let rowBytes = traversal.rowBytes(dimension: dimension)
        for b in (initialRows / blockCapacity)..<((rows + blockCapacity - 1) / blockCapacity) {
            let start = b * blockCapacity
            let count = min(blockCapacity, rows - start)
            let old = max(0, initialRows - start)
            let key = Format.key(collection, UInt32(b))
            var prefix: [UInt8] = []
            if old > 0 {
                guard let existing = try txn.get(dbs.graphVectors, key), existing.count == old * rowBytes else {
                    throw VecStoreError.corrupt("collection \(name): graph-vectors block \(b) does not hold \(old) rows")
                }
                prefix = Array(existing)
            }
            try txn.reserve(dbs.graphVectors, key, count: count * rowBytes) { out in
                guard let base = out.baseAddress else { return }
                if old > 0 { prefix.withUnsafeBytes { out.copyMemory(from: $0) } }
                for r in old..<count {
                    let v = vectors.vector(UInt32(start + r))
                    if let quantizer {
                        encodeInt8(v, quantizer: quantizer, dimension: dimension, into: base + r * rowBytes)
                    } else {
                        encodeHalf(v, dimension: dimension, rowBytes: rowBytes, into: base + r * rowBytes)
                    }
                }
            }
        }
    }

    /// Writes the binary16 copy of `v` (`rowBytes`: the halves, then a zero half when the dimension is odd).
    @inline(__always)
    static func encodeHalf(_ v: UnsafePointer<Float>, dimension: Int, rowBytes: Int, into dst: UnsafeMutableRawPointer) {
        let halves = dst.bindMemory(to: UInt16.self, capacity: rowBytes / 2)
        // Bit for bit `Float16(v[i]).bitPattern` (what verify compares), F16C where the CPU has it.
        vs_f32_to_f16(v, halves, dimension)
        if rowBytes / 2 > dimension { halves[dimension] = 0 }
    }

    /// Writes the int8 copy of `v`: the codes, zero padding to a multiple of 4, then `|x̂|²` (LE float32).
    @inline(__always)
    static func encodeInt8(_ v: UnsafePointer<Float>, quantizer: ScalarQuantizer8, dimension: Int,
                           into dst: UnsafeMutableRawPointer) {
        let normOffset = HNSWTraversal.int8NormOffset(dimension: dimension)
        let codes = dst.bindMemory(to: Int8.self, capacity: normOffset)
        quantizer.encode(v, count: 1, into: codes)
        for i in dimension..<normOffset { codes[i] = 0 }
        let norm = HNSWInt8Record.decodedSquaredNorm(codes, quantizer)
        (dst + normOffset).storeBytes(of: norm.bitPattern.littleEndian, as: UInt32.self)
    }
}

/// The per-collection constants of int8 scoring, made once when a graph view is opened: the quantizer
/// as raw arrays, and where a row's `|x̂|²` is.
final class HNSWInt8Scoring: @unchecked Sendable {
    let quantizer: ScalarQuantizer8
    let dimension: Int
    let normOffset: Int
    let offsets: UnsafeMutablePointer<Float>
    let scales: UnsafeMutablePointer<Float>

    init(_ q: ScalarQuantizer8) {
        quantizer = q
        dimension = q.dimension
        normOffset = HNSWTraversal.int8NormOffset(dimension: q.dimension)
        offsets = .allocate(capacity: dimension)
        scales = .allocate(capacity: dimension)
        for t in 0..<dimension {
            offsets[t] = q.offsets[t]
            scales[t] = q.scales[t]
        }
    }

    deinit {
        offsets.deallocate()
        scales.deallocate()
    }
}

/// Distance between a float query (prepared once per search) and a row's int8 codes: exactly the
/// distance to the decoded row (up to float rounding), computed without decoding it, with one dot
/// kernel call.
protocol HNSWInt8Distance: SendableMetatype {
    /// Writes the prepared query to `out` (`dimension` floats) and returns the constant term.
    static func prepare(_ q: UnsafePointer<Float>, _ s: HNSWInt8Scoring, into out: UnsafeMutablePointer<Float>) -> Float
    static func distance(_ prepared: UnsafePointer<Float>, _ bias: Float, _ s: HNSWInt8Scoring,
                         _ row: UnsafeRawPointer) -> Float
}

/// Squared L2 to the decoded row: `|q|² − 2·q·offset − 2·Σ (q_t·scale_t)·c_t + |x̂|²`, with `|x̂|²` stored
/// after the row's codes.
enum L2Int8Distance: HNSWInt8Distance {
    static func prepare(_ q: UnsafePointer<Float>, _ s: HNSWInt8Scoring, into out: UnsafeMutablePointer<Float>) -> Float {
        var bias: Float = 0
        for t in 0..<s.dimension {
            out[t] = -2 * q[t] * s.scales[t]
            bias += q[t] * q[t] - 2 * q[t] * s.offsets[t]
        }
        return bias
    }
    @inline(__always)
    static func distance(_ prepared: UnsafePointer<Float>, _ bias: Float, _ s: HNSWInt8Scoring,
                         _ row: UnsafeRawPointer) -> Float {
        let norm = Float(bitPattern: UInt32(littleEndian: row.load(fromByteOffset: s.normOffset, as: UInt32.self)))
        return bias + norm + vq_dot_f32_i8(prepared, row.assumingMemoryBound(to: Int8.self), s.dimension)
    }
}

/// Negated inner product with the decoded row: `−(q·offset + Σ (q_t·scale_t) · c_t)`.
enum InnerProductInt8Distance: HNSWInt8Distance {
    static func prepare(_ q: UnsafePointer<Float>, _ s: HNSWInt8Scoring, into out: UnsafeMutablePointer<Float>) -> Float {
        var bias: Float = 0
        for t in 0..<s.dimension {
            out[t] = q[t] * s.scales[t]
            bias += q[t] * s.offsets[t]
        }
        return bias
    }
    @inline(__always)
    static func distance(_ prepared: UnsafePointer<Float>, _ bias: Float, _ s: HNSWInt8Scoring,
                         _ row: UnsafeRawPointer) -> Float {
        -(bias + vq_dot_f32_i8(prepared, row.assumingMemoryBound(to: Int8.self), s.dimension))
    }
}

/// Scores against int8 traversal copies: a quarter of the float32 bytes. The query is prepared once
/// (`prepared`, owned by the caller's per-thread buffer); searches re-rank their beam with float32 at the
/// end, graph construction re-scores each level's beam before the heuristic.
/// `C` is a concrete final class at every use (`HNSWGraphView`, `HNSWCopyTable`), so the distance loop is
/// specialised for it: no witness-table call per neighbour.
struct Int8Scorer<D: HNSWInt8Distance, C: HNSWCopySource>: HNSWScorer {
    /// Where row `i`'s int8 codes are.
    let copies: C
    /// The quantizer's constants the codes were made with.
    let scoring: HNSWInt8Scoring
    /// The query as `D.prepare` left it in the caller's buffer.
    let prepared: UnsafePointer<Float>
    /// `D.prepare`'s constant term, added to every distance.
    let bias: Float
    /// Cache lines prefetched per copy (`copies.copyPrefetchLines`, read once).
    let lines: Int32

    /// Prepares `query` into `buffer` (`dimension` floats owned by the calling thread) for scoring against
    /// the int8 codes of `copies`.
    init(copies: C, scoring: HNSWInt8Scoring, query: UnsafePointer<Float>, buffer: UnsafeMutablePointer<Float>) {
        self.copies = copies
        self.scoring = scoring
        bias = D.prepare(query, scoring, into: buffer)
        prepared = UnsafePointer(buffer)
        lines = copies.copyPrefetchLines
    }

    /// `D`'s distance from the prepared query to row `id`'s codes.
    @inline(__always) func distance(_ id: UInt32) -> Float { D.distance(prepared, bias, scoring, copies.traversalCopy(id)) }
    /// Prefetches row `id`'s whole copy.
    @inline(__always) func prefetch(_ id: UInt32) { vs_prefetch(copies.traversalCopy(id), lines) }
}

/// Makes each query's scorer for `HNSWSearch.run`, so the search loop is specialised for the scorer type.
protocol HNSWScorerFactory {
    associatedtype Scorer: HNSWScorer
    /// The scorer of `query`; `buffer` (`dimension` floats, owned by the calling thread) may hold the
    /// prepared query.
    func scorer(query: UnsafePointer<Float>, buffer: UnsafeMutablePointer<Float>) -> Scorer
}

/// Scorers over binary16 copies.
struct HalfScorerFactory<H: HNSWHalfDistance>: HNSWScorerFactory {
    let graph: HNSWGraphView
    func scorer(query: UnsafePointer<Float>, buffer: UnsafeMutablePointer<Float>) -> HalfScorer<H, HNSWGraphView> {
        HalfScorer(copies: graph, query: query)
    }
}

/// Scorers over int8 copies (the query prepared in `buffer`).
struct Int8ScorerFactory<D: HNSWInt8Distance>: HNSWScorerFactory {
    let graph: HNSWGraphView
    let scoring: HNSWInt8Scoring
    func scorer(query: UnsafePointer<Float>, buffer: UnsafeMutablePointer<Float>) -> Int8Scorer<D, HNSWGraphView> {
        Int8Scorer(copies: graph, scoring: scoring, query: query, buffer: buffer)
    }
}

/// The int8 checks of `verify` (Spec/HNSW.md §6 invariant 6).
enum HNSWInt8Verify {
    /// Whether row `v`'s codes decode within the quantizer's bound: half a step per component inside the
    /// trained range, and the clamped code (±127 on the value's side) outside it; padding bytes zero; the
    /// stored `|x̂|²` that of the decoded codes. Returns the first failing byte offset, or nil.
    static func check(_ codes: UnsafePointer<Int8>, _ v: UnsafePointer<Float>, _ s: HNSWInt8Scoring) -> Int? {
        for t in 0..<s.dimension {
            let o = s.offsets[t], sc = s.scales[t]
            let x = v[t], c = Float(codes[t])
            let lo = o - 127 * sc, hi = o + 127 * sc
            if x > hi { if codes[t] != 127 { return t } else { continue } }
            if x < lo { if codes[t] != -127 { return t } else { continue } }
            let err = abs(o + sc * c - x)
            if !(err <= sc * 0.501 + 1e-6 * (abs(x) + abs(o))) { return t }
        }
        for i in s.dimension..<s.normOffset where codes[i] != 0 { return i }
        let stored = Float(bitPattern: UInt32(littleEndian: UnsafeRawPointer(codes).loadUnaligned(fromByteOffset: s.normOffset, as: UInt32.self)))
        let norm = HNSWInt8Record.decodedSquaredNorm(codes, s.quantizer)
        if !(abs(stored - norm) <= 1e-5 * norm + 1e-30) { return s.normOffset }
        return nil
    }
}
