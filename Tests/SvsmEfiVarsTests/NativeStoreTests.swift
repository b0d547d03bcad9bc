import Foundation
import Testing
@testable import SvsmEfiVars

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

    @Test("a record encodes as documented")
    func recordGolden() {
        let body = NativeStoreFile.encode(Self.k("A"), Self.v([9]))
        #expect(Hex.encode(body) == "01" + Hex.encode(Self.vendor.bytes) + "01000000" + "4100" + "07000000" + "00" + "01000000" + "09")
        #expect(NativeStoreFile.decode(body, at: 0, length: body.count)?.2 == Self.v([9]))
    }

    @Test("puts and deletes survive a reopen, in order")
    func roundTrip() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let (f, initial) = try NativeStoreFile.open(directory: dir)
            #expect(initial.isEmpty)
            try f.append([(Self.k("A"), Self.v([1])), (Self.k("B"), Self.v([2]))])
            try f.append([(Self.k("A"), nil), (Self.k("C"), StoredVariable(attributes: [.nvBsRt, .timeBasedAuthenticatedWriteAccess], data: [3], timestamp: .zero))])
            try f.append([(Self.k("B"), Self.v([4]))])
        }
        let (_, vars) = try NativeStoreFile.open(directory: dir)
        #expect(vars.map { Ucs2.string($0.0.name) } == ["C", "B"])
        #expect(vars[1].1 == Self.v([4]))
        #expect(vars[0].1.timestamp == .zero)
    }

    @Test("a torn append is dropped and the log truncated; earlier writes stay")
    func tornTail() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var sizeAfterFirst = 0
        do {
            let (f, _) = try NativeStoreFile.open(directory: dir)
            try f.append([(Self.k("A"), Self.v([1]))])
            sizeAfterFirst = f.sizes.log
            try f.append([(Self.k("B"), Self.v([UInt8](repeating: 2, count: 100)))])
        }
        // Cut the second record in half.
        let fd = open(dir + "/log", O_RDWR)
        ftruncate(fd, off_t(sizeAfterFirst + 30))
        close(fd)
        let (f, vars) = try NativeStoreFile.open(directory: dir)
        #expect(vars.map { Ucs2.string($0.0.name) } == ["A"])
        #expect(f.sizes.log == sizeAfterFirst)
    }

    @Test("damage before valid records, or a bad checkpoint, is an error naming the file and offset")
    func corruption() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let (f, _) = try NativeStoreFile.open(directory: dir)
            try f.append([(Self.k("A"), Self.v([1]))])
            try f.append([(Self.k("B"), Self.v([2]))])
        }
        var log = try Data(contentsOf: URL(fileURLWithPath: dir + "/log"))
        log[16 + 12 + 5] ^= 0xFF  // inside the first record's body
        try log.write(to: URL(fileURLWithPath: dir + "/log"))
        #expect { try NativeStoreFile.open(directory: dir) } throws: { e in
            guard case .corrupted(let p, let o, _) = e as? NativeStoreFile.Failure else { return false }
            return p.hasSuffix("/log") && o == 16
        }
        try Data("EFBCKP01garbage".utf8).write(to: URL(fileURLWithPath: dir + "/checkpoint"))
        #expect(throws: NativeStoreFile.Failure.self) { try NativeStoreFile.open(directory: dir) }
    }

    @Test("compaction writes a checkpoint and starts a new log; a stale log is ignored")
    func compaction() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let (f, _) = try NativeStoreFile.open(directory: dir)
            f.compactionThreshold = 2000
            var store = VariableStore()
            store.tracking = nil
            for i in 0..<200 { try f.append([(Self.k("V\(i % 10)"), Self.v([UInt8(i)]))]) }
            for i in 0..<10 { store.putRecord(Self.k("V\(i)"), Self.v([UInt8(190 + i)])) }
            #expect(f.needsCompaction)
            let oldLog = try Data(contentsOf: URL(fileURLWithPath: dir + "/log"))
            try f.compact(store.nonVolatileVariables)
            #expect(f.sizes.log == 16 && f.compactions == 1)
            // A crash between the new checkpoint and the log reset leaves the old log: put it back.
            try oldLog.write(to: URL(fileURLWithPath: dir + "/log"))
        }
        let (_, vars) = try NativeStoreFile.open(directory: dir)
        #expect(vars.count == 10)
        #expect(vars.map { $0.1.data[0] } == (190..<200).map { UInt8($0) })
    }

    @Test("a second opener gets a clear error naming the first")
    func locking() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (first, _) = try NativeStoreFile.open(directory: dir)
        #expect { try NativeStoreFile.open(directory: dir) } throws: { e in
            (e as? NativeStoreFile.Failure)?.description.contains("in use by process \(getpid())") ?? false
        }
        withExtendedLifetime(first) {}
    }

    @Test("the service persists non-volatile changes only, and rolls back when it cannot")
    func servicePersistence() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let (f, _) = try NativeStoreFile.open(directory: dir)
            let service = VariableService(store: VariableStore(), persistence: f)
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
        let (_, vars) = try NativeStoreFile.open(directory: dir)
        #expect(vars.map { "\(Ucs2.string($0.0.name))=\($0.1.data)" } == ["Nv=[3]"])
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
            let (f, _) = try NativeStoreFile.open(directory: dir)
            let service = VariableService(store: VariableStore(), persistence: f)
            DispatchQueue.concurrentPerform(iterations: writers) { w in
                for i in 0..<writes {
                    let st = Self.setStatus(service, "W\(w)", 7, [UInt8(w), UInt8(i)])
                    precondition(st == 0, "writer \(w) write \(i): \(st)")
                }
            }
            let stats = service.groupCommitStatistics
            #expect(stats.acknowledged == UInt64(writers * writes))
            #expect(stats.syncs >= 1 && stats.syncs <= writers * writes)
        }
        let (_, vars) = try NativeStoreFile.open(directory: dir)
        #expect(Set(vars.map { "\(Ucs2.string($0.0.name))=\($0.1.data)" }) == Set((0..<writers).map { "W\($0)=[\($0), \(writes - 1)]" }))
    }

    @Test("group commit: a failed fdatasync rolls the write back (EFI_DEVICE_ERROR), in memory and on disk; the next write works")
    func groupCommitFailure() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let (f, _) = try NativeStoreFile.open(directory: dir)
            let service = VariableService(store: VariableStore(), persistence: f)
            #expect(Self.setStatus(service, "Kept", 7, [1]) == 0)
            f.failNextSyncs = 1
            #expect(Self.setStatus(service, "Lost", 7, [2]) == EfiStatus.deviceError.rawValue)
            #expect(Self.setStatus(service, "Kept", 7, [3]) == 0)
            service.withStore { store in
                #expect(store.find(Self.k("Lost")) == nil)
                #expect(store.find(Self.k("Kept"))?.data == [3])
            }
        }
        let (_, vars) = try NativeStoreFile.open(directory: dir)
        #expect(vars.map { "\(Ucs2.string($0.0.name))=\($0.1.data)" } == ["Kept=[3]"])
    }
}
