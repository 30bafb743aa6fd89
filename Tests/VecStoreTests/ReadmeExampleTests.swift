import Foundation
import Testing
import VecStore

/// The embedding example in README.md, compiled and run. The test also checks that the README shows
/// exactly this code, so the documentation cannot drift from what compiles.
@Suite("README example")
struct ReadmeExampleTests {
    @Test("the README's library example compiles, runs and prints what it claims")
    func example() throws {
        var printed: [String] = []
        func print(_ items: Any...) { printed.append(items.map { "\($0)" }.joined(separator: " ")) }
        // BEGIN README EXAMPLE
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("notes.vecstore")
        let store = try VecStore(at: url)
        let notes = try store.collection("notes", dimension: 3, metric: .cosine)
        try notes.upsert([
            Document(id: "a", vector: [0.9, 0.1, 0.0], text: "LMDB is a B-tree", metadata: ["year": 2024, "tags": ["db"]]),
            Document(id: "b", vector: [0.1, 0.9, 0.0], text: "Risotto needs stock", metadata: ["year": 2019]),
            Document(id: "c", vector: [0.7, 0.2, 0.3], text: "HNSW is a graph", metadata: ["year": 2025, "tags": ["db", "ann"]]),
        ])
        let hits = try notes.search([1, 0, 0], k: 2, filter: .field("year", .greaterThan(2020)))
        for hit in hits { print(hit.id, hit.score) }  // a 0.99388, then c 0.88900
        let tagged = try notes.search([1, 0, 0], k: 5, filter: try Filter(json: #"{"tags": "ann"}"#))
        print(tagged.map(\.id))  // ["c"]
        try notes.delete(ids: ["a"])
        print(try notes.count())  // 2
        // END README EXAMPLE
        #expect(printed.count == 4)
        #expect(printed[0].hasPrefix("a 0.9938"))
        #expect(printed[1].hasPrefix("c 0.889"))
        #expect(printed[2] == #"["c"]"#)
        #expect(printed[3] == "2")
        try? FileManager.default.removeItem(at: url)
        try? FileManager.default.removeItem(atPath: url.path + "-lock")

        let source = try String(contentsOf: URL(fileURLWithPath: #filePath), encoding: .utf8)
        let readme = try String(contentsOf: packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let body = source.components(separatedBy: "// BEGIN README EXAMPLE\n")[1]
            .components(separatedBy: "        // END README EXAMPLE")[0]
        let dedented = body.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.hasPrefix("        ") ? String($0.dropFirst(8)) : String($0) }.joined(separator: "\n")
        #expect(readme.contains("import VecStore\n\n" + dedented), "README.md must show the example exactly as tested")
    }
}
