import CDistance
import VecStoreKernels

/// How to build an IVF index.
public struct IVFBuildOptions: Sendable {
    /// Lists (coarse centroids).
    public var nlist: Int
    /// What the lists carry: `.flat` vectors, `.pq8`, `.pq4` or `.pq4FastScan` codes of residuals.
    public var kind: IVFPayloadKind
    /// PQ sub-quantizers (ignored for flat).
    public var subquantizers: Int
    /// Rows per full list block (a multiple of 32).
    public var blockCapacity: Int
    /// Coarse k-means settings (iterations, seed, sample cap, threads).
    public var kmeans: KMeansOptions
    /// PQ codebook k-means settings.
    public var pqKMeans: KMeansOptions
    /// PQ kinds: code the residual `x − c` against the row's centroid (true, as FAISS `IndexIVFPQ`), or the
    /// raw vector (false, as FAISS 1.15's `IndexIVFPQFastScan` default: one table per query).
    public var residual: Bool

    /// Options for `nlist` lists of `kind` (FAISS's defaults: 10 coarse iterations as in `IndexIVF`, 25 for
    /// the PQ codebooks, 256 training rows per centroid).
    public init(nlist: Int, kind: IVFPayloadKind = .flat, subquantizers: Int = 0, blockCapacity: Int = 1024,
                kmeans: KMeansOptions = KMeansOptions(iterations: 10), pqKMeans: KMeansOptions = KMeansOptions(),
                residual: Bool = true) {
        self.residual = residual
        self.nlist = nlist
        self.kind = kind
        self.subquantizers = subquantizers
        self.blockCapacity = blockCapacity
        self.kmeans = kmeans
        self.pqKMeans = pqKMeans
    }
}

/// Search settings of one IVF query.
public struct IVFSearchOptions: Sendable {
    /// Lists probed (nearest centroids first).
    public var nprobe: Int
    /// Re-rank the best `refine × k` approximate candidates with the float32 vectors (0: report the ADC
    /// scores; ignored for flat lists, which are exact).
    public var refine: Int

    /// Options probing `nprobe` lists with re-ranking factor `refine`.
    public init(nprobe: Int, refine: Int = 0) {
        self.nprobe = nprobe
        self.refine = refine
    }
}

/// An IVF index held in memory, built from the quantization core and stored exactly as the store will keep
/// it: the `IVFHeader`, centroids, PQ codebooks and each list as checked `IVFListBlock` values. Searches go
/// through the same checked views and scans a store read snapshot will use, so its recall and speed are
/// those of the core. Immutable after `build`; safe to search from several threads.
public final class IVFIndex: @unchecked Sendable {
    /// Index parameters and training errors.
    public let header: IVFHeader
    /// `nlist × dimension` coarse centroids.
    public let centroids: [Float]
    /// The product quantizer of the PQ kinds.
    public let quantizer: ProductQuantizer?
    /// L2 PQ kinds: `nlist × M × 2^bits` list terms of the table decomposition (`precomputedTerms`).
    let precomputed: [Float]
    /// Encoded blocks: `blocks[list]` are byte ranges of `storage`.
    let blocks: [[Range<Int>]]
    /// All block values, each starting 16-byte aligned (as an LMDB overflow value is).
    let storage: UnsafeMutableRawPointer
    let storageBytes: Int

    init(header: IVFHeader, centroids: [Float], quantizer: ProductQuantizer?, values: [[[UInt8]]]) {
        self.header = header
        self.centroids = centroids
        self.quantizer = quantizer
        if let quantizer, header.metric == .l2, header.residual {
            precomputed = Self.precomputedTerms(centroids: centroids, nlist: header.nlist, quantizer: quantizer)
        } else {
            precomputed = []
        }
        var total = 0
        for list in values { for v in list { total += (v.count + 15) & ~15 } }
        storageBytes = max(total, 16)
        let storage = UnsafeMutableRawPointer.allocate(byteCount: storageBytes, alignment: 64)
        self.storage = storage
        var ranges: [[Range<Int>]] = []
        var offset = 0
        for list in values {
            var r: [Range<Int>] = []
            for v in list {
                v.withUnsafeBytes { src in
                    if let s = src.baseAddress { (storage + offset).copyMemory(from: s, byteCount: v.count) }
                }
                r.append(offset..<(offset + v.count))
                offset += (v.count + 15) & ~15
            }
            ranges.append(r)
        }
        blocks = ranges
    }

