import CDistance
import Foundation
import Testing
import VecStoreKernels

/// Every distance-kernel variant this CPU runs (AVX-512F, AVX2+FMA, portable), called through its table
/// (`vs_distance_variant`) against a scalar reference in double precision, whichever variant the process
/// dispatches to. `VECSTORE_KERNEL=portable|avx2|avx512 swift test` runs the rest of the suite on one.
@Suite("Distance kernel variants")
struct KernelVariantTests {
    /// The variants this CPU runs, best first (the portable one always).
    static let names: [String] = ["avx512f", "avx2", "generic"].filter { vs_distance_variant($0) != nil }

    /// The table of each variant this CPU runs, best first.
    static var variants: [UnsafePointer<vs_distance_kernels>] { names.compactMap { vs_distance_variant($0) } }

    static func name(_ k: UnsafePointer<vs_distance_kernels>) -> String { String(cString: k.pointee.isa) }

    /// Lengths around every vector width (8, 16, 32 lanes and the 4-way portable loop) and tail length.
    static let dimensions = [1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 40, 63, 64, 65, 127, 384, 385]

    /// The worst error of a float32 sum of `terms` (any order, FMA or not) next to its exact value:
    /// gamma_(n+2) times the sum of the terms' magnitudes, with room for underflow.
    static func slack(_ count: Int, _ magnitude: Double) -> Double {
        let u = 0x1p-24
        let g = Double(count + 2) * u / (1 - Double(count + 2) * u)
        return g * magnitude * 1.001 + Double(count + 2) * 0x1p-140
    }

    static func close(_ got: Float, _ exact: Double, _ count: Int, _ magnitude: Double) -> Bool {
        abs(Double(got) - exact) <= slack(count, magnitude)
    }

    /// Rows of `dim` components at scales from subnormal-in-binary16 to near its overflow.
    static func rows(_ n: Int, _ dim: Int, _ rng: inout SeededRandom) -> [[Float]] {
        (0..<n).map { r in
            let scale = [Float(1), 0x1p-16, 0x1p-24, 1_000, 60_000, 0x1p-30, 3][r % 7]
            return rng.vector(dim).map { $0 * scale }
        }
    }

    @Test("the process runs the variant VECSTORE_KERNEL names, else the best this CPU runs")
    func dispatchChoice() {
        #expect(Self.names.last == "generic", "the portable variant is always there")
        let forced = ProcessInfo.processInfo.environment["VECSTORE_KERNEL"].flatMap { vs_distance_variant($0) }
        let expected = forced ?? Self.variants[0]
        #expect(distanceKernelISA == Self.name(expected))
        #expect(vs_distance_variant("avx512") == vs_distance_variant("avx512f"))
        #expect(vs_distance_variant("portable") == vs_distance_variant("generic"))
        #expect(vs_distance_variant("sse9") == nil && vs_distance_variant(nil) == nil)
    }

