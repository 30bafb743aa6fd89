import Foundation
import LMDB
import VecStoreKernels

extension HNSWConfig {
    /// A new, empty graph's header for collection `collection`.
    static func create(_ p: HNSWParameters, collection: UInt32) -> HNSWConfig {
        // A fixed seed per collection id keeps builds reproducible (a serial build is deterministic).
        HNSWConfig(p, seed: 0x7665_6373_746F_7265 ^ UInt64(collection) &* 0x9E37_79B9_7F4A_7C15)
    }
}

/// Applying a batch of changes to a graph, for every metric.
enum HNSWIndexing {
    /// From this many inserted rows on, a batch is linked by all cores with per-node locks (hnswlib's
    /// scheme); smaller batches are linked serially, touching only the blocks they change.
    static let parallelThreshold = 512
    /// A parallel step reconnects unreachable rows (`HNSWEditor.reconnectUnreachable`) when it links at
    /// least one row in this many of the graph's: the walk costs ~0.3 µs a row (238k rows: ~0.1 s), an
    /// insert ~0.8 ms wall at 954k, so the walk stays within a few percent of such a step.
    static let reconnectShare = 100

    static var defaultThreads: Int { ProcessInfo.processInfo.activeProcessorCount }

    /// Repairs around `deleted`, moves the entry point if needed, inserts `inserted`. `vectors` maps
    /// every row below `rows` to its float32 vector; `liveWords` is the live bitmap after the batch.
    static func apply(_ editor: HNSWEditor, _ vectors: VectorTable, liveWords: [UInt64], rows: Int, metric: Metric,
                      deleted: [UInt32], inserted: [UInt32], threads: Int) {
        switch metric {
        case .l2: apply(editor, vectors, L2Distance.self, liveWords: liveWords, rows: rows, deleted: deleted,
                        inserted: inserted, threads: threads)
        case .cosine, .dot:
            apply(editor, vectors, InnerProductDistance.self, liveWords: liveWords, rows: rows, deleted: deleted,
                  inserted: inserted, threads: threads)
        }
    }

    private static func apply<D: HNSWDistance>(_ editor: HNSWEditor, _ vt: VectorTable, _: D.Type,
                                               liveWords: [UInt64], rows: Int, deleted: [UInt32], inserted: [UInt32],
                                               threads: Int) {
        editor.extend(to: rows)
        CandidateMask.with(liveWords) { live in
            for d in deleted { editor.repairDeleted(d, D.self, vt, live: live) }
            editor.fixEntryPoint(live: live)
            if inserted.count >= parallelThreshold && threads > 1 {
                // A few serial inserts first give the parallel workers a connected graph to start from.
                let head = min(inserted.count, editor.config.entryPoint == HNSWConfig.noEntry ? 64 : 0)
                if head > 0 {
                    let scratch = HNSWScratchPool.take(rows: editor.rows)
                    for q in inserted[0..<head] { editor.insert(q, D.self, vt, live: live, scratch: scratch) }
                    HNSWScratchPool.give(scratch)
                }
                editor.insertParallel(Array(inserted[head...]), D.self, vt, live: live, threads: threads)
                // Concurrent pruning can take a row's last incoming link (about 2 rows in 10,000 on docs60k).
                // The walk reads every list: only a step of at least 1/`reconnectShare` of the rows pays it.
                if inserted.count * reconnectShare >= editor.rows { editor.reconnectUnreachable(D.self, vt, live: live) }
            } else if !inserted.isEmpty {
                let scratch = HNSWScratchPool.take(rows: editor.rows)
                for q in inserted { editor.insert(q, D.self, vt, live: live, scratch: scratch) }
                HNSWScratchPool.give(scratch)
            }
            editor.fixEntryPoint(live: live)
        }
    }
}

/// Calls `body` with a mask over `words` (nil when `words` is nil).
func withMask<R>(_ words: [UInt64]?, _ body: (CandidateMask?) -> R) -> R {
    guard let words else { return body(nil) }
    return CandidateMask.with(words) { body($0) }
}

/// HNSW k-NN search on layer 0 after greedy descent.
enum HNSWSearch {

