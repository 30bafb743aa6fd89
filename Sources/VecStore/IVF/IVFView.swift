import CDistance
import LMDB
import Synchronization
import VecStoreKernels
import VecStoreQuant

/// A collection's IVF index as one read snapshot sees it: the model and, per list, checked zero-copy views
/// of its blocks in the memory map (one cursor pass over the list keys when the view is opened; no LMDB
/// look-up during a search). Valid while the snapshot it was read in is.
final class IVFView: @unchecked Sendable {
    let model: IVFModel
    let name: String
    /// `blocks[list]`: the list's blocks in order.
    let blocks: [[IVFListBlockView]]
    /// L2 IVF-PQ: `nlist × M × 2^bits` precomputed list terms (empty otherwise, or when too large).
    let precomputed: [Float]
    /// Rows in all lists.
    let listedRows: Int

    /// Precomputed L2 terms are kept up to this many floats (64 MiB); larger indexes build each probed
    /// list's table from the residual query instead.
    static let precomputedLimit = 16 << 20

    /// Reads and checks the list keys and block headers of collection `record` (Spec/IVF.md §4.3's
    /// constant-time checks; `verify` runs the one-pass checks).
    init(_ txn: Transaction, _ dbs: Databases, record: CollectionRecord, model: IVFModel, name: String) throws {
        self.model = model
        self.name = name
        let header = model.header
        let lists = try IVFFormat.handles(dbs).lists
        var blocks = [[IVFListBlockView]](repeating: [], count: header.nlist)
        var listed = 0
        let prefix = Format.prefix(record.id)
        try txn.withCursor(lists) { (c: Cursor) throws -> Void in
            var entry = try c.seek(atLeast: prefix)
            while let (key, value) = entry, key.starts(with: prefix) {
                guard key.count == 12 else {
                    throw VecStoreError.corrupt("collection \(name): IVF list key of \(key.count) bytes (expected 12)")
                }
                let list = Int(readBE32(key, at: 4)), number = Int(readBE32(key, at: 8))
                guard list < header.nlist else {
                    throw VecStoreError.corrupt("collection \(name): IVF list \(list) ≥ nlist \(header.nlist)")
                }
                guard number == blocks[list].count else {
                    throw VecStoreError.corrupt("collection \(name): IVF list \(list) block \(blocks[list].count) missing (found \(number))")
                }
                if let previous = blocks[list].last, previous.count != header.blockCapacity {
                    throw VecStoreError.corrupt("collection \(name): IVF list \(list) block \(number - 1) holds \(previous.count) rows but is not the last (capacity \(header.blockCapacity))")
                }
                let view: IVFListBlockView
                do throws(QuantError) { view = try IVFListBlock.view(value, kind: header.kind, width: model.width, list: list) } catch {
                    throw IVFFormat.corrupt(error, name)
                }
                guard view.count <= header.blockCapacity else {
                    throw VecStoreError.corrupt("collection \(name): IVF list \(list) block \(number) holds \(view.count) rows, capacity \(header.blockCapacity)")
                }
                blocks[list].append(view)
                listed += view.count
                entry = try c.next()
            }
        }
        self.blocks = blocks
        listedRows = listed
        if let pq = model.quantizer, header.metric == .l2, header.residual,
           header.nlist * pq.subquantizers * pq.centroidsPerSubquantizer <= Self.precomputedLimit {
            precomputed = IVFIndex.precomputedTerms(centroids: model.centroids, nlist: header.nlist, quantizer: pq)
        } else {
            precomputed = []
        }
    }

    /// Rows in each list.
    var listSizes: [Int] { blocks.map { $0.reduce(0) { $0 + $1.count } } }

