import Foundation
import Testing
@testable import VecStore

@Suite struct DedupTests {
    @Test func selfJoinFindsExactlyThePairsOverTheThreshold() throws {
        let path = NSTemporaryDirectory() + "dedup-\(UUID().uuidString).vecstore"
        defer { for p in [path, path + "-lock"] { try? FileManager.default.removeItem(atPath: p) } }
        let store = try VecStore(path: path)
        let dim = 1000  // 256 rows per vector block, so 700 rows span three blocks
        let c = try store.collection("c", dimension: dim, metric: .cosine)
        var state: UInt64 = 7
        func rand() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2_000_001 - 1_000_000) / 1_000_000
        }
        var vectors: [[Float]] = (0..<700).map { _ in (0..<dim).map { _ in rand() } }
        // Planted near-duplicates within a block, across blocks, and one triple.
        for (src, dst) in [(3, 10), (5, 600), (300, 301), (300, 650), (100, 699)] {
            vectors[dst] = vectors[src].map { $0 + rand() * 0.05 }
        }
        try c.add(vectors.enumerated().map { Document(id: "v\($0.offset)", vector: $0.element) })
        try c.delete(ids: ["v100"])  // a deleted row takes no part

        let found = try c.nearDuplicates(threshold: 0.9, threads: 2)
        // Brute force over live rows.
        var expected: [(String, String, Float)] = []
        let unit = vectors.map { v -> [Float] in
            let n = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            return v.map { $0 / n }
        }
        for i in 0..<700 where i != 100 {
            for j in (i + 1)..<700 where j != 100 {
                let s = unit[i].withUnsafeBufferPointer { a in unit[j].withUnsafeBufferPointer { b in
                    dotProduct(a.baseAddress!, b.baseAddress!, dim) } }
                if s >= 0.9 { expected.append(("v\(i)", "v\(j)", s)) }
            }
        }
        #expect(expected.count == 5)  // (3,10) (5,600) (300,301) (300,650) (301,650)
        #expect(Set(found.map { $0.a + "|" + $0.b }) == Set(expected.map { $0.0 + "|" + $0.1 }))
        for p in found {
            let e = expected.first { $0.0 == p.a && $0.1 == p.b }
            #expect(abs((e?.2 ?? -1) - p.score) < 1e-4)
        }
        #expect(zip(found, found.dropFirst()).allSatisfy { $0.score >= $1.score })
        #expect(try c.nearDuplicates(threshold: 0.9, filter: .not(.field("nothing", .exists)), threads: 1).count == 5)
        // The same pairs by the exact self-join and through the HNSW graph (the collection has one).
        let exact = try c.nearDuplicates(threshold: 0.9, method: .exact, threads: 2)
        #expect(exact.map { $0.a + "|" + $0.b } == found.map { $0.a + "|" + $0.b })
        let flat = try store.collection("flat", dimension: dim, metric: .cosine, index: .flat)
        try flat.add(vectors.enumerated().map { Document(id: "v\($0.offset)", vector: $0.element) })
        #expect(Set(try flat.nearDuplicates(threshold: 0.9).map { $0.a + "|" + $0.b }).count == 6)
    }
}
