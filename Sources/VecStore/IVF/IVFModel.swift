import LMDB
import VecStoreKernels
import VecStoreQuant

/// A collection's trained IVF quantizers as stored (Spec/IVF.md §2–3, Spec/PQ.md §2): the header, the coarse
/// centroids and, for IVF-PQ, the product quantizer. Every value is checked when it is read; a damaged
/// record gives `VecStoreError.corrupt` naming the collection and the record.
final class IVFModel: @unchecked Sendable {
    let header: IVFHeader
    /// `nlist × dimension` centroids, row-major.
    let centroids: [Float]
    /// The product quantizer of IVF-PQ (nil for IVF-Flat).
    let quantizer: ProductQuantizer?

    /// L2: each centroid's squared norm |c|² (the batched probe ranks lists by 2 q·c − |c|²); empty otherwise.
    let centroidNorms: [Float]

    init(header: IVFHeader, centroids: [Float], quantizer: ProductQuantizer?) {
        self.header = header
        self.centroids = centroids
        self.quantizer = quantizer
        let nlist = header.nlist, d = header.dimension
        centroidNorms = header.metric != .l2 || centroids.count < nlist * d ? [] : centroids.withUnsafeBufferPointer { c in
            guard let cb = c.baseAddress else { return [] }
            return (0..<nlist).map { dotProduct(cb + $0 * d, cb + $0 * d, d) }
        }
    }

    /// Bytes of one row's payload: `4 · dimension` for float32 flat lists, `8 + 2 · dimension` for binary16
    /// (error bound, norm, copy), the PQ code size otherwise.
    var codeSize: Int {
        quantizer?.codeSize ?? (header.kind == .flat16 ? HalfRows.rowBytes(dimension: header.dimension) : header.dimension * 4)
    }

    /// Width field of the list blocks: the dimension for flat kinds, M for PQ.
    var width: Int { header.kind.isFlat ? header.dimension : header.subquantizers }

    /// The model of collection `record`, or nil when it has no IVF index.
    static func load(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, name: String) throws -> IVFModel? {
        guard let value = try txn.get(dbs.meta, IVFFormat.headerKey(record.id)) else { return nil }
        let (ivf, _) = try IVFFormat.handles(dbs)
        let cv = try txn.get(ivf, IVFFormat.centroidKey(record.id))
        let bv = try txn.get(ivf, IVFFormat.codebookKey(record.id))
        let model: IVFModel
        do throws(QuantError) {
            let header = try IVFHeader.decode(value)
            guard header.metric == record.metric else {
                throw QuantError.damaged(record: "IVF header", offset: 2,
                                         reason: "metric \(header.metric), the collection's is \(record.metric)")
            }
            guard header.dimension == record.dimension else {
                throw QuantError.damaged(record: "IVF header", offset: 8,
                                         reason: "dimension \(header.dimension), the collection's is \(record.dimension)")
            }
            guard let cv else { throw QuantError.damaged(record: "IVF centroids", offset: 0, reason: "record missing") }
            let centroids = try FloatMatrixRecord.decode(cv, count: header.nlist * header.dimension,
                                                        record: "IVF centroids")
            var quantizer: ProductQuantizer?
            if !header.kind.isFlat {
                guard let bv else { throw QuantError.damaged(record: "PQ codebooks", offset: 0, reason: "record missing") }
                let books = try FloatMatrixRecord.decode(bv, count: header.dimension << header.bits,
                                                        record: "PQ codebooks")
                quantizer = try ProductQuantizer(dimension: header.dimension, subquantizers: header.subquantizers,
                                                 bits: header.bits, codebooks: books)
            }
            model = IVFModel(header: header, centroids: centroids, quantizer: quantizer)
        } catch {
            throw IVFFormat.corrupt(error, name)
        }
        try IVFFormat.checkCoding(raw: model.quantizer != nil && !model.header.residual,
                                  half: model.header.kind == .flat16, txn, dbs, name: name)
        return model
    }

    /// Writes the header, centroids and codebooks of collection `cid` and declares the `ivf` feature.
    func store(_ txn: Transaction, _ dbs: Databases, _ cid: UInt32) throws {
        let (ivf, _) = try IVFFormat.handles(dbs)
        let encoded: [UInt8]
        do { encoded = try header.encode() } catch { throw VecStoreError.invalidArgument("\(error)") }
        try txn.put(dbs.meta, IVFFormat.headerKey(cid), encoded)
        try txn.put(ivf, IVFFormat.centroidKey(cid), FloatMatrixRecord.encode(centroids))
        if let quantizer {
            try txn.put(ivf, IVFFormat.codebookKey(cid), FloatMatrixRecord.encode(quantizer.codebooks))
        } else {
            _ = try txn.delete(ivf, IVFFormat.codebookKey(cid))
        }
        try Format.declare(Format.Feature(name: IVFFormat.feature, neededToRead: true, neededToWrite: true), txn,
                           meta: dbs.meta)
        try IVFFormat.declareCoding(raw: quantizer != nil && !header.residual, half: header.kind == .flat16, txn, dbs)
    }

