import Testing
@testable import VecStore

/// The visited stamps' memory (`HNSWVisitedPages`): zeroed, writable end to end, sized and freed the
/// same way whether mapped (large) or allocated (small), and a scratch that grows keeps its stamps
/// zero for the new generation.
@Suite struct HNSWVisitedPagesTests {
    @Test(arguments: [1_024, 32_767, 32_768, 954_352, 1_048_576, 1_048_577])
    func zeroedAndWritable(count: Int) {
        let (stamps, mapped) = HNSWVisitedPages.allocate(count: count)
        defer { HNSWVisitedPages.deallocate(stamps, mapped: mapped) }
        let bytes = count * 2
        if bytes >= HNSWVisitedPages.mapThreshold {
            #expect(mapped >= bytes && mapped % HNSWVisitedPages.unit == 0)
            #expect(Int(bitPattern: stamps) % HNSWVisitedPages.unit == 0)
        } else {
            #expect(mapped == 0)
        }
        #expect((0..<count).allSatisfy { stamps[$0] == 0 })
        // Every slot, the last one included, can be written and read back.
        for i in 0..<count { stamps[i] = UInt16(truncatingIfNeeded: i &* 31 &+ 7) }
        #expect((0..<count).allSatisfy { stamps[$0] == UInt16(truncatingIfNeeded: $0 &* 31 &+ 7) })
    }

    @Test func scratchGrowsPastItsStamps() {
        let scratch = HNSWScratch(rows: 2_000)
        scratch.begin(rows: 2_000)
        scratch.stamps[1_999] = scratch.generation
        // Growing maps a new, zeroed array (the old one is freed with the size it was mapped with).
        scratch.begin(rows: 100_000)
        #expect(scratch.stampCapacity >= 100_000)
        #expect((0..<scratch.stampCapacity).allSatisfy { scratch.stamps[$0] != scratch.generation })
        scratch.stamps[99_999] = scratch.generation
        #expect(scratch.stamps[99_999] == scratch.generation)
    }
}
