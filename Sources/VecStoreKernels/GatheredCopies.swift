import CDistance
import Dispatch
import Glibc

/// The binary16 copies of a selective filter's matching rows, with each row's internal id and float32
/// vector (Spec/HNSW.md §5.2, "Gathered matches"): either copied in row order into one contiguous buffer
/// (`isInPlace` false), or listed in place as pointers to the copies in the map (`isInPlace` true).
///
/// A 0.8% filter over 954k rows leaves one match every ~125 rows, each on its own page: an exact scan
/// over the matches in place reads 768 scattered bytes a match (~66 ns each, one page walk each). The
/// copied buffer is read sequentially (hardware prefetch, no page walks, and at a few MB it stays in
/// the last-level cache between queries). The snapshot's filter cache keeps it, so it serves every later
/// query of that snapshot with the same filter. The first query of a snapshot and filter reads the map's
/// pages whichever form it scans (in a fresh process, each first touch of a page of the map is a page
/// fault), and copying then only adds the buffer's zeroing and writes: so a single first query takes the
/// in-place form and the second one builds the copy.
///
/// Either form holds copies or pointers to them, not new data: the scan computes the same certified
/// bounds from the same bytes and scores the same float32 rows, so its results are the in-place scan's
/// (top `k` under the (score, id) order of `TopK`, whatever order rows are offered in). Valid only while
/// the snapshot whose rows it points at (`vectors`, `sources`) is open: the cache entry that owns it lives
/// with that snapshot.
public final class GatheredCopies: @unchecked Sendable {
    /// The file behind a read-only memory map whose first byte `base` holds the file's byte 0 (the
    /// store's LMDB map): the copies may be read from it with `pread` instead of through the map.
    public struct MappedFile: @unchecked Sendable {
        /// Open descriptor of the file.
        public let fd: Int32
        /// The map's first byte.
        public let base: UnsafeRawPointer
        /// Bytes of the file mapped from `base` (reads stop there).
        public let length: Int
        /// Describes the file behind a map.
        public init(fd: Int32, base: UnsafeRawPointer, length: Int) {
            self.fd = fd
            self.base = base
            self.length = length
        }
    }

    /// Rows whose copies were read from the file with `pread` rather than through the map (see `init`).
    public let preadRows: Int

    /// Number of rows gathered.
    public private(set) var count: Int
    /// Halves from one row's copy to the next (the source copies' stride).
    public let stride: Int
    /// Internal id of each row, ascending.
    let ids: UnsafeMutablePointer<UInt32>
    /// Each row's float32 vector, in the map.
    let vectors: UnsafeMutablePointer<UnsafePointer<Float>>
    /// `count` rows of `stride` halves (the copied form), or nil (the in-place form).
    let copies: UnsafeMutablePointer<UInt16>?
    /// Each row's binary16 copy in the map (the in-place form), or nil (the copied form).
    let sources: UnsafeMutablePointer<UnsafePointer<UInt16>?>?
    /// Bytes mapped for `copies` (0: they came from the allocator, or there are none), see `allocateCopies`.
    private let copiesMapped: Int

    /// The gathered rows' internal ids, in row order.
    public var rowIDs: [UInt32] { Array(UnsafeBufferPointer(start: ids, count: count)) }

    /// Whether the rows' copies are read in place from the map (pointers) rather than from one buffer.
    public var isInPlace: Bool { copies == nil }

    /// Memory this form takes: copies, ids and vector pointers (a mapped copies buffer counts whole
    /// 2 MiB units, as mapped and populated), or ids, vector and copy pointers in place.
    public var bytes: Int {
        if copies == nil { return count * (4 + 8 + 8) }
        return copiesMapped > 0 ? copiesMapped + count * (4 + 8) : Self.bytes(rows: count, stride: stride)
    }

    /// Most that rounding the copies up to whole mapping units adds to `bytes(rows:stride:)`.
    public static let mappingSlack = HugePages.unit

    /// Bytes a copied buffer of `rows` rows of `stride` halves takes.
    public static func bytes(rows: Int, stride: Int) -> Int { rows * (2 * stride + 4 + 8) }

