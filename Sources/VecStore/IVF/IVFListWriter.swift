import CDistance
import LMDB
import VecStoreKernels
import VecStoreQuant

/// Appends rows to a collection's inverted lists inside a write transaction (Spec/IVF.md §7): each row is
/// assigned to its nearest centroid, encoded (the vector for flat, the PQ code of its residual or, for
/// raw-vector codes, of the vector otherwise),
/// and appended to its list's last block, or to new blocks once that one is full. Only the last block of a
/// touched list is rewritten (copy-on-write of one block, never the whole list); rows must arrive in
/// ascending row order, after every row already in the lists.
struct IVFListWriter {
    let txn: Transaction
    let lists: Database
    let model: IVFModel
    let cid: UInt32
    let name: String
    /// Block values written (tests check that a small batch rewrites few).
    private(set) var blocksWritten = 0

    init(_ txn: Transaction, _ dbs: Databases, model: IVFModel, cid: UInt32, name: String) throws {
        self.txn = txn
        self.lists = try IVFFormat.handles(dbs).lists
        self.model = model
        self.cid = cid
        self.name = name
    }

    /// Bytes of one row in the per-row code form: `4·d` (flat float32), `8 + 2·d` (flat binary16: error bound, norm, copy), `M` (pq8), `⌈M/2⌉` (4-bit codes,
    /// packed two per byte before the fast-scan interleave).
    var rowBytes: Int { model.codeSize }

    /// Assigns and appends `count` rows (`rows[i]` with vector `vectors + i·d`, in stored form), in
    /// ascending row order. `threads` splits the assignment.
    mutating func append(rows: [UInt32], vectors: UnsafePointer<Float>, threads: Int = 1) throws {
        guard !rows.isEmpty else { return }
        let labels = model.assign(vectors, count: rows.count, threads: threads)
        // Group the batch by list with a counting sort over nlist (stable: rows stay ascending in a list).
        let nlist = model.header.nlist
        var start = [Int](repeating: 0, count: nlist + 1)
        for l in labels {
            guard Int(l) < nlist else { throw VecStoreError.corrupt("collection \(name): IVF assignment to list \(l) ≥ nlist \(nlist)") }
            start[Int(l) + 1] += 1
        }
        for l in 0..<nlist { start[l + 1] += start[l] }
        var order = [Int](repeating: 0, count: labels.count)
        var next = start
        for (i, l) in labels.enumerated() {
            order[next[Int(l)]] = i
            next[Int(l)] += 1
        }
        let d = model.header.dimension
        for list in 0..<nlist where start[list + 1] > start[list] {
            let idx = order[start[list]..<start[list + 1]]
            var gathered = [Float](repeating: 0, count: idx.count * d)
            gathered.withUnsafeMutableBufferPointer { g in
                guard let gb = g.baseAddress else { return }
                for (j, i) in idx.enumerated() { (gb + j * d).update(from: vectors + i * d, count: d) }
            }
            let codes = encode(gathered, count: idx.count, list: list)
            try append(list: list, rows: idx.map { rows[$0] }, codes: codes)
        }
    }

    /// Per-row codes of `count` gathered vectors of `list` (`rowBytes` each).
    func encode(_ vectors: [Float], count n: Int, list: Int) -> [UInt8] {
        let d = model.header.dimension
        guard let pq = model.quantizer else {
            guard model.header.kind == .flat16 else { return FloatMatrixRecord.encode(vectors) }
            // binary16 lists: each row's error bound, norm and binary16 copy (`HalfRows`).
            return vectors.withUnsafeBufferPointer { v in
                guard let vb = v.baseAddress else { return [] }
                return HalfRows.encode(vb, count: n, dimension: d)
            }
        }
        var residuals = vectors
        // Residual codes subtract the list's centroid; raw-vector codes encode the rows as they are.
        if model.header.residual { model.centroids.withUnsafeBufferPointer { c in
            residuals.withUnsafeMutableBufferPointer { r in
                guard let cb = c.baseAddress, let rb = r.baseAddress else { return }
                let centroid = cb + list * d
                for i in 0..<n { for t in 0..<d { rb[i * d + t] -= centroid[t] } }
            }
        } }
        var codes = [UInt8](repeating: 0, count: n * pq.codeSize)
        residuals.withUnsafeBufferPointer { r in
            codes.withUnsafeMutableBufferPointer { c in
                guard let rb = r.baseAddress, let cb = c.baseAddress else { return }
                pq.encode(rb, count: n, into: cb)
            }
        }
        return codes
    }

