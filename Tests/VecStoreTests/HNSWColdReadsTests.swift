import Foundation
import LMDB
import Testing
@testable import VecStore
@testable import VecStoreKernels

/// SplitMix64 for the tests' vectors.
private struct ColdRand {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func float() -> Float { Float(next() >> 40) / Float(1 << 24) * 2 - 1 }
    mutating func vector(_ d: Int) -> [Float] { (0..<d).map { _ in float() } }
}

/// Cold reads (Spec/HNSW.md §5.2): a search reading link lists, binary16 copies and float32 rows with
/// `pread` returns what the search through the map returns, and bad file reads fall back to the map.
@Suite("HNSW cold reads")
struct HNSWColdReadsTests {
    private static func path(_ tag: String) -> String {
        NSTemporaryDirectory() + "cold-\(tag)-\(UUID().uuidString).vecstore"
    }

    private static func cleanup(_ path: String) {
        for p in [path, path + "-lock", path + "-guard"] { try? FileManager.default.removeItem(atPath: p) }
    }

    private static func docs(_ n: Int, dim: Int, seed: UInt64) -> [Document] {
        var r = ColdRand(state: seed)
        let centres = (0..<20).map { _ in r.vector(dim) }
        return (0..<n).map { i in
            let c = centres[Int(r.next() % 20)]
            return Document(id: "d\(i)", vector: c.map { $0 + 0.3 * r.float() },
                            metadata: ["tag": .string(i % 3 == 0 ? "three" : "other")])
        }
    }

    /// Each query's top 10 (ids and scores) through `HNSWSearch.run` with `reads` (nil: the map).
    private static func tops(_ view: HNSWIndexView, _ queries: [[Float]], mask: CandidateMask?, reads: MapReads?,
                             threads: Int = 1) -> [[(id: UInt32, score: Float)]] {
        let flat = queries.flatMap { $0 }
        return flat.withUnsafeBufferPointer { q in
            HNSWSearch.run(view.vectors, view.graph, metric: view.metric, queries: q.baseAddress!, count: queries.count,
                           k: 10, ef: 40, allowed: mask, threads: threads, reads: reads).map { $0.sorted() }
        }
    }

    @Test("a search through pread returns the map's ids and scores (l2, cosine; unfiltered, filtered, batched)")
    func coldEqualsMap() throws {
        let path = Self.path("eq")
        defer { Self.cleanup(path) }
        let store = try VecStore(path: path)
        var r = ColdRand(state: 3)
        let queries = (0..<12).map { _ in r.vector(48) }
        for metric in [Metric.l2, .cosine] {
            let c = try store.collection("c\(metric)", dimension: 48, metric: metric,
                                         index: .hnsw(HNSWParameters(m: 8, efConstruction: 60, efSearch: 40)))
            try c.add(Self.docs(4000, dim: 48, seed: 7))
            try store.read { txn in
                let snap = try c.snapshot(txn)
                let view = try #require(snap.index as? HNSWIndexView)
                #expect(view.reads != nil)
                var words = [UInt64](repeating: 0, count: (4000 + 63) / 64)
                for i in 0..<4000 where i % 3 == 0 { words[i >> 6] |= 1 << UInt64(i & 63) }
                try words.withUnsafeBufferPointer { w in
                    var mask = CandidateMask(words: w.baseAddress!, wordCount: w.count)
                    mask.matches = 1334
                    for allowed in [nil, mask] {
                        // 255: every region is read with pread all but once in 255 reads.
                        let reads = MapReads(buyAfter: 255) { store.env.mappedFile() }
                        let expected = Self.tops(view, queries, mask: allowed, reads: nil)
                        let cold = Self.tops(view, queries, mask: allowed, reads: reads)
                        #expect(cold.map { $0.map { $0.id } } == expected.map { $0.map { $0.id } })
                        #expect(cold.map { $0.map { $0.score } } == expected.map { $0.map { $0.score } })
                        #expect(reads.preads > 0)
                        let batched = Self.tops(view, queries, mask: allowed, reads: MapReads(buyAfter: 255) {
                            store.env.mappedFile()
                        }, threads: 2)
                        #expect(batched.map { $0.map { $0.id } } == expected.map { $0.map { $0.id } })
                        _ = try #require(expected.first?.first)
                    }
                }
            }
        }
    }

