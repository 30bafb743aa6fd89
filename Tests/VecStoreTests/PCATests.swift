import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import VecStore
@testable import VecStoreKernels
import VecStorePlot

/// Counts the elements of an SVG by name with Foundation's XML parser (which fails on malformed XML).
final class SVGCounter: NSObject, XMLParserDelegate {
    var counts: [String: Int] = [:]
    var titles: [String] = []
    private var inTitle = false
    private var text = ""

    /// Parses `svg`; nil when it is not well-formed XML.
    static func parse(_ svg: String) -> SVGCounter? {
        let counter = SVGCounter()
        let parser = XMLParser(data: Data(svg.utf8))
        parser.delegate = counter
        return parser.parse() ? counter : nil
    }

    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                attributes: [String: String] = [:]) {
        counts[name, default: 0] += 1
        if name == "title" { inTitle = true; text = "" }
    }
    func parser(_ parser: XMLParser, foundCharacters string: String) { if inTitle { text += string } }
    func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
        if name == "title" { inTitle = false; titles.append(text) }
    }
}

/// An orthonormal basis of R^d: the columns of the Householder reflection I − 2vvᵀ/‖v‖².
func householderBasis(_ d: Int, seed: UInt64) -> [[Float]] {
    var rng = SeededRandom(seed: seed)
    let v = (0..<d).map { _ in Double.random(in: -1...1, using: &rng) }
    let vv = v.reduce(0) { $0 + $1 * $1 }
    return (0..<d).map { j in (0..<d).map { i in Float((i == j ? 1 : 0) - 2 * v[i] * v[j] / vv) } }
}

func dot(_ a: [Float], _ b: [Float]) -> Double { zip(a, b).reduce(0) { $0 + Double($1.0) * Double($1.1) } }

