import CStemmer
import Foundation

/// How text is turned into index terms. Stored with each collection so that queries are analysed
/// exactly as the documents were (Spec/BM25.md §Analyzer).
public struct AnalyzerOptions: Sendable, Hashable, Codable {
    /// Snowball stemmer algorithm name (`english`, `porter`, `german`, … — see `Analyzer.stemmerLanguages`),
    /// or nil for no stemming.
    public var stemmer: String?
    /// Whether English stop words (Lucene's classic 33-word set) are dropped.
    public var stopWords: Bool

    /// Creates analyzer options; the default is the Snowball English stemmer with English stop words.
    public init(stemmer: String? = "english", stopWords: Bool = true) {
        self.stemmer = stemmer
        self.stopWords = stopWords
    }
}

/// Errors of the analyzer.
public enum AnalyzerError: Error, Sendable, CustomStringConvertible, Equatable {
    /// libstemmer has no algorithm of that name.
    case unknownStemmer(String)

    /// A readable message.
    public var description: String {
        switch self {
        case .unknownStemmer(let name):
            "unknown stemmer '\(name)'; available: \(Analyzer.stemmerLanguages.joined(separator: ", "))"
        }
    }
}

/// Turns text into terms: Unicode compatibility normalisation (NFKC), lower-casing, removal of
/// combining diacritical marks, splitting on everything that is not a letter or digit, joined
/// forms of hyphenated codes that contain a digit, stop words, and Snowball stemming.
///
/// Tokens:
/// - A *word* is a maximal run of letters and digits (Unicode alphabetic or numeric scalars and marks).
/// - Words joined by single hyphens or underscores (`xyz-123`, `COVID-19`, `snake_case`) form a
///   *compound*. Each word is a token; when the compound has a digit, its words concatenated are a
///   token too (`xyz-123` → `xyz`, `123`, `xyz123`), so a code is found written either way.
/// - Tokens longer than `maxTermBytes` UTF-8 bytes are dropped.
///
/// An analyzer owns a Snowball stemmer, which is not thread-safe: use one analyzer per thread
/// (`AnalyzerPool` hands them out). Not `Sendable` for that reason.
public final class Analyzer {
    /// Longest term kept, in UTF-8 bytes (LMDB keys are at most 511 bytes).
    public static let maxTermBytes = 100
    /// Lucene's classic English stop-word set (also bm25s's `english` list).
    public static let englishStopWords: Set<String> = [
        "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not",
        "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was",
        "will", "with",
    ]

    /// Names of the stemming algorithms libstemmer provides.
    public static let stemmerLanguages: [String] = {
        var names: [String] = []
        guard var p = sb_stemmer_list() else { return names }
        while let name = p.pointee {
            names.append(String(cString: name))
            p += 1
        }
        return names
    }()

    /// The options this analyzer applies.
    public let options: AnalyzerOptions
    private let stemmer: OpaquePointer?
    /// Token → term id after stop words and stemming (−1 for a stop word).
    private var tokenIDs = TokenTable()
    /// Term → id and id → term.
    private var termIDs: [String: Int32] = [:]
    private var vocabulary: [String] = []

    /// The term with id `id` (from `analyzeIDs`).
    public func term(_ id: Int32) -> String { vocabulary[Int(id)] }
    /// Number of term ids handed out so far.
    public var vocabularyCount: Int { vocabulary.count }

    /// Forgets the token and term caches (and so invalidates term ids) once they hold more than `limit` tokens.
    public func trimCache(limit: Int = 200_000) {
        if tokenIDs.count > limit {
            tokenIDs.removeAll()
            termIDs.removeAll()
            vocabulary.removeAll()
        }
    }
    private var foldCache: [UInt32: [Unicode.Scalar]] = [:]
    private var scalars: [Unicode.Scalar] = []

    /// Creates an analyzer; throws when the stemmer name is unknown.
    public init(_ options: AnalyzerOptions = AnalyzerOptions()) throws(AnalyzerError) {
        self.options = options
        if let name = options.stemmer {
            guard let s = sb_stemmer_new(name, "UTF_8") else { throw .unknownStemmer(name) }
            stemmer = s
        } else {
            stemmer = nil
        }
    }