    /// The `k` best rows of each of `count` queries (stored form), as `TopK`s whose scores are larger-is-closer
    /// (−squared L2, or the inner product). Only rows in `mask` are considered (the caller passes at least the
    /// live rows: list blocks may hold deleted rows). `nprobe` lists are probed; PQ candidates are re-ranked
    /// exactly with the float32 vectors of `vectors` when `refine` > 0 (the best `refine·k` of the ADC
    /// scores), so their scores are exact; flat lists score exactly.
    func search(queries: UnsafePointer<Float>, count: Int, k: Int, mask: CandidateMask, nprobe: Int, refine: Int,
                vectors: CollectionView, threads: Int) -> [TopK] {
        let d = model.header.dimension, p = min(max(1, nprobe), model.header.nlist)
        // Batches find every query's probes up front with matrix products (one per tile of queries), unless
        // the probe table would pass 16 MiB (then each query finds its own).
        let batch = count >= IVFModel.batchProbeThreshold && count * p <= 1 << 22
        let batched: (lists: [UInt32], scores: [Float]) = batch ? model.batchProbes(queries, count: count, nprobe: p) : ([], [])
        // Residual codes under inner product: the list constant q·c is the probe's own score.
        let coarseBias = model.header.residual && model.header.metric != .l2
        let refining = model.quantizer != nil && refine > 0
        if model.header.kind == .flat && !batched.lists.isEmpty {
            return listMajorFlat(queries: queries, count: count, k: k, mask: mask, nprobe: p, probes: batched.lists,
                                 threads: threads)
        }
        if model.quantizer == nil {
            // Float32 and binary16 lists, one query at a time: no tables or candidate reservoir, so no per-worker
            // scratch (its set-up was ~500 instructions of a siftsmall IVF-Flat nprobe-1 query).
            return QueryWorkers.map(count: count, threads: threads, placeholder: TopK(k: 0)) { indices, put in
                for i in indices {
                    let q = queries + i * d
                    if batched.lists.isEmpty {
                        put(i, unquantized(q, k: k, mask: mask, probes: model.probes(q, count: p)[...], vectors: vectors))
                    } else {
                        let end = i * p + Self.listsFound(batched.lists, query: i, nprobe: p)
                        put(i, unquantized(q, k: k, mask: mask, probes: batched.lists[(i * p)..<end], vectors: vectors))
                    }
                }
            }
        }
        if refining, model.header.kind == .pq4FastScan, !(model.header.residual && model.header.metric == .l2),
           !batched.lists.isEmpty, count * p >= Self.listMajorReuse * model.header.nlist * max(1, threads),
           listedRows * FastScan.blockBytes(model.width) / FastScan.blockRows >= Self.listMajorCodeBytes {
            return listMajorFastScan(queries: queries, count: count, k: k, mask: mask, nprobe: p, probes: batched,
                                     refine: refine, vectors: vectors, threads: threads)
        }
        return QueryWorkers.map(count: count, threads: threads, placeholder: TopK(k: 0)) { indices, put in
            let mine = Array(indices)
            // 8-bit codes: the worker's queries build their tables `tile` at a time, in one pass over the
            // codebooks (`IVFProbeScorer.beginTile`: the same tables, bit for bit, as one query at a time).
            let tile = model.quantizer?.bits == 8 ? min(IVFProbeScorer.tableTile, mine.count) : 1
            // One scratch per worker: the ADC candidates' selection and the PQ scorer's tables are refilled
            // for each query, not allocated.
            var scratch = Scratch(candidates: CandidateReservoir(k: refining ? k * refine : 1),
                                  scorer: model.quantizer.map { IVFProbeScorer(header: model.header, quantizer: $0,
                                                                               precomputed: precomputed, tile: tile) },
                                  rows: [], scores: [Float](repeating: 0, count: refining ? k * refine : 0))
            scratch.rows.reserveCapacity(refining ? k * refine : 0)
            let tiled = (scratch.scorer?.tile ?? 1) > 1
            // PQ without re-ranking: the k rows a query picked were not read (only their codes were), so their
            // vectors are requested when the scan ends and scored after the next query's scan, which hides
            // their cache misses (scoring them right away was ~12% of a docs60k IVF-PQ 8-bit query at
            // nprobe 1). A re-ranking search has just read them, and flat scans already hold resolve's
            // exact values (`IVFListScan.flat`).
            let deferred = scratch.scorer != nil && !refining
            var pending: (query: Int, top: TopK)?
            withUnsafeTemporaryAllocation(of: Float.self, capacity: tiled ? tile * d : 1) { gathered in
                for (position, i) in mine.enumerated() {
                    var slot: Int? = nil
                    if tiled, let g = gathered.baseAddress {
                        let s = position % tile
                        if s == 0 {
                            // The next `tile` queries side by side (the worker's are `threads` apart).
                            let n = min(tile, mine.count - position)
                            for t in 0..<n { (g + t * d).update(from: queries + mine[position + t] * d, count: d) }
                            scratch.scorer?.beginTile(queries: g, count: n, stride: d)
                        }
                        slot = s
                    }
                    let found = batched.lists.isEmpty ? 0 : Self.listsFound(batched.lists, query: i, nprobe: p)
                    let probes = batched.lists.isEmpty ? model.probes(queries + i * d, count: p)[...]
                        : batched.lists[(i * p)..<(i * p + found)]
                    let biases = batched.lists.isEmpty || !coarseBias ? nil : batched.scores[(i * p)..<(i * p + found)]
                    let top = one(queries + i * d, k: k, mask: mask, probes: probes, biases: biases, refine: refine,
                                  vectors: vectors, tableSlot: slot, scratch: &scratch)
                    if scratch.scorer == nil {
                        put(i, top)
                    } else if !deferred {
                        put(i, rescored(top, query: queries + i * d, vectors: vectors))
                    } else {
                        prefetchRows(of: top, vectors: vectors)
                        if let last = pending { put(last.query, rescored(last.top, query: queries + last.query * d, vectors: vectors)) }
                        pending = (i, top)
                    }
                }
            }
            if let last = pending { put(last.query, rescored(last.top, query: queries + last.query * d, vectors: vectors)) }
        }
    }

