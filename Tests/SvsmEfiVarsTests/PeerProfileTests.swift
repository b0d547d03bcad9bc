import Foundation
import Testing
@testable import Driver
@testable import EfiTypes
@testable import Guest
@testable import MmWire
@testable import PeerVariableStores
@testable import Platform
@testable import Svsm
@testable import SvsmAbi
@testable import VariableService

/// One request to a store, as protocol 4 hands it over.
private func call(_ store: inout UefiVarsStore, _ f: SmmVariableFunction, _ payload: [UInt8], bufferSize: UInt64 = 65536) -> [UInt8]? {
    store.handle(headerGuid: .smmVariableProtocol, message: SmmVariableHeader.message(f, payload: payload), bufferSize: bufferSize)
}
private func status(_ reply: [UInt8]?) -> EfiStatus? { reply.map { EfiStatus(rawValue: $0.loadLE(UInt64.self, at: 8)) } }
private func set(_ s: inout UefiVarsStore, _ name: String, _ guid: EfiGuid = .globalVariable, _ attrs: UInt32, _ data: [UInt8]) -> EfiStatus? {
    status(call(&s, .setVariable, AccessVariablePayload.encode(guid: guid, name: Ucs2.units(name), attributes: attrs, dataSize: data.count, data: data)))
}
private func get(_ s: inout UefiVarsStore, _ name: String, _ guid: EfiGuid = .globalVariable, size: Int = 64) -> EfiStatus? {
    status(call(&s, .getVariable, AccessVariablePayload.encode(guid: guid, name: Ucs2.units(name), attributes: 0, dataSize: size)))
}
private func booted(_ d: UefiVarsStore.Dialect, enrolment: VirtfwEnrolment? = nil) -> UefiVarsStore {
    var s = UefiVarsStore(dialect: d)
    s.powerOn(enrolment: enrolment)
    return s
}
/// Every name GetNextVariableName walks, in order.
private func walk(_ s: inout UefiVarsStore) -> [String] {
    var names: [String] = []
    var prev: (EfiGuid, [UInt16]) = (.zero, [])
    while let r = call(&s, .getNextVariableName, GetNextVariableNamePayload.encode(guid: prev.0, name: prev.1, nameBufferSize: 512)),
          status(r) == .success {
        let p = Array(r[16...])
        let n = UefiVarsName.canonical(Array(p[24..<(24 + Int(p.loadLE(UInt64.self, at: 16)))]))
        prev = (EfiGuid(bytes: p, at: 0), n)
        names.append(Ucs2.string(n))
    }
    return names
}
private let vendor = EfiGuid("210be57c-9849-4fc7-a635-e6382d1aec27")!

@Suite("the UEFI MM attestation manifest")
struct ManifestTests {
    @Test("UefiMmManifest bytes: {u32 version = 0; u32 flags}, bit 0 persistent, bit 1 Secure Boot, bit 2 db update")
    func goldenBytes() {
        #expect(UefiMmManifest(persistentNvVariables: false, secureBootEnabled: false, secureBootDbUpdate: false).bytes == [0, 0, 0, 0, 0, 0, 0, 0])
        #expect(UefiMmManifest(persistentNvVariables: false, secureBootEnabled: true, secureBootDbUpdate: false).bytes == [0, 0, 0, 0, 2, 0, 0, 0])
        #expect(UefiMmManifest(persistentNvVariables: true, secureBootEnabled: false, secureBootDbUpdate: false).bytes == [0, 0, 0, 0, 1, 0, 0, 0])
        #expect(UefiMmManifest(persistentNvVariables: true, secureBootEnabled: true, secureBootDbUpdate: true).bytes == [0, 0, 0, 0, 7, 0, 0, 0])
        let odd = UefiMmManifest(bytes: [1, 0, 0, 0, 0x0a, 0, 0, 0])!
        #expect(odd.version == 1 && odd.secureBootEnabled && !odd.persistentNvVariables && odd.reservedFlags == 1)
        #expect(odd.bytes == [1, 0, 0, 0, 0x0a, 0, 0, 0])
        #expect(UefiMmManifest(bytes: [0, 0, 0]) == nil)
    }