    @Test("float32 kernels: dot, l2, their many-row forms (bit-identical per row) and the tile",
          arguments: names)
    func float32(isa: String) throws {
        let k = try #require(vs_distance_variant(isa)).pointee
        var rng = SeededRandom(seed: 5)
        for dim in Self.dimensions {
            let n = 13
            let x = Self.rows(n, dim, &rng).map { $0.map { $0 / 64 } }  // no float32 overflow in l2
            let flat = x.flatMap { $0 }
            let queries = (0..<9).map { _ in rng.vector(dim) }
            var dots = [Float](repeating: 0, count: n), l2s = dots
            var tile = [Float](repeating: .nan, count: queries.count * (n + 2))
            queries.flatMap { $0 }.withUnsafeBufferPointer { qs in
                flat.withUnsafeBufferPointer { xb in
                    k.dot_tile(qs.baseAddress!, queries.count, xb.baseAddress!, n, dim, &tile, n + 2)
                }
            }
            for (qi, q) in queries.enumerated() {
                q.withUnsafeBufferPointer { qb in
                    flat.withUnsafeBufferPointer { xb in
                        k.dot_many(qb.baseAddress!, xb.baseAddress!, n, dim, &dots)
                        k.l2_many(qb.baseAddress!, xb.baseAddress!, n, dim, &l2s)
                        for r in 0..<n {
                            let row = xb.baseAddress! + r * dim
                            let dot = k.dot(qb.baseAddress!, row, dim), l2 = k.l2(qb.baseAddress!, row, dim)
                            #expect(dots[r].bitPattern == dot.bitPattern && l2s[r].bitPattern == l2.bitPattern,
                                    "\(isa) d \(dim) row \(r): the many-row kernels differ from the pair kernels")
                            let products = (0..<dim).map { Double(q[$0]) * Double(x[r][$0]) }
                            let squares = (0..<dim).map { (Double(q[$0]) - Double(x[r][$0])) * (Double(q[$0]) - Double(x[r][$0])) }
                            let magnitude = products.reduce(0) { $0 + abs($1) }
                            #expect(Self.close(dot, products.reduce(0, +), dim, magnitude), "\(isa) dot d \(dim) row \(r): \(dot)")
                            #expect(Self.close(tile[qi * (n + 2) + r], products.reduce(0, +), dim, magnitude),
                                    "\(isa) tile d \(dim) query \(qi) row \(r)")
                            let sum = squares.reduce(0, +)
                            #expect(Self.close(l2, sum, 3 * dim, sum), "\(isa) l2 d \(dim) row \(r): \(l2)")
                        }
                    }
                }
                // Columns past the rows are not written.
                #expect(tile[qi * (n + 2) + n].isNaN && tile[qi * (n + 2) + n + 1].isNaN)
            }
        }
    }

    @Test("binary16 kernels: dot, l2 and the certified scan's pass 1 (every tail length)",
          arguments: names)
    func binary16(isa: String) throws {
        let k = try #require(vs_distance_variant(isa)).pointee
        var rng = SeededRandom(seed: 9)
        for dim in Self.dimensions {
            let n = 14, stride = dim + 3
            let x = Self.rows(n, dim, &rng)
            var halves = [UInt16](repeating: 0x7e00, count: n * stride)  // NaN padding: must never be read
            for r in 0..<n { for i in 0..<dim { halves[r * stride + i] = Float16(x[r][i]).bitPattern } }
            let h = halves.map { Double(Float(Float16(bitPattern: $0))) }
            for trial in 0..<4 {
                let q = rng.vector(dim).map { $0 * (trial == 3 ? 0x1p-20 : 1) }
                var a = [Float](repeating: 0, count: n), b = a
                q.withUnsafeBufferPointer { qb in
                    halves.withUnsafeBufferPointer { hb in
                        for l2 in [0, 1] {
                            k.half_pass(qb.baseAddress!, hb.baseAddress!, n, stride, dim, Int32(l2), &a, &b)
                            for r in 0..<n {
                                let row = (0..<dim).map { h[r * stride + $0] }
                                let products = (0..<dim).map { Double(q[$0]) * row[$0] }
                                let squares = (0..<dim).map { (Double(q[$0]) - row[$0]) * (Double(q[$0]) - row[$0]) }
                                let norm = row.reduce(0) { $0 + $1 * $1 }
                                let magnitude = products.reduce(0) { $0 + abs($1) }
                                let exact = l2 == 1 ? squares.reduce(0, +) : products.reduce(0, +)
                                #expect(Self.close(a[r], exact, 3 * dim, l2 == 1 ? exact : magnitude),
                                        "\(isa) half_pass l2 \(l2) d \(dim) row \(r): \(a[r]) vs \(exact)")
                                #expect(Self.close(b[r], norm, dim, norm), "\(isa) half_pass norm d \(dim) row \(r)")
                                let single = l2 == 1 ? k.l2sq_f16(qb.baseAddress!, hb.baseAddress! + r * stride, dim)
                                    : k.dot_f16(qb.baseAddress!, hb.baseAddress! + r * stride, dim)
                                #expect(Self.close(single, exact, 3 * dim, l2 == 1 ? exact : magnitude),
                                        "\(isa) \(l2 == 1 ? "l2sq_f16" : "dot_f16") d \(dim) row \(r): \(single) vs \(exact)")
                            }
                        }
                    }
                }
            }
        }
    }

    @Test("certified bounds: never below any variant's float32 score, close to it, and the same for listed rows",
          arguments: names)
    func certifiedBounds(isa: String) throws {
        let k = try #require(vs_distance_variant(isa))
        var rng = SeededRandom(seed: 13)
        for dim in Self.dimensions {
            let n = 150  // more than one 64-row chunk, and a partial one
            var x = Self.rows(n, dim, &rng)
            x[5] = [Float](repeating: 0, count: dim)
            x[6][0] = 70_000  // its copy overflows binary16: the bound is +inf
            var halves = [UInt16](repeating: 0, count: n * dim)
            for r in 0..<n { for i in 0..<dim { halves[r * dim + i] = Float16(x[r][i]).bitPattern } }
            let listed: [UInt32] = (0..<97).map { UInt32(($0 * 61) % n) }
            for trial in 0..<6 {
                var q = rng.vector(dim)
                if trial % 3 == 1 { q = x[(trial * 17) % n].map { $0 == 70_000 ? 1 : $0 } }
                if trial == 2 { q = q.map { $0 * 0x1p-20 } }
                let qn2 = q.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() * (1 + 0x1p-40)
                let qn1 = q.reduce(0.0) { $0 + abs(Double($1)) } * (1 + 0x1p-40)
                for l2 in [Int32(0), 1] {
                    var ub = [Float](repeating: 0, count: n), ubListed = [Float](repeating: 0, count: listed.count)
                    q.withUnsafeBufferPointer { qb in
                        halves.withUnsafeBufferPointer { hb in
                            vs_f16_upper_many_with(k, qb.baseAddress!, qn2, qn1, hb.baseAddress!, n, dim, dim, l2, &ub)
                            vs_f16_upper_rows_with(k, qb.baseAddress!, qn2, qn1, hb.baseAddress!, listed, listed.count,
                                                   dim, dim, l2, &ubListed)
                        }
                        for r in 0..<n {
                            let scores = Self.variants.map { v in
                                x[r].withUnsafeBufferPointer { rb in
                                    l2 == 1 ? -v.pointee.l2(qb.baseAddress!, rb.baseAddress!, dim)
                                        : v.pointee.dot(qb.baseAddress!, rb.baseAddress!, dim)
                                }
                            }
                            for (v, s) in zip(Self.variants, scores) {
                                #expect(!(ub[r] < s), "\(isa) d \(dim) row \(r) l2 \(l2): bound \(ub[r]) below \(Self.name(v))'s \(s)")
                            }
                            if r == 6 { #expect(ub[r] == .infinity, "\(isa) d \(dim): an overflowed copy must be re-scored") }
                            // Not a vacuous bound: within the binary16 rounding of the exact score.
                            var exact = 0.0, xn2 = 0.0
                            for i in 0..<dim {
                                let qi = Double(q[i]), xi = Double(x[r][i])
                                exact += l2 == 1 ? -(qi - xi) * (qi - xi) : qi * xi
                                xn2 += xi * xi
                            }
                            let xn = xn2.squareRoot()
                            // l2: |q - x| is known to within binary16's relative and subnormal spacing.
                            let subnormal = 0x1p-25 * Double(dim).squareRoot()
                            let spread: Double = l2 == 1 ? abs(exact) + xn2 : 0
                            let floor: Double = l2 == 1 ? 4 * (abs(exact).squareRoot() + subnormal) * subnormal : 0
                            let room: Double = 0x1p-9 * (qn2 * xn + spread) + floor + qn1 * 0x1p-23 + 1e-30
                            if r != 6 { #expect(Double(ub[r]) - exact <= room, "\(isa) d \(dim) row \(r) l2 \(l2): bound \(ub[r]) far above \(exact)") }
                        }
                    }
                    #expect(listed.enumerated().allSatisfy { ubListed[$0.offset].bitPattern == ub[Int($0.element)].bitPattern },
                            "\(isa) d \(dim) l2 \(l2): listed rows differ from the streamed rows")
                    // The scattered-pointer form (the selective-filter scan) gives the same bits, whatever
                    // the prefetch distance.
                    for ahead in [0, 1, 8, 200] {
                        var ubPtrs = [Float](repeating: .nan, count: listed.count)
                        q.withUnsafeBufferPointer { qb in
                            halves.withUnsafeBufferPointer { hb in
                                let ptrs: [UnsafePointer<UInt16>?] = listed.map { hb.baseAddress! + Int($0) * dim }
                                ptrs.withUnsafeBufferPointer { pb in
                                    vs_f16_upper_ptrs_with(k, qb.baseAddress!, qn2, qn1, pb.baseAddress!, listed.count,
                                                           dim, l2, ahead, &ubPtrs)
                                }
                            }
                        }
                        #expect(zip(ubPtrs, ubListed).allSatisfy { $0.bitPattern == $1.bitPattern },
                                "\(isa) d \(dim) l2 \(l2) ahead \(ahead): pointer rows differ from listed rows")
                    }
                    // An infinite query norm bound: every row is re-scored.
                    var unbounded = [Float](repeating: 0, count: n)
                    q.withUnsafeBufferPointer { qb in
                        halves.withUnsafeBufferPointer { hb in
                            vs_f16_upper_many_with(k, qb.baseAddress!, .infinity, qn1, hb.baseAddress!, n, dim, dim, l2, &unbounded)
                        }
                    }
                    #expect(unbounded.allSatisfy { $0 == .infinity })
                }
            }
        }
    }

    /// Floats that exercise every rounding case of binary32 → binary16: every upper half-word (so every
    /// sign, exponent — zeros, subnormals, normals, the overflow edge, infinities, quiet and signalling
    /// NaNs — and top mantissa bits) with lower half-words putting the discarded bits exactly at a tie,
    /// one ulp either side of it, at zero and all ones (for normals the tie bit is bit 12; for binary16
    /// subnormals it moves up to bit 23, which the upper half-word covers), then random bit patterns.
    static func conversionInputs() -> [Float] {
        var lows: [UInt32] = []
        for high3 in 0..<UInt32(8) {
            for low13: UInt32 in [0, 1, 0x0FFF, 0x1000, 0x1001, 0x1FFF] { lows.append(high3 << 13 | low13) }
        }
        var out: [Float] = []
        out.reserveCapacity(65_536 * lows.count + 100_000)
        for upper in 0..<UInt32(65_536) {
            for low in lows { out.append(Float(bitPattern: upper << 16 | low)) }
        }
        var rng = SeededRandom(seed: 16)
        for _ in 0..<100_000 { out.append(Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))) }
        return out
    }

    @Test("binary32 → binary16: every variant gives Float16(x)'s bits for every rounding case, NaN and inf included",
          arguments: names)
    func halfConversion(isa: String) throws {
        let k = try #require(vs_distance_variant(isa)).pointee
        let x = Self.conversionInputs()
        let expected = x.map { Float16($0).bitPattern }
        var got = [UInt16](repeating: 0xABCD, count: x.count)
        x.withUnsafeBufferPointer { xb in got.withUnsafeMutableBufferPointer { k.f32_to_f16(xb.baseAddress!, $0.baseAddress!, x.count) } }
        var wrong = 0
        for i in 0..<x.count where got[i] != expected[i] {
            if wrong < 5 {
                Issue.record("\(isa): \(String(x[i].bitPattern, radix: 16)) → \(String(got[i], radix: 16)), Float16 gives \(String(expected[i], radix: 16))")
            }
            wrong += 1
        }
        #expect(wrong == 0, "\(isa): \(wrong) of \(x.count) conversions differ")
        // Every length up to two vector widths and every start offset: the tails match and nothing past
        // `n` is written.
        for n in 0...40 {
            for offset in 0..<3 {
                var out = [UInt16](repeating: 0xABCD, count: n + 1)
                x.withUnsafeBufferPointer { xb in
                    out.withUnsafeMutableBufferPointer { k.f32_to_f16(xb.baseAddress! + 1_000 + offset, $0.baseAddress!, n) }
                }
                #expect(Array(out[0..<n]) == Array(expected[(1_000 + offset)..<(1_000 + offset + n)]), "\(isa) n \(n)")
                #expect(out[n] == 0xABCD, "\(isa) n \(n): wrote past the end")
            }
        }
    }
}

