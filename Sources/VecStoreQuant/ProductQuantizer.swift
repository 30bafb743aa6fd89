import CDistance
import CQuant
import VecStoreKernels

/// A product quantizer: the vector is cut into `subquantizers` (M) consecutive sub-vectors of
/// `dimension / M` components, and each sub-vector is replaced by the index of its nearest centroid in that
/// sub-space's codebook of `2^bits` centroids (8 bits: 256, 4 bits: 16).
///
/// Code layout (Spec/PQ.md §3): 8-bit codes are M bytes, one per sub-quantizer; 4-bit codes are
/// ⌈M/2⌉ bytes, sub-quantizer `j` in the low nibble of byte `j/2` when `j` is even and in the high nibble
/// when odd (an odd M leaves the last high nibble 0).
public struct ProductQuantizer: Sendable, Equatable {
    /// Components of a full vector.
    public let dimension: Int
    /// Sub-quantizers (M).
    public let subquantizers: Int
    /// Bits per sub-quantizer code: 8 or 4.
    public let bits: Int
    /// Codebooks: `M × ksub × dsub` floats (sub-quantizer, centroid, component).
    public private(set) var codebooks: [Float] {
        didSet { transposed = Self.transpose(codebooks, m: subquantizers, ksub: 1 << bits, dsub: dimension / subquantizers) }
    }
    /// The codebooks component-major per sub-quantizer (`[j][t][k]`), for the vectorised table kernel.
    private var transposed: [Float]

    static func transpose(_ books: [Float], m: Int, ksub: Int, dsub: Int) -> [Float] {
        var out = [Float](repeating: 0, count: books.count)
        for j in 0..<m {
            for k in 0..<ksub {
                for t in 0..<dsub { out[(j * dsub + t) * ksub + k] = books[(j * ksub + k) * dsub + t] }
            }
        }
        return out
    }

    /// Two quantizers are equal when their shapes and codebooks are.
    public static func == (a: ProductQuantizer, b: ProductQuantizer) -> Bool {
        a.dimension == b.dimension && a.subquantizers == b.subquantizers && a.bits == b.bits && a.codebooks == b.codebooks
    }

    /// Components per sub-vector.
    public var subDimension: Int { dimension / subquantizers }
    /// Centroids per sub-quantizer (`2^bits`).
    public var centroidsPerSubquantizer: Int { 1 << bits }
    /// Bytes of one encoded vector.
    public var codeSize: Int { bits == 8 ? subquantizers : (subquantizers + 1) / 2 }

    /// An untrained quantizer (all-zero codebooks).
    ///
    /// - Throws: `QuantError.invalidParameter` unless bits ∈ {4, 8}, 1 ≤ M ≤ 256 and M divides `dimension`.
    public init(dimension: Int, subquantizers: Int, bits: Int) throws(QuantError) {
        guard bits == 8 || bits == 4 else { throw .invalidParameter("PQ bits must be 8 or 4 (got \(bits))") }
        guard subquantizers >= 1, subquantizers <= 256 else {
            throw .invalidParameter("PQ needs 1 ≤ M ≤ 256 sub-quantizers (got \(subquantizers))")
        }
        guard dimension >= 1, dimension % subquantizers == 0 else {
            throw .invalidParameter("PQ M = \(subquantizers) must divide the dimension \(dimension)")
        }
        self.dimension = dimension
        self.subquantizers = subquantizers
        self.bits = bits
        codebooks = [Float](repeating: 0, count: dimension * (1 << bits))
        transposed = codebooks
    }

    /// A quantizer with given codebooks (read back from a record).
    ///
    /// - Throws: `QuantError.invalidParameter` for a bad shape (as `init(dimension:subquantizers:bits:)`), a
    ///   codebook of the wrong length or a non-finite component.
    public init(dimension: Int, subquantizers: Int, bits: Int, codebooks: [Float]) throws(QuantError) {
        try self.init(dimension: dimension, subquantizers: subquantizers, bits: bits)
        guard codebooks.count == self.codebooks.count else {
            throw .invalidParameter("PQ codebooks hold \(codebooks.count) floats, expected \(self.codebooks.count)")
        }
        if let bad = codebooks.firstIndex(where: { !$0.isFinite }) {
            throw .invalidParameter("PQ codebook component \(bad) is not finite")
        }
        self.codebooks = codebooks
        transposed = Self.transpose(codebooks, m: subquantizers, ksub: 1 << bits, dsub: dimension / subquantizers)
    }

