/// Errors of the quantization core: a parameter outside what a codec supports, or a stored buffer that
/// fails a check (`record` names the structure, `offset` the byte where the check failed).
public enum QuantError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A training, encoding or search parameter that cannot be used (`what` says which and why).
    case invalidParameter(String)
    /// A serialized record or list block failed validation.
    case damaged(record: String, offset: Int, reason: String)

    /// A one-line description naming what failed and where.
    public var description: String {
        switch self {
        case .invalidParameter(let what): "invalid parameter: \(what)"
        case .damaged(let record, let offset, let reason): "damaged \(record) at byte \(offset): \(reason)"
        }
    }
}
