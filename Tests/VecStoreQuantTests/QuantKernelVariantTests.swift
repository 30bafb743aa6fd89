import CQuant
import Testing
import VecStoreKernels
import VecStoreQuant

extension PQTests {
    /// The quantized-kernel tables of every variant this CPU runs (portable always), best first.
    static var quantVariants: [UnsafePointer<vq_quant_kernels>] {
        QuantKernelVariantTests.names.compactMap { vq_quant_variant($0) }
    }
}

/// Every quantized-kernel variant this CPU runs (AVX-512BW, AVX2, portable), called through its table
/// (`vq_quant_variant`) against the portable references, whichever variant the process dispatches to
/// (as `KernelVariantTests` does for CDistance).
@Suite("Quantized kernel variants")
struct QuantKernelVariantTests {
    static let names: [String] = ["avx512bw", "avx2", "generic"].filter { (name: String) in vq_quant_variant(name) != nil }

    @Test("variant names: aliases, unknown names, the portable one always present")
    func lookup() {
        #expect(Self.names.last == "generic")
        #expect(vq_quant_variant("portable") == vq_quant_variant("generic"))
        #expect(vq_quant_variant("avx512") == vq_quant_variant("avx512bw"))
        #expect(vq_quant_variant("sse9") == nil && vq_quant_variant(nil) == nil)
        #expect(Self.names.contains(ScalarQuantizer8.kernelISA), "the dispatched variant is one of them")
    }

