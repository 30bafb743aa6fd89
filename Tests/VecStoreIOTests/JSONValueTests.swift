import PropertyBased
import Testing
@testable import VecStoreIO

// MARK: - Generators

/// Random JSON values with awkward strings (quotes, backslashes, control characters, non-BMP
/// scalars, combining marks) and awkward numbers (-0, subnormals, huge, Int64 edges).
enum JSONGen {
    static let scalars: [Unicode.Scalar] = {
        var pool: [Unicode.Scalar] = Array("abcXYZ019 _-.,:{}[]".unicodeScalars)
        pool += ["\"", "\\", "/", "\u{7F}", "\u{E9}", "\u{301}", "\u{2028}", "\u{2029}", "\u{FEFF}", "\u{FFFD}",
                 "\u{FFFF}", "\u{E000}", "\u{4E2D}", "\u{10000}", "\u{1F600}", "\u{10FFFF}", "\u{D7FF}"]
        pool += (0..<0x20).map { Unicode.Scalar(UInt8($0)) }
        return pool
    }()

    static let specialNumbers: [Double] = [
        0, -0.0, 1, -1, 0.1, 0.5, 1.0 / 3, 1e-7, 1e-5, 123.456, -987654.321, 1e21, 1e22, 1e23, 1e300, -1e300,
        Double.leastNonzeroMagnitude, -Double.leastNonzeroMagnitude, Double.leastNormalMagnitude, Double.greatestFiniteMagnitude, -Double.greatestFiniteMagnitude,
        0x1p53, 0x1p53 + 2, 0x1p63, -0x1p63, 0x1p63 - 1024, 0x1p64, -0x1p64, 0x1p53 + 1,
        Double(Int64.max), Double(Int64.min), Double.leastNormalMagnitude.nextDown, 3 * Double.leastNonzeroMagnitude,
    ]

    static func string(_ rng: inout SplitMix, maxLength: Int = 12) -> String {
        var result = String.UnicodeScalarView()
        for _ in 0..<Int.random(in: 0...maxLength, using: &rng) {
            result.append(scalars.randomElement(using: &rng)!)
        }
        return String(result)
    }

    static func number(_ rng: inout SplitMix) -> Double {
        switch Int.random(in: 0..<6, using: &rng) {
        case 0: return specialNumbers.randomElement(using: &rng)!
        case 1: return Double(Int.random(in: -1000...1000, using: &rng))
        case 2: return Double(Int64.random(in: .min ... .max, using: &rng))
        case 3: return Double(Int.random(in: -10_000_000...10_000_000, using: &rng)) / 1000
        case 4: return Double.random(in: -1...1, using: &rng) * pow10(Int.random(in: -30...30, using: &rng))
        default:
            while true {
                let value = Double(bitPattern: rng.next())
                if value.isFinite { return value }
            }
        }
    }

    static func pow10(_ exponent: Int) -> Double {
        var result = 1.0
        for _ in 0..<abs(exponent) { result *= 10 }
        return exponent < 0 ? 1 / result : result
    }

