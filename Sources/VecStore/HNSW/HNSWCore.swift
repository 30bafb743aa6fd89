import CDistance
import Foundation
import LMDB
import VecStoreKernels

/// A graph distance (smaller is closer), chosen once per search so the inner loops are specialised and
/// never go through an existential.
protocol HNSWDistance: SendableMetatype {
    /// The same distance against a binary16 and an int8 copy (graph construction's beam, `HNSWCopyTable`).
    associatedtype Half: HNSWHalfDistance
    associatedtype Int8Copy: HNSWInt8Distance
    static func distance(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float
}

/// Squared Euclidean distance (metric `l2`).
enum L2Distance: HNSWDistance {
    typealias Half = L2HalfDistance
    typealias Int8Copy = L2Int8Distance
    @inline(__always)
    static func distance(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        vs_l2(a, b, n)
    }
}

/// Negated inner product (metrics `cosine`, on unit vectors, and `dot`).
enum InnerProductDistance: HNSWDistance {
    typealias Half = InnerProductHalfDistance
    typealias Int8Copy = InnerProductInt8Distance
    @inline(__always)
    static func distance(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        -vs_dot(a, b, n)
    }
}

/// Distance between a float query and a stored binary16 copy (the layer-0 slots' traversal vectors).
protocol HNSWHalfDistance: SendableMetatype {
    static func distance(_ q: UnsafePointer<Float>, _ h: UnsafePointer<UInt16>, _ n: Int) -> Float
}

/// Squared L2 against binary16.
enum L2HalfDistance: HNSWHalfDistance {
    @inline(__always)
    static func distance(_ q: UnsafePointer<Float>, _ h: UnsafePointer<UInt16>, _ n: Int) -> Float {
        vs_l2sq_f16(q, h, n)
    }
}

/// Negated inner product against binary16.
enum InnerProductHalfDistance: HNSWHalfDistance {
    @inline(__always)
    static func distance(_ q: UnsafePointer<Float>, _ h: UnsafePointer<UInt16>, _ n: Int) -> Float {
        -vs_dot_f16(q, h, n)
    }
}

/// Scores nodes against one query; the search loops are generic over it, so each combination of
/// vector source and metric is a specialised loop.
protocol HNSWScorer {
    func distance(_ id: UInt32) -> Float
    func prefetch(_ id: UInt32)
}

/// Scores against the float32 vectors of the collection (graph construction, exact re-ranking).
struct FloatScorer<D: HNSWDistance>: HNSWScorer {
    let vectors: VectorTable
    let query: UnsafePointer<Float>
    @inline(__always) func distance(_ id: UInt32) -> Float { D.distance(query, vectors.vector(id), vectors.dimension) }
    @inline(__always) func prefetch(_ id: UInt32) { vs_prefetch(vectors.vector(id), vectors.prefetchLines) }
}

/// Where a scorer over traversal copies finds row `i`'s copy: a read snapshot's `graph-vectors` blocks
/// (`HNSWGraphView`) or the copies a write transaction links with (`HNSWCopyTable`). Scorers are generic
/// over it, so each source is a specialised loop.
protocol HNSWCopySource: AnyObject {
    /// Components of a row.
    var dimension: Int { get }
    /// Cache lines prefetched per copy.
    var copyPrefetchLines: Int32 { get }
    /// Row `i`'s traversal copy (binary16 or int8, `HNSWTraversal.rowBytes`).
    func traversalCopy(_ i: UInt32) -> UnsafeRawPointer
}

/// The traversal copies (binary16 or int8, `rowBytes` each) of the rows a write transaction links
/// (Spec/HNSW.md §5.3): rows of the blocks before the batch's first block from the snapshot the
/// transaction started from (pages it has not written), later rows encoded from the batch's float32 rows
/// into memory this table owns, never pointers into pages written in the same transaction.
final class HNSWCopyTable: HNSWCopySource, @unchecked Sendable {
    private let bases: UnsafeMutablePointer<UnsafeRawPointer>
    private let owned: UnsafeMutableRawPointer?
    let blockCount: Int
    let shift: UInt32
    let mask: UInt32
    /// Bytes of one row's copy (`HNSWTraversal.rowBytes`).
    let rowBytes: Int
    /// Components of a row.
    let dimension: Int
    /// Cache lines prefetched per copy (the whole copy: 12 lines for binary16 at 384-d, 7 for int8).
    let copyPrefetchLines: Int32