    /// A batch over float32 lists, list by list: each worker's queries are grouped by the lists they probe
    /// (`probes`: `count × nprobe`, from `batchProbes`), and each block of a list is scanned for every query
    /// that probes it in turn, so the block is read from memory once for all of them and the other queries
    /// find it in cache (a query-by-query scan reads a list once per query probing it: at large nprobe the
    /// lists stream from memory, the bound of that scan). Each query's rows are scored with the same kernel
    /// and offered to its own `TopK`, whose selection (score, then the lower row) does not depend on the order
    /// rows come in: the results are those of `one`, ids and scores.
    func listMajorFlat(queries: UnsafePointer<Float>, count: Int, k: Int, mask: CandidateMask, nprobe p: Int,
                       probes: [UInt32], threads: Int) -> [TopK] {
        let d = model.header.dimension, metric = model.header.metric, nlist = model.header.nlist
        return QueryWorkers.map(count: count, threads: threads, placeholder: TopK(k: 0)) { indices, put in
            let mine = Array(indices)
            var tops = mine.map { _ in TopK(k: k) }
            // The worker's (query, probe) pairs bucketed by list (a counting sort): `start[l]..<start[l + 1]`
            // of `members` are the positions in `mine` of the queries probing list l, one entry per probe.
            var start = [Int](repeating: 0, count: nlist + 1)
            var members = [Int32](repeating: 0, count: mine.count * p)
            probes.withUnsafeBufferPointer { pb in
                for i in mine {
                    for t in 0..<p where pb[i * p + t] != IVFModel.noList { start[Int(pb[i * p + t]) + 1] += 1 }
                }
                for l in 0..<nlist { start[l + 1] += start[l] }
                var next = start
                for (j, i) in mine.enumerated() {
                    for t in 0..<p where pb[i * p + t] != IVFModel.noList {
                        let l = Int(pb[i * p + t])
                        members[next[l]] = Int32(j)
                        next[l] += 1
                    }
                }
            }
            // Queries probing the same list are scored two at a time (`IVFListScan.flat2`: each row read once for
            // the pair; each query's values and selection are those of `flat`).
            tops.withUnsafeMutableBufferPointer { tb in
                for l in 0..<nlist where start[l + 1] > start[l] {
                    for block in blocks[l] {
                        var m = start[l]
                        while m < start[l + 1] {
                            let j = Int(members[m])
                            if m + 1 < start[l + 1], case let j2 = Int(members[m + 1]), j2 != j {
                                IVFListScan.flat2(block, queries: queries + mine[j] * d, queries + mine[j2] * d,
                                                  metric: metric, mask: mask, into: &tb[j], &tb[j2])
                                m += 2
                            } else {
                                IVFListScan.flat(block, query: queries + mine[j] * d, metric: metric, mask: mask,
                                                 into: &tb[j])
                                m += 1
                            }
                        }
                    }
                }
            }
            for (j, i) in mine.enumerated() { put(i, tops[j]) }
        }
    }

