import CQuant
import Testing
import VecStoreKernels
@testable import VecStoreQuant

@Suite struct KMeansTests {
    /// `nearest` for few probes (the insertion path, `nearestFew`) returns what a `TopK` of the same scores
    /// returns: best first, ties to the lower centroid, NaN never kept. Integer-valued centroids make ties
    /// common; a NaN centroid gives a NaN score.
    @Test func nearestFewMatchesTopK() {
        var rng = SplitMix64(seed: 11)
        let d = 4
        for k in [1, 2, 5, 16, 17, 33, 40, 100] {
            for trial in 0..<12 {
                var centroids = (0..<(k * d)).map { _ in Float(rng.below(3)) }
                if trial % 3 == 1 { centroids[rng.below(k) * d] = .nan }
                let query = (0..<d).map { _ in Float(rng.below(3)) }
                for metric in [Metric.l2, .dot] {
                    // Up to nearestInsertionLimit (16) the stack-buffer path, above it the TopK path.
                    for probes in [1, 2, 3, 8, 15, 16, 17, 32] {
                        let got = query.withUnsafeBufferPointer { q in
                            centroids.withUnsafeBufferPointer { c in
                                KMeans.nearest(q.baseAddress!, centroids: c.baseAddress!, k: k, dimension: d, metric: metric,
                                               count: probes)
                            }
                        }
                        var top = TopK(k: min(probes, k))
                        for j in 0..<k {
                            var dot: Float = 0, l2: Float = 0
                            for t in 0..<d {
                                dot += query[t] * centroids[j * d + t]
                                l2 += (query[t] - centroids[j * d + t]) * (query[t] - centroids[j * d + t])
                            }
                            top.insert(metric == .l2 ? -l2 : dot, UInt32(j))
                        }
                        let want = top.sorted().map(\.id)
                        #expect(got == want, "k \(k) trial \(trial) \(metric) probes \(probes): \(got) vs \(want)")
                    }
                }
            }
        }
    }

    /// The dispatched nearest-candidate kernel (AVX-512 / AVX2) picks what the portable loop picks: the
    /// smallest norms − 2·dots (or largest dot), first index on ties, for every k around the vector widths.
    @Test func nearestKernelMatchesReference() {
        var rng = SplitMix64(seed: 5)
        for k in [1, 2, 7, 8, 9, 15, 16, 17, 31, 100, 256, 1000] {
            for trial in 0..<20 {
                // Few distinct values, so ties are common.
                let dots = (0..<k).map { _ in Float(rng.below(trial % 2 == 0 ? 5 : 1000)) * 0.25 }
                let norms = (0..<k).map { _ in Float(rng.below(7)) * 0.5 }
                for l2: Int32 in [0, 1] {
                    var a: Float = 0, b: Float = 0
                    let fast = vq_nearest(norms, dots, k, l2, &a)
                    let slow = vq_nearest_reference(norms, dots, k, l2, &b)
                    #expect(fast == slow && a == b, "k \(k) l2 \(l2): \(fast) (\(a)) vs \(slow) (\(b))")
                }
            }
        }
    }

    let dimension = 16

    @Test func sameSeedSameCentroidsAndNoEmptyCluster() throws {
        let data = clusteredData(count: 3000, dimension: dimension, clusters: 20, seed: 7)
        var calls: [Int] = []
        let options = KMeansOptions(iterations: 12, seed: 42, maxPointsPerCentroid: 64, threads: 2)
        let a = try data.withUnsafeBufferPointer { try KMeans.train($0.baseAddress!, count: 3000, dimension: dimension,
                                                                     k: 40, metric: .l2, options: options) { calls.append($0.iteration) } }
        let b = try data.withUnsafeBufferPointer { try KMeans.train($0.baseAddress!, count: 3000, dimension: dimension,
                                                                     k: 40, metric: .l2,
                                                                     options: KMeansOptions(iterations: 12, seed: 42, maxPointsPerCentroid: 64, threads: 1)) }
        #expect(a.centroids == b.centroids)  // deterministic, and independent of the thread count
        #expect(a.meanSquaredError == b.meanSquaredError)
        #expect(calls == Array(1...12))
        #expect(a.sampleCount == 40 * 64)
        #expect(a.history.count == 12)
        #expect(a.history.last! <= a.history.first!)
        let c = try data.withUnsafeBufferPointer { try KMeans.train($0.baseAddress!, count: 3000, dimension: dimension,
                                                                     k: 40, metric: .l2, options: KMeansOptions(iterations: 12, seed: 43, maxPointsPerCentroid: 64)) }
        #expect(c.centroids != a.centroids)
        // Every centroid owns at least one of the training rows' nearest-centroid assignments.
        var labels: [UInt32] = [], distances: [Float] = []
        data.withUnsafeBufferPointer {
            KMeans.assign($0.baseAddress!, count: 3000, dimension: dimension, centroids: a.centroids, k: 40, metric: .l2,
                          labels: &labels, distances: &distances)
        }
        #expect(Set(labels).count == 40)
        #expect(a.centroids.allSatisfy { $0.isFinite })
    }

