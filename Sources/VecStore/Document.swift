import VecStoreIO
import VecStoreKernels

/// A stored document: an external id, a vector, optional text and optional metadata.
public struct Document: Sendable, Equatable {
    /// The external id (UTF-8, 1 to 500 bytes), unique within a collection.
    public var id: String
    /// The vector. Under the cosine metric the store keeps it unit-normalised plus its norm, and
    /// returns it rescaled, so values round-trip up to float rounding.
    public var vector: [Float]
    /// Optional text.
    public var text: String?
    /// Metadata: strings, numbers, booleans and arrays of those.
    public var metadata: [String: JSONValue]

    /// Creates a document.
    public init(id: String, vector: [Float], text: String? = nil, metadata: [String: JSONValue] = [:]) {
        self.id = id
        self.vector = vector
        self.text = text
        self.metadata = metadata
    }
}

/// One search hit.
public struct SearchResult: Sendable, Equatable {
    /// External id of the document.
    public var id: String
    /// Cosine similarity, inner product, or squared Euclidean distance, by the collection's metric.
    public var score: Float
    /// The store's internal row number (changes on compaction).
    public var internalID: UInt32
    /// The document's text, when the search was asked for it (`SearchOptions.includeText`) and it has one.
    public var text: String?

    /// Creates a result.
    public init(id: String, score: Float, internalID: UInt32, text: String? = nil) {
        self.id = id
        self.score = score
        self.internalID = internalID
        self.text = text
    }
}

/// Options of a search.
public struct SearchOptions: Sendable {
    /// Worker threads: for one query the stored blocks are split among them; for a batch, the queries.
    public var threads: Int
    /// HNSW beam width for this search (default: the collection's efSearch). Larger is slower and more
    /// exact; it is raised to `k` when smaller. A graph search under a filter widens it by selectivity,
    /// `ef · (1 + ¼·log2(rows/matches))`, so the same `ef` gives about the same recall with or without a
    /// filter (Spec/HNSW.md §5.2).
    public var ef: Int?
    /// Search exactly even when the collection has an HNSW index (exact search is the ground truth).
    public var exact: Bool
    /// How an HNSW collection answers a filtered search (see `FilterStrategy`).
    public var filterStrategy: FilterStrategy
    /// Also return each result's text (read in the search's own snapshot).
    public var includeText = false
    /// IVF lists probed for this search (default: the index's nprobe); capped at the index's nlist.
    public var nprobe: Int?
    /// IVF-PQ re-ranking factor for this search: the best `refine × k` candidates by ADC score are re-scored
    /// with the float32 vectors (default: the index's refine; 0 keeps ADC order). Reported scores are exact.
    public var refine: Int?
    /// Fields the search's filter pins to one value (set by the planner from the filter; an HNSW graph
    /// with filter links on one of them searches through those links, Spec/HNSW.md §7.4).
    var pinnedFields: [String] = []
    /// Creates options; `threads` defaults to 1 for single queries.
    public init(threads: Int = 1, ef: Int? = nil, exact: Bool = false, filterStrategy: FilterStrategy = .automatic,
                includeText: Bool = false, nprobe: Int? = nil, refine: Int? = nil) {
        self.includeText = includeText
        self.nprobe = nprobe.map { max(1, $0) }
        self.refine = refine.map { max(0, $0) }
        self.threads = max(1, threads)
        self.ef = ef.map { max(1, $0) }
        self.exact = exact
        self.filterStrategy = filterStrategy
    }
}

/// The shape and size of a collection.
public struct CollectionInfo: Sendable, Equatable {
    /// Collection name.
    public var name: String
    /// Vector dimension.
    public var dimension: Int
    /// Distance metric.
    public var metric: Metric
    /// Live documents.
    public var count: Int
    /// Rows allocated, including deleted ones awaiting compaction.
    public var rows: Int
    /// Deleted documents whose rows remain until compaction.
    public var tombstones: Int { rows - count }
    /// Rows per vector block.
    public var blockCapacity: Int
    /// Ids held in each run level of the id index, level 0 first (Spec/FORMAT.md §8.2); empty when the
    /// base holds them all.
    public var idRuns: [Int] = []
}
