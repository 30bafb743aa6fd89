import CLMDB

#if canImport(Glibc)
import Glibc
#endif

/// An error returned by LMDB, tagged with the operation that failed.
public struct LMDBError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The raw LMDB (or errno) return code.
    public let code: Int32
    /// The operation that failed, such as `"mdb_put(docs)"`.
    public let operation: String

    /// Creates an error from a return code and the operation that produced it.
    public init(code: Int32, operation: String) {
        self.code = code
        self.operation = operation
    }

    /// `MDB_MAP_FULL`: the memory map is full; grow it and retry.
    public var isMapFull: Bool { code == MDB_MAP_FULL }
    /// `MDB_MAP_RESIZED`: another process grew the map; adopt the new size and retry.
    public var isMapResized: Bool { code == MDB_MAP_RESIZED }
    /// The code `Environment` uses for a transaction on an environment whose file a compaction replaced.
    public static let supersededCode: Int32 = -30_000
    /// The environment's file was replaced by a compaction (`Environment.markSuperseded`).
    public var isSuperseded: Bool { code == Self.supersededCode }
    /// Another process holds the store (compaction lock), or growth waited too long.
    public var isBusy: Bool { code == EBUSY }
    /// The file system is full or the file-size limit was reached (ENOSPC, EDQUOT, EFBIG).
    public var isDiskFull: Bool { code == ENOSPC || code == EDQUOT || code == EFBIG }
    /// LMDB found the file damaged: `MDB_INVALID` (not an LMDB file), `MDB_PAGE_NOTFOUND` (a page number
    /// past the snapshot) or `MDB_CORRUPTED` (a page of the wrong kind).
    public var isCorruption: Bool { code == MDB_INVALID || code == MDB_PAGE_NOTFOUND || code == MDB_CORRUPTED }
    /// `MDB_NOTFOUND`: the key or data item does not exist.
    public var isNotFound: Bool { code == MDB_NOTFOUND }

    /// The LMDB message for the code, followed by the operation.
    public var description: String {
        if code == Self.supersededCode { return "\(operation): the file was compacted into a new one; reopen the store" }
        let message = String(cString: mdb_strerror(code))
        return "\(operation): \(message) (code \(code))"
    }
}

/// Throws an `LMDBError` when `code` is not `MDB_SUCCESS`.
@inline(__always)
func check(_ code: Int32, _ operation: @autoclosure () -> String) throws(LMDBError) {
    if code != MDB_SUCCESS { throw LMDBError(code: code, operation: operation()) }
}
