import VecStoreIO

/// Keys of the `fields` index: `collection (BE u32) · field name (UTF-8) · 0x00 · type tag · value`,
/// each holding the sorted internal ids (BE u32) of the documents with that value (Spec §fields).
enum FieldKey {
    static let boolTag: UInt8 = 0x01
    static let numberTag: UInt8 = 0x02
    static let stringTag: UInt8 = 0x03

    /// `collection · name · 0x00`: prefix of every key of one field.
    static func fieldPrefix(_ collection: UInt32, _ name: String) -> [UInt8] {
        var k = Format.prefix(collection)
        k.append(contentsOf: name.utf8)
        k.append(0)
        return k
    }

    /// The order-preserving 8-byte encoding of a double: negative values have all bits flipped,
    /// others only the sign bit, so bytewise order equals numeric order. −0 is stored as +0.
    static func encodeNumber(_ x: Double) -> UInt64 {
        let bits = (x == 0 ? 0.0 : x).bitPattern
        return bits & (1 << 63) != 0 ? ~bits : bits | (1 << 63)
    }

    static func decodeNumber(_ v: UInt64) -> Double {
        Double(bitPattern: v & (1 << 63) != 0 ? v & ~(1 << 63) : ~v)
    }

    /// The key for one scalar value; nil for values that are not indexable scalars.
    /// `truncated` is true when a long string had to be cut to fit LMDB's key limit.
    static func key(_ collection: UInt32, _ name: String, _ value: JSONValue) -> (key: [UInt8], truncated: Bool)? {
        var k = fieldPrefix(collection, name)
        switch value {
        case .bool(let b):
            k.append(boolTag)
            k.append(b ? 1 : 0)
        case .number(let x):
            k.append(numberTag)
            k.appendBE(encodeNumber(x))
        case .string(let s):
            k.append(stringTag)
            let room = Format.maxKeyBytes - k.count
            let bytes = Array(s.utf8)
            if bytes.count > room {
                k.append(contentsOf: bytes[0..<room])
                return (k, true)
            }
            k.append(contentsOf: bytes)
        default:
            return nil
        }
        return (k, false)
    }

    /// Every index key of a document's metadata: one per scalar value, one per array element.
    static func keys(_ collection: UInt32, _ metadata: [String: JSONValue]) -> [[UInt8]] {
        var result: [[UInt8]] = []
        for (name, value) in metadata {
            if case .array(let items) = value {
                var seen = Set<[UInt8]>()
                for item in items { if let k = key(collection, name, item)?.key, seen.insert(k).inserted { result.append(k) } }
            } else if let k = key(collection, name, value)?.key {
                result.append(k)
            }
        }
        return result
    }
}