    static func value(_ rng: inout SplitMix, depth: Int = 0) -> JSONValue {
        let leafOnly = depth >= 4
        switch Int.random(in: 0..<(leafOnly ? 4 : 6), using: &rng) {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &rng))
        case 2: return .number(number(&rng))
        case 3: return .string(string(&rng))
        case 4:
            return .array((0..<Int.random(in: 0...5, using: &rng)).map { _ in value(&rng, depth: depth + 1) })
        default:
            var members: [String: JSONValue] = [:]
            for _ in 0..<Int.random(in: 0...5, using: &rng) {
                members[string(&rng, maxLength: 6)] = value(&rng, depth: depth + 1)
            }
            return .object(members)
        }
    }

    /// A non-canonical but valid spelling of `value`: random whitespace, escapes of every kind
    /// (including surrogate pairs and upper/lower-case hex), shuffled keys, "E" exponents.
    static func loose(_ value: JSONValue, _ rng: inout SplitMix) -> String {
        var out = ""
        loose(value, &rng, into: &out)
        return out
    }

    private static func whitespace(_ rng: inout SplitMix) -> String {
        ["", "", " ", "\n", "\t", "\r\n", "  \t"].randomElement(using: &rng)!
    }

    private static func hex4(_ value: UInt32, _ rng: inout SplitMix) -> String {
        let digits = String(value, radix: 16, uppercase: Bool.random(using: &rng))
        return "\\u" + String(repeating: "0", count: 4 - digits.count) + digits
    }

    private static func looseString(_ string: String, _ rng: inout SplitMix) -> String {
        var out = "\""
        for scalar in string.unicodeScalars {
            let short: [Unicode.Scalar: String] = ["\"": "\\\"", "\\": "\\\\", "/": "\\/", "\u{08}": "\\b",
                                                   "\u{0C}": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"]
            let mustEscape = scalar == "\"" || scalar == "\\" || scalar.value < 0x20
            switch Int.random(in: 0..<3, using: &rng) {
            case 0 where !mustEscape:
                out.unicodeScalars.append(scalar)
            case 1 where short[scalar] != nil:
                out += short[scalar]!
            default:
                if scalar.value > 0xFFFF {
                    let v = scalar.value - 0x10000
                    out += hex4(0xD800 + (v >> 10), &rng) + hex4(0xDC00 + (v & 0x3FF), &rng)
                } else {
                    out += hex4(scalar.value, &rng)
                }
            }
        }
        return out + "\""
    }

    private static func loose(_ value: JSONValue, _ rng: inout SplitMix, into out: inout String) {
        out += whitespace(&rng)
        switch value {
        case .null: out += "null"
        case .bool(let flag): out += flag ? "true" : "false"
        case .number(let number):
            let text = number.description
            out += Bool.random(using: &rng) ? String(text.map { $0 == "e" ? "E" : $0 }) : text
        case .string(let string): out += looseString(string, &rng)
        case .array(let elements):
            out += "["
            for (index, element) in elements.enumerated() {
                if index > 0 { out += whitespace(&rng) + "," }
                loose(element, &rng, into: &out)
                out += whitespace(&rng)
            }
            out += whitespace(&rng) + "]"
        case .object(let members):
            out += "{"
            for (index, key) in members.keys.shuffled(using: &rng).enumerated() {
                if index > 0 { out += "," }
                out += whitespace(&rng) + looseString(key, &rng) + whitespace(&rng) + ":"
                loose(members[key]!, &rng, into: &out)
                out += whitespace(&rng)
            }
            out += whitespace(&rng) + "}"
        }
        out += whitespace(&rng)
    }
}

/// Generates (value, seed for the loose spelling).
let jsonValueGen = Generator<(JSONValue, UInt64), Shrink.None<(JSONValue, UInt64)>>(run: { rng in
    var local = SplitMix(seed: rng.next())
    return (JSONGen.value(&local), rng.next())
})

/// Bit-exact equality of JSON values (numbers compared by bit pattern, so -0.0 ≠ 0.0).
func bitEqual(_ a: JSONValue, _ b: JSONValue) -> Bool {
    switch (a, b) {
    case (.number(let x), .number(let y)): return x.bitPattern == y.bitPattern
    case (.array(let xs), .array(let ys)): return xs.count == ys.count && zip(xs, ys).allSatisfy(bitEqual)
    case (.object(let xs), .object(let ys)):
        return xs.count == ys.count && xs.allSatisfy { key, x in ys[key].map { bitEqual(x, $0) } ?? false }
    default: return a == b
    }
}

/// Replaces -0.0 by 0.0 everywhere (canonical serialization prints -0.0 as "0").
func positiveZeros(_ value: JSONValue) -> JSONValue {
    switch value {
    case .number(let x): return .number(x == 0 ? 0 : x)
    case .array(let xs): return .array(xs.map(positiveZeros))
    case .object(let xs): return .object(xs.mapValues(positiveZeros))
    default: return value
    }
}

