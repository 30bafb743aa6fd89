#if canImport(Glibc)
import Glibc
#endif
import VecStoreKernels

/// Zero-filled memory for a search's visited stamps (two bytes per graph row: 1.9 MB at 1M rows).
/// A fresh process's first search would otherwise fault in and zero the stamps 4 KiB at a time as
/// it touches them (466 page faults at 1M rows). Large arrays are mapped anonymously in whole 2 MiB
/// units, aligned, with `MADV_HUGEPAGE` (so the kernel can back each unit with one huge page) and
/// populated in one `MADV_POPULATE_WRITE` call; the kernel zero-fills them, so no `memset` either.
/// Both advices are best effort: where they are unavailable the pages fault in on first touch, as
/// with the allocator. Small arrays come from the allocator.
enum HNSWVisitedPages {
    /// Arrays at least this large are mapped; smaller ones come from the allocator.
    static let mapThreshold = 64 << 10
    /// The mapping unit and alignment.
    static let unit = HugePages.unit

    /// Bytes mapped for `count` stamps (a multiple of `unit`), or 0 when they come from the allocator.
    static func mappedBytes(count: Int) -> Int {
        let bytes = count * MemoryLayout<UInt16>.stride
        return bytes >= mapThreshold ? (bytes + unit - 1) / unit * unit : 0
    }

    /// `count` zeroed stamps, and the bytes mapped for them (0: they came from the allocator).
    static func allocate(count: Int) -> (stamps: UnsafeMutablePointer<UInt16>, mapped: Int) {
        let length = mappedBytes(count: count)
        if length > 0, let p = HugePages.map(length: length) {
            return (p.bindMemory(to: UInt16.self, capacity: count), length)
        }
        let p = UnsafeMutablePointer<UInt16>.allocate(capacity: count)
        p.initialize(repeating: 0, count: count)
        return (p, 0)
    }

    /// Frees stamps from `allocate(count:)`, given the bytes it mapped.
    static func deallocate(_ p: UnsafeMutablePointer<UInt16>, mapped: Int) {
        if mapped > 0 {
            munmap(p, mapped)
        } else {
            p.deallocate()
        }
    }
}