extension KernelVariantTests {
    @Test("two-query many-row kernels: each query's values are its one-query kernel's bits (every tail length, NaN and inf components, the same query twice)",
          arguments: names)
    func twoQueryManyRows(isa: String) throws {
        let k = try #require(vs_distance_variant(isa)).pointee
        var rng = SeededRandom(seed: 9)
        for dim in Self.dimensions {
            let n = 11
            var x = Self.rows(n, dim, &rng).map { $0.map { $0 / 64 } }
            x[3][dim / 2] = .nan
            x[5][0] = .infinity
            let flat = x.flatMap { $0 }
            var queries = (0..<5).map { _ in rng.vector(dim) }
            queries[2][dim - 1] = .nan
            queries.append(queries[0])  // a pair of equal queries
            for a in 0..<queries.count {
                let b = (a + 1) % queries.count
                var dotA = [Float](repeating: 0, count: n), dotB = dotA, l2A = dotA, l2B = dotA
                var oneA = dotA, oneB = dotA, oneL2A = dotA, oneL2B = dotA
                queries[a].withUnsafeBufferPointer { qa in
                    queries[b].withUnsafeBufferPointer { qb in
                        flat.withUnsafeBufferPointer { xb in
                            k.dot_many2(qa.baseAddress!, qb.baseAddress!, xb.baseAddress!, n, dim, &dotA, &dotB)
                            k.l2_many2(qa.baseAddress!, qb.baseAddress!, xb.baseAddress!, n, dim, &l2A, &l2B)
                            k.dot_many(qa.baseAddress!, xb.baseAddress!, n, dim, &oneA)
                            k.dot_many(qb.baseAddress!, xb.baseAddress!, n, dim, &oneB)
                            k.l2_many(qa.baseAddress!, xb.baseAddress!, n, dim, &oneL2A)
                            k.l2_many(qb.baseAddress!, xb.baseAddress!, n, dim, &oneL2B)
                        }
                    }
                }
                func same(_ u: Float, _ v: Float) -> Bool { u.bitPattern == v.bitPattern || (u.isNaN && v.isNaN) }
                for r in 0..<n {
                    #expect(same(dotA[r], oneA[r]) && same(dotB[r], oneB[r]), "\(isa) dot d \(dim) queries \(a), \(b) row \(r)")
                    #expect(same(l2A[r], oneL2A[r]) && same(l2B[r], oneL2B[r]), "\(isa) l2 d \(dim) queries \(a), \(b) row \(r)")
                    #expect(dotA[r].isNaN == oneA[r].isNaN && l2B[r].isNaN == oneL2B[r].isNaN)
                }
            }
        }
    }
}
