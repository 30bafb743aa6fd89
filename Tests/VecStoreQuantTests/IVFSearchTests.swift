import Testing
import VecStoreKernels
@testable import VecStoreQuant

/// siftsmall (10,000 × 128, L2), its 100 queries and exact ground truth, with indexes built once per process.
final class SiftFixture: Sendable {
    let base: [Float]
    let queries: [Float]
    let truth: [Int32]
    let dimension: Int
    let nlist = 64
    let flat: IVFIndex
    let fastScan: IVFIndex
    /// Fast scan over codes of the raw vectors (one table per query).
    let fastScanRaw: IVFIndex
    let pq8: IVFIndex

    init() throws {
        let dir = quantDataDirectory + "/siftsmall/"
        (base, dimension) = try readVecsFlat(dir + "siftsmall_base.fvecs", as: Float.self)
        queries = try readVecsFlat(dir + "siftsmall_query.fvecs", as: Float.self).values
        truth = try readVecsFlat(dir + "siftsmall_groundtruth.ivecs", as: Int32.self).values
        let n = base.count / dimension
        let coarse = KMeansOptions(iterations: 10, seed: 7)
        let pqOptions = KMeansOptions(iterations: 10, seed: 8)
        (flat, fastScan, pq8) = try base.withUnsafeBufferPointer { b in
            let p = b.baseAddress!
            return (try IVFIndex.build(p, count: n, dimension: 128, metric: .l2,
                                       options: IVFBuildOptions(nlist: 64, kind: .flat, blockCapacity: 256, kmeans: coarse)),
                    try IVFIndex.build(p, count: n, dimension: 128, metric: .l2,
                                       options: IVFBuildOptions(nlist: 64, kind: .pq4FastScan, subquantizers: 32,
                                                                kmeans: coarse, pqKMeans: pqOptions)),
                    try IVFIndex.build(p, count: n, dimension: 128, metric: .l2,
                                       options: IVFBuildOptions(nlist: 64, kind: .pq8, subquantizers: 16,
                                                                kmeans: coarse, pqKMeans: pqOptions)))
        }
        fastScanRaw = try base.withUnsafeBufferPointer { b in
            try IVFIndex.build(b.baseAddress!, count: n, dimension: 128, metric: .l2,
                               options: IVFBuildOptions(nlist: 64, kind: .pq4FastScan, subquantizers: 32,
                                                        kmeans: coarse, pqKMeans: pqOptions, residual: false))
        }
    }

    /// Mean recall@10 against the ground truth over all queries.
    func recall(_ index: IVFIndex, nprobe: Int, refine: Int = 0) throws -> Double {
        var hits = 0
        for q in 0..<100 {
            let result = try queries.withUnsafeBufferPointer { qb in
                try base.withUnsafeBufferPointer { bb in
                    try index.search(qb.baseAddress! + q * dimension, k: 10, options: IVFSearchOptions(nprobe: nprobe, refine: refine),
                                     vectors: bb.baseAddress!)
                }
            }
            let want = Set(truth[(q * 100)..<(q * 100 + 10)].map(Int.init))
            hits += result.filter { want.contains(Int($0.id)) }.count
        }
        return Double(hits) / 1000
    }
}

let siftFixture: SiftFixture? = siftsmallPresent ? try? SiftFixture() : nil

