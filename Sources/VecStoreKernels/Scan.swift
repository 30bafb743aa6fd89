import CBLAS
import Glibc
import CDistance
import Dispatch

/// A run of consecutive stored vectors, read in place from the memory map: `count` rows of `dimension`
/// floats starting at `vectors`, and their squared norms at `squaredNorms`. Row `i` belongs to internal
/// id `firstID + i`. Valid only while the transaction that produced it is open.
public struct VectorBlock: @unchecked Sendable {
    /// Internal id of the first row.
    public let firstID: UInt32
    /// Number of rows.
    public let count: Int
    /// Row-major vector data.
    public let vectors: UnsafePointer<Float>
    /// Squared norm of each row.
    public let squaredNorms: UnsafePointer<Float>

    /// Creates a block view.
    public init(firstID: UInt32, count: Int, vectors: UnsafePointer<Float>, squaredNorms: UnsafePointer<Float>) {
        self.firstID = firstID
        self.count = count
        self.vectors = vectors
        self.squaredNorms = squaredNorms
    }
}

/// A bitset over internal ids: bit `i` (word `i / 64`, bit `i % 64`) set means id `i` may be returned.
public struct CandidateMask: @unchecked Sendable {
    /// The words of the bitset.
    public let words: UnsafePointer<UInt64>
    /// Number of words.
    public let wordCount: Int
    /// How many ids the mask allows, when its maker counted them (the planner does); -1 if unknown.
    /// Filtered graph search chooses its traversal by the mask's density.
    public var matches = -1

    /// Creates a mask view over `wordCount` words.
    public init(words: UnsafePointer<UInt64>, wordCount: Int) {
        self.words = words
        self.wordCount = wordCount
    }

    /// Whether id `i` is allowed.
    @inlinable @inline(__always)
    public func contains(_ i: UInt32) -> Bool {
        let w = Int(i >> 6)
        return w < wordCount && (words[w] >> UInt64(i & 63)) & 1 == 1
    }
}

/// binary16 copies of a run of blocks' rows (HNSW traversal copies): rows of block `b` start at
/// `blocks[b]`, `stride` halves apart, and block `b` holds rows `b << shift ..< (b + 1) << shift`. Each
/// copy must be the round-to-nearest binary16 conversion of the stored float32 row (Spec/HNSW.md §3.3;
/// `vecstore verify` checks it). Valid only while the transaction that produced it is open.
public struct HalfCopies: @unchecked Sendable {
    /// First row's copy of each block, in block order.
    public let blocks: [UnsafePointer<UInt16>]
    /// log2 of the rows per block.
    public let shift: Int
    /// Halves from one row's copy to the next.
    public let stride: Int

    /// Creates a view of the copies.
    public init(blocks: [UnsafePointer<UInt16>], shift: Int, stride: Int) {
        self.blocks = blocks
        self.shift = shift
        self.stride = stride
    }

    /// The copy of the first row of the block whose first row is `firstID`, or nil when there is none.
    @inline(__always)
    func block(firstID: UInt32) -> UnsafePointer<UInt16>? {
        let b = Int(firstID) >> shift
        return b < blocks.count && b << shift == Int(firstID) ? blocks[b] : nil
    }
}

/// Exact top-k search kernels.
public enum ExactSearch {
    /// Number of queries from which a batch is scored with BLAS `sgemm` instead of one SIMD scan per query
    /// (FAISS switches at 20 as well).
    public static let blasThreshold = 20