    @Test("reads from a wrong, short or missing file fall back to the map: same results, no pread kept")
    func badFileFallsBack() throws {
        let path = Self.path("bad")
        let other = Self.path("other")
        defer { Self.cleanup(path); Self.cleanup(other) }
        let store = try VecStore(path: path)
        let c = try store.collection("c", dimension: 32, metric: .dot,
                                     index: .hnsw(HNSWParameters(m: 8, efConstruction: 60, efSearch: 40)))
        try c.add(Self.docs(3000, dim: 32, seed: 11))
        var r = ColdRand(state: 4)
        let queries = (0..<6).map { _ in r.vector(32) }
        let found = try #require(store.env.mappedFile())
        // A file of the same length holding other bytes: the first read disagrees with the map.
        let wrongFD = open(other, O_RDWR | O_CREAT, 0o644)
        #expect(wrongFD >= 0)
        defer { close(wrongFD) }
        let junk = [UInt8](repeating: 0xAB, count: 1 << 16)
        var written = 0
        while written < found.length {
            let n = junk.withUnsafeBytes { pwrite(wrongFD, $0.baseAddress!, min(junk.count, found.length - written), off_t(written)) }
            #expect(n > 0)
            if n <= 0 { break }
            written += n
        }
        // The store file cut short: reads past its end come back short.
        let shortFD = open(other + "-short", O_RDWR | O_CREAT, 0o644)
        defer { close(shortFD); unlink(other + "-short") }
        #expect(ftruncate(shortFD, 4096) == 0)
        let resolvers: [(String, () -> (fd: Int32, base: UnsafeRawPointer, length: Int)?)] = [
            ("wrong bytes", { (wrongFD, found.base, found.length) }),
            ("short file", { (shortFD, found.base, found.length) }),
            ("closed descriptor", { (-1, found.base, found.length) }),
            ("mapping smaller than the reads", { (found.fd, found.base, 64) }),
            ("no mapping", { nil }),
        ]
        try store.read { txn in
            let view = try #require(try c.snapshot(txn).index as? HNSWIndexView)
            let expected = Self.tops(view, queries, mask: nil, reads: nil)
            for (name, resolve) in resolvers {
                let reads = MapReads(buyAfter: 255, resolve: resolve)
                let cold = Self.tops(view, queries, mask: nil, reads: reads)
                #expect(cold.map { $0.map { $0.id } } == expected.map { $0.map { $0.id } }, "\(name)")
                #expect(cold.map { $0.map { $0.score } } == expected.map { $0.map { $0.score } }, "\(name)")
                #expect(reads.preads == 0, "\(name)")
                // Nothing was read from the file: the queries found the map "mapped" and settle it.
                #expect(reads.settled, "\(name)")
            }
        }
    }

    @Test("regions are bought after buyAfter reads; a query that needs few preads settles the map")
    func settles() throws {
        let path = Self.path("settle")
        defer { Self.cleanup(path) }
        let store = try VecStore(path: path)
        let c = try store.collection("c", dimension: 32, metric: .cosine)
        try c.add(Self.docs(3000, dim: 32, seed: 5))
        var r = ColdRand(state: 6)
        let queries = (0..<40).map { _ in r.vector(32) }
        try store.read { txn in
            let view = try #require(try c.snapshot(txn).index as? HNSWIndexView)
            // Reads through the map at once: nothing from the file, settled after one query.
            let atOnce = MapReads(buyAfter: 1) { store.env.mappedFile() }
            _ = Self.tops(view, [queries[0]], mask: nil, reads: atOnce)
            #expect(atOnce.preads == 0 && atOnce.settled)
            // The default: the first query reads from the file; a small store's regions are soon bought,
            // and the map settles.
            let reads = MapReads { store.env.mappedFile() }
            let expected = Self.tops(view, queries, mask: nil, reads: nil)
            var got: [[(id: UInt32, score: Float)]] = []
            for q in queries where !reads.settled { got += Self.tops(view, [q], mask: nil, reads: reads) }
            #expect(reads.preads > 0)
            #expect(reads.settled)
            #expect(got.map { $0.map { $0.id } } == expected.prefix(got.count).map { $0.map { $0.id } })
        }
    }
}
