#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The durable native store: a checkpoint plus an append-only log in one directory.
///
/// Files (all little-endian):
/// - `checkpoint`: magic "EFBCKP01", generation u64, body length u64, CRC-32 of the body
///   u32, then the body: every non-volatile variable as a length-prefixed record body, in
///   GetNextVariableName order. Written to `checkpoint.tmp`, fsync'd, renamed over
///   `checkpoint`, and the directory fsync'd: a checkpoint is either the old one or the new
///   one, never torn.
/// - `log`: magic "EFBLOG01", generation u64, then records: magic "EFVR" u32, body length
///   u32, CRC-32 of the body u32, body. A body is: op u8 (1 put, 2 delete), vendor GUID
///   (16), name length in CHAR16 u32, name (UTF-16LE), attributes u32, has-timestamp u8,
///   EFI_TIME (16, if present), data length u32, data.
/// - `lock`: held with flock(2) while the store is open; it holds the owner's pid.
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
public final class NativeStoreFile: @unchecked Sendable {
    public enum Failure: Error, CustomStringConvertible, Equatable {
        case cannotCreate(String, String)
        case locked(path: String, owner: String, control: String?)
        case corrupted(path: String, offset: Int, reason: String)
        case io(String, String)
        public var description: String {
            switch self {
            case .cannotCreate(let p, let e): return "cannot create the store directory \(p): \(e)"
            case .locked(let p, let o, _): return "the store \(p) is in use by \(o); unmount it first or name another store"
            case .corrupted(let p, let o, let r): return "\(p): corrupted at offset \(o): \(r)"
            case .io(let p, let e): return "\(p): \(e)"
            }
        }
    }

    static let checkpointMagic = Array("EFBCKP01".utf8)
    static let logMagic = Array("EFBLOG01".utf8)
    static let recordMagic: UInt32 = 0x5256_4645  // "EFVR"
    static let logHeaderSize = 16
    static let checkpointHeaderSize = 28

    public let directory: String
    private let lock: StoreLock
    private var logFd: Int32
    private var generation: UInt64
    private var logSize: Int
    private var checkpointSize: Int
    /// Compaction starts when the log is larger than this and than twice the checkpoint.
    public var compactionThreshold = 1 << 20
    public private(set) var compactions = 0

    var checkpointPath: String { directory + "/checkpoint" }
    var logPath: String { directory + "/log" }