    @Test("the services manifest: GUID table header, one 24-byte entry, data offset from the table's start")
    func servicesTableGolden() {
        let table = SvsmAttestation.servicesManifest([(SvsmAttestation.uefiMmServiceGuid, [0, 0, 0, 0, 2, 0, 0, 0])])
        let header = "bb9e8463923d7046a1ff58f9c94b87bb" + "38000000" + "01000000"
        let entry = "593a45a41b9e8747a0331986d6adbe55" + "30000000" + "08000000"
        #expect(Hex.encode(table) == header + entry + "0000000002000000")
        #expect(SvsmAttestation.parseServicesManifest(table)?.first?.data == [0, 0, 0, 0, 2, 0, 0, 0])
        #expect(SvsmAttestation.parseServicesManifest(Array(table.dropLast())) == nil)
    }

    @Test("each profile's SVSM reports its manifest through SVSM_ATTEST_SINGLE_SERVICE, bound by REPORT_DATA", arguments: [
        (SvsmProfile.edk2, false, "0000000000000000"), (.coconut, false, "0000000000000000"), (.coconut, true, "0000000002000000"),
        (.qemu, false, "0000000000000000"),
    ])
    func throughTheModel(_ profile: SvsmProfile, _ secureBoot: Bool, _ expected: String) throws {
        var c = Machine.Configuration()
        c.profile = profile
        c.coconut.secureBoot = secureBoot
        c.vcpuCount = 2
        let m = try Machine(c)
        let a = try m.attestUefiMm()
        #expect(Hex.encode(a.manifestBytes) == expected)
        #expect(a.reportBindsManifest && a.listedInServices)
    }

    @Test("edk2 with a journal and enrolled keys reports persistence and db updates; COCONUT never does")
    func flagsFollowTheStore() throws {
        let dir = NativeStoreTests.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var c = Machine.Configuration()
        c.store = .native(directory: dir + "/s", create: true)
        c.enrolledKeys = try KeyEnrollment.generate(into: dir)
        c.vcpuCount = 1
        #expect(Hex.encode(try Machine(c).attestUefiMm().manifestBytes) == "0000000007000000")
        var coconut = UefiVarsStore(dialect: .virtfw)
        coconut.restore(c.enrolledKeys!.variables)
        coconut.powerOn()
        #expect(coconut.manifest(persistentStore: true).bytes == [0, 0, 0, 0, 2, 0, 0, 0])
    }

    @Test("attestation refusals: reserved bytes, a short nonce, an unknown service, a manifest buffer too small")
    func refusals() throws {
        let f = SvsmFixture()
        let page = try f.allocator.allocatePages(4)
        let op = SvsmAttestation.ServicesOp(reportGpa: page.advanced(by: 8192).rawValue, reportSize: 4096, nonceGpa: page.advanced(by: 4096).rawValue,
                                            nonceSize: 64, manifestGpa: page.advanced(by: 12288).rawValue, manifestSize: 4096)
        func attempt(_ bytes: [UInt8], _ call: SvsmCallId = .attestSingleService) -> SvsmResultCode {
            try! f.memory.write(page, bytes)
            return f.call(call, rcx: page.rawValue).0
        }
        #expect(attempt(SvsmAttestation.SingleServiceOp(op: op, service: SvsmAttestation.uefiMmServiceGuid).bytes) == .success)
        var reserved = SvsmAttestation.SingleServiceOp(op: op, service: SvsmAttestation.uefiMmServiceGuid).bytes
        reserved[0x0C] = 1
        #expect(attempt(reserved) == .invalidParameter)
        var short = op
        short.nonceSize = 32
        #expect(attempt(SvsmAttestation.SingleServiceOp(op: short, service: SvsmAttestation.uefiMmServiceGuid).bytes) == .invalidParameter)
        #expect(attempt(SvsmAttestation.SingleServiceOp(op: op, service: SvsmAttestation.vtpmServiceGuid).bytes) == .unsupportedProtocol)
        #expect(attempt(SvsmAttestation.SingleServiceOp(op: op, service: SvsmAttestation.uefiMmServiceGuid, manifestVersion: 1).bytes) == .invalidParameter)
        var tiny = op
        tiny.manifestSize = 4
        #expect(attempt(SvsmAttestation.SingleServiceOp(op: tiny, service: SvsmAttestation.uefiMmServiceGuid).bytes) == .protocolBase(0))
        #expect(attempt(op.bytes, .attestServices) == .success)
        #expect(f.call(SvsmCallId(protocol: 1, call: 2)).0 == .unsupportedProtocol)
    }
}

