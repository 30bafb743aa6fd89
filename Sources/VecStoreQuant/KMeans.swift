import CDistance
import CQuant
import Dispatch
import VecStoreKernels

/// Settings of one k-means training run.
public struct KMeansOptions: Sendable, Equatable {
    /// Lloyd iterations (assignment + update). FAISS's default is 25 for `faiss.Kmeans`, 10 inside IVF.
    public var iterations: Int
    /// Seed of the sample and of the initial centroids; the same seed, data and options give the same result.
    public var seed: UInt64
    /// Training uses at most `k * maxPointsPerCentroid` rows, a seeded random sample (FAISS caps at 256).
    public var maxPointsPerCentroid: Int
    /// Worker threads for the assignment step (the update step is sequential; results do not depend on it).
    public var threads: Int

    /// Options with FAISS's defaults: 25 iterations, 256 points per centroid, seed 1234, one thread.
    public init(iterations: Int = 25, seed: UInt64 = 1234, maxPointsPerCentroid: Int = 256, threads: Int = 1) {
        self.iterations = iterations
        self.seed = seed
        self.maxPointsPerCentroid = maxPointsPerCentroid
        self.threads = threads
    }
}

/// State reported to a progress callback after every iteration (the CLI draws a bar from it).
public struct KMeansProgress: Sendable {
    /// Iterations completed so far (1-based).
    public var iteration: Int
    /// Iterations the run will make.
    public var iterations: Int
    /// Mean squared Euclidean distance of the training rows to their assigned centroid at this iteration.
    public var meanSquaredError: Double
    /// Empty clusters re-seeded in this iteration.
    public var splits: Int
}

/// A trained clustering.
public struct KMeansResult: Sendable {
    /// `k * dimension` centroid components, row-major.
    public var centroids: [Float]
    /// Number of centroids.
    public var k: Int
    /// Components per centroid.
    public var dimension: Int
    /// Assignment rule the centroids were trained for (cosine means spherical k-means: unit centroids).
    public var metric: Metric
    /// Mean squared Euclidean distance of the training rows to their nearest centroid at the last iteration
    /// (the training error; times `sampleCount` it is the inertia).
    public var meanSquaredError: Double
    /// Training rows used (after sampling).
    public var sampleCount: Int
    /// Empty clusters re-seeded over the whole run.
    public var splits: Int
    /// `meanSquaredError` of every iteration, first to last.
    public var history: [Double]
}

/// Seeded, deterministic Lloyd k-means over row-major float data.
///
/// * **Sampling**: at most `k · maxPointsPerCentroid` rows, drawn without replacement by a seeded partial
///   Fisher–Yates shuffle and kept in their original order.
/// * **Initialisation**: `k` distinct sample rows, the first `k` of a seeded permutation.
/// * **Assignment**: tiles of rows against all centroids with one matrix product per tile
///   (`MatrixProduct.dotTile` with `MatrixProduct.computeKernel`: sgemm or the project's tiled kernel); L2
///   ranks by `|c|² − 2x·c`, inner product and cosine by `x·c`. Tiles do not depend on the thread count, and
///   neither do the results.
/// * **Update**: each centroid becomes the mean of its rows (float64 sums in row order, added tile by tile
///   right after a tile's assignment on one thread, in a pass of their own on several: the same sums); for
///   cosine (spherical k-means) it is then scaled to unit length.
/// * **Empty clusters** are split off the largest cluster: its row farthest from its centroid becomes the
///   empty cluster's centroid (and leaves the donor), so the new cluster starts with that row and keeps it.
///   Clusters stay empty only when the largest cluster has one row, i.e. there are fewer distinct rows
///   than `k`.
public enum KMeans {
    /// Rows per assignment tile (bounded so the score tile stays near 4 MB for large `k`).
    static func tileRows(k: Int) -> Int { max(16, min(1024, (1 << 20) / max(k, 1))) }

