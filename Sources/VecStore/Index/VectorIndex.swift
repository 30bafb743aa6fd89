import LMDB
import VecStoreKernels

// The seam between a collection and its vector index (Spec/FORMAT.md §16). A collection has at most
// one vector index; which one is said by a per-collection meta record `<kind prefix>BE32(cid)`, and a
// collection with none is flat (searched exactly). Everything outside `Index/` and the kinds' own
// folders reaches an index only through these protocols and `IndexRegistry`: collection creation and
// drop, the writer's batches, the search planner's views, verify, stats and compaction.
//
// Adding a kind means one folder holding a type that conforms to `VectorIndexKind` (plus its writer
// and view), one line in `IndexRegistry.kinds`, and a case of `IndexKind` for its parameters.

/// One index kind, at type level: what it stores, and how it is created, opened, written, verified,
/// dropped and carried through compaction. All functions run inside the caller's transaction.
protocol VectorIndexKind {
    /// Stable name, shown by `vecstore index show` and `stats`: "hnsw" (later "ivf", "ivf-pq").
    static var name: String { get }
    /// Named databases this kind owns; every key of each begins with `BE32(collection id)`. They are
    /// opened with the store (`Schema.databases`), emptied for a collection by `drop`, and checked by
    /// verify to hold only keys of collections that have this index.
    static var databases: [Schema.Entry] { get }
    /// Prefix of the per-collection meta record `<prefix>BE32(cid)` whose presence says that the
    /// collection has an index of this kind.
    static var metaPrefix: [UInt8] { get }
    /// The store feature a collection of this kind declares (Spec/FORMAT.md §5), so that builds that
    /// do not know the kind report the store as written by a newer vecstore; nil for a kind of the
    /// base format (HNSW).
    static var feature: Format.Feature? { get }
    /// Parameters of this kind that tests and `index build` use when none are given.
    static var defaultParameters: IndexKind { get }
    /// Every configuration the contract tests run for this kind (default: `defaultParameters` alone);
    /// a kind with variants (IVF-Flat and IVF-PQ) lists one of each.
    static var testParameters: [IndexKind] { get }

    /// Whether `parameters` describe an index of this kind.
    static func accepts(_ parameters: IndexKind) -> Bool
    /// Throws `invalidArgument` when `parameters` (of this kind) are out of range for a collection of
    /// `dimension` and `metric`.
    static func validate(_ parameters: IndexKind, dimension: Int, metric: Metric) throws(VecStoreError)
    /// Writes the empty index of a new (or emptied) collection: its meta record and anything it needs
    /// before the first batch. `record` describes the collection as it is in `txn`.
    static func create(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, parameters: IndexKind)
        throws
    /// The collection's parameters when it has an index of this kind (its meta record is present and
    /// valid), else nil. A record this build cannot read throws `newerFormat`; a damaged one `corrupt`.
    static func load(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord) throws -> IndexKind?
    /// Removes the collection's index: its meta record and its keys in `databases`.
    static func drop(_ txn: Transaction, _ dbs: Databases, collection: UInt32) throws
    /// Checks the index of a collection that has one against its rows (`view`): returns the number of
    /// items checked and each fault found, each naming the collection.
    static func verify(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, name: String,
                       _ view: CollectionView) throws -> (checked: Int, faults: [String])
    /// The index's shape for `vecstore stats` (`.summary`) and `index show` (`.full`).
    static func stats(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, name: String,
                      depth: IndexStatsDepth) throws -> IndexStats
    /// A writer that applies batches of `record`'s collection inside `txn`.
    static func makeWriter(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, name: String) throws
        -> any VectorIndexWriter
    /// The read view of the index in `txn`'s snapshot; `rows` is the collection as the same snapshot
    /// sees it. The view is cached with the snapshot and shared by concurrent searches.
    static func openView(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, name: String,
                         _ rows: CollectionView) throws -> any VectorIndexView
    /// Compaction: carries the index of `source` (old store, old rows) over to the new collection
    /// `record` in `txn`, whose rows are the old live rows renumbered by `source.newRow`. Returns
    /// `.rebuild` when the kind cannot renumber (the caller then rebuilds through the writer).
    static func remap(_ source: IndexRemapSource, into txn: Transaction, _ dbs: Databases,
                      _ record: CollectionRecord, name: String) throws -> IndexRemapOutcome
    /// Rows of `record` the index does not cover yet, which searches scan exactly.
    static func unindexedRows(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord) throws -> Int
}

