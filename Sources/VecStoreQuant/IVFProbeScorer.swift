import CDistance
import VecStoreKernels

/// Per-query ADC state of an IVF-PQ search (Spec/PQ.md §4): the query's look-up table, prepared once per
/// query, and the table and constant term of the list being scanned, prepared once per probed list. Shared
/// by the in-memory `IVFIndex` and the store's read view so both score exactly alike.
///
/// Inner product and cosine: q·(c + r̂) = q·c + Σ_j T[j][code_j], one table for every list, the list's bias
/// is q·c. L2 with `precomputed` list terms: table P[l] − 2 q·b, bias |q − c_l|². L2 without them (large
/// `nlist × M × 2^bits`): the table of the residual query q − c_l, bias 0.
///
/// Codes of the raw vectors (`IVFHeader.residual` false): one table for every list and every metric
/// (|q_j − b|² or q_j·b), built (and, for fast scan, quantized) once per query; no list constant, so
/// `prepare` does nothing and the scorer can be reused as it is for every probed list.
public struct IVFProbeScorer {
    let header: IVFHeader
    let quantizer: ProductQuantizer
    let l2: Bool
    let fast: Bool
    /// Codes of residuals (per-list state) rather than of the raw vectors (one table per query).
    let residualCodes: Bool
    let tableSize: Int
    /// Queries whose tables `beginTile` builds in one pass over the codebooks (8-bit codes; always 1 for fast
    /// scan, whose 16-entry codebooks fit in L1 anyway).
    public let tile: Int
    /// The queries' tables, `tile` of them (inner product: q·b; L2 with precomputed terms: −2 q·b); the
    /// current query's starts at `active`.
    var queryTable: [Float]
    /// Offset of the current query's table in `queryTable`.
    var active = 0
    /// The current list's table (L2 only).
    var listTable: [Float]
    var residual: [Float]
    var quantized: QuantizedTable?
    /// Byte-plane form of the table being scanned (8-bit codes on CPUs with the byte-plane scan, else empty),
    /// from its first 64-byte aligned byte (`alignment`): built by the first scan of a block of at least
    /// `planeRows` rows (a query's table) or `listPlaneRows` rows (a list's table) after the table changed, so
    /// a query or list that only meets short blocks does not pay for it.
    var planes: [UInt8]
    /// Bytes of the byte-plane form of a table (`ProductQuantizer.planesSize`): 0 where the CPU or M has none.
    let planeBytes: Int
    /// Whether `planes` holds the current table.
    var planesCurrent = false
    /// Rows of a block from which the byte planes of a query's table (inner product, raw-vector codes: one
    /// table for every probed list) are built: one vector step of the byte-plane scan.
    static let planeRows = 64
    /// Rows of a block from which the byte planes of a list's own table (residual L2) are built. Building them
    /// costs about 15 ns × M and saves about 0.1 ns × M a row (AMD EPYC Zen 5, M = 16 and 48), so a list's
    /// planes pay from about 150 rows on; siftsmall's lists (about 100 rows) keep the scalar scan.
    static let listPlaneRows = 160
    /// Rows from which a block builds the planes of the current table.
    var planeThreshold: Int { l2 && residualCodes ? Self.listPlaneRows : Self.planeRows }
    /// Constant term of the current list.
    public private(set) var bias: Float = 0

    /// Prepares the query's table. `precomputed` is `IVFIndex.precomputedTerms` or empty.
    public init(query: UnsafePointer<Float>, header: IVFHeader, quantizer pq: ProductQuantizer, precomputed: [Float]) {
        self.init(header: header, quantizer: pq, precomputed: precomputed)
        begin(query: query)
    }