    /// Trains each sub-quantizer's codebook with L2 k-means (k = 2^bits) on the sub-vectors of `count`
    /// rows. Returns the mean squared reconstruction error of the training rows after encoding.
    ///
    /// `options.seed` is varied per sub-quantizer (seed + j) so sub-spaces do not share a sample.
    @discardableResult
    public mutating func train(_ data: UnsafePointer<Float>, count: Int, options: KMeansOptions = KMeansOptions(),
                               progress: ((Int, KMeansProgress) -> Void)? = nil) throws(QuantError) -> Double {
        let ksub = centroidsPerSubquantizer, dsub = subDimension
        guard count >= ksub else {
            throw .invalidParameter("PQ with \(bits)-bit codes needs at least \(ksub) training rows (got \(count))")
        }
        var sub = [Float](repeating: 0, count: count * dsub)
        var books = codebooks
        for j in 0..<subquantizers {
            sub.withUnsafeMutableBufferPointer { s in
                guard let sb = s.baseAddress else { return }
                for i in 0..<count { (sb + i * dsub).update(from: data + i * dimension + j * dsub, count: dsub) }
            }
            var o = options
            o.seed = options.seed &+ UInt64(j)
            let result = try sub.withUnsafeBufferPointer { (s) throws(QuantError) -> KMeansResult in
                guard let sb = s.baseAddress else { throw .invalidParameter("PQ training data is empty") }
                return try KMeans.train(sb, count: count, dimension: dsub, k: ksub, metric: .l2, options: o,
                                        progress: progress.map { p in { p(j, $0) } })
            }
            for t in 0..<(ksub * dsub) { books[j * ksub * dsub + t] = result.centroids[t] }
        }
        codebooks = books  // one assignment: didSet rebuilds the transposed copy once
        var codes = [UInt8](repeating: 0, count: count * codeSize)
        var decoded = [Float](repeating: 0, count: count * dimension)
        codes.withUnsafeMutableBufferPointer { c in
            decoded.withUnsafeMutableBufferPointer { d in
                guard let cb = c.baseAddress, let db = d.baseAddress else { return }
                encode(data, count: count, into: cb)
                decode(cb, count: count, into: db)
            }
        }
        var total = 0.0
        decoded.withUnsafeBufferPointer { d in
            guard let db = d.baseAddress else { return }
            for i in 0..<count { total += Double(vs_l2(data + i * dimension, db + i * dimension, dimension)) }
        }
        return total / Double(count)
    }