// MARK: - Round trips

@Suite("JSON round trips")
struct JSONRoundTripTests {
    @Test("parse(serialized()) reproduces every generated value bit for bit (apart from -0)")
    func canonicalRoundTrip() async {
        await propertyCheck(count: 400, input: jsonValueGen) { pair in
            let (value, _) = pair
            let text = value.serialized()
            let parsed = try JSONValue.parse(text)
            #expect(bitEqual(parsed, positiveZeros(value)), "text: \(text)")
            // Canonical: serializing again gives the same text, from String or from bytes.
            #expect(parsed.serialized() == text)
            #expect(try JSONValue.parse(Array(text.utf8)) == parsed)
        }
    }

    @Test("a loose spelling (whitespace, escapes, surrogate pairs, shuffled keys) parses to the same value")
    func looseRoundTrip() async {
        await propertyCheck(count: 400, input: jsonValueGen) { pair in
            let (value, seed) = pair
            var rng = SplitMix(seed: seed)
            let text = JSONGen.loose(value, &rng)
            let parsed = try JSONValue.parse(text)
            #expect(bitEqual(parsed, value), "text: \(text)")
            #expect(parsed.serialized() == value.serialized())
        }
    }

    @Test("serialized(into:) appends the same bytes as serialized(), and description matches")
    func serializeInto() async {
        await propertyCheck(count: 100, input: jsonValueGen) { pair in
            let (value, _) = pair
            var bytes: [UInt8] = Array("prefix".utf8)
            value.serialized(into: &bytes)
            #expect(bytes == Array("prefix".utf8) + Array(value.serialized().utf8))
            #expect(value.description == value.serialized())
        }
    }

    @Test("nesting up to maximumDepth round trips")
    func deepRoundTrip() throws {
        var value: JSONValue = ["leaf": 1]
        for level in 1..<JSONValue.maximumDepth {
            value = level % 2 == 0 ? .array([value, .null]) : .object(["k\(level % 3)": value])
        }
        let text = value.serialized()
        #expect(try JSONValue.parse(text) == value)
    }
}

// MARK: - Canonical serialization

@Suite("JSON canonical serialization")
struct JSONSerializationTests {
    @Test(arguments: [
        (JSONValue.null, "null"), (true, "true"), (false, "false"),
        (0, "0"), (.number(-0.0), "0"), (1, "1"), (-1, "-1"), (1.5, "1.5"), (-0.25, "-0.25"), (0.1, "0.1"),
        (1e18, "1000000000000000000"), (1e20, "1e+20"), (1e-7, "1e-07"), (.number(0x1p63), "9.223372036854776e+18"),
        (.number(-0x1p63), "-9223372036854775808"), (.number(0x1p63 - 1024), "9223372036854774784"),
        (1e300, "1e+300"), (.number(.leastNonzeroMagnitude), "5e-324"),
        (.number(.infinity), "null"), (.number(-.infinity), "null"), (.number(.nan), "null"),
        ("", "\"\""), ("a\"b\\c/d", "\"a\\\"b\\\\c/d\""),
        ("\n\r\t\u{08}\u{0C}\u{0}\u{1F}", "\"\\u000a\\u000d\\u0009\\u0008\\u000c\\u0000\\u001f\""),
        ("\u{7F}é中😀\u{2028}", "\"\u{7F}é中😀\u{2028}\""),
        ([], "[]"), ([:], "{}"), ([1, "x", nil, [true]], "[1,\"x\",null,[true]]"),
    ] as [(JSONValue, String)])
    func exactText(value: JSONValue, expected: String) {
        #expect(value.serialized() == expected)
    }

