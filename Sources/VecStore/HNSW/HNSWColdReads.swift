import CDistance
import LMDB
import VecStoreKernels

/// One searching thread's state for reads while the map is cold (Spec/HNSW.md §5.1, "Cold reads"): the
/// snapshot's `MapReads`, one scratch row for each kind of bytes a search reads (a traversal copy, a
/// float32 row, a link list) and the running query's tally. A pointer a scorer or `ColdGraph` returns
/// may be one of these rows: it is valid until the next read of the same kind.
final class HNSWColdQuery {
    let reads: MapReads
    let copyRow: UnsafeMutableRawPointer
    let floatRow: UnsafeMutableRawPointer
    let listRow: UnsafeMutableRawPointer
    var tally = MapReads.Tally()

    init(reads: MapReads, copyBytes: Int, floatBytes: Int, listBytes: Int) {
        self.reads = reads
        copyRow = .allocate(byteCount: max(64, copyBytes), alignment: 64)
        floatRow = .allocate(byteCount: max(64, floatBytes), alignment: 64)
        listRow = .allocate(byteCount: max(64, listBytes), alignment: 64)
    }

    deinit {
        copyRow.deallocate()
        floatRow.deallocate()
        listRow.deallocate()
    }

    /// The `count` bytes at `p` in the map, or the same bytes read into `scratch` (`MapReads.bytes`).
    @inline(__always)
    func bytes(_ p: UnsafeRawPointer, _ count: Int, _ scratch: UnsafeMutableRawPointer) -> UnsafeRawPointer {
        reads.bytes(at: p, count: count, scratch: scratch, tally: &tally)
    }
}

/// `HalfScorer` through `HNSWColdQuery`: each binary16 copy from the map where its region is mapped, else
/// read with `pread` into the query's copy row. The same bytes go to the same kernel, so every distance
/// is the one `HalfScorer` computes.
struct ColdHalfScorer<D: HNSWHalfDistance>: HNSWScorer {
    let copies: HNSWGraphView
    let query: UnsafePointer<Float>
    let cold: HNSWColdQuery
    let lines: Int32

    init(copies: HNSWGraphView, query: UnsafePointer<Float>, cold: HNSWColdQuery) {
        self.copies = copies
        self.query = query
        self.cold = cold
        lines = copies.copyPrefetchLines
    }

    @inline(__always) func distance(_ id: UInt32) -> Float {
        let p = cold.bytes(copies.traversalCopy(id), copies.copyStride, cold.copyRow)
        return D.distance(query, p.assumingMemoryBound(to: UInt16.self), copies.dimension)
    }

    /// Prefetches the copy only where it is read through the map.
    @inline(__always) func prefetch(_ id: UInt32) {
        let p = copies.traversalCopy(id)
        if cold.reads.isMapped(p, count: copies.copyStride) { vs_prefetch(p, lines) }
    }
}

/// `FloatScorer` through `HNSWColdQuery` (the float32 re-ranking of a cold search).
struct ColdFloatScorer<D: HNSWDistance>: HNSWScorer {
    let vectors: VectorTable
    let query: UnsafePointer<Float>
    let cold: HNSWColdQuery

    @inline(__always) func distance(_ id: UInt32) -> Float {
        let dim = vectors.dimension
        let p = cold.bytes(UnsafeRawPointer(vectors.vector(id)), dim * 4, cold.floatRow)
        return D.distance(query, p.assumingMemoryBound(to: Float.self), dim)
    }

    @inline(__always) func prefetch(_ id: UInt32) {
        let p = vectors.vector(id)
        if cold.reads.isMapped(p, count: vectors.dimension * 4) { vs_prefetch(p, vectors.prefetchLines) }
    }
}

/// A snapshot's graph (`HNSWGraphView`) whose link lists are read through `HNSWCopySource`'s cold
/// reads: a list comes from the map where its region is mapped, else from the query's list row. The
/// search algorithms read a list fully before asking for the next one, so one row serves them.
struct ColdGraph: HNSWGraphAccess {
    let graph: HNSWGraphView
    let cold: HNSWColdQuery

    var needsLocks: Bool { false }
    func lock(_ node: UInt32) {}
    func unlock(_ node: UInt32) {}
    var rows: Int { graph.rows }
    var config: HNSWConfig { graph.config }

    @inline(__always) func links(_ node: UInt32, _ level: Int) -> UnsafePointer<UInt32> {
        let list = graph.links(node, level)
        let words = level == 0 ? graph.slotWords0 : graph.config.slotWordsUpper
        return cold.bytes(UnsafeRawPointer(list), words * 4, cold.listRow).assumingMemoryBound(to: UInt32.self)
    }

    @inline(__always) func prefetchLinks(_ node: UInt32) {
        let p = graph.links0(node)
        if cold.reads.isMapped(p, count: graph.slotWords0 * 4) { vs_prefetch(p, 2) }
    }
}