/// One write batch, as an index sees it at the end of the writer's transaction.
struct IndexBatch {
    /// The collection record after the batch.
    let record: CollectionRecord
    /// Rows appended by the batch (`record.nextInternalID` is their upper bound). Some may already be
    /// deleted again by the same batch (see `liveWords`).
    let appended: Range<UInt32>
    /// Rows below `appended.lowerBound` that the batch deleted.
    let deleted: [UInt32]
    /// Every row below `record.nextInternalID`, in stored form (unit length under cosine): older rows
    /// from pages the transaction has not written, appended rows from the batch's own memory (never
    /// from pages written in this transaction, which LMDB may spill and free).
    let vectors: VectorTable
    /// The live bitmap after the batch.
    let liveWords: [UInt64]
    /// Cores the index may use.
    let threads: Int
    /// How much of the rows not yet indexed the index should take in now (an index that always takes
    /// every row, like IVF, ignores it).
    var linking: IndexLinking = .all
}

/// How much of a graph's unlinked tail (rows appended but not yet linked, Spec/HNSW.md §4.1) a write
/// batch links, and the thresholds that decide it.
struct IndexLinking: Equatable {
    enum Mode: Equatable {
        /// Every row: the index covers the whole collection after the batch (single writes, rebuilds).
        case all
        /// Bulk import: the batch's rows join the tail, and the whole tail is linked only once it is large
        /// against the graph (`HNSWTailPolicy`).
        case deferred
        /// One bounded step of the tail (batched rebuilds, `linkIndexTail`).
        case step
    }
    var mode: Mode
    var policy = HNSWTailPolicy()

    /// Every row, now.
    static let all = IndexLinking(mode: .all)
}

/// Applies write batches to one collection's index inside the writer's transaction.
protocol VectorIndexWriter {
    /// Brings the index up to date with `batch`: new live rows become searchable, deleted rows are
    /// removed or repaired around. Writes only what the batch touches.
    mutating func apply(_ batch: IndexBatch) throws
    /// Index blocks the last `apply` wrote (tests check that a small batch writes few).
    var blocksWritten: Int { get }
}

/// An index opened in one snapshot. It lives in the snapshot cache and is shared by every read
/// transaction of that snapshot, across threads.
protocol VectorIndexView: AnyObject, Sendable {
    /// The best `k` rows for each of `count` queries (stored form, `dimension` floats each, one after
    /// another), restricted to `mask` (nil: every row is live and allowed). Scores are higher-is-closer
    /// (negated squared distance under l2, the inner product otherwise). `options` carries the search's
    /// knobs (`ef` for HNSW); `threads` is how many cores the batch may use.
    func search(queries: UnsafePointer<Float>, count: Int, k: Int, mask: CandidateMask?, options: SearchOptions,
                threads: Int) -> [TopK]
    /// Whether `search` returns exact float32 scores (computed as `VectorCollection.resolve` would),
    /// so results take them instead of computing them again.
    var scoresAreExact: Bool { get }
    /// Whether a filter matching `matches` of `live` rows is better answered by exact search over the
    /// matches than by this index under the filter's mask.
    func prefersExact(matches: Int, live: Int, k: Int, options: SearchOptions) -> Bool
    /// Whether the index answers "each row's nearest rows" for `nearDuplicates` (else it is exact).
    var answersNeighbourQueries: Bool { get }
    /// binary16 copies of every row of the collection, each the round-to-nearest conversion of the
    /// stored float32 row, when the index keeps them (exact scans then read them first), else nil.
    var halfCopies: HalfCopies? { get }
}

extension VectorIndexKind {
    /// One configuration: the default parameters.
    static var testParameters: [IndexKind] { [defaultParameters] }
    /// Rows the index does not cover yet (HNSW's unlinked tail, Spec/HNSW.md §4.1); other kinds cover
    /// every row after each batch.
    static func unindexedRows(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord) throws -> Int { 0 }
}

