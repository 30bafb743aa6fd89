import CDistance
import Foundation
import LMDB
import VecStoreKernels
import VecStoreQuant

/// `verify`'s checks of a collection's IVF index (Spec/IVF.md §4.3 and §8).
enum IVFVerify {
    /// Every fault of collection `record`'s IVF index, each naming the collection and where; empty when it
    /// has none or no index. `vectors` is the collection's view in the same transaction.
    ///
    /// * the header, centroids and codebooks decode (finite, shapes as the header says);
    /// * list keys and blocks: every block checked in full (row ids ascending and below the collection's
    ///   rows, flat components finite, code padding 0), full blocks before the last, rows ascending across
    ///   a list's blocks;
    /// * every live row is in exactly one list (deleted rows may remain until compaction);
    /// * flat lists hold exactly the stored vectors (binary16 lists: their round-to-nearest binary16
    ///   conversion, bit for bit); a PQ code is the nearest code of its row's residual
    ///   (its reconstruction error is within float rounding of the best code's), so codes decode within
    ///   the training error the quantizer was trained to.
    static func faults(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, _ vectors: CollectionView,
                       name: String) throws -> (faults: [String], checked: Int) {
        let model: IVFModel
        do {
            guard let m = try IVFModel.load(txn, dbs, record, name: name) else { return ([], 0) }
            model = m
        } catch let e as VecStoreError { return (["\(e)"], 1) }
        let view: IVFView
        do { view = try IVFView(txn, dbs, record: record, model: model, name: name) } catch let e as VecStoreError {
            return (["\(e)"], 1)
        }
        var faults: [String] = []
        var checked = 0
        let rows = Int(record.nextInternalID), d = record.dimension
        var seen = [UInt64](repeating: 0, count: (rows + 63) / 64)
        var scratch = [Float](repeating: 0, count: d)
        var decoded = [Float](repeating: 0, count: d)
        var best = [UInt8](repeating: 0, count: model.codeSize)
        var codes: [UInt8] = []
        for (list, blocks) in view.blocks.enumerated() {
            var previous: UInt32?
            for (number, block) in blocks.enumerated() {
                checked += 1
                do throws(QuantError) { try block.validate(rowLimit: record.nextInternalID) } catch {
                    faults.append("\(name): IVF list \(list) block \(number): \(error)")
                    continue
                }
                if let previous, block.rowID(0) <= previous {
                    faults.append("\(name): IVF list \(list) block \(number) starts at row \(block.rowID(0)), not after \(previous)")
                }
                previous = block.rowID(block.count - 1)
                if model.quantizer != nil { codes = rowCodes(block, model: model) }
                if block.kind == .flat16 { codes = HalfRows.unpack(block) }
                for i in 0..<block.count {
                    let row = block.rowID(i)
                    checked += 1
                    let w = Int(row >> 6), bit = UInt64(1) << UInt64(row & 63)
                    if seen[w] & bit != 0 { faults.append("\(name): row \(row) is in more than one IVF list (again in list \(list))") }
                    seen[w] |= bit
                    let x = vectors.vector(row)
                    guard let pq = model.quantizer else {
                        if block.kind == .flat16 {
                            // The copy, error bound and norm must be exactly what the writer derives from the
                            // stored row (Spec/IVF.md §4.2): the scan's bounds rest on them (a copy or bound off
                            // by one unit could hide a row from the top k).
                            let expected = HalfRows.encode(x, count: 1, dimension: d)
                            let stored = codes[(i * expected.count)..<((i + 1) * expected.count)]
                            if !stored.elementsEqual(expected) {
                                let what = stored.dropFirst(8).elementsEqual(expected.dropFirst(8)) ? "error bound or norm"
                                    : "binary16 copy"
                                faults.append("\(name): IVF list \(list) holds a \(what) for row \(row) that is not derived from the stored vector")
                            }
                            continue
                        }
                        let stored = block.payload.baseAddress.map { $0 + i * d * 4 }
                        if let stored, memcmp(stored, x, d * 4) != 0 {
                            faults.append("\(name): IVF list \(list) holds a vector for row \(row) that differs from the stored one")
                        }
                        continue
                    }
                    let error = codeErrors(x, code: codes, at: i * pq.codeSize, list: list, model: model, pq: pq,
                                           residual: &scratch, decoded: &decoded, best: &best)
                    if error.stored > error.best + 1e-4 * max(1, error.norm) {
                        faults.append("\(name): row \(row)'s PQ code in list \(list) decodes with error \(error.stored), its nearest code with \(error.best)")
                    }
                }
            }
        }
        for w in 0..<seen.count {
            let missing = vectors.liveWords[w] & ~seen[w]
            if missing != 0 {
                faults.append("\(name): live row \(w * 64 + missing.trailingZeroBitCount) is in no IVF list")
            }
        }
        return (faults, checked)
    }

    static func rowCodes(_ block: IVFListBlockView, model: IVFModel) -> [UInt8] {
        guard block.kind == .pq4FastScan else { return Array(block.payload) }
        var out = [UInt8](repeating: 0, count: block.count * model.codeSize)
        out.withUnsafeMutableBufferPointer { o in
            guard let ob = o.baseAddress, let p = block.payload.baseAddress else { return }
            FastScan.unpack(p.assumingMemoryBound(to: UInt8.self), count: block.count, subquantizers: block.width, into: ob)
        }
        return out
    }

    /// Reconstruction errors of the stored code and of the best code of row `x`'s residual (of `x` itself
    /// for raw-vector codes).
    static func codeErrors(_ x: UnsafePointer<Float>, code: [UInt8], at offset: Int, list: Int, model: IVFModel,
                           pq: ProductQuantizer, residual: inout [Float], decoded: inout [Float], best: inout [UInt8])
        -> (stored: Float, best: Float, norm: Float) {
        let d = model.header.dimension
        var stored: Float = 0, bestError: Float = 0, norm: Float = 0
        model.centroids.withUnsafeBufferPointer { c in
            residual.withUnsafeMutableBufferPointer { r in
                decoded.withUnsafeMutableBufferPointer { o in
                    code.withUnsafeBufferPointer { cb in
                        best.withUnsafeMutableBufferPointer { bb in
                            guard let cp = c.baseAddress, let rp = r.baseAddress, let op = o.baseAddress,
                                  let codes = cb.baseAddress, let bp = bb.baseAddress else { return }
                            let residual = model.header.residual
                            for t in 0..<d { rp[t] = x[t] - (residual ? cp[list * d + t] : 0) }
                            norm = squaredNorm(rp, d)
                            pq.decode(codes + offset, count: 1, into: op)
                            stored = squaredL2(rp, op, d)
                            pq.encode(rp, count: 1, into: bp)
                            pq.decode(bp, count: 1, into: op)
                            bestError = squaredL2(rp, op, d)
                        }
                    }
                }
            }
        }
        return (stored, bestError, norm)
    }
}
