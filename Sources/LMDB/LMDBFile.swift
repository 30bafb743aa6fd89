import Glibc

/// Checks on an LMDB data file and its side files made without opening an environment.
public enum LMDBFile {
    /// LMDB's meta-page magic (`MDB_MAGIC`), written in the host's byte order.
    static let magic: UInt32 = 0xBEEF_C0DE

    /// Whether the file at `path` can be an LMDB data file: its first meta page carries LMDB's magic
    /// (4 bytes after the 16-byte page header). An empty file counts when `emptyIsNew` (LMDB makes it a
    /// new environment). When the file cannot be opened or read, or is not a regular file, this says
    /// yes and leaves the error to LMDB's open, which names it.
    public static func looksLikeLMDB(path: String, emptyIsNew: Bool) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return true }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return true }
        if st.st_size == 0 { return emptyIsNew }
        var word: UInt32 = 0
        let got = withUnsafeMutableBytes(of: &word) { pread(fd, $0.baseAddress, 4, 16) }
        return got == 4 && word == magic
    }
}