@Suite("QEMU hw/uefi behind protocol 4")
struct QemuProfileTests {
    @Test("GET_PAYLOAD_SIZE is the buffer minus 40, the buffer capped at 64 KiB")
    func payloadSize() {
        var s = booted(.qemu)
        for (buffer, expected) in [(UInt64(4096), UInt64(4056)), (65536, 65496), (1 << 20, 65496)] {
            let r = call(&s, .getPayloadSize, [UInt8](repeating: 0, count: 8), bufferSize: buffer)!
            #expect(status(r) == .success && r.loadLE(UInt64.self, at: 16) == expected)
        }
    }

    @Test("functions 7, 9, 10, 12-14 and unknown ones answer EFI_UNSUPPORTED", arguments: [7, 9, 10, 12, 13, 14, 99] as [UInt64])
    func unsupported(_ f: UInt64) {
        var s = booted(.qemu)
        #expect(status(call(&s, SmmVariableFunction(rawValue: f), [UInt8](repeating: 0, count: 64))) == .unsupported)
        var v = booted(.virtfw)
        #expect(status(call(&v, SmmVariableFunction(rawValue: f), [UInt8](repeating: 0, count: 64))) == .unsupported)
    }

    @Test("the SMM variable header must fit: a shorter message is not processed")
    func shortMessage() {
        var s = booted(.qemu)
        #expect(s.handle(headerGuid: .smmVariableProtocol, message: [1, 2, 3], bufferSize: 4096) == nil)
    }

    @Test("after ExitBootServices a boot-service-only variable is ACCESS_DENIED, not NOT_FOUND")
    func accessDenied() {
        var s = booted(.qemu)
        #expect(set(&s, "BsOnly", vendor, 0x3, [1]) == .success)
        #expect(get(&s, "BsOnly", vendor) == .success)
        _ = s.handle(headerGuid: .exitBootServicesEvent, message: [0], bufferSize: 4096)
        #expect(get(&s, "BsOnly", vendor) == .accessDenied)
        #expect(get(&s, "Nothing", vendor) == .notFound)
        #expect(set(&s, "BsOnly", vendor, 0x3, [2]) == .accessDenied)
        // A volatile runtime variable can still be created at runtime.
        #expect(set(&s, "RtVolatile", vendor, 0x6, [1]) == .success)
    }

    @Test("SetVariable: deleting what does not exist succeeds; unknown attribute bits are UNSUPPORTED; NV alone is ACCESS_DENIED")
    func setRules() {
        var s = booted(.qemu)
        #expect(set(&s, "Ghost", vendor, 0, []) == .success)
        #expect(set(&s, "Bits", vendor, 0x87, [1]) == .unsupported)
        #expect(set(&s, "NvOnly", vendor, 0x1, [1]) == .accessDenied)
        #expect(set(&s, "Aw", vendor, 0x17, [1]) == .unsupported)
        #expect(set(&s, "A", vendor, 0x7, [1]) == .success)
        #expect(set(&s, "A", vendor, 0x3, [1]) == .invalidParameter)  // attributes differ
        #expect(set(&s, "A", vendor, 0x47, [2]) == .unsupported)  // APPEND only for the Secure Boot databases
    }

    @Test("an update moves the variable to the end of the list (QEMU); virtfw replaces it in place")
    func updateOrder() {
        for (d, movesToEnd) in [(UefiVarsStore.Dialect.qemu, true), (.virtfw, false)] {
            var s = booted(d)
            _ = set(&s, "First", vendor, 0x7, [1])
            _ = set(&s, "Second", vendor, 0x7, [1])
            _ = set(&s, "First", vendor, 0x7, [2])
            let order = walk(&s).filter { $0 == "First" || $0 == "Second" }
            #expect(order == (movesToEnd ? ["Second", "First"] : ["First", "Second"]), "\(d.name)")
        }
    }