    @Test("object keys are sorted by UTF-8 bytes")
    func keyOrder() {
        let value: JSONValue = ["b": 1, "a": 2, "B": 3, "é": 4, "z": 5, "ab": 6, "": 7, "😀": 8, "\u{FFFD}": 9, "A": 10]
        #expect(value.serialized()
            == "{\"\":7,\"A\":10,\"B\":3,\"a\":2,\"ab\":6,\"b\":1,\"z\":5,\"é\":4,\"\u{FFFD}\":9,\"😀\":8}")
        // U+212B ANGSTROM SIGN sorts after U+00C6 by bytes (E2 84 AB > C3 86), though String's
        // normalizing comparison (U+212B ≡ U+00C5) puts it first.
        let angstrom: JSONValue = ["\u{212B}": 1, "\u{C6}": 2]
        #expect(angstrom.serialized() == "{\"\u{C6}\":2,\"\u{212B}\":1}")
    }

    @Test("keys sort bytewise, nested objects too, independent of insertion order")
    func keyOrderProperty() async {
        await propertyCheck(count: 200, input: jsonValueGen) { pair in
            let (value, seed) = pair
            var rng = SplitMix(seed: seed)
            // Rebuild every object with its keys inserted in a random order: same text.
            func reinsert(_ v: JSONValue) -> JSONValue {
                switch v {
                case .array(let xs): return .array(xs.map(reinsert))
                case .object(let xs):
                    var copy: [String: JSONValue] = [:]
                    for key in xs.keys.shuffled(using: &rng) { copy[key] = reinsert(xs[key]!) }
                    return .object(copy)
                default: return v
                }
            }
            #expect(reinsert(value).serialized() == value.serialized())
        }
    }

    @Test("integral numbers inside Int64 print without fraction or exponent")
    func integers() async {
        await propertyCheck(count: 300, input: Gen.int64(in: -(1 << 62)...(1 << 62))) { n throws in
            let value = Double(n)
            let text = JSONValue.number(value).serialized()
            #expect(text == String(Int64(value)))
            #expect(try JSONValue.parse(text) == .number(value))
        }
    }

    @Test("literals build the expected cases; repeated dictionary-literal keys keep the last value")
    func literals() {
        let value: JSONValue = ["k": 1, "k": 2]
        #expect(value == .object(["k": .number(2)]))
        #expect(JSONValue(nilLiteral: ()) == .null)
        #expect((2.5 as JSONValue) == .number(2.5))
        #expect(("s" as JSONValue) == .string("s"))
        #expect(([1, true] as JSONValue) == .array([.number(1), .bool(true)]))
    }
}

// MARK: - Parsing

@Suite("JSON parsing")
struct JSONParseTests {
    @Test(arguments: [
        ("null", JSONValue.null), (" \t\r\n true \n", true), ("false", false), ("0", 0), ("-0", .number(-0.0)),
        ("[]", []), ("{}", [:]), ("[ ]", []), ("{ }", [:]),
        ("\"\\u00e9\\u00C9\"", "éÉ"), ("\"\\ud83d\\ude00\"", "😀"), ("\"\\uDBFF\\uDFFF\"", "\u{10FFFF}"),
        ("\"\\u0000\"", "\u{0}"), ("\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"", "/\u{08}\u{0C}\n\r\t\"\\"),
        ("\"a\\u0301\"", "a\u{301}"), ("\"é😀\"", "é😀"),
        ("{\"a\":{\"b\":[1,{\"c\":null}]}}", ["a": ["b": [1, ["c": nil]]]]),
        ("1E2", 100), ("1e+2", 100), ("1e-2", 0.01), ("-1.5e3", -1500), ("0.000001", 1e-6), ("0e99999", 0),
        ("123456789012345678901234567890", 123456789012345678901234567890.0),
        ("9007199254740993", 9007199254740992), ("9007199254740995", 9007199254740996),
        ("-9223372036854775808", .number(-0x1p63)), ("18446744073709551615", .number(0x1p64)),
        ("1e-400", 0), ("2.2250738585072011e-308", .number(Double.leastNormalMagnitude.nextDown)),
        ("1.7976931348623157e308", .number(Double.greatestFiniteMagnitude)),
        ("4.9e-324", .number(.leastNonzeroMagnitude)), ("0.1e1", 1), ("1.00000000000000000000000000001", 1),
    ] as [(String, JSONValue)])
    func accepts(text: String, expected: JSONValue) throws {
        let parsed = try JSONValue.parse(text)
        #expect(bitEqual(parsed, expected), "\(text) parsed as \(parsed)")
    }

