import CLMDB
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Reads of the store file's bytes that a read transaction's map pointers name, through `pread` instead
/// of through the map while the map's page tables are cold (Spec/HNSW.md §5.1, "Cold reads").
///
/// A fresh map costs one page fault at the first touch of each region of it, ~10 µs on this VM, and a
/// fault maps only the region the kernel's fault-around covers (64 KiB when the page cache holds the
/// file in small folios). A search's first query touches a few hundred such regions once or a few
/// times each; reading those bytes with `pread` from the page cache costs ~1–2 µs a row and maps
/// nothing. This class makes the choice per region with the ski-rental rule: a region's first
/// `buyAfter - 1` reads are `pread`s (the rent), and the read that reaches `buyAfter` goes through the
/// map (buying the fault), as does every later read of that region. So no region costs more than about
/// twice the cheaper of "fault at once" and "always `pread`", and a long-lived process ends up reading
/// the map as before. Once a query needs few `pread`s (`record`), the owner may stop asking (`settled`).
///
/// The bytes are the same either way: a snapshot's pages are never rewritten while it is open, and
/// the map is a shared mapping of the same file. Each read is bounds-checked against the mapping;
/// a read that fails or comes back short, or a pointer outside the mapping, is served by the map. The
/// first `pread` is compared with the map's bytes, and a mismatch turns the file reads off for good.
///
/// One instance serves one map generation of one environment (`Environment.mapReads(generation:)`);
/// pointers given to it must come from a read transaction of that generation, and it is used only
/// while such a transaction is open. It holds its own duplicate of the file descriptor.
public final class MapReads: @unchecked Sendable {
    /// The mapping: descriptor (a duplicate this object closes), first byte, bytes mapped; nil until
    /// resolved, or when it could not be.
    private struct Mapping {
        let fd: Int32
        let base: Int
        let length: Int
        let counters: UnsafeMutablePointer<UInt8>
        let windows: Int
    }

    /// log2 of the bytes of one region (64 KiB: the kernel's default fault-around).
    public static let windowShift = 16
    /// Reads of a region from which the map is read instead, by default (a fault costs ~8 `pread`s of a
    /// row here: ~10 µs against ~1.2 µs).
    public static let defaultBuyAfter: UInt8 = 8
    /// This reader's count of reads of a region from which the map is read (1 reads the map at once;
    /// 255 `pread`s all but every 255th read of a region: tests).
    public let buyAfter: UInt8
    /// The most regions tracked (64 GiB of map at 64 KiB each): larger maps are read through the map.
    public static let maxWindows = 1 << 20
    /// Reads per `pread` under which a recorded query settles the map (`record`).
    public static let settleRatio = 8

    private let resolve: () -> (fd: Int32, base: UnsafeRawPointer, length: Int)?
    private let lock = Mutex<Int>(0)  // 0 unresolved, 1 resolved (mapping may still be nil), guards `mapping`
    nonisolated(unsafe) private var mapping: Mapping?
    private let resolved = Atomic<Bool>(false)
    private let verified = Atomic<Int>(0)  // 0 not yet, 1 agrees, -1 disagrees (file reads off)
    private let settledFlag = Atomic<Bool>(false)
    private let preadTotal = Atomic<Int>(0)

    /// Reads served by `pread` so far, over every query whose tally was `record`ed (one atomic add a
    /// query, not one a read).
    public var preads: Int { preadTotal.load(ordering: .relaxed) }

    /// A reader whose mapping `resolve` finds on first use (returning the map's descriptor, first byte and
    /// length, as `Environment.mappedFile()`), reading a region through the map from its `buyAfter`-th
    /// read on.
    public init(buyAfter: UInt8 = MapReads.defaultBuyAfter,
                resolve: @escaping () -> (fd: Int32, base: UnsafeRawPointer, length: Int)?) {
        self.buyAfter = max(1, buyAfter)
        self.resolve = resolve
    }

    deinit {
        if let m = mapping {
            Glibc.close(m.fd)
            m.counters.deallocate()
        }
    }

    /// Whether a query recorded few enough `pread`s that the map may be read directly from now on.
    public var settled: Bool { settledFlag.load(ordering: .relaxed) }

