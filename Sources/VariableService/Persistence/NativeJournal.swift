#if canImport(Glibc)
import Glibc
#endif
import EfiTypes
import Foundation

/// The durable native store: a checkpoint plus an append-only log in one directory
/// (`NativeStoreFormat` has the layout), written with group commit.
///
/// Crash argument. A change is acknowledged (the SetVariable returns) only after its
/// records are written and fdatasync'd. Opening replays the log over the checkpoint and
/// stops at the first record that is truncated or fails its CRC: only an unacknowledged
/// write can be torn, and it is discarded (the log is truncated there). Every record is the
/// whole new value of one variable, so replaying a record twice changes nothing; a log
/// whose generation is older than the checkpoint's (a crash between writing a new
/// checkpoint and resetting the log) is ignored, because the checkpoint already holds its
/// effects. Compaction writes the checkpoint first and resets the log second, so there is
/// no instant at which neither holds an acknowledged write.
///
/// Group commit: a request's records are appended while the service holds its store lock;
/// the request then waits without the lock, and the first waiter that finds no fdatasync
/// running starts one that covers every record appended before it began — one fdatasync
/// acknowledges many requests. If an fdatasync fails, nothing more is staged or synced
/// until the service discards everything not yet durable (`discardUnsynced`: the log is
/// cut back to its last durable end) and undoes those requests.
public final class NativeJournal: VariableJournal, @unchecked Sendable {
    public let directory: String
    private let lock: DirectoryLock
    private let sync: any FileSync
    private var logFd: Int32
    private var generation: UInt64
    private var logSize: Int
    private var checkpointSize: Int
    /// Compaction starts when the log is larger than this and than twice the checkpoint.
    public var compactionThreshold = 1 << 20
    public private(set) var compactions = 0
    /// The store's non-volatile size as recorded when it was made (`config`), if any.
    public let recordedNvStoreSize: Int?

    // Group commit state, under `condition`.
    private let condition = NSCondition()
    private var staged: JournalTicket = 0
    private var stagedEnd = 0
    private var durable: JournalTicket = 0
    private var durableEnd = 0
    private var syncing = false
    private var failed = false
    private var lost: [ClosedRange<JournalTicket>] = []
    private var syncs = 0
    private var acknowledged: UInt64 = 0

    var checkpointPath: String { directory + "/checkpoint" }
    var logPath: String { directory + "/log" }
    var configPath: String { directory + "/config" }

