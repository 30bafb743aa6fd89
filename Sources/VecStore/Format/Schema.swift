import LMDB

/// Every named database of a store, with its flags and the part of vecstore that owns it: the one
/// table that opening, dropping a collection, `stats` and `verify`'s ownership check walk. The base
/// format's databases are listed here; each vector index kind contributes its own (and its meta key
/// prefix) through `IndexRegistry.kinds`, so adding a kind adds no line here. Nothing else lists
/// databases by position.
enum Schema {
    /// One named database.
    struct Entry: Sendable {
        /// LMDB name.
        let name: String
        /// Open flags (Spec/FORMAT.md §3).
        let flags: DatabaseFlags
        /// What keeps it: "store" (the base format), an index kind ("hnsw", "ivf") or "bm25".
        let owner: String
        /// Every key begins with `BE32(collection id)` (dropped with the collection, checked by verify).
        let perCollection: Bool
        /// Whether stores may lack it: databases of an index kind that declares a feature are created
        /// by the first writable open of a build that knows the kind, so a read-only open of an older
        /// store goes on without them.
        var optional = false
    }

    /// The base format's databases.
    static let base: [Entry] = [
        Entry(name: Format.DB.meta, flags: [], owner: "store", perCollection: false),
        Entry(name: Format.DB.vectors, flags: [], owner: "store", perCollection: true),
        Entry(name: Format.DB.docs, flags: [], owner: "store", perCollection: true),
        Entry(name: Format.DB.ids, flags: [], owner: "store", perCollection: true),
        // Created by the first writable open of a build that knows it (feature `idruns`).
        Entry(name: Format.DB.idruns, flags: [], owner: "store", perCollection: true, optional: true),
        Entry(name: Format.DB.live, flags: [], owner: "store", perCollection: true),
        Entry(name: Format.DB.fields, flags: [.dupSort, .dupFixed], owner: "store", perCollection: true),
    ]

    /// The keyword index's databases (Spec/BM25.md).
    static let text: [Entry] = [
        Entry(name: TextFormat.DB.textinfo, flags: [], owner: "bm25", perCollection: true),
        Entry(name: TextFormat.DB.terms, flags: [], owner: "bm25", perCollection: true),
        Entry(name: TextFormat.DB.postings, flags: [], owner: "bm25", perCollection: true),
        Entry(name: TextFormat.DB.doclens, flags: [], owner: "bm25", perCollection: true),
    ]

    /// The databases, in the order they are opened: the base format, each index kind's, the keyword
    /// index's.
    static let databases: [Entry] = base
        + IndexRegistry.kinds.flatMap { kind in
            kind.databases.map { e in
                var e = e
                e.optional = kind.feature != nil
                return e
            }
        }
        + [HNSWFilterLinks.schemaEntry]
        + text

    /// Per-collection meta records `<prefix>BE32(cid)` and their owners; each is deleted with its
    /// collection.
    static let metaPrefixes: [(prefix: [UInt8], owner: String)] =
        IndexRegistry.kinds.map { ($0.metaPrefix, $0.name) } + [
            (ProjectionRecord.keyPrefix, "pca"),
            (EmbedderInfo.keyPrefix, "embed"),
            (IDIndex.recordPrefix, "store"),
            (HNSWFilterLinks.keyPrefix, "hnsw"),
        ]
}

/// The handles of a store's named databases, opened from `Schema.databases`. The base format's and the
/// keyword index's are fields; an index kind finds its own by name (`handle(_:)`).
struct Databases: Sendable {
    /// Every opened handle with its schema entry, in `Schema.databases` order (an optional database the
    /// store lacks is absent).
    let opened: [(entry: Schema.Entry, handle: Database)]
    let meta, vectors, docs, ids, live, fields: Database
    /// Keyword index (Spec/BM25.md).
    let textinfo, terms, postings, doclens: Database
    private let byName: [String: Database]

    /// Every handle, in `Schema.databases` order.
    var all: [Database] { opened.map(\.handle) }

    /// Names each handle from the schema. Every non-optional entry must be among `opened`.
    init(_ opened: [(entry: Schema.Entry, handle: Database)]) throws(VecStoreError) {
        self.opened = opened
        var byName: [String: Database] = [:]
        for (entry, handle) in opened { byName[entry.name] = handle }
        self.byName = byName
        func h(_ name: String) throws(VecStoreError) -> Database {
            guard let d = byName[name] else { throw .corrupt("database '\(name)' is missing") }
            return d
        }
        meta = try h(Format.DB.meta)
        vectors = try h(Format.DB.vectors)
        docs = try h(Format.DB.docs)
        ids = try h(Format.DB.ids)
        live = try h(Format.DB.live)
        fields = try h(Format.DB.fields)
        textinfo = try h(TextFormat.DB.textinfo)
        terms = try h(TextFormat.DB.terms)
        postings = try h(TextFormat.DB.postings)
        doclens = try h(TextFormat.DB.doclens)
    }

    /// The handle of database `name`, or nil when the store does not have it (an optional database
    /// opened read-only in an older store).
    func handle(_ name: String) -> Database? { byName[name] }

    /// The handle of a database an index kind owns; throws `corrupt` naming it when absent (a store
    /// whose collection has an index of the kind always has its databases).
    func required(_ name: String) throws(VecStoreError) -> Database {
        guard let d = byName[name] else { throw .corrupt("database '\(name)' is missing") }
        return d
    }

    /// Databases whose keys all begin with a collection id.
    var perCollection: [Database] { opened.filter { $0.entry.perCollection }.map(\.handle) }
}
