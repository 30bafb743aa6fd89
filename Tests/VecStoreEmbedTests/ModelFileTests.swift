import Foundation
import Testing
@testable import VecStoreEmbed

/// A tiny BERT (hidden 8, 2 heads, 1 layer, 10-token vocabulary) written to a temporary folder, so that
/// loading, checking and running a model is tested without the real one.
struct TinyModel {
    static let vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s", ",", "!"]
    let directory: String
    var hidden = 8, heads = 2, intermediate = 16, positions = 16

    init() throws {
        directory = NSTemporaryDirectory() + "tiny-bert-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory + "/1_Pooling", withIntermediateDirectories: true)
        try Self.vocabulary.joined(separator: "\n").appending("\n").write(toFile: directory + "/vocab.txt", atomically: true, encoding: .utf8)
        try #"{"max_seq_length": 8, "do_lower_case": false}"#.write(toFile: directory + "/sentence_bert_config.json", atomically: true, encoding: .utf8)
        try #"{"word_embedding_dimension": 8, "pooling_mode_mean_tokens": true}"#.write(toFile: directory + "/1_Pooling/config.json", atomically: true, encoding: .utf8)
        try writeConfig()
        try writeWeights()
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }

    func writeConfig(hidden: Int? = nil) throws {
        let config = """
            {"model_type": "bert", "hidden_act": "gelu", "hidden_size": \(hidden ?? self.hidden), "num_hidden_layers": 1,
             "num_attention_heads": \(heads), "intermediate_size": \(intermediate), "vocab_size": \(Self.vocabulary.count),
             "max_position_embeddings": \(positions), "layer_norm_eps": 1e-12, "type_vocab_size": 2}
            """
        try config.write(toFile: directory + "/config.json", atomically: true, encoding: .utf8)
    }

    /// The tensors of the tiny model, with deterministic pseudo-random values.
    func tensors() -> [(String, [Int], [Float])] {
        var seed: UInt64 = 7
        func values(_ n: Int, scale: Float = 0.5, offset: Float = 0) -> [Float] {
            (0..<n).map { _ in
                seed = seed &* 6364136223846793005 &+ 1442695040888963407
                return offset + scale * (Float(seed >> 40) / Float(1 << 24) - 0.5)
            }
        }
        let h = hidden, f = intermediate, p = "encoder.layer.0."
        var t: [(String, [Int], [Float])] = [
            ("embeddings.word_embeddings.weight", [Self.vocabulary.count, h], values(Self.vocabulary.count * h)),
            ("embeddings.position_embeddings.weight", [positions, h], values(positions * h)),
            ("embeddings.token_type_embeddings.weight", [2, h], values(2 * h)),
            ("embeddings.LayerNorm.weight", [h], values(h, offset: 1)), ("embeddings.LayerNorm.bias", [h], values(h)),
        ]
        for name in ["query", "key", "value"] {
            t.append((p + "attention.self.\(name).weight", [h, h], values(h * h)))
            t.append((p + "attention.self.\(name).bias", [h], values(h)))
        }
        t += [
            (p + "attention.output.dense.weight", [h, h], values(h * h)), (p + "attention.output.dense.bias", [h], values(h)),
            (p + "attention.output.LayerNorm.weight", [h], values(h, offset: 1)), (p + "attention.output.LayerNorm.bias", [h], values(h)),
            (p + "intermediate.dense.weight", [f, h], values(f * h)), (p + "intermediate.dense.bias", [f], values(f)),
            (p + "output.dense.weight", [h, f], values(h * f)), (p + "output.dense.bias", [h], values(h)),
            (p + "output.LayerNorm.weight", [h], values(h, offset: 1)), (p + "output.LayerNorm.bias", [h], values(h)),
        ]
        return t
    }

    func writeWeights(_ tensors: [(String, [Int], [Float])]? = nil, dtype: String = "F32") throws {
        try Self.writeSafetensors(directory + "/model.safetensors", tensors ?? self.tensors(), dtype: dtype)
    }

    /// Writes a safetensors file: LE64 header length, JSON header (padded to 8 bytes), data.
    static func writeSafetensors(_ path: String, _ tensors: [(String, [Int], [Float])], dtype: String = "F32") throws {
        var header: [String] = [#""__metadata__":{"format":"pt"}"#]
        var data: [UInt8] = []
        for (name, shape, values) in tensors {
            let start = data.count
            values.withUnsafeBytes { data += $0 }
            header.append("\"\(name)\":{\"dtype\":\"\(dtype)\",\"shape\":[\(shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(start),\(data.count)]}")
        }
        var json = Array(("{" + header.joined(separator: ",") + "}").utf8)
        while json.count % 8 != 0 { json.append(0x20) }
        var file: [UInt8] = []
        var length = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &length) { file += $0 }
        try Data(file + json + data).write(to: URL(fileURLWithPath: path))
    }
}

