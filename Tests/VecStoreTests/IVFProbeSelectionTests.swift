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
}