    @Test("fast scan and the candidate filter: the same integers as the references", arguments: names)
    func fastScanAndSelect(isa: String) throws {
        let k = try #require(vq_quant_variant(isa)).pointee
        var rng = SplitMix64(seed: 77)
        for mpad in [2, 4, 6, 32, 96, 98, 256] {
            let nblocks = 3
            let blocks = (0..<(nblocks * mpad / 2 * 32)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let lut = (0..<(mpad * 16)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            var got = [UInt16](repeating: 0, count: nblocks * 32), want = got
            k.fs4_scan(blocks, nblocks, mpad, lut, &got)
            vq_fs4_scan_reference(blocks, nblocks, mpad, lut, &want)
            #expect(got == want, "\(isa) mpad \(mpad)")
            for n in [0, 1, 15, 16, 17, 33, 96] {
                let limit = n == 0 ? 0 : want[n / 2]
                var a = [UInt32](repeating: 0, count: max(n, 1)), b = a
                let ca = k.select_le(want, n, limit, &a), cb = vq_u16_select_le_reference(want, n, limit, &b)
                #expect(ca == cb && Array(a[0..<ca]) == Array(b[0..<cb]), "\(isa) select n \(n)")
            }
        }
        // The largest sums: every table entry 255 at 254 and 256 sub-quantizers (up to 65,280, the 16-bit lane sums' worst case).
        for mpad in [254, 256] {
            let blocks = (0..<(2 * mpad / 2 * 32)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let lut = [UInt8](repeating: 255, count: mpad * 16)
            var got = [UInt16](repeating: 0, count: 2 * 32), want = got
            k.fs4_scan(blocks, 2, mpad, lut, &got)
            vq_fs4_scan_reference(blocks, 2, mpad, lut, &want)
            #expect(got == want && want.allSatisfy { $0 == UInt16(255 * mpad) }, "\(isa) saturated mpad \(mpad)")
        }
    }

    @Test("table quantization, PQ tables, nearest and int8 dot agree with the references", arguments: names)
    func tables(isa: String) throws {
        let k = try #require(vq_quant_variant(isa)).pointee
        for m in [1, 2, 7, 32, 96] {
            let a = uniformData(count: m * 16, seed: UInt64(m)), b = uniformData(count: m * 16, seed: UInt64(m + 100))
            for sign: Float in [1, -1] {
                for addend in [false, true] {
                    var got = [UInt8](repeating: 0, count: m * 16), want = got
                    var gs: Float = 0, gb: Float = 0, ws: Float = 0, wb: Float = 0
                    b.withUnsafeBufferPointer { bb in
                        let bp = addend ? bb.baseAddress : nil
                        k.quantize_table(a, bp, m, sign, &got, &gs, &gb)
                        vq_quant_variant("generic")!.pointee.quantize_table(a, bp, m, sign, &want, &ws, &wb)
                    }
                    // The same scale; entries within one step (vectorised sums may round the last bit
                    // differently and land on the other side of a .5).
                    #expect(abs(gs - ws) <= ws * 1e-6 && abs(gb - wb) <= 1e-4, "\(isa) m \(m)")
                    #expect(zip(got, want).allSatisfy { abs(Int($0) - Int($1)) <= 1 }, "\(isa) m \(m) entries")
                }
            }
        }
        // PQ tables (ksub 16 and 256, both metrics) against the portable variant.
        for (m, ksub, dsub) in [(4, 16, 4), (3, 256, 2), (8, 16, 1)] {
            let books = uniformData(count: m * ksub * dsub, seed: 5), q = uniformData(count: m * dsub, seed: 6)
            for l2: Int32 in [0, 1] {
                var got = [Float](repeating: 0, count: m * ksub), want = got
                k.pq_tables(q, 1, 0, books, m, ksub, dsub, l2, 1, &got)
                vq_quant_variant("generic")!.pointee.pq_tables(q, 1, 0, books, m, ksub, dsub, l2, 1, &want)
                #expect(zip(got, want).allSatisfy { abs($0 - $1) <= 1e-5 * Float(dsub) * 4 }, "\(isa) pq table")
            }
        }
        // The x86 SIMD variants' PQ tables equal the fused sums in component order exactly (what the contracted
        // scalar loop computed before the explicit kernels), for both table widths, odd M and M not a multiple
        // of 4 (the 16-entry kernel takes four sub-quantizers at a time).
        if isa != "generic" {
            for (m, ksub, dsub) in [(48, 256, 8), (3, 256, 2), (16, 256, 1), (96, 16, 4), (7, 16, 3), (2, 16, 8)] {
                let books = uniformData(count: m * ksub * dsub, seed: UInt64(m * 31 + dsub)),
                    q = uniformData(count: m * dsub, seed: UInt64(m + ksub))
                for l2: Int32 in [0, 1] {
                    var got = [Float](repeating: 0, count: m * ksub)
                    k.pq_tables(q, 1, 0, books, m, ksub, dsub, l2, 1, &got)
                    var exact = true
                    for j in 0..<m {
                        for c in 0..<ksub {
                            var acc: Float = 0
                            for t in 0..<dsub {
                                let x = q[j * dsub + t], b = books[(j * dsub + t) * ksub + c]
                                acc = l2 == 1 ? acc.addingProduct(x - b, x - b) : acc.addingProduct(x, b)
                            }
                            if got[j * ksub + c] != acc { exact = false }
                        }
                    }
                    #expect(exact, "\(isa) pq table m \(m) ksub \(ksub) dsub \(dsub) l2 \(l2): fused sums, bit for bit")
                }
            }
        }
        // Batches: table g of a batch (queries at a stride) is the single-query table times the scale, bit for
        // bit, in every variant.
        for (m, ksub, dsub) in [(48, 256, 8), (96, 16, 4), (5, 16, 2), (3, 256, 1)] {
            let d = m * dsub, nq = 3, stride = d + 5, size = m * ksub
            let books = uniformData(count: m * ksub * dsub, seed: UInt64(m + 1)),
                qs = uniformData(count: nq * stride, seed: UInt64(m + 2))
            for l2: Int32 in [0, 1] {
                for scale: Float in [1, -2] {
                    var batch = [Float](repeating: .nan, count: nq * size)
                    k.pq_tables(qs, nq, stride, books, m, ksub, dsub, l2, scale, &batch)
                    var same = true
                    for g in 0..<nq {
                        var one = [Float](repeating: .nan, count: size)
                        qs.withUnsafeBufferPointer { qb in
                            k.pq_tables(qb.baseAddress! + g * stride, 1, 0, books, m, ksub, dsub, l2, 1, &one)
                        }
                        for i in 0..<size where batch[g * size + i] != one[i] * scale { same = false }
                    }
                    #expect(same, "\(isa) batched pq tables m \(m) ksub \(ksub) l2 \(l2) scale \(scale)")
                }
            }
        }
        // Nearest: the same index and value (ties to the first).
        for n in [1, 7, 8, 15, 16, 17, 100, 256] {
            var norms = uniformData(count: n, seed: UInt64(n)), dots = uniformData(count: n, seed: UInt64(n + 9))
            if n > 3 { norms[n - 1] = norms[1]; dots[n - 1] = dots[1] }  // a tie
            for l2: Int32 in [0, 1] {
                var gv: Float = 0, wv: Float = 0
                let g = k.nearest(norms, dots, n, l2, &gv), w = vq_nearest_reference(norms, dots, n, l2, &wv)
                #expect(g == w && gv == wv, "\(isa) nearest n \(n)")
            }
        }
        // int8 dot.
        for n in [1, 15, 16, 33, 384] {
            let q = uniformData(count: n, seed: UInt64(n))
            var rng = SplitMix64(seed: UInt64(n))
            let c = (0..<n).map { _ in Int8(truncatingIfNeeded: rng.next() % 255) }
            let g = k.dot_f32_i8(q, c, n), w = vq_dot_f32_i8_reference(q, c, n)
            #expect(abs(g - w) <= 1e-4 * Float(n) * 127, "\(isa) int8 dot n \(n)")
        }
    }

    @Test("8-bit ADC scan: every row the sequential sum of its table entries, bit for bit")
    func pq8Scan() {
        // M a multiple of 4 takes the four-codes-a-load loop (its 8-row groups and the row tail); others the
        // byte loop. Codes sit in an exactly sized buffer, so a read past the last row would be caught by ASan.
        for m in [1, 2, 3, 4, 5, 8, 12, 16, 20, 48, 96] {
            let lut = uniformData(count: m * 256, seed: UInt64(m))
            var rng = SplitMix64(seed: UInt64(m + 7))
            for n in [0, 1, 2, 7, 8, 9, 15, 16, 17, 64, 229] {
                let codes = (0..<max(n * m, 1)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                var got = [Float](repeating: -1, count: max(n, 1))
                vq_pq8_scan(lut, m, codes, n, &got)
                for i in 0..<n {
                    var s: Float = 0
                    for j in 0..<m { s += lut[j * 256 + Int(codes[i * m + j])] }
                    #expect(got[i] == s, "m \(m) n \(n) row \(i)")
                }
            }
        }
    }

    @Test("8-bit ADC from byte planes: the planes hold the table's float bytes, every row the sequential sum bit for bit",
          arguments: names)
    func pq8Planes(isa: String) throws {
        let k = try #require(vq_quant_variant(isa)).pointee
        // Only the AVX-512 variant on a CPU with VBMI has the byte-plane scan; the others leave both NULL.
        guard let build = k.pq8_planes, let scan = k.pq8_scan_planes else {
            #expect(k.pq8_planes == nil && k.pq8_scan_planes == nil, "\(isa)")
            return
        }
        // M a multiple of 16 up to 192 (1 to 12 blocks of 16 sub-quantizers) takes the vector path; 12 and 208
        // fall back to the scalar kernel (no planes: `vq_pq8_planes_size` is 0 there). Row counts cover full
        // 64-row blocks, passes of two, padded tails (>= VQ_PQ8_PAD_MIN = 20 rows: 20, 84) and scalar tails (19,
        // 83). Codes sit in an exactly sized buffer, so a read past the last row would be caught by ASan
        // (Tools/fuzz-asan).
        for m in [12, 16, 32, 48, 64, 96, 192, 208] {
            var lut = uniformData(count: m * 256, seed: UInt64(m) + 100)
            lut[5] = -0.0
            lut[m * 256 - 1] = 1e-40  // subnormal
            var planes = [UInt8](repeating: 0, count: m * 1024)
            if m % 16 == 0 && m <= 192 {
                build(lut, m, &planes)
                for j in 0..<m {
                    for e in 0..<256 {
                        let bits = lut[j * 256 + e].bitPattern
                        for p in 0..<4 where planes[j * 1024 + p * 256 + e] != UInt8(truncatingIfNeeded: bits >> (8 * p)) {
                            Issue.record("\(isa) m \(m) planes entry \(j),\(e) byte \(p)")
                        }
                    }
                }
            }
            var rng = SplitMix64(seed: UInt64(m + 11))
            for n in [0, 1, 19, 20, 27, 28, 63, 64, 65, 83, 84, 128, 129, 191, 200, 256, 300] {
                let codes = (0..<max(n * m, 1)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                var got = [Float](repeating: -1, count: max(n, 1))
                scan(lut, planes, m, codes, n, &got)
                var wrong = 0
                for i in 0..<n {
                    var s: Float = 0
                    for j in 0..<m { s += lut[j * 256 + Int(codes[i * m + j])] }
                    if got[i].bitPattern != s.bitPattern { wrong += 1 }
                }
                #expect(wrong == 0, "\(isa) m \(m) n \(n): \(wrong) rows differ")
            }
        }
    }

    @Test("the dispatched byte-plane scan: planes only where the variant has them, the same values as vq_pq8_scan")
    func pq8PlanesDispatched() {
        for m in [4, 16, 48] {
            let size = vq_pq8_planes_size(m)
            #expect(size == 0 || size == m * 1024)
            // Beyond 192 sub-quantizers a transposed block does not fit a pass: no planes.
            #expect(vq_pq8_planes_size(208) == 0 && vq_pq8_planes_size(256) == 0)
            if m % 16 != 0 { #expect(size == 0) }
            let lut = uniformData(count: m * 256, seed: UInt64(m) + 5)
            var planes = [UInt8](repeating: 0, count: max(size, 1))
            if size > 0 { vq_pq8_planes(lut, m, &planes) }
            var rng = SplitMix64(seed: 9)
            let n = 229
            let codes = (0..<(n * m)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            var want = [Float](repeating: 0, count: n), got = want, none = want
            vq_pq8_scan(lut, m, codes, n, &want)
            if size > 0 { vq_pq8_scan_planes(lut, planes, m, codes, n, &got) } else { got = want }
            vq_pq8_scan_planes(lut, nil, m, codes, n, &none)
            #expect(got.map(\.bitPattern) == want.map(\.bitPattern), "m \(m)")
            #expect(none.map(\.bitPattern) == want.map(\.bitPattern), "m \(m) without planes")
        }
    }

    @Test("the float candidate filter (vq_f32_select, dispatched) agrees with its reference: bias, both directions, NaN, ±inf, tails")
    func floatSelect() {
        var rng = SplitMix64(seed: 77)
        var v = (0..<101).map { _ in Float(rng.next() % 2001) / 100 - 10 }
        v[3] = .nan
        v[17] = .infinity
        v[40] = -.infinity
        v[41] = -0.0
        for n in [0, 1, 7, 8, 9, 16, 33, 64, 101] {
            for bias: Float in [0, 0.5, -3.25] {
                for limit: Float in [-.infinity, -2, 0, 4.75, .infinity] {
                    for le: Int32 in [0, 1] {
                        var a = [UInt32](repeating: 0, count: max(n, 1)), b = a
                        let ca = vq_f32_select(v, n, bias, limit, le, &a)
                        let cb = vq_f32_select_reference(v, n, bias, limit, le, &b)
                        let want = (0..<n).filter { i in
                            let s = v[i] + bias
                            return le != 0 ? s <= limit : s >= limit
                        }.map(UInt32.init)
                        #expect(ca == cb && Array(a[0..<ca]) == Array(b[0..<cb]), "n \(n) bias \(bias) limit \(limit) le \(le)")
                        #expect(Array(b[0..<cb]) == want, "reference n \(n) bias \(bias) limit \(limit) le \(le)")
                    }
                }
            }
        }
    }
}
