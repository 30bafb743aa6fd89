import Testing
import VecStoreKernels
@testable import VecStoreQuant

@Suite struct IVFListBlockTests {
    func sampleBlock(_ kind: IVFPayloadKind, rows: Int = 37, width: Int = 6) throws -> [UInt8] {
        let ids = (0..<rows).map { UInt32($0 * 3 + 1) }
        var payload = [UInt8](repeating: 0, count: kind.payloadBytes(count: rows, width: width))
        switch kind {
        case .flat:
            payload = FloatMatrixRecord.encode((0..<(rows * width)).map { Float($0) * 0.25 })
        case .flat16:
            let x = (0..<(rows * width)).map { Float($0) * 0.25 }
            let perRow = x.withUnsafeBufferPointer { HalfRows.encode($0.baseAddress!, count: rows, dimension: width) }
            payload = HalfRows.pack(perRow[...], count: rows, dimension: width)
        case .pq8:
            for i in payload.indices { payload[i] = UInt8(truncatingIfNeeded: i * 7) }
        case .pq4:
            let rowBytes = (width + 1) / 2
            for i in payload.indices { payload[i] = UInt8(truncatingIfNeeded: i * 5) & (width % 2 == 1 && i % rowBytes == rowBytes - 1 ? 0x0f : 0xff) }
        case .pq4FastScan:
            let rowBytes = (width + 1) / 2
            var codes = [UInt8](repeating: 0, count: rows * rowBytes)
            for i in codes.indices { codes[i] = UInt8(truncatingIfNeeded: i * 11) & (width % 2 == 1 && i % rowBytes == rowBytes - 1 ? 0x0f : 0xff) }
            codes.withUnsafeBufferPointer { c in payload.withUnsafeMutableBufferPointer { FastScan.pack(c.baseAddress!, count: rows, subquantizers: width, into: $0.baseAddress!) } }
        }
        return try IVFListBlock.encode(kind: kind, list: 9, width: width, rows: ids, payloadBytes: payload)
    }

    @Test(arguments: IVFPayloadKind.allCases)
    func roundTrip(kind: IVFPayloadKind) throws {
        for width in [5, 6] {
            let bytes = try sampleBlock(kind, width: width)
            #expect(bytes.count == IVFListBlock.encodedSize(kind: kind, count: 37, width: width))
            try bytes.withUnsafeBytes { raw in
                let view = try IVFListBlock.view(raw, kind: kind, width: width, list: 9)
                #expect(view.count == 37 && view.list == 9 && view.width == width)
                let expectedIDs: [UInt32] = (0..<37).map { UInt32($0 * 3 + 1) }
                #expect(view.rowIDs == expectedIDs)
                #expect(view.payloadOffset % 16 == 0)
                try view.validate(rowLimit: 200)
                #expect(throws: QuantError.self) { try view.validate(rowLimit: 100) }
            }
        }
    }

    @Test func flatScanUnderMaskIsExact() throws {
        let bytes = try sampleBlock(.flat)
        let query: [Float] = [1, 2, 3, 4, 5, 6]
        try bytes.withUnsafeBytes { raw in
            let view = try IVFListBlock.view(raw, kind: .flat)
            var words = [UInt64](repeating: 0, count: 2)
            for i in stride(from: 0, to: 37, by: 2) { let id = i * 3 + 1; words[id / 64] |= 1 << UInt64(id % 64) }
            var top = TopK(k: 5)
            query.withUnsafeBufferPointer { q in
                CandidateMask.with(words) { mask in IVFListScan.flat(view, query: q.baseAddress!, metric: .l2, mask: mask, into: &top) }
            }
            let expected = stride(from: 0, to: 37, by: 2).map { i -> (UInt32, Float) in
                let d = (0..<6).reduce(Float(0)) { acc, t in let x = Float(i * 6 + t) * 0.25 - query[t]; return acc + x * x }
                return (UInt32(i * 3 + 1), -d)
            }.sorted { $0.1 > $1.1 }.prefix(5)
            #expect(top.sorted().map(\.id) == expected.map(\.0))
        }
    }

