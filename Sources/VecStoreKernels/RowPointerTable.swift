import CDistance

#if canImport(Glibc)
import Glibc
#endif

/// One pointer per row, filled lazily and read by any number of threads at once: a memo of where a
/// row's record sits in one snapshot of the memory map, so a repeated lookup costs one load instead of
/// a B-tree search. Slots start empty (nil); a slot is published with a release store and read with
/// an acquire load, so a reader sees either nil or a pointer a writer stored with all it points to.
/// Two threads filling the same slot store the same value. The table's memory comes from `calloc`,
/// so the pages of rows never looked up are never touched.
public final class RowPointerTable: @unchecked Sendable {
    /// Number of rows (slots).
    public let count: Int
    private let slots: UnsafeMutablePointer<UnsafeRawPointer?>?

    /// An empty table of `count` slots (no slots if the allocation fails: every lookup then misses).
    public init(count: Int) {
        self.count = max(0, count)
        let raw = self.count > 0 ? calloc(self.count, MemoryLayout<UnsafeRawPointer?>.stride) : nil
        slots = raw?.bindMemory(to: UnsafeRawPointer?.self, capacity: self.count)
    }

    deinit { free(slots) }

    /// The pointer stored for `row`, or nil (not stored yet, or `row` out of range).
    @inline(__always)
    public func load(_ row: Int) -> UnsafeRawPointer? {
        guard let slots, row >= 0, row < count else { return nil }
        return vs_load_pointer(slots + row)
    }

    /// Stores `pointer` for `row` (ignored when out of range).
    @inline(__always)
    public func store(_ row: Int, _ pointer: UnsafeRawPointer) {
        guard let slots, row >= 0, row < count else { return }
        vs_store_pointer(slots + row, pointer)
    }
}