extension VectorIndexView {
    /// Every approximate index answers neighbour queries unless it says otherwise.
    var answersNeighbourQueries: Bool { true }
    /// No binary16 copies unless the index says otherwise.
    var halfCopies: HalfCopies? { nil }
}

/// How much of an index `indexStats` reads.
public enum IndexStatsDepth: Sendable {
    /// Headers and counters only, a cost independent of the collection's size: what `vecstore stats`
    /// shows for every collection.
    case summary
    /// Also the figures that walk the whole index (an HNSW graph's unreachable live rows): `index show`.
    case full
}

/// What `VectorIndexKind.stats` reports: the kind and its figures as ordered key/value lines.
public struct IndexStats: Sendable, Equatable {
    /// One figure.
    public struct Line: Sendable, Equatable {
        /// Name of the figure ("M", "nodes", "lists").
        public var key: String
        /// Its value as printed.
        public var value: String
        /// Creates a line.
        public init(_ key: String, _ value: String) {
            self.key = key
            self.value = value
        }
    }
    /// The kind's name ("flat", "hnsw", …).
    public var kind: String
    /// Its parameters and sizes, in print order.
    public var lines: [Line]
    /// Creates stats.
    public init(kind: String, lines: [Line]) {
        self.kind = kind
        self.lines = lines
    }
}

/// The old side of a compaction, for `VectorIndexKind.remap`.
struct IndexRemapSource {
    /// A read of the old store (the compaction's transaction on it).
    let txn: Transaction
    /// The old store's handles.
    let dbs: Databases
    /// The collection's record in the old store.
    let record: CollectionRecord
    /// New row of each old row (`newRow[old]`), or `IndexRemapSource.gone` for a row that was deleted.
    let newRow: [UInt32]
    /// Marks a dropped row in `newRow`.
    static let gone = UInt32.max
}

/// What `remap` did.
enum IndexRemapOutcome: Equatable {
    /// The index now covers the new rows.
    case remapped
    /// The kind cannot renumber; nothing was written and the caller rebuilds the index.
    case rebuild
}

/// Every index kind this build implements. Adding a kind is one line here.
enum IndexRegistry {
    /// The registered kinds, in the order a collection's meta records are probed. Immutable metatypes of
    /// stateless types, so sharing them across threads is safe (existential metatypes are not `Sendable`).
    nonisolated(unsafe) static let kinds: [any VectorIndexKind.Type] = [HNSWIndex.self, IVFIndexKind.self]

    /// The kind that `parameters` describe, or nil for `.flat` (no index).
    static func kind(for parameters: IndexKind) -> (any VectorIndexKind.Type)? {
        kinds.first { $0.accepts(parameters) }
    }

    /// The kind named `name`, or nil.
    static func kind(named name: String) -> (any VectorIndexKind.Type)? {
        kinds.first { $0.name == name }
    }

    /// The index the collection has, with its parameters, or nil when it is flat.
    static func find(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord) throws
        -> (kind: any VectorIndexKind.Type, parameters: IndexKind)?
    {
        for kind in kinds {
            if let p = try kind.load(txn, dbs, record) { return (kind, p) }
        }
        return nil
    }

    /// Parameters of every kind a collection can have, flat first: the contract tests run over these.
    static var allDefaults: [IndexKind] { [.flat] + kinds.flatMap { $0.testParameters } }
}

extension IndexStats {
    /// One line for tables: the kind and its first figures ("hnsw M=16 efConstruction=200 efSearch=64"),
    /// and an HNSW graph's traversal copies when they are not binary16 ("traversal=int8").
    public var summary: String {
        let traversal = lines.first { $0.key == "traversal" }?.value.split(separator: " ").first.map(String.init)
        return ([kind] + lines.prefix(3).map { "\($0.key)=\($0.value)" }
            + (traversal.map { $0 == "f16" ? [] : ["traversal=\($0)"] } ?? [])).joined(separator: " ")
    }

    /// " (N rows unlinked)" when the index has an unlinked tail (Spec/HNSW.md §4.1), else "".
    public var unlinkedNote: String {
        guard let tail = lines.first(where: { $0.key == "unlinked tail" }), tail.value != "0" else { return "" }
        return " (\(tail.value) rows unlinked)"
    }
}