    /// Nil when a stored block is not the size `rows` implies or not 4-byte aligned (the caller then
    /// links with the float32 rows alone). `encode` writes row `r`'s copy (`rowBytes`) from its vector.
    init?(_ txn: Transaction, _ dbs: Databases, collection: UInt32, blockShift: Int, dimension: Int, rowBytes: Int,
          committedRows: Int, rows: Int, encode: (_ row: UInt32, _ out: UnsafeMutableRawPointer) -> Void) throws {
        shift = UInt32(blockShift)
        mask = (1 << shift) - 1
        self.dimension = dimension
        self.rowBytes = rowBytes
        copyPrefetchLines = Int32(min(32, (rowBytes + 63) / 64))
        let capacity = 1 << blockShift
        blockCount = (rows + capacity - 1) / capacity
        let firstNew = committedRows / capacity  // the first block the batch writes to
        bases = .allocate(capacity: max(1, blockCount))
        // A read that throws must not leak `bases` either (deinit does not run for an unfinished init).
        do {
            for b in 0..<min(firstNew, blockCount) {
                guard let value = try txn.get(dbs.graphVectors, Format.key(collection, UInt32(b))),
                      value.count == capacity * rowBytes, let base = value.baseAddress,
                      Int(bitPattern: base) % 4 == 0 else {
                    bases.deallocate()
                    return nil
                }
                bases[b] = base
            }
        } catch {
            bases.deallocate()
            throw error
        }
        guard firstNew < blockCount else {
            owned = nil
            return
        }
        let newRows = rows - firstNew * capacity
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(1, newRows * rowBytes), alignment: 64)
        for r in 0..<newRows { encode(UInt32(firstNew * capacity + r), buffer + r * rowBytes) }
        for b in firstNew..<blockCount { bases[b] = UnsafeRawPointer(buffer + (b - firstNew) * capacity * rowBytes) }
        owned = buffer
    }

    deinit {
        bases.deallocate()
        owned?.deallocate()
    }

    /// Row `i`'s traversal copy (`rowBytes`): in the snapshot's block or in this table's own memory.
    @inline(__always)
    func traversalCopy(_ i: UInt32) -> UnsafeRawPointer {
        bases[Int(i >> shift)] + Int(i & mask) * rowBytes
    }
}

/// Row → vector pointer by arithmetic over the per-block base pointers of a `CollectionView`.
struct VectorTable {
    let bases: UnsafeMutablePointer<UnsafePointer<Float>>
    let blockCount: Int
    let shift: UInt32
    let mask: UInt32
    let dimension: Int
    /// Cache lines prefetched per vector before its distance is computed.
    let prefetchLines: Int32

    init(_ view: CollectionView) {
        blockCount = view.blocks.count
        bases = .allocate(capacity: max(1, blockCount))
        for (i, b) in view.blocks.enumerated() { bases[i] = b.vectors }
        shift = UInt32(view.record.blockShift)
        mask = (1 << shift) - 1
        dimension = view.record.dimension
        // Measured on docs60k (384-d): 1–4 lines are as fast as the whole vector (24 lines) or faster;
        // the hardware prefetcher streams the rest once the first lines miss.
        prefetchLines = Int32(min(2, (dimension * 4 + 63) / 64))
    }

    /// The vectors of a write transaction: rows of blocks before the one holding `appended.firstRow`
    /// from `before` (the snapshot the transaction started from), later rows from `appended`.
    init(_ before: CollectionView, appended: BatchVectors?) {
        shift = UInt32(before.record.blockShift)
        mask = (1 << shift) - 1
        dimension = before.record.dimension
        // Graph construction scores float32 rows: 8 lines (of 24 at 384-d) gave 3,832 rows/s on a 100k prefix
        // of docs1m against 3,607 with 2 and 3,689 with all 24 (2 threads).
        prefetchLines = Int32(min(8, (dimension * 4 + 63) / 64))
        guard let appended else {
            blockCount = before.blocks.count
            bases = .allocate(capacity: max(1, blockCount))
            for (i, b) in before.blocks.enumerated() { bases[i] = b.vectors }
            return
        }
        let firstBlock = Int(appended.firstRow >> shift)
        let capacity = 1 << Int(shift)
        let newBlocks = (appended.rows + capacity - 1) / capacity
        blockCount = firstBlock + newBlocks
        bases = .allocate(capacity: max(1, blockCount))
        for i in 0..<firstBlock { bases[i] = before.blocks[i].vectors }
        for j in 0..<newBlocks { bases[firstBlock + j] = UnsafePointer(appended.storage + j * capacity * dimension) }
    }

    func deallocate() { bases.deallocate() }

    @inline(__always)
    func vector(_ i: UInt32) -> UnsafePointer<Float> {
        bases[Int(i >> shift)] + Int(i & mask) * dimension
    }
}

/// The float32 rows a write transaction appends (with the rows of the tail block before them), kept in
/// the writer's own memory: graph construction and the binary16 copies read them from here rather than
/// from pages written in the same transaction.
final class BatchVectors {
    /// The first row held: the first row of the block the batch's first row falls in.
    let firstRow: UInt32
    let dimension: Int
    private(set) var storage: UnsafeMutablePointer<Float>
    private(set) var rows = 0
    private var capacity: Int

    init(firstRow: UInt32, dimension: Int, capacity: Int) {
        self.firstRow = firstRow
        self.dimension = dimension
        self.capacity = max(1, capacity)
        storage = .allocate(capacity: self.capacity * dimension)
    }

    deinit { storage.deallocate() }

    /// Appends one row of `dimension` floats.
    func append(_ row: UnsafePointer<Float>) {
        if rows == capacity {
            let n = capacity * 2
            let p = UnsafeMutablePointer<Float>.allocate(capacity: n * dimension)
            p.update(from: storage, count: rows * dimension)
            storage.deallocate()
            storage = p
            capacity = n
        }
        (storage + rows * dimension).update(from: row, count: dimension)
        rows += 1
    }
}