    /// Scores every allowed row of `blocks` against one query and keeps the best `k` in `topK`.
    ///
    /// Rows are visited 64 at a time (one mask word). A mostly-set word is scored in one call to the
    /// dispatched C kernel (AVX-512/AVX2, rows streamed from the map). The rows of sparse words (a
    /// selective filter's matches) are gathered, across blocks and in row order, into lists of up to
    /// `sparseBatch` rows and scored with the rows a few places ahead prefetched, so their cache misses
    /// and page walks overlap instead of each costing a full memory latency: the cost follows the number
    /// of matches, not the collection size.
    ///
    /// With `halves` (binary16 copies of the same rows), dense words are scored in two passes: the copies
    /// give each row an upper bound of its float32 score (`vs_f16_upper_many`, rigorous for any rounding of
    /// either sum), and only rows whose bound reaches the running k-th float32 score are scored from the
    /// float32 rows. A skipped row cannot enter the top k, and every score offered to `topK` is the
    /// float32 kernel's, so the selection is the one the float32 scan makes (ids, scores and tie order),
    /// from half the bytes.
    public static func scan(query: UnsafePointer<Float>, dimension: Int, metric: Metric,
                            blocks: some Collection<VectorBlock>, mask: CandidateMask, halves: HalfCopies? = nil,
                            into topK: inout TopK) {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 64) { scratch in
            withUnsafeTemporaryAllocation(of: SparseRow.self, capacity: 2 * sparseBatch) { pendingBuffer in
              withUnsafeTemporaryAllocation(of: UnsafePointer<UInt16>?.self, capacity: sparseBatch) { copyBuffer in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: sparseBatch) { boundBuffer in
                guard let out = scratch.baseAddress, let pendingBase = pendingBuffer.baseAddress,
                      let copies = copyBuffer.baseAddress, let bounds = boundBuffer.baseAddress else { return }
                let l2 = metric == .l2
                let lines = Int32(min(64, (dimension * 4 + 63) / 64))
                // |q|_2 and |q|_1 for the certified bounds, rounded up.
                let (qn2, qn1) = halves != nil ? certifiedNorms(query, dimension: dimension) : (0, 0)
                // Rows of sparse mask words (a selective filter's matches), gathered across blocks in row
                // order: rows with a binary16 copy (`copies[i]` for `withCopy[i]`) and rows without one.
                // A block holds a few hundred rows, so a 1% filter leaves only a handful per block: scoring
                // them block by block would leave no room to prefetch ahead.
                let withCopy = pendingBase, plain = pendingBase + sparseBatch
                var copyCount = 0, plainCount = 0
                @inline(__always) func score(_ v: UnsafePointer<Float>) -> Float {
                    l2 ? -vs_l2(query, v, dimension) : vs_dot(query, v, dimension)
                }
                // Bounds from the copies first (half the bytes), float32 only for rows that can enter.
                func flushCopies() {
                    guard copyCount > 0 else { return }
                    vs_f16_upper_ptrs(query, qn2, qn1, copies, copyCount, dimension, l2 ? 1 : 0, sparseCopyLookahead,
                                      bounds)
                    for i in 0..<copyCount where !(bounds[i] < topK.threshold) {
                        let s = score(withCopy[i].vector)
                        if s >= topK.threshold { topK.insert(s, withCopy[i].id) }
                    }
                    copyCount = 0
                }
                func flushPlain() {
                    var i = 0
                    while i < plainCount {
                        if i + sparseLookahead < plainCount { vs_prefetch(plain[i + sparseLookahead].vector, lines) }
                        let s = score(plain[i].vector)
                        if s >= topK.threshold { topK.insert(s, plain[i].id) }
                        i += 1
                    }
                    plainCount = 0
                }
                for block in blocks {
                    let base = Int(block.firstID)
                    let halfBase = halves?.block(firstID: block.firstID)
                    let halfStride = halves?.stride ?? 0
                    var row = 0
                    while row < block.count {
                        let word = (base + row) >> 6
                        var bits = word < mask.wordCount ? mask.words[word] : 0
                        let limit = min(64, block.count - row)
                        if limit < 64 { bits &= (UInt64(1) << UInt64(limit)) &- 1 }
                        if bits.nonzeroBitCount >= 16, let halfBase {
                            vs_f16_upper_many(query, qn2, qn1, halfBase + row * halfStride, limit, halfStride,
                                              dimension, l2 ? 1 : 0, out)
                            while bits != 0 {
                                let j = bits.trailingZeroBitCount
                                bits &= bits &- 1
                                // +inf bounds (non-finite copies or query) are never below the threshold: scored.
                                if out[j] < topK.threshold { continue }
                                let s = score(block.vectors + (row + j) * dimension)
                                if s >= topK.threshold { topK.insert(s, UInt32(base + row + j)) }
                            }
                        } else if bits.nonzeroBitCount >= 16 {
                            let rows = block.vectors + row * dimension
                            if l2 {
                                vs_l2_many(query, rows, limit, dimension, out)
                            } else {
                                vs_dot_many(query, rows, limit, dimension, out)
                            }
                            while bits != 0 {
                                let j = bits.trailingZeroBitCount
                                bits &= bits &- 1
                                let s = l2 ? -out[j] : out[j]
                                if s >= topK.threshold { topK.insert(s, UInt32(base + row + j)) }
                            }
                        } else if let halfBase {
                            if copyCount + bits.nonzeroBitCount > sparseBatch { flushCopies() }
                            while bits != 0 {
                                let j = bits.trailingZeroBitCount
                                bits &= bits &- 1
                                copies[copyCount] = halfBase + (row + j) * halfStride
                                withCopy[copyCount] = SparseRow(vector: block.vectors + (row + j) * dimension,
                                                                id: UInt32(base + row + j))
                                copyCount += 1
                            }
                        } else if bits != 0 {
                            if plainCount + bits.nonzeroBitCount > sparseBatch { flushPlain() }
                            while bits != 0 {
                                let j = bits.trailingZeroBitCount
                                bits &= bits &- 1
                                let v = block.vectors + (row + j) * dimension
                                if plainCount < sparseLookahead { vs_prefetch(v, lines) }
                                plain[plainCount] = SparseRow(vector: v, id: UInt32(base + row + j))
                                plainCount += 1
                            }
                        }
                        row += 64
                    }
                }
                flushCopies()
                flushPlain()
              }
              }
            }
        }
    }

    /// A gathered sparse row: its float32 vector in the map and its internal id.
    struct SparseRow {
        var vector: UnsafePointer<Float>
        var id: UInt32
    }

    /// How many gathered rows ahead the sparse pass over binary16 copies prefetches (12 cache lines a
    /// row at 384 dimensions).
    /// (docs1m at 954k rows, a 0.8% filter: 4, 8 and 16 rows ahead all gave ~2,000 q/s, against 680 q/s
    /// when rows were scored block by block, a few per block, with no room to prefetch.)
    static let sparseCopyLookahead = 8

    /// Sparse rows gathered before they are scored (see `scan`).
    static let sparseBatch = 256
    /// How many gathered rows ahead the sparse loop prefetches.
    static let sparseLookahead = 4

    /// Rows × dimension each worker of a one-query scan must get before the scan is split (`search`): about
    /// 0.2 ms of scanning. Below it a second worker's wake-up costs more than it saves: on a 2-core VM
    /// (AMD EPYC) siftsmall (10,000 × 128) ran at 8.1k single queries/s on 2 workers against 11.9k on one,
    /// while docs60k (59,647 × 384, 22.9M elements) gained 1.45× from the second worker.
    public static let elementsPerWorker = 1 << 22

    /// The workers `search` uses: at most `threads`, one per block at most, and one per `elementsPerWorker`
    /// elements (at least one).
    public static func workerCount(blocks: [VectorBlock], dimension: Int, threads: Int,
                                   elementsPerWorker: Int = elementsPerWorker) -> Int {
        let rows = blocks.reduce(0) { $0 + $1.count }
        let byWork = rows.multipliedReportingOverflow(by: max(1, dimension))
        let share = byWork.overflow ? Int.max : byWork.partialValue / max(1, elementsPerWorker)
        return max(1, min(threads, blocks.count, share))
    }

    /// One query over all blocks, the blocks split across up to `threads` workers (`workerCount`).
    /// With `halves`, dense mask words take the certified two-pass scan (see `scan`).
    public static func search(query: UnsafePointer<Float>, dimension: Int, metric: Metric, blocks: [VectorBlock],
                              mask: CandidateMask, k: Int, threads: Int, halves: HalfCopies? = nil,
                              elementsPerWorker: Int = elementsPerWorker) -> TopK {
        let workers = workerCount(blocks: blocks, dimension: dimension, threads: threads,
                                  elementsPerWorker: elementsPerWorker)
        if workers == 1 {
            var topK = TopK(k: k)
            scan(query: query, dimension: dimension, metric: metric, blocks: blocks, mask: mask, halves: halves,
                 into: &topK)
            return topK
        }
        let partials = UnsafeMutableBufferPointer<TopK>.allocate(capacity: workers)
        partials.initialize(repeating: TopK(k: k))
        defer { partials.deinitialize(); partials.deallocate() }
        let q = UnsafeSendable(query)
        let out = UnsafeSendable(partials)
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let lower = blocks.count * w / workers, upper = blocks.count * (w + 1) / workers
            scan(query: q.value, dimension: dimension, metric: metric, blocks: blocks[lower..<upper], mask: mask,
                 halves: halves, into: &out.value[w])
        }
        var result = partials[0]
        for w in 1..<workers { result.merge(partials[w]) }
        return result
    }

    /// Top-k for each of `queryCount` row-major queries. From `blasThreshold` queries up, every block is
    /// scored against a tile of queries with one `sgemm` (queries × blockᵀ); fewer queries use the SIMD
    /// scan. Queries are split across `threads` workers, each running single-threaded BLAS.
    /// Below `blasThreshold` queries, `halves` gives each query the certified two-pass scan.
    public static func searchBatch(queries: UnsafePointer<Float>, queryCount: Int, dimension: Int, metric: Metric,
                                   blocks: [VectorBlock], mask: CandidateMask, k: Int, threads: Int,
                                   halves: HalfCopies? = nil) -> [TopK] {
        guard queryCount > 0 else { return [] }
        let results = UnsafeMutableBufferPointer<TopK>.allocate(capacity: queryCount)
        results.initialize(repeating: TopK(k: k))
        defer { results.deinitialize(); results.deallocate() }
        let workers = max(1, min(threads, queryCount))
        let q = UnsafeSendable(queries)
        let out = UnsafeSendable(results)
        let useBLAS = queryCount >= blasThreshold
        if useBLAS { BLAS.useSingleThread() }
        let work: @Sendable (Int) -> Void = { (w: Int) in
            let lower = queryCount * w / workers, upper = queryCount * (w + 1) / workers
            if useBLAS {
                scoreWithBLAS(queries: q.value, range: lower..<upper, dimension: dimension, metric: metric,
                              blocks: blocks, mask: mask, results: out.value)
            } else {
                for i in lower..<upper {
                    scan(query: q.value + i * dimension, dimension: dimension, metric: metric, blocks: blocks,
                         mask: mask, halves: halves, into: &out.value[i])
                }
            }
        }
        if workers == 1 { work(0) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: work) }
        return Array(results)
    }

    /// Query rows per `sgemm` call: large enough for BLAS efficiency, small enough that the score tile
    /// (tile × block rows floats) stays in cache.
    static let queryTile = 256

    static func scoreWithBLAS(queries: UnsafePointer<Float>, range: Range<Int>, dimension: Int, metric: Metric,
                              blocks: [VectorBlock], mask: CandidateMask,
                              results: UnsafeMutableBufferPointer<TopK>) {
        let maxRows = blocks.map(\.count).max() ?? 0
        guard maxRows > 0 else { return }
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: queryTile * maxRows)
        defer { scores.deallocate() }
        var tileStart = range.lowerBound
        while tileStart < range.upperBound {
            let tileCount = min(queryTile, range.upperBound - tileStart)
            for block in blocks {
                let n = block.count
                // scores[t][r] = query(t) · row(r); a tile of queries against a block is bound by arithmetic
                // (docs60k, 1,000 queries, 1 thread, Zen 5 with OpenBLAS on its AVX2 kernels: 1,874–2,224 q/s with
                // `sgemm`, 3,329–3,397 with `vs_dot_tile`).
                MatrixProduct.dotTile(queries + tileStart * dimension, aRows: tileCount, block.vectors, bRows: n,
                                      dimension: dimension, into: scores, ldo: n, kernel: MatrixProduct.computeKernel)
                let base = Int(block.firstID)
                for t in 0..<tileCount {
                    let row = scores + t * n
                    var topK = results[tileStart + t]
                    var r = 0
                    while r < n {
                        let word = (base + r) >> 6
                        var bits = word < mask.wordCount ? mask.words[word] : 0
                        let limit = min(64, n - r)
                        if limit < 64 { bits &= (UInt64(1) << UInt64(limit)) &- 1 }
                        while bits != 0 {
                            let j = bits.trailingZeroBitCount
                            bits &= bits &- 1
                            // For l2, rank by 2·q·x − |x|², which orders like −|q − x|² (|q|² is constant).
                            let s = metric == .l2 ? 2 * row[r + j] - block.squaredNorms[r + j] : row[r + j]
                            if s >= topK.threshold { topK.insert(s, UInt32(base + r + j)) }
                        }
                        r += 64
                    }
                    results[tileStart + t] = topK
                }
            }
            tileStart += tileCount
        }
    }
}

