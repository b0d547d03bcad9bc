import Foundation
import Testing
@testable import Driver
@testable import EfiTypes
@testable import Efivarfs
@testable import Guest
@testable import Hardware
@testable import Host
@testable import MmWire
@testable import Platform
@testable import Svsm
@testable import SvsmAbi
@testable import Trace
@testable import VariableService

@Suite("Durable native store", .serialized)
struct NativeStoreTests {
    static let vendor = EfiGuid("210be57c-9849-4fc7-a635-e6382d1aec27")!
    static func tempDir() -> String {
        let d = NSTemporaryDirectory() + "store-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }
    static func v(_ b: [UInt8], _ a: VariableAttributes = .nvBsRt) -> StoredVariable { StoredVariable(attributes: a, data: b) }
    static func k(_ n: String) -> VariableKey { VariableKey(n, vendor) }

    /// One request's changes through the journal interface the service uses: staged, then
    /// awaited until durable.
    static func commit(_ j: NativeJournal, _ changes: [(VariableKey, StoredVariable?)]) throws {
        let ticket = try j.stage(changes.map { VariableChange(key: $0.0, value: $0.1) }, wholeStore: { [] })
        try #require(j.awaitDurable(ticket))
    }

    /// A disk whose next `failures` fdatasyncs fail (EIO), injected into the journal.
    final class FailingSync: FileSync, @unchecked Sendable {
        private let failures = Locked(0)
        func failNext(_ n: Int) { failures.withLock { $0 = n } }
        func fdatasync(_ fd: Int32) -> Int32 {
            if failures.withLock({ f in defer { if f > 0 { f -= 1 } }; return f > 0 }) { errno = EIO; return -1 }
            return Glibc.fdatasync(fd)
        }
        func fsync(_ fd: Int32) -> Int32 { Glibc.fsync(fd) }
    }

    /// A disk whose fdatasync, once armed, signals `entered`, waits for `release` and then
    /// fails (EIO): a test can act while a write is staged but not yet durable.
    final class GatedSync: FileSync, @unchecked Sendable {
        let armed = Locked(false)
        let entered = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        func fdatasync(_ fd: Int32) -> Int32 {
            if armed.withLock({ a in defer { a = false }; return a }) {
                entered.signal()
                release.wait()
                errno = EIO
                return -1
            }
            return Glibc.fdatasync(fd)
        }
        func fsync(_ fd: Int32) -> Int32 { Glibc.fsync(fd) }
    }

    @Test("a record encodes as documented")
    func recordGolden() {
        let body = NativeStoreFormat.encode(VariableChange(key: Self.k("A"), value: Self.v([9])))
        #expect(Hex.encode(body) == "01" + Hex.encode(Self.vendor.bytes) + "01000000" + "4100" + "07000000" + "00" + "01000000" + "09")
        #expect(NativeStoreFormat.decode(body, at: 0, length: body.count)?.value == Self.v([9]))
    }

    @Test("puts and deletes survive a reopen, in order")
    func roundTrip() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let (f, initial) = try NativeJournal.open(directory: dir)
            #expect(initial.isEmpty)
            try Self.commit(f, [(Self.k("A"), Self.v([1])), (Self.k("B"), Self.v([2]))])
            try Self.commit(f, [(Self.k("A"), nil), (Self.k("C"), StoredVariable(attributes: [.nvBsRt, .timeBasedAuthenticatedWriteAccess], data: [3], timestamp: .zero))])
            try Self.commit(f, [(Self.k("B"), Self.v([4]))])
        }
        let (_, vars) = try NativeJournal.open(directory: dir)
        #expect(vars.map { Ucs2.string($0.key.name) } == ["C", "B"])
        #expect(vars[1].value == Self.v([4]))
        #expect(vars[0].value.timestamp == .zero)
    }

    @Test("a torn append is dropped and the log truncated; earlier writes stay")
    func tornTail() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var sizeAfterFirst = 0
        do {
            let (f, _) = try NativeJournal.open(directory: dir)
            try Self.commit(f, [(Self.k("A"), Self.v([1]))])
            sizeAfterFirst = f.sizes.log
            try Self.commit(f, [(Self.k("B"), Self.v([UInt8](repeating: 2, count: 100)))])
        }
        // Cut the second record in half.
        let fd = open(dir + "/log", O_RDWR)
        ftruncate(fd, off_t(sizeAfterFirst + 30))
        close(fd)
        let (f, vars) = try NativeJournal.open(directory: dir)
        #expect(vars.map { Ucs2.string($0.key.name) } == ["A"])
        #expect(f.sizes.log == sizeAfterFirst)
    }

    @Test("damage before valid records, or a bad checkpoint, is an error naming the file and offset")
    func corruption() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let (f, _) = try NativeJournal.open(directory: dir)
            try Self.commit(f, [(Self.k("A"), Self.v([1]))])
            try Self.commit(f, [(Self.k("B"), Self.v([2]))])
        }
        var log = try Data(contentsOf: URL(fileURLWithPath: dir + "/log"))
        log[16 + 12 + 5] ^= 0xFF  // inside the first record's body
        try log.write(to: URL(fileURLWithPath: dir + "/log"))
        #expect { try NativeJournal.open(directory: dir) } throws: { e in
            guard case .corrupted(let p, let o, _) = e as? StoreOpenError else { return false }
            return p.hasSuffix("/log") && o == 16
        }
        try Data("EFBCKP01garbage".utf8).write(to: URL(fileURLWithPath: dir + "/checkpoint"))
        #expect(throws: StoreOpenError.self) { try NativeJournal.open(directory: dir) }
    }

    @Test("a checkpoint is its header, then each record as length and body, byte for byte; the body's CRC in the header")
    func checkpointBytes() {
        let time = EfiTime(bytes: Array(1...16))
        let vars = [
            ExportedVariable(Self.k("Plain"), Self.v([1, 2, 3])),
            ExportedVariable(Self.k("Timed"), StoredVariable(attributes: [.nonVolatile, .bootserviceAccess, .timeBasedAuthenticatedWriteAccess],
                                                             data: [9], timestamp: time, digest: Array(repeating: 0xab, count: 32))),
            ExportedVariable(Self.k("E"), Self.v([])),
        ]
        var body: [UInt8] = []
        for v in vars {
            let r = NativeStoreFormat.encode(VariableChange(key: v.key, value: v.value))
            #expect(r.count == NativeStoreFormat.encodedSize(VariableChange(key: v.key, value: v.value)))
            body.appendLE(UInt32(r.count)); body += r
        }
        // The "Plain" record's body, by hand: op 1, GUID, 5 units, "Plain", attributes 7, no time, 3 bytes.
        let plain: [UInt8] = [1] + Self.vendor.bytes + [5, 0, 0, 0] + Array("Plain".utf16.flatMap { [UInt8($0), 0] })
            + [7, 0, 0, 0, 0, 3, 0, 0, 0, 1, 2, 3]
        #expect(Array(body[4..<(4 + plain.count)]) == plain)
        var expected = Array("EFBCKP01".utf8)
        expected.appendLE(UInt64(42)); expected.appendLE(UInt64(body.count)); expected.appendLE(Crc32.checksum(body))
        #expect(NativeStoreFormat.checkpoint(generation: 42, vars) == expected + body)
    }

    @Test("compaction writes a checkpoint and starts a new log; a stale log is ignored")
    func compaction() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The service's view after each write: what a compaction checkpoints.
        var latest: [VariableKey: StoredVariable] = [:]
        var order: [VariableKey] = []
        do {
            let (f, _) = try NativeJournal.open(directory: dir)
            f.compactionThreshold = 2000
            var oldLog = Data()
            var i = 0
            // Writes until a stage finds the log past the threshold and compacts instead.
            while f.compactions == 0 {
                let key = Self.k("V\(i % 10)")
                latest[key] = Self.v([UInt8(i & 0xff)])
                if let at = order.firstIndex(of: key) { order.remove(at: at) }
                order.append(key)
                oldLog = try Data(contentsOf: URL(fileURLWithPath: dir + "/log"))
                let whole = order.map { ExportedVariable($0, latest[$0]!) }
                let ticket = try f.stage([VariableChange(key: key, value: latest[key])], wholeStore: { whole })
                try #require(f.awaitDurable(ticket))
                i += 1
                try #require(i < 1000)
            }
            #expect(f.sizes.log == 16 && f.compactions == 1)
            // A crash between the new checkpoint and the log reset leaves the old log: put it back.
            try oldLog.write(to: URL(fileURLWithPath: dir + "/log"))
        }
        let (_, vars) = try NativeJournal.open(directory: dir)
        #expect(vars.count == 10)
        #expect(vars.map(\.value) == order.map { latest[$0]! })
    }

    @Test("a second opener gets a clear error naming the first")
    func locking() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (first, _) = try NativeJournal.open(directory: dir)
        #expect { try NativeJournal.open(directory: dir) } throws: { e in
            (e as? StoreOpenError)?.description.contains("in use by process \(getpid())") ?? false
        }
        withExtendedLifetime(first) {}
    }

    @Test("the service persists non-volatile changes only, and rolls back when it cannot")
    func servicePersistence() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let (f, _) = try NativeJournal.open(directory: dir)
            let service = VariableService(store: VariableStore(), journal: f)
            func set(_ n: String, _ a: UInt32, _ d: [UInt8]) -> UInt64 {
                let p = AccessVariablePayload.encode(guid: Self.vendor, name: Ucs2.units(n), attributes: a, dataSize: d.count, data: d)
                return service.handleMmRequest(headerGuid: .smmVariableProtocol, message: SmmVariableHeader.message(.setVariable, payload: p))!.loadLE(UInt64.self, at: 8)
            }
            #expect(set("Nv", 7, [1]) == 0)
            #expect(set("Vol", 6, [2]) == 0)
            #expect(set("Nv", 7, [3]) == 0)
            #expect(set("Gone", 7, [4]) == 0)
            #expect(set("Gone", 7, []) == 0)
        }
        let (_, vars) = try NativeJournal.open(directory: dir)
        #expect(vars.map { "\(Ucs2.string($0.key.name))=\($0.value.data)" } == ["Nv=[3]"])
    }

    static func setStatus(_ service: VariableService, _ n: String, _ a: UInt32, _ d: [UInt8]) -> UInt64 {
        let p = AccessVariablePayload.encode(guid: vendor, name: Ucs2.units(n), attributes: a, dataSize: d.count, data: d)
        return service.handleMmRequest(headerGuid: .smmVariableProtocol, message: SmmVariableHeader.message(.setVariable, payload: p))!
            .loadLE(UInt64.self, at: SmmVariableHeader.returnStatusOffset)
    }

    @Test("group commit: concurrent writers are each acknowledged after an fdatasync, and all survive a reopen")
    func groupCommitConcurrent() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let writers = 8, writes = 40
        do {
            let (f, _) = try NativeJournal.open(directory: dir)
            let service = VariableService(store: VariableStore(), journal: f)
            DispatchQueue.concurrentPerform(iterations: writers) { w in
                for i in 0..<writes {
                    let st = Self.setStatus(service, "W\(w)", 7, [UInt8(w), UInt8(i)])
                    precondition(st == 0, "writer \(w) write \(i): \(st)")
                }
            }
            let stats = service.syncStatistics
            #expect(stats.acknowledged == UInt64(writers * writes))
            #expect(stats.syncs >= 1 && stats.syncs <= writers * writes)
        }
        let (_, vars) = try NativeJournal.open(directory: dir)
        #expect(Set(vars.map { "\(Ucs2.string($0.key.name))=\($0.value.data)" }) == Set((0..<writers).map { "W\($0)=[\($0), \(writes - 1)]" }))
    }

    @Test("group commit: a failed fdatasync rolls the write back (EFI_DEVICE_ERROR), in memory and on disk; the next write works")
    func groupCommitFailure() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let disk = FailingSync()
            let (f, _) = try NativeJournal.open(directory: dir, sync: disk)
            let service = VariableService(store: VariableStore(), journal: f)
            #expect(Self.setStatus(service, "Kept", 7, [1]) == 0)
            disk.failNext(1)
            #expect(Self.setStatus(service, "Lost", 7, [2]) == EfiStatus.deviceError.rawValue)
            #expect(Self.setStatus(service, "Kept", 7, [3]) == 0)
            #expect(MmProbe.get(service, Self.k("Lost")) == .error(.notFound))
            #expect(MmProbe.get(service, Self.k("Kept")) == .found(attributes: .nvBsRt, data: [3]))
        }
        let (_, vars) = try NativeJournal.open(directory: dir)
        #expect(vars.map { "\(Ucs2.string($0.key.name))=\($0.value.data)" } == ["Kept=[3]"])
    }

    @Test("group commit: a reader that saw a write whose fdatasync then fails asks again, with the same request, and gets the old value")
    func readerOfLostWrite() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let disk = GatedSync()
        let (f, _) = try NativeJournal.open(directory: dir, sync: disk)
        let service = VariableService(store: VariableStore(), journal: f)
        #expect(Self.setStatus(service, "Var", 7, [1]) == 0)
        disk.armed.withLock { $0 = true }
        let written = Locked<UInt64?>(nil), read = Locked<GetVariableResult?>(nil)
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) {
            let st = Self.setStatus(service, "Var", 7, [2])
            written.withLock { $0 = st }
        }
        disk.entered.wait()  // [2] is in the store, its fdatasync under way
        DispatchQueue.global().async(group: group) {
            let r = MmProbe.get(service, Self.k("Var"))
            read.withLock { $0 = r }
        }
        Thread.sleep(forTimeInterval: 0.2)
        // Still waiting: it found [2] and may not answer before [2] is durable.
        #expect(read.withLock { $0 } == nil)
        disk.release.signal()
        // Before the fix the reader asked again for ever, finding the lost ticket each time.
        try #require(group.wait(timeout: .now() + 10) == .success, "the reader never answered")
        #expect(written.withLock { $0 } == EfiStatus.deviceError.rawValue)
        // The second attempt ran the request as the guest sent it, against the store
        // with [2] undone.
        #expect(read.withLock { $0 } == .found(attributes: .nvBsRt, data: [1]))
    }
}
