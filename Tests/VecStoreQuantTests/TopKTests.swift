import Testing
import VecStoreKernels

/// `TopK` against a full sort: the heap built once at the k-th insert, the root replaced afterwards.
struct TopKTests {
    /// The k best of `items` by the selection's rule (higher score, then lower id), best first.
    static func reference(_ items: [(Float, UInt32)], k: Int) -> [(id: UInt32, score: Float)] {
        let sorted = items.sorted { $0.0 > $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
        return sorted.prefix(k).map { (id: $0.1, score: $0.0) }
    }

    @Test(arguments: [0, 1, 2, 3, 7, 64])
    func matchesSort(k: Int) {
        var rng = SystemRandomNumberGenerator()
        for n in [0, 1, 2, k, k + 1, 200] {
            // Few distinct scores, so ties at the threshold are common.
            let items = (0..<n).map { (Float(Int.random(in: 0..<8, using: &rng)), UInt32($0 * 7919 % 1009)) }
            var top = TopK(k: k)
            for (s, id) in items { top.insert(s, id) }
            let got = top.sorted(), want = Self.reference(items, k: k)
            #expect(got.map(\.id) == want.map(\.id), "k \(k) n \(n)")
            #expect(got.map(\.score) == want.map(\.score), "k \(k) n \(n)")
            var held = Set<UInt32>()
            top.forEachUnordered { _, id in held.insert(id) }
            #expect(held == Set(want.map(\.id)))
            #expect(top.threshold == (k == 0 ? .infinity : n < k ? -.infinity : want.last?.score ?? -.infinity))
        }
    }

    @Test("a NaN score never enters: one among the first k does not freeze the heap")
    func nanNeverEnters() {
        for k in [1, 3, 10] {
            for nanAt in [0, 1, k - 1, k, k + 5] {
                var items: [(Float, UInt32)] = (0..<40).map { (Float(($0 * 37) % 41), UInt32($0)) }
                items.insert((.nan, 999), at: min(nanAt, items.count))
                var top = TopK(k: k)
                for (s, id) in items { top.insert(s, id) }
                let want = Self.reference(items.filter { !$0.0.isNaN }, k: k)
                #expect(top.sorted().map(\.id) == want.map(\.id), "k \(k), NaN at \(nanAt)")
                #expect(!top.threshold.isNaN)
                var merged = TopK(k: k)
                merged.merge(top)
                merged.insert(.nan, 1000)
                #expect(merged.sorted().map(\.id) == want.map(\.id))
            }
        }
    }
}

/// The packed `TopK` (one array of `k` slots, a kept threshold, `withInserter`) against the two-array heap it
/// replaced, kept here as the reference: after every insert the same threshold (bits), count and held
/// entries in the same heap order, and the same sorted result, on random streams with ties, NaN, ±0 and ±∞.
struct TopKReferenceTests {
    /// The previous implementation (scores and ids in two arrays, the threshold read from the root).
    struct OldTopK {
        let k: Int
        var scores: [Float] = []
        var ids: [UInt32] = []
        init(k: Int) { self.k = max(0, k) }
        var threshold: Float { scores.count < k ? -.infinity : scores.first ?? .infinity }
        static func worse(_ s1: Float, _ i1: UInt32, _ s2: Float, _ i2: UInt32) -> Bool {
            s1 < s2 || (s1 == s2 && i1 > i2)
        }
        mutating func insert(_ score: Float, _ id: UInt32) {
            if scores.count < k {
                if score.isNaN { return }
                scores.append(score)
                ids.append(id)
                if scores.count == k {
                    var start = k / 2 - 1
                    while start >= 0 {
                        siftDown(from: start, scores[start], ids[start])
                        start -= 1
                    }
                }
                return
            }
            guard k > 0, Self.worse(scores[0], ids[0], score, id) else { return }
            siftDown(from: 0, score, id)
        }
        mutating func siftDown(from start: Int, _ score: Float, _ id: UInt32) {
            let n = scores.count
            var parent = start
            while true {
                let left = 2 * parent + 1
                if left >= n { break }
                var worst = left
                let right = left + 1
                if right < n && Self.worse(scores[right], ids[right], scores[left], ids[left]) { worst = right }
                guard Self.worse(scores[worst], ids[worst], score, id) else { break }
                scores[parent] = scores[worst]
                ids[parent] = ids[worst]
                parent = worst
            }
            scores[parent] = score
            ids[parent] = id
        }
    }

