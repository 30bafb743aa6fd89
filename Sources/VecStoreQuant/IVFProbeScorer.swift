import CDistance
import VecStoreKernels

/// Per-query ADC state of an IVF-PQ search (Spec/PQ.md §4): the query's look-up table, prepared once per
/// query, and the table and constant term of the list being scanned, prepared once per probed list. Shared
/// by the in-memory `IVFIndex` and the store's read view so both score exactly alike.
///
/// Inner product and cosine: q·(c + r̂) = q·c + Σ_j T[j][code_j], one table for every list, the list's bias
/// is q·c. L2 with `precomputed` list terms: table P[l] − 2 q·b, bias |q − c_l|². L2 without them (large
/// `nlist × M × 2^bits`): the table of the residual query q − c_l, bias 0.
public struct IVFProbeScorer {
    let header: IVFHeader
    let quantizer: ProductQuantizer
    let l2: Bool
    let fast: Bool
    let tableSize: Int
    /// The query's table (inner product: q·b; L2 with precomputed terms: −2 q·b).
    var queryTable: [Float]
    /// The current list's table (L2 only).
    var listTable: [Float]
    var residual: [Float]
    var quantized: QuantizedTable?
    /// Constant term of the current list.
    public private(set) var bias: Float = 0

    /// Prepares the query's table. `precomputed` is `IVFIndex.precomputedTerms` or empty.
    public init(query: UnsafePointer<Float>, header: IVFHeader, quantizer pq: ProductQuantizer, precomputed: [Float]) {
        self.header = header
        quantizer = pq
        l2 = header.metric == .l2
        fast = header.kind == .pq4FastScan
        tableSize = pq.subquantizers * pq.centroidsPerSubquantizer
        queryTable = [Float](repeating: 0, count: tableSize)
        // The per-list float table: L2 only, and not for fast scan with precomputed terms (quantized in one pass).
        listTable = [Float](repeating: 0, count: l2 && !(fast && !precomputed.isEmpty) ? tableSize : 0)
        residual = [Float](repeating: 0, count: l2 && precomputed.isEmpty ? header.dimension : 0)
        let l2 = self.l2, size = tableSize, m = pq.subquantizers
        queryTable.withUnsafeMutableBufferPointer { t in
            guard let tb = t.baseAddress else { return }
            pq.lookupTable(query, metric: .dot, into: tb)
            if l2 { for i in 0..<size { tb[i] *= -2 } }
        }
        // Inner product: one quantized table serves every list. L2: each list re-quantizes its own table in
        // place (`prepare`); the storage is made here, once per query.
        if fast {
            quantized = l2 ? QuantizedTable(subquantizers: m) : queryTable.withUnsafeBufferPointer { t in
                t.baseAddress.map { QuantizedTable($0, subquantizers: m, innerProduct: true) }
            }
        }
    }

    /// Sets up the table and constant term of list `l` (centroid `centroid`).
    public mutating func prepare(list l: Int, query: UnsafePointer<Float>, centroid: UnsafePointer<Float>,
                                 precomputed: UnsafePointer<Float>?) {
        let d = header.dimension, size = tableSize, fast = self.fast
        if !l2 {
            bias = vs_dot(query, centroid, d)
            return
        }
        if let precomputed {
            bias = vs_l2(query, centroid, d)
            let row = precomputed + l * size
            queryTable.withUnsafeBufferPointer { qb in
                guard let q = qb.baseAddress else { return }
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

    /// Scans one checked block of the prepared list into `top` (larger score = closer).
    public func scan(_ block: IVFListBlockView, mask: CandidateMask?, into top: inout TopK) {
        if fast {
            if let quantized { IVFListScan.fastScan(block, table: quantized, bias: bias, mask: mask, into: &top) }
            return
        }
        (l2 ? listTable : queryTable).withUnsafeBufferPointer { t in
            guard let tb = t.baseAddress else { return }
            IVFListScan.pq(block, quantizer: quantizer, table: tb, metric: header.metric, bias: bias, mask: mask,
                           into: &top)
        }
    }
}
