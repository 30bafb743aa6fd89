/// What went wrong while loading a text-embedding model or embedding text.
public enum EmbedError: Error, Sendable, CustomStringConvertible {
    /// No model of this name is known to vecstore.
    case unknownModel(name: String, known: [String])
    /// The model is known but not installed in any searched directory.
    case modelNotInstalled(name: String, searched: [String], installCommand: String)
    /// A model file is missing, unreadable, damaged or of the wrong shape.
    case badModel(path: String, reason: String)
    /// The caller passed something unusable (a batch size of zero, …).
    case invalidArgument(String)

    /// A readable message naming the file or model and what is wrong.
    public var description: String {
        switch self {
        case .unknownModel(let name, let known):
            "unknown embedding model '\(name)' (known: \(known.joined(separator: ", ")))"
        case .modelNotInstalled(let name, let searched, let command):
            "embedding model '\(name)' is not installed (looked in \(searched.joined(separator: ", "))); "
                + "install it with: \(command)"
        case .badModel(let path, let reason): "\(path): \(reason)"
        case .invalidArgument(let m): m
        }
    }
}
