import CQuant
import Foundation
import Testing
import VecStoreKernels
@testable import VecStoreQuant

@Suite struct PQTests {
    let dimension = 32

    func trained(bits: Int, m: Int, rows: Int = 2000) throws -> (ProductQuantizer, [Float]) {
        let data = clusteredData(count: rows, dimension: dimension, clusters: 30, seed: 9, spread: 0.2)
        var pq = try ProductQuantizer(dimension: dimension, subquantizers: m, bits: bits)
        let mse = try data.withUnsafeBufferPointer { try pq.train($0.baseAddress!, count: rows, options: KMeansOptions(iterations: 8, seed: 2)) }
        #expect(mse.isFinite && mse > 0)
        return (pq, data)
    }

    /// `VECSTORE_KERNEL=portable` keeps the quantized kernels' references and `avx2` never picks AVX-512
    /// (run the suite with each to exercise the other variants on an AVX-512 machine).
    @Test func kernelChoiceFollowsVECSTORE_KERNEL() {
        let isa = ScalarQuantizer8.kernelISA
        #expect(["avx512bw", "avx2", "generic"].contains(isa))
        switch ProcessInfo.processInfo.environment["VECSTORE_KERNEL"] {
        case "portable": #expect(isa == "generic")
        case "avx2": #expect(isa == (vq_quant_variant("avx2") != nil ? "avx2" : "avx512bw"))
        case "avx512": #expect(isa == (vq_quant_variant("avx512") != nil ? "avx512bw" : isa))
        default: break
        }
    }

    /// ADC values equal the brute-force distance / inner product between the query and the decoded vector.
    @Test(arguments: [(8, 8), (4, 8), (4, 5), (8, 4)])
    func adcEqualsBruteForceOnDecodedVectors(bits: Int, m: Int) throws {
        let dim = m == 5 ? 40 : dimension
        let data = clusteredData(count: 1500, dimension: dim, clusters: 30, seed: 9, spread: 0.2)
        var pq = try ProductQuantizer(dimension: dim, subquantizers: m, bits: bits)
        try data.withUnsafeBufferPointer { _ = try pq.train($0.baseAddress!, count: 1500, options: KMeansOptions(iterations: 6, seed: 2)) }
        let n = 300
        var codes = [UInt8](repeating: 0, count: n * pq.codeSize)
        var decoded = [Float](repeating: 0, count: n * dim)
        data.withUnsafeBufferPointer { d in
            codes.withUnsafeMutableBufferPointer { c in
                pq.encode(d.baseAddress!, count: n, into: c.baseAddress!)
            }
        }
        codes.withUnsafeBufferPointer { c in decoded.withUnsafeMutableBufferPointer { pq.decode(c.baseAddress!, count: n, into: $0.baseAddress!) } }
        let query = uniformData(count: dim, seed: 77)
        for metric in [Metric.l2, .dot] {
            var table = [Float](repeating: 0, count: m * pq.centroidsPerSubquantizer)
            var adc = [Float](repeating: 0, count: n)
            query.withUnsafeBufferPointer { q in table.withUnsafeMutableBufferPointer { pq.lookupTable(q.baseAddress!, metric: metric, into: $0.baseAddress!) } }
            table.withUnsafeBufferPointer { t in codes.withUnsafeBufferPointer { c in adc.withUnsafeMutableBufferPointer {
                pq.scan(table: t.baseAddress!, codes: c.baseAddress!, count: n, into: $0.baseAddress!)
            } } }
            for i in 0..<n {
                var exact = 0.0
                for t in 0..<dim {
                    let x = Double(decoded[i * dim + t]), y = Double(query[t])
                    exact += metric == .l2 ? (x - y) * (x - y) : x * y
                }
                #expect(abs(Double(adc[i]) - exact) <= 1e-4 * max(1, abs(exact)), "row \(i) \(metric): \(adc[i]) vs \(exact)")
            }
        }
        // Encoding picks the nearest sub-centroid: re-encoding the decoded vectors gives the same codes.
        var again = [UInt8](repeating: 0, count: n * pq.codeSize)
        decoded.withUnsafeBufferPointer { d in again.withUnsafeMutableBufferPointer { pq.encode(d.baseAddress!, count: n, into: $0.baseAddress!) } }
        #expect(again == codes)
    }