@Suite struct ModelFileTests {
    @Test func aTinyModelLoadsTokenizesAndEmbedsUnitVectors() throws {
        let model = try TinyModel()
        defer { model.remove() }
        let embedder = try Embedder(directory: model.directory, name: "tiny")
        #expect(embedder.dimension == 8)
        #expect(embedder.tokenize("Hello, worlds!") == [2, 5, 8, 6, 7, 9, 3])
        #expect(embedder.tokenize("") == [2, 3])
        #expect(embedder.tokenize(String(repeating: "hello ", count: 20)).count == 8)
        let vectors = try embedder.embed(["Hello, worlds!", "", "hello hello"], batchSize: 2, threads: 2)
        #expect(vectors.count == 3)
        for v in vectors {
            #expect(v.count == 8)
            let norm = v.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
            #expect(abs(norm - 1) < 1e-5)
        }
        let again = try embedder.embed(["Hello, worlds!"], threads: 1)[0]
        #expect(zip(again, vectors[0]).allSatisfy { abs($0 - $1) < 1e-5 })
        #expect(vectors[0] != vectors[1])
        #expect(embedder.checksum.count == 64)
    }

    @Test func theChecksumIsCachedInTheUserCacheWhenTheModelFolderCannotBeWritten() throws {
        let model = try TinyModel()
        defer { model.remove() }
        // A directory where the cache file would go: no process, root included, can write the file there.
        let caches = EmbeddingModels.checksumCacheFiles(directory: model.directory)
        try FileManager.default.createDirectory(atPath: caches[0], withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: caches[1]) }
        let first = try EmbeddingModels.checksum(directory: model.directory)
        let cached = try String(contentsOfFile: caches[1], encoding: .utf8)
        #expect(cached.hasSuffix("\n" + first))
        #expect(try EmbeddingModels.checksum(directory: model.directory) == first)
    }

    @Test func aDamagedOrWrongModelGivesAClearError() throws {
        let model = try TinyModel()
        defer { model.remove() }
        func loadError() -> String {
            do {
                _ = try Embedder(directory: model.directory, name: "tiny")
                return "loaded"
            } catch { return error.description }
        }
        let weights = model.directory + "/model.safetensors"
        let good = try Data(contentsOf: URL(fileURLWithPath: weights))

        // Truncated: the last tensor's data runs past the end of the file.
        // Named as truncation whichever tensor the header happens to list first.
        try good.prefix(good.count - 100).write(to: URL(fileURLWithPath: weights))
        #expect(loadError().contains("truncated: the header declares"))
        // Shorter than the 8-byte header length.
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: weights))
        #expect(loadError().contains("not a safetensors file"))
        // A header length larger than the file.
        try (Data([0xFF, 0xFF, 0, 0, 0, 0, 0, 0]) + good.dropFirst(8)).write(to: URL(fileURLWithPath: weights))
        #expect(loadError().contains("header length"))
        // Garbage where the JSON header should be.
        var garbled = good
        garbled.replaceSubrange(8..<20, with: Array(repeating: UInt8(ascii: "#"), count: 12))
        try garbled.write(to: URL(fileURLWithPath: weights))
        #expect(loadError().contains("damaged safetensors header"))

        // NaN in a weight.
        var tensors = model.tensors()
        tensors[7].2[3] = .nan
        try model.writeWeights(tensors)
        #expect(loadError().contains("NaN"))
        // A missing tensor.
        try model.writeWeights(Array(model.tensors().dropLast()))
        #expect(loadError().contains("is missing"))
        // Another dtype.
        try model.writeWeights(dtype: "F16")
        #expect(loadError().contains("data bytes for shape"))
        // Weights of another shape than config.json says.
        try model.writeWeights()
        try model.writeConfig(hidden: 12)
        #expect(loadError().contains("has shape [10, 8], expected [10, 12]"))
        try model.writeConfig()
        #expect(loadError() == "loaded")
        // A pooling other than the mean.
        try #"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#
            .write(toFile: model.directory + "/1_Pooling/config.json", atomically: true, encoding: .utf8)
        #expect(loadError().contains("mean pooling"))
    }

    @Test func outOfRangeSizesInModelFilesAreErrorsNotTraps() throws {
        let model = try TinyModel()
        defer { model.remove() }
        // A max_seq_length far beyond Int's range is capped by the position table, not converted first.
        try #"{"max_seq_length": 1e300}"#.write(toFile: model.directory + "/sentence_bert_config.json", atomically: true, encoding: .utf8)
        let embedder = try Embedder(directory: model.directory, name: "tiny")
        #expect(embedder.tokenizer.maxTokens == model.positions)
        // A token-type table without rows (the encoder reads its first row for every token).
        var tensors = model.tensors()
        let index = try #require(tensors.firstIndex { $0.0 == "embeddings.token_type_embeddings.weight" })
        tensors[index] = (tensors[index].0, [0, model.hidden], [])
        try model.writeWeights(tensors)
        #expect(throws: EmbedError.self) { try Embedder(directory: model.directory, name: "tiny") }
    }

    @Test func theWordEmbeddingIsReadInPlaceAndStillChecked() throws {
        let model = try TinyModel()
        defer { model.remove() }
        let file = try SafetensorsFile(path: model.directory + "/model.safetensors")
        let shape = [TinyModel.vocabulary.count, model.hidden]
        let mapped = try #require(try file.mappedFloats("embeddings.word_embeddings.weight", shape: shape))
        #expect(Array(mapped) == (try file.floats("embeddings.word_embeddings.weight", shape: shape)))
        #expect(throws: EmbedError.self) { try file.mappedFloats("embeddings.word_embeddings.weight", shape: [1]) }
        // A NaN in the in-place word embedding is found at load like one in a copied tensor.
        var tensors = model.tensors()
        tensors[0].2[5] = .infinity
        try model.writeWeights(tensors)
        #expect(throws: EmbedError.self) { try Embedder(directory: model.directory, name: "tiny") }
    }

    @Test func safetensorsHeaderIsChecked() throws {
        let path = NSTemporaryDirectory() + "st-\(UUID().uuidString).safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try TinyModel.writeSafetensors(path, [("a", [2, 3], [1, 2, 3, 4, 5, 6]), ("b", [1], [7])])
        let file = try SafetensorsFile(path: path)
        #expect(file.tensors.count == 2)
        #expect(file.metadata["format"] == "pt")
        #expect(try file.floats("a", shape: [2, 3]) == [1, 2, 3, 4, 5, 6])
        #expect(throws: EmbedError.self) { try file.floats("a", shape: [3, 2]) }
        #expect(throws: EmbedError.self) { try file.floats("c", shape: [1]) }
        // A byte range that does not match the shape.
        try TinyModel.writeSafetensors(path, [("a", [2, 3], [1, 2, 3, 4, 5])])
        #expect(throws: EmbedError.self) { try SafetensorsFile(path: path) }
        // An unknown dtype.
        try TinyModel.writeSafetensors(path, [("a", [1], [1])], dtype: "F128")
        #expect(throws: EmbedError.self) { try SafetensorsFile(path: path) }
        #expect(throws: EmbedError.self) { try SafetensorsFile(path: path + ".missing") }
    }
}