    /// Greedy descent and layer-0 beam search over the binary16 copies, then the best `2k` of the beam
    /// re-ranked with the float32 vectors; the best `k` by exact distance.
    /// `exact` scores the re-ranked rows (float32, `FloatScorer` or `ColdFloatScorer`).
    static func knn<G: HNSWGraphAccess, S: HNSWScorer, E: HNSWScorer>(
        _ g: G, _ scorer: S, exact: E, k: Int, ef: Int, allowed: CandidateMask?, scratch: HNSWScratch,
        valueLinks: HNSWValueLinks? = nil
    ) -> TopK {
        var top = TopK(k: k)
        let entry = g.config.entryPoint
        // The entry point comes from disk: one outside the graph is damage (HNSWGraphView rejects it;
        // this guard keeps the search in bounds whatever view it is given).
        guard entry != HNSWConfig.noEntry, Int(entry) < g.rows else { return top }
        let d0 = scorer.distance(entry)
        let (cur, curD) = HNSWAlgorithms.greedyDescent(g, scorer, entry: entry, entryDistance: d0,
                                                       top: g.config.maxLevel, bottom: 0)
        if let allowed, let valueLinks, valueLinks.rows == g.rows {
            // The filter pins a linked field to one value: its matches are expanded through their value's
            // own links (Spec/HNSW.md §7.4), with the beam widened by selectivity and by half of `ef`.
            HNSWAlgorithms.searchLayerLinked(g, scorer, entry: cur, entryDistance: curD,
                                             ef: max(linkedEf(ef, matches: allowed.matches, rows: g.rows), k),
                                             allowed: allowed, links: valueLinks, rows: g.rows, scratch: scratch)
        } else if let allowed, lookThrough(allowed, rows: g.rows, links: g.linkCap(0)) {
            // Under a mask (a filter, or deleted rows), only allowed rows are scored (two-hop expansion).
            HNSWAlgorithms.searchLayerFiltered(g, scorer, entry: cur, entryDistance: curD,
                                               ef: max(filteredEf(ef, matches: allowed.matches, rows: g.rows), k),
                                               allowed: allowed, rows: g.rows, scratch: scratch)
        } else {
            HNSWAlgorithms.searchLayer(g, scorer, entry: cur, entryDistance: curD, ef: max(ef, k),
                                       level: 0, allowed: allowed, rows: g.rows, scratch: scratch)
        }
        var res = scratch.results
        // Only the 2k closest by traversal distance are re-ranked: binary16 error (~1e-3 relative) does
        // not move a true top-k result 2k places down, and each re-ranked row costs a float32 fetch.
        // int8 error is larger (half a step per component); its recall per ef is measured in
        // BENCHMARKS.md, and a larger ef buys it back.
        while res.count > 2 * k { res.pop() }
        var i = 0
        while i < res.count {
            exact.prefetch(res.ids[i])
            i += 1
        }
        // One inserter for the loop: `TopK.insert` per row left its closure out of line here (~70
        // instructions a row under callgrind, ~1,100 a siftsmall query at ef 16).
        top.withInserter { inserter in
            while !res.isEmpty {
                inserter.insert(-exact.distance(res.topID), res.topID)
                res.pop()
            }
        }
        scratch.results = res
        return top
    }

    /// Whether a mask is dense enough for the two-hop filtered search: a node's two-hop neighbourhood
    /// (about `links`² nodes) must hold some `links` allowed ones, that is a share of at least 1/`links`
    /// (3% at M=16). Sparser masks (reached only with `filterStrategy: .graph`; the planner answers them
    /// exactly) use the plain beam, which scores and expands every node. A mask of unknown count counts
    /// as dense.
    static func lookThrough(_ mask: CandidateMask, rows: Int, links: Int) -> Bool {
        mask.matches < 0 || mask.matches * links >= rows
    }

    /// The beam width of a two-hop filtered search asked for at `ef`, under a mask allowing `matches` of
    /// the graph's `rows` rows: `ef · (1 + filteredEfSlope · log2(rows / matches))`, rounded (Spec/HNSW.md
    /// §5.2). At the same ef the two-hop search trails an unfiltered one in recall, the more the rarer
    /// the matches (docs1m at 954k rows, ef 64: unfiltered 0.954, `linux` 53% 0.924, `python` 13% 0.934),
    /// so a filtered search widens its beam by selectivity to keep the recall `ef` gives unfiltered
    /// (ef 79 for `linux`: 0.952; ef 111 for `python`: 0.959). A mask of unknown count, or one allowing
    /// every row, keeps `ef`.
    static func filteredEf(_ ef: Int, matches: Int, rows: Int) -> Int {
        guard matches > 0, rows > matches else { return ef }
        let scale = 1 + filteredEfSlope * log2(Double(rows) / Double(matches))
        // A beam wider than the rows searches them all: clamp before converting, so a huge `ef` cannot trap.
        let widened = (Double(ef) * scale).rounded()
        return widened >= Double(max(ef, rows)) ? max(ef, rows) : Int(widened)
    }

