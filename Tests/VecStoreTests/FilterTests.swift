import Foundation
import PropertyBased
import Testing
@testable import VecStore

/// The documented filter semantics, evaluated directly on metadata: a condition on an array field holds
/// when it holds for any element; `notEquals`/`notIn`/`not` also match documents without the field.
func referenceMatches(_ filter: Filter, _ metadata: [String: JSONValue]) -> Bool {
    switch filter {
    case .and(let parts): return parts.allSatisfy { referenceMatches($0, metadata) }
    case .or(let parts): return parts.contains { referenceMatches($0, metadata) }
    case .not(let inner): return !referenceMatches(inner, metadata)
    case .field(let name, let condition):
        guard let value = metadata[name] else {
            switch condition {
            case .notEquals, .notIn: return true
            default: return false
            }
        }
        let items: [JSONValue]
        if case .array(let a) = value { items = a } else { items = [value] }
        func number(_ v: JSONValue) -> Double? { if case .number(let x) = v { x } else { nil } }
        switch condition {
        case .equals(let v): return items.contains(v)
        case .notEquals(let v): return !items.contains(v)
        case .in(let vs): return items.contains { vs.contains($0) }
        case .notIn(let vs): return !items.contains { vs.contains($0) }
        case .greaterThan(let x): return items.contains { number($0).map { $0 > x } ?? false }
        case .greaterThanOrEqual(let x): return items.contains { number($0).map { $0 >= x } ?? false }
        case .lessThan(let x): return items.contains { number($0).map { $0 < x } ?? false }
        case .lessThanOrEqual(let x): return items.contains { number($0).map { $0 <= x } ?? false }
        case .exists: return true
        }
    }
}

@Suite("Metadata filters")
struct FilterTests {
    static let filters: [Filter] = [
        .field("category", .equals("tech")),
        .field("category", .equals("Ünïcode ✓")),
        .field("category", .notEquals("tech")),
        .field("category", .in(["art", "science"])),
        .field("category", .notIn(["art", "science"])),
        .field("year", .greaterThan(2020)),
        .field("year", .greaterThanOrEqual(2020)),
        .field("year", .lessThan(2005)),
        .field("year", .lessThanOrEqual(2005)),
        .field("score", .greaterThan(-0.5)),
        .field("score", .lessThan(0)),
        .field("year", .exists),
        .not(.field("year", .exists)),
        .field("flag", .equals(true)),
        .field("flag", .equals(false)),
        .field("tags", .equals("a")),
        .field("tags", .in(["b", "d"])),
        .and([.field("category", .equals("tech")), .field("year", .greaterThan(2015))]),
        .or([.field("category", .equals("art")), .field("flag", .equals(true))]),
        .not(.and([.field("tags", .equals("c")), .field("score", .greaterThanOrEqual(1))])),
        .field("absent", .equals(1)),
        .field("year", .equals(2024)),
    ]

    @Test("filtered search equals brute force over the matching documents", arguments: filters)
    func filteredSearch(filter: Filter) throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("s.vecstore"))
        var docs = makeDocuments(800, dimension: 16, seed: 21)
        let coll = try store.collection("c", dimension: 16, metric: .cosine)
        try coll.add(docs)
        // Tombstones and replacements must be honoured by filters too.
        try coll.delete(ids: (0..<50).map { "doc-\($0 * 2)" })
        docs.removeAll { d in (0..<50).contains { "doc-\($0 * 2)" == d.id } }
        let matching = docs.filter { referenceMatches(filter, $0.metadata) }
        var rng = SeededRandom(seed: 8)
        let q = rng.vector(16)
        let results = try coll.search(q, k: 15, filter: filter)
        expectMatches(results, bruteForce(matching, q, k: 15, metric: .cosine))
        let batch = try coll.searchBatch(Array(repeating: q, count: 25), k: 15, filter: filter)
        #expect(batch[24].map(\.id) == results.map(\.id))
    }

    @Test("JSON filter syntax parses to the same filters")
    func jsonSyntax() throws {
        #expect(try Filter(json: #"{"category": "tech"}"#) == .field("category", .equals("tech")))
        #expect(try Filter(json: #"{"year": {"$gt": 2020}}"#) == .field("year", .greaterThan(2020)))
        #expect(try Filter(json: #"{"year": {"$gte": 2000, "$lt": 2010}}"#)
                == .and([.field("year", .greaterThanOrEqual(2000)), .field("year", .lessThan(2010))]))
        #expect(try Filter(json: #"{"$or": [{"a": 1}, {"b": {"$in": ["x", "y"]}}]}"#)
                == .or([.field("a", .equals(1)), .field("b", .in(["x", "y"]))]))
        #expect(try Filter(json: #"{"$not": {"a": {"$ne": true}}}"#) == .not(.field("a", .notEquals(true))))
        #expect(try Filter(json: #"{"a": {"$exists": false}}"#) == .not(.field("a", .exists)))
        for bad in [#"[1]"#, #"{"a": {"$gt": "x"}}"#, #"{"$nope": 1}"#, #"{"a": {"$in": 3}}"#, #"{"a": {}}"#,
                    #"{"a": [1, 2]}"#, #"{"a": "#, #"{"a": {"$exists": 1}}"#] {
            #expect(throws: VecStoreError.self, "filter \(bad) should be rejected") { try Filter(json: bad) }
        }
    }

    @Test("long strings (beyond the index key limit) still filter exactly")
    func longStrings() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("s.vecstore"))
        let coll = try store.collection("c", dimension: 2, metric: .l2)
        let prefix = String(repeating: "p", count: 600)
        try coll.add([
            Document(id: "a", vector: [0, 0], metadata: ["s": .string(prefix + "A")]),
            Document(id: "b", vector: [0, 1], metadata: ["s": .string(prefix + "B")]),
        ])
        #expect(try coll.search([0, 0], k: 5, filter: .field("s", .equals(.string(prefix + "B")))).map(\.id) == ["b"])
        #expect(try coll.search([0, 0], k: 5, filter: .field("s", .notEquals(.string(prefix + "B")))).map(\.id) == ["a"])
    }

    @Test("order-preserving number keys: a < b exactly when key(a) < key(b)")
    func numberKeyOrder() async {
        await propertyCheck(input: Gen.double(in: -1e300...1e300), Gen.double(in: -1e6...1e6)) { a, b in
            let ka = FieldKey.encodeNumber(a), kb = FieldKey.encodeNumber(b)
            #expect((a < b) == (ka < kb))
            #expect(FieldKey.decodeNumber(ka) == a)
        }
        #expect(FieldKey.encodeNumber(-0.0) == FieldKey.encodeNumber(0.0)
                || FieldKey.decodeNumber(FieldKey.encodeNumber(-0.0)) == 0)
        #expect(FieldKey.encodeNumber(-.infinity) < FieldKey.encodeNumber(-1e308))
        #expect(FieldKey.encodeNumber(.infinity) > FieldKey.encodeNumber(1e308))
    }
}