    @Test("QUERY_VARIABLE_INFO ignores the attributes and writes them back as 0; max variable = storage / 4")
    func query() {
        var s = booted(.qemu)
        let r = call(&s, .queryVariableInfo, QueryVariableInfoPayload.encode(attributes: 0xffff_ffff))!
        #expect(status(r) == .success)
        let p = Array(r[16...])
        #expect(p.loadLE(UInt64.self, at: 0) == 262_144)
        #expect(p.loadLE(UInt64.self, at: 8) == UInt64(262_144 - s.usedStorage))
        #expect(p.loadLE(UInt64.self, at: 16) == 65_536)
        #expect(p.loadLE(UInt32.self, at: 24) == 0)
    }

    @Test("LOCK_VARIABLE succeeds after EndOfDxe too; the lock then write-protects the variable")
    func lockVariable() {
        var s = booted(.qemu)
        #expect(set(&s, "Locked", vendor, 0x7, [1]) == .success)
        _ = s.handle(headerGuid: .endOfDxeEvent, message: [0], bufferSize: 4096)
        let lock = GetNextVariableNamePayload.encode(guid: vendor, name: Ucs2.units("Locked"), nameBufferSize: 14)
        #expect(status(call(&s, .lockVariable, lock)) == .success)
        #expect(status(call(&s, .lockVariable, lock)) == .success)
        #expect(set(&s, "Locked", vendor, 0x7, [2]) == .writeProtected)
    }

    @Test("a plain delete (DataSize 0) removes PK without a signature and leaves SetupMode as it was")
    func plainPkDelete() throws {
        var s = UefiVarsStore(dialect: .qemu)
        let dir = NativeStoreTests.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let keys = try KeyEnrollment.generate(into: dir)
        s.restore(keys.variables)
        s.powerOn()
        #expect(s.find(VariableKey("SetupMode", .globalVariable))?.data == [0])
        #expect(set(&s, "PK", .globalVariable, 0, []) == .success)
        #expect(s.find(VariableKey("PK", .globalVariable)) == nil)
        #expect(s.find(VariableKey("SetupMode", .globalVariable))?.data == [0])
    }

    @Test("names: a missing NUL or a surrogate is INVALID_PARAMETER (QEMU), BAD_BUFFER_SIZE (virtfw)")
    func badNames() {
        for (d, expected) in [(UefiVarsStore.Dialect.qemu, EfiStatus.invalidParameter), (.virtfw, .badBufferSize)] {
            var s = booted(d)
            var p = AccessVariablePayload.encode(guid: vendor, name: [0xD800, 0x41], attributes: 0, dataSize: 4)
            #expect(status(call(&s, .getVariable, p)) == expected, "\(d.name)")
            p = AccessVariablePayload.encode(guid: vendor, name: [0x41, 0x42], attributes: 0, dataSize: 0)
            p.storeLE(UInt64(4), at: AccessVariablePayload.nameSizeOffset)  // "AB" without its NUL
            p.removeLast(2)
            #expect(status(call(&s, .getVariable, p + [0x43, 0])) == (d == .qemu ? .notFound : expected), "\(d.name)")
        }
    }

    @Test("policy MMI: DISABLE and DUMP are UNSUPPORTED, IS_ENABLED answers 1, REGISTER after LOCK is WRITE_PROTECTED")
    func policies() {
        var s = booted(.qemu)
        func command(_ c: VarCheckPolicyCommand, _ params: [UInt8] = [0]) -> (EfiStatus, [UInt8]) {
            let r = s.handle(headerGuid: .varCheckPolicyMmiHandler, message: VarCheckPolicyHeader.message(c, parameters: params), bufferSize: 4096)!
            return (EfiStatus(rawValue: r.loadLE(UInt64.self, at: VarCheckPolicyHeader.resultOffset)), r)
        }
        #expect(command(.disable).0 == .unsupported)
        #expect(command(.dump, [UInt8](repeating: 0, count: 13)).0 == .unsupported)
        let (st, r) = command(.isEnabled)
        #expect(st == .success && r[VarCheckPolicyHeader.size] == 1)
        #expect(command(.lock).0 == .success)
        #expect(command(.register, [UInt8](repeating: 0, count: 44)).0 == .writeProtected)
    }