    /// Gathers the rows `mask` allows from `blocks` and their copies in `halves`: copied into one buffer
    /// (`inPlace` false), or as pointers to the copies in the map (`inPlace` true). Returns nil when a
    /// block has no copy, when the copies' `stride` is below `dimension`, or when the mask allows more than
    /// `maxRows` rows (the caller's memory budget).
    /// `dimension` floats per float32 row; the copies are `dimension` halves each (`stride` ≥ dimension).
    ///
    /// With `file` (the map's file) and at least `probeMinimum` rows, the rows are taken in chunks of
    /// `probeChunk` in row order, and the first `probeRows` of a chunk are read through the map,
    /// counting this thread's minor page faults. The cost of a fresh map's first touches depends on the
    /// page cache: a fault maps a whole 2 MiB folio when the file's cached pages are in such folios, and
    /// 4–64 KiB when they are not, so that a 0.8% filter at 954k rows takes ~800 faults in the first
    /// case and ~5,000 in the second (several µs each in a VM). When the probed rows faulted
    /// `preadFaultShare` or more a row, the rest of the chunk is read from the file with one `pread` a
    /// row (~1.2 µs, no page table work) into the copied buffer, and so are the next `unprobedAfterDear`
    /// chunks whole (the form becomes the copied one then,
    /// whatever `inPlace` asked). A `pread` that comes back short reads that row through the map. The
    /// bytes are the same either way. (`preadFaultShare` 0 reads every chunk's rest from the file: tests.)
    public init?(halves: HalfCopies, blocks: [VectorBlock], dimension: Int, mask: CandidateMask, maxRows: Int,
                 inPlace: Bool = false, file: MappedFile? = nil, preadFaultShare: Double = GatheredCopies.preadFaultShare) {
        // First pass: count, so the buffers are allocated once and a too-large set costs no copying.
        var n = 0
        for block in blocks {
            guard halves.block(firstID: block.firstID) != nil else { return nil }
            n += Self.bitsIn(mask, first: Int(block.firstID), count: block.count)
            if n > maxRows { return nil }
        }
        guard halves.stride >= dimension else { return nil }
        ids = .allocate(capacity: max(1, n))
        vectors = .allocate(capacity: max(1, n))
        // Second pass: ids, vector and copy pointers in row order (the copy pointers are kept by the
        // in-place form; the copied form uses them once, so the copying loop can prefetch rows ahead).
        let sources = UnsafeMutablePointer<UnsafePointer<UInt16>?>.allocate(capacity: max(1, n))
        var w = 0
        for block in blocks where w < n {
            guard let halfBase = halves.block(firstID: block.firstID) else { continue }
            let base = Int(block.firstID)
            var row = 0
            while row < block.count && w < n {
                let word = (base + row) >> 6
                var bits = word < mask.wordCount ? mask.words[word] : 0
                let limit = min(64, block.count - row)
                if limit < 64 { bits &= (UInt64(1) << UInt64(limit)) &- 1 }
                while bits != 0 && w < n {
                    let j = bits.trailingZeroBitCount
                    bits &= bits &- 1
                    ids[w] = UInt32(base + row + j)
                    vectors[w] = block.vectors + (row + j) * dimension
                    sources[w] = halfBase + (row + j) * halves.stride
                    w += 1
                }
                row += 64
            }
        }
        // Both passes read the same mask, so `w == n`; were it less, only the rows written count.
        count = w
        stride = halves.stride
        let rowBytes = 2 * halves.stride
        var buffer: (UnsafeMutablePointer<UInt16>, Int)? = inPlace ? nil : Self.allocateCopies(halves: max(1, n * halves.stride))
        // Copies rows `range` from the map into the buffer (prefetching ahead: the sources are scattered).
        func copyFromMap(_ range: Range<Int>, into copies: UnsafeMutablePointer<UInt16>) {
            let lines = Int32((rowBytes + 63) / 64), ahead = 8
            for i in range.prefix(ahead) { if let p = sources[i] { vs_prefetch(p, lines) } }
            for i in range {
                if i + ahead < range.upperBound, let p = sources[i + ahead] { vs_prefetch(p, lines) }
                if let p = sources[i] { (copies + i * halves.stride).update(from: p, count: halves.stride) }
            }
        }
        var preadRows = 0
        if let file, w >= Self.probeMinimum {
            // Chunk by chunk in row order: the chunk's first rows through the map, counting faults; the
            // rest of the chunk from the file when they were dear, else through the map (or left to the
            // scan, in place).
            let base = Int(bitPattern: file.base)
            var fileChecked = false, fileAgrees = false
            // Rows `range` from the file, one `pread` a row; a row outside the mapping or read short comes
            // from the map.
            func readFromFile(_ range: Range<Int>, into copies: UnsafeMutablePointer<UInt16>) {
                for i in range {
                    guard let p = sources[i] else { continue }
                    let offset = Int(bitPattern: p) - base
                    if offset >= 0 && offset <= file.length - rowBytes
                        && pread(file.fd, copies + i * halves.stride, rowBytes, off_t(offset)) == rowBytes {
                        preadRows += 1
                        continue
                    }
                    (copies + i * halves.stride).update(from: p, count: halves.stride)
                }
            }
            // After a dear chunk the next `unprobedAfterDear` chunks are read from the file whole.
            var unprobed = 0
            var start = 0
            while start < w {
                let end = min(w, start + Self.probeChunk)
                if unprobed > 0, let (copies, _) = buffer {
                    unprobed -= 1
                    readFromFile(start..<end, into: copies)
                    start = end
                    continue
                }
                let probeEnd = min(end, start + Self.probeRows)
                // Only the map's pages are touched while faults are counted: first writes to a fresh
                // buffer fault too, and would make a cheap map look dear.
                let before = Self.threadMinorFaults()
                var sink: UInt32 = 0
                for i in start..<probeEnd { if let p = sources[i] { sink &+= vs_touch(p, rowBytes) } }
                let faults = Self.threadMinorFaults() - before
                if let (copies, _) = buffer { copyFromMap(start..<probeEnd, into: copies) }
                var dear = Double(faults) >= preadFaultShare * Double(probeEnd - start) && sink != .max
                if dear && !fileChecked {
                    // Once: the file must hold at the computed offset the bytes the map holds.
                    fileChecked = true
                    fileAgrees = Self.fileAgrees(file, sources[start], rowBytes: rowBytes)
                }
                dear = dear && fileAgrees
                if dear { unprobed = Self.unprobedAfterDear }
                if dear && buffer == nil {
                    // The in-place form becomes the copied one: rows so far are mapped now, copy them.
                    buffer = Self.allocateCopies(halves: max(1, n * halves.stride))
                    if let (copies, _) = buffer { copyFromMap(0..<probeEnd, into: copies) }
                }
                if let (copies, _) = buffer {
                    if dear {
                        readFromFile(probeEnd..<end, into: copies)
                    } else {
                        copyFromMap(probeEnd..<end, into: copies)
                    }
                }
                start = end
            }
        } else if let (copies, _) = buffer {
            copyFromMap(0..<w, into: copies)
        }
        self.preadRows = preadRows
        if let (copies, mapped) = buffer {
            self.copies = copies
            copiesMapped = mapped
            self.sources = nil
            sources.deallocate()
        } else {
            copies = nil
            copiesMapped = 0
            self.sources = sources
        }
    }

