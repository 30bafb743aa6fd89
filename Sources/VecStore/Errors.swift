import LMDB
import VecStoreEmbed
import VecStoreIO

/// Every error the library reports, each with a message that says what failed and where.
public enum VecStoreError: Error, Sendable, CustomStringConvertible {
    /// LMDB reported an error.
    case storage(LMDBError)
    /// The file exists but is not a vecstore store.
    case notAVecStore(String)
    /// No store file at the path (and the open was not allowed to create one).
    case storeNotFound(String)
    /// Compaction needs the store alone, and another process has it open.
    case alreadyOpen(String)
    /// The store was written with a format version this code does not read.
    case unsupportedFormatVersion(found: UInt32, supported: UInt32)
    /// The store uses a format version, feature or record code that only a newer vecstore understands.
    case newerFormat(String)
    /// No collection of that name exists.
    case collectionNotFound(String)
    /// A collection of that name exists with a different dimension or metric.
    case collectionMismatch(String)
    /// A collection name is empty, too long or contains a control character.
    case invalidCollectionName(String)
    /// A document or query vector has the wrong number of components.
    case dimensionMismatch(expected: Int, got: Int, id: String?)
    /// A vector holds NaN or an infinity, or is all zeros under the cosine metric.
    case invalidVector(id: String?, reason: String)
    /// An external id is empty or too long.
    case invalidID(String)
    /// A batch names the same id twice.
    case duplicateIDInBatch(String)
    /// `add` found an id that is already stored.
    case idExists(String)
    /// Metadata is not an object of strings, numbers, booleans and arrays of those.
    case invalidMetadata(id: String, reason: String)
    /// A filter could not be parsed or is not valid.
    case invalidFilter(String)
    /// An input file could not be read or holds an invalid record.
    case invalidInput(ImportError)
    /// A stored record is damaged (a value read from disk failed a check). `corrupt(database:key:reason:)`
    /// builds the message from the database, the key and what was wrong.
    case corrupt(String)
    /// The store was compacted into a new file by another handle; writes through this handle would be lost.
    case superseded(String)
    /// A file-system operation failed.
    case io(String)
    /// An argument is out of range.
    case invalidArgument(String)
    /// A text-embedding model is missing, damaged or does not match the collection (`VecStoreEmbed`).
    case embedding(EmbedError)
    /// The file system is full or the process hit its file-size limit (ENOSPC, EDQUOT, EFBIG). What
    /// was committed before stays committed; the failing transaction or compaction left nothing behind.
    case diskFull(String)
    /// The store is busy with an operation that needs it alone (a compaction in this or another process
    /// holds the exclusive lock); try again when it finishes.
    case busy(String)
    /// An error thrown by caller code running inside a store operation (such as a `forEachBatch`
    /// body), passed through unchanged.
    case callback(any Error & Sendable)

    /// A damaged record: which database, which key, and what is wrong with the value.
    public static func corrupt(database: String, key: String, reason: String) -> VecStoreError {
        .corrupt("\(database)[\(key)]: \(reason)")
    }

    /// The store was written by a newer vecstore (an alias of `unsupportedFormatVersion`'s meaning).
    public var isFormatTooNew: Bool {
        if case .unsupportedFormatVersion(let found, let supported) = self { return found > supported }
        if case .newerFormat = self { return true }
        return false
    }

    /// Broad kinds of failure, for callers (and the CLI's exit status) that only need to know whose
    /// fault it is and whether trying again can help.
    public enum Category: Sendable, Equatable {
        /// The caller's input or arguments are invalid (bad vector, filter, id, file record…).
        case badInput
        /// The store, collection or document named does not exist.
        case notFound
        /// The store is damaged, not a vecstore store, or of a newer format.
        case corruptStore
        /// The file system failed or is full.
        case io
        /// Another operation holds the store (compaction) or replaced it; retrying can succeed.
        case busy
    }

    /// The category of this error.
    public var category: Category {
        switch self {
        case .storage(let e): e.isDiskFull ? .io : (e.isCorruption ? .corruptStore : .io)
        case .notAVecStore, .unsupportedFormatVersion, .newerFormat, .corrupt: .corruptStore
        case .collectionNotFound, .storeNotFound: .notFound
        case .alreadyOpen: .busy
        case .collectionMismatch, .invalidCollectionName, .dimensionMismatch, .invalidVector, .invalidID,
             .duplicateIDInBatch, .idExists, .invalidMetadata, .invalidFilter, .invalidInput, .invalidArgument,
             .callback:
            .badInput
        case .embedding(let e):
            switch e {
            case .unknownModel, .invalidArgument: .badInput
            case .modelNotInstalled: .notFound
            case .badModel: .io
            }
        case .superseded, .busy: .busy
        case .io, .diskFull: .io
        }
    }

    /// A readable message.
    public var description: String {
        switch self {
        case .storage(let e): "storage error: \(e)"
        case .notAVecStore(let p): "\(p) is not a vecstore store (no vecstore format record)"
        case .storeNotFound(let p): "no store at \(p)"
        case .alreadyOpen(let m): m
        case .unsupportedFormatVersion(let found, let supported):
            "store format version \(found) is not supported: this vecstore reads version \(supported); upgrade vecstore"
        case .newerFormat(let m): "\(m): written by a newer vecstore; upgrade vecstore"
        case .collectionNotFound(let n): "no collection named '\(n)'"
        case .collectionMismatch(let m): m
        case .invalidCollectionName(let m): "invalid collection name: \(m)"
        case .dimensionMismatch(let e, let g, let id):
            "vector\(id.map { " of '\($0)'" } ?? "") has \(g) components, the collection has dimension \(e)"
        case .invalidVector(let id, let r): "invalid vector\(id.map { " of '\($0)'" } ?? ""): \(r)"
        case .invalidID(let m): "invalid id: \(m)"
        case .duplicateIDInBatch(let id): "id '\(id)' appears twice in one batch"
        case .idExists(let id): "id '\(id)' already exists (use upsert to replace it)"
        case .invalidMetadata(let id, let r): "invalid metadata of '\(id)': \(r)"
        case .invalidFilter(let m): "invalid filter: \(m)"
        case .invalidInput(let e): e.description
        case .corrupt(let m): "store is damaged: \(m)"
        case .superseded(let m): m
        case .io(let m): m
        case .invalidArgument(let m): m
        case .embedding(let e): e.description
        case .diskFull(let m): "disk full: \(m)"
        case .busy(let m): m
        case .callback(let e): "\(e)"
        }
    }
}

/// Runs `body`, turning LMDB errors into `VecStoreError.storage`.
@inline(__always)
func storage<R>(_ body: () throws -> R) throws(VecStoreError) -> R {
    do {
        return try body()
    } catch let e as VecStoreError {
        throw e
    } catch let e as LMDBError {
        if e.isSuperseded { throw .superseded("\(e)") }
        if e.isBusy { throw .busy("\(e)") }
        throw e.isDiskFull ? .diskFull("\(e)") : .storage(e)
    } catch let e as ImportError {
        throw .invalidInput(e)
    } catch let e as PageCheckError {
        throw .corrupt("\(e)")
    } catch {
        // Anything else was thrown by caller code inside the operation: passed through, not relabelled.
        throw .callback(error)
    }
}
