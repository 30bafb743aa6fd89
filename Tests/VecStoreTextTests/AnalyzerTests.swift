import Testing
@testable import VecStoreText

@Suite struct AnalyzerTests {
    @Test func lowercasesSplitsAndStems() throws {
        let a = try Analyzer()
        #expect(a.terms("The Running dogs, jumped!") == ["run", "dog", "jump"])
    }

    @Test func stopWordsCanBeKept() throws {
        let a = try Analyzer(AnalyzerOptions(stemmer: nil, stopWords: false))
        #expect(a.terms("The cat is in the hat") == ["the", "cat", "is", "in", "the", "hat"])
    }

    @Test func codesAreFindableJoinedAndSplit() throws {
        let a = try Analyzer(AnalyzerOptions(stemmer: nil, stopWords: true))
        #expect(a.terms("part xyz-123 here") == ["part", "xyz", "123", "xyz123", "here"])
        #expect(a.terms("COVID-19") == ["covid", "19", "covid19"])
        // Hyphenated words without a digit are only split.
        #expect(a.terms("long-term") == ["long", "term"])
        // A dangling hyphen is a separator.
        #expect(a.terms("pre- and post-") == ["pre", "post"])
    }

    @Test func unicodeIsFoldedLikeASCII() throws {
        let a = try Analyzer(AnalyzerOptions(stemmer: nil, stopWords: false))
        #expect(a.terms("Café Ñandú ÉCOLE") == ["cafe", "nandu", "ecole"])
        // NFKC: full-width letters and the "fi" ligature become plain letters.
        #expect(a.terms("ＡＢＣ ﬁsh") == ["abc", "fish"])
        // Decomposed input equals precomposed input.
        #expect(a.terms("cafe\u{301}") == a.terms("café"))
        // Non-Latin scripts stay words; Greek accents are folded too.
        #expect(a.terms("Ελληνικά 東京") == ["ελληνικα", "東京"])
        #expect(a.terms("x‑ray-2") == ["x", "ray", "2", "xray2"])
    }

    @Test func stemmingMatchesSnowballEnglish() throws {
        let a = try Analyzer()
        #expect(a.terms("generously connection connected studies") == ["generous", "connect", "connect", "studi"])
    }

    @Test func unknownStemmerThrows() {
        #expect(throws: AnalyzerError.unknownStemmer("klingon")) { try Analyzer(AnalyzerOptions(stemmer: "klingon")) }
        #expect(Analyzer.stemmerLanguages.contains("english"))
    }

    @Test func overlongTokensAreDropped() throws {
        let a = try Analyzer(AnalyzerOptions(stemmer: nil, stopWords: false))
        #expect(a.terms(String(repeating: "a", count: 101) + " ok") == ["ok"])
    }

    @Test func poolHandsOutWorkingAnalyzers() throws {
        let terms = try AnalyzerPool.shared.withAnalyzer(AnalyzerOptions()) { $0.terms("mice") }
        #expect(terms == ["mice"])
    }
}
