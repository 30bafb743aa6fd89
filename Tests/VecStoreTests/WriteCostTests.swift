import Foundation
import Testing
@testable import VecStore

/// A write must cost what its batch costs: a batch rewrites the graph blocks it changes, the tail
/// vector block and the blocks it appends, never the whole graph of a large collection.
@Suite("Write cost")
struct WriteCostTests {
    static let dimension = 1024  // 128 rows per block: many blocks from few rows
    static let clusters = 48
    static let perCluster = 128

    /// Cluster `c` fills exactly vector block `c`; its members lie close together, far from the others.
    static func clustered(_ rng: inout SeededRandom, centres: [[Float]], cluster: Int, count: Int, idPrefix: String)
        -> [Document]
    {
        (0..<count).map { i in
            let v = centres[cluster].map { $0 + Float.random(in: -0.05...0.05, using: &rng) }
            return Document(id: "\(idPrefix)-\(cluster)-\(i)", vector: v)
        }
    }

    /// Bytes this thread passed to write system calls (LMDB writes a commit's pages on the committing
    /// thread), or nil where `/proc/thread-self/io` is not available.
    static func threadWriteBytes() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/thread-self/io", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("wchar:") {
            return Int(line.dropFirst(6).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }

    /// Writes `docs` through the collection writer and returns the layer-0 blocks its graph update wrote.
    static func write(_ store: VecStore, _ collection: VectorCollection, _ docs: [Document]) throws -> Int {
        let prepared = try collection.prepare(docs)
        return try store.write { txn in
            var writer = try CollectionWriter(txn, store.dbs, name: collection.name, record: try collection.currentRecord(txn))
            try writer.append(prepared, replace: false)
            try writer.finish()
            return writer.indexBlocksWritten
        }
    }

    @Test("a 10-row batch and a 600-row batch rewrite only the graph blocks they touch")
    func batchTouchesItsBlocks() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("cost.vecstore"))
        let c = try store.collection("c", dimension: Self.dimension, metric: .l2,
                                     index: .hnsw(HNSWParameters(m: 16, efConstruction: 48)))
        var rng = SeededRandom(seed: 11)
        let centres = (0..<Self.clusters + 2).map { _ in rng.vector(Self.dimension) }
        var all: [Document] = []
        for cl in 0..<Self.clusters {
            all += Self.clustered(&rng, centres: centres, cluster: cl, count: Self.perCluster, idPrefix: "base")
        }
        for start in stride(from: 0, to: all.count, by: 1024) {
            try c.add(Array(all[start..<min(all.count, start + 1024)]))
        }
        let blocks = Self.clusters
        #expect(try c.info().blockCapacity == Self.perCluster)

        // 10 rows next to cluster 7: its block and the new block change.
        let small = Self.clustered(&rng, centres: centres, cluster: 7, count: 10, idPrefix: "small")
        let before = Self.threadWriteBytes()
        let smallBlocks = try Self.write(store, c, small)
        let after = Self.threadWriteBytes()
        #expect(smallBlocks >= 2 && smallBlocks <= 4, "10 rows rewrote \(smallBlocks) of \(blocks + 1) graph blocks")
        if let before, let after {
            // Whole layer 0 alone is 49 blocks × 128 slots × 132 bytes = 828 KB; the batch's own share
            // (10 vectors of 4 KiB, their binary16 copies, a few neighbour blocks, pages of docs, ids,
            // live and meta) is about 200 KB.
            let written = after - before
            #expect(written < 400_000, "a 10-row batch wrote \(written) bytes")
        }

        // 600 rows (the parallel path) next to clusters 3 and 30.
        let big = Self.clustered(&rng, centres: centres, cluster: 3, count: 300, idPrefix: "big")
            + Self.clustered(&rng, centres: centres, cluster: 30, count: 300, idPrefix: "big")
        let bigBlocks = try Self.write(store, c, big)
        // Clusters 3 and 30, the partly filled tail block and the 5 blocks the new rows fill: 9. The parallel
        // insert's interleaving is not deterministic, and now and then a new row links into a neighbouring
        // cluster's block (seen once as 10), so the bound leaves room for a few; the old whole-graph copy
        // rewrote all 53.
        #expect(bigBlocks <= 14, "600 rows rewrote \(bigBlocks) of \(blocks + 6) graph blocks")
        // (Recall of graphs built this way is tested in HNSWTests; these clusters are near-equidistant
        // blobs, a poor recall test.) The graph, its binary16 copies and the header are consistent.
        #expect(try store.verify().isOK)
    }

    @Test("a batch checks only the graph blocks it changes: damage elsewhere does not stop it, damage it touches does")
    func damageIsCheckedWhereTheBatchWrites() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("damage.vecstore"))
        let c = try store.collection("c", dimension: Self.dimension, metric: .l2,
                                     index: .hnsw(HNSWParameters(m: 16, efConstruction: 48)))
        var rng = SeededRandom(seed: 5)
        let centres = (0..<Self.clusters).map { _ in rng.vector(Self.dimension) }
        for cl in stride(from: 0, to: Self.clusters, by: 8) {
            var docs: [Document] = []
            for k in cl..<(cl + 8) {
                docs += Self.clustered(&rng, centres: centres, cluster: k, count: Self.perCluster, idPrefix: "base")
            }
            try c.add(docs)
        }
        // Slot 0 of cluster 40's layer-0 block claims 2³² − 1 links.
        let key = Format.key(c.collectionID, 40)
        try store.write { txn in
            guard let value = try txn.get(store.dbs.graph, key) else { throw VecStoreError.corrupt("no block 40") }
            var bytes = Array(value)
            bytes.replaceSubrange(0..<4, with: [0xFF, 0xFF, 0xFF, 0xFF])
            try txn.put(store.dbs.graph, key, bytes)
        }
        // A batch next to cluster 7 never copies block 40: it is written.
        let near = Self.clustered(&rng, centres: centres, cluster: 7, count: 10, idPrefix: "near")
        try c.add(near)
        #expect(try c.count() == Self.clusters * Self.perCluster + 10)
        // A batch into cluster 40 changes lists of block 40: the damage is reported, nothing is written.
        let far = Self.clustered(&rng, centres: centres, cluster: 40, count: 10, idPrefix: "far")
        let outcome = Result { () throws(VecStoreError) -> Void in try c.add(far) }
        guard case .failure(.corrupt(let message)) = outcome else {
            Issue.record("a batch that changes a damaged block gave \(outcome), not a corrupt-store error")
            return
        }
        #expect(message.contains("graph block 40 slot 0"), "\(message)")
        #expect(try c.count() == Self.clusters * Self.perCluster + 10)
    }
}