    /// Opens and locks the store at `directory` and returns it with its variables. A
    /// missing store is created only with `create`. `note` goes into the lock file for
    /// whoever finds the store locked.
    public static func open(directory: String, create: Bool = true, note: String = "",
                            sync: any FileSync = SystemFileSync()) throws(StoreOpenError) -> (NativeJournal, [ExportedVariable]) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw .notADirectory(directory) }
        } else {
            guard create else { throw .missing(directory) }
            do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
                throw .cannotCreate(directory, (error as NSError).localizedFailureReason ?? "\(error.localizedDescription)")
            }
        }
        let lock = try DirectoryLock.acquire(directory: directory, note: note)
        // The store's order as the changes leave it: a put moves its key to the end. (A
        // search of an array for each change made opening 10,000 variables take 0.3 s.)
        var records = OrderedRecords<VariableKey, StoredVariable>()
        func apply(_ c: VariableChange) {
            records.removeValue(forKey: c.key)
            if let v = c.value { records.append(c.key, v) }
        }
        let (generation, checkpointSize) = try readCheckpoint(directory + "/checkpoint", apply)
        // The log: replay up to the first torn or corrupt record.
        let lp = directory + "/log"
        let logFd = Glibc.open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard logFd >= 0 else { throw .io(JournalError(path: lp, operation: "open", errno: errno)) }
        let log = FileManager.default.contents(atPath: lp).map(Array.init) ?? []
        var validEnd = 0
        if log.count >= NativeStoreFormat.logHeaderSize, Array(log[0..<8]) == NativeStoreFormat.logMagic,
           log.loadLE(UInt64.self, at: 8) == generation {
            let (changes, end) = NativeStoreFormat.scan(log, from: NativeStoreFormat.logHeaderSize)
            changes.forEach(apply)
            validEnd = end
            if let later = NativeStoreFormat.firstValidRecord(in: log, after: validEnd) {
                close(logFd)
                throw .corrupted(path: lp, offset: validEnd, reason: "damaged record followed by valid records (at offset \(later))")
            }
        }
        let recorded = FileManager.default.contents(atPath: directory + "/config")
            .flatMap { String(decoding: $0, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix("nv-store-size=") } }
            .flatMap { Int($0.dropFirst("nv-store-size=".count)) }
        let store = NativeJournal(directory: directory, lock: lock, sync: sync, logFd: logFd, generation: generation,
                                  checkpointSize: checkpointSize, recordedNvStoreSize: recorded)
        if validEnd == 0 {
            // No log for this generation (new store, or a stale one from before a checkpoint).
            do { try store.resetLog() } catch { throw .io(error) }
        } else {
            if validEnd < log.count {
                guard ftruncate(logFd, off_t(validEnd)) == 0, sync.fdatasync(logFd) == 0 else {
                    throw .io(JournalError(path: lp, operation: "truncate the torn end", errno: errno))
                }
            }
            store.logSize = validEnd
        }
        store.stagedEnd = store.logSize
        store.durableEnd = store.logSize
        return (store, records.elements.map { ExportedVariable($0.key, $0.value) })
    }

    private static func readCheckpoint(_ path: String, _ apply: (VariableChange) -> Void) throws(StoreOpenError) -> (UInt64, Int) {
        // One copy of the file in memory, records decoded in place (a Data, then an Array
        // of it, then an Array of its body held three copies of a 10 MB checkpoint).
        guard let cp = FileManager.default.contents(atPath: path).map({ [UInt8]($0) }) else { return (0, 0) }
        let h = NativeStoreFormat.checkpointHeaderSize
        guard cp.count >= h, Array(cp[0..<8]) == NativeStoreFormat.checkpointMagic else {
            throw .corrupted(path: path, offset: 0, reason: "not a checkpoint (bad magic)")
        }
        let bodyLength = Int(cp.loadLE(UInt64.self, at: 16))
        guard cp.count == h + bodyLength else { throw .corrupted(path: path, offset: 16, reason: "body length \(bodyLength) does not match the file") }
        let crc = cp.withUnsafeBytes { Crc32.checksum(UnsafeRawBufferPointer(rebasing: $0[h...])) }
        guard crc == cp.loadLE(UInt32.self, at: 24) else { throw .corrupted(path: path, offset: 24, reason: "checksum mismatch") }
        var i = h
        while i < cp.count {
            guard i + 4 <= cp.count else { throw .corrupted(path: path, offset: i, reason: "truncated record") }
            let n = Int(cp.loadLE(UInt32.self, at: i))
            guard let c = NativeStoreFormat.decode(cp, at: i + 4, length: n) else {
                throw .corrupted(path: path, offset: i, reason: "malformed record")
            }
            apply(c)
            i += 4 + n
        }
        return (cp.loadLE(UInt64.self, at: 8), cp.count)
    }

    private init(directory: String, lock: DirectoryLock, sync: any FileSync, logFd: Int32, generation: UInt64, checkpointSize: Int,
                 recordedNvStoreSize: Int?) {
        self.directory = directory; self.lock = lock; self.sync = sync; self.logFd = logFd
        self.generation = generation; self.logSize = 0; self.checkpointSize = checkpointSize
        self.recordedNvStoreSize = recordedNvStoreSize
    }

    deinit { if logFd >= 0 { close(logFd) } }

    public func release() {
        condition.lock(); defer { condition.unlock() }
        if logFd >= 0 { close(logFd) }
        logFd = -1
        lock.release()
    }

    /// Records the store's non-volatile size, so that a later open without the option
    /// keeps it.
    public func recordNvStoreSize(_ size: Int) throws(JournalError) {
        try DurableFile.replace(configPath, with: Array("nv-store-size=\(size)\n".utf8), mode: 0o600, sync: sync)
    }

    // MARK: VariableJournal

    /// Everything staged after `durable` is pending until it is synced or discarded;
    /// `discardUnsynced` moves `durable` past the lost tickets.
    public var newestPendingTicket: JournalTicket? { condition.lock(); defer { condition.unlock() }; return staged > durable ? staged : nil }

    public func stage(_ changes: [VariableChange], wholeStore: () -> [ExportedVariable]) throws(JournalError) -> JournalTicket {
        condition.lock(); defer { condition.unlock() }
        if failed { throw JournalError(path: logPath, operation: "fdatasync (an earlier one failed)", errno: EIO) }
        guard logFd >= 0 else { throw JournalError(path: logPath, operation: "write (the store is closed)", errno: EBADF) }
        // A checkpoint makes everything appended so far durable at once; it is written only
        // while no fdatasync is running, so that one never races the log's reset.
        if !syncing, logSize > compactionThreshold, logSize > 2 * checkpointSize {
            try compact(wholeStore())
            staged += 1
            acknowledged += staged - durable
            durable = staged
            stagedEnd = logSize
            durableEnd = logSize
            return staged
        }
        let out = NativeStoreFormat.logRecords(changes)
        let written = out.withUnsafeBytes { pwrite(logFd, $0.baseAddress, out.count, off_t(logSize)) }
        guard written == out.count else {
            let e = written < 0 ? errno : ENOSPC
            _ = ftruncate(logFd, off_t(logSize))  // drop a partial append
            throw JournalError(path: logPath, operation: "write", errno: e)
        }
        logSize += out.count
        staged += 1
        stagedEnd = logSize
        return staged
    }

    public func isDurable(_ ticket: JournalTicket) -> Bool {
        condition.lock(); defer { condition.unlock() }
        return ticket <= durable && !lost.contains { $0.contains(ticket) }
    }

    public func awaitDurable(_ ticket: JournalTicket) -> Bool {
        condition.lock(); defer { condition.unlock() }
        while true {
            if lost.contains(where: { $0.contains(ticket) }) { return false }
            if ticket <= durable { return true }
            if failed { return false }
            if syncing { condition.wait(); continue }
            syncing = true
            let target = staged, targetEnd = stagedEnd, fd = logFd
            condition.unlock()
            let ok = fd >= 0 && sync.fdatasync(fd) == 0
            condition.lock()
            syncing = false
            syncs += 1
            if ok {
                acknowledged += target > durable ? target - durable : 0
                durable = max(durable, target)
                durableEnd = max(durableEnd, targetEnd)
            } else {
                failed = true
            }
            condition.broadcast()
        }
    }

    public func discardUnsynced() -> ClosedRange<JournalTicket>? {
        condition.lock(); defer { condition.unlock() }
        guard failed else { return nil }
        _ = ftruncate(logFd, off_t(durableEnd))
        _ = sync.fdatasync(logFd)
        logSize = durableEnd
        stagedEnd = durableEnd
        failed = false
        condition.broadcast()
        guard staged > durable else { return nil }
        let range = (durable + 1)...staged
        lost.append(range)
        durable = staged
        return range
    }

    public func saveAtPowerOn(_ all: [ExportedVariable]) throws(JournalError) {
        condition.lock(); defer { condition.unlock() }
        try compact(all)
    }

    public var syncStatistics: (syncs: Int, acknowledged: UInt64) {
        condition.lock(); defer { condition.unlock() }
        return (syncs, acknowledged)
    }

    // MARK: compaction

    /// Writes a new checkpoint holding `variables` (the whole non-volatile store, in
    /// order) and starts an empty log of the next generation. Called with `condition` held.
    func compact(_ variables: [ExportedVariable]) throws(JournalError) {
        let next = generation + 1
        let file = NativeStoreFormat.checkpoint(generation: next, variables)
        try DurableFile.replace(checkpointPath, with: file, mode: 0o600, sync: sync)
        generation = next
        checkpointSize = file.count
        try resetLog()
        compactions += 1
    }

    private func resetLog() throws(JournalError) {
        var header = NativeStoreFormat.logMagic
        header.appendLE(generation)
        guard ftruncate(logFd, 0) == 0,
              header.withUnsafeBytes({ pwrite(logFd, $0.baseAddress, header.count, 0) }) == header.count,
              sync.fsync(logFd) == 0 else { throw JournalError(path: logPath, operation: "reset", errno: errno) }
        DurableFile.syncDirectory(of: logPath, sync: sync)
        logSize = header.count
    }

    /// Bytes in the log and the checkpoint (for statistics and tests).
    public var sizes: (log: Int, checkpoint: Int) { condition.lock(); defer { condition.unlock() }; return (logSize, checkpointSize) }
}
