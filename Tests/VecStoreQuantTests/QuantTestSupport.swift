import Foundation
import VecStoreKernels
import VecStoreQuant

/// `../shared/data` beside the package root, found from this file's path.
let quantDataDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/data").path

/// Whether the siftsmall files are present (tests that need them are skipped otherwise).
let siftsmallPresent = FileManager.default.fileExists(atPath: quantDataDirectory + "/siftsmall/siftsmall_base.fvecs")

/// Rows of an .fvecs / .ivecs file, flattened, with the row width.
func readVecsFlat<T>(_ path: String, as: T.Type, limit: Int = .max) throws -> (values: [T], width: Int) {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    return data.withUnsafeBytes { raw -> ([T], Int) in
        var out: [T] = []
        var o = 0, width = 0, rows = 0
        while o + 4 <= raw.count && rows < limit {
            let n = Int(raw.loadUnaligned(fromByteOffset: o, as: Int32.self))
            width = n
            for t in 0..<n { out.append(raw.loadUnaligned(fromByteOffset: o + 4 + 4 * t, as: T.self)) }
            o += 4 + 4 * n
            rows += 1
        }
        return (out, width)
    }
}

/// `count` random rows of `dimension` floats in `clusters` Gaussian-ish blobs (deterministic).
func clusteredData(count: Int, dimension: Int, clusters: Int, seed: UInt64, spread: Float = 0.1) -> [Float] {
    var rng = SplitMix64(seed: seed)
    let centers = (0..<(clusters * dimension)).map { _ in Float.random(in: -1...1, using: &rng) }
    var out = [Float](repeating: 0, count: count * dimension)
    for i in 0..<count {
        let c = rng.below(clusters)
        for t in 0..<dimension {
            let noise = (Float.random(in: -1...1, using: &rng) + Float.random(in: -1...1, using: &rng)) * spread
            out[i * dimension + t] = centers[c * dimension + t] + noise
        }
    }
    return out
}

/// Uniform random floats in -1…1.
func uniformData(count: Int, seed: UInt64) -> [Float] {
    var rng = SplitMix64(seed: seed)
    return (0..<count).map { _ in Float.random(in: -1...1, using: &rng) }
}

/// Exact top-k row ids by brute force (L2: ascending squared distance; otherwise descending dot).
func bruteForceTopK(_ base: [Float], dimension: Int, query: ArraySlice<Float>, k: Int, l2: Bool) -> [Int] {
    let n = base.count / dimension
    let q = Array(query)
    var scored: [(Int, Double)] = []
    scored.reserveCapacity(n)
    for i in 0..<n {
        var s = 0.0
        for t in 0..<dimension {
            let x = Double(base[i * dimension + t]), y = Double(q[t])
            s += l2 ? (x - y) * (x - y) : -(x * y)
        }
        scored.append((i, s))
    }
    scored.sort { $0.1 < $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }
    return scored.prefix(k).map(\.0)
}