    @Test("power-on creates QEMU's auth_init variables: VendorKeysNv in the global namespace, no certdb")
    func initialVariables() {
        let s = booted(.qemu)
        let names = Set(s.allVariables.map { "\(Ucs2.string($0.key.name))-\($0.key.guid)" })
        for n in ["SetupMode-8be4df61-93ca-11d2-aa0d-00e098032b8c", "SignatureSupport-8be4df61-93ca-11d2-aa0d-00e098032b8c",
                  "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c", "CustomMode-c076ec0c-7028-4399-a072-71ee5c448b9f",
                  "VendorKeysNv-8be4df61-93ca-11d2-aa0d-00e098032b8c", "VendorKeys-8be4df61-93ca-11d2-aa0d-00e098032b8c"] {
            #expect(names.contains(n), "\(n)")
        }
        #expect(!names.contains { $0.hasPrefix("certdb") })
        #expect(s.find(VariableKey("SignatureSupport", .globalVariable))?.data.count == 80)
    }
}

@Suite("COCONUT (virtfw-varstore) behind protocol 4")
struct CoconutProfileTests {
    @Test("the store starts empty at each SVSM start: the mode variables and shim's FB_NO_REBOOT only")
    func startsEmpty() {
        let s = booted(.virtfw)
        let names = s.allVariables.map { Ucs2.string($0.key.name) }.sorted()
        #expect(names == ["CustomMode", "FB_NO_REBOOT", "SecureBoot", "SetupMode", "SignatureSupport"])
        #expect(s.find(UefiVarsStore.fbNoReboot) == StoredVariable(attributes: .nvBsRt, data: [1]))
        var p = UefiVarsStore(dialect: .virtfw, configuration: { var c = UefiVarsStore.Configuration(); c.persistence = true; return c }())
        p.powerOn()
        #expect(p.find(UefiVarsStore.fbNoReboot) == nil)
    }

    @Test("the secureboot feature enrols PK (external management), Microsoft KEK and db, a dbx; Secure Boot is on")
    func enrolment() {
        let s = booted(.virtfw, enrolment: VirtfwEnrolment())
        let at: VariableAttributes = [.nvBsRt, .timeBasedAuthenticatedWriteAccess]
        for k in [UefiVarsAuth.pk, UefiVarsAuth.kek, UefiVarsAuth.db, UefiVarsAuth.dbx] { #expect(s.find(k)?.attributes == at) }
        // EFI_CERT_EXTERNAL_MANAGEMENT list, 45 bytes, one 17-byte signature: owner, one zero byte.
        #expect(Hex.encode(s.find(UefiVarsAuth.pk)!.data)
                == "ed8c2e45ffdf8c4bae015118862e682c" + "2d000000" + "00000000" + "11000000" + "a3a8baa01d04a848bc87c36d121b5e3d" + "00")
        #expect(UefiVarsSignatureLists(s.find(UefiVarsAuth.db)!.data).certificates.count == 2)
        #expect(s.find(UefiVarsAuth.secureBoot)?.data == [1])
        #expect(s.find(UefiVarsAuth.setupMode)?.data == [0])
        #expect(s.manifest(persistentStore: false).bytes == [0, 0, 0, 0, 2, 0, 0, 0])
    }

    @Test("the embedded Microsoft certificates are the ones their fingerprints name")
    func certificates() {
        for c in [MicrosoftCertificates.kek2011, MicrosoftCertificates.kek2023, MicrosoftCertificates.uefiCa2011, MicrosoftCertificates.uefiCa2023] {
            #expect(Hex.encode(Pkcs7.digest(.sha256, c.der)) == c.sha256Fingerprint, "\(c.subject)")
            #expect(Pkcs7.commonNameAndTbs(c.der) != nil)
        }
    }

