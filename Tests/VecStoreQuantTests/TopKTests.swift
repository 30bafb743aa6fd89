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
