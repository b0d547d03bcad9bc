#if canImport(Glibc)
import Glibc
#endif
import EfiTypes
import Foundation

/// An OVMF_VARS.fd served live (`--from-fd`), written in place the way edk2's variable
/// driver writes its flash (MdeModulePkg Variable.c `UpdateVariable`), so the file keeps
/// its identity and size and stays in edk2's format after every change:
///
/// 1. the record being replaced gets State &= VAR_IN_DELETED_TRANSITION (0x3f → 0x3e), and
///    the new record is appended after the last one with State VAR_HEADER_VALID_ONLY (0x7f);
///    fdatasync;
/// 2. the new record's State becomes VAR_ADDED (0x3f) — and a deleted variable's record gets
///    State &= VAR_DELETED; fdatasync. This is the point of acknowledgement;
/// 3. the replaced record gets State &= VAR_DELETED (0x3c), written without a sync of its
///    own (the next change's first fdatasync, or none, is fine: see below).
///
/// Crash argument, with edk2's reading rules (0x3f live; 0x3e live only without a 0x3f
/// twin; 0x7f and deleted states ignored; a header-only record cut short ends the scan):
/// before step 2 is durable the old record reads as live (0x3f or 0x3e without a twin) and
/// the new one is ignored; after it, the new record is live and the old one is either 0x3e
/// with a 0x3f twin or deleted — so a reader sees the old value or the new one, never a mix.
///
/// When the appended records would not fit, the store is reclaimed as edk2 reclaims it:
/// rewritten with only the live records — here written to a temporary file, fsync'd and
/// renamed over the original (edk2 uses its fault-tolerant-write spare block instead), so
/// a crash leaves either the old volume or the reclaimed one.
///
/// Every stage is durable when it returns.
public final class FirmwareVolumeJournal: SynchronousJournal, @unchecked Sendable {
    /// The file's real path (symlinks resolved): the one written and replaced.
    public var path: String { lock.path }
    private let lock: VariableFileLock
    private let sync: any FileSync
    private var fd: Int32 = -1
    let tickets = Locked<JournalTicket>(0)
    /// The file's bytes as they are on disk.
    private var image: [UInt8] = []
    private var storeEnd = 0
    /// VARIABLE_STORE_HEADER.Size of the volume's store: its capacity.
    public private(set) var storeSize = 0
    /// The first free byte of the store: where the next record goes.
    private var end = 0
    /// Where each live variable's record is, and its State.
    private var live: [VariableKey: (offset: Int, state: UInt8)] = [:]
    /// Reclaims done (for tests).
    public private(set) var reclaims = 0

    /// Opens and locks `path`, and returns its variables in record order.
    public static func open(path: String, note: String = "", sync: any FileSync = SystemFileSync()) throws(StoreOpenError) -> (FirmwareVolumeJournal, [ExportedVariable]) {
        let lock = try VariableFileLock.acquire(path: path, note: note)
        let journal = FirmwareVolumeJournal(lock: lock, sync: sync)
        do { return (journal, try journal.load()) } catch let e as VariableFileError { throw .file(e) } catch let e as JournalError {
            throw .io(e)
        } catch { throw .file(VariableFileError(path: path, location: "file", reason: "\(error)")) }
    }

    private init(lock: VariableFileLock, sync: any FileSync) {
        self.lock = lock
        self.sync = sync
    }

    deinit { if fd >= 0 { close(fd) } }

    /// At unmount: the file closed (later writes fail) and the lock released.
    public func release() {
        if fd >= 0 { close(fd) }
        fd = -1
        lock.release()
    }

