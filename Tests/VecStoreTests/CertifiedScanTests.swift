import CDistance
import Foundation
import Testing
import VecStoreKernels
@testable import VecStore

/// The certified two-pass exact scan (binary16 bounds, float32 re-scoring) against the float32 scan:
/// the same ids, bit-identical scores and the same tie order, for every metric, near-ties included.
@Suite("Certified exact scan")
struct CertifiedScanTests {
    /// Rows built to be hard for the bound: exact duplicates (ties), copies one ulp apart in one
    /// component (near-ties the binary16 copies cannot tell apart), subnormal and zero components,
    /// components too large for binary16 (the copy overflows to infinity), and rows close to the queries.
    static func hardRows(count: Int, dimension: Int, metric: Metric, seed: UInt64) -> [[Float]] {
        var rng = SeededRandom(seed: seed)
        var rows: [[Float]] = []
        while rows.count < count {
            var v = rng.vector(dimension)
            switch rows.count % 11 {
            case 3 where !rows.isEmpty:
                v = rows[Int(rng.next() % UInt64(rows.count))]  // exact duplicate of an earlier row
            case 5 where !rows.isEmpty:
                v = rows[Int(rng.next() % UInt64(rows.count))]  // one ulp away in one component
                let i = Int(rng.next() % UInt64(dimension))
                v[i] = rng.next() & 1 == 0 ? v[i].nextUp : v[i].nextDown
            case 7:
                for i in stride(from: 0, to: dimension, by: 3) { v[i] = Float(i % 2 == 0 ? 1 : -1) * 0x1p-20 }
                v[1] = 0
            case 9 where metric != .cosine:
                v[0] = 70_000  // overflows binary16
            default:
                break
            }
            if metric == .cosine {
                let n = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
                if n > 0 { v = v.map { $0 / n } }
            }
            rows.append(v)
        }
        return rows
    }

    /// Blocks of `1 << shift` rows over `rows` (stored form) with squared norms, and their binary16 copies.
    final class Table {
        let dimension: Int
        let shift: Int
        var blocks: [VectorBlock] = []
        var halves: HalfCopies
        private var owned: [UnsafeMutableRawPointer] = []

        init(rows: [[Float]], dimension: Int, shift: Int, halfStride: Int) {
            self.dimension = dimension
            self.shift = shift
            var halfBlocks: [UnsafePointer<UInt16>] = []
            var start = 0
            var blocks: [VectorBlock] = []
            var owned: [UnsafeMutableRawPointer] = []
            while start < rows.count {
                let n = min(1 << shift, rows.count - start)
                let f = UnsafeMutablePointer<Float>.allocate(capacity: n * (dimension + 1))
                let h = UnsafeMutablePointer<UInt16>.allocate(capacity: n * halfStride)
                h.initialize(repeating: 0, count: n * halfStride)
                for r in 0..<n {
                    let v = rows[start + r]
                    for i in 0..<dimension {
                        f[r * dimension + i] = v[i]
                        h[r * halfStride + i] = Float16(v[i]).bitPattern
                    }
                    f[n * dimension + r] = v.reduce(0) { $0 + $1 * $1 }
                }
                blocks.append(VectorBlock(firstID: UInt32(start), count: n, vectors: f, squaredNorms: f + n * dimension))
                halfBlocks.append(h)
                owned += [UnsafeMutableRawPointer(f), UnsafeMutableRawPointer(h)]
                start += n
            }
            self.blocks = blocks
            self.owned = owned
            halves = HalfCopies(blocks: halfBlocks, shift: shift, stride: halfStride)
        }

        deinit { for p in owned { p.deallocate() } }
    }

    static func scanMetric(_ m: Metric) -> Metric { m == .cosine ? .dot : m }

