import Glibc

/// Anonymous memory in 2 MiB-aligned huge-page units, populated up front: for large scratch buffers whose
/// first touch would otherwise cost one page fault per 4 KiB (HNSW visited stamps, gathered filter copies).
public enum HugePages {
    /// The mapping unit and alignment (an x86-64 / arm64 4 KiB-granule huge page).
    public static let unit = 2 << 20

    /// A zero-filled private mapping of `length` bytes (a multiple of `unit`), aligned to `unit`, advised
    /// `MADV_HUGEPAGE` and populated with `MADV_POPULATE_WRITE` (both advisory: a kernel without them
    /// still maps it); nil when the mapping fails. Release it with `munmap(pointer, length)`.
    public static func map(length: Int) -> UnsafeMutableRawPointer? {
        guard length > 0,
              let raw = mmap(nil, length + unit, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              raw != MAP_FAILED
        else { return nil }
        // Trim the mapping to a `unit`-aligned range of `length` bytes.
        let start = Int(bitPattern: raw), aligned = (start + unit - 1) / unit * unit
        if aligned > start { munmap(raw, aligned - start) }
        let tail = start + length + unit - (aligned + length)
        if tail > 0, let end = UnsafeMutableRawPointer(bitPattern: aligned + length) { munmap(end, tail) }
        guard let p = UnsafeMutableRawPointer(bitPattern: aligned) else { return nil }
        _ = madvise(p, length, 14 /* MADV_HUGEPAGE */)
        _ = madvise(p, length, 23 /* MADV_POPULATE_WRITE */)
        return p
    }
}