    /// (Re)reads the file: the image, the live records and the end of the used area.
    @discardableResult
    private func load() throws -> [ExportedVariable] {
        guard let bytes = FileManager.default.contents(atPath: path).map(Array.init) else {
            throw VariableFileError(path: path, location: "file", reason: "cannot read it")
        }
        let (layout, records, used) = try OvmfVarsFile.scan(bytes, path: path)
        let liveRecords = try OvmfVarsFile.liveRecords(records, path: path)
        if fd >= 0 { close(fd) }
        fd = Glibc.open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw JournalError(path: path, operation: "open", errno: errno) }
        image = bytes
        storeEnd = layout.end
        storeSize = layout.end - layout.storeHeader
        end = used
        live = [:]
        for r in liveRecords { live[r.variable!.key] = (r.offset, r.state) }
        // As edk2 does when it starts: copies in transition that are not the live one
        // (a crash left them behind) are marked deleted.
        let stale = records.filter { $0.state == OvmfVarsFile.stateInDeletedTransition && live[$0.variable!.key]?.offset != $0.offset }
        if !stale.isEmpty {
            for r in stale { try setState(r.offset, r.state & OvmfVarsFile.deletedMask) }
            try syncFile()
        }
        return liveRecords.map { $0.variable! }
    }

    private func space(for changes: [VariableChange]) -> Int {
        changes.reduce(0) { total, change in
            guard let v = change.value else { return total }
            return total + StoreLimits.recordSize(nameSize: change.key.nameSize, dataSize: v.data.count)
        }
    }

    public func stage(_ changes: [VariableChange], wholeStore: () -> [ExportedVariable]) throws(JournalError) -> JournalTicket {
        guard fd >= 0 else { throw JournalError(path: path, operation: "write (the store is closed)", errno: EBADF) }
        guard !changes.isEmpty else { return nextTicket() }
        if end + space(for: changes) > storeEnd {
            try reclaim(wholeStore())
            return nextTicket()
        }
        do {
            try appendInPlace(changes)
        } catch {
            // The file reads as before the change (see the crash argument); start again
            // from what is on disk.
            _ = try? load()
            throw error
        }
        return nextTicket()
    }

    /// Power-on: only what differs from the file is written (usually nothing), so a VM's
    /// file is left untouched by a mount that changes nothing. The file was read at open;
    /// its image in memory is compared, not the disk again.
    public func saveAtPowerOn(_ all: [ExportedVariable]) throws(JournalError) {
        let current: [VariableKey: StoredVariable]
        do {
            current = Dictionary(try OvmfVarsFile.read(image, path: path).map { ($0.key, $0.value) }, uniquingKeysWith: { _, last in last })
        } catch { throw JournalError(path: path, operation: "read back: \(error.reason)", errno: EIO) }
        let wanted = Set(all.map(\.key))
        var changes: [VariableChange] = all.compactMap { v in current[v.key] == v.value ? nil : VariableChange(key: v.key, value: v.value) }
        changes += current.keys.filter { !wanted.contains($0) }.map { VariableChange(key: $0, value: nil) }
        _ = try stage(changes, wholeStore: { all })
    }

    private func appendInPlace(_ changes: [VariableChange]) throws(JournalError) {
        // 1. Old copies in transition; new records appended, header valid only.
        var appended: [(offset: Int, key: VariableKey)] = []
        var position = end
        for change in changes {
            let key = change.key
            guard let value = change.value else { continue }
            if let old = live[key] { try setState(old.offset, old.state & OvmfVarsFile.inDeletedTransitionMask) }
            let record = OvmfVarsFile.record(ExportedVariable(key, value), state: OvmfVarsFile.stateHeaderValidOnly)
            try write(record, at: position)
            appended.append((position, key))
            position += record.count
        }
        end = position
        try syncFile()
        // 2. The new records live, deleted variables deleted: the acknowledgement.
        for a in appended { try setState(a.offset, OvmfVarsFile.stateAdded) }
        for change in changes where change.value == nil {
            if let old = live[change.key] { try setState(old.offset, old.state & OvmfVarsFile.deletedMask) }
        }
        do { try syncFile() } catch {
            // Unknown what reached the disk: withdraw the new records so that the old
            // copies (0x3e without a twin) read as live again.
            for a in appended { try? setState(a.offset, OvmfVarsFile.stateAdded & OvmfVarsFile.deletedMask) }
            _ = sync.fdatasync(fd)
            throw error
        }
        // 3. The replaced copies deleted.
        var replaced: [VariableKey: (offset: Int, state: UInt8)] = [:]
        for change in changes where change.value != nil {
            if let old = live[change.key] { replaced[change.key] = old }
        }
        for old in replaced.values {
            try setState(old.offset, old.state & OvmfVarsFile.inDeletedTransitionMask & OvmfVarsFile.deletedMask)
        }
        for change in changes where change.value == nil { live[change.key] = nil }
        for a in appended { live[a.key] = (a.offset, OvmfVarsFile.stateAdded) }
    }

    /// edk2's Reclaim: the volume rewritten with the live variables only, then swapped in.
    private func reclaim(_ all: [ExportedVariable]) throws(JournalError) {
        let bytes: [UInt8]
        do { bytes = try OvmfVarsFile.write(all, template: image, path: path) } catch {
            // The live variables do not fit the volume even after a reclaim: a full store.
            throw JournalError(path: path, operation: "reclaim (\(error.reason))", errno: ENOSPC)
        }
        try DurableFile.replace(path, with: bytes, mode: 0o644, sync: sync, lock: lock)
        do { try load() } catch let e as JournalError { throw e } catch {
            throw JournalError(path: path, operation: "read back after a reclaim: \(error)", errno: EIO)
        }
        reclaims += 1
    }

    private func write(_ bytes: [UInt8], at offset: Int) throws(JournalError) {
        let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, bytes.count, off_t(offset)) }
        guard n == bytes.count else { throw JournalError(path: path, operation: "write at offset 0x\(String(offset, radix: 16))", errno: n < 0 ? errno : ENOSPC) }
        image.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
    }

    private func setState(_ recordOffset: Int, _ state: UInt8) throws(JournalError) { try write([state], at: recordOffset + 2) }

    private func syncFile() throws(JournalError) {
        guard sync.fdatasync(fd) == 0 else { throw JournalError(path: path, operation: "fdatasync", errno: errno) }
    }

    /// The bytes on disk (for tests).
    public var fileImage: [UInt8] { image }
}