    @Test("without PKCS#7: user-mode db writes are refused, setup-mode KEK writes pass unverified")
    func authenticatedWrites() {
        let unsigned = EfiTime.zero.bytes + [24, 0, 0, 0, 0x00, 0x02, 0xF1, 0x0E] + UefiVarsAuth.certTypePkcs7.bytes + [1, 2, 3]
        var setup = booted(.virtfw)
        #expect(set(&setup, "KEK", .globalVariable, 0x27, unsigned) == .success)
        var user = booted(.virtfw, enrolment: VirtfwEnrolment())
        #expect(set(&user, "db", .imageSecurityDatabase, 0x27, unsigned) == .securityViolation)
        #expect(set(&user, "Other", vendor, 0x27, unsigned) == .securityViolation)
    }

    @Test("GET_PAYLOAD_SIZE does not depend on the buffer; a reply is bounded by its request")
    func payloadAndReply() {
        var s = booted(.virtfw)
        for buffer in [UInt64(4096), 65536] {
            #expect(call(&s, .getPayloadSize, [UInt8](repeating: 0, count: 8), bufferSize: buffer)!.loadLE(UInt64.self, at: 16) == 65496)
        }
        // Only the reply is written back: a SET's reply is the 16-byte header.
        let r = call(&s, .setVariable, AccessVariablePayload.encode(guid: vendor, name: Ucs2.units("X"), attributes: 7, dataSize: 3, data: [1, 2, 3]))!
        #expect(r.count == 16 && status(r) == .success)
    }

    @Test("a store path without the persistence feature is refused; an OVMF_VARS.fd too")
    func storeChoice() {
        var c = Machine.Configuration()
        c.profile = .coconut
        c.store = .native(directory: "/nonexistent/store", create: true)
        #expect(throws: Machine.BootError.self) { try Machine(c) }
        c.store = .firmwareVolume(path: "/nonexistent.fd")
        c.coconut.persistence = true
        #expect(throws: Machine.BootError.self) { try Machine(c) }
    }
}

@Suite("the driver on every profile")
struct DriverOnProfilesTests {
    /// MM functions the driver sends, in order.
    final class Functions: SvsmCallObserver, @unchecked Sendable {
        private let seen = Locked<[SmmVariableFunction]>([])
        func svsmCallCompleted(_ r: SvsmCallRecord) { if let f = r.mmFunction { seen.withLock { $0.append(f) } } }
        func take() -> [SmmVariableFunction] { seen.withLock { s in defer { s = [] }; return s } }
    }

    @Test("VAR_CHECK missing: probed once, remembered, skipped; the write still works", arguments: SvsmProfile.allCases)
    func varCheckMissing(_ profile: SvsmProfile) throws {
        let seen = Functions()
        var c = Machine.Configuration()
        c.profile = profile
        c.vcpuCount = 1
        c.observer = seen
        let m = try Machine(c)
        _ = seen.take()
        #expect(m.driver.hasVarCheckProperties == (profile == .edk2))
        let status = try m.driver.onCpu { (cpu) throws(SvsmCallError) in try cpu.setVariable(VariableKey("Probe", vendor), attributes: 7, data: [1]) }
        #expect(status == .success)
        let sent = seen.take()
        #expect(sent.contains(.varCheckVariablePropertyGet) == (profile == .edk2), "\(sent)")
        #expect(sent.last == .setVariable)
    }

    @Test("GET_PAYLOAD_SIZE is asked through a 64 KiB buffer: on QEMU a one-page probe would cap variables near 4 KiB")
    func payloadProbe() throws {
        var c = Machine.Configuration()
        c.profile = .qemu
        c.vcpuCount = 1
        let m = try Machine(c)
        #expect(m.driver.maxPayloadSize == 65496)
        let big = [UInt8](repeating: 0x5a, count: 20_000)
        #expect(try m.driver.onCpu { (cpu) throws(SvsmCallError) in try cpu.setVariable(VariableKey("Big", vendor), attributes: 7, data: big) } == .success)
        #expect(try m.driver.onCpu { (cpu) throws(SvsmCallError) in try cpu.readVariable(VariableKey("Big", vendor)) } == .found(attributes: .nvBsRt, data: big))
        var s = booted(.qemu)
        #expect(call(&s, .getPayloadSize, [UInt8](repeating: 0, count: 8), bufferSize: 4096)!.loadLE(UInt64.self, at: 16) == 4056)
    }