    @Test("equals the float32 scan: ids, scores, tie order", arguments: Metric.allCases)
    func equalsFloat32Scan(metric: Metric) {
        let dimension = 40
        let rows = Self.hardRows(count: 1_500, dimension: dimension, metric: metric, seed: 7 + UInt64(metric.rawValue))
        let table = Table(rows: rows, dimension: dimension, shift: 7, halfStride: 42)
        var rng = SeededRandom(seed: 3)
        // Queries: random, equal to a stored row (top-1 ties with its duplicates), and a row nudged by an ulp.
        var queries: [[Float]] = (0..<20).map { _ in rng.vector(dimension) }
        for i in 0..<20 {
            var q = rows[(i * 97) % rows.count]
            if i % 2 == 1 { q[i % dimension] = q[i % dimension].nextUp }
            if q[0] > 1_000 { q[0] = 1 }
            queries.append(q)
        }
        let wordCount = (rows.count + 63) / 64
        var masks: [[UInt64]] = [[UInt64](repeating: ~0, count: wordCount)]
        masks.append((0..<wordCount).map { _ in rng.next() | rng.next() })  // ~75%: dense words
        masks.append((0..<wordCount).map { w in w % 3 == 0 ? rng.next() & rng.next() & rng.next() : rng.next() | rng.next() })
        var orderDiffers = 0
        for words in masks {
            words.withUnsafeBufferPointer { wb in
                let mask = CandidateMask(words: wb.baseAddress!, wordCount: wordCount)
                for q in queries {
                    q.withUnsafeBufferPointer { qb in
                        for k in [1, 10, 60] {
                            for threads in [1, 2] {
                                let plain = ExactSearch.search(
                                    query: qb.baseAddress!, dimension: dimension, metric: Self.scanMetric(metric),
                                    blocks: table.blocks, mask: mask, k: k, threads: threads,
                                    elementsPerWorker: 1).sorted()
                                let certified = ExactSearch.search(
                                    query: qb.baseAddress!, dimension: dimension, metric: Self.scanMetric(metric),
                                    blocks: table.blocks, mask: mask, k: k, threads: threads, halves: table.halves,
                                    elementsPerWorker: 1).sorted()
                                #expect(plain.map(\.id) == certified.map(\.id), "k \(k) threads \(threads)")
                                #expect(plain.map(\.score.bitPattern) == certified.map(\.score.bitPattern))
                            }
                            // The binary16 scores alone would rank differently: the bounds are doing work.
                            var approx = TopK(k: k)
                            for id in 0..<rows.count where mask.contains(UInt32(id)) {
                                let h = table.halves.blocks[id >> 7] + (id & 127) * 42
                                let s = metric == .l2 ? -vs_l2sq_f16(qb.baseAddress!, h, dimension)
                                    : vs_dot_f16(qb.baseAddress!, h, dimension)
                                approx.insert(s, UInt32(id))
                            }
                            let exact = ExactSearch.search(query: qb.baseAddress!, dimension: dimension,
                                                           metric: Self.scanMetric(metric), blocks: table.blocks,
                                                           mask: mask, k: k, threads: 1).sorted()
                            if approx.sorted().map(\.id) != exact.map(\.id) { orderDiffers += 1 }
                        }
                    }
                }
            }
        }
        #expect(orderDiffers > 0, "no query where binary16 alone ranks differently: the test has no near-ties")
    }