    /// A scorer with its tables allocated but no query yet: call `begin(query:)` (or `beginTile` and
    /// `use(slot:)`) before each query. One scorer serves every query of a worker (its tables are refilled in
    /// place, nothing is allocated). `tile` > 1 (8-bit codes only) makes room for `beginTile`'s tables.
    public init(header: IVFHeader, quantizer pq: ProductQuantizer, precomputed: [Float], tile: Int = 1) {
        self.header = header
        quantizer = pq
        l2 = header.metric == .l2
        fast = header.kind == .pq4FastScan
        residualCodes = header.residual
        tableSize = pq.subquantizers * pq.centroidsPerSubquantizer
        self.tile = fast ? 1 : max(1, tile)
        queryTable = [Float](repeating: 0, count: tableSize * self.tile)
        // The per-list float table: residual L2 only, and not for fast scan with precomputed terms (quantized
        // in one pass).
        let listed = header.residual && l2 && !(fast && !precomputed.isEmpty)
        listTable = [Float](repeating: 0, count: listed ? tableSize : 0)
        residual = [Float](repeating: 0, count: header.residual && l2 && precomputed.isEmpty ? header.dimension : 0)
        if fast { quantized = QuantizedTable(subquantizers: pq.subquantizers) }
        planeBytes = fast ? 0 : pq.planesSize
        planes = []  // allocated by the first block that builds planes: a query that never does pays nothing
    }

    /// Fills the query's table (and, where one quantized table serves every list, quantizes it): raw-vector
    /// codes |q_j − b|² (L2) or q_j·b; residual codes q_j·b (inner product) or −2 q_j·b (L2, completed per
    /// list by `prepare`).
    public mutating func begin(query: UnsafePointer<Float>) {
        let l2 = self.l2, residualCodes = self.residualCodes, pq = quantizer
        bias = 0
        active = 0
        planesCurrent = false
        queryTable.withUnsafeMutableBufferPointer { t in
            guard let tb = t.baseAddress else { return }
            // −2 q·b: the table kernel scales each entry as it stores it (exact, as multiplying afterwards was).
            pq.lookupTable(query, metric: l2 && !residualCodes ? .l2 : .dot, scale: l2 && residualCodes ? -2 : 1, into: tb)
        }
        // One quantized table for every list: raw codes (any metric) and residual inner product. Residual L2
        // re-quantizes per list in `prepare`.
        guard fast, !(l2 && residualCodes) else { return }
        queryTable.withUnsafeBufferPointer { t in
            if let tb = t.baseAddress { quantized?.update(tb, plus: nil, innerProduct: !l2) }
        }
    }

    /// Fast scan whose one quantized table serves every probed list (raw-vector codes under any metric, residual
    /// codes under inner product): that table as `begin(query:)` left it; nil for 8-bit codes and for residual L2
    /// (a table per list). With it, a list's scan needs only the table and the list constant (`bias` after
    /// `prepare`: 0 for raw-vector codes, q·c for residual codes), so a batch may scan list by list.
    public var sharedFastTable: QuantizedTable? { fast && !(l2 && residualCodes) ? quantized : nil }

    /// 8-bit codes: queries a `beginTile` pass builds tables for. A batch of 8 shares each 2 KB block of the
    /// transposed codebooks (dsub 8 × 64 centroids) from L1 instead of streaming the whole codebook (128 KB for
    /// siftsmall's M = 16, 384 KB for d = 384) from L2 once a query.
    public static let tableTile = 8

    /// Builds the tables of `count` (≤ `tile`) queries, `stride` floats apart, in one pass (`lookupTables`:
    /// each table is the bits `begin(query:)` builds); `use(slot:)` then starts query `slot` of them. Fast scan
    /// (`tile` 1) quantizes in `use`.
    public mutating func beginTile(queries: UnsafePointer<Float>, count: Int, stride: Int) {
        let n = min(max(count, 0), tile)
        planesCurrent = false  // the tables change: no scan may read planes of the old ones
        let l2 = self.l2, residualCodes = self.residualCodes, pq = quantizer
        queryTable.withUnsafeMutableBufferPointer { t in
            guard let tb = t.baseAddress else { return }
            pq.lookupTables(queries, count: n, stride: stride, metric: l2 && !residualCodes ? .l2 : .dot,
                            scale: l2 && residualCodes ? -2 : 1, into: tb)
        }
    }

    /// Starts query `slot` of the last `beginTile` (as `begin(query:)` would for it).
    public mutating func use(slot: Int) {
        bias = 0
        active = min(max(slot, 0), tile - 1) * tableSize
        planesCurrent = false
        guard fast, !(l2 && residualCodes) else { return }
        let active = self.active
        queryTable.withUnsafeBufferPointer { t in
            if let tb = t.baseAddress { quantized?.update(tb + active, plus: nil, innerProduct: !l2) }
        }
    }