    /// A refining fast-scan batch goes list by list (`listMajorFastScan`) when each worker's queries probe a
    /// list this many times on average (queries × nprobe ≥ this × nlist × threads).
    static let listMajorReuse = 2

    /// ... and when the lists' codes take at least this many bytes (8 MiB), so that a query's probed lists
    /// come from memory rather than cache. Measured on AMD EPYC Zen 5 (1 MiB L2 a core, 32 MiB L3 shared with
    /// the re-ranking's scattered float32 reads), M = 96: docs1m-c4's 11.5 MB of codes scan list by list up to
    /// 2.2× faster at nprobe 64, while docs60k's 2.9 MB, cache resident, scan 5–12% slower that way (every
    /// query's table and reservoir held at once, the candidates re-ranked after the whole scan). Task-local so
    /// tests can send small indexes down the list-by-list path.
    @TaskLocal static var listMajorCodeBytes = 8 << 20

    /// A refining fast-scan batch whose one quantized table a query serves every list (raw-vector codes, or
    /// residual codes under inner product: `IVFProbeScorer.sharedFastTable`), list by list, as FAISS's
    /// `IndexIVFFastScan` scans a batch: each worker quantizes its queries' tables, groups its (query, probe)
    /// pairs by list (`probes`: `batchProbes`), and scans each block of a list for every query probing it in
    /// turn, so the block's codes are read from memory once for all of them and the other queries find them in
    /// cache (query by query, a block's codes stream from memory once per query probing it: the stall of the
    /// scan kernel at large nprobe). Each query's rows go to its own `CandidateReservoir`, whose final set
    /// (the best `refine · k` by score, then the lower row) does not depend on the order rows are offered in,
    /// with the same tables and list constants as `one` (the list constant of residual codes is the probe's
    /// q·c); its candidates are then re-ranked as `one` does. So the results are `one`'s, ids and scores.
    func listMajorFastScan(queries: UnsafePointer<Float>, count: Int, k: Int, mask: CandidateMask, nprobe p: Int,
                           probes: (lists: [UInt32], scores: [Float]), refine: Int, vectors: CollectionView,
                           threads: Int) -> [TopK] {
        let header = model.header, d = header.dimension, nlist = header.nlist
        let coarseBias = header.residual && header.metric != .l2
        guard let pq = model.quantizer else { return [TopK](repeating: TopK(k: k), count: count) }
        // A worker holds a table and a reservoir for each query of its current chunk: chunks of at most
        // `listMajorChunkBytes` of them (a reservoir grows to `capacityFactor · refine · k` 8-byte keys, a table
        // holds 16 bytes a sub-quantizer), but never fewer queries than keep `listMajorReuse` probes a list on
        // average, so memory follows the threads, not the batch.
        let perQuery = CandidateReservoir.capacityFactor * refine * k * 8 + 16 * (pq.subquantizers + 1) + 256
        let chunk = max(Self.listMajorChunkBytes / perQuery, (Self.listMajorReuse * nlist + p - 1) / p, 1)
        let probe = Self.listMajorProbe
        return QueryWorkers.map(count: count, threads: threads, placeholder: TopK(k: 0)) { indices, put in
            let all = Array(indices)
            var scratch = Scratch(candidates: CandidateReservoir(k: 1), scorer: nil, rows: [],
                                  scores: [Float](repeating: 0, count: k * refine))
            scratch.rows.reserveCapacity(k * refine)
            var scorer = IVFProbeScorer(header: header, quantizer: pq, precomputed: precomputed)
            for first in stride(from: 0, to: all.count, by: chunk) {
                let mine = Array(all[first..<min(first + chunk, all.count)])
                probe?.countChunk()
                // Each query's table, quantized once (a copy: the scorer's storage is copied on its next `begin`).
                var tables: [QuantizedTable] = []
                tables.reserveCapacity(mine.count)
                for i in mine {
                    scorer.begin(query: queries + i * d)
                    guard let table = scorer.sharedFastTable else {
                        preconditionFailure("listMajorFastScan needs one table a query (the caller checks the index kind)")
                    }
                    tables.append(table)
                }
                var reservoirs = [CandidateReservoir](repeating: CandidateReservoir(k: k * refine), count: mine.count)
                // The worker's (query, probe) pairs bucketed by list (a counting sort) in two rounds: first each
                // query's nearest list (its probe 0), then its other probes. `start[b]..<start[b + 1]` of `members` are
                // `j · p + t` for the queries `mine[j]` whose probe `t` is list `b % nlist` (t = 0 for b < nlist,
                // t > 0 above). The nearest list holds the query's best rows, so its reservoir's threshold is high
                // before the farther lists come, and they offer few rows. A query's lists end at its first `noList`
                // slot (as in `search`).
                let buckets = 2 * nlist
                var start = [Int](repeating: 0, count: buckets + 1)
                var members = [Int32](repeating: 0, count: mine.count * p)
                probes.lists.withUnsafeBufferPointer { pb in
                    func found(_ i: Int) -> Int { Self.listsFound(probes.lists, query: i, nprobe: p) }
                    for i in mine {
                        for t in 0..<found(i) { start[(t == 0 ? 0 : nlist) + Int(pb[i * p + t]) + 1] += 1 }
                    }
                    for b in 0..<buckets { start[b + 1] += start[b] }
                    var next = start
                    for (j, i) in mine.enumerated() {
                        for t in 0..<found(i) {
                            let b = (t == 0 ? 0 : nlist) + Int(pb[i * p + t])
                            members[next[b]] = Int32(j * p + t)
                            next[b] += 1
                        }
                    }
                }
                probes.scores.withUnsafeBufferPointer { sb in
                    reservoirs.withUnsafeMutableBufferPointer { rb in
                        tables.withUnsafeBufferPointer { tb in
                            for b in 0..<buckets where start[b + 1] > start[b] {
                                for block in blocks[b % nlist] {
                                    for m in start[b]..<start[b + 1] {
                                        let slot = Int(members[m]), j = slot / p
                                        // Residual codes: the list constant q·c is the probe's score; raw codes: 0.
                                        let bias = coarseBias ? sb[mine[j] * p + slot % p] : 0
                                        IVFListScan.fastScan(block, table: tb[j], bias: bias, mask: mask, into: &rb[j])
                                    }
                                }
                            }
                        }
                    }
                }
                for (j, i) in mine.enumerated() {
                    let q = queries + i * d
                    let top = reranked(q, k: k, rows: reservoirs[j].finish(), vectors: vectors, scratch: &scratch)
                    put(i, rescored(top, query: q, vectors: vectors))
                }
            }
        }
    }

