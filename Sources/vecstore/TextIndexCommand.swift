import ArgumentParser
import Foundation
import VecStore

struct TextIndexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "text-index",
        abstract: "Show or change a collection's keyword (BM25) index options and statistics.",
        discussion: """
            Without options, prints the options and statistics. Changing the stemmer, stop words or \
            turning indexing on/off re-indexes every document's text in one transaction; changing \
            k1 or b takes effect at once. Stemmers: \(Analyzer.stemmerLanguages.joined(separator: ", ")), or none.

            Examples:
              vecstore text-index demo.vecstore -c docs
              vecstore text-index demo.vecstore -c docs --stemmer none --no-stop-words
              vecstore text-index demo.vecstore -c docs --k1 0.9 --b 0.4
            """)

    @OptionGroup var target: StoreArguments

    @Option(help: "Snowball stemmer name, or none.") var stemmer: String?
    @Flag(inversion: .prefixedNo, help: "Drop English stop words.") var stopWords: Bool?
    @Option(help: "BM25 k1 (≥ 0).") var k1: Float?
    @Option(help: "BM25 b (0…1).") var b: Float?
    @Flag(help: "Turn keyword indexing off (drops the index).") var disable = false
    @Flag(help: "Turn keyword indexing on (indexes all stored text).") var enable = false

    func validate() throws {
        if disable && enable { throw ValidationError("give --enable or --disable, not both") }
    }

    func run() throws {
        try reportingErrors {
            let changes = stemmer != nil || stopWords != nil || k1 != nil || b != nil || disable || enable
            let store = try target.open(readOnly: !changes)
            let collection = try store.collection(target.collection)
            if changes {
                var options = try collection.textIndexOptions()
                if let stemmer { options.analyzer.stemmer = stemmer == "none" ? nil : stemmer }
                if let stopWords { options.analyzer.stopWords = stopWords }
                if let k1 { options.k1 = k1 }
                if let b { options.b = b }
                if disable { options.enabled = false }
                if enable { options.enabled = true }
                try collection.configureTextIndex(options)
            }
            let s = try collection.textIndexStats()
            print("keyword index  \(s.options.enabled ? "enabled" : "disabled")")
            print("analyzer       stemmer \(s.options.analyzer.stemmer ?? "none"), stop words \(s.options.analyzer.stopWords ? "on" : "off")")
            print("BM25           k1 \(s.options.k1), b \(s.options.b)")
            print("documents      \(s.documents) with text (avg length \(String(format: "%.1f", s.averageLength)) terms)")
            print("terms          \(s.terms); postings \(s.postings)")
            print("size           postings \(formatBytes(s.postingBytes)), dictionary \(formatBytes(s.dictionaryBytes)), lengths \(formatBytes(s.lengthBytes))")
        }
    }
}
