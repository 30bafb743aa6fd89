#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only file with a fixed-size buffer, read by lines or by byte counts.
///
/// Memory use is constant except for a line longer than the buffer, which is gathered into a
/// separate array for the duration of one `nextLine` call.
final class BufferedFile {
    let path: String
    /// The file size for regular files, nil otherwise.
    let totalBytes: UInt64?
    /// Bytes handed out so far (lines including their terminators, or bytes read).
    private(set) var consumed: UInt64 = 0

    private let descriptor: Int32
    private let storage: UnsafeMutableRawPointer
    private let capacity: Int
    private var start = 0
    private var end = 0
    private var reachedEOF = false
    private var longLine: [UInt8] = []

    static let defaultBufferSize = 1 << 16

    init(path: String, bufferSize: Int = BufferedFile.defaultBufferSize) throws(ImportError) {
        self.path = path
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw ImportError(location: nil, reason: "cannot open '\(path)': \(Self.systemError())")
        }
        var status = stat()
        if fstat(descriptor, &status) == 0 {
            if (status.st_mode & S_IFMT) == S_IFDIR {
                close(descriptor)
                throw ImportError(location: nil, reason: "cannot read '\(path)': it is a directory")
            }
            totalBytes = (status.st_mode & S_IFMT) == S_IFREG ? UInt64(status.st_size) : nil
        } else {
            totalBytes = nil
        }
        self.descriptor = descriptor
        capacity = max(bufferSize, 16)
        storage = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
    }

    deinit {
        close(descriptor)
        storage.deallocate()
    }

    private static func systemError() -> String {
        String(cString: strerror(errno))
    }

    /// Compacts the buffer and reads more bytes; returns false at end of file.
    private func fill() throws(ImportError) -> Bool {
        if reachedEOF { return false }
        if start > 0 {
            if start < end {
                memmove(storage, storage + start, end - start)
            }
            end -= start
            start = 0
        }
        precondition(end < capacity, "BufferedFile.fill called with a full buffer")
        while true {
            let count = read(descriptor, storage + end, capacity - end)
            if count > 0 {
                end += count
                return true
            }
            if count == 0 {
                reachedEOF = true
                return false
            }
            if errno != EINTR {
                throw ImportError(location: nil, reason: "cannot read '\(path)': \(Self.systemError())")
            }
        }
    }

    /// Calls `body` with the next line (without its "\n" or "\r\n"), or returns nil at end of file.
    /// A final line without a terminating newline is returned too.
    func nextLine<Value>(_ body: (UnsafeRawBufferPointer) throws(ImportError) -> Value) throws(ImportError) -> Value? {
        var searchFrom = start
        while true {
            if searchFrom < end, let found = memchr(storage + searchFrom, 0x0A, end - searchFrom) {
                let newline = storage.distance(to: found)
                consumed += UInt64(longLine.count + newline + 1 - start)
                let piece = UnsafeRawBufferPointer(start: storage + start, count: newline - start)
                start = newline + 1
                return try deliver(piece, body)
            }
            if end == capacity && start == 0 {
                // The buffer holds only part of one long line: move it aside.
                longLine.append(contentsOf: UnsafeRawBufferPointer(start: storage, count: end))
                start = 0
                end = 0
            }
            let scanned = end - start
            guard try fill() else {
                guard start < end || !longLine.isEmpty else { return nil }
                consumed += UInt64(longLine.count + end - start)
                let piece = UnsafeRawBufferPointer(start: storage + start, count: end - start)
                start = end
                return try deliver(piece, body)
            }
            searchFrom = start + scanned
        }
    }

    private func deliver<Value>(_ piece: UnsafeRawBufferPointer,
                                 _ body: (UnsafeRawBufferPointer) throws(ImportError) -> Value) throws(ImportError) -> Value {
        if longLine.isEmpty {
            return try body(Self.trimmingCarriageReturn(piece))
        }
        longLine.append(contentsOf: piece)
        defer { longLine = [] }
        return try longLine.withUnsafeBytes { line in
            Result { () throws(ImportError) in try body(Self.trimmingCarriageReturn(line)) }
        }.get()
    }

    private static func trimmingCarriageReturn(_ line: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        if let last = line.last, last == 0x0D {
            return UnsafeRawBufferPointer(rebasing: line.dropLast())
        }
        return line
    }

    /// Reads up to `destination.count` bytes; returns fewer only at end of file.
    func readBytes(into destination: UnsafeMutableRawBufferPointer) throws(ImportError) -> Int {
        var copied = 0
        while copied < destination.count {
            if start == end {
                guard try fill() else { break }
            }
            let chunk = min(end - start, destination.count - copied)
            if let target = destination.baseAddress {
                (target + copied).copyMemory(from: storage + start, byteCount: chunk)
            }
            start += chunk
            copied += chunk
        }
        consumed += UInt64(copied)
        return copied
    }
}
