import ArgumentParser
import Foundation
import VecStore

/// The IVF training options shared by `import --index ivf|ivf-pq` and `index build --index ivf|ivf-pq`.
struct IVFTrainingOptions: ParsableArguments {
    @Option(help: "IVF lists (default: 4·√rows rounded to a power of two, at most rows / 39).")
    var nlist: Int?

    @Option(help: "IVF-PQ sub-quantizers M (must divide the dimension; default: dimension / 4, at most 64, so codes are ≤ 1/16 of raw at 4 bits).")
    var pqM: Int?

    @Option(help: "IVF-PQ bits per code: 8, or 4 (fast scan, the default).")
    var pqBits = 4

    @Option(help: "IVF lists a search probes by default (default: nlist / 16).")
    var nprobe: Int?

    @Option(help: "IVF-PQ default re-ranking factor: the best refine × k ADC candidates are re-scored exactly (default 4).")
    var refine: Int?

    @Option(help: "Seed of the IVF training sample and k-means.")
    var seed: UInt64 = 1234

    /// The parameters of IVF (`pq` false) or IVF-PQ.
    func parameters(pq: Bool) throws -> IVFParameters {
        var coding = IVFCoding.flat
        if pq {
            guard pqBits == 8 || pqBits == 4 else { throw ValidationError("--pq-bits must be 8 or 4") }
            coding = .pq(m: pqM ?? 0, bits: pqBits)  // 0: the library's default for the dimension
        }
        return IVFParameters(nlist: nlist, coding: coding, nprobe: nprobe, refine: refine, seed: seed)
    }

    func validate() throws {
        if let nlist, !(1...65536).contains(nlist) { throw ValidationError("--nlist must be in 1...65536") }
        if let pqM, !(1...256).contains(pqM) { throw ValidationError("--pq-m must be in 1...256") }
        if pqBits != 8 && pqBits != 4 { throw ValidationError("--pq-bits must be 8 or 4") }
        if let nprobe, !(1...65535).contains(nprobe) { throw ValidationError("--nprobe must be in 1...65535") }
        if let refine, !(0...65535).contains(refine) { throw ValidationError("--refine must be in 0...65535") }
    }
}

/// Prints an IVF build's progress as a bar on standard error (a terminal only).
final class IVFProgressBar: @unchecked Sendable {
    let enabled: Bool
    init(enabled: Bool) { self.enabled = enabled }

    func update(_ p: IVFBuildProgress) {
        guard enabled else { return }
        let stage: String
        switch p.stage {
        case .coarse: stage = "k-means"
        case .codebooks: stage = "PQ codebooks"
        case .lists: stage = "lists"
        }
        let width = 30, filled = Int(p.fraction * Double(width))
        let line = "IVF \(stage) [" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
            + "] \(Int(p.fraction * 100))%"
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
    }

    func finish() {
        if enabled { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}