    /// Rows from which a gather with a file watches the map's fault cost (smaller sets read the map).
    public static let probeMinimum = 1024
    /// Rows a chunk of the watched gather (in row order).
    public static let probeChunk = 256
    /// Rows at the head of each chunk read through the map, their faults counted.
    public static let probeRows = 32
    /// Chunks read from the file without a probe after a dear one (the page cache's folio sizes change
    /// over a file's ranges, not row to row: this keeps the probed rows, which fault, to a quarter).
    public static let unprobedAfterDear = 3
    /// Minor faults a probed row from which the rest of the chunk is read with `pread` (large folios:
    /// ~0.05–0.1 a row in row order at 954k rows; 4 KiB pages: ~0.6–0.8).
    public static let preadFaultShare = 0.3

    /// Whether `file` holds at `p`'s offset from the map's base the `rowBytes` bytes the map holds at `p`.
    static func fileAgrees(_ file: MappedFile, _ p: UnsafePointer<UInt16>?, rowBytes: Int) -> Bool {
        guard let p else { return false }
        let offset = Int(bitPattern: p) - Int(bitPattern: file.base)
        guard offset >= 0 && offset <= file.length - rowBytes else { return false }
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: rowBytes, alignment: 16)
        defer { scratch.deallocate() }
        return pread(file.fd, scratch, rowBytes, off_t(offset)) == rowBytes && memcmp(scratch, p, rowBytes) == 0
    }

    /// Minor page faults of the calling thread so far (`getrusage(RUSAGE_THREAD)`), 0 if unavailable.
    static func threadMinorFaults() -> Int {
        var u = rusage()
        guard getrusage(1 /* RUSAGE_THREAD */, &u) == 0 else { return 0 }
        return Int(u.ru_minflt)
    }

    deinit {
        ids.deallocate()
        vectors.deallocate()
        sources?.deallocate()
        if let copies {
            if copiesMapped > 0 { munmap(copies, copiesMapped) } else { copies.deallocate() }
        }
    }

    /// The copies' buffer: from 2 MiB on, an anonymous mapping aligned to 2 MiB with `MADV_HUGEPAGE` and
    /// populated in one `MADV_POPULATE_WRITE`, so filling it does not take one page fault per 4 KiB (a
    /// 0.8% filter at 954k rows is 5.8 MB, ~1,400 faults: ~5 ms of a first query on this VM). Smaller
    /// buffers, or a failed mapping, come from the allocator.
    private static func allocateCopies(halves: Int) -> (UnsafeMutablePointer<UInt16>, Int) {
        let unit = mappingSlack
        let bytes = halves * MemoryLayout<UInt16>.stride
        if bytes >= unit {
            let length = (bytes + unit - 1) / unit * unit
            if let p = HugePages.map(length: length) { return (p.bindMemory(to: UInt16.self, capacity: halves), length) }
        }
        return (.allocate(capacity: halves), 0)
    }

    /// Allowed rows among `first ..< first + count` (mask words start at row 0).
    static func bitsIn(_ mask: CandidateMask, first: Int, count: Int) -> Int {
        var n = 0
        var row = 0
        while row < count {
            let word = (first + row) >> 6
            var bits = word < mask.wordCount ? mask.words[word] : 0
            let limit = min(64, count - row)
            if limit < 64 { bits &= (UInt64(1) << UInt64(limit)) &- 1 }
            n += bits.nonzeroBitCount
            row += 64
        }
        return n
    }
}