@Suite(.enabled(if: siftsmallPresent, "needs ../shared/data/siftsmall"))
struct IVFSearchTests {
    @Test func fixtureBuilt() throws {
        let f = try #require(siftFixture)
        #expect(f.flat.listSizes.reduce(0, +) == 10_000)
        #expect(f.fastScan.listSizes.reduce(0, +) == 10_000)
        #expect(f.flat.listSizes.allSatisfy { $0 > 0 })
        #expect(f.fastScan.codeSize == 16 && f.pq8.codeSize == 16)
        #expect(f.flat.header.coarseError > 0 && f.fastScan.header.codeError > 0)
        #expect(f.fastScan.header.codeError < f.fastScan.header.coarseError)
        // Every stored block passes the deep checks, and every row is in exactly one list.
        var seen = Set<UInt32>()
        for index in [f.flat, f.fastScan, f.pq8] {
            seen.removeAll()
            for list in 0..<index.header.nlist {
                for b in 0..<index.blockCount(list: list) {
                    let value = index.blockValue(list: list, block: b)
                    try value.withUnsafeBytes { raw in
                        let view = try IVFListBlock.view(raw, kind: index.header.kind, list: list)
                        try view.validate(rowLimit: 10_000)
                        for id in view.rowIDs { #expect(seen.insert(id).inserted) }
                    }
                }
            }
            #expect(seen.count == 10_000)
        }
    }

    /// With every list probed, IVF-Flat is exact search: the same ids, in the same order, as brute force.
    @Test func flatAtFullProbeEqualsExactSearch() throws {
        let f = try #require(siftFixture)
        for q in 0..<100 {
            let got = try f.queries.withUnsafeBufferPointer { qb in
                try f.flat.search(qb.baseAddress! + q * 128, k: 10, options: IVFSearchOptions(nprobe: f.nlist))
            }
            let want = bruteForceTopK(f.base, dimension: 128, query: f.queries[(q * 128)..<(q * 128 + 128)], k: 10, l2: true)
            #expect(got.map { Int($0.id) } == want, "query \(q)")
        }
        #expect(try f.recall(f.flat, nprobe: f.nlist) == 1.0)
    }

    /// Recall@10 never falls as nprobe grows (fixed seed), for IVF-Flat and for fast scan with re-ranking.
    @Test func recallNeverFallsAsNprobeGrows() throws {
        let f = try #require(siftFixture)
        let probes = [1, 2, 4, 8, 16, 32, 64]
        let flat = try probes.map { try f.recall(f.flat, nprobe: $0) }
        let fast = try probes.map { try f.recall(f.fastScan, nprobe: $0, refine: 10) }
        let raw = try probes.map { try f.recall(f.fastScanRaw, nprobe: $0, refine: 10) }
        for i in 1..<probes.count {
            #expect(flat[i] >= flat[i - 1], "flat \(flat)")
            #expect(fast[i] >= fast[i - 1], "fast scan + refine \(fast)")
            #expect(raw[i] >= raw[i - 1], "raw-code fast scan + refine \(raw)")
        }
        #expect(flat[0] > 0.3)
    }

    /// IVF-PQ with re-ranking reaches recall@10 ≥ 0.9 at a moderate nprobe (8 of 64 lists), and its reported
    /// scores are the exact squared distances.
    @Test func pqWithRefineRecall() throws {
        let f = try #require(siftFixture)
        let fast = try f.recall(f.fastScan, nprobe: 8, refine: 10)
        let raw = try f.recall(f.fastScanRaw, nprobe: 8, refine: 10)
        let pq8 = try f.recall(f.pq8, nprobe: 8, refine: 10)
        #expect(fast >= 0.9, "fast scan + refine: \(fast)")
        #expect(raw >= 0.9, "raw-code fast scan + refine: \(raw)")
        #expect(!f.fastScanRaw.header.residual && f.fastScan.header.residual)
        #expect(pq8 >= 0.9, "pq8 + refine: \(pq8)")
        let noRefine = try f.recall(f.pq8, nprobe: 8)
        #expect(noRefine < pq8)
        let got = try f.queries.withUnsafeBufferPointer { qb in
            try f.base.withUnsafeBufferPointer { bb in
                try f.fastScan.search(qb.baseAddress!, k: 10, options: IVFSearchOptions(nprobe: 8, refine: 10), vectors: bb.baseAddress!)
            }
        }
        for r in got {
            let exact = (0..<128).reduce(Float(0)) { acc, t in
                let d = f.base[Int(r.id) * 128 + t] - f.queries[t]
                return acc + d * d
            }
            #expect(r.score == exact)
        }
    }

    /// A mask restricts results to the allowed rows.
    @Test func maskRestrictsRows() throws {
        let f = try #require(siftFixture)
        var words = [UInt64](repeating: 0, count: (10_000 + 63) / 64)
        for row in stride(from: 0, to: 10_000, by: 3) { words[row / 64] |= 1 << UInt64(row % 64) }
        for index in [f.flat, f.fastScan, f.fastScanRaw, f.pq8] {
            let got = try f.queries.withUnsafeBufferPointer { qb in
                try f.base.withUnsafeBufferPointer { bb in
                    try CandidateMask.with(words) { mask in
                        try index.search(qb.baseAddress!, k: 10, options: IVFSearchOptions(nprobe: 16, refine: 4),
                                         vectors: bb.baseAddress!, mask: mask)
                    }
                }
            }
            #expect(got.count == 10)
            #expect(got.allSatisfy { $0.id % 3 == 0 })
        }
    }
    /// Fast scan without re-ranking returns exactly what a plain reference scoring of the same stored codes
    /// gives (table sums looked up code by code, the same quantized tables, every probed row ranked by a
    /// full sort, ties to the lower row): the SIMD kernel, the threshold pruning and the heap cannot change
    /// results silently.
    @Test func fastScanEqualsReferenceScoring() throws {
        let f = try #require(siftFixture)
        for index in [f.fastScan, f.fastScanRaw] {
        let pq = try #require(index.quantizer)
        for q in 0..<20 {
            for nprobe in [1, 3, 16] {
                for k in [1, 10, 100] {
                    let got = try f.queries.withUnsafeBufferPointer { qb in
                        try index.search(qb.baseAddress! + q * 128, k: k, options: IVFSearchOptions(nprobe: nprobe))
                    }
                    var all: [(id: UInt32, score: Float)] = []
                    try f.queries.withUnsafeBufferPointer { qb in
                        let query = qb.baseAddress! + q * 128
                        let probes = index.centroids.withUnsafeBufferPointer {
                            KMeans.nearest(query, centroids: $0.baseAddress!, k: index.header.nlist, dimension: 128,
                                           metric: .l2, count: nprobe)
                        }
                        var scorer = IVFProbeScorer(query: query, header: index.header, quantizer: pq,
                                                    precomputed: index.precomputed)
                        for list in probes.map(Int.init) {
                            index.centroids.withUnsafeBufferPointer { cb in
                                index.precomputed.withUnsafeBufferPointer { pb in
                                    scorer.prepare(list: list, query: query, centroid: cb.baseAddress! + list * 128,
                                                   precomputed: pb.baseAddress)
                                }
                            }
                            let table = try #require(scorer.quantized)
                            let shift = table.negated ? scorer.bias : -scorer.bias
                            for b in 0..<index.blockCount(list: list) {
                                let value = index.blockValue(list: list, block: b)
                                try value.withUnsafeBytes { raw in
                                    let view = try IVFListBlock.view(raw, kind: .pq4FastScan, list: list)
                                    let codes = (view.base + view.payloadOffset).assumingMemoryBound(to: UInt8.self)
                                    for r in 0..<view.count {
                                        let block = codes + (r / 32) * FastScan.blockBytes(view.width)
                                        var sum = 0
                                        for j in 0..<view.width {
                                            sum += Int(table.entries[j * 16 + FastScan.code(block: block, row: r % 32, subquantizer: j)])
                                        }
                                        all.append((view.rowID(r), shift - table.distance(UInt16(sum))))
                                    }
                                }
                            }
                        }
                    }
                    all.sort { $0.score > $1.score || ($0.score == $1.score && $0.id < $1.id) }
                    let want = all.prefix(k)
                    #expect(got.map(\.id) == want.map(\.id), "query \(q) nprobe \(nprobe) k \(k)")
                    #expect(got.map(\.score) == want.map { -$0.score }, "query \(q) nprobe \(nprobe) k \(k)")
                }
            }
        }
        }
    }

    /// The heap selection keeps exactly the k best of any sequence (ties to the lower id), as a full sort does.
    @Test func topKMatchesSort() {
        var rng = SplitMix64(seed: 99)
        for trial in 0..<200 {
            let n = rng.below(300), k = 1 + rng.below(40)
            // Few distinct scores, so ties are common.
            var items: [(id: UInt32, score: Float)] = []
            for _ in 0..<n { items.append((id: UInt32(rng.below(1000)), score: Float(rng.below(20)))) }
            var top = TopK(k: k)
            for it in items where it.score >= top.threshold { top.insert(it.score, it.id) }
            let sortedItems = items.sorted { (a, b) -> Bool in a.score > b.score || (a.score == b.score && a.id < b.id) }
            let want: [UInt32] = sortedItems.prefix(k).map { $0.id }
            let got: [UInt32] = top.sorted().map { $0.id }
            #expect(got == want, "trial \(trial)")
            var unordered: [UInt32] = []
            top.forEachUnordered { _, id in unordered.append(id) }
            #expect(unordered.sorted() == want.sorted())
        }
    }
}


/// Codes of the raw vectors (`IVFBuildOptions.residual` false, Spec/PQ.md §4): every ADC value an IVF search
/// reports equals the brute-force distance (or inner product) between the query and the row's decoded code
/// (no centroid added) — exactly up to float rounding for 8-bit codes, within the table-quantization bound for
/// fast scan.
@Suite struct RawCodeADCTests {
    @Test(arguments: [(Metric.l2, IVFPayloadKind.pq8), (.dot, .pq8), (.l2, .pq4FastScan), (.dot, .pq4FastScan)])
    func adcEqualsBruteForceOnDecodedVectors(metric: Metric, kind: IVFPayloadKind) throws {
        let n = 700, d = 32, nlist = 8, m = kind == .pq8 ? 8 : 16
        let data = clusteredData(count: n, dimension: d, clusters: 20, seed: 31, spread: 0.2)
        let index = try data.withUnsafeBufferPointer { b in
            try IVFIndex.build(b.baseAddress!, count: n, dimension: d, metric: metric,
                               options: IVFBuildOptions(nlist: nlist, kind: kind, subquantizers: m, blockCapacity: 64,
                                                        kmeans: KMeansOptions(iterations: 5, seed: 3),
                                                        pqKMeans: KMeansOptions(iterations: 5, seed: 4), residual: false))
        }
        #expect(!index.header.residual && index.precomputed.isEmpty)
        let pq = try #require(index.quantizer)
        // Every row's decoded vector, from the stored blocks.
        var decoded = [Float](repeating: 0, count: n * d)
        var listed = 0
        for list in 0..<nlist {
            for b in 0..<index.blockCount(list: list) {
                let value = index.blockValue(list: list, block: b)
                try value.withUnsafeBytes { raw in
                    let view = try IVFListBlock.view(raw, kind: kind, list: list)
                    var codes = [UInt8](repeating: 0, count: view.count * pq.codeSize)
                    let payload = view.payload.baseAddress!.assumingMemoryBound(to: UInt8.self)
                    if kind == .pq4FastScan {
                        FastScan.unpack(payload, count: view.count, subquantizers: m, into: &codes)
                    } else {
                        codes = Array(UnsafeBufferPointer(start: payload, count: view.count * m))
                    }
                    for r in 0..<view.count {
                        let row = Int(view.rowID(r))
                        codes.withUnsafeBufferPointer { c in
                            decoded.withUnsafeMutableBufferPointer {
                                pq.decode(c.baseAddress! + r * pq.codeSize, count: 1, into: $0.baseAddress! + row * d)
                            }
                        }
                        listed += 1
                    }
                }
            }
        }
        #expect(listed == n)
        let queries = uniformData(count: 5 * d, seed: 77)
        for q in 0..<5 {
            let query = Array(queries[(q * d)..<(q * d + d)])
            let hits = try query.withUnsafeBufferPointer { qb in
                try index.search(qb.baseAddress!, k: n, options: IVFSearchOptions(nprobe: nlist))
            }
            #expect(hits.count == n)
            let bound: Float = try query.withUnsafeBufferPointer { qb in
                guard kind == .pq4FastScan else { return 0 }
                let scorer = IVFProbeScorer(query: qb.baseAddress!, header: index.header, quantizer: pq, precomputed: [])
                return try #require(scorer.quantized).errorBound
            }
            for hit in hits {
                let x = decoded[(Int(hit.id) * d)..<(Int(hit.id) * d + d)]
                var exact: Float = 0
                for (t, v) in x.enumerated() {
                    exact += metric == .l2 ? (query[t] - v) * (query[t] - v) : query[t] * v
                }
                let tolerance = bound * 1.0001 + 1e-4 * max(1, abs(exact))
                #expect(abs(hit.score - exact) <= tolerance, "row \(hit.id): ADC \(hit.score), decoded \(exact)")
            }
        }
    }
}

/// The re-ranking candidates' reservoir keeps exactly the rows `TopK` keeps (ties to the lower id), for
/// streams offered as a scan offers them (only rows at or above the current threshold), with many ties.
@Suite struct CandidateReservoirTests {
    @Test(arguments: [1, 2, 10, 100])
    func keepsWhatTopKKeeps(k: Int) {
        var rng = SplitMix64(seed: UInt64(k))
        var reservoir = CandidateReservoir(k: k)
        for round in 0..<20 {
            let n = [0, 1, k, 2 * k, 5 * k + 3, 1000][round % 6]
            var top = TopK(k: k)
            reservoir.removeAll()
            for id in (0..<UInt32(n)).shuffled(using: &rng) {
                let score = Float(rng.below(round % 2 == 0 ? 8 : 100_000))  // few distinct scores: many ties
                if score >= top.threshold { top.insert(score, id) }
                if score >= reservoir.threshold { reservoir.insert(score, id) }
            }
            let kept = reservoir.finish().sorted { $0.score > $1.score || ($0.score == $1.score && $0.id < $1.id) }
            #expect(kept.map(\.id) == top.sorted().map(\.id), "k \(k) round \(round) n \(n)")
        }
    }
}

/// `IVFProbeScorer.beginTile` (the store's batches): tables of several queries in one pass over the codebooks.
@Suite struct ProbeScorerTileTests {
    @Test("tables built a tile at a time (full tiles, a short tail, a query stride wider than d) are the bits begin(query:) builds, and so are the list tables and scans",
          arguments: [(Metric.l2, true), (.l2, false), (.dot, true), (.dot, false)])
    func tileTablesEqualSingleTables(metric: Metric, residual: Bool) throws {
        let d = 16, n = 600
        let base = clusteredData(count: n, dimension: d, clusters: 8, seed: 41)
        let index = try base.withUnsafeBufferPointer { b in
            try IVFIndex.build(b.baseAddress!, count: n, dimension: d, metric: metric,
                               options: IVFBuildOptions(nlist: 4, kind: .pq8, subquantizers: 4, kmeans: KMeansOptions(iterations: 4, seed: 3),
                                                        pqKMeans: KMeansOptions(iterations: 4, seed: 4), residual: residual))
        }
        let pq = try #require(index.quantizer)
        let stride = d + 3
        let queries = uniformData(count: 11 * stride, seed: 42)
        var tiled = IVFProbeScorer(header: index.header, quantizer: pq, precomputed: index.precomputed, tile: 8)
        #expect(tiled.tile == 8)
        try queries.withUnsafeBufferPointer { qb in
            let q = qb.baseAddress!
            var first = 0
            while first < 11 {
                let count = min(8, 11 - first)  // 8, then a tail of 3
                tiled.beginTile(queries: q + first * stride, count: count, stride: stride)
                for slot in 0..<count {
                    let query = q + (first + slot) * stride
                    tiled.use(slot: slot)
                    let single = IVFProbeScorer(query: query, header: index.header, quantizer: pq, precomputed: index.precomputed)
                    let size = single.tableSize
                    #expect(Array(tiled.queryTable[(slot * size)..<(slot * size + size)]) == single.queryTable,
                            "query \(first + slot)")
                    var one = single
                    for list in 0..<index.header.nlist {
                        index.centroids.withUnsafeBufferPointer { cb in
                            index.precomputed.withUnsafeBufferPointer { pb in
                                tiled.prepare(list: list, query: query, centroid: cb.baseAddress! + list * d,
                                              precomputed: pb.baseAddress)
                                one.prepare(list: list, query: query, centroid: cb.baseAddress! + list * d,
                                            precomputed: pb.baseAddress)
                            }
                        }
                        #expect(tiled.bias == one.bias)
                        #expect(tiled.listTable == one.listTable)
                        var a = TopK(k: 20), b = TopK(k: 20)
                        for blockNumber in 0..<index.blockCount(list: list) {
                            try index.blockValue(list: list, block: blockNumber).withUnsafeBytes { raw in
                                let view = try IVFListBlock.view(raw, kind: .pq8, list: list)
                                tiled.scan(view, mask: nil, into: &a)
                                one.scan(view, mask: nil, into: &b)
                            }
                        }
                        #expect(a.sorted().map(\.id) == b.sorted().map(\.id))
                        #expect(a.sorted().map(\.score) == b.sorted().map(\.score))
                        #expect(a.count > 0)
                    }
                }
                first += count
            }
        }
    }
}

