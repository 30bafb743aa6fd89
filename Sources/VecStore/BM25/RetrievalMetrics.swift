import Foundation

/// Ranked-retrieval quality measures over judged queries (BEIR / trec_eval conventions).
///
/// For each query with at least one relevant judgement (grade > 0):
/// - P@k = relevant results in the top k / k
/// - R@k = relevant results in the top k / relevant documents
/// - nDCG@k = DCG@k / ideal DCG@k with DCG = Σ grade / log2(rank + 1) over ranks 1…k (linear gain)
/// - MRR = 1 / rank of the first relevant result within the deepest cut-off (0 when none)
/// Each measure is the mean over the judged queries; a query with no results scores 0.
public enum RetrievalMetrics {
    /// Relevance judgements: query id → document id → grade.
    public typealias Qrels = [String: [String: Int]]

    /// The measures for each cut-off in `ks`: keys `ndcg@k`, `p@k`, `r@k`, and `mrr` (cut at max of `ks`).
    public static func evaluate(results: [String: [String]], qrels: Qrels, ks: [Int]) -> [String: Double] {
        let depth = ks.max() ?? 10
        var sums: [String: Double] = [:]
        var judged = 0
        for (query, grades) in qrels {
            let relevant = grades.filter { $0.value > 0 }
            guard !relevant.isEmpty else { continue }
            judged += 1
            let ranked = results[query] ?? []
            let ideal = relevant.values.sorted(by: >)
            for k in ks {
                let top = ranked.prefix(k)
                var hits = 0
                var dcg = 0.0
                for (i, id) in top.enumerated() {
                    if let g = relevant[id] {
                        hits += 1
                        dcg += Double(g) / log2(Double(i + 2))
                    }
                }
                var idcg = 0.0
                for (i, g) in ideal.prefix(k).enumerated() { idcg += Double(g) / log2(Double(i + 2)) }
                sums["ndcg@\(k)", default: 0] += idcg > 0 ? dcg / idcg : 0
                sums["p@\(k)", default: 0] += Double(hits) / Double(k)
                sums["r@\(k)", default: 0] += Double(hits) / Double(relevant.count)
            }
            if let first = ranked.prefix(depth).firstIndex(where: { relevant[$0] != nil }) {
                sums["mrr", default: 0] += 1 / Double(first + 1)
            } else {
                sums["mrr", default: 0] += 0
            }
        }
        guard judged > 0 else { return [:] }
        return sums.mapValues { $0 / Double(judged) }
    }

    /// Reads a BEIR qrels TSV (`query-id corpus-id score`, with or without a header line; CRLF allowed).
    public static func readQrels(path: String) throws(VecStoreError) -> Qrels {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch { throw .io("\(path): \(error.localizedDescription)") }
        var qrels: Qrels = [:]
        for (n, rawLine) in text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty { continue }
            let cols = line.split(whereSeparator: { $0 == "\t" || $0 == " " }).map(String.init)
            if n == 0 && cols.count >= 3 && Int(cols[2]) == nil { continue }  // header
            guard cols.count >= 3, let grade = Int(cols[cols.count - 1]) else {
                throw .invalidArgument("\(path) line \(n + 1): expected 'query-id corpus-id score', got '\(line.prefix(80))'")
            }
            // TREC layout has 4 columns (query 0 doc grade); BEIR has 3.
            let query = cols[0], doc = cols[cols.count - 2]
            qrels[query, default: [:]][doc] = grade
        }
        return qrels
    }

    /// Reads BEIR queries (`{"_id": …, "text": …}` per line) as (id, text) in file order.
    public static func readQueries(path: String) throws(VecStoreError) -> [(id: String, text: String)] {
        var options = JSONLReader.Options(idRequired: true, vectorRequired: false, textFields: ["text"],
                                          metadataField: "\u{0}(metadata is not read)")
        options.idField = nil
        var result: [(id: String, text: String)] = []
        do throws(ImportError) {
            var reader = try JSONLReader(path: path, options: options)
            while let r = try reader.next() {
                result.append((r.id ?? String(r.location.record), r.text ?? ""))
            }
        } catch {
            throw .invalidInput(error)
        }
        return result
    }
}