    @Test func rejectsBadShapes() {
        #expect(throws: QuantError.self) { try ProductQuantizer(dimension: 30, subquantizers: 8, bits: 8) }
        #expect(throws: QuantError.self) { try ProductQuantizer(dimension: 32, subquantizers: 8, bits: 6) }
        #expect(throws: QuantError.self) {
            try ProductQuantizer(dimension: 8, subquantizers: 2, bits: 4, codebooks: [Float](repeating: .nan, count: 8 * 16))
        }
    }

    @Test func fastScanPackRoundTripsAndKernelMatchesReference() throws {
        var rng = SplitMix64(seed: 5)
        for m in [1, 2, 3, 8, 15, 16, 32, 48, 64] {
            let rows = 32 * 3 + 7
            let bytesPerRow = (m + 1) / 2
            var codes = [UInt8](repeating: 0, count: rows * bytesPerRow)
            for i in 0..<rows {
                for j in 0..<m { codes[i * bytesPerRow + j / 2] |= UInt8(rng.below(16)) << UInt8((j % 2) * 4) }
            }
            let blocks = FastScan.blockCount(rows)
            var packed = [UInt8](repeating: 0xAA, count: blocks * FastScan.blockBytes(m))
            codes.withUnsafeBufferPointer { c in packed.withUnsafeMutableBufferPointer { FastScan.pack(c.baseAddress!, count: rows, subquantizers: m, into: $0.baseAddress!) } }
            var back = [UInt8](repeating: 0xFF, count: codes.count)
            packed.withUnsafeBufferPointer { p in back.withUnsafeMutableBufferPointer { FastScan.unpack(p.baseAddress!, count: rows, subquantizers: m, into: $0.baseAddress!) } }
            #expect(back == codes, "m = \(m)")
            // Kernel (dispatched) == portable reference, bit for bit, with random 8-bit tables.
            let mpad = FastScan.paddedSubquantizers(m)
            var lut = (0..<(mpad * 16)).map { _ in UInt8(rng.below(256)) }
            for j in m..<mpad { for c in 0..<16 { lut[j * 16 + c] = 0 } }
            var fast = [UInt16](repeating: 0, count: blocks * 32), reference = fast
            packed.withUnsafeBufferPointer { p in lut.withUnsafeBufferPointer { l in
                fast.withUnsafeMutableBufferPointer { vq_fs4_scan(p.baseAddress!, blocks, mpad, l.baseAddress!, $0.baseAddress!) }
                reference.withUnsafeMutableBufferPointer { vq_fs4_scan_reference(p.baseAddress!, blocks, mpad, l.baseAddress!, $0.baseAddress!) }
            } }
            #expect(fast == reference, "m = \(m) on \(ScalarQuantizer8.kernelISA)")
            // And both equal the plain table sum per row.
            for i in 0..<rows {
                var s = 0
                for j in 0..<m { s += Int(lut[j * 16 + Int((codes[i * bytesPerRow + j / 2] >> UInt8((j % 2) * 4)) & 15)]) }
                #expect(Int(fast[i]) == s)
            }
        }
    }

    /// The re-ranking kernel (four rows at a time, prefetching ahead; dispatched SIMD) gives the portable
    /// reference's scores up to float rounding, for dimensions around the vector widths (masked and scalar
    /// tails), row counts around the group of four and the prefetch distance, rows in any order (repeats
    /// included), and both metrics; and `ExactRerank.rerank` on top of it selects the brute-force best.
    @Test func rerankRowsMatchReference() {
        var rng = SplitMix64(seed: 21)
        for d in [1, 3, 8, 15, 16, 17, 31, 128, 384, 385] {
            let table = uniformData(count: 60 * d, seed: UInt64(d))
            let query = uniformData(count: d, seed: UInt64(1000 + d))
            for n in [0, 1, 3, 4, 5, 9, 12, 13, 60] {
                let picks = (0..<n).map { _ in Int(rng.below(60)) }
                for l2: Int32 in [0, 1] {
                    var fast = [Float](repeating: .nan, count: max(n, 1)), slow = fast
                    var perVariant = [[Float]](repeating: fast, count: Self.quantVariants.count)
                    table.withUnsafeBufferPointer { t in
                        let rows: [UnsafePointer<Float>?] = picks.map { t.baseAddress! + $0 * d }
                        query.withUnsafeBufferPointer { q in
                            vq_score_rows(q.baseAddress!, rows, n, d, l2, &fast)
                            vq_score_rows_reference(q.baseAddress!, rows, n, d, l2, &slow)
                            // Every variant this CPU runs, through its table (n ≥ 1: the table entries skip
                            // the empty check the dispatched entry does).
                            for (v, k) in Self.quantVariants.enumerated() where n > 0 {
                                k.pointee.score_rows(q.baseAddress!, rows, n, d, l2, &perVariant[v])
                            }
                        }
                    }
                    for i in 0..<n {
                        // Both sums have magnitude at most d · 4; rounding differs by a few ulps of that.
                        #expect(abs(fast[i] - slow[i]) <= 1e-5 * Float(d) * 4, "d \(d) n \(n) l2 \(l2) row \(i): \(fast[i]) vs \(slow[i])")
                        for (v, k) in Self.quantVariants.enumerated() {
                            #expect(abs(perVariant[v][i] - slow[i]) <= 1e-5 * Float(d) * 4,
                                    "\(String(cString: k.pointee.isa)) d \(d) n \(n) row \(i)")
                        }
                    }
                    if n > 0 {
                        // The reference against a plain loop over the same row.
                        let r = picks[0]
                        var s: Float = 0
                        for t in 0..<d {
                            let x = query[t] - table[r * d + t]
                            s += l2 == 1 ? x * x : query[t] * table[r * d + t]
                        }
                        #expect(abs(slow[0] - s) <= 1e-5 * Float(d) * 4)
                    }
                }
            }
            // The re-ranking selection equals a brute-force selection of the best 5 of 40 distinct rows.
            for metric in [Metric.l2, .dot] {
                let candidates = (0..<40).map { UInt32($0 * 3 % 60) }
                let got = table.withUnsafeBufferPointer { t in query.withUnsafeBufferPointer { q in
                    ExactRerank.rerank(candidates, query: q.baseAddress!, dimension: d, metric: metric, k: 5) {
                        t.baseAddress! + Int($0) * d
                    }
                } }
                let scored = candidates.map { row -> (UInt32, Float) in
                    var s: Float = 0
                    for t in 0..<d {
                        let x = query[t] - table[Int(row) * d + t]
                        s += metric == .l2 ? x * x : query[t] * table[Int(row) * d + t]
                    }
                    return (row, s)
                }.sorted { metric == .l2 ? $0.1 < $1.1 : $0.1 > $1.1 }
                #expect(got.count == 5)
                for (g, w) in zip(got, scored.prefix(5)) {
                    #expect(abs(g.score - w.1) <= 1e-5 * Float(d) * 4, "d \(d) \(metric): \(g) vs \(w)")
                }
            }
        }
    }

    /// The fast-scan candidate filter (dispatched SIMD) picks exactly the positions the portable reference
    /// picks: every sum at most the limit, ascending, for lengths around the vector widths and every kind
    /// of limit (none pass, some, all).
    @Test func candidateFilterMatchesReference() {
        var rng = SplitMix64(seed: 11)
        for n in [0, 1, 15, 16, 17, 31, 32, 33, 100, 256] {
            let sums = (0..<n).map { _ in UInt16(rng.below(4000)) }
            for limit: UInt16 in [0, 1, 50, 1000, 3999, 65535] {
                var got = [UInt32](repeating: 0, count: max(n, 1)), want = got
                let c = sums.withUnsafeBufferPointer { vq_u16_select_le($0.baseAddress, n, limit, &got) }
                let r = sums.withUnsafeBufferPointer { vq_u16_select_le_reference($0.baseAddress, n, limit, &want) }
                #expect(c == r && Array(got.prefix(c)) == Array(want.prefix(r)), "n \(n) limit \(limit)")
                #expect(r == sums.filter { $0 <= limit }.count)
            }
        }
    }

    /// Fast-scan distances equal the float ADC distances within the documented table-quantization bound.
    @Test(arguments: [Metric.l2, .dot])
    func fastScanWithinQuantizationBound(metric: Metric) throws {
        let m = 16
        let (pq, data) = try trained(bits: 4, m: m)
        let n = 200
        var codes = [UInt8](repeating: 0, count: n * pq.codeSize)
        data.withUnsafeBufferPointer { d in codes.withUnsafeMutableBufferPointer { pq.encode(d.baseAddress!, count: n, into: $0.baseAddress!) } }
        var packed = [UInt8](repeating: 0, count: FastScan.blockCount(n) * FastScan.blockBytes(m))
        codes.withUnsafeBufferPointer { c in packed.withUnsafeMutableBufferPointer { FastScan.pack(c.baseAddress!, count: n, subquantizers: m, into: $0.baseAddress!) } }
        let query = uniformData(count: dimension, seed: 8)
        var table = [Float](repeating: 0, count: m * 16)
        query.withUnsafeBufferPointer { q in table.withUnsafeMutableBufferPointer { pq.lookupTable(q.baseAddress!, metric: metric, into: $0.baseAddress!) } }
        var adc = [Float](repeating: 0, count: n)
        table.withUnsafeBufferPointer { t in codes.withUnsafeBufferPointer { c in adc.withUnsafeMutableBufferPointer { pq.scan(table: t.baseAddress!, codes: c.baseAddress!, count: n, into: $0.baseAddress!) } } }
        let qt = table.withUnsafeBufferPointer { QuantizedTable($0.baseAddress!, subquantizers: m, innerProduct: metric != .l2) }
        var sums = [UInt16](repeating: 0, count: FastScan.blockCount(n) * 32)
        packed.withUnsafeBufferPointer { p in sums.withUnsafeMutableBufferPointer { FastScan.scan(p.baseAddress!, blockCount: FastScan.blockCount(n), table: qt, into: $0.baseAddress!) } }
        #expect(qt.errorBound > 0)
        for i in 0..<n {
            let approx = qt.value(sums[i])
            #expect(abs(approx - adc[i]) <= qt.errorBound * 1.0001 + 1e-5, "row \(i): \(approx) vs \(adc[i]), bound \(qt.errorBound)")
        }
    }

    @Test func rerankReportsExactScores() {
        let data = uniformData(count: 50 * 8, seed: 3)
        let q = uniformData(count: 8, seed: 4)
        let result = q.withUnsafeBufferPointer { qb in
            data.withUnsafeBufferPointer { db in
                ExactRerank.rerank([3, 7, 11, 20, 42], query: qb.baseAddress!, dimension: 8, metric: .l2, k: 2) { row in
                    row == 20 ? nil : db.baseAddress! + Int(row) * 8
                }
            }
        }
        func distance(_ r: Int) -> Float {
            var s: Float = 0
            for t in 0..<8 {
                let d = data[r * 8 + t] - q[t]
                s += d * d
            }
            return s
        }
        let expected: [(Int, Float)] = [3, 7, 11, 42].map { ($0, distance($0)) }.sorted { $0.1 < $1.1 }
        #expect(result.map { Int($0.id) } == expected.prefix(2).map { $0.0 })
        for (r, e) in zip(result, expected) { #expect(abs(r.score - e.1) < 1e-4) }
    }
}