/// The byte-plane 8-bit scan through `IVFProbeScorer` (lists of several 64-row blocks, so the planes are built
/// and used on CPUs that have them): every row's score has the bits of the scalar ADC from the same table.
@Suite struct ProbeScorerPlanesTests {
    @Test("the scorer's scan (byte planes where the CPU has them) gives the scalar ADC's ids and score bits",
          arguments: [(Metric.l2, true), (.l2, false), (.dot, true), (.dot, false)], [false, true])
    func planesEqualScalar(coding: (Metric, Bool), tiled: Bool) throws {
        let (metric, residual) = coding
        let d = 32, n = 900
        let base = clusteredData(count: n, dimension: d, clusters: 6, seed: 17)
        let index = try base.withUnsafeBufferPointer { b in
            try IVFIndex.build(b.baseAddress!, count: n, dimension: d, metric: metric,
                               options: IVFBuildOptions(nlist: 3, kind: .pq8, subquantizers: 16, kmeans: KMeansOptions(iterations: 4, seed: 3),
                                                        pqKMeans: KMeansOptions(iterations: 4, seed: 4), residual: residual))
        }
        let pq = try #require(index.quantizer)
        let queries = uniformData(count: 3 * d, seed: 8)
        var rows = 0
        try queries.withUnsafeBufferPointer { qb in
            // Tiled: one scorer builds the three queries' tables in one pass (the store's batch path) and each
            // query scans from its own slot, whose planes must not be the previous slot's.
            var tiledScorer = IVFProbeScorer(header: index.header, quantizer: pq, precomputed: index.precomputed, tile: 4)
            if tiled { tiledScorer.beginTile(queries: qb.baseAddress!, count: 3, stride: d) }
            for q in 0..<3 {
                let query = qb.baseAddress! + q * d
                var scorer = IVFProbeScorer(query: query, header: index.header, quantizer: pq, precomputed: index.precomputed)
                if tiled {
                    tiledScorer.use(slot: q)
                    scorer = tiledScorer
                }
                for list in 0..<index.header.nlist {
                    index.centroids.withUnsafeBufferPointer { cb in
                        index.precomputed.withUnsafeBufferPointer { pb in
                            scorer.prepare(list: list, query: query, centroid: cb.baseAddress! + list * d, precomputed: pb.baseAddress)
                        }
                    }
                    for blockNumber in 0..<index.blockCount(list: list) {
                        try index.blockValue(list: list, block: blockNumber).withUnsafeBytes { raw in
                            let view = try IVFListBlock.view(raw, kind: .pq8, list: list)
                            var got = TopK(k: view.count), want = TopK(k: view.count)
                            scorer.scan(view, mask: nil, into: &got)
                            // The scalar kernel on the scorer's current float table.
                            let table = metric == .l2 && residual ? scorer.listTable : Array(scorer.queryTable[scorer.active..<(scorer.active + scorer.tableSize)])
                            table.withUnsafeBufferPointer { t in
                                IVFListScan.pq(view, quantizer: pq, table: t.baseAddress!, metric: metric, bias: scorer.bias,
                                               mask: nil, into: &want)
                            }
                            let a = got.sorted(), b = want.sorted()
                            #expect(a.map(\.id) == b.map(\.id) && a.map(\.score.bitPattern) == b.map(\.score.bitPattern),
                                    "query \(q) list \(list) block \(blockNumber)")
                            if view.count >= scorer.planeThreshold {
                                rows += view.count
                                #expect(scorer.planeBytes == 0 || (scorer.planesCurrent && !scorer.planes.isEmpty), "planes built for a block of \(view.count) rows")
                            }
                        }
                    }
                }
                if tiled { tiledScorer = scorer }  // the next slot starts from this scorer's planes
            }
        }
        #expect(rows > 0, "some block reaches the planes' row threshold")
    }
}
