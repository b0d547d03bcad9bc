#if canImport(Glibc)
import Glibc
#endif
import EfiTypes
import Foundation

/// A non-volatile change one request made: the variable's new value, or nil where it was
/// deleted.
public struct VariableChange: Equatable, Sendable {
    public var key: VariableKey
    public var value: StoredVariable?
    public init(key: VariableKey, value: StoredVariable?) { self.key = key; self.value = value }
}

/// Why a journal could not make a change durable: the file and the errno.
public struct JournalError: Error, Equatable, Sendable, CustomStringConvertible {
    public let path: String
    public let operation: String
    public let errno: Int32
    public init(path: String, operation: String, errno: Int32) { self.path = path; self.operation = operation; self.errno = errno }
    /// A full disk (or quota): the store is out of space, as a full flash store would be.
    public var isOutOfSpace: Bool { errno == ENOSPC || errno == EDQUOT }
    public var description: String { "\(path): \(operation): \(String(cString: strerror(errno)))" }
}

/// Counts one ticket per request that staged changes.
public typealias JournalTicket = UInt64

/// Where the variable service makes non-volatile changes durable before it answers a
/// request: the native store (a log with group commit), a VM's OVMF_VARS.fd written in
/// place, a QEMU JSON file rewritten whole.
///
/// The service calls `stage` with its store lock held, right after a request changed the
/// non-volatile store, and `awaitDurable` after releasing it; it answers the request only
/// when `awaitDurable` says the ticket is durable. A journal that writes synchronously
/// returns tickets that are durable at once.
public protocol VariableJournal: AnyObject, Sendable {
    /// Writes `changes` (not necessarily durably yet) and returns their ticket. `wholeStore`
    /// gives every non-volatile variable, for a journal that rewrites everything (a
    /// compaction, a reclaim, a JSON rewrite). On a throw nothing of `changes` is kept and
    /// the caller undoes the request.
    func stage(_ changes: [VariableChange], wholeStore: () -> [ExportedVariable]) throws(JournalError) -> JournalTicket
    /// The newest ticket that is neither durable nor lost, or nil when there is none (read
    /// with the store lock held). A request that changed nothing may have seen that change,
    /// so it waits for it before answering. A lost ticket is not waited for: its changes
    /// were undone before anyone could read the store again (waiting for it, the request
    /// would find it lost, ask again, and find it again, for ever).
    var newestPendingTicket: JournalTicket? { get }
    /// Whether `ticket` is known durable now, without waiting.
    func isDurable(_ ticket: JournalTicket) -> Bool
    /// Blocks until `ticket` is durable (true), or false when it never will be: a write of
    /// the journal failed, and every change not yet durable must be discarded with
    /// `discardUnsynced` (with the store lock held) and undone by the caller.
    func awaitDurable(_ ticket: JournalTicket) -> Bool
    /// After a failed `awaitDurable`, with the store lock held: drops every change that is
    /// not durable and returns the tickets dropped (empty when another caller already did).
    func discardUnsynced() -> ClosedRange<JournalTicket>?
    /// Power-on: the store as the firmware found it (AuthVariableLib's variables added).
    func saveAtPowerOn(_ all: [ExportedVariable]) throws(JournalError)
    /// Closes the files and releases the store's lock (at unmount); later stages fail.
    func release()
    /// Syncs made and tickets they made durable (for `stats` and the benchmarks).
    var syncStatistics: (syncs: Int, acknowledged: UInt64) { get }
}

/// A journal whose every stage is durable before it returns (the VM file formats).
protocol SynchronousJournal: VariableJournal {
    var tickets: Locked<JournalTicket> { get }
}

extension SynchronousJournal {
    public var newestPendingTicket: JournalTicket? { nil }
    public func awaitDurable(_ ticket: JournalTicket) -> Bool { true }
    public func isDurable(_ ticket: JournalTicket) -> Bool { true }
    public func discardUnsynced() -> ClosedRange<JournalTicket>? { nil }
    public var syncStatistics: (syncs: Int, acknowledged: UInt64) { (0, 0) }
    func nextTicket() -> JournalTicket { tickets.withLock { $0 += 1; return $0 } }
}

/// The fsync family, injectable so that tests can make a disk fail (the production default
/// is the system call).
public protocol FileSync: Sendable {
    func fdatasync(_ fd: Int32) -> Int32
    func fsync(_ fd: Int32) -> Int32
}

public struct SystemFileSync: FileSync {
    public init() {}
    public func fdatasync(_ fd: Int32) -> Int32 { Glibc.fdatasync(fd) }
    public func fsync(_ fd: Int32) -> Int32 { Glibc.fsync(fd) }
}

/// Replacing a file so that a crash leaves the old one or the new one, never a mix: write a
/// temporary file beside it, fsync it, rename it over the original, fsync the directory.
/// A failed step removes the temporary file and names the file and the errno.
public enum DurableFile {
    /// With `lock`, the replacement is locked before it takes the name (see
    /// `VariableFileLock`).
    public static func replace(_ path: String, with bytes: [UInt8], mode: mode_t = 0o644,
                               sync: any FileSync = SystemFileSync(), lock: VariableFileLock? = nil) throws(JournalError) {
        let tmp = path + ".tmp-\(getpid())"
        let fd = Glibc.open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw JournalError(path: tmp, operation: "create", errno: errno) }
        var failure: JournalError?
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, bytes.count - written) }
            if n < 0 { if errno == EINTR { continue }; failure = JournalError(path: tmp, operation: "write", errno: errno); break }
            written += n
        }
        if failure == nil, sync.fsync(fd) != 0 { failure = JournalError(path: tmp, operation: "fsync", errno: errno) }
        close(fd)
        var handover: VariableFileLock.Handover?
        if failure == nil, let lock {
            do { handover = try lock.lockReplacement(tmp) } catch { failure = error }
        }
        if failure == nil, rename(tmp, path) != 0 { failure = JournalError(path: path, operation: "rename", errno: errno) }
        if let failure {
            handover?.abandon()
            unlink(tmp)
            throw failure
        }
        handover?.complete()
        syncDirectory(of: path, sync: sync)
    }

    /// fsync of the directory that holds `path`, so a rename or a new file is durable.
    public static func syncDirectory(of path: String, sync: any FileSync = SystemFileSync()) {
        let dir = (path as NSString).deletingLastPathComponent
        let d = Glibc.open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if d >= 0 { _ = sync.fsync(d); close(d) }
    }
}