    deinit { storage.deallocate() }

    /// Bytes of all list blocks (row ids, padding and payload).
    public var listBytes: Int { blocks.reduce(0) { $0 + $1.reduce(0) { $0 + $1.count } } }

    /// Payload bytes per vector (dimension × 4 for flat, the PQ code size otherwise).
    public var codeSize: Int { quantizer?.codeSize ?? header.dimension * 4 }

    /// Rows in each list.
    public var listSizes: [Int] {
        blocks.map { list in
            list.reduce(0) { total, r in
                total + Int(UInt32(littleEndian: storage.loadUnaligned(fromByteOffset: r.lowerBound + 8, as: UInt32.self)))
            }
        }
    }

    /// The stored value of block `block` of list `list` (for tests and the conformance reader).
    public func blockValue(list: Int, block: Int) -> [UInt8] {
        let r = blocks[list][block]
        return Array(UnsafeRawBufferPointer(start: storage + r.lowerBound, count: r.count))
    }

    /// Number of blocks of a list.
    public func blockCount(list: Int) -> Int { blocks[list].count }

    /// Trains and fills an index over `count` row-major vectors (row ids 0..<count). Cosine data must be
    /// unit-normalised by the caller (as the store keeps it). `progress` receives the coarse k-means
    /// iterations.
    ///
    /// - Throws: `QuantError.invalidParameter` for parameters the codecs reject or too few rows to train.
    public static func build(_ vectors: UnsafePointer<Float>, count: Int, dimension: Int, metric: Metric,
                             options: IVFBuildOptions,
                             progress: ((KMeansProgress) -> Void)? = nil) throws(QuantError) -> IVFIndex {
        // binary16 lists need the float32 rows to score their candidates exactly: the store's kind only.
        guard options.kind != .flat16 else { throw .invalidParameter("the in-memory IVF index has no binary16 lists (the store's IVF-Flat has)") }
        let coarse = try KMeans.train(vectors, count: count, dimension: dimension, k: options.nlist, metric: metric,
                                      options: options.kmeans, progress: progress)
        var labels = [UInt32](), distances = [Float]()
        KMeans.assign(vectors, count: count, dimension: dimension, centroids: coarse.centroids, k: options.nlist,
                      metric: metric, threads: options.kmeans.threads, labels: &labels, distances: &distances)
        var quantizer: ProductQuantizer?
        var codeError = 0.0
        let residual = options.kind != .flat && options.residual
        if options.kind != .flat {
            var pq = try ProductQuantizer(dimension: dimension, subquantizers: options.subquantizers,
                                          bits: options.kind == .pq8 ? 8 : 4)
            // Train on the residuals of a seeded sample (the codebook k-means caps its sample at
            // 256 rows per centroid anyway).
            let want = min(count, pq.centroidsPerSubquantizer * options.pqKMeans.maxPointsPerCentroid)
            var rng = SplitMix64(seed: options.pqKMeans.seed ^ 0x5eed)
            var index = Array(0..<count)
            for i in 0..<want { index.swapAt(i, i + rng.below(count - i)) }
            let rows = index[0..<want].sorted()
            var residuals = [Float](repeating: 0, count: want * dimension)
            coarse.centroids.withUnsafeBufferPointer { cb in
                guard let c = cb.baseAddress else { return }
                for (j, row) in rows.enumerated() {
                    let centroid = c + Int(labels[row]) * dimension
                    for t in 0..<dimension {
                        residuals[j * dimension + t] = vectors[row * dimension + t] - (residual ? centroid[t] : 0)
                    }
                }
            }
            codeError = try residuals.withUnsafeBufferPointer { (r) throws(QuantError) -> Double in
                guard let rb = r.baseAddress else { throw .invalidParameter("no PQ training rows") }
                return try pq.train(rb, count: want, options: options.pqKMeans)
            }
            quantizer = pq
        }
        // Rows of each list in ascending order.
        var members = [[UInt32]](repeating: [], count: options.nlist)
        for row in 0..<count { members[Int(labels[row])].append(UInt32(row)) }
        let header = IVFHeader(kind: options.kind, metric: metric, nlist: options.nlist, dimension: dimension,
                               subquantizers: quantizer?.subquantizers ?? 0, bits: quantizer?.bits ?? 0,
                               blockCapacity: options.blockCapacity, defaultNprobe: min(options.nlist, 8),
                               defaultRefine: options.kind == .flat ? 0 : 4, seed: options.kmeans.seed,
                               coarseError: coarse.meanSquaredError, codeError: codeError,
                               trainingRows: coarse.sampleCount, iterations: options.kmeans.iterations,
                               residual: residual)
        _ = try header.encode()  // validates the parameters
        var values = [[[UInt8]]](repeating: [], count: options.nlist)
        for list in 0..<options.nlist {
            var start = 0
            let rows = members[list]
            while start < rows.count {
                let chunk = Array(rows[start..<min(rows.count, start + options.blockCapacity)])
                values[list].append(try encodeBlock(chunk, list: list, vectors: vectors, dimension: dimension,
                                                    centroids: coarse.centroids, quantizer: quantizer, kind: options.kind,
                                                    residual: residual))
                start += chunk.count
            }
        }
        return IVFIndex(header: header, centroids: coarse.centroids, quantizer: quantizer, values: values)
    }

