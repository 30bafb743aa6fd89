import LMDB
import VecStoreKernels
import VecStoreQuant

/// Progress of an IVF build, reported to the caller's callback (the CLI draws a bar from it).
public struct IVFBuildProgress: Sendable {
    /// What the build is doing.
    public enum Stage: Sendable, Equatable {
        /// Coarse k-means, after iteration `iteration` of `iterations`.
        case coarse(iteration: Int, iterations: Int)
        /// PQ codebook training, after sub-quantizer `done` of `total`.
        case codebooks(done: Int, total: Int)
        /// Assigning and encoding rows, `done` of `total` lists written.
        case lists(done: Int, total: Int)
    }
    /// The current stage.
    public var stage: Stage
    /// Fraction of the stage completed, 0…1.
    public var fraction: Double {
        switch stage {
        case .coarse(let i, let n): Double(i) / Double(max(n, 1))
        case .codebooks(let i, let n): Double(i) / Double(max(n, 1))
        case .lists(let i, let n): Double(i) / Double(max(n, 1))
        }
    }
}

/// What an IVF build did (for `index build` and tests).
public struct IVFBuildReport: Sendable {
    /// Lists trained.
    public var nlist: Int
    /// Rows the coarse k-means trained on.
    public var trainingRows: Int
    /// Live rows assigned to lists.
    public var rows: Int
    /// Coarse training error (mean squared distance to the nearest centroid).
    public var coarseError: Double
    /// PQ training error (mean squared residual reconstruction error; 0 for flat).
    public var codeError: Double
}

/// A collection's rows as a write transaction sees them: every row's float32 vector (stored form) and the
/// live bitmap.
struct IVFRows {
    let vectors: VectorTable
    let liveWords: [UInt64]
    /// Rows of the collection (`nextInternalID`).
    let count: UInt32

    @inline(__always)
    func isLive(_ row: UInt32) -> Bool {
        let w = Int(row >> 6)
        return w < liveWords.count && (liveWords[w] >> UInt64(row & 63)) & 1 == 1
    }

    /// The live rows, ascending.
    var live: [UInt32] { (0..<count).filter(isLive) }
}

/// Training and (re)building a collection's IVF index inside one write transaction (Spec/IVF.md §5).
enum IVFTraining {
    /// The seeded sample of `count` rows out of `rows` (partial Fisher–Yates with SplitMix64, Lemire's
    /// bounded integers), returned in ascending order.
    static func sample(_ rows: [UInt32], count: Int, seed: UInt64) -> [UInt32] {
        guard count < rows.count else { return rows }
        var rng = SplitMix64(seed: seed)
        var index = rows
        for i in 0..<count { index.swapAt(i, i + rng.below(index.count - i)) }
        return index[0..<count].sorted()
    }