    /// Deletes collection `cid`'s IVF records and lists (the collection is searched exactly afterwards).
    /// Stores opened read-only without the IVF databases hold no IVF collection: nothing to do.
    static func drop(_ txn: Transaction, _ dbs: Databases, _ cid: UInt32) throws {
        _ = try txn.delete(dbs.meta, IVFFormat.headerKey(cid))
        let prefix = Format.prefix(cid)
        for name in [IVFFormat.DB.ivf, IVFFormat.DB.lists] {
            guard let db = dbs.handle(name) else { continue }
            try txn.deletePrefix(db, prefix)
        }
    }

    /// The `count` nearest lists of a query, nearest first (Spec/IVF.md §6 step 1).
    func probes(_ query: UnsafePointer<Float>, count: Int) -> [UInt32] {
        centroids.withUnsafeBufferPointer { c in
            guard let cb = c.baseAddress else { return [] }
            return KMeans.nearest(query, centroids: cb, k: header.nlist, dimension: header.dimension,
                                  metric: header.metric, count: count)
        }
    }

    /// Batches from this many queries find their probes with `batchProbes` (one matrix product per tile of
    /// queries, as FAISS's batched search does); smaller ones query the centroids one by one.
    static let batchProbeThreshold = 16

    /// A slot of `batchProbes` with no list (fewer than nprobe lists had a comparable score, as when
    /// `probes` returns fewer): always after the lists found, and skipped by the scans.
    static let noList = UInt32.max

    /// Above this many probes a query's best lists are picked by a quickselect over one integer key a list
    /// and sorted, rather than kept in a sorted buffer (whose insertions cost O(nprobe) each: ~7% of a docs60k
    /// fast-scan query at nprobe 64).
    static let insertionProbeLimit = 16

    /// The `nprobe` (≤ nlist) nearest lists of each of `count` queries, `count × nprobe` row-major, nearest
    /// first (ties to the lower list): the centroid products of a tile of queries come from one
    /// `MatrixProduct.dotTile` on `MatrixProduct.computeKernel` (the k-means assignment's kernel), ranked by
    /// |c|² − 2 q·c (L2, the distance less |q|²) or q·c, and each query keeps its best lists in a sorted buffer (an argmax for nprobe 1; a quickselect and a sort above
    /// `insertionProbeLimit`); slots left over when NaN scores leave fewer lists are `noList`. `scores` are the ranking values of the lists picked, in the same layout (q·c
    /// for inner product and cosine: the list constant of residual codes, which the scan then does not
    /// compute again). The same rule as `probes` up to float rounding of near-ties.
    func batchProbes(_ queries: UnsafePointer<Float>, count: Int, nprobe: Int) -> (lists: [UInt32], scores: [Float]) {
        let nlist = header.nlist, d = header.dimension, l2 = header.metric == .l2
        let p = min(max(1, nprobe), nlist)
        var out = [UInt32](repeating: 0, count: count * p)
        var picked = [Float](repeating: -.infinity, count: count * p)
        let tile = max(1, min(256, (1 << 18) / nlist))
        // Without norms (centroids shorter than nlist × d: refused at load) no list is probed.
        guard !l2 || centroidNorms.count == nlist else {
            return ([UInt32](repeating: Self.noList, count: count * p), picked)
        }
        var keys = [UInt64](repeating: 0, count: p > Self.insertionProbeLimit ? nlist : 0)
        centroids.withUnsafeBufferPointer { cb in
            centroidNorms.withUnsafeBufferPointer { nb in
                out.withUnsafeMutableBufferPointer { ob in
                    picked.withUnsafeMutableBufferPointer { pb in
                        keys.withUnsafeMutableBufferPointer { kb in
                            guard let c = cb.baseAddress, let o = ob.baseAddress, let so = pb.baseAddress else { return }
                            let norms = nb.baseAddress
                            withUnsafeTemporaryAllocation(of: Float.self, capacity: tile * nlist) { buf in
                                guard let scores = buf.baseAddress else { return }
                                var start = 0
                                while start < count {
                                    let rows = min(tile, count - start)
                                    MatrixProduct.dotTile(queries + start * d, aRows: rows, c, bRows: nlist, dimension: d,
                                                          into: scores, ldo: nlist, kernel: MatrixProduct.computeKernel)
                                    for i in 0..<rows {
                                        let line = scores + i * nlist
                                        // Ranked by 2 q·c − |c|² (L2: the distance less |q|², negated) or q·c.
                                        if l2, let norms { Self.rank(line, norms: norms, count: nlist) }
                                        let dst = o + (start + i) * p, value = so + (start + i) * p
                                        let held = Self.best(line, count: nlist, p: p, into: dst, keys: kb.baseAddress)
                                        for t in 0..<held { value[t] = line[Int(dst[t])] }
                                        // NaN scores left fewer than p: the rest are `noList`, which the scans
                                        // skip (as `probes` returns fewer lists), so no list is scanned twice.
                                        for t in held..<max(held, p) { dst[t] = Self.noList }
                                    }
                                    start += rows
                                }
                            }
                        }
                    }
                }
            }
        }
        return (out, picked)
    }

