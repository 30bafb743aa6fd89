import Foundation

/// Page-cache state of a file and page-fault counts of this process, for the scale benchmark's fresh
/// opens: "warm page cache" means every page of the store file resident, confirmed with `mincore`.
enum PageCache {
    /// Pages of the file at `path` resident in the page cache, and its size in pages (`mincore` over a
    /// fresh read-only map of the whole file; the map touches no page).
    static func residency(_ path: String) -> (resident: Int, pages: Int) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return (0, 0) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size > 0 else { return (0, 0) }
        let size = Int(st.st_size)
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        let pages = (size + pageSize - 1) / pageSize
        guard let map = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), map != MAP_FAILED else { return (0, pages) }
        defer { munmap(map, size) }
        var vec = [UInt8](repeating: 0, count: pages)
        guard mincore(map, size, &vec) == 0 else { return (0, pages) }
        return (vec.reduce(0) { $0 + Int($1 & 1) }, pages)
    }

    /// Reads the file at `path` through once (sequential `read`s into one buffer), so its pages are in
    /// the page cache; the time this takes is the cache's, not the store's.
    static func readThrough(_ path: String) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let chunk = 4 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        while read(fd, buffer, chunk) > 0 {}
    }

    /// Drops the file's clean pages from the page cache (`posix_fadvise(POSIX_FADV_DONTNEED)`), so the
    /// next open starts cold, as after the machine's reclaim evicted the store.
    static func evict(_ path: String) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return }
        defer { close(fd) }
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    }

    /// Minor and major page faults of this process so far (`getrusage`).
    static func faults() -> (minor: Int, major: Int) {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return (Int(u.ru_minflt), Int(u.ru_majflt))
    }
}
