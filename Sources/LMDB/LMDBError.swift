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
    /// The file system is full or the file-size limit was reached (ENOSPC, EDQUOT, EFBIG).
    public var isDiskFull: Bool { code == ENOSPC || code == EDQUOT || code == EFBIG }
    /// `MDB_NOTFOUND`: the key or data item does not exist.
    public var isNotFound: Bool { code == MDB_NOTFOUND }

    /// The LMDB message for the code, followed by the operation.
    public var description: String {
        let message = String(cString: mdb_strerror(code))
        return "\(operation): \(message) (code \(code))"
    }
}

/// Throws an `LMDBError` when `code` is not `MDB_SUCCESS`.
@inline(__always)
func check(_ code: Int32, _ operation: @autoclosure () -> String) throws(LMDBError) {
    if code != MDB_SUCCESS { throw LMDBError(code: code, operation: operation()) }
}