    /// The per-row codes of a stored block (the inverse of `payload`).
    func rowCodes(_ block: IVFListBlockView) -> [UInt8] {
        if block.kind == .flat16 { return HalfRows.unpack(block) }
        let n = block.count
        if block.kind == .pq4FastScan {
            var out = [UInt8](repeating: 0, count: n * rowBytes)
            out.withUnsafeMutableBufferPointer { o in
                guard let ob = o.baseAddress, let p = block.payload.baseAddress else { return }
                FastScan.unpack(p.assumingMemoryBound(to: UInt8.self), count: n, subquantizers: block.width, into: ob)
            }
            return out
        }
        return Array(block.payload)
    }

    /// The block payload of `count` rows given as per-row codes.
    func payload(_ codes: ArraySlice<UInt8>, count n: Int) -> [UInt8] {
        if model.header.kind == .flat16 { return HalfRows.pack(codes, count: n, dimension: model.header.dimension) }
        guard model.header.kind == .pq4FastScan else { return Array(codes) }
        let m = model.header.subquantizers
        var out = [UInt8](repeating: 0, count: IVFPayloadKind.pq4FastScan.payloadBytes(count: n, width: m))
        codes.withUnsafeBufferPointer { c in
            out.withUnsafeMutableBufferPointer { o in
                guard let cb = c.baseAddress, let ob = o.baseAddress else { return }
                FastScan.pack(cb, count: n, subquantizers: m, into: ob)
            }
        }
        return out
    }

    /// The number of blocks list `list` has and its last block's value (nil for an empty list).
    func lastBlock(list: Int) throws -> (count: Int, value: UnsafeRawBufferPointer?) {
        let prefix = IVFFormat.blockKey(cid, list: list, block: 0).prefix(8)
        return try txn.withCursor(lists) { (c: Cursor) throws -> (Int, UnsafeRawBufferPointer?) in
            let after = list + 1 <= Int(UInt32.max) ? IVFFormat.blockKey(cid, list: list + 1, block: 0) : nil
            var entry = try after.map { try c.seek(atLeast: $0) } ?? nil
            entry = entry == nil ? try c.last() : try c.previous()
            guard let (key, value) = entry, key.count == 12, key.starts(with: prefix) else { return (0, nil) }
            return (Int(readBE32(key, at: 8)) + 1, value)
        }
    }

    /// Appends `rows` (ascending, above every row already in the list) with their per-row `codes` to `list`.
    mutating func append(list: Int, rows newRows: [UInt32], codes newCodes: [UInt8]) throws {
        let capacity = model.header.blockCapacity
        let kind = model.header.kind, width = model.width
        let (blocks, last) = try lastBlock(list: list)
        var rows: [UInt32] = []
        var codes: [UInt8] = []
        var block = blocks
        if let last {
            let view: IVFListBlockView
            do throws(QuantError) { view = try IVFListBlock.view(last, kind: kind, width: width, list: list) } catch {
                throw IVFFormat.corrupt(error, name)
            }
            guard view.count <= capacity else {
                throw VecStoreError.corrupt("collection \(name): IVF list \(list) block \(blocks - 1) holds \(view.count) rows, capacity \(capacity)")
            }
            if view.count < capacity {
                rows = view.rowIDs
                codes = rowCodes(view)
                block -= 1  // rewritten with the new rows after its own
            }
            if let lastRow = rows.last ?? (view.count > 0 ? view.rowID(view.count - 1) : nil),
               let first = newRows.first, first <= lastRow {
                throw VecStoreError.corrupt("collection \(name): IVF list \(list) already holds row \(lastRow) ≥ appended row \(first)")
            }
        }
        rows += newRows
        codes += newCodes
        // Block numbers are BE32 in the key: a damaged key numbering the last block near 2³² gives an error.
        guard block + (rows.count + capacity - 1) / capacity <= Int(UInt32.max) + 1 else {
            throw VecStoreError.corrupt("collection \(name): IVF list \(list) numbers its last block \(blocks - 1), too large to append to")
        }
        var start = 0
        while start < rows.count {
            let n = min(capacity, rows.count - start)
            let payload = payload(codes[(start * rowBytes)..<((start + n) * rowBytes)], count: n)
            let value: [UInt8]
            do throws(QuantError) {
                value = try IVFListBlock.encode(kind: kind, list: list, width: width, rows: Array(rows[start..<(start + n)]),
                                                payloadBytes: payload)
            } catch { throw VecStoreError.invalidArgument("IVF list \(list): \(error)") }
            try txn.put(lists, IVFFormat.blockKey(cid, list: list, block: block), value)
            blocksWritten += 1
            block += 1
            start += n
        }
    }
}