@Suite("PCA")
struct PCATests {
    @Test("closed form: ±s·u points give eigenvalues 2s²/(n−1) along u, components up to sign")
    func closedForm() throws {
        let d = 6
        let basis = householderBasis(d, seed: 3)
        let scales: [Float] = [3, 2, 1]
        let offset: [Float] = [5, -1, 0.5, 2, 0, -3]
        var samples: [Float] = []
        for (s, u) in zip(scales, basis) {
            for sign: Float in [1, -1] { samples += zip(u, offset).map { sign * s * $0.0 + $0.1 } }
        }
        let pca = try PCA.fit(samples, dimension: d, components: 3)
        #expect(pca.sampleCount == 6 && pca.inputDimension == 6 && pca.outputDimension == 3)
        let expected = scales.map { 2 * $0 * $0 / 5 }  // 3.6, 1.6, 0.4
        for i in 0..<3 {
            #expect(abs(pca.explainedVariance[i] - expected[i]) < 1e-4, "variance \(i): \(pca.explainedVariance[i])")
            let row = Array(pca.components[i * d..<(i + 1) * d])
            #expect(abs(abs(dot(row, basis[i])) - 1) < 1e-4, "component \(i) is not ±u\(i)")
        }
        #expect(abs(pca.totalVariance - expected.reduce(0, +)) < 1e-4)
        #expect(abs(pca.explainedVarianceRatio.reduce(0, +) - 1) < 1e-4)
        for (m, o) in zip(pca.mean, offset) { #expect(abs(m - o) < 1e-5) }
        // Projection: the point +3·u0 + offset lands at (±3, 0, 0).
        let p = pca.project(Array(samples[0..<d]))
        #expect(abs(abs(p[0]) - 3) < 1e-4 && abs(p[1]) < 1e-4 && abs(p[2]) < 1e-4, "\(p)")
        // Without the mean the offset is projected too.
        let raw = pca.subtractingMean(false).project(Array(samples[0..<d]))
        let row0 = Array(pca.components[0..<d])
        #expect(abs(Double(raw[0]) - dot(row0, Array(samples[0..<d]))) < 1e-4)
    }

    @Test("explained variance equals the variance of the projected sample, computed another way")
    func varianceOfProjection() throws {
        let n = 400, d = 16, k = 5
        var rng = SeededRandom(seed: 9)
        let basis = householderBasis(d, seed: 4)
        var samples: [Float] = []
        for _ in 0..<n {
            var x = [Float](repeating: 0, count: d)
            for (j, u) in basis.enumerated() {
                let c = Float.random(in: -1...1, using: &rng) * Float(d - j)
                for t in 0..<d { x[t] += c * u[t] }
            }
            samples += x
        }
        let pca = try PCA.fit(samples, dimension: d, components: k)
        var projected = [Float](repeating: 0, count: n * k)
        samples.withUnsafeBufferPointer { x in
            projected.withUnsafeMutableBufferPointer { y in pca.project(x.baseAddress!, count: n, into: y.baseAddress!) }
        }
        for i in 0..<k {
            let column = (0..<n).map { Double(projected[$0 * k + i]) }
            let mean = column.reduce(0, +) / Double(n)
            let variance = column.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n - 1)
            #expect(abs(mean) < 1e-3)
            #expect(abs(variance - Double(pca.explainedVariance[i])) < 1e-4 * max(1, variance), "component \(i)")
            if i > 0 { #expect(pca.explainedVariance[i] <= pca.explainedVariance[i - 1]) }
            for j in 0..<i {
                let a = Array(pca.components[i * d..<(i + 1) * d]), b = Array(pca.components[j * d..<(j + 1) * d])
                #expect(abs(dot(a, b)) < 1e-4)
            }
        }
    }

    @Test("fewer samples than dimensions: the Gram-matrix path gives the covariance path's eigenpairs")
    func gramPathMatchesCovariance() throws {
        var rng = SeededRandom(seed: 31)
        let n = 40, d = 96, k = 5
        // Rows with a few strong directions so the top eigenvalues are well separated.
        let axes = (0..<k).map { _ in rng.vector(d) }
        var centred = [Float](repeating: 0, count: n * d)
        for r in 0..<n {
            let row = (0..<k).reduce(rng.vector(d).map { $0 * 0.01 }) { acc, a in
                let w = Float(k - a) * Float.random(in: -1...1, using: &rng)
                return zip(acc, axes[a]).map { $0 + w * $1 }
            }
            for j in 0..<d { centred[r * d + j] = row[j] }
        }
        for j in 0..<d {  // centre the columns, as fit does
            let mean = (0..<n).reduce(Float(0)) { $0 + centred[$1 * d + j] } / Float(n)
            for r in 0..<n { centred[r * d + j] -= mean }
        }
        let (gv, gu, gt) = try PCA.gramEigenpairs(centred, count: n, dimension: d, components: k)
        let (cv, cu, ct) = try PCA.covarianceEigenpairs(centred, count: n, dimension: d, components: k)
        let traceError: Double = Swift.abs(gt - ct)
        #expect(traceError <= 1e-4 * ct)
        for i in 0..<k {
            let valueError: Float = Swift.abs(gv[i] - cv[i])
            #expect(valueError <= 1e-3 * cv[k - 1], "eigenvalue \(i): \(gv[i]) vs \(cv[i])")
            let g = Array(gu[(i * d)..<((i + 1) * d)]), c = Array(cu[(i * d)..<((i + 1) * d)])
            let cosine: Double = Swift.abs(dot(g, c))
            #expect(Swift.abs(cosine - 1) < 1e-3, "eigenvector \(i): |cos| = \(cosine)")
        }
        // And fit takes that path: its components are unit length and its variance matches.
        let pca = try PCA.fit(centred, dimension: d, components: k)
        let totalError: Float = Swift.abs(pca.totalVariance - Float(ct))
        #expect(totalError <= 1e-4 * Float(ct))
        for i in 0..<k {
            let row = Array(pca.components[(i * d)..<((i + 1) * d)])
            #expect(Swift.abs(dot(row, row) - 1) < 1e-4)
        }
    }

    @Test("bad fits are refused with a reason")
    func badFits() {
        #expect(throws: PCAError.self) { try PCA.fit([1, 2, 3, 4], dimension: 2, components: 2) }  // 2 samples, 2 comps
        #expect(throws: PCAError.self) { try PCA.fit([1, 2, 3, 4, 5, 6], dimension: 2, components: 3) }
        #expect(throws: PCAError.self) { try PCA.fit([1, .nan, 3, 4, 5, 6], dimension: 2, components: 1) }
    }

    @Test("projection record: round trip, and damaged records are reported")
    func record() throws {
        let pca = try PCA.fit((0..<40).map { Float(($0 * 37) % 11) }, dimension: 4, components: 2, subtractsMean: false)
        let rec = ProjectionRecord(pca: pca, normalizesInput: true)
        let bytes = rec.encoded()
        #expect(bytes.count == ProjectionRecord.size(input: 4, output: 2))
        let back = try bytes.withUnsafeBytes { try ProjectionRecord.decode($0, context: "t") }
        #expect(back == rec)
        var short = bytes
        short.removeLast()
        #expect(throws: VecStoreError.self) { try short.withUnsafeBytes { try ProjectionRecord.decode($0, context: "t") } }
        var nan = bytes
        withUnsafeBytes(of: Float.nan.bitPattern.littleEndian) { nan.replaceSubrange(24..<28, with: $0) }
        #expect(throws: VecStoreError.self) { try nan.withUnsafeBytes { try ProjectionRecord.decode($0, context: "t") } }
        var flags = bytes
        flags[1] = 0x80
        #expect(throws: VecStoreError.self) { try flags.withUnsafeBytes { try ProjectionRecord.decode($0, context: "t") } }
    }
}

/// Documents near a low-dimensional subspace, so a PCA keeps their neighbours: `rank` strong directions plus noise.
func lowRankDocuments(_ count: Int, dimension: Int, rank: Int, seed: UInt64) -> [Document] {
    var rng = SeededRandom(seed: seed)
    let basis = householderBasis(dimension, seed: seed &+ 1)
    return (0..<count).map { i in
        var x = (0..<dimension).map { _ in Float.random(in: -0.05...0.05, using: &rng) }
        for j in 0..<rank {
            let c = Float.random(in: -1...1, using: &rng) * Float(rank - j)
            for t in 0..<dimension { x[t] += c * basis[j][t] }
        }
        x[0] += 4  // a common offset, as real embeddings have
        return Document(id: "p\(i)", vector: x, text: "doc \(i)", metadata: ["group": .string("g\(i % 3)")])
    }
}

@Suite("PCA-reduced collections")
struct ReducedCollectionTests {
    func importReduced(_ store: VecStore, _ docs: [Document], name: String = "r", dims: Int, metric: Metric = .cosine,
                       index: IndexKind = .hnswDefault) throws -> ImportReport
    {
        var options = ImportOptions()
        options.pca = PCAReduction(dimensions: dims, sampleSize: 300)
        options.batchSize = 250
        options.metric = metric
        options.index = index
        var reader = ArrayReader(docs)
        return try store.importRecords(from: &reader, into: name, options: options)
    }