    /// One list block for `rows` of `list`: vectors, or the codes of their residuals (`residual`) or of the
    /// vectors themselves.
    static func encodeBlock(_ rows: [UInt32], list: Int, vectors: UnsafePointer<Float>, dimension: Int,
                            centroids: [Float], quantizer: ProductQuantizer?,
                            kind: IVFPayloadKind, residual: Bool) throws(QuantError) -> [UInt8] {
        let n = rows.count
        var gathered = [Float](repeating: 0, count: n * dimension)
        for (i, row) in rows.enumerated() {
            for t in 0..<dimension {
                gathered[i * dimension + t] = vectors[Int(row) * dimension + t]
                    - (residual ? centroids[list * dimension + t] : 0)
            }
        }
        guard let pq = quantizer, kind != .flat else {
            return try IVFListBlock.encode(kind: .flat, list: list, width: dimension, rows: rows,
                                           payloadBytes: FloatMatrixRecord.encode(gathered))
        }
        var codes = [UInt8](repeating: 0, count: n * pq.codeSize)
        gathered.withUnsafeBufferPointer { g in
            codes.withUnsafeMutableBufferPointer { c in
                guard let gb = g.baseAddress, let cb = c.baseAddress else { return }
                pq.encode(gb, count: n, into: cb)
            }
        }
        if kind == .pq4FastScan {
            var packed = [UInt8](repeating: 0, count: kind.payloadBytes(count: n, width: pq.subquantizers))
            codes.withUnsafeBufferPointer { c in
                packed.withUnsafeMutableBufferPointer { p in
                    guard let cb = c.baseAddress, let pb = p.baseAddress else { return }
                    FastScan.pack(cb, count: n, subquantizers: pq.subquantizers, into: pb)
                }
            }
            codes = packed
        }
        return try IVFListBlock.encode(kind: kind, list: list, width: pq.subquantizers, rows: rows, payloadBytes: codes)
    }