/// Read access to adjacency lists, implemented by the zero-copy read view and by the writer's editor.
/// A list is `[count, id0, id1, …]` as u32.
protocol HNSWGraphAccess {
    /// Whether readers must take the node lock (only while a parallel build runs).
    var needsLocks: Bool { get }
    func lock(_ node: UInt32)
    func unlock(_ node: UInt32)
    /// The list of `node` on `level`; `node` must exist on that level.
    func links(_ node: UInt32, _ level: Int) -> UnsafePointer<UInt32>
    /// Hints that `node`'s layer-0 list is read next.
    func prefetchLinks(_ node: UInt32)
    /// Nodes in the graph: a link to an id at or above this is damage and is skipped.
    var rows: Int { get }
    /// The graph's header (its degree bounds clamp the stored list counts).
    var config: HNSWConfig { get }
}

extension HNSWGraphAccess {
    /// The most links a list on `level` can hold: a stored count above it is damage and is clamped.
    @inline(__always)
    func linkCap(_ level: Int) -> Int { level == 0 ? config.maxLinks0 : config.m }
}

/// Growing the manually managed buffers of the HNSW code (beam heaps, the editor's per-row tables).
enum HNSWBuffer {
    /// A new buffer of `capacity` elements that starts with `old`'s first `count` and leaves the rest
    /// uninitialised (`T` trivial); `old` is deallocated.
    static func reallocated<T>(_ old: UnsafeMutablePointer<T>, count: Int, capacity: Int) -> UnsafeMutablePointer<T> {
        let p = UnsafeMutablePointer<T>.allocate(capacity: capacity)
        p.moveInitialize(from: old, count: count)
        old.deallocate()
        return p
    }

    /// `reallocated`, the elements after the first `count` set to `fill`.
    static func reallocated<T>(_ old: UnsafeMutablePointer<T>, count: Int, capacity: Int,
                               filling fill: T) -> UnsafeMutablePointer<T> {
        let p = reallocated(old, count: count, capacity: capacity)
        (p + count).initialize(repeating: fill, count: capacity - count)
        return p
    }
}

/// A max-heap of (distance, id) over manually managed memory (no per-push allocation, no
/// exclusivity checks on a class property in the loop).
struct DistanceHeap {
    var keys: UnsafeMutablePointer<Float>
    var ids: UnsafeMutablePointer<UInt32>
    var count = 0
    var capacity: Int

    init(capacity: Int) {
        self.capacity = max(16, capacity)
        keys = .allocate(capacity: self.capacity)
        ids = .allocate(capacity: self.capacity)
    }

    func deallocate() {
        keys.deallocate()
        ids.deallocate()
    }

    @inline(__always) var isEmpty: Bool { count == 0 }
    @inline(__always) var topKey: Float { keys[0] }
    @inline(__always) var topID: UInt32 { ids[0] }

    mutating func grow() {
        let n = capacity * 2
        keys = HNSWBuffer.reallocated(keys, count: count, capacity: n)
        ids = HNSWBuffer.reallocated(ids, count: count, capacity: n)
        capacity = n
    }

    @inline(__always)
    mutating func push(_ key: Float, _ id: UInt32) {
        if count == capacity { grow() }
        var child = count
        count += 1
        while child > 0 {
            let parent = (child - 1) >> 1
            if keys[parent] >= key { break }
            keys[child] = keys[parent]
            ids[child] = ids[parent]
            child = parent
        }
        keys[child] = key
        ids[child] = id
    }

    @inline(__always)
    mutating func pop() {
        count -= 1
        if count == 0 { return }
        let key = keys[count], id = ids[count]
        var parent = 0
        while true {
            var child = 2 * parent + 1
            if child >= count { break }
            if child + 1 < count && keys[child + 1] > keys[child] { child += 1 }
            if keys[child] <= key { break }
            keys[parent] = keys[child]
            ids[parent] = ids[child]
            parent = child
        }
        keys[parent] = key
        ids[parent] = id
    }
}

/// Per-thread search state, reused across searches: a generation-stamped visited array and the two
/// heaps of the beam search. Taken from and returned to `HNSWScratchPool`.
final class HNSWScratch: @unchecked Sendable {
    var stamps: UnsafeMutablePointer<UInt16>
    var stampCapacity: Int
    /// Bytes mapped for `stamps` (0: allocated normally), see `HNSWVisitedPages`.
    private var stampsMapped = 0
    var generation: UInt16 = 0
    /// Candidates to expand, keyed by negated distance (closest on top).
    var candidates = DistanceHeap(capacity: 256)
    /// The best `ef` allowed nodes found, keyed by distance (farthest on top).
    var results = DistanceHeap(capacity: 256)
    /// Unvisited neighbours of the node being expanded, prefetched before they are scored.
    var pending: UnsafeMutablePointer<UInt32>
    var neighbourCapacity = 0
    /// Scratch of graph construction: an insert's candidates on one level (`buildIDs`/`buildDistances`)
    /// and a full list being pruned for a reverse link (`pruneIDs`/`pruneDistances`), each `buildCapacity`.
    private(set) var buildIDs: UnsafeMutablePointer<UInt32>
    private(set) var buildDistances: UnsafeMutablePointer<Float>
    private(set) var pruneIDs: UnsafeMutablePointer<UInt32>
    private(set) var pruneDistances: UnsafeMutablePointer<Float>
    private(set) var buildCapacity = 0
    /// A prepared query of graph construction over int8 copies (`queryFloats` floats).
    private(set) var queryBuffer: UnsafeMutablePointer<Float>?
    private var queryFloats = 0

