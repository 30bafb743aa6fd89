import Foundation
import LMDB
import Testing
import VecStoreQuant
@testable import VecStore

/// IVF-Flat with binary16 lists (payload kind 5, Spec/IVF.md §4.2): the scan bounds each row's float32 score
/// from its copy and scores exactly only the rows that can still enter, so every search must return exactly
/// what float32 lists return (ids and scores, tie order included), and exact search at nprobe = nlist.

private let siftDirectory = sharedData.appendingPathComponent("siftsmall").path
private let docsDirectory = sharedData.appendingPathComponent("docs60k").path

/// Two collections of the same rows in one store, one per list element type, trained alike (same seed, same
/// rows: same centroids and lists).
private struct Pair {
    let store: VecStore
    let f32: VectorCollection
    let f16: VectorCollection

    init(_ dir: TempDir, _ rows: [[Float]], metric: Metric, nlist: Int) throws {
        store = try VecStore(path: dir.path("p.vecstore"))
        let d = rows[0].count
        f32 = try store.collection("f32", dimension: d, metric: metric, index: .flat)
        f16 = try store.collection("f16", dimension: d, metric: metric, index: .flat)
        var start = 0
        while start < rows.count {
            let end = min(rows.count, start + 5000)
            let docs = (start..<end).map { Document(id: "r\($0)", vector: rows[$0], metadata: ["g": .number(Double($0 % 4))]) }
            try f32.add(docs)
            try f16.add(docs)
            start = end
        }
        try f32.buildIVF(IVFParameters(nlist: nlist, lists: .f32))
        try f16.buildIVF(IVFParameters(nlist: nlist, lists: .f16))
    }

    /// Checks every query at every nprobe (and exact search at nprobe = nlist); returns the mismatches.
    func mismatches(_ queries: [[Float]], k: Int, probes: [Int], nlist: Int, filter: Filter? = nil) throws -> [String] {
        var out: [String] = []
        for (qi, q) in queries.enumerated() {
            for nprobe in probes {
                let options = SearchOptions(filterStrategy: filter == nil ? .automatic : .graph, nprobe: nprobe)
                let a = try f32.search(q, k: k, filter: filter, options: options)
                let b = try f16.search(q, k: k, filter: filter, options: options)
                if a.map(\.id) != b.map(\.id) || a.map(\.score) != b.map(\.score) {
                    out.append("query \(qi) nprobe \(nprobe): f32 \(a.prefix(3).map { "\($0.id) \($0.score)" }) f16 \(b.prefix(3).map { "\($0.id) \($0.score)" })")
                }
            }
            let exact = try f32.search(q, k: k, filter: filter, options: SearchOptions(exact: true))
            let all = try f16.search(q, k: k, filter: filter,
                                     options: SearchOptions(filterStrategy: filter == nil ? .automatic : .graph, nprobe: nlist))
            if exact.map(\.id) != all.map(\.id) || exact.map(\.score) != all.map(\.score) {
                out.append("query \(qi) nprobe = nlist: exact \(exact.prefix(3).map(\.id)) f16 \(all.prefix(3).map(\.id))")
            }
        }
        return out
    }
}

/// Rows built to stress the bounds: clustered rows, then exact duplicates and one-ulp neighbours (ties and
/// near-ties), rows past binary16's range (±inf copies), rows of binary16 and float32 subnormals, rows of
/// large and tiny scale, and rows whose components sit on binary16 rounding ties.
private func adversarial(dimension d: Int, seed: UInt64, cosine: Bool = false) -> [[Float]] {
    var rng = SeededRandom(seed: seed)
    let centres = (0..<8).map { _ in rng.vector(d) }
    var rows: [[Float]] = (0..<1600).map { _ in
        let c = centres[rng.below(centres.count)]
        return c.map { $0 + 0.25 * Float.random(in: -1...1, using: &rng) }
    }
    for i in 0..<60 {
        let r = rows[rng.below(400)]
        rows.append(r)  // exact duplicate: a tie broken by row id
        var n = r
        let t = i % d
        n[t] = i % 2 == 0 ? n[t].nextUp : n[t].nextDown  // one ulp away
        rows.append(n)
    }
    for i in 0..<40 {
        var r = rows[rng.below(400)]
        let t = i % d
        switch i % 8 {
        case 0: r[t] = 70_000  // overflows binary16: +inf copy
        case 1: r[t] = -1e15  // -inf copy
        case 2: r[t] = 65_519.99  // rounds to 65504, the largest half
        case 3: r[t] = 65_520  // ties to +inf
        case 4: r = r.map { $0 * 1e-6 }  // binary16 subnormals
        case 5: r = r.map { $0 * (cosine ? 1e-12 : 1e-39) }  // binary16 zero; float32 subnormals (cosine: a norm that stays normal)
        case 6: r = r.map { $0 * 3e4 }
        default: r = r.map { Float(Float16($0)) + Float(Float16($0)).ulp / 2 * 0.5 }  // between halves
        }
        rows.append(r)
    }
    return rows
}

