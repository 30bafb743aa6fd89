/// Which graph rows a search can reach: a breadth-first walk from the entry point over the links of
/// every level (Spec/HNSW.md §6, "Reachability"). A live row the walk misses is valid but can only be
/// found by exact search (a filter selective enough to scan, or the unlinked tail): HNSW construction
/// does not guarantee every row an incoming link, since the neighbour heuristic may prune the last link
/// to a row, and hnswlib has the same property. `index show` prints the count and `verify` warns of it.
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

    /// Walks `graph` from its entry point. Lists are bounded as searches bound them (counts clamped to
    /// the level's degree, ids ≥ rows skipped), so a damaged graph gives a count, never a crash.
    static func walk(_ graph: HNSWGraphView, isLive: (UInt32) -> Bool, sampleSize: Int = 8) -> Outcome {
        let rows = graph.rows
        let config = graph.config
        var liveRows = 0
        for r in 0..<UInt32(rows) where isLive(r) { liveRows += 1 }
        guard rows > 0, config.entryPoint != HNSWConfig.noEntry, Int(config.entryPoint) < rows else {
            return Outcome(reached: 0, unreachableLive: liveRows, sample: sample(rows, nil, isLive, sampleSize))
        }
        var seen = [UInt64](repeating: 0, count: (rows + 63) / 64)
        var queue: [UInt32] = [config.entryPoint]
        queue.reserveCapacity(rows)
        seen[Int(config.entryPoint) >> 6] |= 1 << UInt64(config.entryPoint & 63)
        var head = 0
        while head < queue.count {
            let node = queue[head]
            head += 1
            let top = min(config.level(of: node), graph.upper.count)
            for level in 0...top {
                let list = graph.links(node, level)
                let n = min(Int(list[0]), level == 0 ? config.maxLinks0 : config.m)
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
        }
        var reachedLive = 0
        for r in queue where isLive(r) { reachedLive += 1 }
        return Outcome(reached: queue.count, unreachableLive: liveRows - reachedLive,
                       sample: sample(rows, seen, isLive, sampleSize))
    }

    private static func sample(_ rows: Int, _ seen: [UInt64]?, _ isLive: (UInt32) -> Bool, _ size: Int) -> [UInt32] {
        var out: [UInt32] = []
        var r: UInt32 = 0
        while Int(r) < rows && out.count < size {
            let reached = seen.map { $0[Int(r) >> 6] & (1 << UInt64(r & 63)) != 0 } ?? false
            if !reached && isLive(r) { out.append(r) }
            r += 1
        }
        return out
    }
}