    /// How many lists query `i` of a batch probes: its `p` slots of `lists` (`IVFModel.batchProbes`) end at the
    /// first `noList` slot when fewer lists were found.
    static func listsFound(_ lists: [UInt32], query i: Int, nprobe p: Int) -> Int {
        (lists[(i * p)..<(i * p + p)].firstIndex(of: IVFModel.noList) ?? (i * p + p)) - i * p
    }

    /// The bytes of tables and reservoirs a `listMajorFastScan` worker holds at once (see there): 8 MiB.
    /// Task-local so tests can force several chunks.
    @TaskLocal static var listMajorChunkBytes = 8 << 20

    /// Counts the chunks `listMajorFastScan` scans when set (tests: a batch took the list-by-list path).
    @TaskLocal static var listMajorProbe: IVFListMajorProbe?

    /// `top`'s rows with the exact float32 scores `VectorCollection.resolve` would compute (the same kernels:
    /// negated squared L2 or the inner product), read right after the scan or re-ranking that picked them,
    /// while their vectors are still in cache. So the view reports exact scores and results do not read the
    /// rows again once the whole batch is done (those cold reads were ~8% of a docs60k fast-scan query).
    func rescored(_ top: TopK, query: UnsafePointer<Float>, vectors: CollectionView) -> TopK {
        let d = model.header.dimension, l2 = model.header.metric == .l2
        var out = TopK(k: top.k)
        top.forEachUnordered { _, row in
            let v = vectors.vector(row)
            out.insert(l2 ? -squaredL2(query, v, d) : dotProduct(query, v, d), row)
        }
        return out
    }

    /// Asks the CPU for every cache line of the vectors of `top`'s rows (`rescored` reads them later).
    func prefetchRows(of top: TopK, vectors: CollectionView) {
        let bytes = model.header.dimension * MemoryLayout<Float>.size
        top.forEachUnordered { _, row in
            let v = vectors.vector(row)
            vs_prefetch(v, Int32(((Int(bitPattern: v) & 63) + bytes + 63) / 64))  // every line the row touches
        }
    }