    /// The beam width of a search through filter links (Spec/HNSW.md §7.4) asked for at `ef`:
    /// about `filteredEf`'s width plus `ef / 2`: `ef · (1.5 + filteredEfSlope · log2(rows / matches))`,
    /// rounded, at most `max(ef, rows)`. A value's own graph has thinner lists than the whole graph (docs1m at 954k rows: 5.9
    /// links a row for `python`), so at the two-hop search's width the linked search stopped short of
    /// recall 0.95 (ef 64: `linux` 53% 0.931, `python` 13% 0.945); with the extra half it reached
    /// 0.9565 and 0.9515, and `linux` then beat the two-hop search (0.952) for fewer rows scored.
    /// A mask of unknown count, or one allowing every row, gets `1.5 · ef`.
    static func linkedEf(_ ef: Int, matches: Int, rows: Int) -> Int {
        let share = matches > 0 && rows > matches ? log2(Double(rows) / Double(matches)) : 0
        let widened = (Double(ef) * (1 + linkedEfExtra + filteredEfSlope * share)).rounded()
        // A beam wider than the rows searches them all: clamp before converting, so a huge `ef` cannot trap.
        return widened >= Double(max(ef, rows)) ? max(ef, rows) : max(ef, Int(widened))
    }

    /// The linked search's widening beyond `filteredEf`, as a share of `ef` (see `linkedEf`): measured on
    /// docs1m at 954k rows, ef 64, ×1.3 on `filteredEf` left `linux` at 0.9485; ×1.5 gave `linux` 0.958,
    /// `python` 0.956 for 11% more rows scored than this rule (`python`'s 0.9515 at 1,003 rows).
    static let linkedEfExtra = 0.5

    /// Beam widening per halving of the matching share (see `filteredEf`): measured on docs1m at 954k
    /// rows, 0.15 left `linux`/`python` at recall 0.9505/0.9515 (no margin over 200 queries), 0.25 at
    /// 0.952/0.959, 0.4 at 0.9525/0.9695 for 16% less speed than 0.25 on `linux`.
    static let filteredEfSlope = 0.25

    /// Whether a filter matching `matches` of `live` rows is answered by exact search over the matches
    /// instead of the graph (Spec/HNSW.md §5.2). Exact search costs one sequential distance per match;
    /// the two-hop filtered graph search costs about as much as an unfiltered one (~5·M·ef sequential
    /// distances' worth, measured) whatever the selectivity, as long as two-hop neighbourhoods hold
    /// matches (a share of at least 1/(2M), see `lookThrough`). So: exact when the matches are fewer
    /// than 5·M·ef, or too sparse for two-hop search (matches·2M < live).
    static func prefersExact(matches: Int, live: Int, m: Int, ef: Int) -> Bool {
        let (graphCost, overflow) = (exactBelowFactor * m).multipliedReportingOverflow(by: ef)
        return overflow || matches < graphCost || matches * 2 * m < live
    }

    /// The graph search's cost in exact-search distances per unit of M·ef (docs60k and docs1m, 384-d:
    /// an exact scan costs 53–75 ns a match, a two-hop search at M=16, ef=64 0.26–0.29 ms).
    static let exactBelowFactor = 5