    /// Trains `k` centroids on `count` rows of `dimension` floats at `data`.
    ///
    /// - Throws: `QuantError.invalidParameter` when `k` < 1, `count` < `k`, `dimension` < 1 or the
    ///   options are out of range, or when the data contain a non-finite value.
    public static func train(_ data: UnsafePointer<Float>, count: Int, dimension: Int, k: Int, metric: Metric,
                             options: KMeansOptions = KMeansOptions(),
                             progress: ((KMeansProgress) -> Void)? = nil) throws(QuantError) -> KMeansResult {
        guard k >= 1 else { throw .invalidParameter("k-means needs k ≥ 1 (got \(k))") }
        guard dimension >= 1 else { throw .invalidParameter("k-means needs dimension ≥ 1 (got \(dimension))") }
        guard count >= k else { throw .invalidParameter("k-means with k = \(k) needs at least \(k) rows (got \(count))") }
        guard options.iterations >= 1 else { throw .invalidParameter("k-means needs ≥ 1 iteration") }
        guard options.maxPointsPerCentroid >= 1 else { throw .invalidParameter("maxPointsPerCentroid must be ≥ 1") }
        for i in 0..<(count * dimension) where !data[i].isFinite {
            throw .invalidParameter("training row \(i / dimension) component \(i % dimension) is not finite")
        }

        var rng = SplitMix64(seed: options.seed)
        // Sample.
        let cap = k.multipliedReportingOverflow(by: options.maxPointsPerCentroid)
        let n = cap.overflow ? count : min(count, cap.partialValue)
        var sample = [Float](repeating: 0, count: n * dimension)
        if n == count {
            sample.withUnsafeMutableBufferPointer { s in s.baseAddress?.update(from: data, count: n * dimension) }
        } else {
            var index = Array(0..<count)
            for i in 0..<n { index.swapAt(i, i + rng.below(count - i)) }
            let chosen = index[0..<n].sorted()
            sample.withUnsafeMutableBufferPointer { s in
                guard let base = s.baseAddress else { return }
                for (j, row) in chosen.enumerated() {
                    (base + j * dimension).update(from: data + row * dimension, count: dimension)
                }
            }
        }
        // Initial centroids: the first k rows of a seeded permutation of the sample.
        var order = Array(0..<n)
        for i in 0..<k { order.swapAt(i, i + rng.below(n - i)) }
        var centroids = [Float](repeating: 0, count: k * dimension)
        sample.withUnsafeBufferPointer { s in
            centroids.withUnsafeMutableBufferPointer { c in
                guard let sb = s.baseAddress, let cb = c.baseAddress else { return }
                for j in 0..<k { (cb + j * dimension).update(from: sb + order[j] * dimension, count: dimension) }
            }
        }
        if metric == .cosine { normalizeRows(&centroids, count: k, dimension: dimension) }

        var labels = [UInt32](repeating: 0, count: n)
        var distances = [Float](repeating: 0, count: n)
        var sums = [Double](repeating: 0, count: k * dimension)
        var counts = [Int](repeating: 0, count: k)
        var history: [Double] = []
        var totalSplits = 0
        var inertia = 0.0
        for iteration in 0..<options.iterations {
            // Assignment, and the update's float64 sums and counts per cluster.
            sample.withUnsafeBufferPointer { s in
                centroids.withUnsafeBufferPointer { c in
                    labels.withUnsafeMutableBufferPointer { l in
                        distances.withUnsafeMutableBufferPointer { dd in
                            sums.withUnsafeMutableBufferPointer { sm in
                                counts.withUnsafeMutableBufferPointer { cn in
                                    guard let sb = s.baseAddress, let cb = c.baseAddress, let lb = l.baseAddress,
                                          let db = dd.baseAddress, let smb = sm.baseAddress,
                                          let cnb = cn.baseAddress else { return }
                                    assignRows(sb, count: n, dimension: dimension, centroids: cb, k: k,
                                               metric: metric, threads: options.threads, labels: lb, distances: db,
                                               sums: smb, counts: cnb)
                                }
                            }
                        }
                    }
                }
            }
            inertia = distances.reduce(0.0) { $0 + Double($1) }
            let splits = splitEmpty(sample: sample, dimension: dimension, k: k, labels: &labels,
                                    distances: &distances, sums: &sums, counts: &counts)
            totalSplits += splits
            sums.withUnsafeBufferPointer { sm in
                centroids.withUnsafeMutableBufferPointer { cm in
                    guard let sp = sm.baseAddress, let cp = cm.baseAddress else { return }
                    for j in 0..<k where counts[j] > 0 {
                        let inv = 1.0 / Double(counts[j])
                        for t in 0..<dimension { cp[j * dimension + t] = Float(sp[j * dimension + t] * inv) }
                    }
                }
            }
            if metric == .cosine { normalizeRows(&centroids, count: k, dimension: dimension) }
            let mse = inertia / Double(n)
            history.append(mse)
            progress?(KMeansProgress(iteration: iteration + 1, iterations: options.iterations,
                                     meanSquaredError: mse, splits: splits))
        }
        return KMeansResult(centroids: centroids, k: k, dimension: dimension, metric: metric,
                            meanSquaredError: inertia / Double(n), sampleCount: n,
                            splits: totalSplits, history: history)
    }