    /// The prepared-query buffer, at least `n` floats (its contents are not kept).
    func preparedQuery(_ n: Int) -> UnsafeMutablePointer<Float> {
        if let queryBuffer, queryFloats >= n { return queryBuffer }
        queryBuffer?.deallocate()
        let b = UnsafeMutablePointer<Float>.allocate(capacity: max(1, n))
        queryBuffer = b
        queryFloats = n
        return b
    }

    init(rows: Int) {
        stampCapacity = max(1024, rows)
        (stamps, stampsMapped) = HNSWVisitedPages.allocate(count: stampCapacity)
        neighbourCapacity = 512
        pending = .allocate(capacity: neighbourCapacity)
        buildCapacity = 256
        buildIDs = .allocate(capacity: buildCapacity)
        buildDistances = .allocate(capacity: buildCapacity)
        pruneIDs = .allocate(capacity: buildCapacity)
        pruneDistances = .allocate(capacity: buildCapacity)
    }

    deinit {
        HNSWVisitedPages.deallocate(stamps, mapped: stampsMapped)
        candidates.deallocate()
        results.deallocate()
        pending.deallocate()
        buildIDs.deallocate()
        buildDistances.deallocate()
        pruneIDs.deallocate()
        pruneDistances.deallocate()
        queryBuffer?.deallocate()
    }

    /// Makes the construction buffers hold at least `n` entries (their contents are not kept).
    @inline(__always)
    func ensureBuildCapacity(_ n: Int) {
        if n <= buildCapacity { return }
        buildIDs.deallocate()
        buildDistances.deallocate()
        pruneIDs.deallocate()
        pruneDistances.deallocate()
        buildCapacity = max(n, 2 * buildCapacity)
        buildIDs = .allocate(capacity: buildCapacity)
        buildDistances = .allocate(capacity: buildCapacity)
        pruneIDs = .allocate(capacity: buildCapacity)
        pruneDistances = .allocate(capacity: buildCapacity)
    }

    /// Prepares the visited array for `rows` nodes and a new search.
    @inline(__always)
    func begin(rows: Int) {
        if rows > stampCapacity {
            HNSWVisitedPages.deallocate(stamps, mapped: stampsMapped)
            stampCapacity = max(rows, stampCapacity * 2)
            (stamps, stampsMapped) = HNSWVisitedPages.allocate(count: stampCapacity)
            generation = 0
        }
        generation &+= 1
        if generation == 0 {
            stamps.update(repeating: 0, count: stampCapacity)
            generation = 1
        }
        candidates.count = 0
        results.count = 0
    }

    func ensureNeighbourCapacity(_ n: Int) {
        if n > neighbourCapacity {
            pending.deallocate()
            neighbourCapacity = n
            pending = .allocate(capacity: n)
        }
    }
}

/// A process-wide pool of scratch objects, so a search allocates nothing once warm.
enum HNSWScratchPool {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var free: [HNSWScratch] = []

    static func take(rows: Int) -> HNSWScratch {
        lock.lock()
        let s = free.popLast()
        lock.unlock()
        return s ?? HNSWScratch(rows: rows)
    }

    static func give(_ s: HNSWScratch) {
        lock.lock()
        if free.count < 64 { free.append(s) }
        lock.unlock()
    }
}

/// The search algorithms of HNSW over any graph access and distance.
enum HNSWAlgorithms {
    /// Greedy descent from `entry` through levels `top` down to `bottom + 1`; returns the closest node
    /// found and its distance.
    @inline(__always)
    static func greedyDescent<G: HNSWGraphAccess, S: HNSWScorer>(
        _ g: G, _ scorer: S, entry: UInt32, entryDistance: Float, top: Int, bottom: Int
    ) -> (UInt32, Float) {
        var current = entry
        var currentDistance = entryDistance
        var level = top
        // Values from disk are not trusted: counts are clamped to the degree bound and ids outside the
        // graph are skipped (a damaged store then searches a damaged graph, but never reads out of bounds).
        let limit = UInt32(truncatingIfNeeded: g.rows)
        while level > bottom {
            let cap = g.linkCap(level)
            var changed = true
            while changed {
                changed = false
                let node = current
                if g.needsLocks { g.lock(node) }
                let list = g.links(node, level)
                let n = min(Int(list[0]), cap)
                var j = 1
                while j <= n {
                    let cand = list[j]
                    j += 1
                    if cand >= limit { continue }
                    let d = scorer.distance(cand)
                    if d < currentDistance {
                        currentDistance = d
                        current = cand
                        changed = true
                    }
                }
                if g.needsLocks { g.unlock(node) }
            }
            level -= 1
        }
        return (current, currentDistance)
    }