    @Test("-1e-400 underflows to -0.0 and -0 keeps its sign")
    func negativeZero() throws {
        for text in ["-1e-400", "-0", "-0.0", "-0e5"] {
            guard case .number(let value) = try JSONValue.parse(text) else {
                Issue.record("\(text) is not a number")
                continue
            }
            #expect(value == 0 && value.sign == .minus, "\(text)")
        }
    }

    @Test("duplicate keys: the last occurrence wins")
    func duplicateKeys() throws {
        #expect(try JSONValue.parse("{\"a\":1,\"b\":2,\"a\":3}") == ["a": 3, "b": 2])
        #expect(try JSONValue.parse("{\"a\":{\"x\":1},\"a\":[]}") == ["a": []])
        // Escaped and raw spellings of the same key are the same key.
        #expect(try JSONValue.parse("{\"\\u0061\":1,\"a\":2}") == ["a": 2])
    }

    @Test(arguments: [
        // (input, offset, reason fragment)
        ("", 0, "unexpected end of input, expected a value"),
        ("   ", 3, "unexpected end of input, expected a value"),
        ("[1,2,]", 5, "unexpected character ']', expected a value"),
        ("{\"a\":1,}", 7, "expected a string key in object, found character '}'"),
        ("{a:1}", 1, "expected a string key in object, found character 'a'"),
        ("{\"a\" 1}", 5, "expected ':' after object key, found character '1'"),
        ("{\"a\":1 \"b\":2}", 7, "expected ',' or '}' in object, found character '\"'"),
        ("[1 2]", 3, "expected ',' or ']' in array, found character '2'"),
        ("[1,2", 4, "unterminated array"),
        ("{\"a\":1", 6, "unterminated object"),
        ("{\"a\":", 5, "unexpected end of input, expected a value"),
        ("[", 1, "unexpected end of input, expected a value"),
        ("\"abc", 0, "unterminated string"),
        ("[\"abc", 1, "unterminated string"),
        ("[\"a\\nbc", 1, "unterminated string"),
        ("\"a\\", 0, "unterminated string"),
        ("\"ab\\x\"", 3, "invalid escape sequence '\\x'"),
        ("\"\\'\"", 1, "invalid escape sequence '\\''"),
        ("\"\\u12\"", 3, "truncated \\u escape"),
        ("\"\\u12G4\"", 5, "invalid hex digit in \\u escape"),
        ("\"\\uD800\"", 1, "unpaired high surrogate \\uD800"),
        ("\"x\\uD83D\\u0041\"", 2, "unpaired high surrogate \\uD83D"),
        ("\"x\\uD83Dabcdef\"", 2, "unpaired high surrogate \\uD83D"),
        ("\"\\uD83D\\uD83D\"", 1, "unpaired high surrogate \\uD83D"),
        ("\"\\uDC00\"", 1, "unpaired low surrogate \\uDC00"),
        ("\"ok\\uDE00\\uD83D\"", 3, "unpaired low surrogate \\uDE00"),
        ("\"a\tb\"", 2, "unescaped control character in string"),
        ("\"a\nb\"", 2, "unescaped control character in string"),
        ("\"a\\n\u{1}\"", 4, "unescaped control character in string"),
        ("NaN", 0, "unexpected character 'N', expected a value"),
        ("[NaN]", 1, "unexpected character 'N', expected a value"),
        ("Infinity", 0, "unexpected character 'I', expected a value"),
        ("-Infinity", 1, "expected a digit after '-'"),
        ("-", 1, "expected a digit after '-'"),
        ("+1", 0, "unexpected character '+', expected a value"),
        (".5", 0, "unexpected character '.', expected a value"),
        ("01", 0, "leading zeros are not allowed in numbers"),
        ("-01", 0, "leading zeros are not allowed in numbers"),
        ("[1,00]", 3, "leading zeros are not allowed in numbers"),
        ("1.", 2, "expected a digit after the decimal point"),
        ("1.e5", 2, "expected a digit after the decimal point"),
        ("1e", 2, "expected a digit in the exponent"),
        ("1e+", 3, "expected a digit in the exponent"),
        ("1e400", 0, "number out of range"),
        ("[0, -1.5e309]", 4, "number out of range"),
        ("0x10", 1, "unexpected character 'x' after the JSON value"),
        ("tru", 0, "invalid literal, expected 'true'"),
        ("nul", 0, "invalid literal, expected 'null'"),
        ("[fals]", 1, "invalid literal, expected 'false'"),
        ("True", 0, "unexpected character 'T', expected a value"),
        ("None", 0, "unexpected character 'N', expected a value"),
        ("'a'", 0, "unexpected character ''', expected a value"),
        ("[1] x", 4, "unexpected character 'x' after the JSON value"),
        ("1 2", 2, "unexpected character '2' after the JSON value"),
        ("{} {}", 3, "unexpected character '{' after the JSON value"),
        ("[1,\u{0C}2]", 3, "unexpected byte 0x0C, expected a value"),
        ("\u{A0}1", 0, "unexpected byte 0xC2, expected a value"),
        ("// c\n1", 0, "unexpected character '/', expected a value"),
        ("[1]\u{0}", 3, "unexpected byte 0x00 after the JSON value"),
    ] as [(String, Int, String)])
    func rejects(text: String, offset: Int, reason: String) throws {
        let error = try #require(parseError(text))
        #expect(error.offset == offset, "\(text): \(error)")
        #expect(error.reason.contains(reason), "\(text): \(error)")
        #expect(error.description == "invalid JSON at byte offset \(error.offset): \(error.reason)")
    }