    @Test("import --pca: reduced vectors stored, queries projected, search/delete/compact/verify work",
          arguments: [Metric.cosine, .l2, .dot])
    func lifecycle(metric: Metric) throws {
        let dir = try TempDir()
        let path = dir.path("r.vecstore")
        let docs = lowRankDocuments(1_500, dimension: 24, rank: 6, seed: 5)
        let store = try VecStore(path: path)
        let report = try importReduced(store, docs, dims: 8, metric: metric)
        #expect(report.imported == 1_500 && report.createdCollection)
        let c = try store.collection("r")
        #expect(c.dimension == 8)
        let pca = try #require(c.pca)
        #expect(pca.inputDimension == 24 && pca.outputDimension == 8 && pca.sampleCount == 300)
        #expect(pca.subtractsMean == (metric == .l2))
        // The store declares the `pca` feature (needed to write), which this build implements.
        let features = try store.read { txn in try txn.get(store.dbs.meta, Format.featuresKey).map { try Format.decodeFeatures($0) } }
        #expect(features == [Format.Feature(name: "pca", neededToRead: false, neededToWrite: true)])
        #expect(store.writeRefusal == nil)
        #expect(try c.get(id: "p3")?.vector.count == 8)

        // A full-dimensional query equals searching its projection by hand (normalised under cosine).
        let query = docs[7].vector
        var input = query
        if metric == .cosine { let n = Float(dot(query, query).squareRoot()); input = query.map { $0 / n } }
        let projected = pca.project(input)
        let viaFull = try c.search(query, k: 10, options: SearchOptions(exact: true))
        let viaReduced = try c.search(projected, k: 10, options: SearchOptions(exact: true))
        #expect(viaFull.map(\.id) == viaReduced.map(\.id))
        if metric != .dot { #expect(viaFull.first?.id == "p7") }
        // The graph answers the same queries (1,500 rows: above the exact-search threshold).
        let graph = try c.search(query, k: 10)
        #expect(Set(graph.map(\.id)).intersection(viaFull.map(\.id)).count >= 8)
        // Neighbours in the reduced space are mostly the full-space ones (the data is near rank 6).
        let truth = bruteForce(docs, query, k: 10, metric: metric).map(\.id)
        #expect(Set(truth).intersection(viaFull.map(\.id)).count >= 7, "\(truth) vs \(viaFull.map(\.id))")
        // By id: the stored (reduced) vector, the document itself left out.
        let similar = try c.search(similarTo: "p7", k: 5)
        #expect(similar.count == 5 && !similar.contains { $0.id == "p7" })
        // Writes of either dimension; wrong dimensions name both.
        try c.upsert([Document(id: "new", vector: docs[0].vector)])
        #expect(try c.get(id: "new")?.vector.count == 8)
        #expect(throws: VecStoreError.self) { try c.upsert([Document(id: "bad", vector: [1, 2, 3])]) }
        #expect(try c.delete(ids: ["p7", "p8", "new"]) == 3)
        #expect(try c.search(query, k: 10, options: SearchOptions(exact: true)).allSatisfy { $0.id != "p7" })
        #expect(try store.verify().isOK)

        try VecStore.compact(path: path)
        let reopened = try VecStore(path: path)
        let after = try reopened.collection("r")
        #expect(after.pca == pca, "compaction must carry the projection record over")
        #expect(try after.count() == 1_498)
        let expected = try after.search(pca.project(input), k: 10, options: SearchOptions(exact: true)).map(\.id)
        #expect(try after.search(query, k: 10, options: SearchOptions(exact: true)).map(\.id) == expected)
        #expect(try reopened.verify().isOK)
        #expect(try reopened.dropCollection("r"))
        let leftover = try reopened.read { txn in try txn.get(reopened.dbs.meta, ProjectionRecord.key(after.collectionID)) }
        #expect(leftover == nil)
        #expect(try reopened.verify().isOK)
    }

    @Test("--pca D ≥ dimension, too few records, or a different D on an existing collection are refused")
    func refused() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("r.vecstore"))
        let docs = lowRankDocuments(100, dimension: 12, rank: 3, seed: 2)
        #expect(throws: ImportFailure.self) { try importReduced(store, docs, name: "a", dims: 12) }
        #expect(throws: ImportFailure.self) { try importReduced(store, Array(docs.prefix(4)), name: "b", dims: 4) }
        #expect(try store.collectionNames().isEmpty, "a refused import leaves no collection")
        _ = try importReduced(store, docs, name: "c", dims: 4)
        do {
            _ = try importReduced(store, docs, name: "c", dims: 5)
            Issue.record("a different --pca on an existing collection was accepted")
        } catch {
            #expect("\(error)".contains("PCA to 4 dimensions"), "\(error)")
        }
    }

