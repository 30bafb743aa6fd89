/// A 2-D scatter plot of labelled points, drawn as one self-contained SVG file: one `<circle>` per point
/// (with a `<title>` child, which browsers show on hover), axes with ticks and labels, and a legend with
/// the number of points in each class.
///
/// ```swift
/// var plot = ScatterPlot(title: "docs", xLabel: "PC1", yLabel: "PC2")
/// plot.classes = [.init(name: "linux", count: 2), .init(name: "(none)", count: 1, color: ScatterPlot.noneColor)]
/// plot.points = [.init(x: 0, y: 1, classIndex: 0, title: "a"), ...]
/// let svg = plot.svg()
/// ```
public struct ScatterPlot: Sendable {
    /// One point.
    public struct Point: Sendable, Equatable {
        /// Horizontal data coordinate.
        public var x: Double
        /// Vertical data coordinate.
        public var y: Double
        /// Index into `classes` (its colour).
        public var classIndex: Int
        /// Hover text (plain text; escaped when written).
        public var title: String
        /// Creates a point.
        public init(x: Double, y: Double, classIndex: Int, title: String) {
            self.x = x
            self.y = y
            self.classIndex = classIndex
            self.title = title
        }
    }

    /// A class of points: a legend entry and a colour.
    public struct PointClass: Sendable, Equatable {
        /// Legend text.
        public var name: String
        /// Points in the class (shown in the legend).
        public var count: Int
        /// CSS colour; nil takes the next colour of `palette`.
        public var color: String?
        /// Creates a class.
        public init(name: String, count: Int, color: String? = nil) {
            self.name = name
            self.count = count
            self.color = color
        }
    }

    /// Twelve colours that stay distinct for most readers (Tableau 10 plus two), in legend order.
    public static let palette = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
                                 "#b07aa1", "#ff9da7", "#9c755f", "#17becf", "#8c564b", "#1f3b73"]
    /// Colour of the "(none)" class (points without the field).
    public static let noneColor = "#b8b8b8"
    /// Colour of the "other" class (classes folded together).
    public static let otherColor = "#5f5f5f"

    /// Title above the plot.
    public var title: String
    /// Label under the horizontal axis.
    public var xLabel: String
    /// Label beside the vertical axis.
    public var yLabel: String
    /// Legend heading (for example the field that colours the points).
    public var legendTitle: String
    /// The classes, in legend order.
    public var classes: [PointClass] = []
    /// The points, drawn in this order (later points on top).
    public var points: [Point] = []
    /// A line of small print under the title.
    public var subtitle: String?

    /// Creates an empty plot.
    public init(title: String, xLabel: String, yLabel: String, legendTitle: String = "") {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.legendTitle = legendTitle
    }

    /// The colour of each class: its own, else the next palette colour.
    public var resolvedColors: [String] {
        var next = 0
        return classes.map { c in
            if let color = c.color { return color }
            defer { next += 1 }
            return Self.palette[next % Self.palette.count]
        }
    }

    /// The plot as an SVG document of `width × height` pixels.
    public func svg(width: Int = 960, height: Int = 680) -> String {
        let legendWidth = 230.0
        let left = 70.0, right = legendWidth + 20, top = subtitle == nil ? 50.0 : 66.0, bottom = 56.0
        let w = Double(width), h = Double(height)
        let plotW = max(50, w - left - right), plotH = max(50, h - top - bottom)
        // A point without finite coordinates has no place on the plot: it is left out (and out of the axes).
        let drawn = points.filter { $0.x.isFinite && $0.y.isFinite }
        let xs = Axis(drawn.map(\.x)), ys = Axis(drawn.map(\.y))
        func px(_ x: Double) -> Double { left + (x - xs.low) / (xs.high - xs.low) * plotW }
        func py(_ y: Double) -> Double { top + plotH - (y - ys.low) / (ys.high - ys.low) * plotH }
        let colors = resolvedColors
        let radius = points.count > 20_000 ? 1.6 : points.count > 3_000 ? 2.2 : 3.2
        var s = ""
        s.reserveCapacity(points.count * 120 + 4096)
        s += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        s += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" "
        s += "viewBox=\"0 0 \(width) \(height)\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n"
        s += "<title>\(xmlEscape(title))</title>\n"
        s += "<rect x=\"0\" y=\"0\" width=\"\(width)\" height=\"\(height)\" fill=\"#ffffff\"/>\n"
        s += "<text x=\"\(fmt(left))\" y=\"26\" font-size=\"16\" font-weight=\"bold\">\(xmlEscape(title))</text>\n"
        if let subtitle {
            s += "<text x=\"\(fmt(left))\" y=\"46\" fill=\"#555555\">\(xmlEscape(subtitle))</text>\n"
        }
        // Frame, grid and ticks.
        s += "<g stroke=\"#e4e4e4\" stroke-width=\"1\">\n"
        for t in xs.ticks { s += "<line x1=\"\(fmt(px(t)))\" y1=\"\(fmt(top))\" x2=\"\(fmt(px(t)))\" y2=\"\(fmt(top + plotH))\"/>\n" }
        for t in ys.ticks { s += "<line x1=\"\(fmt(left))\" y1=\"\(fmt(py(t)))\" x2=\"\(fmt(left + plotW))\" y2=\"\(fmt(py(t)))\"/>\n" }
        s += "</g>\n"
        s += "<rect x=\"\(fmt(left))\" y=\"\(fmt(top))\" width=\"\(fmt(plotW))\" height=\"\(fmt(plotH))\" fill=\"none\" stroke=\"#888888\"/>\n"
        s += "<g fill=\"#444444\" font-size=\"11\">\n"
        for t in xs.ticks {
            s += "<text x=\"\(fmt(px(t)))\" y=\"\(fmt(top + plotH + 16))\" text-anchor=\"middle\">\(xs.label(t))</text>\n"
        }
        for t in ys.ticks {
            s += "<text x=\"\(fmt(left - 6))\" y=\"\(fmt(py(t) + 4))\" text-anchor=\"end\">\(ys.label(t))</text>\n"
        }
        s += "</g>\n"
        s += "<text x=\"\(fmt(left + plotW / 2))\" y=\"\(fmt(h - 14))\" text-anchor=\"middle\">\(xmlEscape(xLabel))</text>\n"
        s += "<text transform=\"translate(18 \(fmt(top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\">\(xmlEscape(yLabel))</text>\n"
        // Points.
        s += "<g id=\"points\" fill-opacity=\"0.75\" stroke=\"none\">\n"
        for p in drawn {
            let color = colors.indices.contains(p.classIndex) ? colors[p.classIndex] : Self.noneColor
            s += "<circle cx=\"\(fmt(px(p.x)))\" cy=\"\(fmt(py(p.y)))\" r=\"\(fmt(radius))\" fill=\"\(color)\">"
            s += "<title>\(xmlEscape(p.title))</title></circle>\n"
        }
        s += "</g>\n"
        // Legend.
        let lx = left + plotW + 24
        var ly = top + 4
        s += "<g id=\"legend\">\n"
        if !legendTitle.isEmpty {
            s += "<text x=\"\(fmt(lx))\" y=\"\(fmt(ly + 10))\" font-weight=\"bold\">\(xmlEscape(legendTitle))</text>\n"
            ly += 22
        }
        for (i, c) in classes.enumerated() {
            s += "<rect x=\"\(fmt(lx))\" y=\"\(fmt(ly))\" width=\"12\" height=\"12\" fill=\"\(colors[i])\"/>"
            s += "<text x=\"\(fmt(lx + 18))\" y=\"\(fmt(ly + 10))\">\(xmlEscape(truncate(c.name, 22))) (\(c.count))</text>\n"
            ly += 19
        }
        s += "</g>\n</svg>\n"
        return s
    }

    private func truncate(_ text: String, _ n: Int) -> String { text.count > n ? text.prefix(n - 1) + "…" : text }
}

