#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The lock that keeps a second server away from a store: flock(2) on a lock file that
/// holds the owner's pid and, on a second line, where the owner can be reached (a live
/// mount's control socket), so that a command meeting a locked store can say who holds it
/// and ask that server instead.
public final class StoreLock: @unchecked Sendable {
    private var fd: Int32

    /// Takes the lock at `lockPath` for the store named `store` (for messages).
    public static func acquire(lockPath: String, store: String, note: String) throws(NativeStoreFile.Failure) -> StoreLock {
        let fd = Glibc.open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io(lockPath, String(cString: strerror(errno))) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            var buf = [UInt8](repeating: 0, count: 4096)
            let n = pread(fd, &buf, buf.count, 0)
            close(fd)
            let lines = n > 0 ? String(decoding: buf[0..<n], as: UTF8.self).split(separator: "\n").map(String.init) : []
            throw .locked(path: store, owner: "process \(lines.first ?? "?")", control: lines.count > 1 ? lines[1] : nil)
        }
        let text = Array("\(getpid())\n\(note)\n".utf8)
        _ = ftruncate(fd, 0)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, text.count, 0) }
        return StoreLock(fd: fd)
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