    /// The `p` best of `count` scores at `line` (largest first, ties to the lower index, NaN never picked) into
    /// `dst`; returns how many were picked (fewer than `p` only when NaN leaves fewer). `keys` has room for
    /// `count` when `p > insertionProbeLimit`.
    static func best(_ line: UnsafePointer<Float>, count nlist: Int, p: Int, into dst: UnsafeMutablePointer<UInt32>,
                     keys: UnsafeMutablePointer<UInt64>?) -> Int {
        if p == 1 {
            // The nearest list: the first maximum (ties to the lower list), as TopK. NaN never wins (TopK
            // refuses it); when every score is NaN, list 0. The largest non-NaN score first, sixteen lanes at
            // a time with no branch on the scores (a branch a list was most of a siftsmall probe at
            // nprobe 1), then the first list holding it (−0 and +0 are equal, as the comparisons of a scalar
            // scan treat them).
            var lanes = SIMD16<Float>(repeating: -.infinity)
            var j = 0
            while j + 16 <= nlist {
                let v = UnsafeRawPointer(line + j).loadUnaligned(as: SIMD16<Float>.self)
                lanes.replace(with: v, where: v .> lanes)
                j += 16
            }
            var top = lanes.max()
            while j < nlist {
                if line[j] > top { top = line[j] }
                j += 1
            }
            var first = 0
            while first < nlist && line[first] != top { first += 1 }
            dst[0] = UInt32(first < nlist ? first : 0)
            return 1
        }
        if p > insertionProbeLimit, let keys {
            // One key a list (the score's order, then the lower list), NaN left out; the p largest keys are
            // selected, then sorted.
            var n = 0
            for j in 0..<nlist where !line[j].isNaN {
                keys[n] = CandidateReservoir.key(line[j], UInt32(j))
                n += 1
            }
            let held = min(p, n)
            if held < n { CandidateReservoir.select(keys, count: n, k: held) }
            var sorted = UnsafeMutableBufferPointer(start: keys, count: held)
            sorted.sort(by: >)
            for t in 0..<held { dst[t] = CandidateReservoir.decode(keys[t]).id }
            return held
        }
        // The p best so far, best first (ties to the lower list: lists come in ascending order, so an equal
        // score goes after those held). Only a score above the worst held enters once p are held; NaN never
        // enters.
        var held = 0, worst = Float.infinity
        for j in 0..<nlist {
            let s = line[j]
            if held == p {
                guard s > worst else { continue }
            } else if s.isNaN {
                continue
            } else {
                held += 1
            }
            var at = held - 1
            while at > 0 && line[Int(dst[at - 1])] < s {
                dst[at] = dst[at - 1]
                at -= 1
            }
            dst[at] = UInt32(j)
            if held == p { worst = line[Int(dst[p - 1])] }
        }
        return held
    }

    /// L2 ranking values in place: `line[j] = 2 · line[j] − norms[j]` (the product by 2 is exact, then one
    /// rounded subtraction, as the scalar expression), sixteen lists at a time.
    static func rank(_ line: UnsafeMutablePointer<Float>, norms: UnsafePointer<Float>, count n: Int) {
        var j = 0
        while j + 16 <= n {
            let v = UnsafeRawPointer(line + j).loadUnaligned(as: SIMD16<Float>.self)
            let c = UnsafeRawPointer(norms + j).loadUnaligned(as: SIMD16<Float>.self)
            UnsafeMutableRawPointer(line + j).storeBytes(of: 2 * v - c, as: SIMD16<Float>.self)
            j += 16
        }
        while j < n {
            line[j] = 2 * line[j] - norms[j]
            j += 1
        }
    }

    /// The nearest list of each of `count` rows (Spec/IVF.md §5 step 3's rule).
    func assign(_ rows: UnsafePointer<Float>, count: Int, threads: Int = 1) -> [UInt32] {
        var labels = [UInt32](), distances = [Float]()
        KMeans.assign(rows, count: count, dimension: header.dimension, centroids: centroids, k: header.nlist,
                      metric: header.metric, threads: threads, labels: &labels, distances: &distances)
        return Array(labels.prefix(count))
    }
}