    /// k-NN of `count` queries over `threads` workers. With `reads` (the snapshot's `MapReads`, not yet
    /// settled) and binary16 copies, the search reads the map through it (`runCold`: Spec/HNSW.md §5.1,
    /// "Cold reads"); the results are the same.
    static func run(_ vectors: VectorTable, _ g: HNSWGraphView, metric: Metric, queries: UnsafePointer<Float>,
                    count: Int, k: Int, ef: Int, allowed: CandidateMask?, threads: Int, reads: MapReads? = nil,
                    valueLinks: HNSWValueLinks? = nil) -> [TopK] {
        if let reads, !reads.settled, g.int8 == nil {
            switch metric {
            case .l2:
                return runCold(vectors, g, L2Distance.self, L2HalfDistance.self, reads: reads, queries: queries,
                               count: count, k: k, ef: ef, allowed: allowed, threads: threads, valueLinks: valueLinks)
            case .cosine, .dot:
                return runCold(vectors, g, InnerProductDistance.self, InnerProductHalfDistance.self, reads: reads,
                               queries: queries, count: count, k: k, ef: ef, allowed: allowed, threads: threads, valueLinks: valueLinks)
            }
        }
        switch (metric, g.int8) {
        case (.l2, nil):
            return run(vectors, g, L2Distance.self, HalfScorerFactory<L2HalfDistance>(graph: g),
                queries: queries, count: count, k: k, ef: ef, allowed: allowed, threads: threads, valueLinks: valueLinks)
        case (.cosine, nil), (.dot, nil):
            return run(vectors, g, InnerProductDistance.self, HalfScorerFactory<InnerProductHalfDistance>(graph: g),
                queries: queries, count: count, k: k, ef: ef, allowed: allowed, threads: threads, valueLinks: valueLinks)
        case (.l2, let s?):
            return run(vectors, g, L2Distance.self, Int8ScorerFactory<L2Int8Distance>(graph: g, scoring: s),
                queries: queries, count: count, k: k, ef: ef, allowed: allowed, threads: threads, valueLinks: valueLinks)
        case (.cosine, let s?), (.dot, let s?):
            return run(vectors, g, InnerProductDistance.self, Int8ScorerFactory<InnerProductInt8Distance>(graph: g, scoring: s),
                queries: queries, count: count, k: k, ef: ef, allowed: allowed, threads: threads, valueLinks: valueLinks)
        }
    }

    /// `factory` builds each query's scorer in a per-thread buffer of `dimension` floats (reused from
    /// query to query).
    private static func run<D: HNSWDistance, F: HNSWScorerFactory>(
        _ vectors: VectorTable, _ g: HNSWGraphView, _: D.Type, _ factory: F, queries: UnsafePointer<Float>,
        count: Int, k: Int, ef: Int, allowed: CandidateMask?, threads: Int, valueLinks: HNSWValueLinks?
    ) -> [TopK] {
        let dim = vectors.dimension
        return QueryWorkers.map(count: count, threads: threads, placeholder: TopK(k: 0)) { indices, put in
            let scratch = HNSWScratchPool.take(rows: g.rows)
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(1, dim))
            defer { HNSWScratchPool.give(scratch); buffer.deallocate() }
            for i in indices {
                let q = queries + i * dim
                put(i, knn(g, factory.scorer(query: q, buffer: buffer), exact: FloatScorer<D>(vectors: vectors, query: q),
                           k: k, ef: ef, allowed: allowed, scratch: scratch, valueLinks: valueLinks))
            }
        }
    }

    /// `run` with every link list, binary16 copy and float32 row read through `reads` (`MapReads.bytes`:
    /// `pread` into per-thread rows where the map's region is not mapped yet). Each query's tally is
    /// recorded, so the map settles once queries find it mapped.
    private static func runCold<D: HNSWDistance, H: HNSWHalfDistance>(
        _ vectors: VectorTable, _ g: HNSWGraphView, _: D.Type, _: H.Type, reads: MapReads,
        queries: UnsafePointer<Float>, count: Int, k: Int, ef: Int, allowed: CandidateMask?, threads: Int,
        valueLinks: HNSWValueLinks?
    ) -> [TopK] {
        let dim = vectors.dimension
        return QueryWorkers.map(count: count, threads: threads, placeholder: TopK(k: 0)) { indices, put in
            let scratch = HNSWScratchPool.take(rows: g.rows)
            defer { HNSWScratchPool.give(scratch) }
            let cold = HNSWColdQuery(reads: reads, copyBytes: g.copyStride, floatBytes: dim * 4,
                                     listBytes: max(g.slotWords0, g.config.slotWordsUpper) * 4)
            let graph = ColdGraph(graph: g, cold: cold)
            for i in indices {
                let q = queries + i * dim
                cold.tally = MapReads.Tally()
                let top = knn(graph, ColdHalfScorer<H>(copies: g, query: q, cold: cold),
                              exact: ColdFloatScorer<D>(vectors: vectors, query: q, cold: cold),
                              k: k, ef: ef, allowed: allowed, scratch: scratch, valueLinks: valueLinks)
                reads.record(cold.tally)
                put(i, top)
            }
        }
    }
}