    @Test func emptyClustersAreSplitFromTheLargest() throws {
        // 3 tight blobs and k = 8: the random initialisation puts several centroids in one blob and Lloyd
        // leaves some empty; the split must re-seed all of them.
        let data = clusteredData(count: 600, dimension: 4, clusters: 3, seed: 3, spread: 0.01)
        let r = try data.withUnsafeBufferPointer {
            try KMeans.train($0.baseAddress!, count: 600, dimension: 4, k: 8, metric: .l2,
                             options: KMeansOptions(iterations: 10, seed: 5))
        }
        var labels: [UInt32] = [], distances: [Float] = []
        data.withUnsafeBufferPointer {
            KMeans.assign($0.baseAddress!, count: 600, dimension: 4, centroids: r.centroids, k: 8, metric: .l2,
                          labels: &labels, distances: &distances)
        }
        #expect(Set(labels).count == 8)

        // The split itself: cluster 1 empty, cluster 0 holds everything; its farthest row moves to cluster 1.
        let sample: [Float] = [0, 0, 1, 1, 5, 5]
        var l: [UInt32] = [0, 0, 0], d: [Float] = [0.5, 0.1, 9]
        var sums: [Double] = [6, 6, 0, 0], counts = [3, 0]
        let splits = KMeans.splitEmpty(sample: sample, dimension: 2, k: 2, labels: &l, distances: &d, sums: &sums, counts: &counts)
        #expect(splits == 1)
        #expect(l == [0, 0, 1])
        #expect(counts == [2, 1])
        #expect(sums == [1, 1, 5, 5])
    }

    @Test func sphericalCentroidsAreUnitAndInnerProductAssigns() throws {
        var data = clusteredData(count: 1000, dimension: dimension, clusters: 10, seed: 11)
        KMeans.normalizeRows(&data, count: 1000, dimension: dimension)
        let r = try data.withUnsafeBufferPointer {
            try KMeans.train($0.baseAddress!, count: 1000, dimension: dimension, k: 10, metric: .cosine,
                             options: KMeansOptions(iterations: 8, seed: 1))
        }
        for j in 0..<10 {
            let norm = (0..<dimension).reduce(Float(0)) { $0 + r.centroids[j * dimension + $1] * r.centroids[j * dimension + $1] }
            #expect(abs(norm - 1) < 1e-4)
        }
        // nearest() agrees with a brute-force inner-product argmax.
        let q = Array(data[0..<dimension])
        let probes = q.withUnsafeBufferPointer { qb in
            r.centroids.withUnsafeBufferPointer { KMeans.nearest(qb.baseAddress!, centroids: $0.baseAddress!, k: 10,
                                                                 dimension: dimension, metric: .cosine, count: 3) }
        }
        let dots = (0..<10).map { j in (0..<dimension).reduce(Float(0)) { $0 + q[$1] * r.centroids[j * dimension + $1] } }
        #expect(Int(probes[0]) == dots.indices.max { dots[$0] < dots[$1] })
        #expect(probes.count == 3)
    }

