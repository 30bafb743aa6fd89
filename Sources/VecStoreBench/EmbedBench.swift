import ArgumentParser
import Foundation
import VecStore

/// Text embedding with vecstore's own all-MiniLM-L6-v2: batch throughput (sentences/s) and single-query
/// latency at each thread count, on the texts `Tools/bench-embed` also gives sentence-transformers.
struct EmbedBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "embed", abstract: "Text-embedding benchmark.")

    @Option(help: "JSONL of texts embedded in batches (field \"text\").") var texts: String
    @Option(help: "JSONL of queries embedded one at a time (field \"text\").") var queries: String
    @Option(parsing: .upToNextOption, help: "Thread counts.") var threads: [Int] = [1, 2]
    @Option(help: "Texts per batch.") var batchSize = 32
    @Option(help: "Output JSON file.") var json: String

    static func readTexts(_ path: String) throws -> [String] {
        var reader = try JSONLReader(path: path, options: .init(idRequired: false, vectorRequired: false))
        var out: [String] = []
        while let r = try reader.next() { out.append(r.text ?? "") }
        return out
    }

    func run() throws {
        let docs = try Self.readTexts(texts), qs = try Self.readTexts(queries)
        let embedder = try Embedder()
        let tokens = docs.map { embedder.tokenize($0).count }
        let queryTokens = qs.map { embedder.tokenize($0).count }
        var result: [String: Any] = [
            "texts": docs.count, "queries": qs.count, "batch_size": batchSize,
            "mean_tokens": Double(tokens.reduce(0, +)) / Double(max(1, docs.count)),
            "query_mean_tokens": Double(queryTokens.reduce(0, +)) / Double(max(1, qs.count)),
        ]
        for t in threads {
            _ = try embedder.embed(Array(docs.prefix(64)), batchSize: batchSize, threads: t)
            let start = now()
            _ = try embedder.embed(docs, batchSize: batchSize, threads: t)
            let seconds = now() - start
            var latency = Latency()
            for q in qs.prefix(20) { _ = try embedder.embed([q], threads: t) }
            for q in qs {
                let s = now()
                _ = try embedder.embed([q], threads: t)
                latency.record(seconds: now() - s)
            }
            let row: [String: Any] = ["sentences_per_s": Double(docs.count) / seconds, "seconds": seconds,
                                      "p50_ms": latency.percentileMs(50), "p99_ms": latency.percentileMs(99)]
            result["threads_\(t)"] = row
            print("vecstore threads=\(t): \(String(format: "%.1f", Double(docs.count) / seconds)) sentences/s, "
                  + "query p50 \(String(format: "%.2f", latency.percentileMs(50))) ms, p99 \(String(format: "%.2f", latency.percentileMs(99))) ms")
        }
        let data = try JSONSerialization.data(withJSONObject: result, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: json))
    }
}
