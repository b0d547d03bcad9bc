#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Where the variable service puts non-volatile changes before a SetVariable returns.
public protocol PersistentBacking: AnyObject, Sendable {
    /// Whether `commit` needs the whole non-volatile store along with these changes (so
    /// the service builds that list only when it is used).
    func wantsWholeStore(with changes: [(VariableKey, StoredVariable?)]) -> Bool
    /// Makes `changes` durable; `all` is the whole non-volatile store when asked for.
    /// Throws to make the service roll the request back.
    func commit(_ changes: [(VariableKey, StoredVariable?)], all: [(VariableKey, StoredVariable)]?) throws
    /// Power-on: the store as the firmware left it (AuthVariableLib's variables added).
    func saveAtPowerOn(_ all: [(VariableKey, StoredVariable)]) throws
    /// Closes the files and releases the store's lock (at unmount); later writes fail.
    func release()
}

extension NativeStoreFile: PersistentBacking {
    public func wantsWholeStore(with changes: [(VariableKey, StoredVariable?)]) -> Bool { !changes.isEmpty && needsCompaction }
    public func commit(_ changes: [(VariableKey, StoredVariable?)], all: [(VariableKey, StoredVariable)]?) throws {
        guard !changes.isEmpty else { return }
        try append(changes)
        // The append is durable; a failed compaction leaves the log as it is.
        if let all { try? compact(all) }
    }
    public func saveAtPowerOn(_ all: [(VariableKey, StoredVariable)]) throws { try compact(all) }
}

/// A VM's QEMU uefi-vars JSON file served live (`--from-json`): the whole file is
/// rewritten after every non-volatile change, as QEMU does — written to a temporary file,
/// fsync'd, renamed over the original, directory fsync'd — so the file is always either the
/// old or the new version. (`--from-fd` uses `FirmwareVolumeBacking`, which writes in place
/// as edk2 does.) A lock file `<file>.lock` keeps a second bridge away.
public final class WholeFileBacking: PersistentBacking, @unchecked Sendable {
    public let path: String
    private let lock: StoreLock

    /// Opens and locks `path`, and returns its variables.
    public static func open(path: String, note: String = "") throws -> (WholeFileBacking, [ExportedVariable]) {
        guard let bytes = FileManager.default.contents(atPath: path).map(Array.init) else {
            throw VariableFileError(path: path, location: "file", reason: "cannot read it")
        }
        let lock = try StoreLock.acquire(lockPath: path + ".lock", store: path, note: note)
        let vars = try QemuVarsJson.read(bytes, path: path)
        return (WholeFileBacking(path: path, lock: lock), vars)
    }

    private init(path: String, lock: StoreLock) {
        self.path = path; self.lock = lock
    }

    public func wantsWholeStore(with changes: [(VariableKey, StoredVariable?)]) -> Bool { !changes.isEmpty }
    public func commit(_ changes: [(VariableKey, StoredVariable?)], all: [(VariableKey, StoredVariable)]?) throws {
        guard !changes.isEmpty, let all else { return }
        try rewrite(all)
    }

    public func saveAtPowerOn(_ all: [(VariableKey, StoredVariable)]) throws { try rewrite(all) }

    private var released = false
    public func release() { released = true; lock.release() }

    func rewrite(_ all: [(VariableKey, StoredVariable)]) throws {
        guard !released else { throw VariableFileError(path: path, location: "file", reason: "the store is closed") }
        try AtomicFile.replace(path, with: QemuVarsJson.write(all.map { ExportedVariable($0.0, $0.1) }))
    }
}

/// Write-to-temporary, fsync, rename, fsync the directory.
public enum AtomicFile {
    public static func replace(_ path: String, with bytes: [UInt8]) throws {
        let tmp = path + ".tmp-\(getpid())"
        let fd = Glibc.open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw VariableFileError(path: tmp, location: "file", reason: String(cString: strerror(errno))) }
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, bytes.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard n == bytes.count, synced, rename(tmp, path) == 0 else {
            let e = String(cString: strerror(errno))
            unlink(tmp)
            throw VariableFileError(path: path, location: "file", reason: "cannot replace it: \(e)")
        }
        let dir = (path as NSString).deletingLastPathComponent
        let d = Glibc.open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if d >= 0 { fsync(d); close(d) }
    }
}