    /// Opens (creating if needed) and locks the store; returns it with its variables.
    /// `note` goes into the lock file for whoever finds the store locked.
    public static func open(directory: String, note: String = "") throws(Failure) -> (NativeStoreFile, [(VariableKey, StoredVariable)]) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch { throw .cannotCreate(directory, error.localizedDescription) }
        let lock = try StoreLock.acquire(lockPath: directory + "/lock", store: directory, note: note)
        var variables: [VariableKey: StoredVariable] = [:]
        var order: [VariableKey] = []
        func apply(_ op: UInt8, _ key: VariableKey, _ v: StoredVariable?) {
            if let i = order.firstIndex(of: key) { order.remove(at: i) }
            if op == 1, let v { variables[key] = v; order.append(key) } else { variables[key] = nil }
        }
        var generation: UInt64 = 0
        var checkpointSize = 0
        let cpPath = directory + "/checkpoint"
        if let cp = FileManager.default.contents(atPath: cpPath).map(Array.init) {
            checkpointSize = cp.count
            guard cp.count >= checkpointHeaderSize, Array(cp[0..<8]) == checkpointMagic else {
                throw .corrupted(path: cpPath, offset: 0, reason: "not a checkpoint (bad magic)")
            }
            generation = cp.loadLE(UInt64.self, at: 8)
            let bodyLength = Int(cp.loadLE(UInt64.self, at: 16))
            guard cp.count == checkpointHeaderSize + bodyLength else {
                throw .corrupted(path: cpPath, offset: 16, reason: "body length \(bodyLength) does not match the file")
            }
            let body = Array(cp[checkpointHeaderSize...])
            guard Crc32.checksum(body) == cp.loadLE(UInt32.self, at: 24) else {
                throw .corrupted(path: cpPath, offset: 24, reason: "checksum mismatch")
            }
            var i = 0
            while i < body.count {
                guard i + 4 <= body.count else { throw .corrupted(path: cpPath, offset: checkpointHeaderSize + i, reason: "truncated record") }
                let n = Int(body.loadLE(UInt32.self, at: i))
                guard let (op, key, v) = decode(body, at: i + 4, length: n) else {
                    throw .corrupted(path: cpPath, offset: checkpointHeaderSize + i, reason: "malformed record")
                }
                apply(op, key, v)
                i += 4 + n
            }
        }
        // The log: replay up to the first torn or corrupt record.
        let lp = directory + "/log"
        let lfdLog = Glibc.open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lfdLog >= 0 else { throw .io(lp, String(cString: strerror(errno))) }
        let log = FileManager.default.contents(atPath: lp).map(Array.init) ?? []
        var validEnd = 0
        if log.count >= logHeaderSize, Array(log[0..<8]) == logMagic, log.loadLE(UInt64.self, at: 8) == generation {
            validEnd = logHeaderSize
            var i = logHeaderSize
            while i + 12 <= log.count {
                guard log.loadLE(UInt32.self, at: i) == recordMagic else { break }
                let n = Int(log.loadLE(UInt32.self, at: i + 4))
                guard i + 12 + n <= log.count else { break }
                let body = Array(log[(i + 12)..<(i + 12 + n)])
                guard Crc32.checksum(body) == log.loadLE(UInt32.self, at: i + 8), let (op, key, v) = decode(body, at: 0, length: n) else { break }
                apply(op, key, v)
                i += 12 + n
                validEnd = i
            }
        }
        // A bad record followed by a good one is damage, not a torn append: refuse to open
        // rather than silently drop acknowledged writes.
        if validEnd > 0, let later = firstValidRecord(in: log, after: validEnd) {
            close(lfdLog)
            throw .corrupted(path: lp, offset: validEnd, reason: "damaged record followed by valid records (at offset \(later))")
        }
        let store = NativeStoreFile(directory: directory, lock: lock, logFd: lfdLog, generation: generation, checkpointSize: checkpointSize)
        if validEnd == 0 {
            // No log for this generation (new store, or a stale one from before a checkpoint).
            try store.resetLog()
        } else {
            if validEnd < log.count {
                guard ftruncate(lfdLog, off_t(validEnd)) == 0, fdatasync(lfdLog) == 0 else { throw .io(lp, String(cString: strerror(errno))) }
            }
            store.logSize = validEnd
        }
        return (store, order.map { ($0, variables[$0]!) })
    }

    private init(directory: String, lock: StoreLock, logFd: Int32, generation: UInt64, checkpointSize: Int) {
        self.directory = directory
        self.lock = lock
        self.logFd = logFd
        self.generation = generation
        self.logSize = 0
        self.checkpointSize = checkpointSize
    }

    deinit { if logFd >= 0 { close(logFd) } }

    /// At unmount: the log closed (later appends fail) and the lock released.
    public func release() {
        if logFd >= 0 { close(logFd) }
        logFd = -1
        lock.release()
    }

    // MARK: records

    /// The offset of the first intact record strictly after `start`, if any.
    static func firstValidRecord(in log: [UInt8], after start: Int) -> Int? {
        var i = start + 1
        while i + 12 <= log.count {
            if log.loadLE(UInt32.self, at: i) == recordMagic {
                let n = Int(log.loadLE(UInt32.self, at: i + 4))
                if i + 12 + n <= log.count {
                    let body = Array(log[(i + 12)..<(i + 12 + n)])
                    if Crc32.checksum(body) == log.loadLE(UInt32.self, at: i + 8), decode(body, at: 0, length: n) != nil { return i }
                }
            }
            i += 1
        }
        return nil
    }

    static func encode(_ key: VariableKey, _ v: StoredVariable?) -> [UInt8] {
        var b: [UInt8] = [v == nil ? 2 : 1]
        b += key.guid.bytes
        b.appendLE(UInt32(key.name.count))
        for u in key.name { b.appendLE(u) }
        b.appendLE(v?.attributes.rawValue ?? 0)
        if let t = v?.timestamp { b.append(1); b += t.bytes } else { b.append(0) }
        let data = v?.data ?? []
        b.appendLE(UInt32(data.count))
        return b + data
    }

    static func decode(_ b: [UInt8], at start: Int, length: Int) -> (UInt8, VariableKey, StoredVariable?)? {
        let end = start + length
        guard length >= 1 + 16 + 4, end <= b.count else { return nil }
        let op = b[start]
        guard op == 1 || op == 2 else { return nil }
        let guid = EfiGuid(bytes: b, at: start + 1)
        let units = Int(b.loadLE(UInt32.self, at: start + 17))
        var i = start + 21
        guard units <= 0x10000, i + units * 2 + 5 <= end else { return nil }
        let name = (0..<units).map { b.loadLE(UInt16.self, at: i + 2 * $0) }
        i += units * 2
        let attrs = b.loadLE(UInt32.self, at: i); i += 4
        let hasTime = b[i]; i += 1
        var time: EfiTime?
        if hasTime == 1 {
            guard i + 16 <= end else { return nil }
            time = EfiTime(bytes: Array(b[i..<(i + 16)])); i += 16
        }
        guard i + 4 <= end else { return nil }
        let n = Int(b.loadLE(UInt32.self, at: i)); i += 4
        guard i + n == end else { return nil }
        let key = VariableKey(guid: guid, name: name)
        return (op, key, op == 1 ? StoredVariable(attributes: VariableAttributes(rawValue: attrs), data: Array(b[i..<end]), timestamp: time) : nil)
    }

    // MARK: writing

    /// Appends the new values of `changes` (nil = deleted) and makes them durable.
    public func append(_ changes: [(VariableKey, StoredVariable?)]) throws(Failure) {
        guard !changes.isEmpty else { return }
        let out = NativeStoreFile.logRecords(changes)
        let written = out.withUnsafeBytes { pwrite(logFd, $0.baseAddress, out.count, off_t(logSize)) }
        guard written == out.count, fdatasync(logFd) == 0 else {
            let e = String(cString: strerror(errno))
            _ = ftruncate(logFd, off_t(logSize))  // drop a partial append
            throw .io(logPath, e)
        }
        logSize += out.count
    }

    /// Group commit, first half: appends the records of `changes` without syncing and
    /// returns the log's new end. A failed write is cut off again and nothing is kept.
    func stage(_ changes: [(VariableKey, StoredVariable?)]) throws(Failure) -> Int {
        let out = NativeStoreFile.logRecords(changes)
        let written = out.withUnsafeBytes { pwrite(logFd, $0.baseAddress, out.count, off_t(logSize)) }
        guard written == out.count else {
            let e = String(cString: strerror(errno))
            _ = ftruncate(logFd, off_t(logSize))
            throw .io(logPath, e)
        }
        logSize += out.count
        return logSize
    }

    /// Group commit, second half: fdatasync of everything staged so far. May run while
    /// another thread stages (pwrite and fdatasync on one descriptor are safe together).
    func syncLog() -> Bool {
        if failNextSyncs > 0 { failNextSyncs -= 1; return false }
        return fdatasync(logFd) == 0
    }

    /// After a failed fdatasync: drops every record after `end` (the last synced end).
    func truncateLog(to end: Int) {
        _ = ftruncate(logFd, off_t(end))
        _ = fdatasync(logFd)
        logSize = end
    }

    /// The log's end as of now (read with the store lock held).
    var logEnd: Int { logSize }

    /// Test hook: the next n fdatasync calls of `syncLog` fail as a failing disk's would.
    var failNextSyncs = 0

    static func logRecords(_ changes: [(VariableKey, StoredVariable?)]) -> [UInt8] {
        var out = [UInt8]()
        for (k, v) in changes {
            let body = NativeStoreFile.encode(k, v)
            out.appendLE(NativeStoreFile.recordMagic)
            out.appendLE(UInt32(body.count))
            out.appendLE(Crc32.checksum(body))
            out += body
        }
        return out
    }

    public var needsCompaction: Bool { logSize > compactionThreshold && logSize > 2 * checkpointSize }

    /// Writes a new checkpoint holding `variables` (the whole non-volatile store, in order)
    /// and starts an empty log of the next generation.
    public func compact(_ variables: [(VariableKey, StoredVariable)]) throws(Failure) {
        let next = generation + 1
        var body = [UInt8]()
        for (k, v) in variables {
            let r = NativeStoreFile.encode(k, v)
            body.appendLE(UInt32(r.count))
            body += r
        }
        var file = NativeStoreFile.checkpointMagic
        file.appendLE(next)
        file.appendLE(UInt64(body.count))
        file.appendLE(Crc32.checksum(body))
        file += body
        let tmp = checkpointPath + ".tmp"
        let fd = Glibc.open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io(tmp, String(cString: strerror(errno))) }
        let n = file.withUnsafeBytes { write(fd, $0.baseAddress, file.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard n == file.count, synced, rename(tmp, checkpointPath) == 0 else { throw .io(tmp, String(cString: strerror(errno))) }
        syncDirectory()
        generation = next
        checkpointSize = file.count
        try resetLog()
        compactions += 1
    }

    private func resetLog() throws(Failure) {
        var header = NativeStoreFile.logMagic
        header.appendLE(generation)
        guard ftruncate(logFd, 0) == 0,
              header.withUnsafeBytes({ pwrite(logFd, $0.baseAddress, header.count, 0) }) == header.count,
              fsync(logFd) == 0 else { throw .io(logPath, String(cString: strerror(errno))) }
        syncDirectory()
        logSize = header.count
    }

    private func syncDirectory() {
        let d = Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if d >= 0 { fsync(d); close(d) }
    }

    /// Bytes in the log and the checkpoint (for statistics and tests).
    public var sizes: (log: Int, checkpoint: Int) { (logSize, checkpointSize) }
}