/// Queries near rows, scaled versions, and rows themselves.
private func queries(from rows: [[Float]], count: Int, seed: UInt64) -> [[Float]] {
    var rng = SeededRandom(seed: seed)
    return (0..<count).map { i in
        let r = rows[rng.below(rows.count)]
        switch i % 4 {
        case 0: return r
        case 1: return r.map { $0 + 0.05 * Float.random(in: -1...1, using: &rng) }
        case 2: return r.map { $0 * 1000 }
        default: return r.map { $0 * 1e-3 + 0.01 * Float.random(in: -1...1, using: &rng) }
        }
    }
}

@Suite("IVF-Flat binary16 lists")
struct IVFHalfListsTests {
    @Test("adversarial rows: f16 lists return exactly the f32 lists' results (ids, scores) at every nprobe, and exact search at nprobe = nlist",
          arguments: [Metric.l2, .dot, .cosine], [19, 32])
    func adversarialRows(metric: Metric, dimension: Int) throws {
        let dir = try TempDir()
        let rows = adversarial(dimension: dimension, seed: UInt64(dimension), cosine: metric == .cosine)
        let pair = try Pair(dir, rows, metric: metric, nlist: 16)
        let qs = queries(from: rows, count: 48, seed: 11) + Array(rows.suffix(40))
        var bad = try pair.mismatches(qs, k: 10, probes: [1, 2, 4, 8, 16], nlist: 16)
        #expect(bad.isEmpty, "\(bad.count) mismatches: \(bad.prefix(3))")
        // Under a filter mask and after deletes (the mask hides rows that stay in the lists).
        bad = try pair.mismatches(Array(qs.prefix(16)), k: 7, probes: [1, 4, 16], nlist: 16,
                                  filter: Filter.field("g", .equals(.number(1))))
        #expect(bad.isEmpty, "filtered: \(bad.prefix(3))")
        let gone = (0..<300).map { "r\($0 * 5)" }
        #expect(try pair.f32.delete(ids: gone) == 300)
        #expect(try pair.f16.delete(ids: gone) == 300)
        bad = try pair.mismatches(Array(qs.prefix(24)), k: 10, probes: [1, 3, 16], nlist: 16)
        #expect(bad.isEmpty, "after deletes: \(bad.prefix(3))")
        let report = try pair.store.verify()
        #expect(report.isOK, "\(report.faults.prefix(3))")
    }

    @Test("siftsmall: f16 lists equal f32 lists at every nprobe and exact search at nprobe = nlist",
          .enabled(if: FileManager.default.fileExists(atPath: siftDirectory + "/siftsmall_query.fvecs")))
    func siftsmall() throws {
        let base = try readVecs(siftDirectory + "/siftsmall_base.fvecs", as: Float.self)
        let qs = Array(try readVecs(siftDirectory + "/siftsmall_query.fvecs", as: Float.self).prefix(40))
        let dir = try TempDir()
        let pair = try Pair(dir, base, metric: .l2, nlist: 64)
        let bad = try pair.mismatches(qs, k: 10, probes: [1, 2, 4, 8, 16, 32], nlist: 64)
        #expect(bad.isEmpty, "\(bad.count) mismatches: \(bad.prefix(3))")
        #expect(try pair.f16.ivfInfo()?.codeSize == 264 && pair.f32.ivfInfo()?.codeSize == 512)
    }

