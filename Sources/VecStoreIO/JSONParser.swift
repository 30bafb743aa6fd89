/// An error found while parsing JSON text.
public struct JSONParseError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The 0-based byte offset in the input where the problem was detected.
    public var offset: Int
    /// What is wrong, e.g. "expected ',' or ']' in array".
    public var reason: String

    /// Creates an error at `offset` with the given `reason`.
    public init(offset: Int, reason: String) {
        self.offset = offset
        self.reason = reason
    }

    /// A readable message such as "invalid JSON at byte offset 12: unterminated string".
    public var description: String {
        "invalid JSON at byte offset \(offset): \(reason)"
    }
}

extension JSONValue {
    /// The maximum nesting depth of arrays and objects accepted by `parse`.
    public static let maximumDepth = 512

    /// Parses one JSON document (RFC 8259) from UTF-8 bytes.
    ///
    /// Whitespace may surround the value; anything else after it is an error. Strings must be
    /// valid UTF-8 and may not contain unpaired surrogate escapes. Numbers whose magnitude
    /// overflows `Double` are rejected; numbers that underflow become zero. Nesting deeper than
    /// `maximumDepth` is rejected.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(JSONParseError) -> JSONValue {
        var parser = JSONParser(bytes)
        return try parser.parseDocument()
    }

    /// Parses one JSON document from a string (see `parse(_:)` for the accepted syntax).
    public static func parse(_ string: String) throws(JSONParseError) -> JSONValue {
        var text = string
        return try text.withUTF8 { utf8 in
            Result { () throws(JSONParseError) in try parse(UnsafeRawBufferPointer(utf8)) }
        }.get()
    }

    /// Parses one JSON document from UTF-8 bytes (see `parse(_:)` for the accepted syntax).
    public static func parse(_ bytes: [UInt8]) throws(JSONParseError) -> JSONValue {
        try bytes.withUnsafeBytes { raw in
            Result { () throws(JSONParseError) in try parse(raw) }
        }.get()
    }
}

// MARK: - Parser

private enum ASCII {
    static let tab = UInt8(ascii: "\t")
    static let newline = UInt8(ascii: "\n")
    static let carriageReturn = UInt8(ascii: "\r")
    static let space = UInt8(ascii: " ")
    static let quote = UInt8(ascii: "\"")
    static let backslash = UInt8(ascii: "\\")
    static let slash = UInt8(ascii: "/")
    static let comma = UInt8(ascii: ",")
    static let colon = UInt8(ascii: ":")
    static let minus = UInt8(ascii: "-")
    static let plus = UInt8(ascii: "+")
    static let dot = UInt8(ascii: ".")
    static let zero = UInt8(ascii: "0")
    static let nine = UInt8(ascii: "9")
    static let lowerE = UInt8(ascii: "e")
    static let upperE = UInt8(ascii: "E")
    static let openBracket = UInt8(ascii: "[")
    static let closeBracket = UInt8(ascii: "]")
    static let openBrace = UInt8(ascii: "{")
    static let closeBrace = UInt8(ascii: "}")
}

/// A recursive-descent JSON parser over a borrowed UTF-8 buffer.
struct JSONParser {
    private let bytes: UnsafeRawBufferPointer
    private var position = 0
    private var depth = 0

