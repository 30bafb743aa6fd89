#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import VecStoreIO

/// A safetensors file (an 8-byte little-endian header length, a JSON header naming each tensor's
/// dtype, shape and byte range, then the raw little-endian data), memory-mapped read-only.
///
/// Every header field is checked when the file is opened: the header must be a JSON object, every
/// tensor must have a known dtype, a shape of non-negative integers, and a byte range that lies inside
/// the data section and matches its shape. Tensor data is read in place from the map.
public final class SafetensorsFile: @unchecked Sendable {
    /// Element types of safetensors, with their sizes in bytes.
    public enum DType: String, Sendable, CaseIterable {
        case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16", i64 = "I64", i32 = "I32", i16 = "I16"
        case i8 = "I8", u8 = "U8", bool = "BOOL"
        /// Bytes per element.
        public var size: Int {
            switch self {
            case .f64, .i64: 8
            case .f32, .i32: 4
            case .f16, .bf16, .i16: 2
            case .i8, .u8, .bool: 1
            }
        }
    }

    /// One tensor's header entry.
    public struct TensorInfo: Sendable, Equatable {
        /// Element type.
        public var dtype: DType
        /// Shape, outermost dimension first.
        public var shape: [Int]
        /// Byte range inside the data section.
        public var range: Range<Int>
        /// Number of elements (the product of the shape).
        public var count: Int { shape.reduce(1, *) }
    }

    /// The path the file was opened from.
    public let path: String
    /// Tensors by name.
    public let tensors: [String: TensorInfo]
    /// The `__metadata__` string map of the header (empty when absent).
    public let metadata: [String: String]

    private let base: UnsafeMutableRawPointer
    private let mappedBytes: Int
    private let dataOffset: Int

    /// Largest header accepted (the format's own limit is 100 MB).
    static let maxHeaderBytes = 100_000_000