/// Which kernel multiplies float matrices (batch search tiles, the text encoder's linear layers).
public enum BatchKernel: Sendable {
    /// `cblas_sgemm` from the system OpenBLAS.
    case blas
    /// vecstore's register-blocked C kernel (`vs_dot_tile`).
    case simd
    /// Chosen once per process. OpenBLAS is used when it runs a kernel made for this CPU generation;
    /// an OpenBLAS that fell back to an old generic core (0.3.21 reports Sapphire Rapids as "Prescott",
    /// SSE3 only, measured 630 q/s against 1,897 q/s for `vs_dot_tile` on docs60k, one thread) loses to our kernel; a
    /// correctly dispatched OpenBLAS (SkylakeX kernels) is still a little faster (2,194 q/s).
    /// `VECSTORE_BATCH_KERNEL=blas|simd` overrides the choice (for measurement).
    public static let current: BatchKernel = override ?? (blasIsTuned ? .blas : .simd)

    /// The kernel `VECSTORE_BATCH_KERNEL` names ("blas" or "simd"), read once; nil when unset or another value.
    static let override: BatchKernel? = {
        guard let v = getenv("VECSTORE_BATCH_KERNEL") else { return nil }
        switch String(cString: v) {
        case "blas": return .blas
        case "simd": return .simd
        default: return nil
        }
    }()