    /// One query over binary16 lists (payload kind 5; Spec/IVF.md §6.2). Each probed row gets an approximate
    /// score from its binary16 copy `h` (`vs_dot_f16` / `vs_l2sq_f16`: float32 sums, half the bytes of the
    /// float32 row), and its stored error bound `e ≥ ‖x − h‖` and norm `ν ≥ ‖x‖` turn that into a bound of
    /// the float32 score the flat kernels give the row `x`, rigorous for any rounding of either sum
    /// (`HalfBound`). Rows whose bound still reaches the running k-th exact score (and that pass the mask) are
    /// scored from the float32 rows in `vectors` with `resolve`'s kernels, 64 rows' candidates at a time with
    /// their rows prefetched together. While the top k is not full, a chunk's best rows by their copies are
    /// scored first, so the rest of it meets a real threshold instead of all being scored. A skipped row cannot enter the top k and every score offered to it is
    /// the float32 one, so the result is the float32 lists' (ids, scores and the tie order by row).
    func halfScan(_ query: UnsafePointer<Float>, k: Int, mask: CandidateMask, probes: ArraySlice<UInt32>,
                  vectors: CollectionView) -> TopK {
        let d = model.header.dimension, l2 = model.header.metric == .l2
        var top = TopK(k: k)
        let bound = HalfBound(query: query, dimension: d)
        let lines = Int32((d * 4 + 63) / 64)
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { pickedBuffer in
          withUnsafeTemporaryAllocation(of: Float.self, capacity: 64) { approxBuffer in
            guard let picked = pickedBuffer.baseAddress, let approx = approxBuffer.baseAddress else { return }
            // Scores the picked rows exactly (their rows were prefetched as they were picked).
            func flush(_ m: Int) {
                for j in 0..<m {
                    let v = vectors.vector(picked[j])
                    let s = l2 ? -squaredL2(query, v, d) : dotProduct(query, v, d)
                    if s >= top.threshold { top.insert(s, picked[j]) }
                }
            }
            for list in probes {
                for block in blocks[Int(list)] where block.kind == .flat16 && block.width == d {
                    let halves = block.halfRows
                    var start = 0
                    while start < block.count {
                        let n = min(64, block.count - start)
                        // One row at a time: a two-row interleaved kernel measured slower here (docs60k).
                        for i in 0..<n {
                            approx[i] = l2 ? vs_l2sq_f16(query, halves + (start + i) * d, d)
                                : vs_dot_f16(query, halves + (start + i) * d, d)
                        }
                        var done: UInt64 = 0
                        if top.count < k {
                            // The top k is not full: every row would pass. Score the chunk's best rows by their
                            // copies first (up to the rows missing), so the rest meet a real threshold.
                            var m = 0
                            let want = min(k - top.count, n)
                            var seeds = TopK(k: want)
                            for i in 0..<n where mask.contains(block.rowID(start + i)) {
                                seeds.insert(l2 ? -approx[i] : approx[i], UInt32(i))
                            }
                            seeds.forEachUnordered { _, i in
                                done |= 1 << UInt64(i)
                                picked[m] = block.rowID(start + Int(i))
                                m += 1
                                vs_prefetch(vectors.vector(picked[m - 1]), lines)
                            }
                            flush(m)
                        }
                        // The threshold as the rest of the chunk is tested: it only rises while they are scored,
                        // so the rows kept are a superset of those that can enter.
                        let threshold = top.threshold
                        var m = 0
                        let radius = l2 ? bound.l2Radius(threshold: threshold) : 0
                        for i in 0..<n where done & (1 << UInt64(i)) == 0 {
                            let r = start + i
                            let may = l2 ? bound.l2MayEnter(approx[i], error: block.halfError(r), radius: radius)
                                : bound.dotMayEnter(approx[i], error: block.halfError(r), norm: block.halfNorm(r),
                                                    threshold: threshold)
                            guard may else { continue }
                            let id = block.rowID(r)
                            guard mask.contains(id) else { continue }
                            picked[m] = id
                            m += 1
                            vs_prefetch(vectors.vector(id), lines)
                        }
                        flush(m)
                        start += n
                    }
                }
            }
          }
        }
        return top
    }

