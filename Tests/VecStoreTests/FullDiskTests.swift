import Foundation
import Testing

/// Whether this process can mount (and unmount) a small tmpfs.
private let canMountTmpfs: Bool = {
    guard geteuid() == 0, let dir = try? TempDir() else { return false }
    let probe = try? runShell("mount -t tmpfs -o size=64k tmpfs \"$0\" && umount \"$0\"", [dir.url.path])
    return probe?.status == 0
}()

/// A real full file system: a 2 MiB tmpfs mounted for the test (needs root and permission to mount, as
/// CI and the development machines have; skipped elsewhere). `ulimit -f` (ReliabilityTests) cannot show
/// what happens when LMDB's memory-mapped lock file cannot get a page: that used to be SIGBUS.
@Suite(.serialized, .enabled(if: canMountTmpfs, "needs root and permission to mount a tmpfs"))
struct FullDiskTests {

    /// Runs `body` with a fresh 2 MiB tmpfs mounted at a temporary directory, unmounted afterwards.
    private func withSmallFileSystem(_ body: (String) throws -> Void) throws {
        let dir = try TempDir()
        let mount = try runShell("mount -t tmpfs -o size=2m tmpfs \"$0\"", [dir.url.path])
        try #require(mount.status == 0, "\(mount.stderr)")
        defer { _ = try? runShell("umount \"$0\"", [dir.url.path]) }
        try body(dir.url.path)
    }

    /// Fills the file system at `dir` with a file `fill` until it is full.
    private func fill(_ dir: String) throws {
        _ = try runShell("dd if=/dev/zero of=\"$0/fill\" bs=4k 2>/dev/null; true", [dir])
    }

    private func samplePath(_ name: String) -> String { packageRoot.appendingPathComponent("Samples/\(name)").path }

    private func files(_ dir: String) throws -> Set<String> {
        Set(try FileManager.default.contentsOfDirectory(atPath: dir))
    }

    @Test("a new store on a full file system: a disk-full error (was SIGBUS in LMDB's lock file), no files left")
    func newStoreOnFullDisk() throws {
        try withSmallFileSystem { dir in
            try fill(dir)
            let r = try runCLI(["import", dir + "/new.vecstore", "-c", "docs", samplePath("docs.jsonl")])
            #expect(r.status == 6, "status \(r.status): \(r.stderr)")
            #expect(r.stderr.contains("No space left on device"), "\(r.stderr)")
            let left = try files(dir)
            #expect(left == ["fill"], "left behind: \(left)")
        }
    }

    @Test("import and compaction on a full file system stop cleanly; the store opens, verifies and holds what it held")
    func existingStoreOnFullDisk() throws {
        try withSmallFileSystem { dir in
            let store = dir + "/s.vecstore"
            #expect(try runCLI(["import", store, "-c", "docs", samplePath("docs.jsonl")]).status == 0)
            #expect(try runCLI(["delete", store, "-c", "docs", "cooking/risotto/tip"]).status == 0)
            // What the store holds (LMDB may have written pages of the failed transaction into free space,
            // so the bytes of the file can differ; its committed content must not).
            let before = try runCLI(["collections", store]).stdout
            try fill(dir)
            let compacted = try runCLI(["compact", store])
            #expect(compacted.status == 6, "status \(compacted.status): \(compacted.stderr)")
            #expect(compacted.stderr.contains("disk full"), "\(compacted.stderr)")
            let imported = try runCLI(["import", store, "-c", "more", samplePath("docs.jsonl")])
            #expect(imported.status == 6, "status \(imported.status): \(imported.stderr)")
            #expect(imported.stderr.contains("No space left on device"), "\(imported.stderr)")
            let present = try files(dir)
            #expect(present == ["fill", "s.vecstore", "s.vecstore-lock", "s.vecstore-guard"], "\(present)")
            try FileManager.default.removeItem(atPath: dir + "/fill")
            #expect(try runCLI(["collections", store]).stdout == before)
            let verified = try runCLI(["verify", store])
            #expect(verified.status == 0, "\(verified.stdout)\(verified.stderr)")
            #expect(before.contains("docs") && !before.contains("more"), "\(before)")
        }
    }
}