    /// Maps `path` and checks its header.
    public init(path: String) throws(EmbedError) {
        self.path = path
        func bad(_ reason: String) -> EmbedError { .badModel(path: path, reason: reason) }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw bad("cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw bad("cannot stat: \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw bad("not a regular file") }
        let size = Int(st.st_size)
        guard size >= 8 else { throw bad("not a safetensors file: \(size) bytes, shorter than the 8-byte header length") }
        guard let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
            throw bad("cannot map: \(String(cString: strerror(errno)))")
        }
        var ok = false
        defer { if !ok { munmap(mapped, size) } }
        let headerLength = UInt64(littleEndian: mapped.loadUnaligned(as: UInt64.self))
        guard headerLength >= 2, headerLength <= UInt64(Self.maxHeaderBytes), headerLength <= UInt64(size - 8) else {
            throw bad("not a safetensors file or truncated: header length \(headerLength) does not fit in a file of \(size) bytes")
        }
        let headerBytes = UnsafeRawBufferPointer(start: mapped + 8, count: Int(headerLength))
        let header: JSONValue
        do throws(JSONParseError) {
            header = try JSONValue.parse(headerBytes)
        } catch {
            throw bad("damaged safetensors header: \(error)")
        }
        guard case .object(let entries) = header else { throw bad("damaged safetensors header: not a JSON object") }
        let dataStart = 8 + Int(headerLength)
        let dataBytes = size - dataStart
        // A file cut short is named as such whichever tensor the header lists first: the furthest data end the
        // header declares is compared with the data section before any tensor is checked on its own.
        var declaredEnd = 0.0
        for (_, value) in entries {
            if case .object(let fields) = value, case .array(let offsets)? = fields["data_offsets"], offsets.count == 2,
               case .number(let hi) = offsets[1], hi.isFinite {
                declaredEnd = max(declaredEnd, hi)
            }
        }
        guard declaredEnd <= Double(dataBytes) else {
            throw bad("truncated: the header declares \(UInt64(min(declaredEnd, 1e18))) data bytes, the file holds \(dataBytes)")
        }
        var tensors: [String: TensorInfo] = [:]
        var metadata: [String: String] = [:]
        // Sorted, so that a damaged header is reported the same way on every run.
        for (name, value) in entries.sorted(by: { $0.key < $1.key }) {
            if name == "__metadata__" {
                if case .object(let m) = value {
                    for (k, v) in m { if case .string(let s) = v { metadata[k] = s } }
                }
                continue
            }
            guard case .object(let fields) = value else { throw bad("tensor '\(name)': header entry is not an object") }
            guard case .string(let dtypeName)? = fields["dtype"], let dtype = DType(rawValue: dtypeName) else {
                throw bad("tensor '\(name)': missing or unknown dtype \(fields["dtype"].map { "\($0)" } ?? "")")
            }
            guard case .array(let dims)? = fields["shape"] else { throw bad("tensor '\(name)': missing shape") }
            var shape: [Int] = []
            var count = 1
            for d in dims {
                guard case .number(let x) = d, x >= 0, x < 1e12, x == x.rounded() else {
                    throw bad("tensor '\(name)': shape \(dims) is not a list of non-negative integers")
                }
                shape.append(Int(x))
                let (product, overflow) = count.multipliedReportingOverflow(by: Int(x))
                guard !overflow, product <= dataBytes else { throw bad("tensor '\(name)': shape \(shape) is larger than the file") }
                count = product
            }
            guard case .array(let offsets)? = fields["data_offsets"], offsets.count == 2,
                  case .number(let lo) = offsets[0], case .number(let hi) = offsets[1],
                  lo >= 0, hi >= lo, lo == lo.rounded(), hi == hi.rounded(), hi <= Double(dataBytes)
            else {
                throw bad("tensor '\(name)': data_offsets missing or outside the \(dataBytes)-byte data section (file truncated?)")
            }
            let range = Int(lo)..<Int(hi)
            guard range.count == count * dtype.size else {
                throw bad("tensor '\(name)': \(range.count) data bytes for shape \(shape) of \(dtype.rawValue) (\(count * dtype.size) expected)")
            }
            tensors[name] = TensorInfo(dtype: dtype, shape: shape, range: range)
        }
        base = mapped
        mappedBytes = size
        dataOffset = dataStart
        self.tensors = tensors
        self.metadata = metadata
        ok = true
    }

    deinit { munmap(base, mappedBytes) }

    /// The header entry of tensor `name`, checked to be float32 of exactly `shape`.
    private func float32Info(_ name: String, shape: [Int]) throws(EmbedError) -> TensorInfo {
        guard let info = tensors[name] else { throw .badModel(path: path, reason: "tensor '\(name)' is missing") }
        guard info.dtype == .f32 else {
            throw .badModel(path: path, reason: "tensor '\(name)' is \(info.dtype.rawValue), expected F32")
        }
        guard info.shape == shape else {
            throw .badModel(path: path, reason: "tensor '\(name)' has shape \(info.shape), expected \(shape)")
        }
        return info
    }

    /// A copy of the float32 data of tensor `name`, checked to have exactly `shape` (copied out of the map
    /// so that the result is aligned whatever the file's layout, and outlives the file).
    public func floats(_ name: String, shape: [Int]) throws(EmbedError) -> [Float] {
        let info = try float32Info(name, shape: shape)
        let start = base + dataOffset + info.range.lowerBound
        return [Float](unsafeUninitializedCapacity: info.count) { buffer, initialized in
            if let destination = buffer.baseAddress { memcpy(destination, start, info.range.count) }
            initialized = info.count
        }
    }

    /// The float32 data of tensor `name`, checked to have exactly `shape`, read in place from the map
    /// (valid while this file is alive), or nil when it is not 4-byte aligned there (then use `floats`).
    public func mappedFloats(_ name: String, shape: [Int]) throws(EmbedError) -> UnsafeBufferPointer<Float>? {
        let info = try float32Info(name, shape: shape)
        let start = UnsafeRawPointer(base + dataOffset + info.range.lowerBound)
        guard Int(bitPattern: start) % MemoryLayout<Float>.alignment == 0 else { return nil }
        return UnsafeBufferPointer(start: start.assumingMemoryBound(to: Float.self), count: info.count)
    }
}