    /// Sets up the table and constant term of list `l` (centroid `centroid`). `innerProduct`, when the
    /// caller has it (the probe search's q·c), is the inner-product list constant, not computed again.
    public mutating func prepare(list l: Int, query: UnsafePointer<Float>, centroid: UnsafePointer<Float>,
                                 precomputed: UnsafePointer<Float>?, innerProduct: Float? = nil) {
        let d = header.dimension, size = tableSize, fast = self.fast
        guard residualCodes else { return }  // one table, no constant (bias stays 0)
        if !l2 {
            bias = innerProduct ?? vs_dot(query, centroid, d)
            return
        }
        planesCurrent = false  // a table of this list
        if let precomputed {
            bias = vs_l2(query, centroid, d)
            let row = precomputed + l * size, active = self.active
            queryTable.withUnsafeBufferPointer { qb in
                guard let q = qb.baseAddress.map({ $0 + active }) else { return }
                if fast {
                    quantized?.update(row, plus: q, innerProduct: false)
                } else {
                    listTable.withUnsafeMutableBufferPointer { lb in
                        guard let o = lb.baseAddress else { return }
                        for i in 0..<size { o[i] = row[i] + q[i] }
                    }
                }
            }
            return
        }
        bias = 0
        let pq = quantizer
        residual.withUnsafeMutableBufferPointer { rb in
            listTable.withUnsafeMutableBufferPointer { lb in
                guard let r = rb.baseAddress, let o = lb.baseAddress else { return }
                for t in 0..<d { r[t] = query[t] - centroid[t] }
                pq.lookupTable(r, metric: .l2, into: o)
            }
        }
        guard fast else { return }
        listTable.withUnsafeBufferPointer { t in
            if let tb = t.baseAddress { quantized?.update(tb, plus: nil, innerProduct: false) }
        }
    }

    /// Scans one checked block of the prepared list into `top` (larger score = closer). Mutating: it may
    /// build the byte planes of the current table (`planes`), the same scores either way.
    public mutating func scan(_ block: IVFListBlockView, mask: CandidateMask?, into top: inout TopK) {
        scanRows(block, mask: mask, into: &top)
    }

    /// `scan` into the re-ranking candidates of a refining search.
    public mutating func scan(_ block: IVFListBlockView, mask: CandidateMask?, into top: inout CandidateReservoir) {
        scanRows(block, mask: mask, into: &top)
    }

    @inline(__always)
    mutating func scanRows<S: ScoredRowSink>(_ block: IVFListBlockView, mask: CandidateMask?, into top: inout S) {
        if fast {
            if let quantized { IVFListScan.fastScanRows(block, table: quantized, bias: bias, mask: mask, into: &top) }
            return
        }
        let listed = l2 && residualCodes, offset = listed ? 0 : active
        if !planesCurrent, planeBytes > 0, block.count >= planeThreshold {
            if planes.isEmpty {
                // Every byte is written by `buildPlanes` before a scan reads it.
                planes = [UInt8](unsafeUninitializedCapacity: planeBytes + 64) { _, count in count = planeBytes + 64 }
            }
            let pq = quantizer
            (listed ? listTable : queryTable).withUnsafeBufferPointer { t in
                planes.withUnsafeMutableBufferPointer { p in
                    guard let tb = t.baseAddress, let pb = p.baseAddress else { return }
                    pq.buildPlanes(table: tb + offset, into: pb + Self.alignment(pb))
                }
            }
            planesCurrent = true
        }
        let usePlanes = planesCurrent
        (listed ? listTable : queryTable).withUnsafeBufferPointer { t in
            planes.withUnsafeBufferPointer { p in
                guard let tb = t.baseAddress.map({ $0 + offset }) else { return }
                let pb = usePlanes ? p.baseAddress.map { UnsafePointer($0 + Self.alignment($0)) } : nil
                IVFListScan.pqRows(block, quantizer: quantizer, table: tb, planes: pb, metric: header.metric,
                                   bias: bias, mask: mask, into: &top)
            }
        }
    }

    /// Bytes from `p` to the next 64-byte boundary (0 to 63): the planes' vector loads and stores stay within
    /// cache lines.
    @inline(__always)
    static func alignment(_ p: UnsafeRawPointer) -> Int { (64 - Int(bitPattern: p) & 63) & 63 }
}
