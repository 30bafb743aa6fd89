import ArgumentParser
import Foundation
import VecStore

struct PlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot",
        abstract: "Draw a 2-D PCA map of a collection as an SVG (or PNG) scatter plot.",
        discussion: """
            The documents (or a seeded sample of them) are projected on the first two principal components of their stored vectors. Points are coloured by a metadata field (documents without it are grey, "(none)"; beyond 12 values the smallest are folded into "other"), the legend gives counts, and each point's tooltip (hover in a browser) shows its id and the start of its text. The axes say how much of the variance each component explains. --format png rasterises the SVG with rsvg-convert (Debian package librsvg2-bin).

            Examples:
              vecstore plot demo.vecstore -c docs --color-by topic -o map.svg
              vecstore plot demo.vecstore -c docs --sample 100 --seed 7 -o sample.svg
              vecstore plot demo.vecstore -c docs --color-by topic \\
                --filter '{"year": {"$gte": 2020}}' -o recent.svg
              vecstore plot demo.vecstore -c docs --color-by topic --format png \\
                -o map.png                                 # needs rsvg-convert
            """)

    @OptionGroup var target: StoreArguments

    @Option(help: "Metadata field whose value colours each point.")
    var colorBy: String?

    @Option(help: "Documents drawn at most (a seeded random sample of larger collections).")
    var sample = 5_000

    @Option(help: "Seed of the sample.")
    var seed: UInt64 = 42

    @Option(help: "Metadata filter (JSON): map only the matching documents.")
    var filter: String?

    @Option(name: .shortAndLong, help: "Output file.")
    var output: String

    @Option(help: "Output format: svg or png (png needs rsvg-convert). Default: from the output file's extension.")
    var format: PlotFormat?

    @Option(help: "Title above the map (default: 'PCA map of COLLECTION').")
    var title: String?

    @Option(help: "Image width in pixels.")
    var width = 960

    @Option(help: "Image height in pixels.")
    var height = 680

    func validate() throws {
        if sample < 3 { throw ValidationError("--sample must be at least 3") }
        if width < 200 || height < 150 { throw ValidationError("--width must be at least 200 and --height at least 150") }
    }

    func run() throws {
        let chosen = format ?? (output.lowercased().hasSuffix(".png") ? .png : .svg)
        try reportingErrors {
            let store = try target.open()
            let collection = try store.collection(target.collection)
            let map = try collection.projectionMap(colorBy: colorBy, sample: sample,
                                                   filter: try filter.map { try Filter(json: $0) }, seed: seed)
            let svg = map.svg(title: title, width: width, height: height)
            switch chosen {
            case .svg:
                do { try Data(svg.utf8).write(to: URL(fileURLWithPath: output)) } catch {
                    throw VecStoreError.io("could not write \(output): \(error.localizedDescription)")
                }
            case .png:
                try SVGRasterizer.png(svg: svg, to: output, width: width)
            }
            let ratio = map.pca.explainedVarianceRatio
            print("\(output): \(map.points.count) of \(map.population) documents, "
                  + String(format: "PC1 %.1f%%, PC2 %.1f%% of variance", ratio[0] * 100, ratio[1] * 100)
                  + (map.colorField.map { f in ", \(map.classes.count) classes of '\(f)'" } ?? ""))
        }
    }
}

/// `--format` values of `plot`.
enum PlotFormat: String, ExpressibleByArgument, CaseIterable {
    case svg, png
}

/// Turns SVG into PNG with `rsvg-convert` (librsvg), when it is installed.
enum SVGRasterizer {
    /// Where `rsvg-convert` is, searching `PATH`.
    static func locate() -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/rsvg-convert"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    static func png(svg: String, to output: String, width: Int) throws {
        guard let tool = locate() else {
            throw VecStoreError.invalidArgument(
                "--format png needs rsvg-convert, which is not installed (Debian/Ubuntu: apt-get install librsvg2-bin); "
                + "write an SVG instead (-o map.svg)")
        }
        let input = FileManager.default.temporaryDirectory
            .appendingPathComponent("vecstore-plot-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).svg")
        defer { try? FileManager.default.removeItem(at: input) }
        do { try Data(svg.utf8).write(to: input) } catch {
            throw VecStoreError.io("could not write a temporary SVG: \(error.localizedDescription)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = ["--format", "png", "--width", String(width), "--output", output, input.path]
        let errors = Pipe()
        process.standardError = errors
        do { try process.run() } catch { throw VecStoreError.io("could not run \(tool): \(error.localizedDescription)") }
        let message = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw VecStoreError.io("rsvg-convert failed (status \(process.terminationStatus)): "
                + String(decoding: message, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }
}
