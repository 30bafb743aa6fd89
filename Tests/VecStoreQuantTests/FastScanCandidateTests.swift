import Testing
import VecStoreKernels
@testable import VecStoreQuant

/// The fast-scan re-ranking candidates (`refine × k` by 8-bit quantized tables) are the float-ADC candidates up
/// to the tables' rounding: no row whose float ADC score is clearly inside the cut is lost to table
/// quantization, saturation, ties or the scan's integer limits, and no row clearly outside it is taken. With
/// residual codes and inner product (one quantized table for every probed list, each list adding its own
/// q·c) and with raw-vector L2 codes.
@Suite struct FastScanCandidateTests {
    @Test(arguments: [(Metric.dot, true), (.l2, false)])
    func candidatesAreFloatADCCandidates(metric: Metric, residual: Bool) throws {
        let n = 2000, d = 32, nlist = 8, m = 16
        let data = clusteredData(count: n, dimension: d, clusters: 25, seed: 41, spread: 0.25)
        let index = try data.withUnsafeBufferPointer { b in
            try IVFIndex.build(b.baseAddress!, count: n, dimension: d, metric: metric,
                               options: IVFBuildOptions(nlist: nlist, kind: .pq4FastScan, subquantizers: m,
                                                        blockCapacity: 128, kmeans: KMeansOptions(iterations: 5, seed: 5),
                                                        pqKMeans: KMeansOptions(iterations: 8, seed: 6), residual: residual))
        }
        let pq = try #require(index.quantizer)
        // Decoded vectors x̂ (residual codes: centroid + decoded residual) and each row's list.
        var decoded = [Float](repeating: 0, count: n * d)
        var listOf = [Int](repeating: -1, count: n)
        for list in 0..<nlist {
            for b in 0..<index.blockCount(list: list) {
                let value = index.blockValue(list: list, block: b)
                try value.withUnsafeBytes { raw in
                    let view = try IVFListBlock.view(raw, kind: .pq4FastScan, list: list)
                    var codes = [UInt8](repeating: 0, count: view.count * pq.codeSize)
                    FastScan.unpack(view.payload.baseAddress!.assumingMemoryBound(to: UInt8.self), count: view.count,
                                    subquantizers: m, into: &codes)
                    for r in 0..<view.count {
                        let row = Int(view.rowID(r))
                        listOf[row] = list
                        codes.withUnsafeBufferPointer { c in
                            decoded.withUnsafeMutableBufferPointer {
                                pq.decode(c.baseAddress! + r * pq.codeSize, count: 1, into: $0.baseAddress! + row * d)
                            }
                        }
                        if residual { for t in 0..<d { decoded[row * d + t] += index.centroids[list * d + t] } }
                    }
                }
            }
        }
        #expect(!listOf.contains(-1))
        let queries = uniformData(count: 12 * d, seed: 99)
        let cut = 40  // k = 10, refine = 4
        for q in 0..<12 {
            let query = Array(queries[(q * d)..<(q * d + d)])
            for nprobe in [1, 3, 8] {
                // The candidates: with refine 1 and k = cut, the search returns its whole candidate set.
                let got = try query.withUnsafeBufferPointer { qb in
                    try data.withUnsafeBufferPointer { xb in
                        try index.search(qb.baseAddress!, k: cut, options: IVFSearchOptions(nprobe: nprobe, refine: 1),
                                         vectors: xb.baseAddress!)
                    }
                }
                let candidates = Set(got.map { Int($0.id) })
                let probes = Set(query.withUnsafeBufferPointer { qb in
                    index.centroids.withUnsafeBufferPointer {
                        KMeans.nearest(qb.baseAddress!, centroids: $0.baseAddress!, k: nlist, dimension: d, metric: metric,
                                       count: nprobe).map(Int.init)
                    }
                })
                // Float ADC scores (larger is closer) of every row of the probed lists.
                var scored: [(row: Int, score: Float)] = []
                for row in 0..<n where probes.contains(listOf[row]) {
                    var s: Float = 0
                    for t in 0..<d {
                        let x = decoded[row * d + t]
                        s += metric == .l2 ? -(query[t] - x) * (query[t] - x) : query[t] * x
                    }
                    scored.append((row, s))
                }
                scored.sort { $0.score > $1.score }
                guard scored.count > cut else {
                    #expect(candidates == Set(scored.map(\.row)))
                    continue
                }
                // Every approximate score is within `errorBound` of its float ADC score, so rows more than twice
                // the bound inside (outside) the cut's score must (must not) be candidates.
                let bound = try query.withUnsafeBufferPointer { qb in
                    try #require(IVFProbeScorer(query: qb.baseAddress!, header: index.header, quantizer: pq,
                                                precomputed: []).quantized).errorBound
                }
                let edge = scored[cut - 1].score, slack = 2 * bound * 1.001 + 1e-4 * max(1, abs(edge))
                #expect(candidates.count == cut)
                for (row, s) in scored {
                    if s > edge + slack { #expect(candidates.contains(row), "q \(q) nprobe \(nprobe): row \(row) lost") }
                    if s < edge - slack { #expect(!candidates.contains(row), "q \(q) nprobe \(nprobe): row \(row) taken") }
                }
            }
        }
    }
}
