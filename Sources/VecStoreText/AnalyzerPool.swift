import Foundation

/// Hands out analyzers so that each is used by one thread at a time (Snowball stemmers are not
/// thread-safe), keeping a few idle ones per option set so that queries do not pay for creating
/// a stemmer and refilling its cache.
public final class AnalyzerPool: @unchecked Sendable {  // state guarded by `lock`
    /// The process-wide pool.
    public static let shared = AnalyzerPool()

    private final class Box: @unchecked Sendable {
        // Only touched while the pool's mutex is held or by the single borrower.
        let analyzer: Analyzer
        init(_ a: Analyzer) { analyzer = a }
    }

    private let lock = NSLock()
    nonisolated(unsafe) private var idle: [AnalyzerOptions: [Box]] = [:]
    private let maxIdlePerOptions = 16

    /// Creates an empty pool.
    public init() {}

    /// Runs `body` with an analyzer for `options` that no other thread uses meanwhile.
    public func withAnalyzer<R, E: Error>(_ options: AnalyzerOptions, _ body: (Analyzer) throws(E) -> R)
        throws(AnalyzerPoolError<E>) -> R
    {
        let box: Box
        if let b = lock.withLock({ idle[options]?.popLast() }) {
            box = b
        } else {
            do { box = Box(try Analyzer(options)) } catch { throw .analyzer(error) }
        }
        defer {
            box.analyzer.trimCache()
            lock.withLock {
                if idle[options, default: []].count < maxIdlePerOptions { idle[options, default: []].append(box) }
            }
        }
        do { return try body(box.analyzer) } catch { throw .body(error) }
    }
}

/// An error from `AnalyzerPool.withAnalyzer`: the analyzer could not be made, or the body threw.
public enum AnalyzerPoolError<E: Error>: Error {
    /// Creating the analyzer failed.
    case analyzer(AnalyzerError)
    /// The body threw.
    case body(E)
}