    /// Encodes `count` rows into `count * codeSize` bytes at `codes` (nearest centroid per sub-vector, ties
    /// to the lower index). Sub-vectors are matched 256 rows at a time with one matrix product per codebook.
    public func encode(_ data: UnsafePointer<Float>, count: Int, into codes: UnsafeMutablePointer<UInt8>) {
        guard count > 0 else { return }
        let ksub = centroidsPerSubquantizer, dsub = subDimension, tile = 256, size = codeSize
        codes.update(repeating: 0, count: count * size)
        codebooks.withUnsafeBufferPointer { cbBuf in
            guard let cb = cbBuf.baseAddress else { return }
            var norms = [Float](repeating: 0, count: subquantizers * ksub)
            for c in 0..<(subquantizers * ksub) { norms[c] = vs_dot(cb + c * dsub, cb + c * dsub, dsub) }
            let gathered = UnsafeMutablePointer<Float>.allocate(capacity: tile * dsub)
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: tile * ksub)
            defer { gathered.deallocate(); scores.deallocate() }
            var start = 0
            while start < count {
                let rows = min(tile, count - start)
                for j in 0..<subquantizers {
                    for i in 0..<rows {
                        (gathered + i * dsub).update(from: data + (start + i) * dimension + j * dsub, count: dsub)
                    }
                    let book = cb + j * ksub * dsub
                    MatrixProduct.dotTile(gathered, aRows: rows, book, bRows: ksub, dimension: dsub, into: scores,
                                          ldo: ksub)
                    let base = j * ksub
                    var value: Float = 0
                    for i in 0..<rows {
                        let line = scores + i * ksub
                        let best = norms.withUnsafeBufferPointer { nb -> Int in
                            guard let n = nb.baseAddress else { return 0 }
                            return Int(vq_nearest(n + base, line, ksub, 1, &value))
                        }
                        let row = codes + (start + i) * size
                        if bits == 8 {
                            row[j] = UInt8(best)
                        } else {
                            row[j >> 1] |= UInt8(best) << UInt8((j & 1) * 4)
                        }
                    }
                }
                start += rows
            }
        }
    }

    /// The code of sub-quantizer `j` in one encoded row.
    @inlinable
    public func code(_ row: UnsafePointer<UInt8>, _ j: Int) -> Int {
        bits == 8 ? Int(row[j]) : Int((row[j >> 1] >> UInt8((j & 1) * 4)) & 15)
    }

    /// Decodes `count` codes into `count * dimension` floats (each sub-vector becomes its centroid).
    public func decode(_ codes: UnsafePointer<UInt8>, count: Int, into out: UnsafeMutablePointer<Float>) {
        let ksub = centroidsPerSubquantizer, dsub = subDimension
        codebooks.withUnsafeBufferPointer { cbBuf in
            guard let cb = cbBuf.baseAddress else { return }
            for i in 0..<count {
                let row = codes + i * codeSize
                for j in 0..<subquantizers {
                    (out + i * dimension + j * dsub).update(from: cb + (j * ksub + code(row, j)) * dsub, count: dsub)
                }
            }
        }
    }

    /// Fills an asymmetric-distance look-up table for one query: `M × 2^bits` floats, entry (j, c) is
    /// `|q_j − c_j|²` for L2 and `q_j · c_j` for inner product / cosine, so the ADC value of a code is the
    /// sum of its M entries (`scan`). `scale` multiplies every entry: 1, or −2 for the residual L2
    /// decomposition (`IVFProbeScorer`); a power of two, so each entry is exactly the scaled unscaled entry.
    public func lookupTable(_ query: UnsafePointer<Float>, metric: Metric, scale: Float = 1,
                            into table: UnsafeMutablePointer<Float>) {
        transposed.withUnsafeBufferPointer { t in
            guard let tb = t.baseAddress else { return }
            vq_pq_tables(query, 1, 0, tb, subquantizers, centroidsPerSubquantizer, subDimension, metric == .l2 ? 1 : 0,
                         scale, table)
        }
    }

    /// `lookupTable` for `count` queries `stride` floats apart, into `count` consecutive tables (`M × 2^bits`
    /// floats each) in one pass over the codebooks: each block of centroids is read once for every query
    /// instead of once a query. Every table is the bits `lookupTable` gives its query alone.
    public func lookupTables(_ queries: UnsafePointer<Float>, count: Int, stride: Int, metric: Metric, scale: Float = 1,
                             into tables: UnsafeMutablePointer<Float>) {
        guard count > 0 else { return }
        transposed.withUnsafeBufferPointer { t in
            guard let tb = t.baseAddress else { return }
            vq_pq_tables(queries, count, stride, tb, subquantizers, centroidsPerSubquantizer, subDimension,
                         metric == .l2 ? 1 : 0, scale, tables)
        }
    }

    /// ADC values of `count` codes: `out[i] = Σ_j table[j, code_j(i)]` (squared distance for an L2 table,
    /// inner product for an inner-product table). `planes`, when given (8-bit codes), is `table`'s byte-plane
    /// form (`buildPlanes`): the same values, bit for bit, scored 64 rows a vector step.
    public func scan(table: UnsafePointer<Float>, planes: UnsafePointer<UInt8>? = nil, codes: UnsafePointer<UInt8>,
                     count: Int, into out: UnsafeMutablePointer<Float>) {
        if bits == 8 {
            vq_pq8_scan_planes(table, planes, subquantizers, codes, count, out)
        } else {
            vq_pq4_scan(table, subquantizers, codes, count, out)
        }
    }

    /// Bytes of the byte-plane form of this quantizer's look-up table (`M × 1024`) when the running CPU scans
    /// 8-bit codes from byte planes (AVX-512 VBMI, M a multiple of 16), else 0 (`scan` then reads the float
    /// table alone).
    public var planesSize: Int { bits == 8 ? vq_pq8_planes_size(subquantizers) : 0 }

    /// Writes the byte-plane form of an 8-bit `table` (`planesSize` bytes; byte p of the float bits of entry
    /// (j, k) at `j · 1024 + p · 256 + k`). Only when `planesSize` is nonzero.
    public func buildPlanes(table: UnsafePointer<Float>, into planes: UnsafeMutablePointer<UInt8>) {
        guard planesSize > 0 else { return }
        vq_pq8_planes(table, subquantizers, planes)
    }
}
