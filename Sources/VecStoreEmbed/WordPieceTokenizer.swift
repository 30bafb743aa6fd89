import Foundation

/// BERT's uncased WordPiece tokenizer, giving the same ids as Hugging Face's fast `BertTokenizer`
/// (`tokenizers`' BertNormalizer, BertPreTokenizer, WordPiece and the [CLS]/[SEP] template).
///
/// Steps, all on Unicode scalars (never `Character`s, whose grapheme clusters differ from the scalar
/// counts Python and Rust use):
/// 1. the special tokens `[PAD] [UNK] [CLS] [SEP] [MASK]` written literally in the text are kept whole;
/// 2. clean: drop NUL, U+FFFD and control/format/unassigned/private-use scalars; whitespace becomes a space;
/// 3. put spaces around CJK ideographs;
/// 4. strip accents (NFD, then drop non-spacing marks, category Mn) and lowercase;
/// 5. split on whitespace, then split off each punctuation scalar (ASCII punctuation and category P*);
/// 6. WordPiece: greedy longest match with `##` continuations; a word of more than 100 scalars, or one
///    with a part that matches nothing, becomes `[UNK]`;
/// 7. `[CLS]` … `[SEP]`, truncated to `maxTokens` ids including both.
public struct WordPieceTokenizer: Sendable {
    /// Token → id (the line number in `vocab.txt`, from 0).
    public let vocabulary: [String: Int32]
    /// Longest output, [CLS] and [SEP] included.
    public let maxTokens: Int
    /// Ids of the special tokens.
    public let unknownID: Int32, classifierID: Int32, separatorID: Int32
    /// Longest word (in scalars) that is split into pieces; longer words become [UNK].
    public static let maxWordScalars = 100

    private let specials: [(scalars: [Unicode.Scalar], id: Int32)]

