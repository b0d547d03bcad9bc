#if canImport(Glibc)
import Glibc
#endif
import EfiTypes
import Foundation

/// Why a store could not be opened for serving.
public enum StoreOpenError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Another server holds the store; `control` is where that server can be reached (a live
    /// mount's control socket), when it said.
    case locked(store: String, owner: String, control: String?)
    /// A scripting command named a store that does not exist (and was not told to create it).
    case missing(String)
    case notADirectory(String)
    /// A VM file with several hard links: a rewrite by rename would split them.
    case hardLinked(String, links: Int)
    case cannotCreate(String, String)
    case corrupted(path: String, offset: Int, reason: String)
    case io(JournalError)
    case file(VariableFileError)

    public var description: String {
        switch self {
        case .locked(let s, let o, _): return "the store \(s) is in use by \(o); unmount it first or name another store"
        case .missing(let s): return "\(s): no such store (mount it once, or pass --create to start an empty one)"
        case .notADirectory(let s): return "\(s) is a file, not a store directory"
        case .hardLinked(let s, let n):
            return "\(s) has \(n) hard links; the bridge replaces the file when it rewrites it, which would split them (serve a copy, or remove the other links)"
        case .cannotCreate(let p, let e): return "cannot create the store directory \(p): \(e)"
        case .corrupted(let p, let o, let r): return "\(p): corrupted at offset \(o): \(r)"
        case .io(let e): return e.description
        case .file(let e): return e.description
        }
    }
}

/// Who holds a store, for whoever finds it locked: the owner's pid and how to reach it.
struct OwnerNote {
    let pid: String
    let control: String?

    init(pid: String, control: String?) { self.pid = pid; self.control = control }

    init(parsing text: String) {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        pid = lines.first.flatMap { $0.isEmpty ? nil : $0 } ?? "?"
        control = lines.count > 1 && !lines[1].isEmpty ? lines[1] : nil
    }

    var text: String { "\(pid)\n\(control ?? "")\n" }
}

/// The native store's lock: flock(2) on `<store>/lock`, a file inside the store directory,
/// so every path that reaches the directory (a symlink, a bind mount) meets the same lock.
/// The file holds the owner's note.
public final class DirectoryLock: @unchecked Sendable {
    private var fd: Int32

    static func acquire(directory: String, note: String) throws(StoreOpenError) -> DirectoryLock {
        let path = directory + "/lock"
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io(JournalError(path: path, operation: "open", errno: errno)) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let owner = OwnerNote(parsing: readAll(fd))
            close(fd)
            throw .locked(store: directory, owner: "process \(owner.pid)", control: owner.control)
        }
        let text = Array(OwnerNote(pid: "\(getpid())", control: note).text.utf8)
        _ = ftruncate(fd, 0)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, text.count, 0) }
        return DirectoryLock(fd: fd)
    }

    private init(fd: Int32) { self.fd = fd }
    deinit { release() }

    /// Lets the next owner in now, rather than when this object goes away.
    public func release() {
        guard fd >= 0 else { return }
        flock(fd, LOCK_UN)
        close(fd)
        fd = -1
    }
}

/// The lock on a VM's variable file (`--from-fd`, `--from-json`): an open-file-description
/// lock (F_OFD_SETLK) on the file itself, so every name of it — a symlink, a bind mount —
/// meets the same lock, and no lock file is left beside the image. When the file is
/// replaced by rename (a JSON rewrite, an fd reclaim), the new file is locked before it takes
/// the name, so there is no moment at which the name points at an unlocked file. The owner's
/// note lives in the runtime directory, under the file's real path.
public final class VariableFileLock: @unchecked Sendable {
    /// The real path (symlinks resolved): what gets replaced, and the key of the note.
    public let path: String
    private var fd: Int32
    private let notePath: String

    /// Locks the file at `path` (after resolving symlinks). Refuses a file with several
    /// hard links: a rewrite by rename would split them.
    static func acquire(path given: String, note: String) throws(StoreOpenError) -> VariableFileLock {
        guard let real = realpath(given, nil) else {
            throw .file(VariableFileError(path: given, location: "file", reason: String(cString: strerror(errno))))
        }
        let path = String(cString: real)
        free(real)
        let notePath = VariableFileLock.notePath(for: path)
        while true {
            let fd = Glibc.open(path, O_RDWR | O_CLOEXEC)
            guard fd >= 0 else { throw .file(VariableFileError(path: given, location: "file", reason: String(cString: strerror(errno)))) }
            var st = stat()
            guard fstat(fd, &st) == 0 else { close(fd); throw .io(JournalError(path: path, operation: "fstat", errno: errno)) }
            if st.st_nlink > 1 { close(fd); throw .hardLinked(given, links: Int(st.st_nlink)) }
            if !lock(fd) {
                close(fd)
                let owner = FileManager.default.contents(atPath: notePath).map { OwnerNote(parsing: String(decoding: $0, as: UTF8.self)) }
                throw .locked(store: given, owner: owner.map { "process \($0.pid)" } ?? "another process", control: owner?.control)
            }
            // The file may have been replaced between open and lock: then lock the new one.
            var now = stat()
            if stat(path, &now) == 0, now.st_dev == st.st_dev, now.st_ino == st.st_ino {
                let l = VariableFileLock(path: path, fd: fd, notePath: notePath)
                l.writeNote(OwnerNote(pid: "\(getpid())", control: note))
                return l
            }
            close(fd)
        }
    }

