import LMDB
import VecStoreIO

/// Every error the library reports, each with a message that says what failed and where.
public enum VecStoreError: Error, Sendable, CustomStringConvertible {
    /// LMDB reported an error.
    case storage(LMDBError)
    /// The file exists but is not a vecstore store.
    case notAVecStore(String)
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
    /// A stored record is damaged.
    case corrupt(String)
    /// The store was compacted into a new file by another handle; writes through this handle would be lost.
    case superseded(String)
    /// A file-system operation failed.
    case io(String)
    /// An argument is out of range.
    case invalidArgument(String)

    /// A readable message.
    public var description: String {
        switch self {
        case .storage(let e): "storage error: \(e)"
        case .notAVecStore(let p): "\(p) is not a vecstore store (no vecstore format record)"
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
        throw .storage(e)
    } catch let e as ImportError {
        throw .invalidInput(e)
    } catch {
        throw .io("\(error)")
    }
}
