import Foundation
import PropertyBased
import Testing
@testable import VecStore

@Suite("Format codecs")
struct CodecTests {
    @Test("collection records round trip")
    func collectionRecord() async {
        await propertyCheck(input: Gen.uint32(), Gen.int(in: 1...65_535), Gen.element(of: Metric.allCases).map { $0 ?? .cosine },
                            Gen.uint32()) { id, dim, metric, next in
            let record = CollectionRecord(id: id, dimension: dim, metric: metric,
                                          blockShift: Format.blockShift(dimension: dim), nextInternalID: next,
                                          liveCount: next / 2)
            let bytes = record.encoded()
            #expect(bytes.count == 24)
            let decoded = bytes.withUnsafeBytes { try? CollectionRecord.decode($0, name: "t") }
            #expect(decoded == record)
        }
    }

    @Test("document records round trip, and truncated records are reported as damage")
    func documentRecord() async {
        let chars = Gen.character(in: "\u{20}"..."\u{2FF}")
        await propertyCheck(input: chars.string(of: 1...40), chars.string(of: 0...200), Gen.bool,
                            Gen.float(in: 0...1000)) { id, text, hasText, norm in
            let record = DocumentRecord(externalID: id, norm: norm, text: hasText ? text : nil,
                                        metadataJSON: Array(#"{"k":1}"#.utf8))
            let bytes = record.encoded()
            let decoded = bytes.withUnsafeBytes { try? DocumentRecord.decode($0, context: "t") }
            #expect(decoded?.externalID == id)
            #expect(decoded?.text == record.text)
            #expect(decoded?.norm == norm)
            #expect(decoded?.metadataJSON == record.metadataJSON)
            let cut = Array(bytes.dropLast())
            #expect(throws: VecStoreError.self) { try cut.withUnsafeBytes { try DocumentRecord.decode($0, context: "t") } }
        }
    }

    @Test("UTF-8 decoding agrees with String(validating:) on ASCII, multi-byte, invalid and empty bytes")
    func utf8Decoding() {
        let cases: [[UInt8]] = [
            [], Array("doc-17".utf8), Array("café ✓ 𝄞".utf8), [0x61, 0x80], [0xC3], [0xE2, 0x82], [0xFF, 0x61],
            [0xED, 0xA0, 0x80], Array("a\u{0}b".utf8),
        ]
        for bytes in cases {
            let got = bytes.withUnsafeBytes { decodeUTF8($0) }
            let want = bytes.withUnsafeBytes { String(validating: $0, as: UTF8.self) }
            #expect(got == want, "\(bytes)")
        }
    }

    @Test("rows per block: a power of two, at least 64, block value at most 1 MiB when possible")
    func blockShift() async {
        await propertyCheck(input: Gen.int(in: 1...8192)) { dim in
            let shift = Format.blockShift(dimension: dim)
            let rows = 1 << Int(shift)
            #expect(rows >= 64)
            if rows > 64 { #expect(rows * (dim + 1) * 4 <= 1 << 20) }
            #expect(rows * 2 * (dim + 1) * 4 > 1 << 20 || rows == 1 << 20)
        }
        #expect(1 << Int(Format.blockShift(dimension: 384)) == 512)
        #expect(1 << Int(Format.blockShift(dimension: 128)) == 1024)
    }
}
