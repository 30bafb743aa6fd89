import Foundation
import VecStoreIO

/// A sentence-embedding model: text in, one unit-length vector per text out.
///
/// Loads a sentence-transformers BERT folder (all-MiniLM-L6-v2 by default): the WordPiece tokenizer,
/// the encoder weights (memory-mapped safetensors, every shape and value checked), mean pooling over
/// the text's tokens and L2 normalisation — the same pipeline as sentence-transformers, with the same
/// token ids and embeddings within float rounding (cosine ≥ 0.9999 on the parity set).
///
/// `embed` sorts texts by length and batches neighbours, so a batch is padded to nothing (texts are
/// packed end to end); batches run on all cores, or one batch is split across cores when there are
/// fewer batches than threads. An `Embedder` is immutable and can be shared across threads.
public final class Embedder: Sendable {
    /// The model name recorded in stores (e.g. `all-minilm-l6-v2`).
    public let name: String
    /// The model folder.
    public let directory: String
    /// Output dimension.
    public let dimension: Int
    /// SHA-256 (hex) of `model.safetensors` followed by `vocab.txt` (`EmbeddingModels.checksum`).
    public let checksum: String
    /// The tokenizer (its `maxTokens` is the truncation length, [CLS] and [SEP] included).
    public let tokenizer: WordPieceTokenizer
    let encoder: BertEncoder

    /// Loads the installed model `name` (see `EmbeddingModels` for where it is looked for).
    public convenience init(model name: String = EmbeddingModels.miniLM.name) throws(EmbedError) {
        try self.init(directory: try EmbeddingModels.locate(name), name: name)
    }

    /// Loads the model in `directory`, checking every file; `name` is what stores record.
    public init(directory: String, name: String) throws(EmbedError) {
        self.name = name
        self.directory = directory
        let config = try BertConfig(file: directory + "/config.json")
        let maxTokens = try Self.maxSequenceLength(directory: directory, positions: config.maxPositions)
        try Self.checkPooling(directory: directory)
        tokenizer = try WordPieceTokenizer(vocabularyFile: directory + "/vocab.txt", maxTokens: maxTokens)
        if tokenizer.vocabulary.count > config.vocabulary {
            throw .badModel(path: directory + "/vocab.txt", reason: "\(tokenizer.vocabulary.count) tokens but the model has \(config.vocabulary) word embeddings")
        }
        let file = try SafetensorsFile(path: directory + "/model.safetensors")
        encoder = BertEncoder(config: config, weights: try BertWeights(file: file, config: config))
        dimension = config.hidden
        checksum = try EmbeddingModels.checksum(directory: directory)
    }

    /// `sentence_bert_config.json`'s `max_seq_length` (256 for all-MiniLM-L6-v2), capped by the position table.
    static func maxSequenceLength(directory: String, positions: Int) throws(EmbedError) -> Int {
        let path = directory + "/sentence_bert_config.json"
        guard let data = FileManager.default.contents(atPath: path) else { return min(512, positions) }
        guard case .object(let o)? = try? JSONValue.parse([UInt8](data)), case .number(let n)? = o["max_seq_length"],
              n >= 2, n == n.rounded()
        else { throw .badModel(path: path, reason: "max_seq_length is missing or not an integer of at least 2") }
        // Capped as a Double first: a huge or infinite value must not trap in the conversion to Int.
        return Int(min(n, Double(positions)))
    }

    /// Only mean pooling is implemented; a folder asking for another pooling is refused.
    static func checkPooling(directory: String) throws(EmbedError) {
        let path = directory + "/1_Pooling/config.json"
        guard let data = FileManager.default.contents(atPath: path) else { return }
        guard case .object(let o)? = try? JSONValue.parse([UInt8](data)) else { throw .badModel(path: path, reason: "not a JSON object") }
        if o["pooling_mode_mean_tokens"] != .bool(true) {
            throw .badModel(path: path, reason: "only mean pooling (pooling_mode_mean_tokens) is supported")
        }
        for other in ["pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens"]
        where o[other] == .bool(true) {
            throw .badModel(path: path, reason: "\(other) is not supported (mean pooling only)")
        }
    }

    /// Token ids of `text` as the model sees them ([CLS] … [SEP], truncated).
    public func tokenize(_ text: String) -> [Int32] { tokenizer.encode(text) }

    /// Default texts per batch.
    public static let defaultBatchSize = 32
    /// Most tokens in one batch (bounds the scratch memory: about 16 KB per token).
    static let maxBatchTokens = 4096