    /// Adds each of `count` rows to the float64 sum of its cluster `labels[i]` (< `k`) in `sums` (k × dimension)
    /// and counts it in `counts` (k; neither is zeroed; `vq_accumulate_rows`, sums in row order).
    static func accumulate(_ rows: UnsafePointer<Float>, count n: Int, dimension: Int, labels: UnsafePointer<UInt32>,
                           k: Int, sums: UnsafeMutablePointer<Double>, counts: UnsafeMutablePointer<Int>) {
        guard n > 0 else { return }
        // Int is 64 bits on every platform vecstore builds for (the C side counts in int64_t).
        counts.withMemoryRebound(to: Int64.self, capacity: k) { c in
            vq_accumulate_rows(rows, n, dimension, labels, sums, c)
        }
    }

    /// Re-seeds every empty cluster from the largest one (see the type's documentation). Returns the
    /// number of clusters re-seeded.
    static func splitEmpty(sample: [Float], dimension: Int, k: Int, labels: inout [UInt32], distances: inout [Float],
                           sums: inout [Double], counts: inout [Int]) -> Int {
        var splits = 0
        for j in 0..<k where counts[j] == 0 {
            var donor = 0
            for c in 1..<k where counts[c] > counts[donor] { donor = c }
            guard counts[donor] > 1 else { break }
            var far = -1
            var farDistance: Float = -1
            for i in 0..<labels.count where Int(labels[i]) == donor && distances[i] > farDistance {
                far = i
                farDistance = distances[i]
            }
            guard far >= 0 else { break }
            for t in 0..<dimension {
                let v = Double(sample[far * dimension + t])
                sums[donor * dimension + t] -= v
                sums[j * dimension + t] = v
            }
            counts[donor] -= 1
            counts[j] = 1
            labels[far] = UInt32(j)
            distances[far] = 0
            splits += 1
        }
        return splits
    }

    /// Scales each row to unit length (zero rows are left as they are).
    static func normalizeRows(_ rows: inout [Float], count: Int, dimension: Int) {
        rows.withUnsafeMutableBufferPointer { r in
            guard let base = r.baseAddress else { return }
            for i in 0..<count {
                let row = base + i * dimension
                let norm = vs_dot(row, row, dimension).squareRoot()
                if norm > 0 { for t in 0..<dimension { row[t] /= norm } }
            }
        }
    }