    /// Beam search on one level from one entry. Every reachable node is traversed, but only nodes in
    /// `allowed` (when given) enter the results. On return `scratch.results` holds up to `ef` nodes,
    /// farthest on top.
    static func searchLayer<G: HNSWGraphAccess, S: HNSWScorer>(
        _ g: G, _ scorer: S, entry: UInt32, entryDistance: Float,
        ef: Int, level: Int, allowed: CandidateMask?, rows: Int, scratch: HNSWScratch
    ) {
        scratch.begin(rows: rows)
        // Stored counts are clamped to the degree bound and ids outside the graph skipped (see
        // greedyDescent); `entry` is checked by the caller.
        let cap = g.linkCap(level)
        let limit = UInt32(truncatingIfNeeded: min(rows, g.rows))
        if entry >= limit { return }
        let stamps = scratch.stamps
        let gen = scratch.generation
        var candidates = scratch.candidates
        var results = scratch.results
        defer {
            scratch.candidates = candidates
            scratch.results = results
        }
        stamps[Int(entry)] = gen
        candidates.push(-entryDistance, entry)
        if allowed?.contains(entry) ?? true { results.push(entryDistance, entry) }
        var bound: Float = results.count > 0 ? entryDistance : .infinity
        let locks = g.needsLocks
        while !candidates.isEmpty {
            let cd = -candidates.topKey
            if cd > bound && results.count >= ef { break }
            let c = candidates.topID
            candidates.pop()
            if level == 0 && !candidates.isEmpty { g.prefetchLinks(candidates.topID) }
            if locks { g.lock(c) }
            let list = g.links(c, level)
            let n = min(Int(list[0]), cap)
            scratch.ensureNeighbourCapacity(n)
            let pending = scratch.pending
            // First pass: mark and prefetch the unvisited neighbours; second pass: score them, so the
            // memory loads of all of them overlap.
            var p = 0
            var j = 1
            while j <= n {
                let id = list[j]
                j += 1
                if id >= limit || stamps[Int(id)] == gen { continue }
                stamps[Int(id)] = gen
                pending[p] = id
                p += 1
                scorer.prefetch(id)
            }
            if locks { g.unlock(c) }
            scorePending(scorer, pending, count: p, ef: ef, allowed: allowed, candidates: &candidates, results: &results,
                         bound: &bound)
        }
    }

    /// Scores the `count` ids at `pending` and pushes each that beats the beam's bound into `candidates`
    /// and, when `allowed` admits it (nil: every id), into `results` (kept to `ef`, `bound` its farthest):
    /// the scoring pass of `searchLayer` and `searchLayerFiltered`.
    @inline(__always)
    static func scorePending<S: HNSWScorer>(
        _ scorer: S, _ pending: UnsafeMutablePointer<UInt32>, count: Int, ef: Int, allowed: CandidateMask?,
        candidates: inout DistanceHeap, results: inout DistanceHeap, bound: inout Float
    ) {
        var j = 0
        while j < count {
            let id = pending[j]
            j += 1
            let d = scorer.distance(id)
            if results.count < ef || d < bound {
                candidates.push(-d, id)
                if allowed?.contains(id) ?? true {
                    results.push(d, id)
                    if results.count > ef { results.pop() }
                    bound = results.topKey
                }
            }
        }
    }