    /// Embeds `texts`, returning one unit vector of `dimension` floats per text, in order.
    ///
    /// - Parameters:
    ///   - batchSize: texts per encoder batch (neighbours in length order).
    ///   - threads: worker threads (default: all cores; at most 1,024 are used).
    ///   - progress: called after each batch with (texts done, total), from a worker thread, one call at a time.
    public func embed(_ texts: [String], batchSize: Int = Embedder.defaultBatchSize, threads: Int? = nil,
                      progress: ((Int, Int) -> Void)? = nil) throws(EmbedError) -> [[Float]] {
        guard batchSize >= 1 else { throw .invalidArgument("batch size must be at least 1") }
        let threads = max(1, min(1024, threads ?? ProcessInfo.processInfo.activeProcessorCount))
        let n = texts.count
        guard n > 0 else { return [] }
        let dim = dimension
        let output = UnsafeMutablePointer<Float>.allocate(capacity: n * dim)
        defer { output.deallocate() }
        try embed(count: n, text: { texts[$0] }, batchSize: batchSize, threads: threads, progress: progress, into: output)
        return (0..<n).map { Array(UnsafeBufferPointer(start: output + $0 * dim, count: dim)) }
    }

    /// Embeds texts `text(0) … text(count − 1)` into `output` (count × dimension floats, row i for text i).
    public func embed(count n: Int, text: @Sendable (Int) -> String, batchSize: Int = Embedder.defaultBatchSize,
                      threads: Int? = nil, progress: ((Int, Int) -> Void)? = nil,
                      into output: UnsafeMutablePointer<Float>) throws(EmbedError) {
        guard batchSize >= 1 else { throw .invalidArgument("batch size must be at least 1") }
        let threads = max(1, min(1024, threads ?? ProcessInfo.processInfo.activeProcessorCount))
        guard n > 0 else { return }
        // Tokenize on all cores.
        let ids = UnsafeMutableBufferPointer<[Int32]>.allocate(capacity: n)
        ids.initialize(repeating: [])
        defer { ids.deinitialize(); ids.deallocate() }
        let idsShared = SharedPointer(ids)
        let tok = tokenizer
        let tokenWorkers = max(1, min(threads, n / 64))
        parallel(tokenWorkers) { w in
            for i in (n * w / tokenWorkers)..<(n * (w + 1) / tokenWorkers) { idsShared.p[i] = tok.encode(text(i)) }
        }
        // Longest first: big batches start early, the small ones fill the gaps at the end.
        let lengths: [Int] = (0..<n).map { ids[$0].count }
        let order: [Int] = (0..<n).sorted { (a: Int, b: Int) -> Bool in
            lengths[a] != lengths[b] ? lengths[a] > lengths[b] : a < b
        }
        var batches: [Range<Int>] = []
        var start = 0
        while start < n {
            var end = start, tokens = 0
            while end < n && end - start < batchSize {
                let length = lengths[order[end]]
                if end > start && tokens + length > Self.maxBatchTokens { break }
                tokens += length
                end += 1
            }
            batches.append(start..<end)
            start = end
        }
        let workers = min(threads, batches.count)
        let inner = max(1, threads / workers)
        let state = BatchQueue()
        let dim = dimension
        let enc = encoder
        let out = SharedPointer(output)
        let orderShared = order
        let batchList = batches
        // Called under BatchQueue's lock only, never concurrently.
        let report = SharedPointer(progress)
        parallel(workers) { _ in
            while let b = state.next(batches: batchList.count) {
                let range = batchList[b]
                let members = Array(orderShared[range])
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: members.count * dim)
                enc.encode(members.map { idsShared.p[$0] }, threads: inner, into: scratch)
                for (j, i) in members.enumerated() { (out.p + i * dim).update(from: scratch + j * dim, count: dim) }
                scratch.deallocate()
                state.finish(members.count) { done in report.p?(done, n) }
            }
        }
    }
}

/// Hands out batch numbers to workers and counts finished texts.
final class BatchQueue: @unchecked Sendable {
    private let lock = NSLock()
    private var nextBatch = 0
    private var done = 0
    func next(batches: Int) -> Int? {
        lock.lock(); defer { lock.unlock() }
        guard nextBatch < batches else { return nil }
        nextBatch += 1
        return nextBatch - 1
    }
    /// Counts `count` more texts done and reports the total to `report` while holding the lock, so that
    /// progress callbacks never overlap.
    func finish(_ count: Int, report: (Int) -> Void) {
        lock.lock(); defer { lock.unlock() }
        done += count
        report(done)
    }
}
