import CEmbed
import Foundation
import Testing

/// The encoder's element-wise kernels, each variant this CPU runs (AVX2+FMA, portable) called through its
/// table (`ve_variant`) against a scalar reference in double precision, whichever the process dispatches to.
@Suite("Encoder kernel variants")
struct EmbedKernelVariantTests {
    /// The variants this CPU runs (the portable one always).
    static let names: [String] = ["avx2", "generic"].filter { ve_variant($0) != nil }

    /// Values in -scale...scale from a fixed sequence (SplitMix64).
    static func values(_ n: Int, seed: UInt64, scale: Float = 4) -> [Float] {
        var state = seed
        return (0..<n).map { _ in
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return (Float(z >> 40) / Float(1 << 24) * 2 - 1) * scale
        }
    }

    @Test("the portable variant is always there; unknown names have none")
    func variants() {
        #expect(Self.names.last == "generic")
        #expect(ve_variant("portable") == ve_variant("generic") && ve_variant("sse9") == nil && ve_variant(nil) == nil)
    }

    @Test("bias, GELU, residual LayerNorm and softmax against a double reference", arguments: names)
    func againstReference(isa: String) throws {
        let k = try #require(ve_variant(isa)).pointee
        // Widths around the 8-lane vectors, with a row stride past the columns that must stay untouched.
        for cols in [1, 7, 8, 9, 31, 384, 1_537] {
            let rows = 3, ld = cols + 5
            let x = Self.values(rows * ld, seed: UInt64(cols)), bias = Self.values(cols, seed: 99, scale: 1)
            var added = x, gelu = x
            k.add_bias(&added, rows, cols, ld, bias)
            k.bias_gelu(&gelu, rows, cols, ld, bias)
            for r in 0..<rows {
                for c in 0..<ld {
                    let i = r * ld + c
                    guard c < cols else {
                        #expect(added[i] == x[i] && gelu[i] == x[i], "\(isa): column \(c) past \(cols) was written")
                        continue
                    }
                    #expect(added[i] == x[i] + bias[c], "\(isa) add_bias \(cols) [\(r), \(c)]")
                    let v = Double(x[i] + bias[c])
                    let exact = 0.5 * v * (1 + erf(v / 2.0.squareRoot()))
                    #expect(abs(Double(gelu[i]) - exact) <= 1e-6 * max(1, abs(v)), "\(isa) gelu(\(v)) = \(gelu[i]), not \(exact)")
                }
            }
            // Residual LayerNorm over contiguous rows, with and without bias and residual.
            let gamma = Self.values(cols, seed: 7, scale: 2), beta = Self.values(cols, seed: 8, scale: 1)
            let residual = Self.values(rows * cols, seed: 9)
            for (useBias, useResidual) in [(true, true), (false, false), (false, true)] {
                var y = Array(x.prefix(rows * cols))
                let input = y
                bias.withUnsafeBufferPointer { b in
                    residual.withUnsafeBufferPointer { res in
                        k.layernorm(&y, rows, cols, useBias ? b.baseAddress : nil, useResidual ? res.baseAddress : nil,
                                    gamma, beta, 1e-12)
                    }
                }
                for r in 0..<rows {
                    let v = (0..<cols).map { c in
                        Double(input[r * cols + c]) + (useBias ? Double(bias[c]) : 0)
                            + (useResidual ? Double(residual[r * cols + c]) : 0)
                    }
                    let mean = v.reduce(0, +) / Double(cols)
                    let sd = (v.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(cols) + 1e-12).squareRoot()
                    for c in 0..<cols {
                        let exact = (v[c] - mean) / sd * Double(gamma[c]) + Double(beta[c])
                        #expect(abs(Double(y[r * cols + c]) - exact) <= 2e-5 * (1 + abs(Double(gamma[c])) * abs(v[c] - mean) / sd),
                                "\(isa) layernorm \(cols) [\(r), \(c)]: \(y[r * cols + c]) vs \(exact)")
                    }
                }
            }
            // Softmax of 0.125 x over the first `cols` of each row.
            var s = x
            k.softmax(&s, rows, cols, ld, 0.125)
            for r in 0..<rows {
                let row = (0..<cols).map { Double(x[r * ld + $0]) * 0.125 }
                let m = row.max() ?? 0
                let total = row.reduce(0) { $0 + exp($1 - m) }
                for c in 0..<ld {
                    if c >= cols { #expect(s[r * ld + c] == x[r * ld + c]); continue }
                    let exact = exp(row[c] - m) / total
                    #expect(abs(Double(s[r * ld + c]) - exact) <= 2e-6 * exact + 1e-9, "\(isa) softmax \(cols) [\(r), \(c)]")
                }
            }
        }
    }
}