extension ExactSearch {
    /// Exact top `k` of one query over gathered rows, in three passes: (1) every row's certified upper
    /// bound from its binary16 copy (the copied buffer 64 rows per kernel call, `vs_f16_upper_many`, or
    /// the copies in place with the next rows prefetched, `vs_f16_upper_ptrs`); (2) the float32 scores of
    /// the `k` rows with the highest bounds, which sets a running k-th score close to the final one; (3)
    /// the float32 score of every other row whose bound reaches the running k-th score. A skipped row's
    /// bound is below a score already held, so it cannot enter; every score offered is the float32
    /// kernel's: the selection is the one `scan` makes over the mask the rows were gathered from. Scoring
    /// the likeliest rows first keeps the float32 rows read to about `k` plus the bounds' near misses,
    /// instead of every row that beat the running k-th score in row order (~k·ln(n/k) more), each a
    /// scattered read and, on a fresh map, a page fault.
    public static func scanGathered(query: UnsafePointer<Float>, dimension: Int, metric: Metric,
                                    gathered g: GatheredCopies, into topK: inout TopK) {
        let n = g.count
        guard n > 0 else { return }
        let l2 = metric == .l2
        let (qn2, qn1) = certifiedNorms(query, dimension: dimension)
        @inline(__always) func score(_ i: Int) -> Float {
            let v = g.vectors[i]
            return l2 ? -vs_l2(query, v, dimension) : vs_dot(query, v, dimension)
        }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: n) { boundBuffer in
            withUnsafeTemporaryAllocation(of: Bool.self, capacity: n) { scoredBuffer in
                guard let bounds = boundBuffer.baseAddress, let scored = scoredBuffer.baseAddress else { return }
                // Pass 1: bounds (+inf for a non-finite copy or query, NaN never below a threshold: both scored).
                if let copies = g.copies {
                    var i = 0
                    while i < n {
                        let m = min(64, n - i)
                        vs_f16_upper_many(query, qn2, qn1, copies + i * g.stride, m, g.stride, dimension, l2 ? 1 : 0,
                                          bounds + i)
                        i += m
                    }
                } else if let sources = g.sources {
                    vs_f16_upper_ptrs(query, qn2, qn1, sources, n, dimension, l2 ? 1 : 0, sparseCopyLookahead, bounds)
                } else {
                    return
                }
                scored.initialize(repeating: false, count: n)
                defer { scored.deinitialize(count: n) }
                // Pass 2: the k highest bounds (a selection by bound; NaN bounds are left to pass 3).
                var likeliest = TopK(k: min(topK.k, n))
                for i in 0..<n where !(bounds[i] < likeliest.threshold) { likeliest.insert(bounds[i], UInt32(i)) }
                likeliest.forEachUnordered { _, row in
                    let i = Int(row)
                    scored[i] = true
                    let s = score(i)
                    if s >= topK.threshold { topK.insert(s, g.ids[i]) }
                }
                // Pass 3: every other row that can still enter.
                for i in 0..<n where !scored[i] && !(bounds[i] < topK.threshold) {
                    let s = score(i)
                    if s >= topK.threshold { topK.insert(s, g.ids[i]) }
                }
            }
        }
    }

    /// `scanGathered` for each of `queryCount` queries, split across `threads` workers.
    public static func searchGathered(queries: UnsafePointer<Float>, queryCount: Int, dimension: Int, metric: Metric,
                                      gathered: GatheredCopies, k: Int, threads: Int) -> [TopK] {
        QueryWorkers.map(count: queryCount, threads: threads, placeholder: TopK(k: 0)) { indices, put in
            for i in indices {
                var top = TopK(k: k)
                scanGathered(query: queries + i * dimension, dimension: dimension, metric: metric, gathered: gathered,
                             into: &top)
                put(i, top)
            }
        }
    }
}