    /// Every truncation, every single-byte change of the header and padding, and random damage anywhere give
    /// an error or a block whose scans stay inside the buffer (checked here by scanning it) — never a crash.
    @Test(arguments: IVFPayloadKind.allCases)
    func damagedBuffersGiveErrors(kind: IVFPayloadKind) throws {
        let good = try sampleBlock(kind, width: 5)
        for length in 0..<good.count {
            let cut = Array(good[0..<length])
            cut.withUnsafeBytes { raw in #expect(throws: QuantError.self) { try IVFListBlock.view(raw) } }
        }
        var longer = good
        longer.append(0)
        longer.withUnsafeBytes { raw in #expect(throws: QuantError.self) { try IVFListBlock.view(raw) } }
        let headerAndPadding = Array(0..<16) + Array((16 + 4 * 37)..<IVFListBlock.payloadOffset(count: 37))
        for offset in headerAndPadding {
            for value: UInt8 in [0, 1, 0x7f, 0xff] where value != good[offset] {
                var bad = good
                bad[offset] = value
                bad.withUnsafeBytes { raw in
                    // A changed list number or width is only detectable against the expected values.
                    #expect(throws: QuantError.self) { try IVFListBlock.view(raw, kind: kind, width: 5, list: 9) }
                }
            }
        }
        // Row ids out of order are found by validate().
        var swapped = good
        swapped.swapAt(16, 20)
        try swapped.withUnsafeBytes { raw in
            let view = try IVFListBlock.view(raw)
            #expect(throws: QuantError.self) { try view.validate() }
        }
        // Random multi-byte damage: either rejected, or scanned safely.
        var rng = SplitMix64(seed: 99)
        for _ in 0..<300 {
            var bad = good
            for _ in 0..<(1 + rng.below(4)) { bad[rng.below(bad.count)] = UInt8(rng.below(256)) }
            bad.withUnsafeBytes { raw in
                guard let view = try? IVFListBlock.view(raw) else { return }
                _ = try? view.validate()
                scanAny(view)
            }
        }
    }

    func scanAny(_ view: IVFListBlockView) {
        var top = TopK(k: 3)
        let query = [Float](repeating: 0.5, count: max(view.width, 1))
        query.withUnsafeBufferPointer { q in
            switch view.kind {
            case .flat:
                IVFListScan.flat(view, query: q.baseAddress!, metric: .dot, mask: nil, into: &top)
            case .flat16:
                break  // scanned by the store (its bounds need the float32 rows)
            case .pq8, .pq4:
                guard let pq = try? ProductQuantizer(dimension: view.width, subquantizers: view.width, bits: view.kind == .pq8 ? 8 : 4) else { return }
                let table = [Float](repeating: 1, count: view.width * pq.centroidsPerSubquantizer)
                table.withUnsafeBufferPointer { IVFListScan.pq(view, quantizer: pq, table: $0.baseAddress!, metric: .l2, bias: 0, mask: nil, into: &top) }
            case .pq4FastScan:
                let table = [Float](repeating: 1, count: view.width * 16)
                let qt = table.withUnsafeBufferPointer { QuantizedTable($0.baseAddress!, subquantizers: view.width, innerProduct: false) }
                IVFListScan.fastScan(view, table: qt, bias: 0, mask: nil, into: &top)
            }
        }
        #expect(top.count <= 3)
    }

    @Test func encodeRejectsBadInput() {
        #expect(throws: QuantError.self) { try IVFListBlock.encode(kind: .pq8, list: 0, width: 4, rows: [], payloadBytes: []) }
        #expect(throws: QuantError.self) { try IVFListBlock.encode(kind: .pq8, list: 0, width: 4, rows: [2, 1], payloadBytes: [UInt8](repeating: 0, count: 8)) }
        #expect(throws: QuantError.self) { try IVFListBlock.encode(kind: .pq8, list: 0, width: 4, rows: [1, 2], payloadBytes: [UInt8](repeating: 0, count: 7)) }
        #expect(throws: QuantError.self) { try IVFListBlock.encode(kind: .pq8, list: 0, width: 300, rows: [1], payloadBytes: [UInt8](repeating: 0, count: 300)) }
    }

    @Test func headerAndMatricesRoundTripAndRejectDamage() throws {
        let header = IVFHeader(kind: .pq4FastScan, metric: .cosine, nlist: 256, dimension: 384, subquantizers: 96, bits: 4,
                               blockCapacity: 1024, defaultNprobe: 16, defaultRefine: 4, seed: 1234, coarseError: 0.51,
                               codeError: 0.07, trainingRows: 65536, iterations: 10)
        let bytes = try header.encode()
        #expect(bytes.count == IVFHeader.size)
        #expect(try bytes.withUnsafeBytes { try IVFHeader.decode($0) } == header)
        // Any single-byte change is either rejected or decodes to a header that encodes back to exactly the
        // changed bytes (a consistent, if different, header: a different seed, nlist or error value). Version,
        // kind, metric, flags, bits and the reserved bytes are always rejected.
        let alwaysRejected = [0, 1, 2, 3, 14, 15] + Array(56..<64)
        for offset in 0..<IVFHeader.size {
            var bad = bytes
            bad[offset] ^= 0xff
            bad.withUnsafeBytes { raw in
                if let decoded = try? IVFHeader.decode(raw) {
                    #expect(!alwaysRejected.contains(offset), "byte \(offset)")
                    #expect((try? decoded.encode()) == bad, "byte \(offset)")
                }
            }
        }
        var flat = header
        flat.kind = .flat
        #expect(throws: QuantError.self) { try flat.encode() }  // M and bits must be 0 for flat
        let values: [Float] = [1, -2, 3.5]
        let m = FloatMatrixRecord.encode(values)
        #expect(try m.withUnsafeBytes { try FloatMatrixRecord.decode($0, count: 3, record: "c") } == values)
        #expect(throws: QuantError.self) { try m.withUnsafeBytes { try FloatMatrixRecord.decode($0, count: 4, record: "c") } }
        // A count whose byte size overflows Int (or is negative) is an error, not a trap.
        #expect(throws: QuantError.self) { try m.withUnsafeBytes { try FloatMatrixRecord.decode($0, count: Int.max / 2, record: "c") } }
        #expect(throws: QuantError.self) { try m.withUnsafeBytes { try FloatMatrixRecord.decode($0, count: -3, record: "c") } }
        var nan = m
        nan[3] = 0x7f; nan[2] = 0xc0
        #expect(throws: QuantError.self) { try nan.withUnsafeBytes { try FloatMatrixRecord.decode($0, count: 3, record: "c") } }
    }
}
