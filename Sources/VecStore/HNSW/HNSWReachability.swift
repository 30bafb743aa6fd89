/// Which graph rows a search can reach: a breadth-first walk from the entry point over the layer-0
/// lists (Spec/HNSW.md §6, "Reachability"; the layer-0 beam follows only those, so a row that only an
/// upper-level list leads to counts as unreachable). A live row the walk misses is valid but can only be
/// found by exact search (a selective filter): HNSW construction does not guarantee every row an
/// incoming link, since the neighbour heuristic may prune the last link to a row (hnswlib's too).
/// Parallel inserts reconnect such rows (`HNSWEditor.reconnectUnreachable`); `index show` counts any left.
enum HNSWReachability {
    /// The walk's outcome.
    struct Outcome: Equatable {
        /// Graph rows reached from the entry point (live or not).
        var reached: Int
        /// Live graph rows not reached.
        var unreachableLive: Int
        /// The first few unreachable live rows, ascending.
        var sample: [UInt32]
    }

    /// Walks `graph` (a read view) from its entry point. Lists are bounded as searches bound them (counts
    /// clamped to the level's degree, ids ≥ rows skipped), so a damaged graph gives a count, never a crash.
    static func walk(_ graph: HNSWGraphView, isLive: (UInt32) -> Bool, sampleSize: Int = 8) -> Outcome {
        let rows = graph.rows
        let seen = reached(graph)
        var liveRows = 0, reachedLive = 0
        for r in 0..<UInt32(rows) where isLive(r) {
            liveRows += 1
            if seen[Int(r) >> 6] & (1 << UInt64(r & 63)) != 0 { reachedLive += 1 }
        }
        var reachedRows = 0
        for w in seen { reachedRows += w.nonzeroBitCount }
        return Outcome(reached: reachedRows, unreachableLive: liveRows - reachedLive,
                       sample: sample(rows, seen, isLive, sampleSize))
    }

    /// The rows a walk over layer-0 lists from `graph`'s entry point visits, as a bitmap over
    /// `graph.rows` (all clear when there is no entry point).
    static func reached<G: HNSWGraphAccess>(_ graph: G) -> [UInt64] {
        let rows = graph.rows
        let config = graph.config
        var seen = [UInt64](repeating: 0, count: (rows + 63) / 64)
        guard rows > 0, config.entryPoint != HNSWConfig.noEntry, Int(config.entryPoint) < rows else { return seen }
        var queue: [UInt32] = [config.entryPoint]
        queue.reserveCapacity(rows)
        seen[Int(config.entryPoint) >> 6] |= 1 << UInt64(config.entryPoint & 63)
        var head = 0
        while head < queue.count {
            let node = queue[head]
            head += 1
            let list = graph.links(node, 0)
            let n = min(Int(list[0]), graph.linkCap(0))
            guard n > 0 else { continue }
            for j in 1...n {
                let t = list[j]
                guard Int(t) < rows else { continue }
                let bit = UInt64(1) << UInt64(t & 63)
                if seen[Int(t) >> 6] & bit == 0 {
                    seen[Int(t) >> 6] |= bit
                    queue.append(t)
                }
            }
        }
        return seen
    }

    private static func sample(_ rows: Int, _ seen: [UInt64], _ isLive: (UInt32) -> Bool, _ size: Int) -> [UInt32] {
        var out: [UInt32] = []
        var r: UInt32 = 0
        while Int(r) < rows && out.count < size {
            if seen[Int(r) >> 6] & (1 << UInt64(r & 63)) == 0 && isLive(r) { out.append(r) }
            r += 1
        }
        return out
    }
}