    /// Filtered beam search on layer 0 that scores only the rows `allowed` admits (ACORN-1's two-hop
    /// expansion over an ordinary HNSW graph). Expanding a node makes its allowed neighbours candidates;
    /// a neighbour that fails the filter is looked through, and its allowed neighbours become candidates
    /// instead, up to one list's worth (`linkCap(0)`) per expansion. Nodes outside the filter are never
    /// scored, so a broad filter whose matches lie away from the query does not drag the beam through
    /// every closer non-matching node (the plain `searchLayer` expands all of them: at 238k rows a
    /// filter on 53% of the rows scored 7× and one on 13% 21× the nodes of an unfiltered search).
    ///
    /// Until the first allowed node is found (the query's neighbourhood may hold none), every unvisited
    /// neighbour is scored and may be expanded, as in `searchLayer`, so the beam walks towards the
    /// filter's rows instead of dying at an entry point with no allowed node within two hops.
    /// On return `scratch.results` holds up to `ef` allowed nodes, farthest on top.
    static func searchLayerFiltered<G: HNSWGraphAccess, S: HNSWScorer>(
        _ g: G, _ scorer: S, entry: UInt32, entryDistance: Float, ef: Int, allowed: CandidateMask, rows: Int,
        scratch: HNSWScratch
    ) {
        scratch.begin(rows: rows)
        // Stored counts are clamped to the degree bound and ids outside the graph skipped (see
        // greedyDescent); `entry` is checked by the caller.
        let cap = g.linkCap(0)
        let limit = UInt32(truncatingIfNeeded: min(rows, g.rows))
        if entry >= limit { return }
        let stamps = scratch.stamps
        let gen = scratch.generation
        var candidates = scratch.candidates
        var results = scratch.results
        defer {
            scratch.candidates = candidates
            scratch.results = results
        }
        // Candidates gathered per expansion: up to two lists' worth (`2·linkCap(0)`, 4M). One list's worth
        // cut the first expansions short, when nothing around the query is visited yet (docs1m at 954k,
        // ef 64, 53% filter: recall@10 0.921 with 2M, 0.942 with 4M for 6% more scored nodes; 8M gave
        // no more).
        let gather = 2 * cap
        // `pending`: the allowed nodes to score (at most `gather`), then the failing neighbours (at most `cap`).
        scratch.ensureNeighbourCapacity(gather + cap)
        let pending = scratch.pending
        let failing = pending + gather
        stamps[Int(entry)] = gen
        candidates.push(-entryDistance, entry)
        if allowed.contains(entry) { results.push(entryDistance, entry) }
        var bound: Float = results.count > 0 ? entryDistance : .infinity
        let locks = g.needsLocks
        while !candidates.isEmpty {
            let cd = -candidates.topKey
            if cd > bound && results.count >= ef { break }
            let c = candidates.topID
            candidates.pop()
            if !candidates.isEmpty { g.prefetchLinks(candidates.topID) }
            if locks { g.lock(c) }
            let list = g.links(c, 0)
            let n = min(Int(list[0]), cap)
            var p = 0
            var j = 1
            if results.isEmpty {
                // No allowed node reached yet: score every unvisited neighbour (plain beam search).
                while j <= n {
                    let id = list[j]
                    j += 1
                    if id >= limit || stamps[Int(id)] == gen { continue }
                    stamps[Int(id)] = gen
                    pending[p] = id
                    p += 1
                    scorer.prefetch(id)
                }
                if locks { g.unlock(c) }
                scorePending(scorer, pending, count: p, ef: ef, allowed: allowed, candidates: &candidates, results: &results,
                             bound: &bound)
                continue
            }
            // One hop: allowed neighbours are scored, failing ones kept (unmarked) to look through.
            var f = 0
            while j <= n {
                let id = list[j]
                j += 1
                if id >= limit || stamps[Int(id)] == gen { continue }
                if allowed.contains(id) {
                    stamps[Int(id)] = gen
                    pending[p] = id
                    p += 1
                    scorer.prefetch(id)
                } else {
                    failing[f] = id
                    f += 1
                    g.prefetchLinks(id)
                }
            }
            if locks { g.unlock(c) }
            // Two hops: a failing neighbour's list is read once per search (it is marked when read),
            // while there is room for more candidates.
            var x = 0
            while x < f && p < gather {
                let hop = failing[x]
                x += 1
                if stamps[Int(hop)] == gen { continue }
                stamps[Int(hop)] = gen
                if locks { g.lock(hop) }
                let hopList = g.links(hop, 0)
                let hn = min(Int(hopList[0]), cap)
                var i = 1
                while i <= hn && p < gather {
                    let id = hopList[i]
                    i += 1
                    // The mask (N/8 bytes) before the visited stamps (2N bytes): under a selective filter
                    // most two-hop ids fail it, and the stamps miss the cache more often.
                    if id >= limit || !allowed.contains(id) || stamps[Int(id)] == gen { continue }
                    stamps[Int(id)] = gen
                    pending[p] = id
                    p += 1
                    scorer.prefetch(id)
                }
                if locks { g.unlock(hop) }
            }
            scorePending(scorer, pending, count: p, ef: ef, allowed: nil, candidates: &candidates, results: &results,
                         bound: &bound)
        }
    }