    /// Whether `VECSTORE_BATCH_KERNEL` names a kernel (then every product uses it).
    static var overridden: Bool { override != nil }

    /// The OpenBLAS core this process dispatched to, lowercased (`openblas_get_corename`), read once.
    static let blasCore: String? = openblas_get_corename().map { String(cString: $0).lowercased() }

    /// Whether OpenBLAS dispatched to one of its AVX-512 cores (SkylakeX, Cooperlake, Sapphire Rapids).
    static var blasRunsAVX512: Bool {
        guard let core = blasCore else { return false }
        return ["skylakex", "cooperlake", "sapphirerapids"].contains { core.contains($0) }
    }

    /// Whether OpenBLAS dispatched to a kernel that uses AVX2 or AVX-512 (or is not on x86 at all).
    static var blasIsTuned: Bool {
        guard let core = blasCore else { return false }
        if String(cString: vs_distance_isa()) == "generic" { return true }
        let modern = ["haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"]
        return modern.contains { core.contains($0) }
    }
}

/// Process-wide OpenBLAS threading control.
public enum BLAS {
    /// One thread a call, then the worker threads OpenBLAS's load started are joined: they wait for
    /// work spinning in `sched_yield` for ~0.1 s after load (a whole core, through a fresh process's
    /// open and first queries) and a one-thread pool never gives them any.
    private static let once: Void = {
        openblas_set_num_threads(1)
        _ = vs_openblas_join_workers()
    }()
    /// Makes OpenBLAS run each call on the calling thread; vecstore parallelises across calls itself.
    public static func useSingleThread() { _ = once }
}

