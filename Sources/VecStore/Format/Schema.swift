import LMDB

/// Every named database of a store, with its flags and the part of vecstore that owns it: the one
/// table that opening, dropping a collection, `stats` and `verify`'s ownership check walk. An index
/// kind adds one line per database it owns (and its meta key prefix to `metaPrefixes`); nothing else
/// lists databases by position.
enum Schema {
    /// One named database.
    struct Entry: Sendable {
        /// LMDB name.
        let name: String
        /// Open flags (Spec/FORMAT.md §3).
        let flags: DatabaseFlags
        /// What keeps it: "store" (the base format) or an index kind ("hnsw", "bm25").
        let owner: String
        /// Every key begins with `BE32(collection id)` (dropped with the collection, checked by verify).
        let perCollection: Bool
    }

    /// The databases, in the order they are opened.
    static let databases: [Entry] = [
        Entry(name: Format.DB.meta, flags: [], owner: "store", perCollection: false),
        Entry(name: Format.DB.vectors, flags: [], owner: "store", perCollection: true),
        Entry(name: Format.DB.docs, flags: [], owner: "store", perCollection: true),
        Entry(name: Format.DB.ids, flags: [], owner: "store", perCollection: true),
        Entry(name: Format.DB.live, flags: [], owner: "store", perCollection: true),
        Entry(name: Format.DB.fields, flags: [.dupSort, .dupFixed], owner: "store", perCollection: true),
        // Spec/HNSW.md
        Entry(name: Format.DB.graph, flags: [], owner: "hnsw", perCollection: true),
        Entry(name: Format.DB.graphUpper, flags: [], owner: "hnsw", perCollection: true),
        Entry(name: Format.DB.graphVectors, flags: [], owner: "hnsw", perCollection: true),
        // Spec/BM25.md
        Entry(name: TextFormat.DB.textinfo, flags: [], owner: "bm25", perCollection: true),
        Entry(name: TextFormat.DB.terms, flags: [], owner: "bm25", perCollection: true),
        Entry(name: TextFormat.DB.postings, flags: [], owner: "bm25", perCollection: true),
        Entry(name: TextFormat.DB.doclens, flags: [], owner: "bm25", perCollection: true),
        // Spec/IVF.md
        Entry(name: IVFFormat.DB.ivf, flags: [], owner: "ivf", perCollection: true),
        Entry(name: IVFFormat.DB.lists, flags: [], owner: "ivf", perCollection: true),
    ]

    /// Per-collection meta records `<prefix>BE32(cid)` and their owners; each is deleted with its
    /// collection.
    static let metaPrefixes: [(prefix: [UInt8], owner: String)] = [
        (HNSWConfig.keyPrefix, "hnsw"),
        (ProjectionRecord.keyPrefix, "pca"),
        (EmbedderInfo.keyPrefix, "embed"),
        (IVFFormat.keyPrefix, "ivf"),
    ]
}

/// The handles of a store's named databases, opened from `Schema.databases`.
struct Databases: Sendable {
    /// Every handle, in `Schema.databases` order.
    let all: [Database]
    let meta, vectors, docs, ids, live, fields: Database
    /// HNSW layer-0 blocks and upper levels (Spec/HNSW.md).
    let graph, graphUpper, graphVectors: Database
    /// Keyword index (Spec/BM25.md).
    let textinfo, terms, postings, doclens: Database

    /// Names each handle from the schema; `handles` are in `Schema.databases` order.
    init(_ handles: [Database]) {
        all = handles
        var byName: [String: Database] = [:]
        for (entry, handle) in zip(Schema.databases, handles) { byName[entry.name] = handle }
        func h(_ name: String) -> Database { byName[name] ?? handles[0] }
        meta = h(Format.DB.meta)
        vectors = h(Format.DB.vectors)
        docs = h(Format.DB.docs)
        ids = h(Format.DB.ids)
        live = h(Format.DB.live)
        fields = h(Format.DB.fields)
        graph = h(Format.DB.graph)
        graphUpper = h(Format.DB.graphUpper)
        graphVectors = h(Format.DB.graphVectors)
        textinfo = h(TextFormat.DB.textinfo)
        terms = h(TextFormat.DB.terms)
        postings = h(TextFormat.DB.postings)
        doclens = h(TextFormat.DB.doclens)
    }

    /// Databases whose keys all begin with a collection id.
    var perCollection: [Database] {
        zip(Schema.databases, all).filter { $0.0.perCollection }.map(\.1)
    }
}