    /// The `k` nearest rows to `query`: `(row, score)` best first, where score is the squared distance for
    /// L2 and the inner product for dot and cosine. Flat lists score exactly; PQ lists score by ADC (fast
    /// scan for `.pq4FastScan`), and with `refine > 0` the best `refine × k` are re-scored with `vectors`
    /// (the float32 rows, row-major) so reported scores are exact. `mask`, when given, restricts the rows.
    ///
    /// - Throws: `QuantError.damaged` when a stored block fails its checks.
    public func search(_ query: UnsafePointer<Float>, k: Int, options: IVFSearchOptions,
                       vectors: UnsafePointer<Float>? = nil, mask: CandidateMask? = nil) throws(QuantError)
        -> [(id: UInt32, score: Float)] {
        let d = header.dimension, metric = header.metric, kind = header.kind
        let probes = centroids.withUnsafeBufferPointer { c -> [UInt32] in
            guard let cb = c.baseAddress else { return [] }
            return KMeans.nearest(query, centroids: cb, k: header.nlist, dimension: d, metric: metric,
                                  count: options.nprobe)
        }
        let refining = kind != .flat && options.refine > 0 && vectors != nil
        if refining, let vectors, let pq = quantizer {
            var candidates = CandidateReservoir(k: k * options.refine)
            try scanCodes(query, probes: probes, pq: pq, mask: mask, into: &candidates)
            // order-free: ties break by row
            return ExactRerank.rerank(candidates.finish().map(\.id), query: query, dimension: d, metric: metric, k: k) { row in
                vectors + Int(row) * d
            }
        }
        var top = TopK(k: k)
        if kind == .flat {
            for list in probes {
                for r in blocks[Int(list)] {
                    let view = try blockView(r, list: Int(list))
                    IVFListScan.flat(view, query: query, metric: metric, mask: mask, into: &top)
                }
            }
        } else if let pq = quantizer {
            try scanCodes(query, probes: probes, pq: pq, mask: mask, into: &top)
        }
        let sorted = top.sorted()
        return metric == .l2 ? sorted.map { (id: $0.id, score: -$0.score) } : sorted
    }

    /// Checked view of one stored block.
    @inline(__always)
    func blockView(_ r: Range<Int>, list: Int) throws(QuantError) -> IVFListBlockView {
        try IVFListBlock.view(UnsafeRawBufferPointer(start: storage + r.lowerBound, count: r.count), kind: header.kind,
                              width: header.kind == .flat ? header.dimension : header.subquantizers, list: list)
    }

    /// The list-dependent part of L2 ADC tables over residual codes, so a query needs no per-list table of
    /// `M × 2^bits × dsub` work (FAISS's "precomputed tables"). With x = c + r and r's sub-vectors coded as
    /// centroids `r_jk`: |q − x|² = |q − c|² + Σ_j (|r_jk|² + 2 c_j · r_jk) − 2 Σ_j q_j · r_jk. Entry
    /// (l, j, k) is `|r_jk|² + 2 c_l,j · r_jk`; the query adds −2 q_j · r_jk (one table for all lists) and the
    /// list constant |q − c_l|².
    public static func precomputedTerms(centroids: [Float], nlist: Int, quantizer pq: ProductQuantizer) -> [Float] {
        let m = pq.subquantizers, ksub = pq.centroidsPerSubquantizer, dsub = pq.subDimension, d = pq.dimension
        var out = [Float](repeating: 0, count: nlist * m * ksub)
        pq.codebooks.withUnsafeBufferPointer { cb in
            centroids.withUnsafeBufferPointer { cc in
                out.withUnsafeMutableBufferPointer { ob in
                    guard let book = cb.baseAddress, let c = cc.baseAddress, let o = ob.baseAddress else { return }
                    for j in 0..<m {
                        let sub = book + j * ksub * dsub
                        for k in 0..<ksub {
                            let r = sub + k * dsub
                            let norm = vs_dot(r, r, dsub)
                            for l in 0..<nlist {
                                o[(l * m + j) * ksub + k] = norm + 2 * vs_dot(c + l * d + j * dsub, r, dsub)
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// ADC over the probed lists' codes through `IVFProbeScorer` (one query table, one list table and
    /// constant per probed list).
    func scanCodes<S: ScoredRowSink>(_ query: UnsafePointer<Float>, probes: [UInt32], pq: ProductQuantizer,
                                     mask: CandidateMask?, into top: inout S) throws(QuantError) {
        let d = header.dimension
        var scorer = IVFProbeScorer(query: query, header: header, quantizer: pq, precomputed: precomputed)
        for list in probes {
            let l = Int(list)
            centroids.withUnsafeBufferPointer { cb in
                precomputed.withUnsafeBufferPointer { pb in
                    guard let c = cb.baseAddress else { return }
                    scorer.prepare(list: l, query: query, centroid: c + l * d, precomputed: pb.baseAddress)
                }
            }
            for r in blocks[l] { scorer.scanRows(try blockView(r, list: l), mask: mask, into: &top) }
        }
    }
}
