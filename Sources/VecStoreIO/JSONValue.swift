/// A JSON value as defined by RFC 8259.
///
/// Numbers are stored as `Double`; the parser never produces NaN or infinity.
/// Objects are unordered; `serialized()` prints their keys sorted by UTF-8 bytes so that
/// equal values always serialize to identical text.
public enum JSONValue: Sendable, Hashable {
    /// The JSON literal `null`.
    case null
    /// The JSON literals `true` and `false`.
    case bool(Bool)
    /// A JSON number.
    case number(Double)
    /// A JSON string.
    case string(String)
    /// A JSON array.
    case array([JSONValue])
    /// A JSON object. When a document repeats a key, the last occurrence wins.
    case object([String: JSONValue])
}

// MARK: - Literals

extension JSONValue: ExpressibleByNilLiteral {
    /// Creates `.null` from the `nil` literal.
    public init(nilLiteral: ()) {
        self = .null
    }
}

extension JSONValue: ExpressibleByBooleanLiteral {
    /// Creates `.bool` from a Boolean literal.
    public init(booleanLiteral value: Bool) {
        self = .bool(value)
    }
}

extension JSONValue: ExpressibleByIntegerLiteral {
    /// Creates `.number` from an integer literal.
    public init(integerLiteral value: Int) {
        self = .number(Double(value))
    }
}

extension JSONValue: ExpressibleByFloatLiteral {
    /// Creates `.number` from a floating-point literal.
    public init(floatLiteral value: Double) {
        self = .number(value)
    }
}

extension JSONValue: ExpressibleByStringLiteral {
    /// Creates `.string` from a string literal.
    public init(stringLiteral value: String) {
        self = .string(value)
    }
}

extension JSONValue: ExpressibleByArrayLiteral {
    /// Creates `.array` from an array literal.
    public init(arrayLiteral elements: JSONValue...) {
        self = .array(elements)
    }
}

extension JSONValue: ExpressibleByDictionaryLiteral {
    /// Creates `.object` from a dictionary literal; for repeated keys the last value wins.
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}

// MARK: - Description

extension JSONValue: CustomStringConvertible {
    /// The canonical serialization of the value (see `serialized()`).
    public var description: String {
        serialized()
    }
}

extension JSONValue {
    /// A short name of the value's JSON type, for error messages ("string", "number", ...).
    var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }
}

// MARK: - Serialization

extension JSONValue {
    /// Returns the canonical JSON text of the value.
    ///
    /// Canonical form: no whitespace; object keys sorted by their UTF-8 bytes; numbers that are
    /// integers representable in `Int64` printed without fraction or exponent (so `-0.0` prints
    /// as `0`), all other numbers printed with Swift's shortest round-trip `Double.description`;
    /// strings escape only `"`, `\` and control characters (as `\u00XX`), everything else is
    /// emitted as raw UTF-8.
    public func serialized() -> String {
        var bytes: [UInt8] = []
        serialized(into: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends the canonical JSON text of the value (see `serialized()`) as UTF-8 to `output`.
    public func serialized(into output: inout [UInt8]) {
        switch self {
        case .null:
            output.append(contentsOf: "null".utf8)
        case .bool(let value):
            output.append(contentsOf: (value ? "true" : "false").utf8)
        case .number(let value):
            Self.appendNumber(value, to: &output)
        case .string(let value):
            Self.appendString(value, to: &output)
        case .array(let elements):
            output.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                element.serialized(into: &output)
            }
            output.append(UInt8(ascii: "]"))
        case .object(let members):
            output.append(UInt8(ascii: "{"))
            let keys = members.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            for (index, key) in keys.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                Self.appendString(key, to: &output)
                output.append(UInt8(ascii: ":"))
                members[key, default: .null].serialized(into: &output)
            }
            output.append(UInt8(ascii: "}"))
        }
    }

    private static func appendNumber(_ value: Double, to output: inout [UInt8]) {
        // 2^63 is exactly representable; every integral Double in [-2^63, 2^63) fits in Int64.
        if value.rounded(.towardZero) == value, value >= -0x1p63, value < 0x1p63 {
            output.append(contentsOf: String(Int64(value)).utf8)
        } else if value.isFinite {
            output.append(contentsOf: value.description.utf8)
        } else {
            // Cannot come from the parser; only from a hand-built value. JSON has no spelling.
            output.append(contentsOf: "null".utf8)
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    private static func appendString(_ value: String, to output: inout [UInt8]) {
        output.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                output.append(UInt8(ascii: "\\"))
                output.append(byte)
            case 0..<0x20:
                output.append(contentsOf: "\\u00".utf8)
                output.append(hexDigits[Int(byte >> 4)])
                output.append(hexDigits[Int(byte & 0xF)])
            default:
                output.append(byte)
            }
        }
        output.append(UInt8(ascii: "\""))
    }
}
