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

/// `--from-fd` writes in place as edk2 does: appended records, State bits ANDed, reclaim
/// when full; and every state a crash can leave reads as the old value or the new one.
@Suite("OVMF_VARS.fd written in place", .serialized)
struct FirmwareVolumeJournalTests {
    static let vendor = EfiGuid("210be57c-9849-4fc7-a635-e6382d1aec27")!
    static func k(_ n: String) -> VariableKey { VariableKey(n, vendor) }
    static func v(_ d: [UInt8]) -> StoredVariable { StoredVariable(attributes: .nvBsRt, data: d) }

    /// A copy of Debian's empty 4M store in a fresh directory.
    static func freshVolume() throws -> String {
        let dir = NSTemporaryDirectory() + "fvb-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/OVMF_VARS.fd"
        try FileManager.default.copyItem(atPath: "/usr/share/OVMF/OVMF_VARS_4M.fd", toPath: path)
        return path
    }
    static func bytes(_ path: String) -> [UInt8] { FileManager.default.contents(atPath: path).map(Array.init) ?? [] }
    static func inode(_ path: String) -> Int? { try? FileManager.default.attributesOfItem(atPath: path)[.systemFileNumber] as? Int }
    static func states(_ path: String) throws -> [(String, UInt8)] {
        try OvmfVarsFile.scan(bytes(path), path: path).records.map { r in
            (r.variable.map { Ucs2.string($0.key.name) } ?? "?", r.state)
        }
    }

    @Test("a rewrite appends a 0x3f record and leaves the old one 0x3c; a delete leaves 0x3d; same file, same size")
    func inPlaceStates() throws {
        let path = try Self.freshVolume()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let size = Self.bytes(path).count, ino = Self.inode(path)
        do {
            let (b, initial) = try FirmwareVolumeJournal.open(path: path)
            #expect(initial.isEmpty)
            try b.commit([(Self.k("A"), Self.v([1])), (Self.k("B"), Self.v([2]))])
            try b.commit([(Self.k("A"), Self.v([3]))])
            try b.commit([(Self.k("B"), nil)])
            #expect(b.fileImage == Self.bytes(path))
        }
        // Deleted records are not parsed (their names do not matter to a reader).
        #expect(try Self.states(path).map { "\($0.0):\(String($0.1, radix: 16))" } == ["?:3c", "?:3d", "A:3f"])
        #expect(Self.bytes(path).count == size && Self.inode(path) == ino)
        let (_, vars) = try FirmwareVolumeJournal.open(path: path)
        #expect(vars.map { "\(Ucs2.string($0.key.name))=\($0.value.data)" } == ["A=[3]"])
    }

    @Test("every state a crash can leave reads as the old value or the new one", arguments: [
        // (old record's State, new record's State, expected value)
        (UInt8(0x3E), UInt8(0x7F), [UInt8(1)]),   // after step 1: old in transition, new header only
        (UInt8(0x3E), UInt8(0x3F), [UInt8(2)]),   // after step 2: the twin is live
        (UInt8(0x3C), UInt8(0x3F), [UInt8(2)]),   // after step 3
        (UInt8(0x3F), UInt8(0x7F), [UInt8(1)]),   // step 1 only half done
    ])
    func crashStates(_ oldState: UInt8, _ newState: UInt8, _ expected: [UInt8]) throws {
        let path = try Self.freshVolume()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        do {
            let (b, _) = try FirmwareVolumeJournal.open(path: path)
            try b.commit([(Self.k("A"), Self.v([1]))])
            try b.commit([(Self.k("A"), Self.v([2]))])
        }
        var image = Self.bytes(path)
        let records = try OvmfVarsFile.scan(image, path: path).records
        image[records[0].offset + 2] = oldState
        image[records[1].offset + 2] = newState
        try Data(image).write(to: URL(fileURLWithPath: path))
        let (b, vars) = try FirmwareVolumeJournal.open(path: path)
        #expect(vars.map(\.value.data) == [expected])
        // The store goes on from there.
        try b.commit([(Self.k("A"), Self.v([9]))])
        #expect(try OvmfVarsFile.read(Self.bytes(path), path: path).map(\.value.data) == [[9]])
    }