    @Test("library: a reduced collection created from a PCA projects upserts and queries")
    func createFromPCA() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("r.vecstore"))
        let docs = lowRankDocuments(200, dimension: 10, rank: 3, seed: 8)
        let pca = try PCA.fit(docs.flatMap(\.vector), dimension: 10, components: 3, subtractsMean: true)
        let c = try store.collection("l", reducing: pca, metric: .l2, index: .flat)
        try c.upsert(docs)
        #expect(c.dimension == 3 && c.pca == pca)
        #expect(try c.get(id: "p0")?.vector.count == 3)
        let hits = try c.search(docs[5].vector, k: 1)
        #expect(hits.first?.id == "p5" && abs(hits[0].score) < 1e-6)
        #expect(try store.collection("l", reducing: pca, metric: .l2).pca == pca)
        #expect(throws: VecStoreError.self) { try store.collection("l", reducing: pca.subtractingMean(false), metric: .l2) }
        _ = try store.collection("x", dimension: 3, metric: .l2)  // a plain collection of the reduced dimension
        #expect(throws: VecStoreError.self) { try store.collection("x", reducing: pca, metric: .l2) }
        #expect(try store.verify().isOK)
    }

    @Test("verify reports a damaged projection record")
    func verifyDamage() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("r.vecstore"))
        _ = try importReduced(store, lowRankDocuments(400, dimension: 10, rank: 3, seed: 7), dims: 3, index: .flat)
        let c = try store.collection("r")
        let good = try #require(c.projection).encoded()
        var nan = good
        withUnsafeBytes(of: Float.infinity.bitPattern.littleEndian) { nan.replaceSubrange(20..<24, with: $0) }
        var skew = good
        // First component entry doubled: components no longer orthonormal.
        let first = ProjectionRecord.headerBytes + 4 * (10 + 3)
        let x = Float(bitPattern: UInt32(littleEndian: good[first..<first + 4].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }))
        withUnsafeBytes(of: (x * 2 + 1).bitPattern.littleEndian) { skew.replaceSubrange(first..<first + 4, with: $0) }
        for (bytes, mentions) in [(nan, "mean"), (Array(good.dropLast(4)), "bytes"), (skew, "orthonormal")] {
            try store.write { txn in try txn.put(store.dbs.meta, ProjectionRecord.key(c.collectionID), bytes) }
            let report = try store.verify()
            #expect(!report.isOK)
            #expect(report.faults.contains { $0.contains(mentions) }, "\(report.faults)")
        }
        try store.write { txn in try txn.put(store.dbs.meta, ProjectionRecord.key(c.collectionID), good) }
        #expect(try store.verify().isOK)
        try store.write { txn in try txn.put(store.dbs.meta, ProjectionRecord.key(999), good) }
        #expect(try store.verify().faults.contains { $0.contains("unknown collection id 999") })
    }
}

