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

@Suite("efivarfs semantics")
struct EfivarfsTests {
    static let testGuid = "210be57c-9849-4fc7-a635-e6382d1aec27"

    @Test("valid names from the kernel selftest", arguments: ["abc", "dump-type0-11-1-1362436005", "1234", "-"])
    func validNames(_ n: String) { #expect(EfivarfsName.isValid(Array("\(n)-\(Self.testGuid)".utf8))) }

    @Test("invalid names from the kernel selftest", arguments: [
        "-1234-1234-1234-123456789abc", "foo", "foo-bar", "-foo-", "foo-barbazba-foob-foob-foob-foobarbazfoo",
        "foo-------------------------------------", "-12345678-1234-1234-1234-123456789abc",
        "a-12345678=1234-1234-1234-123456789abc", "a-12345678-1234=1234-1234-123456789abc",
        "a-12345678-1234-1234=1234-123456789abc", "a-12345678-1234-1234-1234=123456789abc",
        "1112345678-1234-1234-1234-123456789abc",
    ])
    func invalidNames(_ n: String) { #expect(!EfivarfsName.isValid(Array(n.utf8))) }

    @Test("created names are widened bytes, not decoded UTF-8; '/' becomes '!' in listings")
    func nameMapping() {
        let key = EfivarfsName.variableKey(forCreatedName: Array("é-\(Self.testGuid)".utf8))!
        #expect(key.name == [0xC3, 0xA9])
        #expect(String(decoding: EfivarfsName.fileName(for: key), as: UTF8.self) == "Ã©-\(Self.testGuid)")
        let slash = VariableKey("a/b", EfiGuid(Self.testGuid)!)
        #expect(String(decoding: EfivarfsName.fileName(for: slash), as: UTF8.self) == "a!b-\(Self.testGuid)")
    }

    @Test("GUID compares case-insensitively, the name part case-sensitively")
    func lookupKey() {
        let a = EfivarfsName.lookupKey(Array("Boot-8BE4DF61-93CA-11D2-AA0D-00E098032B8C".utf8))
        let b = EfivarfsName.lookupKey(Array("Boot-8be4df61-93ca-11d2-aa0d-00e098032b8c".utf8))
        let c = EfivarfsName.lookupKey(Array("boot-8be4df61-93ca-11d2-aa0d-00e098032b8c".utf8))
        #expect(a == b)
        #expect(a != c)
    }

    @Test("the validation length quirk: exact names are never validated, Boot#### load options are")
    func validationQuirk() {
        let g = EfiGuid.globalVariable
        // Timeout and BootOrder are exact entries: never validated, any length passes.
        #expect(EfivarfsValidation.validate(VariableKey("Timeout", g), data: [1, 2, 3]))
        #expect(EfivarfsValidation.validate(VariableKey("BootOrder", g), data: [1]))
        #expect(EfivarfsValidation.validate(VariableKey("Lang", g), data: [0xFF]))
        // Boot* matches BootNext/BootCurrent but the 4 characters are not hex: passes.
        #expect(EfivarfsValidation.validate(VariableKey("BootNext", g), data: [1]))
        // Boot#### with a bad load option: refused, also the attributes-only (empty) write.
        #expect(!EfivarfsValidation.validate(VariableKey("Boot0001", g), data: [1, 2, 3]))
        #expect(!EfivarfsValidation.validate(VariableKey("Boot0001", g), data: []))
        #expect(!EfivarfsValidation.validate(VariableKey("Boot00011", g), data: OvmfDefaults.entries[0].data))
        #expect(EfivarfsValidation.validate(VariableKey("boot0001", g), data: []))  // not Boot*
        #expect(EfivarfsValidation.validate(VariableKey("Boot0001", g), data: OvmfDefaults.entries[0].data))
        #expect(EfivarfsValidation.validate(VariableKey("Driver00aF", g), data: OvmfDefaults.entries[2].data))
        // Other GUIDs are not validated.
        #expect(EfivarfsValidation.validate(VariableKey("Boot0001", EfiGuid(Self.testGuid)!), data: [1]))
    }

    @Test("the removable whitelist", arguments: [
        ("BootOrder", true), ("BootNext", true), ("Boot0001", true), ("BootCurrent", true), ("Timeout", true),
        ("ConIn", true), ("ErrOutDev", true), ("OsIndications", true), ("PlatformLang", true), ("Lang", true),
        ("Driver0000", true), ("OsIndicationsSupported", false), ("SecureBoot", false), ("PK", false),
        ("LangCodes", false), ("Key0000", false), ("SysPrep0000", false),
    ])
    func removable(_ name: String, _ expected: Bool) {
        let key = VariableKey(name, .globalVariable)
        #expect(EfivarfsValidation.isRemovable(key, utf8Name: Array(name.utf8)) == expected)
    }

    @Test("every name under LINUX_EFI_CRASH_GUID is removable; vendor GUIDs are not")
    func removableOtherGuids() {
        #expect(EfivarfsValidation.isRemovable(VariableKey("dump-type0-1", .linuxEfiCrash), utf8Name: Array("dump-type0-1".utf8)))
        #expect(!EfivarfsValidation.isRemovable(VariableKey("BootOrder", EfiGuid(Self.testGuid)!), utf8Name: Array("BootOrder".utf8)))
    }

    @Test("efi_status_to_err", arguments: [
        (EfiStatus.invalidParameter, Errno.invalidArgument), (.outOfResources, .noSpace), (.deviceError, .ioError),
        (.writeProtected, .readOnlyFileSystem), (.securityViolation, .permissionDenied), (.notFound, .noSuchFile),
        (.aborted, .interrupted), (.unsupported, .invalidArgument), (.bufferTooSmall, .invalidArgument),
        (.accessDenied, .invalidArgument), (.notReady, .invalidArgument), (.timeout, .invalidArgument),
    ])
    func statusToErrno(_ s: EfiStatus, _ e: Errno) { #expect(efiStatusToErrno(s) == e) }
}

@Suite("efivarfs over the modelled driver (no FUSE)")
struct EfivarfsOverDriverTests {
    static let guid = "210be57c-9849-4fc7-a635-e6382d1aec27"
    static func fs() throws -> (Machine, Efivarfs) {
        let m = try Machine()
        let fs = Efivarfs(driver: m.driver)
        try fs.populate()
        return (m, fs)
    }
    static func name(_ s: String) -> [UInt8] { Array(s.utf8) }

    @Test("populate lists the runtime-visible default variables, with sizes 4 + data")
    func populate() throws {
        let (m, fs) = try Self.fs()
        let names = Set(fs.list().map { String(decoding: $0.0, as: UTF8.self) })
        #expect(names.contains("BootOrder-8be4df61-93ca-11d2-aa0d-00e098032b8c"))
        #expect(names.contains("SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"))
        #expect(!names.contains("MemoryTypeInformation-4c19049f-4137-4dd3-9c10-8b97a83ffdfa"))  // NV|BS: hidden
        #expect(!names.contains("CustomMode-c076ec0c-7028-4399-a072-71ee5c448b9f"))
        let bootOrder = try fs.lookup(Self.name("BootOrder-8BE4DF61-93ca-11d2-aa0d-00e098032b8c"))
        #expect(bootOrder.size == 4 + 6)
        withExtendedLifetime(m) {}
    }

    @Test("create without a firmware call; uncommitted read is EOF; last close removes it")
    func createReadRelease() throws {
        let (m, fs) = try Self.fs()
        let n = Self.name("Fresh-\(Self.guid)")
        let (a, h) = try fs.create(n, mode: 0o600, caller: .root)
        #expect(a.size == 0 && a.mode == 0o600)
        #expect(try fs.read(a.ino, handle: h, offset: 0, count: 4, caller: .root) == [])
        #expect(m.read(VariableKey("Fresh", EfiGuid(Self.guid)!)) == .error(.notFound))
        fs.release(handle: h!)
        #expect(throws: Errno.noSuchFile) { try fs.lookup(n) }
    }

    @Test("read windows: every offset and count gives that slice of the attribute bytes followed by the data")
    func readWindows() throws {
        let (m, fs) = try Self.fs()
        let (a, h) = try fs.create(Self.name("Win-\(Self.guid)"), mode: 0o644, caller: .root)
        let file: [UInt8] = [7, 0, 0, 0, 0x10, 0x11, 0x12, 0x13, 0x14]
        #expect(try fs.write(a.ino, file) == file.count)
        for offset in 0...(file.count + 1) {
            for count in 0...(file.count + 2) {
                let want = offset < file.count ? Array(file[offset..<min(file.count, offset + count)]) : []
                #expect(try fs.read(a.ino, handle: h, offset: Int64(offset), count: count, caller: .root) == want, "offset \(offset) count \(count)")
            }
        }
        #expect(try fs.read(a.ino, handle: h, offset: -1, count: 4, caller: .root) == [])
        fs.release(handle: h!)
        withExtendedLifetime(m) {}
    }

    @Test("write: short → EINVAL, bad bits → EINVAL, commit, size from a fresh GetVariable, delete by a 4-byte write")
    func writes() throws {
        let (m, fs) = try Self.fs()
        let (a, h) = try fs.create(Self.name("W-\(Self.guid)"), mode: 0o644, caller: .root)
        #expect(throws: Errno.invalidArgument) { try fs.write(a.ino, [7, 0, 0]) }
        #expect(throws: Errno.invalidArgument) { try fs.write(a.ino, [0x87, 0, 0, 0, 1]) }
        #expect(try fs.write(a.ino, [7, 0, 0, 0, 0x41, 0x42]) == 6)
        #expect(try fs.getattr(a.ino).size == 6)
        #expect(try fs.write(a.ino, [0x47, 0, 0, 0, 0x43]) == 5)  // APPEND_WRITE
        #expect(try fs.read(a.ino, handle: h, offset: 0, count: 100, caller: .root) == [7, 0, 0, 0, 0x41, 0x42, 0x43])
        #expect(try fs.read(a.ino, handle: h, offset: 5, count: 100, caller: .root) == [0x42, 0x43])
        #expect(try fs.getattr(a.ino).size == 7)
        #expect(try fs.write(a.ino, [7, 0, 0, 0]) == 4)  // deletes
        #expect(try fs.getattr(a.ino).size == 0)
        #expect(try fs.read(a.ino, handle: nil, offset: 0, count: 10, caller: .root) == [])
        fs.release(handle: h!)
        #expect(throws: Errno.noSuchFile) { try fs.lookup(Self.name("W-\(Self.guid)")) }
        withExtendedLifetime(m) {}
    }

    @Test("a write NOT_FOUND becomes EIO (deleting what does not exist)")
    func notFoundIsEIO() throws {
        let (_, fs) = try Self.fs()
        let (a, _) = try fs.create(Self.name("Ghost-\(Self.guid)"), mode: 0o644, caller: .root)
        #expect(throws: Errno.ioError) { try fs.write(a.ino, [7, 0, 0, 0]) }
    }

    @Test("store refusals surface with Linux's errno: EROFS for read-only, EINVAL for a bad Boot####")
    func refusals() throws {
        let (_, fs) = try Self.fs()
        let sb = try fs.lookup(Self.name("SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"))
        #expect(throws: Errno.readOnlyFileSystem) { try fs.write(sb.ino, [6, 0, 0, 0, 1]) }
        let boot = try fs.lookup(Self.name("Boot0001-8be4df61-93ca-11d2-aa0d-00e098032b8c"))
        #expect(throws: Errno.invalidArgument) { try fs.write(boot.ino, [7, 0, 0, 0]) }
    }

    @Test("unlink deletes; immutable refuses with EPERM; open descriptors then read EOF")
    func unlinkSemantics() throws {
        let (m, fs) = try Self.fs()
        let n = Self.name("U-\(Self.guid)")
        let (a, _) = try fs.create(n, mode: 0o644, caller: .root)
        _ = try fs.write(a.ino, [7, 0, 0, 0, 1])
        #expect(throws: Errno.notPermitted) { try fs.unlink(n) }  // vendor GUID: immutable
        try fs.setFlagsForTest(a.ino, 0, caller: .root)
        try fs.unlink(n)
        #expect(try fs.read(a.ino, handle: nil, offset: 0, count: 10, caller: .root) == [])
        #expect(m.read(VariableKey("U", EfiGuid(Self.guid)!)) == .error(.notFound))
        #expect(throws: Errno.noSuchFile) { try fs.lookup(n) }
    }

    @Test("create errors: EINVAL for a malformed name, EPERM for the random-seed GUID, EEXIST for an existing name")
    func createErrors() throws {
        let (_, fs) = try Self.fs()
        #expect(throws: Errno.invalidArgument) { try fs.create(Self.name("foo"), mode: 0o644, caller: .root) }
        #expect(throws: Errno.notPermitted) { try fs.create(Self.name("Seed-1ce1e5bc-7ceb-42f2-81e5-8aadf180f57b"), mode: 0o644, caller: .root) }
        #expect(throws: Errno.fileExists) { try fs.create(Self.name("BootOrder-8BE4DF61-93CA-11D2-AA0D-00E098032B8C"), mode: 0o644, caller: .root) }
        #expect(throws: Errno.noSuchFile) { try fs.lookup(Self.name("foo")) }
    }

    @Test("setattr: size changes succeed and change nothing; immutable refuses")
    func setattr() throws {
        let (_, fs) = try Self.fs()
        let t = try fs.lookup(Self.name("Timeout-8be4df61-93ca-11d2-aa0d-00e098032b8c"))
        var c = Efivarfs.AttributeChanges(); c.size = 0
        #expect(try fs.setattr(t.ino, c).size == 6)
        let osi = try fs.lookup(Self.name("OsIndicationsSupported-8be4df61-93ca-11d2-aa0d-00e098032b8c"))
        var m = Efivarfs.AttributeChanges(); m.mode = 0o600
        #expect(throws: Errno.notPermitted) { try fs.setattr(osi.ino, m) }
        #expect(try fs.setattr(t.ino, m).mode == 0o600)
    }

    @Test("flags: GETFLAGS reports immutable; SETFLAGS checks owner, capability, then other bits; ENOTTY on the root")
    func flags() throws {
        let (_, fs) = try Self.fs()
        let osi = try fs.lookup(Self.name("OsIndicationsSupported-8be4df61-93ca-11d2-aa0d-00e098032b8c"))
        #expect(try fs.flagsForTest(osi.ino) == 0x10)
        #expect(throws: Errno.notPermitted) { try fs.setFlagsForTest(osi.ino, 0, caller: Efivarfs.Caller(uid: 1000, gid: 1000)) }
        #expect(throws: Errno.notSupported) { try fs.setFlagsForTest(osi.ino, 0x10 | 0x20, caller: .root) }
        #expect(throws: Errno.noTTY) { try fs.flagsForTest(Efivarfs.rootIno) }
    }

    @Test("statfs: f_bsize 1, blocks from QueryVariableInfo(NV|BS|RT), f_bavail less 5120")
    func statfs() throws {
        let (m, fs) = try Self.fs()
        let s = fs.statfs()
        guard case .success(let info)? = try? m.driver.onCpu({ (cpu) throws(SvsmCallError) in try cpu.queryVariableInfo(attributes: 7) }) else {
            Issue.record("query"); return
        }
        #expect(s.blockSize == 1 && s.nameMax == 255)
        #expect(s.blocks == info.maximumVariableStorageSize && s.blocksFree == info.remainingVariableStorageSize)
        #expect(s.blocksAvailable == info.remainingVariableStorageSize - 5120)
    }
}

@Suite("non-root read rate limit")
struct ReadRateLimitTests {
    final class FakeClock: @unchecked Sendable {
        var t: UInt64 = 1_000
        var sleeps: [UInt32] = []
    }

    @Test("100 reads per second per uid, then the reader sleeps in 50 ms steps until the window passes")
    func limit() {
        let clock = FakeClock()
        let limiter = ReadRateLimiter(now: { clock.t }, sleep: { us in clock.sleeps.append(us); clock.t += UInt64(us) * 1_000 })
        for _ in 0..<100 { limiter.wait(uid: 1000) }
        #expect(clock.sleeps.isEmpty)
        limiter.wait(uid: 1000)  // the 101st read waits for the next one-second window
        #expect(clock.sleeps.count == 20 && clock.sleeps.allSatisfy { $0 == 50_000 })
        // Another uid has its own budget.
        #expect(limiter.tryAcquire(uid: 1001))
    }
}

extension Efivarfs.Caller {
    static let root = Efivarfs.Caller(uid: 0, gid: 0)
}

extension Efivarfs {
    /// FS_IOC_GETFLAGS as the ioctl answers it.
    func flagsForTest(_ ino: UInt64) throws(Errno) -> UInt32 {
        try ioctl(ino, .getFlags, input: [], outputSize: 4, caller: .root).loadLE(UInt32.self, at: 0)
    }
    /// FS_IOC_SETFLAGS as the ioctl takes it.
    func setFlagsForTest(_ ino: UInt64, _ flags: UInt32, caller: Caller) throws(Errno) {
        var b = [UInt8](repeating: 0, count: 4)
        b.storeLE(flags, at: 0)
        _ = try ioctl(ino, .setFlags, input: b, outputSize: 0, caller: caller)
    }
}

extension Machine {
    /// A whole variable as the driver reads it.
    func read(_ key: VariableKey) -> GetVariableResult? {
        try? driver.onCpu { (cpu) throws(SvsmCallError) in try cpu.readVariable(key) }
    }
}