    @Test("docs60k sample (cosine, 384-d): f16 lists equal f32 lists at every nprobe and exact search at nprobe = nlist",
          .enabled(if: FileManager.default.fileExists(atPath: docsDirectory + "/queries.fvecs")))
    func docs60k() throws {
        let base = Array(try readVecs(docsDirectory + "/base.fvecs", as: Float.self).prefix(12_000))
        let qs = Array(try readVecs(docsDirectory + "/queries.fvecs", as: Float.self).prefix(40))
        let dir = try TempDir()
        let pair = try Pair(dir, base, metric: .cosine, nlist: 64)
        let bad = try pair.mismatches(qs, k: 10, probes: [1, 2, 4, 8, 16, 32], nlist: 64)
        #expect(bad.isEmpty, "\(bad.count) mismatches: \(bad.prefix(3))")
    }

    @Test("format: kind 5 blocks of binary16 rows, header and pending record kind 5, feature ivf-flat16; f32 lists stay kind 1 without it")
    func format() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("f.vecstore"))
        let dbs = store.dbs
        let rows = adversarial(dimension: 8, seed: 3)
        func features() throws -> [Format.Feature] {
            try store.read { txn in try txn.get(dbs.meta, Format.featuresKey).map { try Format.decodeFeatures($0) } ?? [] }
        }
        let old = try store.collection("old", dimension: 8, metric: .l2, index: .ivf(IVFParameters(nlist: 4, lists: .f32)))
        try old.add(rows.prefix(300).enumerated().map { Document(id: "o\($0.offset)", vector: $0.element) })
        #expect(!(try features()).contains { $0.name == "ivf-flat16" })
        #expect(try old.indexKind() == .ivf(IVFParameters(nlist: 4)))  // f32 lists: the default
        let c = try store.collection("c", dimension: 8, metric: .l2, index: .ivf(IVFParameters(nlist: 4, lists: .f16)))
        let pending = try store.read { txn in Array(try #require(try txn.get(dbs.meta, IVFFormat.headerKey(2)))) }
        #expect(pending.count == 32 && pending[1] == 5)
        #expect((try features()).contains(Format.Feature(name: "ivf-flat16", neededToRead: true, neededToWrite: true)))
        #expect(Format.knownFeatures.contains("ivf-flat16"))
        try c.add(rows.enumerated().map { Document(id: "r\($0.offset)", vector: $0.element) })
        #expect(try c.indexKind() == .ivf(IVFParameters(nlist: 4, lists: .f16)))
        #expect(try c.indexStats().lines.contains { $0.key == "coding" && $0.value.contains("binary16") })
        #expect(try c.ivfInfo()?.codeSize == 24)
        let (header, blocks) = try store.read { txn -> ([UInt8], [[UInt8]]) in
            let h = Array(try #require(try txn.get(dbs.meta, IVFFormat.headerKey(2))))
            var out: [[UInt8]] = []
            try txn.withCursor(try #require(dbs.handle(IVFFormat.DB.lists))) { (cur: Cursor) throws -> Void in
                var e = try cur.seek(atLeast: Format.prefix(2))
                while let (k, v) = e, k.starts(with: Format.prefix(2)) { out.append(Array(v)); e = try cur.next() }
            }
            return (h, out)
        }
        #expect(header.count == 64 && header[1] == 5 && header[3] == 0)
        #expect(header[16] == 0 && header[17] == 1)  // block capacity 256
        #expect(!blocks.isEmpty)
        var listed = 0
        for value in blocks {
            #expect(value[1] == 5)
            let n = Int(value[8]) | Int(value[9]) << 8
            let offset = (16 + 4 * n + 15) / 16 * 16
            #expect(value.count == offset + n * (8 + 2 * 8))
            func f32(_ at: Int) -> Float {
                Float(bitPattern: UInt32(value[at]) | UInt32(value[at + 1]) << 8 | UInt32(value[at + 2]) << 16 | UInt32(value[at + 3]) << 24)
            }
            // n error bounds, n norms, then the rows: every half the round-to-nearest binary16 of the row's
            // float32 component; e ≥ ‖x − h‖ (+inf with an infinite half), ν ≥ ‖x‖, both tight.
            for i in 0..<n {
                let row = Int(value[16 + 4 * i]) | Int(value[17 + 4 * i]) << 8
                var se = 0.0, sn = 0.0, infinite = false
                for t in 0..<8 {
                    let at = offset + 8 * n + 2 * (i * 8 + t)
                    let bits = UInt16(value[at]) | UInt16(value[at + 1]) << 8
                    #expect(bits == Float16(rows[row][t]).bitPattern, "row \(row) component \(t)")
                    let h = Double(Float(Float16(bitPattern: bits)))
                    if !h.isFinite { infinite = true }
                    se += (Double(rows[row][t]) - h) * (Double(rows[row][t]) - h)
                    sn += Double(rows[row][t]) * Double(rows[row][t])
                }
                let e = f32(offset + 4 * i), nu = f32(offset + 4 * n + 4 * i)
                if infinite { #expect(e == .infinity) } else {
                    #expect(Double(e) >= se.squareRoot() && Double(e) <= se.squareRoot() * (1 + 1e-6) + 1e-44, "row \(row) e \(e)")
                }
                #expect(Double(nu) >= sn.squareRoot() && Double(nu) <= sn.squareRoot() * (1 + 1e-6) + 1e-44, "row \(row) ν \(nu)")
            }
            listed += n
        }
        #expect(listed == rows.count)
        // Appends, deletes and compaction keep the lists in step (verify decodes every copy).
        try c.add((0..<50).map { Document(id: "s\($0)", vector: rows[$0 * 3]) })
        _ = try c.delete(ids: (0..<200).map { "r\($0 * 2)" })
        #expect(try store.verify().isOK)
        store.close()
        try VecStore.compact(path: dir.path("f.vecstore"))
        let reopened = try VecStore(path: dir.path("f.vecstore"))
        let after = try reopened.collection("c")
        #expect(try after.ivfInfo()?.listSizes.reduce(0, +) == rows.count + 50 - 200)
        #expect(try after.indexKind() == .ivf(IVFParameters(nlist: 4, lists: .f16)))
        let report = try reopened.verify()
        #expect(report.isOK, "\(report.faults.prefix(3))")
        for q in rows.prefix(10) {
            #expect(try after.search(q, k: 5, options: SearchOptions(nprobe: 4)).map(\.id)
                == after.search(q, k: 5, options: SearchOptions(exact: true)).map(\.id))
        }
    }

    @Test("binary16 lists in a store that does not declare ivf-flat16 are a damaged record, not lists to read")
    func kindWithoutFeature() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("k.vecstore"))
        let dbs = store.dbs
        let rows = adversarial(dimension: 8, seed: 11)
        let c = try store.collection("c", dimension: 8, metric: .l2, index: .ivf(IVFParameters(nlist: 4, lists: .f16)))
        try c.add(rows.prefix(200).enumerated().map { Document(id: "r\($0.offset)", vector: $0.element) })
        #expect(try c.search(rows[0], k: 3, options: SearchOptions(nprobe: 4)).count == 3)
        try store.write { txn in
            let kept = try #require(try txn.get(dbs.meta, Format.featuresKey).map { try Format.decodeFeatures($0) })
                .filter { $0.name != "ivf-flat16" }
            try txn.put(dbs.meta, Format.featuresKey, Format.encodeFeatures(kept))
        }
        store.close()
        let reopened = try VecStore(path: dir.path("k.vecstore"))
        #expect(throws: VecStoreError.self) {
            try reopened.collection("c").search(rows[0], k: 3, options: SearchOptions(nprobe: 4))
        }
        // verify reports the fault (as a fault or a thrown corrupt error), never a clean store.
        #expect(!((try? reopened.verify().isOK) ?? false))
    }

    @Test("a damaged copy is caught by verify and changes results (the exactness checks can fail); a NaN half is a typed fault")
    func damagedCopy() throws {
        let dir = try TempDir()
        let rows = adversarial(dimension: 16, seed: 9)
        let pair = try Pair(dir, rows, metric: .l2, nlist: 8)
        let store = pair.store, dbs = store.dbs
        // A row far into its list (the first rows of the first list probed are always scored: the top k is
        // not full yet).
        let q = rows[1201]
        let before = try pair.f16.search(q, k: 3, options: SearchOptions(nprobe: 8))
        #expect(before.first?.id == "r1201")
        // Push row 1201's copy far away: its bound then says it cannot enter, so it is skipped.
        func damage(_ row: UInt32, _ half: UInt16) throws {
            try store.write { txn in
                let cid = try pair.f16.currentRecord(txn).id
                let lists = try #require(dbs.handle(IVFFormat.DB.lists))
                var found: ([UInt8], [UInt8])?
                try txn.withCursor(lists) { (cur: Cursor) throws -> Void in
                    var e = try cur.seek(atLeast: Format.prefix(cid))
                    while let (k, v) = e, k.starts(with: Format.prefix(cid)), found == nil {
                        let n = Int(v[8]) | Int(v[9]) << 8
                        let offset = (16 + 4 * n + 15) / 16 * 16 + 8 * n  // past the bounds and norms
                        for i in 0..<n where (UInt32(v[16 + 4 * i]) | UInt32(v[17 + 4 * i]) << 8) == row {
                            var value = Array(v)
                            for t in 0..<16 {
                                value[offset + 2 * (i * 16 + t)] = UInt8(half & 0xff)
                                value[offset + 2 * (i * 16 + t) + 1] = UInt8(half >> 8)
                            }
                            found = (Array(k), value)
                        }
                        e = try cur.next()
                    }
                }
                let (key, value) = try #require(found)
                try txn.put(lists, key, value)
            }
        }
        try damage(1201, 0x7bff)  // 65504 in every component
        let after = try pair.f16.search(q, k: 3, options: SearchOptions(nprobe: 8))
        #expect(after.first?.id != "r1201")
        #expect(try pair.mismatches([q], k: 3, probes: [8], nlist: 8).count == 2)
        let report = try store.verify()
        #expect(report.faults.contains { $0.contains("binary16 copy for row 1201") }, "\(report.faults.prefix(3))")
        try damage(1201, 0x7e01)  // NaN: a damaged block, reported, never a crash
        #expect(try store.verify().faults.contains { $0.contains("NaN") })
        _ = try pair.f16.search(q, k: 3, options: SearchOptions(nprobe: 8))
    }

    @Test("binary16 block values: round trip, NaN rejected by validate, wrong length rejected by view")
    func blockCodec() throws {
        let rows: [Float] = [1, 70_000, 6e-8, -0, -65504, 0.333]
        let perRow = rows.withUnsafeBufferPointer { HalfRows.encode($0.baseAddress!, count: 2, dimension: 3) }
        #expect(perRow.count == 2 * 14)
        let payload = HalfRows.pack(perRow[...], count: 2, dimension: 3)
        let value = try IVFListBlock.encode(kind: .flat16, list: 3, width: 3, rows: [4, 9], payloadBytes: payload)
        #expect(value.count == 32 + 28)
        try value.withUnsafeBytes { b in
            let view = try IVFListBlock.view(b, kind: .flat16, width: 3, list: 3)
            #expect(view.count == 2 && Array(view.payload) == payload)
            #expect(HalfRows.unpack(view) == perRow)
            #expect(view.halfError(0) == .infinity && view.halfError(1) > 0 && view.halfNorm(0) >= 70_000)
            try view.validate(rowLimit: 10)
        }
        // A finite bound on the row with an infinite half, a negative norm, a NaN half: each a typed fault.
        for (at, byte) in [(32 + 3, UInt8(0x3f)), (32 + 8 + 3, UInt8(0xbf))] {
            var bad = value
            bad[at] = byte
            bad.withUnsafeBytes { b in
                #expect(throws: QuantError.self) { try IVFListBlock.view(b, kind: .flat16, width: 3, list: 3).validate() }
            }
        }
        var nan = value
        nan[32 + 16 + 2] = 0x01
        nan[32 + 16 + 3] = 0x7e
        nan.withUnsafeBytes { b in
            #expect(throws: QuantError.self) { try IVFListBlock.view(b, kind: .flat16, width: 3, list: 3).validate() }
        }
        let short = Array(value.dropLast(2))
        short.withUnsafeBytes { b in
            #expect(throws: QuantError.self) { try IVFListBlock.view(b, kind: .flat16, width: 3, list: 3) }
        }
        #expect(IVFPayloadKind.flat16.payloadBytes(count: 5, width: 7) == 110)
    }
}