    /// Filtered beam search on layer 0 through a field's filter links (Spec/HNSW.md §7.4), for a mask
    /// that pins that field to one value (every allowed row holds it). Expanding an allowed node makes its
    /// unvisited allowed value-link neighbours candidates; nothing is looked through. (Also taking its
    /// allowed layer-0 neighbours was measured: docs1m at 238k rows, ef 64, `python` recall 0.9795 against
    /// 0.9785 at 10% less speed; not kept.) Until the first allowed node is reached the expansion is
    /// the plain one (every unvisited layer-0 neighbour scored), as in `searchLayerFiltered`; a node that
    /// fails the mask (only such nodes of that first phase) makes its allowed layer-0 neighbours
    /// candidates (one hop). The caller widens `ef` (`HNSWSearch.linkedEf`: by selectivity as for the two-hop
    /// search, and by half of `ef` more, for the value graphs' thinner lists). On return
    /// `scratch.results` holds up to `ef` allowed nodes, farthest on top.
    static func searchLayerLinked<G: HNSWGraphAccess, S: HNSWScorer>(
        _ g: G, _ scorer: S, entry: UInt32, entryDistance: Float, ef: Int, allowed: CandidateMask,
        links: HNSWValueLinks, rows: Int, scratch: HNSWScratch
    ) {
        scratch.begin(rows: rows)
        let cap = g.linkCap(0)
        let limit = UInt32(truncatingIfNeeded: min(rows, g.rows, links.rows))
        if entry >= limit { return }
        let stamps = scratch.stamps
        let gen = scratch.generation
        var candidates = scratch.candidates
        var results = scratch.results
        defer {
            scratch.candidates = candidates
            scratch.results = results
        }
        let gather = 2 * cap
        scratch.ensureNeighbourCapacity(gather + cap)
        let pending = scratch.pending
        let failing = pending + gather
        stamps[Int(entry)] = gen
        candidates.push(-entryDistance, entry)
        if allowed.contains(entry) { results.push(entryDistance, entry) }
        var bound: Float = results.count > 0 ? entryDistance : .infinity
        while !candidates.isEmpty {
            let cd = -candidates.topKey
            if cd > bound && results.count >= ef { break }
            let c = candidates.topID
            candidates.pop()
            var p = 0
            if results.isEmpty {
                if !candidates.isEmpty { g.prefetchLinks(candidates.topID) }
                let list = g.links(c, 0)
                let n = min(Int(list[0]), cap)
                var j = 1
                while j <= n {
                    let id = list[j]
                    j += 1
                    if id >= limit || stamps[Int(id)] == gen { continue }
                    stamps[Int(id)] = gen
                    pending[p] = id
                    p += 1
                    scorer.prefetch(id)
                }
                scorePending(scorer, pending, count: p, ef: ef, allowed: allowed, candidates: &candidates,
                             results: &results, bound: &bound)
                continue
            }
            if !candidates.isEmpty {
                let next = candidates.topID
                if allowed.contains(next) { links.prefetch(next) } else { g.prefetchLinks(next) }
            }
            if allowed.contains(c) {
                let list = links.list(c)
                let n = min(Int(list[0]), cap)
                var f = 0
                var j = 1
                while j <= n {
                    let id = list[j]
                    j += 1
                    if id >= limit || stamps[Int(id)] == gen { continue }
                    if allowed.contains(id) {
                        stamps[Int(id)] = gen
                        pending[p] = id
                        p += 1
                        scorer.prefetch(id)
                    } else {
                        failing[f] = id
                        f += 1
                    }
                }
                // Same-value neighbours the mask leaves out (deleted rows, rows another `$and` term
                // excludes) are looked through: the allowed rows of their value lists (two hops), so holes
                // in the mask do not cut the value's graph apart. None when the mask is the value alone.
                var x = 0
                while x < f && p < gather {
                    let hop = failing[x]
                    x += 1
                    if stamps[Int(hop)] == gen { continue }
                    stamps[Int(hop)] = gen
                    let hopList = links.list(hop)
                    let hn = min(Int(hopList[0]), cap)
                    var i = 1
                    while i <= hn && p < gather {
                        let id = hopList[i]
                        i += 1
                        if id >= limit || !allowed.contains(id) || stamps[Int(id)] == gen { continue }
                        stamps[Int(id)] = gen
                        pending[p] = id
                        p += 1
                        scorer.prefetch(id)
                    }
                }
            } else {
                // A node of the first phase that fails the mask: its allowed layer-0 neighbours (one hop).
                // Looking through its failing neighbours too (two hops, as `searchLayerFiltered`) doubled
                // the cost of a search for little recall (docs1m, ef 64, `python` 13%: 238k 0.978 at 0.49×
                // the unfiltered speed with two hops, 0.954 at 1.00× with one; the widened beam buys
                // the recall back for less: 0.980 at 0.71×; Spec/HNSW.md §7.4).
                let list = g.links(c, 0)
                let n = min(Int(list[0]), cap)
                var j = 1
                while j <= n {
                    let id = list[j]
                    j += 1
                    if id >= limit || stamps[Int(id)] == gen || !allowed.contains(id) { continue }
                    stamps[Int(id)] = gen
                    pending[p] = id
                    p += 1
                    scorer.prefetch(id)
                }
            }
            scorePending(scorer, pending, count: p, ef: ef, allowed: nil, candidates: &candidates, results: &results,
                         bound: &bound)
        }
    }

    /// An insert's neighbours on one level: the beam's results (`scratch.results`, emptied), `q` left out,
    /// filtered with the selection heuristic to at most `m` into `scratch.buildIDs`/`buildDistances`. The
    /// buffers are made to hold `reserve` too, so the reverse links' pruning (`addLink`, lists of up to
    /// `reserve - 1`) does not move them while the returned `ids` are read. Returns the kept ids and how
    /// many, and the closest result (the next level's entry), nil when the beam found only `q`.
    @inline(__always)
    static func selectFromBeam<D: HNSWDistance>(
        _ vt: VectorTable, _: D.Type, excluding q: UInt32, max m: Int, reserve: Int, scratch: HNSWScratch
    ) -> (ids: UnsafeMutablePointer<UInt32>, kept: Int, closest: (UInt32, Float)?) {
        // The results, popped farthest first, fill the buffer from its end, so it ends up in ascending
        // order (what the heuristic's sort wants).
        var res = scratch.results
        let total = res.count
        scratch.ensureBuildCapacity(max(total, reserve))
        let buffer = scratch.buildIDs, bufferDistances = scratch.buildDistances
        var w = total
        while !res.isEmpty {
            if res.topID != q {
                w -= 1
                buffer[w] = res.topID
                bufferDistances[w] = res.topKey
            }
            res.pop()
        }
        scratch.results = res
        let ids = buffer + w, dists = bufferDistances + w
        let found = total - w
        let closest = found > 0 ? (ids[0], dists[0]) : nil
        // At most M candidates are all kept, in the order the beam popped them (farthest first).
        if found <= m {
            var a = 0, b = found - 1
            while a < b {
                (ids[a], ids[b]) = (ids[b], ids[a])
                a += 1
                b -= 1
            }
        }
        let kept = selectNeighbours(vt, D.self, ids: ids, distances: dists, count: found, max: m)
        return (ids, kept, closest)
    }