    /// The mapping, resolved once (thread-safe).
    @inline(__always)
    private func current() -> Mapping? {
        if resolved.load(ordering: .acquiring) { return mapping }
        return lock.withLock { state -> Mapping? in
            if state == 1 { return mapping }
            state = 1
            if let (fd, base, length) = resolve(), length > 0 {
                let windows = (length + (1 << Self.windowShift) - 1) >> Self.windowShift
                let copy = dup(fd)
                if windows <= Self.maxWindows, copy >= 0 {
                    let counters = UnsafeMutablePointer<UInt8>.allocate(capacity: windows)
                    counters.initialize(repeating: 0, count: windows)
                    mapping = Mapping(fd: copy, base: Int(bitPattern: base), length: length, counters: counters,
                                      windows: windows)
                } else if copy >= 0 {
                    Glibc.close(copy)
                }
            }
            resolved.store(true, ordering: .releasing)
            return mapping
        }
    }

    /// Counts of one query's reads (`bytes`): how many were served by `pread`, and in all.
    public struct Tally: Sendable {
        /// Reads served by `pread`.
        public var preads = 0
        /// All reads.
        public var reads = 0
        /// An empty tally.
        public init() {}
    }

    /// The `count` bytes at `p` (a pointer into this map, from a read transaction of its generation):
    /// `p` itself when the region holding them is read through the map (bought, out of the tracked
    /// mapping, or after a failed read), else `scratch` (at least `count` bytes) filled with the same
    /// bytes by `pread`.
    @inline(__always)
    public func bytes(at p: UnsafeRawPointer, count: Int, scratch: UnsafeMutableRawPointer,
                      tally: inout Tally) -> UnsafeRawPointer {
        tally.reads += 1
        guard let m = current() else { return p }
        let offset = Int(bitPattern: p) &- m.base
        guard offset >= 0, count > 0, offset <= m.length - count else { return p }
        let first = offset >> Self.windowShift, last = (offset + count - 1) >> Self.windowShift
        let seen = vs_counter_load(m.counters + first)
        if seen >= buyAfter && (first == last || vs_counter_load(m.counters + last) >= buyAfter) {
            return p
        }
        vs_counter_bump(m.counters + first, buyAfter)
        if last != first { vs_counter_bump(m.counters + last, buyAfter) }
        if Int(seen) + 1 >= Int(buyAfter) { return p }
        let state = verified.load(ordering: .relaxed)
        if state < 0 { return p }
        guard pread(m.fd, scratch, count, off_t(offset)) == count else { return p }
        if state == 0 {
            // Once: the file holds at this offset what the map holds. A mismatch turns file reads off for
            // good, whatever another thread's compare found at the same time (a match only moves 0 to 1,
            // never -1 to 1); the bytes read are used only once the state says 1.
            if memcmp(scratch, p, count) != 0 {
                verified.store(-1, ordering: .relaxed)
                return p
            }
            _ = verified.compareExchange(expected: 0, desired: 1, ordering: .relaxed)
            if verified.load(ordering: .relaxed) != 1 { return p }
        }
        tally.preads += 1
        return UnsafeRawPointer(scratch)
    }

    /// Whether the `count` bytes at `p` are read through the map (their regions bought): a prefetch of
    /// them is worth issuing.
    @inline(__always)
    public func isMapped(_ p: UnsafeRawPointer, count: Int) -> Bool {
        guard resolved.load(ordering: .acquiring), let m = mapping else { return true }
        let offset = Int(bitPattern: p) &- m.base
        guard offset >= 0, count > 0, offset <= m.length - count else { return true }
        return vs_counter_load(m.counters + (offset >> Self.windowShift)) >= buyAfter
    }

    /// Records one finished query's tally: when fewer than one read in `settleRatio` needed a `pread`
    /// (most regions it touched are mapped), the map is settled.
    public func record(_ tally: Tally) {
        if tally.preads > 0 { preadTotal.add(tally.preads, ordering: .relaxed) }
        if tally.reads > 0 && tally.preads * Self.settleRatio < tally.reads { settledFlag.store(true, ordering: .relaxed) }
    }

    /// Marks the map settled (tests, and owners that know the map is warm).
    public func settle() { settledFlag.store(true, ordering: .relaxed) }
}
