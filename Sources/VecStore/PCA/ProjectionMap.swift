import LMDB
import VecStoreIO
import VecStoreKernels
import VecStorePlot

/// A 2-D PCA map of (a sample of) a collection: each document's position on the first two principal
/// components, with the label it is coloured by. `svg()` draws it.
public struct ProjectionMap: Sendable {
    /// One document on the map.
    public struct Point: Sendable, Equatable {
        /// External id.
        public var id: String
        /// Coordinate on the first principal component.
        public var x: Float
        /// Coordinate on the second principal component.
        public var y: Float
        /// The class the point is coloured by: the field's value, "(none)" without it, "other" when folded.
        public var label: String
        /// The start of the document's text (at most 120 characters, whitespace collapsed), or nil.
        public var snippet: String?
    }

    /// Collection name.
    public var collection: String
    /// The metadata field the points are coloured by, or nil.
    public var colorField: String?
    /// The points, in the sampled documents' row order.
    public var points: [Point]
    /// Classes in legend order (largest first, then "other", then "(none)") with their point counts.
    public var classes: [(name: String, count: Int)]
    /// The 2-component PCA fitted on the points' stored vectors.
    public var pca: PCA
    /// Live documents that matched (the sample was drawn from these).
    public var population: Int

    /// Label of points whose document lacks the colouring field.
    public static let noneLabel = "(none)"
    /// Label of the classes folded together beyond `maxClasses`.
    public static let otherLabel = "other"
    /// Most classes shown with their own colour; the rest are folded into "other".
    public static let maxClasses = 12

    /// The map as a self-contained SVG: one circle per point titled with its id and text snippet, a legend
    /// with counts, axes labelled with the share of variance each component explains.
    public func svg(title: String? = nil, width: Int = 960, height: Int = 680) -> String {
        let ratio = pca.explainedVarianceRatio
        func percent(_ i: Int) -> String {
            let v = Double(ratio.indices.contains(i) ? ratio[i] : 0) * 100
            return v >= 10 ? String(Int(v.rounded())) + "%" : String(Double(Int(v * 10 + 0.5)) / 10) + "%"
        }
        var plot = ScatterPlot(title: title ?? "PCA map of \(collection)",
                               xLabel: "PC1 (\(percent(0)) of variance)", yLabel: "PC2 (\(percent(1)) of variance)",
                               legendTitle: colorField ?? "documents")
        plot.subtitle = points.count < population
            ? "\(points.count) of \(population) documents (seeded sample)" : "\(points.count) documents"
        var index: [String: Int] = [:]
        for (i, c) in classes.enumerated() {
            index[c.name] = i
            let color: String? = c.name == Self.noneLabel ? ScatterPlot.noneColor
                : c.name == Self.otherLabel ? ScatterPlot.otherColor : nil
            plot.classes.append(.init(name: c.name, count: c.count, color: color))
        }
        plot.points = points.map { p in
            var title = p.id
            if let s = p.snippet { title += "\n" + s }
            if colorField != nil { title += "\n[\(p.label)]" }
            return .init(x: Double(p.x), y: Double(p.y), classIndex: index[p.label] ?? 0, title: title)
        }
        // Drawn in a fixed shuffled order, so that no class is painted over the others just because its
        // documents come last in the store.
        var rng = SplitMix64(seed: 0x5CA7_7E12)
        plot.points.shuffle(using: &rng)
        return plot.svg(width: width, height: height)
    }
}

