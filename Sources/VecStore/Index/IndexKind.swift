/// Which vector index a collection has, with its parameters: `.flat` (none, exact search) or one of
/// the kinds in `IndexRegistry.kinds`. A new kind adds its case here and its type to the registry.
public enum IndexKind: Sendable, Equatable {
    /// Exact search over every stored vector; no index is kept.
    case flat
    /// An HNSW graph kept up to date by every write; searches are approximate unless
    /// `SearchOptions.exact` is set.
    case hnsw(HNSWParameters)

    /// HNSW with default parameters (M=16, efConstruction=200, efSearch=64).
    public static var hnswDefault: IndexKind { .hnsw(HNSWParameters()) }

    /// The kind's name: "flat", or the registered kind's `name` ("hnsw", …).
    public var name: String { IndexRegistry.kind(for: self)?.name ?? "flat" }
}