/// Carries a value that is not `Sendable` (a raw pointer into memory that outlives the parallel section)
/// into `concurrentPerform` workers, each of which touches a disjoint part of it.
@usableFromInline
struct UnsafeSendable<T>: @unchecked Sendable {
    @usableFromInline var value: T
    @usableFromInline init(_ value: T) { self.value = value }
}

extension CandidateMask {
    /// Runs `body` with a mask over `words`; an empty array gives a mask that allows nothing.
    public static func with<R, E: Error>(_ words: [UInt64], _ body: (CandidateMask) throws(E) -> R) throws(E) -> R {
        try words.withUnsafeBufferPointer { (buffer) throws(E) -> R in
            if let base = buffer.baseAddress { return try body(CandidateMask(words: base, wordCount: buffer.count)) }
            var none: UInt64 = 0
            return try withUnsafePointer(to: &none) { (p) throws(E) -> R in try body(CandidateMask(words: p, wordCount: 0)) }
        }
    }
}

/// The sum of squares of a vector held in an array.
@inlinable
public func squaredNorm(_ v: [Float]) -> Float {
    v.withUnsafeBufferPointer { b in
        guard let base = b.baseAddress else { return 0 }
        return squaredNorm(base, b.count)
    }
}

extension ExactSearch {
    /// `‖q‖₂` and `‖q‖₁` of a query for the certified binary16 bounds (`vs_f16_upper_many`, the IVF binary16
    /// lists' test): summed in float64 and rounded up by `1 + 2⁻⁴⁰`.
    public static func certifiedNorms(_ query: UnsafePointer<Float>, dimension: Int) -> (l2: Double, l1: Double) {
        var qn2 = 0.0, qn1 = 0.0
        for i in 0..<dimension {
            let x = Double(query[i])
            qn2 += x * x
            qn1 += abs(x)
        }
        return (qn2.squareRoot() * (1 + 0x1p-40), qn1 * (1 + 0x1p-40))
    }
}
