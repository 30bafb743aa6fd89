import Foundation
import Testing
import VecStoreIO
@testable import VecStoreEmbed

/// `../shared/data/minilm-reference` beside the checkout: 518 texts with sentence-transformers' input ids
/// (texts.jsonl) and embeddings (embeddings.fvecs).
let referenceDirectory: String = {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    return root.deletingLastPathComponent().appendingPathComponent("shared/data/minilm-reference").path
}()

let haveReference = FileManager.default.fileExists(atPath: referenceDirectory + "/texts.jsonl")
let haveModel = (try? EmbeddingModels.locate(EmbeddingModels.miniLM.name)) != nil
let modelMissing = "all-minilm-l6-v2 is not installed in \(EmbeddingModels.directory) (bash Tools/install-deps --model)"

/// The installed model, loaded once for all tests.
let sharedEmbedder: Embedder? = try? Embedder()

struct ReferenceText {
    var text: String
    var ids: [Int32]
}

func loadReference() throws -> (texts: [ReferenceText], embeddings: [[Float]]) {
    var texts: [ReferenceText] = []
    let data = try #require(FileManager.default.contents(atPath: referenceDirectory + "/texts.jsonl"))
    for line in data.split(separator: UInt8(ascii: "\n")) where !line.isEmpty {
        guard case .object(let o) = try JSONValue.parse([UInt8](line)), case .string(let text)? = o["text"],
              case .array(let ids)? = o["input_ids"]
        else { throw EmbedError.invalidArgument("bad reference line") }
        texts.append(ReferenceText(text: text, ids: ids.compactMap { if case .number(let x) = $0 { Int32(x) } else { nil } }))
    }
    var vectors: [[Float]] = []
    var fvecs = try FvecsReader(path: referenceDirectory + "/embeddings.fvecs", format: .fvecs)
    while let r = try fvecs.next() { vectors.append(r.vector) }
    return (texts, vectors)
}

@Suite(.enabled(if: haveReference, "minilm-reference data not found beside the repository"),
       .enabled(if: haveModel, Comment(rawValue: modelMissing)))
struct ParityTests {
    @Test func tokenIDsAreIdenticalForEveryReferenceText() throws {
        let embedder = try #require(sharedEmbedder)
        let (texts, _) = try loadReference()
        #expect(texts.count == 518)
        var mismatches: [String] = []
        for (i, t) in texts.enumerated() {
            let ids = embedder.tokenize(t.text)
            if ids != t.ids {
                mismatches.append("text \(i) \(String(t.text.prefix(60)).debugDescription): got \(ids.prefix(20))…, expected \(t.ids.prefix(20))…")
            }
        }
        #expect(mismatches.isEmpty, Comment(rawValue: "\(mismatches.count) texts differ:\n" + mismatches.prefix(10).joined(separator: "\n")))
    }

    @Test func embeddingsMatchTheReferenceForEveryText() throws {
        let embedder = try #require(sharedEmbedder)
        let (texts, reference) = try loadReference()
        let started = Date()
        let vectors = try embedder.embed(texts.map(\.text))
        let seconds = Date().timeIntervalSince(started)
        var worst = (cosine: Float(2), index: -1)
        for (i, (v, r)) in zip(vectors, reference).enumerated() {
            #expect(v.count == 384)
            var dot: Float = 0, nv: Float = 0, nr: Float = 0
            for j in 0..<v.count { dot += v[j] * r[j]; nv += v[j] * v[j]; nr += r[j] * r[j] }
            let cosine = dot / (nv.squareRoot() * nr.squareRoot())
            if cosine < worst.cosine { worst = (cosine, i) }
        }
        print("minilm parity: \(texts.count) texts in \(String(format: "%.1f", seconds)) s, minimum cosine \(worst.cosine) (text \(worst.index))")
        #expect(worst.cosine >= 0.9999, "text \(worst.index) has cosine \(worst.cosine)")
    }

    @Test func batchingDoesNotChangeTheResult() throws {
        let embedder = try #require(sharedEmbedder)
        let texts = ["", "a short one", String(repeating: "longer text with more words ", count: 20), "Straße über Ärger"]
        let together = try embedder.embed(texts, batchSize: 4, threads: 2)
        for (i, text) in texts.enumerated() {
            let alone = try embedder.embed([text], batchSize: 1, threads: 1)[0]
            let dot = zip(alone, together[i]).reduce(Float(0)) { $0 + $1.0 * $1.1 }
            #expect(dot > 0.99999, "text \(i): cosine \(dot) between batched and single")
        }
    }

    @Test func overLongTextIsTruncatedTo256Tokens() throws {
        let embedder = try #require(sharedEmbedder)
        let long = String(repeating: "vector search ", count: 1000)
        let ids = embedder.tokenize(long)
        #expect(ids.count == 256)
        #expect(ids.first == 101 && ids.last == 102)
        let a = try embedder.embed([long])[0]
        let b = try embedder.embed([String(repeating: "vector search ", count: 300)])[0]
        #expect(zip(a, b).reduce(Float(0)) { $0 + $1.0 * $1.1 } > 0.99999)
    }

    @Test func progressReportsEveryText() throws {
        let embedder = try #require(sharedEmbedder)
        final class Box: @unchecked Sendable { var calls: [(Int, Int)] = []; let lock = NSLock() }
        let box = Box()
        _ = try embedder.embed((0..<70).map { "text number \($0)" }, batchSize: 16, threads: 2) { done, total in
            box.lock.lock(); box.calls.append((done, total)); box.lock.unlock()
        }
        #expect(box.calls.count == 5)
        #expect(box.calls.map(\.0).max() == 70)
        #expect(box.calls.allSatisfy { $0.1 == 70 })
    }
}
