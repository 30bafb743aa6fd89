import CQuant
import Testing
import VecStoreKernels
@testable import VecStoreQuant

@Suite struct ScalarQuantizerTests {
    @Test(arguments: [ScalarQuantizer8.Granularity.global, .perDimension])
    func roundTripStaysWithinErrorBoundAndClamps(granularity: ScalarQuantizer8.Granularity) throws {
        let dim = 67, n = 100
        var data = uniformData(count: n * dim, seed: 12)
        for i in 0..<n { for t in 0..<dim where t % 3 == 0 { data[i * dim + t] *= 5 } }  // uneven ranges
        let sq = try data.withUnsafeBufferPointer { try ScalarQuantizer8.train($0.baseAddress!, count: n, dimension: dim, granularity: granularity) }
        var codes = [Int8](repeating: 0, count: n * dim)
        var decoded = [Float](repeating: 0, count: n * dim)
        data.withUnsafeBufferPointer { d in codes.withUnsafeMutableBufferPointer { sq.encode(d.baseAddress!, count: n, into: $0.baseAddress!) } }
        codes.withUnsafeBufferPointer { c in decoded.withUnsafeMutableBufferPointer { sq.decode(c.baseAddress!, count: n, into: $0.baseAddress!) } }
        for i in 0..<(n * dim) {
            #expect(abs(decoded[i] - data[i]) <= sq.componentErrorBound * 1.001 + 1e-6)
        }
        // Out-of-range values clamp instead of wrapping.
        var far = [Float](repeating: 1e6, count: dim)
        far[1] = -1e6
        var farCodes = [Int8](repeating: 0, count: dim)
        far.withUnsafeBufferPointer { f in farCodes.withUnsafeMutableBufferPointer { sq.encode(f.baseAddress!, count: 1, into: $0.baseAddress!) } }
        #expect(farCodes[0] == 127 && farCodes[1] == -127)
    }

    @Test func int8KernelMatchesReference() {
        var rng = SplitMix64(seed: 21)
        for n in [1, 7, 16, 31, 32, 33, 100, 384, 1000] {
            let a = (0..<n).map { _ in Int8(truncatingIfNeeded: rng.below(256) - 128) }
            let q = (0..<n).map { _ in Float.random(in: -2...2, using: &rng) }
            a.withUnsafeBufferPointer { ap in q.withUnsafeBufferPointer { qp in
                let pa = ap.baseAddress!, pq = qp.baseAddress!
                let d1 = vq_dot_f32_i8(pq, pa, n), d2 = vq_dot_f32_i8_reference(pq, pa, n)
                #expect(abs(d1 - d2) <= 1e-4 * max(1, abs(d2)))
            } }
        }
    }

    @Test func rejectsBadParameters() {
        #expect(throws: QuantError.self) { try ScalarQuantizer8(dimension: 2, granularity: .global, offsets: [0, 0], scales: [1, 0]) }
        #expect(throws: QuantError.self) { try ScalarQuantizer8(dimension: 2, granularity: .global, offsets: [.nan, 0], scales: [1, 1]) }
        #expect(throws: QuantError.self) { try ScalarQuantizer8(dimension: 3, granularity: .global, offsets: [0, 0], scales: [1, 1]) }
    }
}