    /// Reads a BERT `vocab.txt` (one token per line; the line number is the id).
    public init(vocabularyFile path: String, maxTokens: Int = 256) throws(EmbedError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .badModel(path: path, reason: "cannot read the vocabulary")
        }
        var tokens: [String] = []
        var lineStart = 0
        let bytes = [UInt8](data)
        for i in 0...bytes.count where i == bytes.count || bytes[i] == 0x0A {
            if i == bytes.count && lineStart == i { break }
            var end = i
            if end > lineStart && bytes[end - 1] == 0x0D { end -= 1 }
            guard let token = String(validating: bytes[lineStart..<end], as: UTF8.self) else {
                throw .badModel(path: path, reason: "line \(tokens.count + 1) is not valid UTF-8")
            }
            tokens.append(token)
            lineStart = i + 1
        }
        try self.init(tokens: tokens, maxTokens: maxTokens, source: path)
    }

    /// Builds the tokenizer from the vocabulary in id order.
    public init(tokens: [String], maxTokens: Int = 256, source: String = "vocabulary") throws(EmbedError) {
        guard maxTokens >= 2 else { throw .invalidArgument("maxTokens must be at least 2 (for [CLS] and [SEP])") }
        guard tokens.count <= Int(Int32.max) else {
            throw .badModel(path: source, reason: "\(tokens.count) tokens; ids are 32-bit")
        }
        var vocabulary: [String: Int32] = [:]
        vocabulary.reserveCapacity(tokens.count)
        for (i, token) in tokens.enumerated() where vocabulary[token] == nil { vocabulary[token] = Int32(i) }
        func id(_ token: String) throws(EmbedError) -> Int32 {
            guard let id = vocabulary[token] else { throw .badModel(path: source, reason: "the vocabulary has no \(token)") }
            return id
        }
        self.vocabulary = vocabulary
        self.maxTokens = maxTokens
        unknownID = try id("[UNK]")
        classifierID = try id("[CLS]")
        separatorID = try id("[SEP]")
        var specials: [([Unicode.Scalar], Int32)] = []
        for token in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] {
            if let id = vocabulary[token] { specials.append((Array(token.unicodeScalars), id)) }
        }
        self.specials = specials
    }

    /// The ids of `text`: [CLS], its word pieces (at most `maxTokens` − 2), [SEP].
    public func encode(_ text: String) -> [Int32] {
        let budget = maxTokens - 2
        var ids: [Int32] = [classifierID]
        ids.reserveCapacity(min(maxTokens, text.utf8.count + 2))
        let scalars = Array(text.unicodeScalars)
        var segmentStart = 0
        var i = 0
        // Special tokens written in the text are matched before normalisation, like the fast tokenizer's
        // added vocabulary; the text between them is tokenized normally.
        while i < scalars.count && ids.count - 1 < budget {
            if scalars[i] == "[", let (length, id) = special(at: i, in: scalars) {
                appendPieces(of: scalars[segmentStart..<i], to: &ids, budget: budget)
                if ids.count - 1 < budget { ids.append(id) }
                i += length
                segmentStart = i
            } else {
                i += 1
            }
        }
        if ids.count - 1 < budget { appendPieces(of: scalars[segmentStart..<scalars.count], to: &ids, budget: budget) }
        if ids.count - 1 > budget { ids.removeLast(ids.count - 1 - budget) }
        ids.append(separatorID)
        return ids
    }

    private func special(at i: Int, in scalars: [Unicode.Scalar]) -> (Int, Int32)? {
        for (token, id) in specials where i + token.count <= scalars.count {
            if scalars[i..<(i + token.count)].elementsEqual(token) { return (token.count, id) }
        }
        return nil
    }

    /// Normalises a stretch of text and appends its word pieces until `ids` holds `budget` + 1 ids.
    private func appendPieces(of text: ArraySlice<Unicode.Scalar>, to ids: inout [Int32], budget: Int) {
        guard !text.isEmpty else { return }
        let normalized = Self.normalize(text)
        var word: [Unicode.Scalar] = []
        func flush() {
            if !word.isEmpty && ids.count - 1 < budget { wordPiece(word, into: &ids) }
            word.removeAll(keepingCapacity: true)
        }
        for c in normalized {
            if ids.count - 1 >= budget { return }
            if Self.isWhitespace(c) {
                flush()
            } else if Self.isPunctuation(c) {
                flush()
                word.append(c)
                flush()
            } else {
                word.append(c)
            }
        }
        flush()
    }

    /// Steps 2–4: clean, space out CJK ideographs, strip accents, lowercase.
    static func normalize(_ text: ArraySlice<Unicode.Scalar>) -> [Unicode.Scalar] {
        var cleaned = String.UnicodeScalarView()
        var ascii = true
        for c in text {
            if c.value == 0 || c.value == 0xFFFD || isControl(c) { continue }
            if isWhitespace(c) {
                cleaned.append(" ")
            } else if isCJK(c) {
                cleaned.append(" ")
                cleaned.append(c)
                cleaned.append(" ")
                ascii = false
            } else {
                cleaned.append(c)
                if c.value >= 0x80 { ascii = false }
            }
        }
        var result: [Unicode.Scalar] = []
        result.reserveCapacity(cleaned.count)
        if ascii {
            for c in cleaned {
                result.append(c.value >= 0x41 && c.value <= 0x5A ? Unicode.Scalar(c.value + 32) ?? c : c)
            }
            return result
        }
        let decomposed = String(cleaned).decomposedStringWithCanonicalMapping
        for c in decomposed.unicodeScalars where c.properties.generalCategory != .nonspacingMark {
            if c.properties.changesWhenLowercased {
                result.append(contentsOf: c.properties.lowercaseMapping.unicodeScalars)
            } else {
                result.append(c)
            }
        }
        return result
    }

    /// Step 6 for one word.
    private func wordPiece(_ word: [Unicode.Scalar], into ids: inout [Int32]) {
        if word.count > Self.maxWordScalars {
            ids.append(unknownID)
            return
        }
        var pieces: [Int32] = []
        var start = 0
        while start < word.count {
            var end = word.count
            var found: Int32?
            while start < end {
                var candidate = start > 0 ? "##" : ""
                candidate.unicodeScalars.append(contentsOf: word[start..<end])
                if let id = vocabulary[candidate] {
                    found = id
                    break
                }
                end -= 1
            }
            guard let found else {
                ids.append(unknownID)
                return
            }
            pieces.append(found)
            start = end
        }
        ids.append(contentsOf: pieces)
    }

    /// Whitespace as BERT sees it: tab, newline, carriage return and the Unicode White_Space property.
    static func isWhitespace(_ c: Unicode.Scalar) -> Bool {
        c == " " || c == "\t" || c == "\n" || c == "\r" || (c.value >= 0x80 && c.properties.isWhitespace)
    }

    /// Control characters as BERT's cleaner drops them: categories Cc, Cf, Cn, Co (tab, newline and
    /// carriage return excepted; they are whitespace).
    static func isControl(_ c: Unicode.Scalar) -> Bool {
        if c == "\t" || c == "\n" || c == "\r" { return false }
        if c.value >= 0x20 && c.value < 0x7F { return false }
        switch c.properties.generalCategory {
        case .control, .format, .unassigned, .privateUse, .surrogate: return true
        default: return false
        }
    }

    /// ASCII punctuation (all of !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~) or Unicode category P*.
    static func isPunctuation(_ c: Unicode.Scalar) -> Bool {
        let v = c.value
        if (v >= 33 && v <= 47) || (v >= 58 && v <= 64) || (v >= 91 && v <= 96) || (v >= 123 && v <= 126) { return true }
        if v < 0x80 { return false }
        switch c.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation,
             .finalPunctuation, .otherPunctuation:
            return true
        default: return false
        }
    }

    /// CJK Unified Ideographs and their extensions and compatibility blocks, as BERT defines them.
    static func isCJK(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F, 0x2B740...0x2B81F,
             0x2B820...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F:
            return true
        default: return false
        }
    }
}