    /// One query over float32 (exact scores, `IVFListScan.flat`) or binary16 lists (`halfScan`).
    func unquantized(_ query: UnsafePointer<Float>, k: Int, mask: CandidateMask, probes: ArraySlice<UInt32>,
                     vectors: CollectionView) -> TopK {
        if model.header.kind == .flat16 { return halfScan(query, k: k, mask: mask, probes: probes, vectors: vectors) }
        let metric = model.header.metric
        var top = TopK(k: k)
        for list in probes {
            for block in blocks[Int(list)] { IVFListScan.flat(block, query: query, metric: metric, mask: mask, into: &top) }
        }
        return top
    }

    /// Per-worker state reused by every query of a search (`one`).
    struct Scratch {
        /// The best `refine · k` ADC candidates (refining PQ searches).
        var candidates: CandidateReservoir
        /// The PQ look-up tables (nil for flat).
        var scorer: IVFProbeScorer?
        /// The re-ranked candidates' vectors (refining searches).
        var rows: [UnsafePointer<Float>?]
        /// Their exact distances.
        var scores: [Float]
    }

    /// One query (see `search`); `scratch` is the worker's. `biases`, when given, holds each probe's q·c
    /// (inner-product residual codes: the list constant, from the batched probe search). `tableSlot`, when
    /// given, is the query's table among those the scorer's last `beginTile` built (else `begin` builds it).
    func one(_ query: UnsafePointer<Float>, k: Int, mask: CandidateMask, probes: ArraySlice<UInt32>,
             biases: ArraySlice<Float>? = nil, refine: Int, vectors: CollectionView, tableSlot: Int? = nil,
             scratch: inout Scratch) -> TopK {
        let header = model.header, d = header.dimension
        guard scratch.scorer != nil else { return unquantized(query, k: k, mask: mask, probes: probes, vectors: vectors) }
        let refining = refine > 0
        var result = TopK(k: k)
        if let tableSlot { scratch.scorer?.use(slot: tableSlot) } else { scratch.scorer?.begin(query: query) }
        if refining { scratch.candidates.removeAll() }
        model.centroids.withUnsafeBufferPointer { cb in
            precomputed.withUnsafeBufferPointer { pb in
                // Moved out while scanning (no copy of its tables on write, and no retain of each of them).
                guard let c = cb.baseAddress, var scorer = scratch.scorer.take() else { return }
                for (t, list) in probes.enumerated() {
                    let l = Int(list)
                    scorer.prepare(list: l, query: query, centroid: c + l * d, precomputed: pb.baseAddress,
                                   innerProduct: biases.map { $0[$0.startIndex + t] })
                    if refining {
                        for block in blocks[l] { scorer.scan(block, mask: mask, into: &scratch.candidates) }
                    } else {
                        for block in blocks[l] { scorer.scan(block, mask: mask, into: &result) }
                    }
                }
                scratch.scorer = scorer
            }
        }
        guard refining else { return result }
        return reranked(query, k: k, rows: scratch.candidates.finish(), vectors: vectors, scratch: &scratch)
    }

    /// The best `k` of a refining search's ADC candidates `rows` (`CandidateReservoir.finish`) by their exact
    /// float32 scores. Every candidate passed the mask, so it is a row of the collection: its vector is in
    /// `vectors`. The exact selection breaks ties by row, so the order the candidates come in is irrelevant
    /// and no sort is needed.
    func reranked(_ query: UnsafePointer<Float>, k: Int, rows: CandidateReservoir.Kept, vectors: CollectionView,
                  scratch: inout Scratch) -> TopK {
        let d = model.header.dimension, metric = model.header.metric
        var result = TopK(k: k)
        // The candidates' vectors are scattered over the map: one kernel scores four at a time and prefetches
        // those further on, so their cache misses overlap instead of stalling one row at a time.
        scratch.rows.removeAll(keepingCapacity: true)
        for c in rows { scratch.rows.append(vectors.vector(c.id)) }
        let n = rows.count, first = rows.startIndex
        if scratch.scores.count < n { scratch.scores = [Float](repeating: 0, count: n) }
        scratch.rows.withUnsafeBufferPointer { p in
            scratch.scores.withUnsafeMutableBufferPointer { s in
                guard let pb = p.baseAddress, let sb = s.baseAddress else { return }
                ExactRerank.score(query, rows: pb, count: n, dimension: d, metric: metric, into: sb)
                for j in 0..<n {
                    let score = metric == .l2 ? -sb[j] : sb[j]
                    if score >= result.threshold { result.insert(score, rows[first + j].id) }
                }
            }
        }
        return result
    }
}