    /// The update's sums: `vq_accumulate_rows` (vector variants) equals its portable reference bit for bit, at
    /// a dimension with a vector body and a scalar tail, and adds to what the arrays already hold.
    /// Every variant this CPU runs (through its table, whatever `VECSTORE_KERNEL` picked) and the dispatched
    /// entry give the reference's sums bit for bit: vector bodies with tails (d 37), all tail (d 5), exact
    /// multiples of both widths (d 16, 32).
    @Test(arguments: QuantKernelVariantTests.names) func accumulateRowsMatchesReference(isa: String) throws {
        let variant = try #require(vq_quant_variant(isa)).pointee
        for d in [5, 16, 32, 37] {
            let n = 300, k = 7
            let rows = uniformData(count: n * d, seed: UInt64(21 + d)).map { $0 * 1000 }
            let labels = (0..<n).map { UInt32(($0 * 5 + $0 / 3) % k) }
            let start = (0..<(k * d)).map { Double($0) * 0.125 }, startCounts = [Int64](repeating: 2, count: k)
            var sums = start, counts = startCounts, refSums = start, refCounts = startCounts
            var entrySums = start, entryCounts = startCounts
            variant.accumulate_rows(rows, n, d, labels, &sums, &counts)
            vq_accumulate_rows(rows, n, d, labels, &entrySums, &entryCounts)
            vq_accumulate_rows_reference(rows, n, d, labels, &refSums, &refCounts)
            #expect(sums == refSums && entrySums == refSums, "\(isa) d \(d)")
            #expect(counts == refCounts && entryCounts == refCounts, "\(isa) d \(d)")
            #expect(counts.reduce(0, +) == Int64(n + 2 * k))
            // Sums in row order, one component checked by hand.
            var expected = Double(3) * 0.125
            for i in 0..<n where labels[i] == 0 { expected += Double(rows[i * d + 3]) }
            #expect(sums[3] == expected, "\(isa) d \(d)")
        }
    }

    /// The update fused into the assignment (one worker: each tile added after its assignment) and the separate
    /// pass (several workers) give the same sums and counts bit for bit, and the same trained centroids over
    /// several tiles (1,024-row tiles at k = 600: 4,000 rows are 4 tiles), for L2 and cosine.
    @Test func fusedUpdateEqualsSeparatePass() throws {
        let n = 4000, d = 24, k = 600
        var data = clusteredData(count: n, dimension: d, clusters: 50, seed: 17)
        #expect(KMeans.tileRows(k: k) < n)
        let centroids = Array(data[0..<(k * d)])
        var results: [([Double], [Int], [UInt32])] = []
        for threads in [1, 2, 3] {
            var sums = [Double](repeating: 9, count: k * d), counts = [Int](repeating: 9, count: k)
            var labels = [UInt32](repeating: 0, count: n), distances = [Float](repeating: 0, count: n)
            data.withUnsafeBufferPointer { x in
                KMeans.assignRows(x.baseAddress!, count: n, dimension: d, centroids: centroids, k: k, metric: .l2,
                                  threads: threads, labels: &labels, distances: &distances, sums: &sums, counts: &counts)
            }
            results.append((sums, counts, labels))
        }
        var refSums = [Double](repeating: 0, count: k * d), refCounts = [Int64](repeating: 0, count: k)
        vq_accumulate_rows_reference(data, n, d, results[0].2, &refSums, &refCounts)
        #expect(results[0].0 == refSums)
        #expect(results[0].1 == refCounts.map { Int($0) })
        for r in results.dropFirst() {
            #expect(r.0 == results[0].0)
            #expect(r.1 == results[0].1)
            #expect(r.2 == results[0].2)
        }
        for metric in [Metric.l2, .cosine] {
            if metric == .cosine { KMeans.normalizeRows(&data, count: n, dimension: d) }
            let trained = try [1, 2, 3].map { threads in
                try data.withUnsafeBufferPointer {
                    try KMeans.train($0.baseAddress!, count: n, dimension: d, k: k, metric: metric,
                                     options: KMeansOptions(iterations: 4, seed: 9, threads: threads))
                }
            }
            #expect(trained[1].centroids == trained[0].centroids)
            #expect(trained[2].centroids == trained[0].centroids)
            #expect(trained[1].history == trained[0].history)
        }
    }

    @Test func rejectsBadParameters() {
        let data = uniformData(count: 40, seed: 1)
        data.withUnsafeBufferPointer { p in
            #expect(throws: QuantError.self) { try KMeans.train(p.baseAddress!, count: 10, dimension: 4, k: 11, metric: .l2) }
            #expect(throws: QuantError.self) { try KMeans.train(p.baseAddress!, count: 10, dimension: 4, k: 0, metric: .l2) }
        }
        var bad = data
        bad[5] = .nan
        bad.withUnsafeBufferPointer { p in
            #expect(throws: QuantError.self) { try KMeans.train(p.baseAddress!, count: 10, dimension: 4, k: 2, metric: .l2) }
        }
    }
}
