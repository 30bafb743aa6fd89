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

    @Option(help: ArgumentHelp("IVF-PQ codes: of the residual against the list centroid (on) or of the raw vectors (off: one look-up table per query for every probed list). Default: off for 4-bit fast scan, on for 8-bit.", valueName: "on|off"))
    var pqResidual: Switch?

    /// `on` or `off`.
    enum Switch: String, ExpressibleByArgument, CaseIterable {
        case on, off
    }

    @Option(help: ArgumentHelp("IVF-Flat list elements: f32 (default; the float32 vectors) or f16 (binary16 copies with certified error bounds: about half the index bytes, results exactly those of f32 lists, not faster at one thread on siftsmall/docs60k).", valueName: "f32|f16"))
    var ivfLists: IVFFlatLists?

    @Option(help: "IVF lists a search probes by default (default: nlist / 16).")
    var nprobe: Int?

    @Option(help: "IVF-PQ default re-ranking factor: the best refine × k ADC candidates are re-scored exactly (default 4).")
    var refine: Int?

    @Option(help: "Seed of the IVF training sample and k-means.")
    var seed: UInt64 = 1234

    /// The parameters of IVF (`pq` false) or IVF-PQ (`validate` has checked the ranges).
    func parameters(pq: Bool) -> IVFParameters {
        let coding = pq ? IVFCoding.pq(m: pqM ?? 0, bits: pqBits) : .flat  // m 0: the library's default
        return IVFParameters(nlist: nlist, coding: coding, nprobe: nprobe, refine: refine, seed: seed,
                             pqResidual: pqResidual.map { $0 == .on }, lists: ivfLists ?? .f32)
    }

    /// Rejects the product-quantizer options (`--pq-m`, `--pq-residual`) with an index that has no codes
    /// (`pq` false): they would be ignored silently, like `--traversal` outside HNSW.
    func rejectPQOptions(pq: Bool) throws {
        guard !pq else { return }
        if pqM != nil { throw ValidationError("--pq-m applies to --index ivf-pq only") }
        if pqResidual != nil { throw ValidationError("--pq-residual applies to --index ivf-pq only") }
    }

    /// Rejects out-of-range options before a store is opened, through the library's own checks
    /// (`IVFParameters.validateRanges`, the one source of the ranges). `--pq-m 0` is not an option value.
    func validate() throws {
        if pqM == 0 { throw ValidationError("--pq-m 0 is outside 1…256") }
        do { try parameters(pq: true).validateRanges() } catch { throw ValidationError(error.description) }
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

/// `--ivf-lists f16|f32` (IVF-Flat list elements).
extension IVFFlatLists: ExpressibleByArgument {}