extension VectorCollection {
    /// A 2-D PCA map of the live documents matching `filter`, or of a seeded random sample of `sample` of
    /// them, coloured by the metadata field `colorBy` (documents without it are "(none)"; beyond 12 classes
    /// the smallest are folded into "other"; an array field counts by its first element).
    ///
    /// Throws `invalidArgument` when fewer than three documents match (two points have one direction, not
    /// a plane) or the collection has fewer than two dimensions.
    public func projectionMap(colorBy: String? = nil, sample: Int = 5_000, filter: Filter? = nil,
                              seed: UInt64 = 42) throws(VecStoreError) -> ProjectionMap
    {
        guard sample >= 3 else { throw .invalidArgument("a PCA map needs a sample of at least 3 documents, not \(sample)") }
        guard dimension >= 2 else {
            throw .invalidArgument("collection '\(name)' has dimension \(dimension): a 2-D map needs at least 2")
        }
        struct Row { var id: String; var label: String; var snippet: String? }
        // The sampled rows, and their stored vectors one after another (what the fit reads).
        let (rows, flat, population): ([Row], [Float], Int) = try store.read { txn in
            let record = try currentRecord(txn)
            let view = try CollectionView(txn, store.dbs, record, name: name)
            let words = try candidateRows(txn, view, filter)
            var candidates: [UInt32] = []
            for (w, word) in words.enumerated() where word != 0 {
                var bits = word
                while bits != 0 {
                    candidates.append(UInt32(w * 64 + bits.trailingZeroBitCount))
                    bits &= bits - 1
                }
            }
            let population = candidates.count
            if candidates.count > sample {
                // Partial Fisher–Yates with a fixed seed: the same store and seed give the same map.
                var rng = SplitMix64(seed: seed)
                for i in 0..<sample {
                    let j = i + Int(rng.next() % UInt64(candidates.count - i))
                    candidates.swapAt(i, j)
                }
                candidates = Array(candidates.prefix(sample)).sorted()
            }
            var rows: [Row] = []
            rows.reserveCapacity(candidates.count)
            var flat: [Float] = []
            flat.reserveCapacity(candidates.count * dimension)
            for row in candidates {
                guard let value = try txn.get(store.dbs.docs, Format.key(collectionID, row)) else {
                    throw VecStoreError.corrupt("collection \(name): live row \(row) has no document record")
                }
                let doc = try DocumentRecord.decode(value, context: "\(name) docs row \(row)")
                var label = ProjectionMap.noneLabel
                if let colorBy, !doc.metadataJSON.isEmpty,
                   case .object(let m) = try doc.metadataJSON.withUnsafeBytes({ try JSONValue.parse($0) }),
                   let v = m[colorBy] {
                    label = Self.classLabel(v) ?? ProjectionMap.noneLabel
                }
                flat.append(contentsOf: UnsafeBufferPointer(start: view.vector(row), count: dimension))
                rows.append(Row(id: doc.externalID, label: label, snippet: doc.text.map(Self.snippet)))
            }
            return (rows, flat, population)
        }
        guard rows.count >= 3 else {
            let what = filter == nil ? "collection '\(name)' has" : "the filter matches"
            throw .invalidArgument("\(what) \(rows.count) document\(rows.count == 1 ? "" : "s"): a 2-D PCA map needs at least 3")
        }
        let pca: PCA
        do { pca = try PCA.fit(flat, dimension: dimension, components: 2) } catch {
            throw .invalidArgument(error.description)
        }
        var projected = [Float](repeating: 0, count: rows.count * 2)
        flat.withUnsafeBufferPointer { x in
            projected.withUnsafeMutableBufferPointer { y in
                guard let xp = x.baseAddress, let yp = y.baseAddress else { return }
                pca.project(xp, count: rows.count, into: yp)
            }
        }
        // Classes: largest first; beyond the limit the rest fold into "other"; "(none)" last.
        var counts: [String: Int] = [:]
        for r in rows { counts[r.label, default: 0] += 1 }
        let named = counts.filter { $0.key != ProjectionMap.noneLabel }
            .sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
        let kept = Set(named.prefix(ProjectionMap.maxClasses).map(\.key))
        var classes = named.prefix(ProjectionMap.maxClasses).map { (name: $0.key, count: $0.value) }
        let folded = named.dropFirst(ProjectionMap.maxClasses).reduce(0) { $0 + $1.value }
        if folded > 0 { classes.append((name: ProjectionMap.otherLabel, count: folded)) }
        if let none = counts[ProjectionMap.noneLabel] { classes.append((name: ProjectionMap.noneLabel, count: none)) }
        let points = rows.enumerated().map { (i, r) in
            let label = r.label == ProjectionMap.noneLabel || kept.contains(r.label) ? r.label : ProjectionMap.otherLabel
            return ProjectionMap.Point(id: r.id, x: projected[2 * i], y: projected[2 * i + 1], label: label, snippet: r.snippet)
        }
        return ProjectionMap(collection: name, colorField: colorBy, points: points, classes: classes, pca: pca,
                             population: population)
    }

    /// The class a metadata value puts a document in (an array: its first element); nil for an empty array.
    static func classLabel(_ value: JSONValue) -> String? {
        switch value {
        case .string(let s): return s
        case .bool(let b): return b ? "true" : "false"
        case .number(let x): return x == x.rounded() && abs(x) < 1e15 ? String(Int64(x)) : String(x)
        case .array(let items): return items.first.flatMap(classLabel)
        default: return nil
        }
    }

    /// The first 120 characters of `text` with runs of whitespace collapsed to one space.
    static func snippet(_ text: String) -> String {
        let words = text.split(whereSeparator: { $0.isWhitespace })
        let flat = words.joined(separator: " ")
        return flat.count > 120 ? String(flat.prefix(119)) + "…" : flat
    }
}