    /// Trains a model on the live rows of `view`.
    ///
    /// - Throws: `invalidArgument` when the collection has fewer live rows than the parameters need.
    static func train(_ view: IVFRows, live: [UInt32], dimension d: Int, metric: Metric, parameters given: IVFParameters,
                      threads: Int, progress: ((IVFBuildProgress) -> Void)?) throws(VecStoreError) -> IVFModel {
        let p = given.resolved(dimension: d)
        try p.validate(dimension: d)
        let nlist = p.nlist ?? IVFParameters.defaultNlist(rows: live.count)
        let need = p.minimumRows(nlist: nlist)
        guard live.count >= need else {
            throw .invalidArgument("an IVF index with \(nlist) lists\(p.coding == .flat ? "" : " and \(p.coding)") needs at least \(need) live rows to train; the collection has \(live.count)")
        }
        let kind = p.coding.payloadKind(lists: p.lists)
        let kmeans = KMeansOptions(iterations: p.iterations, seed: p.seed, maxPointsPerCentroid: 256, threads: threads)
        let chosen = sample(live, count: min(live.count, nlist * kmeans.maxPointsPerCentroid), seed: p.seed)
        var data = [Float](repeating: 0, count: chosen.count * d)
        data.withUnsafeMutableBufferPointer { b in
            guard let base = b.baseAddress else { return }
            for (j, row) in chosen.enumerated() { (base + j * d).update(from: view.vectors.vector(row), count: d) }
        }
        do throws(QuantError) {
            let coarse = try data.withUnsafeBufferPointer { (b) throws(QuantError) -> KMeansResult in
                guard let base = b.baseAddress else { throw .invalidParameter("no training rows") }
                return try KMeans.train(base, count: chosen.count, dimension: d, k: nlist, metric: metric, options: kmeans) {
                    progress?(IVFBuildProgress(stage: .coarse(iteration: $0.iteration, iterations: $0.iterations)))
                }
            }
            var quantizer: ProductQuantizer?
            var codeError = 0.0
            if case .pq(let m, let bits) = p.coding {
                var pq = try ProductQuantizer(dimension: d, subquantizers: m, bits: bits)
                // Codebooks train on the residuals of a seeded sub-sample (256 rows per codebook centroid).
                let want = min(chosen.count, pq.centroidsPerSubquantizer * 256)
                let picked = sample((0..<UInt32(chosen.count)).map { $0 }, count: want, seed: p.seed ^ 0x5eed)
                var residuals = [Float](repeating: 0, count: want * d)
                data.withUnsafeBufferPointer { s in
                    residuals.withUnsafeMutableBufferPointer { r in
                        guard let sb = s.baseAddress, let rb = r.baseAddress else { return }
                        for (j, i) in picked.enumerated() { (rb + j * d).update(from: sb + Int(i) * d, count: d) }
                    }
                }
                // Residual codes: the sample's residuals against their nearest centroid; raw codes: the rows.
                if p.pqResidual {
                    // The nearest centroids straight from KMeans (what `IVFModel.assign` wraps): no model, so no
                    // centroid norms computed for a search that never runs.
                    var assigned = [UInt32](), distances = [Float]()
                    residuals.withUnsafeBufferPointer { r in
                        guard let rb = r.baseAddress else { return }
                        KMeans.assign(rb, count: want, dimension: d, centroids: coarse.centroids, k: nlist,
                                      metric: metric, threads: threads, labels: &assigned, distances: &distances)
                    }
                    coarse.centroids.withUnsafeBufferPointer { c in
                        residuals.withUnsafeMutableBufferPointer { r in
                            guard let cb = c.baseAddress, let rb = r.baseAddress else { return }
                            for j in 0..<want {
                                let centroid = cb + Int(assigned[j]) * d
                                for t in 0..<d { rb[j * d + t] -= centroid[t] }
                            }
                        }
                    }
                }
                let pqOptions = KMeansOptions(iterations: 25, seed: p.seed, maxPointsPerCentroid: 256, threads: threads)
                codeError = try residuals.withUnsafeBufferPointer { (r) throws(QuantError) -> Double in
                    guard let rb = r.baseAddress else { throw .invalidParameter("no PQ training rows") }
                    return try pq.train(rb, count: want, options: pqOptions) { j, it in
                        if it.iteration == it.iterations {
                            progress?(IVFBuildProgress(stage: .codebooks(done: j + 1, total: m)))
                        }
                    }
                }
                quantizer = pq
            }
            let nprobe = min(nlist, p.nprobe ?? max(1, nlist / 16), 65535)
            let header = IVFHeader(kind: kind, metric: metric, nlist: nlist, dimension: d,
                                   subquantizers: quantizer?.subquantizers ?? 0, bits: quantizer?.bits ?? 0,
                                   blockCapacity: IVFFormat.blockCapacity(kind), defaultNprobe: nprobe,
                                   defaultRefine: kind.isFlat ? 0 : (p.refine ?? 4), seed: p.seed,
                                   coarseError: coarse.meanSquaredError, codeError: codeError,
                                   trainingRows: coarse.sampleCount, iterations: p.iterations,
                                   defaults: defaults(given), residual: quantizer != nil && p.pqResidual)
            _ = try header.encode()
            return IVFModel(header: header, centroids: coarse.centroids, quantizer: quantizer)
        } catch {
            throw .invalidArgument("IVF training: \(error)")
        }
    }

    /// Which of `p`'s fields the trainer chose (recorded so the index reports its parameters as asked for).
    static func defaults(_ p: IVFParameters) -> IVFHeader.Defaults {
        var d: IVFHeader.Defaults = []
        if p.nlist == nil { d.insert(.nlist) }
        if case .pq(0, _) = p.coding { d.insert(.subquantizers) }
        if p.nprobe == nil { d.insert(.nprobe) }
        if p.refine == nil { d.insert(.refine) }
        return d
    }

    /// Writes `model` for collection `cid` and fills its lists with every live row of `rows`, replacing any
    /// list or record the collection's IVF index had (the caller removed any other index).
    static func write(_ txn: Transaction, _ dbs: Databases, cid: UInt32, _ rows: IVFRows, model: IVFModel,
                      name: String, threads: Int, progress: ((IVFBuildProgress) -> Void)?) throws {
        try IVFModel.drop(txn, dbs, cid)
        try model.store(txn, dbs, cid)
        let d = model.header.dimension
        // Assign block by block (each vector block is contiguous), keeping live rows only.
        var members = [[UInt32]](repeating: [], count: model.header.nlist)
        let perBlock = Int(rows.vectors.mask) + 1
        for block in 0..<rows.vectors.blockCount {
            let first = block * perBlock
            let n = min(perBlock, Int(rows.count) - first)
            guard n > 0 else { break }
            let labels = model.assign(rows.vectors.bases[block], count: n, threads: threads)
            for (i, l) in labels.enumerated() {
                let row = UInt32(first + i)
                if rows.isLive(row) { members[Int(l)].append(row) }
            }
        }
        var writer = try IVFListWriter(txn, dbs, model: model, cid: cid, name: name)
        var gathered: [Float] = []
        for list in 0..<model.header.nlist where !members[list].isEmpty {
            let listRows = members[list]
            gathered.removeAll(keepingCapacity: true)
            gathered.reserveCapacity(listRows.count * d)
            for row in listRows { gathered.append(contentsOf: UnsafeBufferPointer(start: rows.vectors.vector(row), count: d)) }
            try writer.append(list: list, rows: listRows, codes: writer.encode(gathered, count: listRows.count, list: list))
            if list % 16 == 15 || list == model.header.nlist - 1 {
                progress?(IVFBuildProgress(stage: .lists(done: list + 1, total: model.header.nlist)))
            }
        }
    }
}