    private init(path: String, fd: Int32, notePath: String) { self.path = path; self.fd = fd; self.notePath = notePath }
    deinit { release() }

    /// F_OFD_SETLK (include/uapi/asm-generic/fcntl.h): Glibc exposes it only to _GNU_SOURCE
    /// builds, which Swift's Glibc module is not.
    static let ofdSetLock: Int32 = 37

    /// A write lock on the whole file, not waiting.
    private static func lock(_ fd: Int32) -> Bool {
        var l = flock()
        l.l_type = Int16(F_WRLCK)
        l.l_whence = Int16(SEEK_SET)
        l.l_start = 0
        l.l_len = 0
        return fcntl(fd, VariableFileLock.ofdSetLock, &l) == 0
    }

    /// The new file's lock, taken before the rename; `complete` after the rename lets go of
    /// the old file, `abandon` after a failed rename lets go of the new one.
    struct Handover {
        let complete: () -> Void
        let abandon: () -> Void
    }

    /// Locks the replacement written and synced under `tmpPath`, before it is renamed over
    /// `path`.
    func lockReplacement(_ tmpPath: String) throws(JournalError) -> Handover {
        let newFd = Glibc.open(tmpPath, O_RDWR | O_CLOEXEC)
        guard newFd >= 0 else { throw JournalError(path: tmpPath, operation: "open", errno: errno) }
        guard VariableFileLock.lock(newFd) else {
            let e = errno
            close(newFd)
            throw JournalError(path: tmpPath, operation: "lock", errno: e)
        }
        let old = fd
        return Handover(complete: { [self] in self.fd = newFd; close(old) }, abandon: { close(newFd) })
    }

    private func writeNote(_ note: OwnerNote) {
        let dir = (notePath as NSString).deletingLastPathComponent
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        _ = FileManager.default.createFile(atPath: notePath, contents: Data(note.text.utf8), attributes: [.posixPermissions: 0o600])
    }

    /// The note of whoever serves `path`: `$XDG_RUNTIME_DIR` (else /tmp)
    /// `/efivarfs-bridge-<uid>/owners/<crc32 of the real path>`.
    static func notePath(for realPath: String) -> String {
        let base = ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        return "\(base)/efivarfs-bridge-\(getuid())/owners/\(String(Crc32.checksum(Array(realPath.utf8)), radix: 16))"
    }

    public func release() {
        guard fd >= 0 else { return }
        unlink(notePath)
        close(fd)
        fd = -1
    }
}

func readAll(_ fd: Int32) -> String {
    var buf = [UInt8](zeroed: 4096)
    let n = pread(fd, &buf, buf.count, 0)
    return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : ""
}

/// Reading a VM's variable file for an export: with its lock held, so that no server is
/// writing it at the same time (a live mount of it answers as `locked`).
public enum VariableFileSnapshot {
    public static func read(path: String, format: VariableFileFormat) throws(StoreOpenError) -> [ExportedVariable] {
        let lock = try VariableFileLock.acquire(path: path, note: "")
        defer { lock.release() }
        guard let bytes = FileManager.default.contents(atPath: lock.path).map(Array.init) else {
            throw .file(VariableFileError(path: path, location: "file", reason: "cannot read it"))
        }
        do {
            return format == .fd ? try OvmfVarsFile.read(bytes, path: path) : try QemuVarsJson.read(bytes, path: path)
        } catch { throw .file(error) }
    }
}

/// Who serves a store, asked without taking its lock (`run` looks for a live mount of the
/// store it is to show).
public enum StoreOwner {
    /// The native store's owner, if a server holds it.
    public static func ofDirectory(_ directory: String) -> (pid: String, control: String?)? {
        let fd = Glibc.open(directory + "/lock", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        // A shared lock is refused only while a server holds its exclusive one; ours is
        // dropped at once.
        if flock(fd, LOCK_SH | LOCK_NB) == 0 { flock(fd, LOCK_UN); return nil }
        let note = OwnerNote(parsing: readAll(fd))
        return (note.pid, note.control)
    }

    /// A VM file's owner, if a server holds it (F_OFD_GETLK: the lock is only looked at).
    public static func ofVariableFile(_ path: String) -> (pid: String, control: String?)? {
        guard let real = realpath(path, nil) else { return nil }
        let realPath = String(cString: real)
        free(real)
        let fd = Glibc.open(realPath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var l = flock()
        l.l_type = Int16(F_WRLCK)
        l.l_whence = Int16(SEEK_SET)
        // F_OFD_GETLK (include/uapi/asm-generic/fcntl.h), not exposed by Swift's Glibc.
        guard fcntl(fd, 36, &l) == 0, l.l_type != Int16(F_UNLCK) else { return nil }
        let note = FileManager.default.contents(atPath: VariableFileLock.notePath(for: realPath))
            .map { OwnerNote(parsing: String(decoding: $0, as: UTF8.self)) }
        return (note?.pid ?? "?", note?.control)
    }
}