    @Test("query_variable_store refuses a write that would leave less than the reserve, from QUERY_VARIABLE_INFO")
    func queryVariableStore() throws {
        for profile in SvsmProfile.allCases {
            var c = Machine.Configuration()
            c.profile = profile
            c.vcpuCount = 1
            let m = try Machine(c)
            let remaining = try m.driver.onCpu { (cpu) throws(SvsmCallError) in try cpu.queryVariableInfo(attributes: 7) }.get().remainingVariableStorageSize
            let (fits, refused) = try m.driver.onCpu { (cpu) throws(SvsmCallError) in
                (try cpu.queryVariableStore(attributes: 7, size: 100, reserve: 5120),
                 try cpu.queryVariableStore(attributes: 7, size: Int(remaining) - 5000, reserve: 5120))
            }
            #expect(fits == .success && refused == .outOfResources, "\(profile)")
        }
    }
}

@Suite("the edk2 firmware build")
struct FirmwareBuildTests {
    @Test("plain edk2 (AuthVariableLibNull): no certdb, no SecureBoot or SetupMode; AT writes INVALID_PARAMETER, AT queries UNSUPPORTED")
    func plain() throws {
        var c = Machine.Configuration()
        c.firmware = .plain
        c.vcpuCount = 1
        let m = try Machine(c)
        let names = Set(m.service.nonVolatileVariables.map { Ucs2.string($0.key.name) })
        #expect(!names.contains("certdb") && !names.contains("VendorKeysNv") && !names.contains("CustomMode"))
        let (sb, at, q) = try m.driver.onCpu { (cpu) throws(SvsmCallError) in
            (try cpu.readVariable(VariableKey("SecureBoot", .globalVariable)),
             try cpu.setVariable(VariableKey("Auth", vendor), attributes: 0x27, data: [UInt8](repeating: 0, count: 48)),
             try cpu.queryVariableInfo(attributes: 0x27))
        }
        #expect(sb == .error(.notFound))
        #expect(at == .invalidParameter)
        #expect(q == .failure(EfiStatusError(.unsupported)))
    }

    @Test("a VM's file shows its build: AuthVariableLib's variables → Secure Boot; booted without them → plain; blank → Secure Boot")
    func detection() {
        let plainVars = [ExportedVariable(VariableKey("Boot0000", .globalVariable), StoredVariable(attributes: .nvBsRt, data: [1]))]
        #expect(FirmwareBuild.detect(in: plainVars).0 == .plain)
        let sbVars = plainVars + [ExportedVariable(VariableKey("certdb", .certDb), StoredVariable(attributes: [.nvBsRt, .timeBasedAuthenticatedWriteAccess], data: [4, 0, 0, 0]))]
        #expect(FirmwareBuild.detect(in: sbVars).0 == .secureBoot)
        #expect(FirmwareBuild.detect(in: []).0 == .secureBoot)
    }
}

@Suite("signer digests persist")
struct DigestPersistenceTests {
    @Test("QEMU JSON and the native log carry a variable's signer digest")
    func roundTrip() throws {
        let v = ExportedVariable(VariableKey("Signed", vendor), StoredVariable(attributes: [.nvBsRt, .timeBasedAuthenticatedWriteAccess], data: [1],
                                                                              timestamp: .zero, digest: [UInt8](repeating: 0xab, count: 32)))
        let json = QemuVarsJson.write([v])
        #expect(String(decoding: json, as: UTF8.self).contains("\"digest\" : \"abab"))
        #expect(try QemuVarsJson.read(json, path: "t.json") == [v])
        let record = NativeStoreFormat.encode(VariableChange(key: v.key, value: v.value))
        #expect(record.first == 3)
        #expect(NativeStoreFormat.decode(record, at: 0, length: record.count) == VariableChange(key: v.key, value: v.value))
        var plain = v.value
        plain.digest = nil
        let r1 = NativeStoreFormat.encode(VariableChange(key: v.key, value: plain))
        #expect(r1.first == 1 && NativeStoreFormat.decode(r1, at: 0, length: r1.count)?.value == plain)
    }
}