/// A record reader over documents in memory.
struct ArrayReader: RecordReader {
    var docs: [Document]
    var index = 0
    init(_ docs: [Document]) { self.docs = docs }
    var bytesRead: UInt64 { UInt64(index) }
    var totalBytes: UInt64? { UInt64(docs.count) }
    var dimension: Int? { docs.first?.vector.count }
    mutating func next() throws(ImportError) -> ImportRecord? {
        guard index < docs.count else { return nil }
        defer { index += 1 }
        let d = docs[index]
        return ImportRecord(id: d.id, vector: d.vector, text: d.text, metadata: d.metadata,
                            location: SourceLocation(file: "memory", line: index + 1, record: index))
    }
}

@Suite("PCA maps")
struct ProjectionMapTests {
    @Test("SVG is well-formed with one circle per point; (none), other and escaping")
    func svg() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("m.vecstore"))
        let c = try store.collection("m", dimension: 5, metric: .cosine, index: .flat)
        var rng = SeededRandom(seed: 11)
        var docs: [Document] = []
        for i in 0..<200 {
            var meta: [String: JSONValue] = [:]
            if i % 10 != 0 { meta["kind"] = .string("k\(i % 15)") }  // 15 values: 3 fold into "other"
            docs.append(Document(id: "id<\(i)>&\"", vector: rng.vector(5),
                                 text: i == 1 ? "tricky \u{1}control & <tags> \"quotes\"" : "text \(i)", metadata: meta))
        }
        try c.upsert(docs)
        let map = try c.projectionMap(colorBy: "kind")
        #expect(map.points.count == 200 && map.population == 200)
        #expect(map.classes.count == 14, "12 kept + other + (none): \(map.classes.map(\.name))")
        #expect(map.classes.last?.name == "(none)" && map.classes.last?.count == 20)
        #expect(map.classes.contains { $0.name == "other" })
        #expect(map.classes.reduce(0) { $0 + $1.count } == 200)
        let svg = map.svg()
        let parsed = try #require(SVGCounter.parse(svg), "not well-formed XML")
        #expect(parsed.counts["circle"] == 200)
        #expect(parsed.titles.contains { $0.hasPrefix("id<1>&\"\ntricky  control & <tags>") })
        #expect(svg.contains("PC1 (") && svg.contains("% of variance)"))
        // Sampling is seeded: the same seed gives the same map, another seed another sample.
        let a = try c.projectionMap(colorBy: "kind", sample: 50, seed: 1)
        let b = try c.projectionMap(colorBy: "kind", sample: 50, seed: 1)
        let other = try c.projectionMap(colorBy: "kind", sample: 50, seed: 2)
        #expect(a.points == b.points && a.points.count == 50 && a.population == 200)
        #expect(a.points.map(\.id) != other.points.map(\.id))
        #expect(SVGCounter.parse(a.svg())?.counts["circle"] == 50)
        // A filter narrows the map.
        let filtered = try c.projectionMap(colorBy: "kind", filter: .field("kind", .equals("k1")))
        #expect(filtered.points.count == filtered.population && filtered.classes.map(\.name) == ["k1"])
    }

    @Test("coordinates beyond Int range, or not finite, are drawn or left out without trapping")
    func extremeCoordinates() throws {
        // An l2 collection may hold a vector of norm up to √Float.max ≈ 1.8e19: its tick labels exceed Int.
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("m.vecstore"))
        let c = try store.collection("m", dimension: 3, metric: .l2, index: .flat)
        try c.upsert([Document(id: "far", vector: [1.8e19, 0, 0]), Document(id: "a", vector: [0, 1, 0]),
                      Document(id: "b", vector: [0, 0, 1])])
        let svg = try c.projectionMap().svg()
        #expect(SVGCounter.parse(svg)?.counts["circle"] == 3)
        #expect(svg.contains("e+18") || svg.contains("e+19"), "large tick labels in exponent form")
        // The plot itself: NaN and infinite points are left out; a range wider than Double holds still draws.
        var plot = ScatterPlot(title: "t", xLabel: "x", yLabel: "y")
        plot.classes = [.init(name: "c", count: 5)]
        plot.points = [(0.0, 1.0), (.nan, 2), (3, .infinity), (-1.7e308, 0), (1.7e308, 5)].map {
            .init(x: $0.0, y: $0.1, classIndex: 0, title: "p")
        }
        #expect(SVGCounter.parse(plot.svg())?.counts["circle"] == 3)
    }

    @Test("empty and one-document collections give a clear message")
    func tooSmall() throws {
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("m.vecstore"))
        let c = try store.collection("m", dimension: 4)
        for expected in ["has 0 documents", "has 1 document:"] {
            do {
                _ = try c.projectionMap()
                Issue.record("no error")
            } catch {
                #expect("\(error)".contains(expected), "\(error)")
            }
            try c.upsert([Document(id: "only", vector: [1, 2, 3, 4])])
        }
    }

    @Test("CLI: plot writes SVG, PNG through rsvg-convert, and refuses bad input")
    func cli() throws {
        let dir = try TempDir()
        let store = dir.path("p.vecstore")
        let input = dir.path("d.jsonl")
        try Data(jsonl(makeDocuments(300, dimension: 8, seed: 4)).utf8).write(to: URL(fileURLWithPath: input))
        #expect(try runCLI(["import", store, "-c", "d", input, "--quiet"]).status == 0)
        let svgPath = dir.path("map.svg")
        let r = try runCLI(["plot", store, "-c", "d", "--color-by", "category", "-o", svgPath])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("300 of 300 documents"))
        let svg = try String(contentsOfFile: svgPath, encoding: .utf8)
        #expect(SVGCounter.parse(svg)?.counts["circle"] == 300)
        if SVGRasterizerProbe.available {
            let pngPath = dir.path("map.png")
            let p = try runCLI(["plot", store, "-c", "d", "--color-by", "category", "--sample", "100", "-o", pngPath])
            #expect(p.status == 0, "\(p.stderr)")
            let png = try Data(contentsOf: URL(fileURLWithPath: pngPath))
            #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]) && png.count > 1000)
        }
        #expect(try runCLI(["import", store, "-c", "one", input, "--quiet"]).status == 0)
        let ids = (0..<300).filter { $0 != 5 }.map { "doc-\($0)" }
        #expect(try runCLI(["delete", store, "-c", "one"] + ids).status == 0)
        let one = try runCLI(["plot", store, "-c", "one", "-o", dir.path("x.svg")])
        #expect(one.status != 0 && one.stderr.contains("has 1 document"), "\(one.stderr)")
        let refused = try runCLI(["import", dir.path("q.vecstore"), "-c", "q", input, "--pca", "8"])
        #expect(refused.status != 0 && refused.stderr.contains("less than the input dimension 8"), "\(refused.stderr)")
    }

    @Test("docs60k: the 2-D map separates sources above chance (nearest centroid vs majority class)")
    func docs60kSeparation() throws {
        let base = sharedData.appendingPathComponent("docs60k")
        guard FileManager.default.fileExists(atPath: base.appendingPathComponent("base.fvecs").path) else { return }
        let n = 3_000
        let lines = try String(contentsOf: base.appendingPathComponent("base.jsonl"), encoding: .utf8)
            .split(separator: "\n", maxSplits: n, omittingEmptySubsequences: true).prefix(n)
        let handle = try FileHandle(forReadingFrom: base.appendingPathComponent("base.fvecs"))
        let raw = try handle.read(upToCount: n * (4 + 384 * 4)) ?? Data()
        var docs: [Document] = []
        for (i, line) in lines.enumerated() {
            guard case .object(let o) = try JSONValue.parse(String(line)), case .string(let id)? = o["id"],
                  case .object(let meta)? = o["metadata"] else { continue }
            let vector = raw.withUnsafeBytes { b in
                (0..<384).map { Float(bitPattern: b.loadUnaligned(fromByteOffset: i * 1540 + 4 + 4 * $0, as: UInt32.self)) }
            }
            docs.append(Document(id: id, vector: vector, metadata: meta))
        }
        #expect(docs.count == n)
        let dir = try TempDir()
        let store = try VecStore(path: dir.path("d.vecstore"))
        let c = try store.collection("docs", dimension: 384, index: .flat)
        try c.upsert(docs)
        let map = try c.projectionMap(colorBy: "source", sample: n)
        var sums: [String: (x: Double, y: Double, n: Int)] = [:]
        for p in map.points {
            let s = sums[p.label] ?? (0, 0, 0)
            sums[p.label] = (s.x + Double(p.x), s.y + Double(p.y), s.n + 1)
        }
        let centroids = sums.mapValues { (x: $0.x / Double($0.n), y: $0.y / Double($0.n)) }
        let correct = map.points.filter { p in
            let best = centroids.min { a, b in
                pow(a.value.x - Double(p.x), 2) + pow(a.value.y - Double(p.y), 2)
                    < pow(b.value.x - Double(p.x), 2) + pow(b.value.y - Double(p.y), 2)
            }
            return best?.key == p.label
        }.count
        let accuracy = Double(correct) / Double(map.points.count)
        let majority = Double(sums.values.map(\.n).max() ?? 0) / Double(map.points.count)
        #expect(accuracy > majority + 0.05, "nearest-centroid accuracy \(accuracy) vs majority class \(majority)")
    }
}

/// Whether rsvg-convert is on PATH (PNG tests are skipped without it).
enum SVGRasterizerProbe {
    static let available: Bool = {
        (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":")
            .contains { FileManager.default.isExecutableFile(atPath: "\($0)/rsvg-convert") }
    }()
}