/// A linear axis over data values: a padded range and "nice" tick positions.
struct Axis {
    let low: Double, high: Double
    let ticks: [Double]
    let step: Double

    init(_ values: [Double]) {
        var lo = values.min() ?? 0, hi = values.max() ?? 1
        if !lo.isFinite || !hi.isFinite || !(hi - lo).isFinite { lo = 0; hi = 1 }
        if hi - lo < 1e-12 { lo -= 1; hi += 1 }
        let pad = (hi - lo) * 0.04
        lo -= pad
        hi += pad
        let raw = (hi - lo) / 6
        let magnitude = pow10(floorLog10(raw))
        let fraction = raw / magnitude
        let nice: Double = fraction < 1.5 ? 1 : fraction < 3 ? 2 : fraction < 7 ? 5 : 10
        step = nice * magnitude
        var t = (lo / step).rounded(.up) * step
        var ticks: [Double] = []
        while t <= hi + step * 1e-9 && ticks.count < 20 {
            ticks.append(abs(t) < step * 1e-9 ? 0 : t)
            t += step
        }
        low = lo
        high = hi
        self.ticks = ticks
    }

    /// A tick label with as many decimals as the step needs.
    func label(_ v: Double) -> String {
        let decimals = max(0, -Int(floorLog10(step)))
        return formatFixed(v, decimals: decimals)
    }
}

func floorLog10(_ x: Double) -> Double {
    guard x > 0, x.isFinite else { return 0 }
    var e = 0.0, v = x
    while v >= 10 { v /= 10; e += 1 }
    while v < 1 { v *= 10; e -= 1 }
    return e
}

func pow10(_ e: Double) -> Double {
    var r = 1.0
    if e >= 0 { for _ in 0..<Int(e) { r *= 10 } } else { for _ in 0..<Int(-e) { r /= 10 } }
    return r
}

/// `v` with a fixed number of decimals, without Foundation; beyond what an `Int` holds (or not finite), in
/// Swift's shortest form (`1e+19`).
func formatFixed(_ v: Double, decimals: Int) -> String {
    let scale = pow10(Double(decimals))
    let scaled = (abs(v) * scale).rounded()
    guard scaled < 1e18 else { return String(v) }
    let whole = Int(scaled / scale)
    let frac = Int(scaled - Double(whole) * scale)
    var s = (v < 0 && scaled > 0 ? "-" : "") + String(whole)
    if decimals > 0 {
        let f = String(frac)
        s += "." + String(repeating: "0", count: max(0, decimals - f.count)) + f
    }
    return s
}

/// A coordinate with two decimals.
func fmt(_ v: Double) -> String { formatFixed(v, decimals: 2) }

/// `text` made safe for XML character data and attribute values: `& < > " '` escaped, characters that
/// XML 1.0 forbids (C0 controls other than tab, newline and return; U+FFFE, U+FFFF) replaced by spaces.
public func xmlEscape(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count)
    for scalar in text.unicodeScalars {
        switch scalar {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        case "\t", "\n", "\r": out.unicodeScalars.append(scalar)
        default:
            if scalar.value < 0x20 || scalar.value == 0xFFFE || scalar.value == 0xFFFF {
                out += " "
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out
}