    @Test("invalid UTF-8 inside strings is rejected at the opening quote")
    func invalidUTF8() throws {
        let cases: [[UInt8]] = [
            [0x22, 0xC3, 0x28, 0x22],  // bad continuation
            [0x22, 0xC0, 0xAF, 0x22],  // overlong '/'
            [0x22, 0xED, 0xA0, 0x80, 0x22],  // UTF-8-encoded surrogate
            [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],  // above U+10FFFF
            [0x22, 0xE2, 0x82, 0x22],  // truncated sequence
            [0x22, 0xFF, 0x22],
            [0x22, 0x5C, 0x6E, 0xC3, 0x22],  // after an escape (slow path)
        ]
        for bytes in cases {
            let error = try #require(parseError(bytes))
            #expect(error.offset == 0, "\(bytes)")
            #expect(error.reason == "invalid UTF-8 in string", "\(bytes)")
        }
        let nested = try #require(parseError([0x5B, 0x31, 0x2C, 0x22, 0xFF, 0x22, 0x5D]))
        #expect(nested.offset == 3)
    }

    @Test("nesting: maximumDepth levels parse, one more is rejected at the offending bracket")
    func depthLimit() throws {
        let depth = JSONValue.maximumDepth
        #expect(depth == 512)
        let ok = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        #expect(throws: Never.self) { try JSONValue.parse(ok) }
        let tooDeep = String(repeating: "[", count: depth + 1) + String(repeating: "]", count: depth + 1)
        let error = try #require(parseError(tooDeep))
        #expect(error.offset == depth)
        #expect(error.reason == "nesting deeper than 512 levels")
        // Mixed objects and arrays count alike.
        let mixed = String(repeating: "{\"a\":[", count: depth / 2) + "1" + String(repeating: "]}", count: depth / 2)
        #expect(throws: Never.self) { try JSONValue.parse(mixed) }
        let mixedTooDeep = "[" + mixed + "]"
        #expect(parseError(mixedTooDeep)?.reason == "nesting deeper than 512 levels")
        // Depth is about nesting, not about the number of containers.
        let wide = "[" + Array(repeating: String(repeating: "[", count: depth - 1) + String(repeating: "]", count: depth - 1),
                               count: 3).joined(separator: ",") + "]"
        #expect(throws: Never.self) { try JSONValue.parse(wide) }
    }

