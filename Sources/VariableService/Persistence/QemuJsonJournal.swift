#if canImport(Glibc)
import Glibc
#endif
import EfiTypes
import Foundation

/// A VM's QEMU uefi-vars JSON file served live (`--from-json`): the whole file is rewritten
/// after every non-volatile change, as QEMU does (hw/uefi/var-service-json.c
/// `uefi_vars_json_save`) — written to a temporary file, fsync'd, renamed over the original,
/// the directory fsync'd — so the file is always either the old or the new version. Every
/// stage is durable when it returns.
public final class QemuJsonJournal: SynchronousJournal, @unchecked Sendable {
    /// The file's real path (symlinks resolved): the one replaced.
    public var path: String { lock.path }
    private let lock: VariableFileLock
    private let sync: any FileSync
    private let released = Locked(false)
    let tickets = Locked<JournalTicket>(0)

    /// Opens and locks `path`, and returns its variables.
    public static func open(path: String, note: String = "", sync: any FileSync = SystemFileSync()) throws(StoreOpenError) -> (QemuJsonJournal, [ExportedVariable]) {
        let lock = try VariableFileLock.acquire(path: path, note: note)
        guard let bytes = FileManager.default.contents(atPath: lock.path).map(Array.init) else {
            throw .file(VariableFileError(path: path, location: "file", reason: "cannot read it"))
        }
        let vars: [ExportedVariable]
        do { vars = try QemuVarsJson.read(bytes, path: path) } catch { throw .file(error) }
        return (QemuJsonJournal(lock: lock, sync: sync), vars)
    }

    private init(lock: VariableFileLock, sync: any FileSync) { self.lock = lock; self.sync = sync }

    public func stage(_ changes: [VariableChange], wholeStore: () -> [ExportedVariable]) throws(JournalError) -> JournalTicket {
        if !changes.isEmpty { try rewrite(wholeStore()) }
        return nextTicket()
    }

    public func saveAtPowerOn(_ all: [ExportedVariable]) throws(JournalError) { try rewrite(all) }

    public func release() {
        released.withLock { $0 = true }
        lock.release()
    }

    private func rewrite(_ all: [ExportedVariable]) throws(JournalError) {
        guard !released.withLock({ $0 }) else { throw JournalError(path: path, operation: "write (the store is closed)", errno: EBADF) }
        try DurableFile.replace(path, with: QemuVarsJson.write(all), mode: 0o644, sync: sync, lock: lock)
    }
}