    deinit {
        if let stemmer { sb_stemmer_delete(stemmer) }
    }

    /// The terms of `text` in order (repeated terms repeat).
    public func terms(_ text: String) -> [String] {
        var out: [String] = []
        analyze(text) { out.append($0) }
        return out
    }

    /// Calls `body` with each term of `text` in order.
    public func analyze(_ text: String, _ body: (String) -> Void) {
        analyzeIDs(text) { body(vocabulary[Int($0)]) }
    }

    /// Calls `body` with the id of each term of `text` in order: ids number this analyzer's distinct
    /// terms from 0 (`term(_:)` gives the term back), so callers can count with arrays instead of
    /// hashing strings. Ids stay valid until `trimCache` clears the vocabulary.
    public func analyzeIDs(_ text: String, _ body: (Int32) -> Void) {
        var text = text
        let ascii = text.withUTF8 { bytes in
            var all: UInt8 = 0
            for b in bytes { all |= b }
            return all < 0x80
        }
        if ascii {
            text.withUTF8 { bytes in tokenizeASCII(bytes, body) }
        } else {
            tokenizeUnicode(text, body)
        }
    }

    // MARK: Tokens

    @inline(__always)
    private static func asciiClass(_ b: UInt8) -> UInt8 {
        // 1 = letter/digit, 2 = connector, 0 = separator
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"): 1
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): 1
        case UInt8(ascii: "-"), UInt8(ascii: "_"): 2
        default: 0
        }
    }

    /// ASCII byte classes: 1 = letter or digit, 2 = connector (`-`, `_`), 0 = separator.
    private static let asciiClasses: [UInt8] = (0..<256).map { asciiClass(UInt8($0)) }

    private func tokenizeASCII(_ bytes: UnsafeBufferPointer<UInt8>, _ body: (Int32) -> Void) {
        let n = bytes.count
        guard n > 0, let source = bytes.baseAddress else { return }
        // Lower-case the whole text once; words are then slices of it.
        let lower = UnsafeMutablePointer<UInt8>.allocate(capacity: n)
        defer { lower.deallocate() }
        for j in 0..<n {
            let b = source[j]
            lower[j] = b &- UInt8(ascii: "A") < 26 ? b | 0x20 : b
        }
        Self.asciiClasses.withUnsafeBufferPointer { classes in
            var i = 0
            var compound: [UInt8] = []
            while i < n {
                // Skip to the start of a word.
                while i < n && classes[Int(lower[i])] != 1 { i += 1 }
                if i >= n { break }
                let compoundStart = i
                var parts = 0
                var hasDigit = false
                while true {
                    let start = i
                    while i < n && classes[Int(lower[i])] == 1 {
                        if lower[i] <= UInt8(ascii: "9") { hasDigit = true }
                        i += 1
                    }
                    parts += 1
                    emit(UnsafeBufferPointer(start: lower + start, count: i - start), body)
                    // A single connector followed by a letter or digit continues the compound.
                    if i + 1 < n && classes[Int(lower[i])] == 2 && classes[Int(lower[i + 1])] == 1 {
                        i += 1
                        continue
                    }
                    break
                }
                if parts > 1 && hasDigit {
                    compound.removeAll(keepingCapacity: true)
                    for j in compoundStart..<i where classes[Int(lower[j])] == 1 { compound.append(lower[j]) }
                    compound.withUnsafeBufferPointer { emit($0, body) }
                }
            }
        }
    }

    @inline(__always)
    private static func isWordScalar(_ s: Unicode.Scalar) -> Bool {
        if s.value < 0x80 { return asciiClass(UInt8(s.value)) == 1 }
        let p = s.properties
        if p.isAlphabetic || p.numericType != nil { return true }
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    @inline(__always)
    private static func isConnector(_ s: Unicode.Scalar) -> Bool {
        s == "-" || s == "_" || s.value == 0x2010 || s.value == 0x2011
    }

    /// Each non-ASCII scalar is folded on its own (and cached): compatibility decomposition (NFKD),
    /// combining diacritical marks (U+0300–U+036F) dropped, canonical recomposition (NFC), lower-cased.
    /// For text in NFC or NFD this equals folding the whole string; combining marks after an ASCII
    /// letter are dropped like any others.
    private func fold(_ s: Unicode.Scalar) -> [Unicode.Scalar] {
        if let cached = foldCache[s.value] { return cached }
        var stripped = String.UnicodeScalarView()
        for d in String(s).decomposedStringWithCompatibilityMapping.unicodeScalars where !(0x300...0x36F).contains(d.value) {
            stripped.append(d)
        }
        var out: [Unicode.Scalar] = []
        for c in String(stripped).precomposedStringWithCanonicalMapping.unicodeScalars {
            if c.properties.changesWhenLowercased {
                out.append(contentsOf: c.properties.lowercaseMapping.unicodeScalars)
            } else {
                out.append(c)
            }
        }
        if foldCache.count < 100_000 { foldCache[s.value] = out }
        return out
    }

    private func tokenizeUnicode(_ text: String, _ body: (Int32) -> Void) {
        var word: [UInt8] = []
        scalars.removeAll(keepingCapacity: true)
        for s in text.unicodeScalars {
            if s.value < 0x80 {
                let v = UInt8(s.value)
                scalars.append(Unicode.Scalar(v >= 0x41 && v <= 0x5A ? v | 0x20 : v))
            } else {
                scalars.append(contentsOf: fold(s))
            }
        }
        let n = scalars.count
        var i = 0
        var compound: [UInt8] = []
        while i < n {
            while i < n && !Self.isWordScalar(scalars[i]) { i += 1 }
            if i >= n { break }
            compound.removeAll(keepingCapacity: true)
            var parts = 0
            var hasDigit = false
            while true {
                word.removeAll(keepingCapacity: true)
                while i < n && Self.isWordScalar(scalars[i]) {
                    let s = scalars[i]
                    if s.value < 0x80 ? (s.value >= 0x30 && s.value <= 0x39) : s.properties.numericType != nil { hasDigit = true }
                    if let units = UTF8.encode(s) { word.append(contentsOf: units) }
                    i += 1
                }
                compound.append(contentsOf: word)
                parts += 1
                emit(word, body)
                if i + 1 < n && Self.isConnector(scalars[i]) && Self.isWordScalar(scalars[i + 1]) {
                    i += 1
                    continue
                }
                break
            }
            if parts > 1 && hasDigit { emit(compound, body) }
        }
    }

    // MARK: Stop words and stemming

    @inline(__always)
    private func emit(_ bytes: [UInt8], _ body: (Int32) -> Void) {
        bytes.withUnsafeBufferPointer { emit($0, body) }
    }

    @inline(__always)
    private func emit(_ p: UnsafeBufferPointer<UInt8>, _ body: (Int32) -> Void) {
        guard !p.isEmpty, p.count <= Self.maxTermBytes else { return }
        let h = TokenTable.hash(p)
        let id: Int32
        if let found = tokenIDs.find(p, hash: h) {
            id = found
        } else {
            let token = String(decoding: p, as: UTF8.self)
            var newID: Int32 = -1
            if !(options.stopWords && Self.englishStopWords.contains(token)) {
                let term = stem(token)
                if let existing = termIDs[term] {
                    newID = existing
                } else {
                    newID = Int32(vocabulary.count)
                    vocabulary.append(term)
                    termIDs[term] = newID
                }
            }
            tokenIDs.insert(p, hash: h, value: newID)
            id = newID
        }
        if id >= 0 { body(id) }
    }

    /// The stem of one lower-cased token (the token itself without a stemmer).
    public func stem(_ token: String) -> String {
        guard let stemmer else { return token }
        var token2 = token
        let stemmed: String = token2.withUTF8 { bytes in
            guard let out = sb_stemmer_stem(stemmer, bytes.baseAddress, Int32(bytes.count)) else { return token }
            let length = Int(sb_stemmer_length(stemmer))
            return String(decoding: UnsafeBufferPointer(start: out, count: length), as: UTF8.self)
        }
        return stemmed
    }
}