    init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        let value = try parseValue()
        skipWhitespace()
        if position < bytes.count {
            throw error("unexpected \(describeByte(at: position)) after the JSON value")
        }
        return value
    }

    // MARK: Helpers

    private func error(_ reason: String, at offset: Int? = nil) -> JSONParseError {
        JSONParseError(offset: offset ?? position, reason: reason)
    }

    private func describeByte(at offset: Int) -> String {
        guard offset < bytes.count else { return "end of input" }
        let byte = bytes[offset]
        if byte >= 0x21 && byte < 0x7F {
            return "character '\(Character(Unicode.Scalar(byte)))'"
        }
        let hex = String(byte, radix: 16, uppercase: true)
        return "byte 0x\(byte < 0x10 ? "0" : "")\(hex)"
    }

    @inline(__always)
    private mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case ASCII.space, ASCII.newline, ASCII.carriageReturn, ASCII.tab:
                position += 1
            default:
                return
            }
        }
    }

    @inline(__always)
    private static func isDigit(_ byte: UInt8) -> Bool {
        byte &- ASCII.zero < 10
    }

    /// The value of 8 ASCII digits loaded as a (host-order) UInt64, or nil if any byte is not a digit.
    @inline(__always)
    private static func eightDigits(_ raw: UInt64) -> UInt64? {
        let word = UInt64(littleEndian: raw)
        let highNibbles = word & 0xF0F0_F0F0_F0F0_F0F0
        let carry = ((word &+ 0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0) >> 4
        guard highNibbles | carry == 0x3333_3333_3333_3333 else { return nil }
        var value = word &- 0x3030_3030_3030_3030
        value = value &* 10 &+ (value >> 8)
        let low = (value & 0x0000_00FF_0000_00FF) &* (100 &+ (1_000_000 << 32))
        let high = ((value >> 16) & 0x0000_00FF_0000_00FF) &* (1 &+ (10_000 << 32))
        return (low &+ high) >> 32
    }

    // MARK: Values

    private mutating func parseValue() throws(JSONParseError) -> JSONValue {
        skipWhitespace()
        guard position < bytes.count else { throw error("unexpected end of input, expected a value") }
        switch bytes[position] {
        case ASCII.openBrace:
            return try parseObject()
        case ASCII.openBracket:
            return try parseArray()
        case ASCII.quote:
            return .string(try parseString())
        case UInt8(ascii: "t"):
            try expectLiteral("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expectLiteral("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expectLiteral("null")
            return .null
        case ASCII.minus, ASCII.zero...ASCII.nine:
            return .number(try parseNumber())
        default:
            throw error("unexpected \(describeByte(at: position)), expected a value")
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        let count = literal.utf8CodeUnitCount
        let start = literal.utf8Start
        for index in 0..<count {
            guard position + index < bytes.count, bytes[position + index] == start[index] else {
                throw error("invalid literal, expected '\(literal)'")
            }
        }
        position += count
    }

    private mutating func enterContainer() throws(JSONParseError) {
        depth += 1
        if depth > JSONValue.maximumDepth {
            throw error("nesting deeper than \(JSONValue.maximumDepth) levels")
        }
    }

    private mutating func parseArray() throws(JSONParseError) -> JSONValue {
        try enterContainer()
        defer { depth -= 1 }
        position += 1  // '['
        var elements: [JSONValue] = []
        skipWhitespace()
        if position < bytes.count, bytes[position] == ASCII.closeBracket {
            position += 1
            return .array(elements)
        }
        while true {
            elements.append(try parseValue())
            skipWhitespace()
            guard position < bytes.count else { throw error("unterminated array") }
            let byte = bytes[position]
            position += 1
            if byte == ASCII.comma { continue }
            if byte == ASCII.closeBracket { return .array(elements) }
            throw error("expected ',' or ']' in array, found \(describeByte(at: position - 1))", at: position - 1)
        }
    }

    private mutating func parseObject() throws(JSONParseError) -> JSONValue {
        try enterContainer()
        defer { depth -= 1 }
        position += 1  // '{'
        var members: [String: JSONValue] = [:]
        skipWhitespace()
        if position < bytes.count, bytes[position] == ASCII.closeBrace {
            position += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard position < bytes.count, bytes[position] == ASCII.quote else {
                throw error("expected a string key in object, found \(describeByte(at: position))")
            }
            let key = try parseString()
            skipWhitespace()
            guard position < bytes.count, bytes[position] == ASCII.colon else {
                throw error("expected ':' after object key, found \(describeByte(at: position))")
            }
            position += 1
            members[key] = try parseValue()
            skipWhitespace()
            guard position < bytes.count else { throw error("unterminated object") }
            let byte = bytes[position]
            position += 1
            if byte == ASCII.comma { continue }
            if byte == ASCII.closeBrace { return .object(members) }
            throw error("expected ',' or '}' in object, found \(describeByte(at: position - 1))", at: position - 1)
        }
    }

    // MARK: Strings

    /// Parses a string starting at the opening quote.
    private mutating func parseString() throws(JSONParseError) -> String {
        let quoteOffset = position
        let start = position + 1
        var index = start
        var isASCII = true
        while index < bytes.count {
            let byte = bytes[index]
            if byte == ASCII.quote {
                position = index + 1
                return try makeString(UnsafeRawBufferPointer(rebasing: bytes[start..<index]),
                                      isASCII: isASCII, offset: quoteOffset)
            }
            if byte == ASCII.backslash {
                return try parseEscapedString(start: start, firstEscape: index)
            }
            if byte < 0x20 {
                throw error("unescaped control character in string", at: index)
            }
            if byte >= 0x80 { isASCII = false }
            index += 1
        }
        throw error("unterminated string", at: quoteOffset)
    }

    private func makeString(_ utf8: UnsafeRawBufferPointer, isASCII: Bool, offset: Int) throws(JSONParseError) -> String {
        if isASCII {
            return String(decoding: utf8, as: UTF8.self)
        }
        guard let string = String(validating: utf8, as: UTF8.self) else {
            throw error("invalid UTF-8 in string", at: offset)
        }
        return string
    }

    private mutating func parseEscapedString(start: Int, firstEscape: Int) throws(JSONParseError) -> String {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(firstEscape - start + 16)
        buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start..<firstEscape]))
        var isASCII = !buffer.contains { $0 >= 0x80 }
        var index = firstEscape
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case ASCII.quote:
                position = index + 1
                return try buffer.withUnsafeBytes { raw in
                    Result { () throws(JSONParseError) in
                        try makeString(raw, isASCII: isASCII, offset: start - 1)
                    }
                }.get()
            case ASCII.backslash:
                guard index + 1 < bytes.count else { throw error("unterminated string", at: start - 1) }
                let escape = bytes[index + 1]
                index += 2
                switch escape {
                case ASCII.quote, ASCII.backslash, ASCII.slash: buffer.append(escape)
                case UInt8(ascii: "b"): buffer.append(0x08)
                case UInt8(ascii: "f"): buffer.append(0x0C)
                case UInt8(ascii: "n"): buffer.append(0x0A)
                case UInt8(ascii: "r"): buffer.append(0x0D)
                case UInt8(ascii: "t"): buffer.append(0x09)
                case UInt8(ascii: "u"):
                    let scalar = try parseUnicodeEscape(at: &index)
                    if scalar.value >= 0x80 { isASCII = false }
                    UTF8.encode(scalar) { buffer.append($0) }
                default:
                    throw error("invalid escape sequence '\\\(Character(Unicode.Scalar(escape)))'", at: index - 2)
                }
            case 0..<0x20:
                throw error("unescaped control character in string", at: index)
            default:
                if byte >= 0x80 { isASCII = false }
                buffer.append(byte)
                index += 1
            }
        }
        throw error("unterminated string", at: start - 1)
    }

    /// Parses the 4 hex digits after `\u` (index points at the first digit), and a following
    /// `\uXXXX` low surrogate when the first is a high surrogate.
    private func parseUnicodeEscape(at index: inout Int) throws(JSONParseError) -> Unicode.Scalar {
        let escapeStart = index - 2
        let first = try parseHex4(at: index)
        index += 4
        switch first {
        case 0xD800...0xDBFF:
            guard index + 1 < bytes.count,
                  bytes[index] == ASCII.backslash, bytes[index + 1] == UInt8(ascii: "u") else {
                throw error("unpaired high surrogate \\u\(String(first, radix: 16, uppercase: true))", at: escapeStart)
            }
            let second = try parseHex4(at: index + 2)
            guard (0xDC00...0xDFFF).contains(second) else {
                throw error("unpaired high surrogate \\u\(String(first, radix: 16, uppercase: true))", at: escapeStart)
            }
            index += 6
            let value = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            guard let scalar = Unicode.Scalar(value) else {
                throw error("invalid unicode escape", at: escapeStart)
            }
            return scalar
        case 0xDC00...0xDFFF:
            throw error("unpaired low surrogate \\u\(String(first, radix: 16, uppercase: true))", at: escapeStart)
        default:
            guard let scalar = Unicode.Scalar(first) else {
                throw error("invalid unicode escape", at: escapeStart)
            }
            return scalar
        }
    }

    private func parseHex4(at index: Int) throws(JSONParseError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw error("truncated \\u escape", at: index) }
        var value: UInt32 = 0
        for offset in index..<(index + 4) {
            let byte = bytes[offset]
            let digit: UInt8
            switch byte {
            case ASCII.zero...ASCII.nine: digit = byte - ASCII.zero
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw error("invalid hex digit in \\u escape", at: offset)
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    // MARK: Numbers

    private mutating func parseNumber() throws(JSONParseError) -> Double {
        let start = position
        var index = position
        let count = bytes.count
        var negative = false
        if bytes[index] == ASCII.minus {
            negative = true
            index += 1
        }
        guard index < count, Self.isDigit(bytes[index]) else {
            throw error("expected a digit after '-'", at: index)
        }

        // Up to 19 significant digits are accumulated exactly (10^19 - 1 < 2^64).
        var mantissa: UInt64 = 0
        var digitCount = 0
        var exponent = 0
        var exact = true  // false once a significant digit did not fit in the mantissa
        if bytes[index] == ASCII.zero {
            index += 1
            if index < count, Self.isDigit(bytes[index]) {
                throw error("leading zeros are not allowed in numbers", at: start)
            }
        } else {
            while index < count, Self.isDigit(bytes[index]) {
                if digitCount < 19 {
                    mantissa = mantissa &* 10 &+ UInt64(bytes[index] &- ASCII.zero)
                    digitCount += 1
                } else {
                    exact = false
                }
                index += 1
            }
        }
        if index < count, bytes[index] == ASCII.dot {
            index += 1
            let fractionStart = index
            guard index < count, Self.isDigit(bytes[index]) else {
                throw error("expected a digit after the decimal point", at: index)
            }
            if mantissa == 0 {
                while index < count, bytes[index] == ASCII.zero { index += 1 }
            }
            while digitCount <= 11, index + 8 <= count,
                  let chunk = Self.eightDigits(bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)) {
                mantissa = mantissa &* 100_000_000 &+ chunk
                digitCount += 8
                index += 8
            }
            while index < count, Self.isDigit(bytes[index]) {
                if digitCount < 19 {
                    mantissa = mantissa &* 10 &+ UInt64(bytes[index] &- ASCII.zero)
                    digitCount += 1
                } else {
                    exact = false
                }
                index += 1
            }
            exponent = fractionStart - index
        }
        if index < count, bytes[index] == ASCII.lowerE || bytes[index] == ASCII.upperE {
            index += 1
            var exponentNegative = false
            if index < count, bytes[index] == ASCII.minus || bytes[index] == ASCII.plus {
                exponentNegative = bytes[index] == ASCII.minus
                index += 1
            }
            guard index < count, Self.isDigit(bytes[index]) else {
                throw error("expected a digit in the exponent", at: index)
            }
            var explicit = 0
            while index < count, Self.isDigit(bytes[index]) {
                if explicit < 1_000_000 {
                    explicit = explicit * 10 + Int(bytes[index] &- ASCII.zero)
                }
                index += 1
            }
            exponent += exponentNegative ? -explicit : explicit
        }
        position = index

        if mantissa == 0 && exact {
            return negative ? -0.0 : 0.0
        }
        if exact, let magnitude = DecimalConversion.double(mantissa: mantissa, exponent: exponent) {
            return negative ? -magnitude : magnitude
        }
        // Slow path: too many digits or a far exponent. Swift's parser is correctly rounded
        // and locale-independent; the text was already validated against the JSON grammar.
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let value = Double(text), value.isFinite else {
            throw error("number out of range", at: start)
        }
        return value
    }
}