    static func held(_ top: TopK) -> [UInt64] {
        var out: [UInt64] = []
        top.forEachUnordered { s, id in out.append(UInt64(s.bitPattern) << 32 | UInt64(id)) }
        return out
    }

    static func held(_ top: OldTopK) -> [UInt64] {
        zip(top.scores, top.ids).map { UInt64($0.bitPattern) << 32 | UInt64($1) }
    }

    @Test(arguments: [0, 1, 2, 3, 10, 33])
    func sameAsTheTwoArrayHeap(k: Int) {
        var rng = SplitMix64(seed: 0x70_4B + UInt64(k))  // seeded: a failure replays
        let specials: [Float] = [.nan, 0, -0.0, .infinity, -.infinity, 1, -1]
        for round in 0..<60 {
            let n = Int.random(in: 0..<300, using: &rng)
            // Few distinct scores (ties at the threshold), specials, and ids that repeat scores.
            let items: [(Float, UInt32)] = (0..<n).map { i in
                let s: Float = Int.random(in: 0..<10, using: &rng) == 0
                    ? specials.randomElement(using: &rng) ?? 0
                    : Float(Int.random(in: -6..<6, using: &rng)) * (round % 2 == 0 ? 1 : 0.5)
                return (s, UInt32.random(in: 0..<UInt32(max(1, 4 * n)), using: &rng) &* 2 &+ UInt32(i % 2))
            }
            var old = OldTopK(k: k), new = TopK(k: k), viaInserter = TopK(k: k)
            for (j, (s, id)) in items.enumerated() {
                old.insert(s, id)
                new.insert(s, id)
                #expect(new.threshold.bitPattern == old.threshold.bitPattern, "k \(k) round \(round) item \(j)")
                #expect(new.count == old.scores.count)
                #expect(Self.held(new) == Self.held(old), "k \(k) round \(round) item \(j): heap order")
            }
            // The scan's way: the threshold test, then the inserter's insert, seven rows a call.
            for start in stride(from: 0, to: items.count, by: 7) {
                viaInserter.withInserter { ins in
                    for (s, id) in items[start..<min(items.count, start + 7)] where s >= ins.threshold { ins.insert(s, id) }
                }
            }
            #expect(Self.held(viaInserter) == Self.held(new), "k \(k) round \(round): inserter")
            #expect(viaInserter.threshold.bitPattern == new.threshold.bitPattern)
            let sorted = new.sorted()
            let want = zip(old.scores, old.ids).map { (id: $1, score: $0) }
                .sorted { $0.score > $1.score || ($0.score == $1.score && $0.id < $1.id) }
            #expect(sorted.map(\.id) == want.map(\.id))
            #expect(sorted.map(\.score.bitPattern) == want.map(\.score.bitPattern))
            new.withSorted { hits in
                #expect(hits.map(\.id) == sorted.map(\.id))
                #expect(hits.map(\.score.bitPattern) == sorted.map(\.score.bitPattern))
            }
            if new.count <= TopK.insertionSortLimit {
                // The stack-buffer sort `resolve` uses, directly.
                let few = [(id: UInt32, score: Float)](unsafeUninitializedCapacity: max(new.count, 1)) { b, n in
                    n = b.baseAddress.map { new.fewSorted(into: $0) } ?? 0
                }
                #expect(few.map(\.id) == sorted.map(\.id))
                #expect(few.map(\.score.bitPattern) == sorted.map(\.score.bitPattern))
            }
            var merged = TopK(k: k)
            merged.merge(new)
            #expect(merged.sorted().map(\.id) == sorted.map(\.id))
            new.removeAll()
            #expect(new.count == 0 && new.threshold == (k == 0 ? .infinity : -.infinity))
        }
    }
}