/// The certified test of a binary16 row (Spec/IVF.md §6.2): can the float32 score of row `x` reach the
/// threshold `T` (the running k-th exact score), knowing only the float32 score `a` of its copy `h`, an upper
/// bound `e` of `‖x − h‖₂` and an upper bound `ν` of `‖x‖₂`?
///
/// A float32 sum of `d` products or squared differences, in any order, with or without FMA, is within
/// `g = γ_(d+4) = (d+4)u/(1 − (d+4)u)`, `u = 2⁻²⁴`, of the exact sum, relative to the sum of the terms'
/// magnitudes (Higham §3.1), plus `τ = (d+4)·2⁻¹⁴⁰` for underflow. With `‖h‖ ≤ ν + e`:
///
/// * dot: `fl(q·x) ≤ q·x + g‖q‖ν ≤ q·h + ‖q‖e + g‖q‖ν ≤ a + ‖q‖(e + g(2ν + e)) + 2τ`: the row may enter
///   unless that is below `T`.
/// * L2: `|q − h|² ≥ (a − τ)/(1 + g)`, `‖q − x‖ ≥ ‖q − h‖ − e`, and `fl(|q − x|²) ≥ (1 − g)‖q − x‖² − τ`.
///   The row enters only if `fl(|q − x|²) ≤ −T`, which needs `‖q − x‖ ≤ R = √((−T + τ)/(1 − g))`, so it
///   cannot when `(a − τ)/(1 + g) > (R + e)²`.
///
/// Everything is evaluated in float64 with relative margins (`2⁻³⁰`) far above float64 rounding. A NaN or
/// infinite `a`, `e` or `ν` never says "cannot enter": such a row is scored exactly. The norms are rounded up.
/// Queries are finite with a finite norm (checked before search), so neither float32 sum overflows: `h` is
/// finite wherever `e` is, and `|x_i| ≤ 65520` there.
struct HalfBound {
    /// `‖q‖₂`, rounded up.
    let qn: Double
    let g: Double
    let tiny: Double

    init(query: UnsafePointer<Float>, dimension d: Int) {
        qn = ExactSearch.certifiedNorms(query, dimension: d).l2
        let u = Double(d + 4) * 0x1p-24
        g = u / (1 - u)
        tiny = Double(d + 4) * 0x1p-140
    }

    /// Dot product and cosine: whether a row with copy score `a` may reach `threshold`.
    @inline(__always)
    func dotMayEnter(_ a: Float, error e: Float, norm nu: Float, threshold: Float) -> Bool {
        guard a.isFinite else { return true }
        let a = Double(a), e = Double(e), nu = Double(nu)
        let upper = a + qn * (e + g * (2 * nu + e)) * (1 + 0x1p-30) + abs(a) * 0x1p-50 + 2 * tiny
        return !(upper < Double(threshold))
    }

    /// L2: `R` for `threshold` (−squared distance of the k-th row), +inf while the top k is not full.
    @inline(__always)
    func l2Radius(threshold: Float) -> Double {
        guard threshold > -.infinity else { return .infinity }
        let limit = max(0, -Double(threshold)) + tiny
        return (limit / (1 - g)).squareRoot() * (1 + 0x1p-30) + tiny
    }

    /// L2: whether a row with copy squared distance `a` and error bound `e` may be within `radius`.
    @inline(__always)
    func l2MayEnter(_ a: Float, error e: Float, radius: Double) -> Bool {
        guard a.isFinite else { return true }
        let lower = (Double(a) - tiny) / (1 + g) * (1 - 0x1p-30)
        let reach = (radius + Double(e)) * (1 + 0x1p-30)
        return !(lower > reach * reach)
    }
}

/// Chunks scanned list by list (`IVFView.listMajorFastScan`), counted for tests.
final class IVFListMajorProbe: Sendable {
    private let count = Mutex(0)

    /// One more chunk scanned (from any worker).
    func countChunk() { count.withLock { $0 += 1 } }

    /// Chunks scanned so far.
    var chunks: Int { count.withLock { $0 } }
}