    @Test("parsing from an UnsafeRawBufferPointer sees only the given bytes")
    func rawBuffer() throws {
        let bytes = Array("[1,2]garbage".utf8)
        let value = try bytes.withUnsafeBytes { raw in
            try JSONValue.parse(UnsafeRawBufferPointer(rebasing: raw[0..<5]))
        }
        #expect(value == [1, 2])
        // A number running to the very end of the buffer (no terminator to peek at).
        let digits = Array("12345678901234567".utf8)
        for end in 1...digits.count {
            let prefix = Array(digits[0..<end])
            let parsed = try prefix.withUnsafeBytes { try JSONValue.parse($0) }
            #expect(parsed == .number(Double(String(decoding: prefix, as: UTF8.self))!))
        }
    }
}

// MARK: - Numbers against the standard library

/// Random JSON number texts: optional sign, integer part, fraction and exponent of varied lengths.
let numberTextGen = Generator<String, Shrink.None<String>>(run: { rng in
    var r = SplitMix(seed: rng.next())
    func digits(_ count: Int) -> String {
        String((0..<count).map { _ in Character(String(Int.random(in: 0...9, using: &r))) })
    }
    var text = Bool.random(using: &r) ? "-" : ""
    if Int.random(in: 0..<4, using: &r) == 0 {
        text += "0"
    } else {
        text += String(Int.random(in: 1...9, using: &r)) + digits(Int.random(in: 0...24, using: &r))
    }
    if Bool.random(using: &r) {
        let leadingZeros = Bool.random(using: &r) ? String(repeating: "0", count: Int.random(in: 0...30, using: &r)) : ""
        text += "." + leadingZeros + digits(Int.random(in: 1...25, using: &r))
    }
    if Bool.random(using: &r) {
        text += ["e", "E"].randomElement(using: &r)! + ["", "+", "-"].randomElement(using: &r)!
        let limit = [30, 330, 400].randomElement(using: &r)!
        text += String(Int.random(in: 0...limit, using: &r))
    }
    return text
})

/// `mantissa`e`exponent` texts inside the exact (non-Clinger) conversion range, plus exact
/// binary halfway points and their neighbours.
let exactRangeGen = Generator<String, Shrink.None<String>>(run: { rng in
    var r = SplitMix(seed: rng.next())
    switch Int.random(in: 0..<4, using: &r) {
    case 0:
        let mantissa = UInt64.random(in: 1...9_999_999_999_999_999_999, using: &r)
        return "\(mantissa)e\(Int.random(in: -27...27, using: &r))"
    case 1:
        // (2s+1)·2^k lies exactly halfway between two Doubles when s has 53 bits.
        let s = UInt64.random(in: (1 << 52)..<(1 << 53), using: &r)
        let halfway = (2 * s + 1) << UInt64(Int.random(in: 0...3, using: &r))  // < 2^57
        let nudge = Int.random(in: -1...1, using: &r)
        let p = Int.random(in: 0...2, using: &r)  // halfway·5^p × 10^-p = halfway × 2^-p, still a tie
        var power: UInt64 = 1
        for _ in 0..<p { power *= 5 }
        let mantissa = UInt64(Int64(halfway * power) + Int64(nudge))  // < 2^62
        return "\(mantissa)e-\(p)"
    case 2:
        // 17 to 22 significant digits with the point anywhere: around the 19-digit exact limit.
        var digits = String(Int.random(in: 1...9, using: &r))
        for _ in 0..<Int.random(in: 16...21, using: &r) { digits += String(Int.random(in: 0...9, using: &r)) }
        let point = Int.random(in: 1...digits.count, using: &r)
        let index = digits.index(digits.startIndex, offsetBy: point)
        return point == digits.count ? digits : digits[..<index] + "." + digits[index...]
    default:
        // The same digits with the decimal point moved into them.
        let mantissa = String(UInt64.random(in: 1_000_000_000_000_000...9_999_999_999_999_999_999, using: &r))
        let point = Int.random(in: 1..<mantissa.count, using: &r)
        let index = mantissa.index(mantissa.startIndex, offsetBy: point)
        return mantissa[..<index] + "." + mantissa[index...] + "e\(Int.random(in: -10...10, using: &r))"
    }
})

