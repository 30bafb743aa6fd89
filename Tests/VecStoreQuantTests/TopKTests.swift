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
            #expect(Set(top.unorderedIDs) == Set(want.map(\.id)))
            #expect(top.threshold == (k == 0 ? .infinity : n < k ? -.infinity : want.last?.score ?? -.infinity))
        }
    }
}
