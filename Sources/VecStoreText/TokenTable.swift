/// An open-addressing hash table from token bytes to a term id, so the analyzer looks a token up
/// without building a `String` or running the seeded SipHash of `Dictionary` (one lookup per token
/// is the analyzer's hot path).
struct TokenTable {
    private var slots: [Int32]  // entry + 1; 0 = empty
    private var hashes: [UInt64] = []
    private var offsets: [Int32] = []
    private var lengths: [Int32] = []
    private var values: [Int32] = []
    private var arena: [UInt8] = []
    private var mask: Int

    init(capacity: Int = 4096) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = [Int32](repeating: 0, count: size)
        mask = size - 1
    }

    /// Number of tokens stored.
    var count: Int { values.count }

    /// FNV-1a over the bytes, then a 64-bit finaliser so low bits mix well.
    @inline(__always)
    static func hash(_ p: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in p { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        h ^= h >> 33
        h &*= 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        return h
    }

    @inline(__always)
    func find(_ p: UnsafeBufferPointer<UInt8>, hash h: UInt64) -> Int32? {
        var i = Int(truncatingIfNeeded: h) & mask
        while true {
            let s = slots[i]
            if s == 0 { return nil }
            let e = Int(s - 1)
            if hashes[e] == h && Int(lengths[e]) == p.count {
                let start = Int(offsets[e])
                var equal = true
                for j in 0..<p.count where arena[start + j] != p[j] {
                    equal = false
                    break
                }
                if equal { return values[e] }
            }
            i = (i + 1) & mask
        }
    }

    mutating func insert(_ p: UnsafeBufferPointer<UInt8>, hash h: UInt64, value: Int32) {
        if (values.count + 1) * 2 > slots.count { grow() }
        let e = values.count
        hashes.append(h)
        offsets.append(Int32(arena.count))
        lengths.append(Int32(p.count))
        values.append(value)
        arena.append(contentsOf: p)
        place(e)
    }

    private mutating func place(_ e: Int) {
        var i = Int(truncatingIfNeeded: hashes[e]) & mask
        while slots[i] != 0 { i = (i + 1) & mask }
        slots[i] = Int32(e + 1)
    }

    private mutating func grow() {
        slots = [Int32](repeating: 0, count: slots.count * 2)
        mask = slots.count - 1
        for e in 0..<values.count { place(e) }
    }

    mutating func removeAll() {
        self = TokenTable()
    }
}
