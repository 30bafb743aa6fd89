import ArgumentParser
import Foundation
import VecStore

/// Keyword and hybrid options of `vecstore query` (BM25, Spec/BM25.md).
struct TextQueryOptions: ParsableArguments {
    @Option(help: "Text query. With --vector or --id: hybrid search. Alone: hybrid search (BM25 + the embedded text) on a collection with an embedder (import --embed), else BM25.")
    var text: String?

    @Flag(help: "--text alone: BM25 keyword search only, even on a collection with an embedder.")
    var keywordOnly = false

    @Flag(help: "--text alone: search by meaning only (the embedded text, no BM25); needs a collection with an embedder.")
    var semanticOnly = false

    @Option(help: "Hybrid: weight of the vector side in weighted fusion (0 = BM25 only, 1 = vector only; default \(Fusion.defaultAlpha)).")
    var alpha: Float?

    @Flag(help: "Hybrid: fuse by reciprocal rank instead of weighted normalised scores.")
    var rrf = false

    @Option(help: "Hybrid: the k constant of reciprocal rank fusion.")
    var rrfK = 60

    @Option(help: "Hybrid: candidates taken from each side before fusing.")
    var candidates = 100

    var fusion: Fusion { rrf ? .rrf(k: rrfK) : .weighted(alpha: alpha ?? Fusion.defaultAlpha) }

    func validate(hasVectorQuery: Bool, hasQueryFile: Bool) throws {
        if text != nil && hasQueryFile { throw ValidationError("--text does not go with --queries") }
        if keywordOnly && semanticOnly { throw ValidationError("give --keyword-only or --semantic-only, not both") }
        if (keywordOnly || semanticOnly) && (text == nil || hasVectorQuery) {
            throw ValidationError("--keyword-only and --semantic-only go with --text alone (no --vector or --id)")
        }
        if (keywordOnly || semanticOnly) && (alpha != nil || rrf) {
            throw ValidationError("--alpha and --rrf choose the fusion of hybrid search; not with --keyword-only or --semantic-only")
        }
        if text == nil && (alpha != nil || rrf) { throw ValidationError("--alpha and --rrf need --text with --vector or --id") }
        if alpha != nil && rrf { throw ValidationError("give --alpha or --rrf, not both") }
        if let alpha, !(0...1).contains(alpha) { throw ValidationError("--alpha must be between 0 and 1") }
        if !(1...VectorCollection.maxK).contains(candidates) {
            throw ValidationError("--candidates must be in 1...\(VectorCollection.maxK)")
        }
        if rrfK < 0 { throw ValidationError("--rrf-k must be at least 0") }
    }

    /// Runs the keyword, semantic or hybrid search, or returns nil when no --text was given.
    func run(_ collection: VectorCollection, vector: [Float]?, excluding id: String?, k: Int, filter: Filter?,
             options: SearchOptions = SearchOptions()) throws -> [SearchResult]? {
        guard let text else { return nil }
        // Texts (for the table) come from each search's own read transaction, like `options.includeText`.
        let textOptions = TextSearchOptions(includeText: options.includeText)
        guard let vector else {
            if keywordOnly { return try collection.searchText(text, k: k, filter: filter, options: textOptions) }
            if semanticOnly { return try collection.search(text: text, k: k, filter: filter, options: options) }
            guard try collection.embedderInfo() != nil else {
                return try collection.searchText(text, k: k, filter: filter, options: textOptions)
            }
            return try collection.hybridSearch(text: text, k: k, fusion: fusion, candidates: candidates, filter: filter,
                                               textOptions: textOptions)
        }
        let extra = id == nil ? 0 : 1
        let hits = try collection.hybridSearch(text: text, vector: vector, k: k + extra, fusion: fusion,
                                               candidates: candidates, filter: filter, textOptions: textOptions)
        return Array(hits.filter { $0.id != id }.prefix(k))
    }
}

/// Keyword-index options of `vecstore import` (Spec/BM25.md §7).
struct ImportTextOptions: ParsableArguments {
    @Option(help: "Stemmer of the keyword index: a Snowball algorithm (english, porter, german, …) or none.")
    var stemmer: String?

    @Flag(inversion: .prefixedNo, help: "Drop English stop words in the keyword index.")
    var stopWords: Bool?

    @Flag(help: "Do not index text for keyword search.")
    var noTextIndex = false

    /// The options to apply, starting from the collection's current ones; nil when no flag was given.
    func options(_ store: VecStore, collection: String) throws -> TextIndexOptions? {
        guard stemmer != nil || stopWords != nil || noTextIndex else { return nil }
        // A new collection starts from the defaults; any other failure (a damaged record) is reported.
        var options = TextIndexOptions()
        if try store.collectionNames().contains(collection) {
            options = try store.collection(collection).textIndexOptions()
        }
        if let stemmer { options.analyzer.stemmer = stemmer == "none" ? nil : stemmer }
        if let stopWords { options.analyzer.stopWords = stopWords }
        if noTextIndex { options.enabled = false }
        return options
    }
}