    @Test("selective masks: rows gathered across blocks equal the float32 scan, copies or not",
          arguments: Metric.allCases)
    func sparseAcrossBlocks(metric: Metric) {
        // 64-row blocks and masks of 0.5–3% (at most a few rows a block, more than one gather batch in
        // all), with binary16 copies for only the first blocks (an unlinked tail has none).
        let dimension = 24
        let rows = Self.hardRows(count: 24_000, dimension: dimension, metric: metric, seed: 90 + UInt64(metric.rawValue))
        let table = Table(rows: rows, dimension: dimension, shift: 6, halfStride: dimension)
        let partial = HalfCopies(blocks: Array(table.halves.blocks.prefix(table.blocks.count * 2 / 3)), shift: 6,
                                 stride: dimension)
        var rng = SeededRandom(seed: 17)
        let wordCount = (rows.count + 63) / 64
        for perMille in [5, 12, 30] {
            var words = [UInt64](repeating: 0, count: wordCount)
            for r in 0..<rows.count where rng.next() % 1_000 < UInt64(perMille) { words[r >> 6] |= 1 << UInt64(r & 63) }
            let matches = words.reduce(0) { $0 + $1.nonzeroBitCount }
            #expect(perMille < 30 || matches > 512)  // two full gather batches of 256 and more
            words.withUnsafeBufferPointer { wb in
                let mask = CandidateMask(words: wb.baseAddress!, wordCount: wordCount)
                // Blocks without copies (the partial set): nothing is gathered.
                #expect(GatheredCopies(halves: partial, blocks: table.blocks, dimension: dimension, mask: mask,
                                       maxRows: .max) == nil)
                guard let gathered = GatheredCopies(halves: table.halves, blocks: table.blocks, dimension: dimension,
                                                    mask: mask, maxRows: .max),
                      let inPlace = GatheredCopies(halves: table.halves, blocks: table.blocks, dimension: dimension,
                                                   mask: mask, maxRows: .max, inPlace: true) else {
                    Issue.record("not gathered")
                    return
                }
                #expect(gathered.count == matches)
                #expect(inPlace.count == matches && inPlace.isInPlace && !gathered.isInPlace)
                #expect(inPlace.rowIDs == gathered.rowIDs)
                #expect(inPlace.bytes == matches * 20)
                for qi in 0..<8 {
                    let q = qi % 2 == 0 ? rng.vector(dimension) : rows[(qi * 1_777) % rows.count]
                    q.withUnsafeBufferPointer { qb in
                        for k in [1, 10, 100] {
                            // Reference: every allowed row scored from float32, one at a time.
                            var reference = TopK(k: k)
                            for id in 0..<rows.count where mask.contains(UInt32(id)) {
                                let s = rows[id].withUnsafeBufferPointer { rb in
                                    metric == .l2 ? -vs_l2(qb.baseAddress!, rb.baseAddress!, dimension)
                                        : vs_dot(qb.baseAddress!, rb.baseAddress!, dimension)
                                }
                                reference.insert(s, UInt32(id))
                            }
                            let expected = reference.sorted()
                            // One worker, and the blocks split over two (forced below the work threshold).
                            for halves in [nil, table.halves, partial] {
                                for threads in [1, 2] {
                                    let got = ExactSearch.search(
                                        query: qb.baseAddress!, dimension: dimension, metric: Self.scanMetric(metric),
                                        blocks: table.blocks, mask: mask, k: k, threads: threads, halves: halves,
                                        elementsPerWorker: 1).sorted()
                                    #expect(got.map(\.id) == expected.map(\.id), "\(perMille)‰ k \(k) threads \(threads)")
                                    #expect(got.map(\.score.bitPattern) == expected.map(\.score.bitPattern))
                                }
                            }
                            // The same rows gathered into one buffer (the planner's exact path over a
                            // filter's matches): the same selection, bit for bit.
                            var gatheredTop = TopK(k: k)
                            ExactSearch.scanGathered(query: qb.baseAddress!, dimension: dimension,
                                                     metric: Self.scanMetric(metric), gathered: gathered,
                                                     into: &gatheredTop)
                            let got = gatheredTop.sorted()
                            #expect(got.map(\.id) == expected.map(\.id), "gathered \(perMille)‰ k \(k)")
                            #expect(got.map(\.score.bitPattern) == expected.map(\.score.bitPattern))
                            // Listed in place (a snapshot's first single query): the same selection.
                            var inPlaceTop = TopK(k: k)
                            ExactSearch.scanGathered(query: qb.baseAddress!, dimension: dimension,
                                                     metric: Self.scanMetric(metric), gathered: inPlace,
                                                     into: &inPlaceTop)
                            let gotInPlace = inPlaceTop.sorted()
                            #expect(gotInPlace.map(\.id) == expected.map(\.id), "in place \(perMille)‰ k \(k)")
                            #expect(gotInPlace.map(\.score.bitPattern) == expected.map(\.score.bitPattern))
                        }
                    }
                }
            }
        }
    }

    @Test("a one-query scan is split only when each worker gets elementsPerWorker elements")
    func workerCountFollowsWork() {
        let dummy = UnsafeMutablePointer<Float>.allocate(capacity: 1)
        defer { dummy.deallocate() }
        func blocks(_ rows: Int, per: Int) -> [VectorBlock] {
            stride(from: 0, to: rows, by: per).map {
                VectorBlock(firstID: UInt32($0), count: min(per, rows - $0), vectors: dummy, squaredNorms: dummy)
            }
        }
        // siftsmall-sized (10,000 × 128): one worker whatever the threads; docs60k-sized: two.
        #expect(ExactSearch.workerCount(blocks: blocks(10_000, per: 1024), dimension: 128, threads: 2) == 1)
        #expect(ExactSearch.workerCount(blocks: blocks(59_647, per: 512), dimension: 384, threads: 2) == 2)
        #expect(ExactSearch.workerCount(blocks: blocks(59_647, per: 512), dimension: 384, threads: 8) == 5)
        #expect(ExactSearch.workerCount(blocks: blocks(59_647, per: 512), dimension: 384, threads: 1) == 1)
        // Never more workers than blocks, never fewer than one.
        #expect(ExactSearch.workerCount(blocks: blocks(3_000, per: 1024), dimension: 4, threads: 8,
                                        elementsPerWorker: 1) == 3)
        #expect(ExactSearch.workerCount(blocks: [], dimension: 384, threads: 2) == 1)
        #expect(ExactSearch.workerCount(blocks: blocks(10, per: 1024), dimension: 0, threads: 2) == 1)
    }

    @Test("the bound is never below the float32 kernel's score", arguments: [Metric.dot, .l2])
    func boundHolds(metric: Metric) {
        var rng = SeededRandom(seed: 21)
        for dimension in [1, 15, 16, 33, 384] {
            let n = 64
            var rows: [[Float]] = (0..<n).map { r in
                var v = rng.vector(dimension)
                // Scales from subnormal-in-binary16 to near its overflow.
                let scale = [Float(1), 0x1p-16, 0x1p-24, 1_000, 60_000, 0x1p-30][r % 6]
                v = v.map { $0 * scale }
                return v
            }
            rows[5] = [Float](repeating: 0, count: dimension)
            var halves = [UInt16](repeating: 0, count: n * dimension)
            for r in 0..<n { for i in 0..<dimension { halves[r * dimension + i] = Float16(rows[r][i]).bitPattern } }
            for trial in 0..<20 {
                var q = rng.vector(dimension)
                if trial % 4 == 1 { q = rows[trial % n] }
                if trial % 4 == 2 { q = q.map { $0 * 0x1p-20 } }
                let qn2 = q.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() * (1 + 0x1p-40)
                let qn1 = q.reduce(0.0) { $0 + abs(Double($1)) } * (1 + 0x1p-40)
                var ub = [Float](repeating: 0, count: n)
                q.withUnsafeBufferPointer { qb in
                    halves.withUnsafeBufferPointer { hb in
                        vs_f16_upper_many(qb.baseAddress!, qn2, qn1, hb.baseAddress!, n, dimension, dimension,
                                          metric == .l2 ? 1 : 0, &ub)
                    }
                    for r in 0..<n {
                        let s = rows[r].withUnsafeBufferPointer { rb in
                            metric == .l2 ? -vs_l2(qb.baseAddress!, rb.baseAddress!, dimension)
                                : vs_dot(qb.baseAddress!, rb.baseAddress!, dimension)
                        }
                        #expect(!(ub[r] < s), "dimension \(dimension) row \(r): bound \(ub[r]) below score \(s)")
                    }
                }
            }
        }
    }

    @Test("an HNSW collection's exact search equals a flat collection's, with deletes and filters",
          arguments: Metric.allCases)
    func storeExactEqualsFlat(metric: Metric) throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("s.vecstore"))
        let dimension = 48
        let rows = Self.hardRows(count: 2_300, dimension: dimension, metric: metric, seed: 40)
        let docs = rows.enumerated().map { i, v in
            Document(id: "d\(i)", vector: v, metadata: ["half": .bool(i % 2 == 0)])
        }
        let flat = try store.collection("flat", dimension: dimension, metric: metric, index: .flat)
        let graph = try store.collection("graph", dimension: dimension, metric: metric)
        try flat.add(docs)
        try graph.add(docs)
        let doomed = (0..<40).map { "d\($0 * 13)" }
        try flat.delete(ids: doomed)
        try graph.delete(ids: doomed)
        #expect(try graph.explainSearch(k: 10, options: SearchOptions(exact: true)).path == .exact)
        var rng = SeededRandom(seed: 8)
        let queries = (0..<12).map { i in i % 3 == 0 ? rows[i * 31] : rng.vector(dimension) }
        for q in queries {
            for filter in [nil, Filter.field("half", .equals(.bool(true)))] {
                let options = SearchOptions(threads: 1, exact: true)
                let a = try flat.search(q, k: 25, filter: filter, options: options)
                let b = try graph.search(q, k: 25, filter: filter, options: options)
                #expect(a.map(\.id) == b.map(\.id))
                #expect(a.map(\.score) == b.map(\.score))
            }
        }
        let qa = try flat.searchBatch(Array(queries.prefix(5)), k: 10, options: SearchOptions(exact: true))
        let qb = try graph.searchBatch(Array(queries.prefix(5)), k: 10, options: SearchOptions(exact: true))
        #expect(qa.map { $0.map(\.id) } == qb.map { $0.map(\.id) })
    }

    @Test("damaged binary16 copies: non-finite ones change nothing, finite ones never crash, a short block is corrupt")
    func damagedCopies() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("s.vecstore"))
        let dimension = 16
        var rng = SeededRandom(seed: 5)
        let docs = (0..<300).map { Document(id: "d\($0)", vector: rng.vector(dimension)) }
        let flat = try store.collection("flat", dimension: dimension, metric: .l2, index: .flat)
        let graph = try store.collection("graph", dimension: dimension, metric: .l2)
        try flat.add(docs)
        try graph.add(docs)
        let dbs = store.dbs
        let key = Format.key(graph.collectionID, 0)
        let rowBytes = (dimension + 1) / 2 * 4
        func damage(_ edit: (inout [UInt8]) -> Void) throws {
            try store.write { txn in
                guard let v = try txn.get(dbs.graphVectors, key) else { throw VecStoreError.corrupt("no block") }
                var bytes = Array(v)
                edit(&bytes)
                try txn.put(dbs.graphVectors, key, bytes)
            }
        }
        // NaN, +inf and -inf copies: their bounds are +inf, so the rows are scored from float32 as before.
        try damage { bytes in
            for (row, half) in [(9, UInt16(0x7E00)), (10, 0x7C00), (11, 0xFC00)] {
                for i in 0..<dimension {
                    bytes[row * rowBytes + 2 * i] = UInt8(half & 0xFF)
                    bytes[row * rowBytes + 2 * i + 1] = UInt8(half >> 8)
                }
            }
        }
        let options = SearchOptions(threads: 1, exact: true)
        for d in docs.prefix(20) {
            let a = try flat.search(d.vector, k: 5, options: options)
            let b = try graph.search(d.vector, k: 5, options: options)
            #expect(a.map(\.id) == b.map(\.id))
            #expect(a.map(\.score) == b.map(\.score))
        }
        // Finite garbage can change exact results (verify reports it) but is read safely.
        try damage { bytes in for i in (12 * rowBytes)..<(20 * rowBytes) { bytes[i] = UInt8(truncatingIfNeeded: i &* 37) } }
        for d in docs.prefix(5) { _ = try graph.search(d.vector, k: 5, options: options) }
        #expect(try store.verify().faults.contains { $0.contains("binary16") })
        // A block shorter than its rows is refused before anything is read.
        try damage { bytes in bytes.removeLast(rowBytes) }
        var caught: Error?
        do { _ = try graph.search(docs[0].vector, k: 5, options: options) } catch { caught = error }
        var isCorrupt = false
        if case .corrupt? = caught as? VecStoreError { isCorrupt = true }
        #expect(isCorrupt, "expected corrupt, got \(String(describing: caught))")
    }
}