    /// Replaces the distances of the beam's results (`scratch.results`, scored against binary16 copies)
    /// by the float32 distances to row `q`'s vector.
    static func rescoreResults<D: HNSWDistance>(_ vt: VectorTable, _: D.Type, query q: UInt32, scratch: HNSWScratch) {
        var res = scratch.results
        let n = res.count
        scratch.ensureNeighbourCapacity(n)
        let ids = scratch.pending
        var i = 0
        while !res.isEmpty {
            ids[i] = res.topID
            i += 1
            res.pop()
        }
        let qv = vt.vector(q)
        let ahead = 4
        for j in 0..<min(ahead, n) { vs_prefetch(vt.vector(ids[j]), vt.prefetchLines) }
        for j in 0..<n {
            if j + ahead < n { vs_prefetch(vt.vector(ids[j + ahead]), vt.prefetchLines) }
            res.push(D.distance(qv, vt.vector(ids[j]), vt.dimension), ids[j])
        }
        scratch.results = res
    }

    /// Adds `q` to `n`'s link list `list` (count, then links) of capacity `cap`, re-selecting with the
    /// heuristic when it is full; nothing when `q` is already linked. The caller holds `n`'s lock.
    @inline(__always)
    static func addLink<D: HNSWDistance>(
        _ list: UnsafeMutablePointer<UInt32>, of n: UInt32, _ q: UInt32, cap: Int, _ vt: VectorTable, _: D.Type,
        scratch: HNSWScratch
    ) {
        let count = Int(list[0])
        for j in 0..<count where list[1 + j] == q { return }
        if count < cap {
            list[1 + count] = q
            list[0] = UInt32(count + 1)
            return
        }
        let nv = vt.vector(n)
        let dim = vt.dimension
        // `selectFromBeam` made room for the cap + 1 (a list's count is within its cap: blocks are
        // checked when copied), so this does not move the buffers it returned.
        scratch.ensureBuildCapacity(count + 1)
        let ids = scratch.pruneIDs, dists = scratch.pruneDistances
        for j in 0..<count {
            let t = list[1 + j]
            ids[j] = t
            dists[j] = D.distance(nv, vt.vector(t), dim)
        }
        ids[count] = q
        dists[count] = D.distance(nv, vt.vector(q), dim)
        let kept = selectNeighbours(vt, D.self, ids: ids, distances: dists, count: count + 1, max: cap)
        list[0] = UInt32(kept)
        (list + 1).update(from: ids, count: kept)
    }

    /// The selection heuristic over `count` candidates at `ids`/`distances`, in place and without
    /// allocating (graph construction calls it once per level of every insert and once per full list a
    /// reverse link prunes). With more than `m` candidates they are sorted by (distance, id) — a total
    /// order, so the result does not depend on their input order — and the kept ones are moved to the
    /// front; with at most `m` all are kept in their input order. Returns the number kept.
    @inline(__always)
    static func selectNeighbours<D: HNSWDistance>(
        _ vt: VectorTable, _: D.Type, ids: UnsafeMutablePointer<UInt32>, distances: UnsafeMutablePointer<Float>,
        count n: Int, max m: Int
    ) -> Int {
        if n <= m { return n }
        // Insertion sort: the callers pass short lists (2·M + 1) or lists already close to ascending
        // order (a beam's results, farthest popped last into the front).
        var i = 1
        while i < n {
            let d = distances[i], id = ids[i]
            var j = i
            while j > 0 && (distances[j - 1] > d || (distances[j - 1] == d && ids[j - 1] > id)) {
                distances[j] = distances[j - 1]
                ids[j] = ids[j - 1]
                j -= 1
            }
            distances[j] = d
            ids[j] = id
            i += 1
        }
        var kept = 0
        let dim = vt.dimension
        i = 0
        while i < n && kept < m {
            let cand = ids[i]
            let dq = distances[i]
            let v = vt.vector(cand)
            var good = true
            var r = 0
            while r < kept {
                if D.distance(v, vt.vector(ids[r]), dim) < dq {
                    good = false
                    break
                }
                r += 1
            }
            if good {
                ids[kept] = cand
                distances[kept] = dq
                kept += 1
            }
            i += 1
        }
        return kept
    }
}
