import Testing
@testable import VecStore

/// `IVFModel.best` (the batched probe search's per-query selection) picks the same lists in the same order
/// on both of its paths — the sorted buffer (nprobe ≤ 16) and the quickselect of keys above it — as a full
/// sort by score (ties to the lower list, NaN never picked), with many ties.
@Suite struct IVFProbeSelectionTests {
    @Test(arguments: [1, 2, 8, 16, 17, 64, 255, 256])
    func bestMatchesSort(p: Int) {
        let nlist = 256
        var state: UInt64 = UInt64(p) &* 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 33
        }
        for round in 0..<20 {
            var line = (0..<nlist).map { _ in Float(Int(next() % (round % 2 == 0 ? 7 : 100_000)) - 50) }
            if round % 5 == 4 { line[Int(next() % UInt64(nlist))] = .nan }
            if round % 7 == 6 { line[3] = -0.0; line[9] = 0.0 }
            let expected = (0..<nlist).filter { !line[$0].isNaN }
                .sorted { line[$0] > line[$1] || (line[$0] == line[$1] && $0 < $1) }.prefix(p).map { UInt32($0) }
            var keys = [UInt64](repeating: 0, count: nlist)
            var dst = [UInt32](repeating: 0, count: p)
            let held = line.withUnsafeBufferPointer { l in
                keys.withUnsafeMutableBufferPointer { k in
                    dst.withUnsafeMutableBufferPointer { d in
                        IVFModel.best(l.baseAddress!, count: nlist, p: p, into: d.baseAddress!, keys: k.baseAddress)
                    }
                }
            }
            #expect(Array(dst.prefix(held)) == expected, "p \(p) round \(round)")
        }
    }

    /// The scalar scan `best` used for nprobe 1 before its sixteen-lane form: the first maximum, NaN never
    /// picked, list 0 when every score is NaN.
    static func scalarNearest(_ line: [Float]) -> UInt32 {
        var bestScore = -Float.infinity, bestList = -1
        for (j, s) in line.enumerated() where s > bestScore || (bestList < 0 && s == bestScore) {
            bestScore = s
            bestList = j
        }
        return UInt32(max(bestList, 0))
    }

    @Test("nprobe 1: the sixteen-lane maximum picks the scalar scan's list (tails, NaN, ±0, ±∞, all NaN)")
    func nearestMatchesScalarScan() {
        var state: UInt64 = 0x1234_5678
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 33
        }
        let specials: [Float] = [.nan, -0.0, 0.0, .infinity, -.infinity]
        for nlist in [1, 2, 15, 16, 17, 31, 33, 100, 257] {
            for round in 0..<40 {
                var line = (0..<nlist).map { _ in Float(Int(next() % (round % 3 == 0 ? 3 : 1000)) - 500) }
                for _ in 0..<(round % 4) { line[Int(next() % UInt64(nlist))] = specials[Int(next() % 5)] }
                if round == 38 { line = line.map { _ in .nan } }
                if round == 39 { line = line.enumerated().map { $0.offset % 2 == 0 ? .nan : -.infinity } }
                var dst: [UInt32] = [7]
                let held = line.withUnsafeBufferPointer { l in
                    dst.withUnsafeMutableBufferPointer { d in
                        IVFModel.best(l.baseAddress!, count: nlist, p: 1, into: d.baseAddress!, keys: nil)
                    }
                }
                #expect(held == 1)
                #expect(dst[0] == Self.scalarNearest(line), "nlist \(nlist) round \(round)")
            }
        }
    }

    @Test("L2 ranking values: the sixteen-lane 2·x − |c|² gives the scalar expression's bits")
    func rankMatchesScalar() {
        var state: UInt64 = 0xABCD
        func next() -> Float {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(bitPattern: UInt32(truncatingIfNeeded: state >> 32) & 0x7F7F_FFFF | (state & 1 == 0 ? 0 : 0x8000_0000))
        }
        for n in [1, 15, 16, 17, 100, 129] {
            var line = (0..<n).map { _ in next() }
            let norms = (0..<n).map { _ in next() }
            let want = zip(line, norms).map { 2 * $0 - $1 }
            line.withUnsafeMutableBufferPointer { l in
                norms.withUnsafeBufferPointer { c in IVFModel.rank(l.baseAddress!, norms: c.baseAddress!, count: n) }
            }
            #expect(line.map(\.bitPattern) == want.map(\.bitPattern), "n \(n)")
        }
    }
}