@Suite("JSON numbers")
struct JSONNumberTests {
    static func check(_ text: String) {
        let reference = Double(text)!
        if reference.isFinite {
            do {
                let parsed = try JSONValue.parse(text)
                guard case .number(let value) = parsed else {
                    Issue.record("\(text) parsed as \(parsed)")
                    return
                }
                #expect(value.bitPattern == reference.bitPattern, "\(text): got \(value), expected \(reference)")
            } catch {
                Issue.record("\(text) rejected: \(error)")
            }
        } else {
            let error = parseError(text)
            #expect(error?.reason == "number out of range", "\(text)")
            #expect(error?.offset == 0, "\(text)")
        }
    }

    @Test("numbers are correctly rounded (same as the standard library)")
    func randomNumbers() async {
        await propertyCheck(count: 3000, input: numberTextGen) { text in
            Self.check(text)
        }
    }

    @Test("exact-conversion range and halfway cases are correctly rounded (ties to even)")
    func exactRange() async {
        await propertyCheck(count: 3000, input: exactRangeGen) { text in
            Self.check(text)
        }
    }

    @Test("DecimalConversion matches the standard library wherever it answers")
    func decimalConversion() async {
        await propertyCheck(count: 2000, input: Gen.uint64(in: 1...9_999_999_999_999_999_999), Gen.int(in: -30...30)) { mantissa, exponent in
            let result = DecimalConversion.double(mantissa: mantissa, exponent: exponent)
            if abs(exponent) <= 27 {
                let value = try #require(result, "\(mantissa)e\(exponent)")
                #expect(value == Double("\(mantissa)e\(exponent)")!, "\(mantissa)e\(exponent)")
            } else {
                #expect(result == nil)
            }
        }
    }

    @Test(arguments: [
        "0.1", "0.2", "0.3", "1e23", "8.98846567431158e307", "2.2250738585072012e-308", "9007199254740993",
        "9007199254740992.5", "9007199254740993.0", "1.0000000000000002", "0.30000000000000004",
        "123456789012345678e-27", "9999999999999999999e27", "1844674407370955161.5", "18446744073709551616",
        "4.35679e-10", "7.2057594037927933e16", "0.0000000000000000000000000001234",
        // 20 significant digits: one more than the exact mantissa holds.
        "123456789012.34567890", "98765432109876.543210", "1234567890123456789.0", "18446744073709551617.0",
        // Just above a binary tie, where only bits beyond the first 64 break the tie (sticky bit).
        "3151145587325848924e-21", "2386889807186746408e16", "8142444636147605721e-12", "3675096638421497508e13",
        "929016891382203877e-9", "9577568230587826794e11",
        "1e-324", "3e-324", "2.4703282292062327e-324", "2.4703282292062328e-324",
        "1.7976931348623158e308", "1.7976931348623159e308", "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497791",
    ])
    func knownHardCases(text: String) {
        Self.check(text)
        Self.check("-" + text)
    }
}