/// Correctly rounded conversion of `mantissa × 10^exponent` to `Double` for the common cases.
enum DecimalConversion {
    private static let exactPowersOfTen: [Double] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ]

    /// 5^0 ... 5^27; 5^27 < 2^63.
    private static let powersOfFive: [UInt64] = {
        var powers: [UInt64] = [1]
        for _ in 1...27 { powers.append(powers[powers.count - 1] * 5) }
        return powers
    }()

    /// Returns the correctly rounded (ties-to-even) `Double` nearest `mantissa × 10^exponent`, or
    /// nil when the inputs are outside the range handled exactly here (|exponent| > 27).
    /// `mantissa` must be non-zero.
    static func double(mantissa: UInt64, exponent: Int) -> Double? {
        // Clinger's fast path: both operands exact, one correctly rounded operation.
        if mantissa <= 1 << 53, exponent >= -22, exponent <= 22 {
            let value = Double(mantissa)
            return exponent >= 0 ? value * exactPowersOfTen[exponent] : value / exactPowersOfTen[-exponent]
        }
        guard exponent >= -27, exponent <= 27 else { return nil }
        // 10^e = 5^e × 2^e: compute with exact integer arithmetic, then round once.
        if exponent >= 0 {
            let product = mantissa.multipliedFullWidth(by: powersOfFive[exponent])
            return round(high: product.high, low: product.low, binaryExponent: exponent)
        }
        let power = -exponent
        let divisor = powersOfFive[power]
        let mantissaShift = mantissa.leadingZeroBitCount
        let divisorShift = divisor.leadingZeroBitCount
        let numerator = mantissa << mantissaShift  // in [2^63, 2^64)
        let denominator = divisor << divisorShift  // in [2^63, 2^64)
        // Quotient normalized to [2^63, 2^64); the high word is always below the denominator.
        let quotient: UInt64
        let remainder: UInt64
        var binaryExponent = divisorShift - mantissaShift - power
        if numerator < denominator {
            (quotient, remainder) = denominator.dividingFullWidth((high: numerator, low: 0))
            binaryExponent -= 64
        } else {
            (quotient, remainder) = denominator.dividingFullWidth((high: numerator >> 1, low: numerator << 63))
            binaryExponent -= 63
        }
        return round(normalized: quotient, sticky: remainder != 0, binaryExponent: binaryExponent)
    }

    /// Rounds the 128-bit value `(high, low) × 2^binaryExponent` to a Double.
    private static func round(high: UInt64, low: UInt64, binaryExponent: Int) -> Double {
        if high == 0 {
            let shift = low.leadingZeroBitCount
            return round(normalized: low << shift, sticky: false, binaryExponent: binaryExponent - shift)
        }
        let shift = high.leadingZeroBitCount
        let top = (high << shift) | (low >> (64 - shift))  // Swift shifts saturate: low >> 64 == 0
        let rest = low << shift
        return round(normalized: top, sticky: rest != 0, binaryExponent: binaryExponent + 64 - shift)
    }

    /// Rounds `(value + δ) × 2^binaryExponent` to a Double, where `value` has its top bit set and
    /// `sticky` tells whether the discarded fraction δ ∈ [0, 1) is non-zero. The result must be
    /// a normal Double (guaranteed by the callers' ranges).
    private static func round(normalized value: UInt64, sticky: Bool, binaryExponent: Int) -> Double {
        var significand = value >> 11
        let rest = value & 0x7FF
        if rest > 0x400 || (rest == 0x400 && (sticky || significand & 1 == 1)) {
            significand += 1
        }
        var exponent = binaryExponent + 11
        if significand == 1 << 53 {
            significand >>= 1
            exponent += 1
        }
        return Double(sign: .plus, exponent: exponent, significand: Double(significand))
    }
}