@Suite struct TokenizerTests {
    let tokenizer: WordPieceTokenizer = {
        let tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s", ",", "!", "cafe", "北", "京",
                      "un", "##aff", "##able", "a"]
        do { return try WordPieceTokenizer(tokens: tokens, maxTokens: 16) } catch { fatalError("\(error)") }
    }()

    func pieces(_ text: String) -> [String] {
        let byID = Dictionary(uniqueKeysWithValues: tokenizer.vocabulary.map { ($0.value, $0.key) })
        return tokenizer.encode(text).dropFirst().dropLast().map { byID[$0] ?? "?" }
    }

    @Test func normalisationMatchesBert() {
        #expect(pieces("HELLO,World!") == ["hello", ",", "world", "!"])
        #expect(pieces("Café") == ["cafe"])                          // accents stripped after NFD
        #expect(pieces("北京") == ["北", "京"])                          // CJK ideographs split
        #expect(pieces("hel\u{0}lo\u{200B}") == ["hello"])            // NUL and format characters dropped
        #expect(pieces("hello\u{00A0}world\tworlds") == ["hello", "world", "world", "##s"])
        #expect(pieces("unaffable") == ["un", "##aff", "##able"])
        #expect(pieces("unknown") == ["[UNK]"])                       // no match for the rest: the whole word
        #expect(pieces(String(repeating: "a", count: 101)) == ["[UNK]"]) // more than 100 scalars
        #expect(pieces("hello [MASK] world[SEP]") == ["hello", "[MASK]", "world", "[SEP]"]) // special tokens kept whole
        #expect(pieces("[mask]") == ["[UNK]", "[UNK]", "[UNK]"])       // only the exact spelling is special
        #expect(pieces("") == [])
    }

    @Test func truncatesToMaxTokensIncludingClsAndSep() {
        let ids = tokenizer.encode(String(repeating: "hello ", count: 100))
        #expect(ids.count == 16)
        #expect(ids.first == 2 && ids.last == 3)
    }
}
