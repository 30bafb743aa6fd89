import Dispatch

/// Spreads independent per-query work over threads: the one place the batch searches of the index kinds
/// (HNSW, IVF) split their queries. Queries are assigned interleaved (worker `w` takes `w`, `w + workers`, …),
/// which keeps workers balanced without a shared counter.
public enum QueryWorkers {
    /// The results of `count` queries, in query order, computed by up to `threads` workers (one on the
    /// calling thread when `threads` ≤ 1 or `count` ≤ 1). `worker` runs once per worker with the query
    /// numbers it owns and a `put(i, result)` to record query `i`'s result; it can set up per-worker state
    /// (scratch buffers) around its loop. `placeholder` fills the slots before they are written.
    ///
    /// Inlinable so each caller gets it specialised for its result type: a single query through the generic
    /// version paid for runtime metadata look-ups, an unspecialised buffer and a copy of it into the array
    /// (~2,800 instructions of a siftsmall IVF-Flat nprobe-1 query of ~47,000, under callgrind). One worker
    /// writes straight into the returned array.
    @inlinable
    public static func map<Result>(count: Int, threads: Int, placeholder: Result,
                                   _ worker: (_ queries: StrideTo<Int>, _ put: (Int, Result) -> Void) -> Void) -> [Result] {
        guard count > 0 else { return [] }
        let workers = max(1, min(threads, count))
        if workers > 1 { return mapConcurrent(count: count, workers: workers, placeholder: placeholder, worker) }
        var results = [Result].filled(placeholder, count: count)
        results.withUnsafeMutableBufferPointer { buffer in
            let out = buffer
            worker(stride(from: 0, to: count, by: 1)) { i, r in out[i] = r }
        }
        return results
    }

    /// `map` over `workers` (≥ 2) threads.
    @usableFromInline
    static func mapConcurrent<Result>(count: Int, workers: Int, placeholder: Result,
                                      _ worker: (_ queries: StrideTo<Int>, _ put: (Int, Result) -> Void) -> Void) -> [Result] {
        let out = UnsafeMutableBufferPointer<Result>.allocate(capacity: count)
        out.initialize(repeating: placeholder)
        defer { out.deinitialize(); out.deallocate() }
        let put: (Int, Result) -> Void = { i, r in out[i] = r }
        withoutActuallyEscaping(worker) { body in
            let shared = UnsafeSendable((body, put))
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                let (body, put) = shared.value
                body(stride(from: w, to: count, by: workers), put)
            }
        }
        return Array(out)
    }
}

extension Array {
    /// `count` copies of `value`, as `Array(repeating:count:)` makes them, but allocated through the
    /// growth path the caller's module specialises (`reserveCapacity`): `Array(repeating:count:)` allocates in
    /// an unspecialised standard-library function that looks the storage class's metadata up at run time
    /// (~650 instructions under callgrind, paid by every query for its `TopK` and its result array).
    @inlinable
    static func filled(_ value: Element, count: Int) -> [Element] {
        var array: [Element] = []
        array.reserveCapacity(count)
        for _ in 0..<count { array.append(value) }
        return array
    }
}