    @Test("a header-only record cut short at the end (a torn append) ends the scan; the next append overwrites it")
    func tornAppend() throws {
        let path = try Self.freshVolume()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        do {
            let (b, _) = try FirmwareVolumeJournal.open(path: path)
            try b.commit([(Self.k("A"), Self.v([1]))])
        }
        var image = Self.bytes(path)
        let (_, records, end) = try OvmfVarsFile.scan(image, path: path)
        // StartId and State 0x7f written, the sizes still 0xff.
        image[end] = 0xAA; image[end + 1] = 0x55; image[end + 2] = 0x7F
        try Data(image).write(to: URL(fileURLWithPath: path))
        #expect(records.count == 1)
        let (b, vars) = try FirmwareVolumeJournal.open(path: path)
        #expect(vars.map(\.value.data) == [[1]])
        try b.commit([(Self.k("B"), Self.v([2]))])
        #expect(try OvmfVarsFile.read(Self.bytes(path), path: path).map(\.value.data) == [[1], [2]])
    }

    @Test("a full volume is reclaimed as edk2 does: only live records, same size")
    func reclaim() throws {
        let path = try Self.freshVolume()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let size = Self.bytes(path).count
        let (b, _) = try FirmwareVolumeJournal.open(path: path)
        let big = [UInt8](repeating: 7, count: 4000)
        var all: [(VariableKey, StoredVariable)] = [(Self.k("Keep"), Self.v([1]))]
        try b.commit([(Self.k("Keep"), Self.v([1]))])
        var writes = 0
        while b.reclaims == 0 {
            let change = [(Self.k("Big"), Self.v(big + [UInt8(writes & 0xff)]))]
            all = [all[0], (Self.k("Big"), change[0].1)]
            try b.commit(change, all: all)
            writes += 1
            try #require(writes < 1000)
        }
        #expect(writes > 10)
        #expect(Self.bytes(path).count == size)
        let live = try OvmfVarsFile.scan(Self.bytes(path), path: path).records
        #expect(live.count == 2 && live.allSatisfy { $0.state == 0x3F })
        #expect(try OvmfVarsFile.read(Self.bytes(path), path: path).map { Ucs2.string($0.key.name) }.sorted() == ["Big", "Keep"])
    }

    @Test("two copies in transition (a crash during an update after an earlier crash): the last one is live, the stale one gets deleted at open (crash-harness regression)")
    func twoInTransition() throws {
        let path = try Self.freshVolume()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        do {
            let (b, _) = try FirmwareVolumeJournal.open(path: path)
            for v: UInt8 in 1...3 { try b.commit([(Self.k("A"), Self.v([v]))]) }
        }
        var image = Self.bytes(path)
        let records = try OvmfVarsFile.scan(image, path: path).records
        try #require(records.count == 3)
        for (r, state) in zip(records, [UInt8(0x3E), 0x3E, 0x7F]) { image[r.offset + 2] = state }
        try Data(image).write(to: URL(fileURLWithPath: path))
        #expect(try OvmfVarsFile.read(image, path: path).map(\.value.data) == [[2]])
        let (b, vars) = try FirmwareVolumeJournal.open(path: path)
        #expect(vars.map(\.value.data) == [[2]])
        #expect(try Self.states(path).map(\.1) == [0x3C, 0x3E, 0x7F])
        try b.commit([(Self.k("A"), Self.v([4]))])
        #expect(try OvmfVarsFile.read(Self.bytes(path), path: path).map(\.value.data) == [[4]])
    }
}

extension FirmwareVolumeJournal {
    /// One request's changes; `all` is the whole store after them (for a reclaim).
    func commit(_ changes: [(VariableKey, StoredVariable?)], all: [(VariableKey, StoredVariable)] = []) throws {
        _ = try stage(changes.map { VariableChange(key: $0.0, value: $0.1) }, wholeStore: { all.map { ExportedVariable($0.0, $0.1) } })
    }
}