    /// Nearest centroid of each of `count` rows: `labels[i]` is the centroid index and `distances[i]` the
    /// squared Euclidean distance to it. L2 picks the smallest distance, inner product and cosine the
    /// largest inner product; ties go to the lower index. Tiles of rows are split over `threads` workers.
    public static func assign(_ data: UnsafePointer<Float>, count: Int, dimension: Int, centroids: [Float], k: Int,
                              metric: Metric, threads: Int = 1, labels: inout [UInt32], distances: inout [Float]) {
        guard count > 0, k > 0 else { return }
        if labels.count < count { labels = [UInt32](repeating: 0, count: count) }
        if distances.count < count { distances = [Float](repeating: 0, count: count) }
        labels.withUnsafeMutableBufferPointer { l in
            distances.withUnsafeMutableBufferPointer { d in
                centroids.withUnsafeBufferPointer { c in
                    guard let lb = l.baseAddress, let db = d.baseAddress, let cb = c.baseAddress else { return }
                    assignRows(data, count: count, dimension: dimension, centroids: cb, k: k, metric: metric,
                               threads: threads, labels: lb, distances: db)
                }
            }
        }
    }

    /// `assign` over raw memory (`labels` and `distances` hold at least `count` values). With `sums`
    /// (k × dimension) and `counts` (k), both are zeroed and then hold each cluster's float64 sum of its rows
    /// and its row count (k-means' update step): on one worker each tile is added right after its
    /// assignment, while its rows are still in cache; on several, all rows are added after the assignment, in
    /// row order as well, so the sums are the same bit for bit.
    static func assignRows(_ data: UnsafePointer<Float>, count: Int, dimension: Int, centroids: UnsafePointer<Float>,
                           k: Int, metric: Metric, threads: Int, labels: UnsafeMutablePointer<UInt32>,
                           distances: UnsafeMutablePointer<Float>, sums: UnsafeMutablePointer<Double>? = nil,
                           counts: UnsafeMutablePointer<Int>? = nil) {
        let norms = UnsafeMutablePointer<Float>.allocate(capacity: k)
        defer { norms.deallocate() }
        for j in 0..<k { norms[j] = vs_dot(centroids + j * dimension, centroids + j * dimension, dimension) }
        let shared = AssignShared(data: data, labels: labels, distances: distances, centroids: centroids, norms: norms)
        let tile = tileRows(k: k)
        let tiles = (count + tile - 1) / tile
        let workers = max(1, min(threads, tiles))
        let update: (UnsafeMutablePointer<Double>, UnsafeMutablePointer<Int>)?
        if let sums, let counts { update = (sums, counts) } else { update = nil }
        if let (s, c) = update {
            s.update(repeating: 0, count: k * dimension)
            c.update(repeating: 0, count: k)
        }
        if workers == 1 {
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: tile * k)
            defer { scores.deallocate() }
            for t in 0..<tiles {
                let start = t * tile, rows = min(tile, count - start)
                assignTile(shared, start: start, rows: rows, dimension: dimension, k: k, metric: metric, scores: scores)
                if let (s, c) = update {
                    accumulate(data + start * dimension, count: rows, dimension: dimension, labels: labels + start,
                               k: k, sums: s, counts: c)
                }
            }
            return
        }
        let work: @Sendable (Int) -> Void = { w in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: tile * k)
            defer { scores.deallocate() }
            var t = w
            while t < tiles {
                let start = t * tile, rows = min(tile, count - start)
                assignTile(shared, start: start, rows: rows, dimension: dimension, k: k, metric: metric, scores: scores)
                t += workers
            }
        }
        DispatchQueue.concurrentPerform(iterations: workers, execute: work)
        if let (s, c) = update { accumulate(data, count: count, dimension: dimension, labels: labels, k: k, sums: s, counts: c) }
    }

    /// Pointers shared by the assignment workers; each worker writes disjoint rows of `labels`/`distances`.
    struct AssignShared: @unchecked Sendable {
        let data: UnsafePointer<Float>
        let labels: UnsafeMutablePointer<UInt32>
        let distances: UnsafeMutablePointer<Float>
        let centroids: UnsafePointer<Float>
        let norms: UnsafePointer<Float>
    }

    static func assignTile(_ s: AssignShared, start: Int, rows: Int, dimension: Int, k: Int, metric: Metric,
                           scores: UnsafeMutablePointer<Float>) {
        let x = s.data + start * dimension
        MatrixProduct.dotTile(x, aRows: rows, s.centroids, bRows: k, dimension: dimension, into: scores, ldo: k,
                              kernel: MatrixProduct.computeKernel)
        let l2: Int32 = metric == .l2 ? 1 : 0
        var value: Float = 0
        for i in 0..<rows {
            let line = scores + i * k
            // Smallest |c|² − 2x·c (L2) or largest x·c, first on ties: one vectorised C pass per row.
            let best = Int(vq_nearest(s.norms, line, k, l2, &value))
            let row = x + i * dimension
            let xn = vs_dot(row, row, dimension)
            s.labels[start + i] = UInt32(best)
            s.distances[start + i] = max(0, xn + s.norms[best] - 2 * line[best])
        }
    }

    /// The `nprobe` centroids nearest a query, nearest first (L2: smallest distance; inner product and
    /// cosine: largest inner product), ties to the lower index.
    public static func nearest(_ query: UnsafePointer<Float>, centroids: UnsafePointer<Float>, k: Int, dimension: Int,
                               metric: Metric, count nprobe: Int) -> [UInt32] {
        let probes = min(max(nprobe, 0), k)
        guard probes > 0 else { return [] }
        if probes <= nearestInsertionLimit {
            return nearestFew(query, centroids: centroids, k: k, dimension: dimension, metric: metric, count: probes)
        }
        var top = TopK(k: probes)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: k) { buf in
            guard let out = buf.baseAddress else { return }
            if metric == .l2 { vs_l2_many(query, centroids, k, dimension, out) } else {
                vs_dot_many(query, centroids, k, dimension, out)
            }
            for j in 0..<k {
                let s = metric == .l2 ? -out[j] : out[j]
                if s >= top.threshold { top.insert(s, UInt32(j)) }
            }
        }
        return top.sorted().map(\.id)
    }

    /// `nearest` keeps at most this many probes in a sorted stack buffer instead of a `TopK`.
    static let nearestInsertionLimit = 16

    /// `nearest` for a few probes (1 … `nearestInsertionLimit`, ≤ `k`), the small-nprobe search's coarse step:
    /// the same scores, kept best first in a stack buffer by insertion (ties to the lower index, NaN never
    /// kept), so the result is `TopK`'s selection and order; besides the returned array it allocates only when
    /// `(nlist + probes)` floats outgrow the stack room of `withUnsafeTemporaryAllocation` (the `TopK`, its sorted copy and the mapped array were ~3,000 instructions of a siftsmall IVF-Flat
    /// nprobe-1 query, under callgrind).
    static func nearestFew(_ query: UnsafePointer<Float>, centroids: UnsafePointer<Float>, k: Int, dimension: Int,
                           metric: Metric, count probes: Int) -> [UInt32] {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: k + probes) { buf -> [UInt32] in
          withUnsafeTemporaryAllocation(of: UInt32.self, capacity: probes) { idBuf -> [UInt32] in
            guard let out = buf.baseAddress, let ids = idBuf.baseAddress else { return [] }
            if metric == .l2 { vs_l2_many(query, centroids, k, dimension, out) } else {
                vs_dot_many(query, centroids, k, dimension, out)
            }
            // Kept scores (larger is closer) and their indices, best first; `held` of them.
            let kept = out + k
            var held = 0
            let l2 = metric == .l2
            for j in 0..<k {
                let s = l2 ? -out[j] : out[j]
                // Enters when the buffer has room or it beats the worst kept (a later index never wins a tie);
                // NaN never enters.
                if held == probes {
                    guard s > kept[probes - 1] else { continue }
                } else if s.isNaN {
                    continue
                }
                var at = held == probes ? probes - 1 : held
                // Later indices go after every equal score: move up only past strictly worse ones.
                while at > 0 && s > kept[at - 1] {
                    kept[at] = kept[at - 1]
                    ids[at] = ids[at - 1]
                    at -= 1
                }
                kept[at] = s
                ids[at] = UInt32(j)
                if held < probes { held += 1 }
            }
            return Array(UnsafeBufferPointer(start: ids, count: held))
          }
        }
    }
}
