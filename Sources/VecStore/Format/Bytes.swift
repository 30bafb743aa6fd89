import Foundation

/// Little- and big-endian integer and float encoding into byte arrays, and bounds-checked decoding from
/// raw buffers. All multi-byte fields of the format are little-endian except key components, which are
/// big-endian so that LMDB's bytewise key order equals numeric order (Spec/FORMAT.md §Conventions).
extension Array where Element == UInt8 {
    @inline(__always) mutating func appendLE(_ v: UInt16) { append(UInt8(v & 0xff)); append(UInt8(v >> 8)) }
    @inline(__always) mutating func appendLE(_ v: UInt32) {
        append(UInt8(v & 0xff)); append(UInt8((v >> 8) & 0xff)); append(UInt8((v >> 16) & 0xff)); append(UInt8(v >> 24))
    }
    @inline(__always) mutating func appendBE(_ v: UInt32) {
        append(UInt8(v >> 24)); append(UInt8((v >> 16) & 0xff)); append(UInt8((v >> 8) & 0xff)); append(UInt8(v & 0xff))
    }
    @inline(__always) mutating func appendBE(_ v: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) { append(UInt8((v >> UInt64(shift)) & 0xff)) }
    }
    @inline(__always) mutating func appendLE(_ v: Float) { appendLE(v.bitPattern) }
}

/// A bounds-checked little-endian reader over a value read from the store.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    var offset = 0
    let context: String

    init(_ bytes: UnsafeRawBufferPointer, context: String) {
        self.bytes = bytes
        self.context = context
    }

    var remaining: Int { bytes.count - offset }

    mutating func need(_ n: Int) throws(VecStoreError) {
        if n < 0 || offset + n > bytes.count {
            throw .corrupt("\(context): record ends at byte \(bytes.count), needed \(n) bytes at offset \(offset)")
        }
    }
    mutating func u8() throws(VecStoreError) -> UInt8 {
        try need(1); defer { offset += 1 }; return bytes[offset]
    }
    mutating func u16() throws(VecStoreError) -> UInt16 {
        try need(2); defer { offset += 2 }
        return UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }
    mutating func u32() throws(VecStoreError) -> UInt32 {
        try need(4); defer { offset += 4 }
        return UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
    mutating func f32() throws(VecStoreError) -> Float { Float(bitPattern: try u32()) }
    mutating func slice(_ n: Int) throws(VecStoreError) -> UnsafeRawBufferPointer {
        try need(n); defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)])
    }
    mutating func string(_ n: Int) throws(VecStoreError) -> String {
        guard let text = decodeUTF8(try slice(n)) else {
            throw .corrupt("\(context): invalid UTF-8 at offset \(offset - n)")
        }
        return text
    }
}

/// The string these bytes encode, or nil when they are not valid UTF-8 (as `String(validating:as:)`).
/// ASCII bytes, the common case for ids and field names, take a fast path: the generic validating
/// initializer instantiates type metadata on every call, which showed as ~5% of a single HNSW query
/// on siftsmall (one id decoded per hit).
@inline(__always)
func decodeUTF8(_ bytes: UnsafeRawBufferPointer) -> String? {
    var ascii = true
    for b in bytes where b >= 0x80 {
        ascii = false
        break
    }
    if ascii { return String(decoding: bytes, as: UTF8.self) }
    return String(validating: bytes, as: UTF8.self)
}

@inline(__always)
func readBE32(_ p: UnsafeRawBufferPointer, at offset: Int) -> UInt32 {
    // A key shorter than expected reads as UInt32.max (no block, row or level has that number), never
    // past its end; callers check key lengths too.
    guard offset >= 0, offset + 4 <= p.count else { return .max }
    return UInt32(bigEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
}
