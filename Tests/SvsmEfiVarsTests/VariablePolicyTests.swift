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

@Suite("Variable policy (VarCheckPolicyLib MMI)")
struct VariablePolicyTests {
    static let vendor = EfiGuid("210be57c-9849-4fc7-a635-e6382d1aec27")!

    func policyMMI(_ service: VariableService, _ command: VarCheckPolicyCommand, _ params: [UInt8] = [], length: Int? = nil) -> (EfiStatus, [UInt8]) {
        var msg = VarCheckPolicyHeader.message(command, parameters: params)
        if let l = length, l > msg.count { msg += [UInt8](repeating: 0, count: l - msg.count) }
        let reply = service.handleMmRequest(headerGuid: .varCheckPolicyMmiHandler, message: msg)!
        return (EfiStatus(rawValue: reply.loadLE(UInt64.self, at: 12)), reply)
    }

    @Test("a LOCK_NOW entry encodes to the packed 44-byte layout plus the name")
    func entryGolden() {
        let p = VariablePolicy(namespace: Self.vendor, name: Ucs2.units("Ab"), lockType: .lockNow)
        #expect(Hex.encode(p.encoded) == "00000100" + "3200" + "2c00" + Hex.encode(Self.vendor.bytes)
                + "00000000" + "ffffffff" + "00000000" + "00000000" + "01000000" + "410062000000")
        #expect(VariablePolicy(decoding: p.encoded) == p)
    }

    @Test("IsValidVariablePolicyStructure refuses malformed entries", arguments: [
        ("wrong version", { var e = VariablePolicy(namespace: .zero, name: nil).encoded; e.storeLE(UInt32(1), at: 0); return e }()),
        ("MaxSize 0", { var e = VariablePolicy(namespace: .zero, name: nil).encoded; e.storeLE(UInt32(0), at: 28); return e }()),
        ("lock type 4", { var e = VariablePolicy(namespace: .zero, name: nil).encoded; e[40] = 4; return e }()),
        ("OffsetToName not 44", { var e = VariablePolicy(namespace: .zero, name: Ucs2.units("A")).encoded; e.storeLE(UInt16(46), at: 6); return e }()),
        ("name without NUL at the end", { var e = VariablePolicy(namespace: .zero, name: Ucs2.units("A")).encoded; e[e.count - 2] = 0x41; return e }()),
        ("Size larger than the bytes", { var e = VariablePolicy(namespace: .zero, name: nil).encoded; e.storeLE(UInt16(60), at: 4); return e }()),
    ])
    func invalidEntries(_ label: String, _ bytes: [UInt8]) {
        #expect(VariablePolicy(decoding: bytes) == nil, "\(label)")
        let (status, _) = policyMMI(VariableService(), .register, bytes)
        #expect(status == .invalidParameter, "\(label)")
    }

    @Test("wildcard matching: exact beats '#', '#' beats the whole namespace, '#' wants a hex digit")
    func matching() {
        var e = VariablePolicyEngine()
        var wild = VariablePolicy(namespace: Self.vendor, name: Ucs2.units("Opt####")); wild.minSize = 2
        var exact = VariablePolicy(namespace: Self.vendor, name: Ucs2.units("Opt0001")); exact.minSize = 3
        var all = VariablePolicy(namespace: Self.vendor, name: nil); all.minSize = 4
        #expect(e.register(all) == .success)
        #expect(e.register(wild) == .success)
        #expect(e.register(exact) == .success)  // a wildcard match does not block an exact name
        #expect(e.register(exact) == .alreadyStarted)
        #expect(e.bestMatch(name: Ucs2.units("Opt0001"), guid: Self.vendor)?.minSize == 3)
        #expect(e.bestMatch(name: Ucs2.units("Opt00aF"), guid: Self.vendor)?.minSize == 2)
        #expect(e.bestMatch(name: Ucs2.units("Opt00xF"), guid: Self.vendor)?.minSize == 4)
        #expect(e.bestMatch(name: Ucs2.units("Opt0001"), guid: .globalVariable) == nil)
    }

    /// A booted store with `policy` registered before EndOfDxe and `Existing` (NV|BS|RT) set.
    func store(with policy: VariablePolicy, state: [UInt8]? = nil) -> VariableService {
        var s = VariableStore()
        #expect(s.policy.register(policy) == .success)
        _ = s.setVariable(VariableKey("Existing", Self.vendor), attributes: 7, data: [1])
        if let st = state { _ = s.setVariable(VariableKey("State", Self.vendor), attributes: 7, data: st) }
        s.signalEndOfDxe()
        s.signalExitBootServices()
        return VariableService(store: s)
    }

    func set(_ service: VariableService, _ name: String, _ attrs: UInt32 = 7, _ data: [UInt8]) -> EfiStatus {
        MmProbe.set(service, VariableKey(name, Self.vendor), attributes: attrs, data: data)
    }

    @Test("NO_LOCK enforces sizes and attributes")
    func noLock() {
        var p = VariablePolicy(namespace: Self.vendor, name: Ucs2.units("Sized"))
        p.minSize = 2; p.maxSize = 3; p.attributesMustHave = 0x01; p.attributesCantHave = 0x40
        let s = store(with: p)
        #expect(set(s, "Sized", 7, [1]) == .invalidParameter)
        #expect(set(s, "Sized", 7, [1, 2, 3, 4]) == .invalidParameter)
        #expect(set(s, "Sized", 6 | 0x01, [1, 2]) == .success)
        #expect(set(s, "Sized", 0x47, [1, 2]) == .invalidParameter)  // can't have APPEND
        #expect(set(s, "Sized", 7, []) == .success)  // deletes skip the size checks
    }

    @Test("LOCK_NOW write-protects, deletes included")
    func lockNow() {
        let s = store(with: VariablePolicy(namespace: Self.vendor, name: Ucs2.units("Existing"), lockType: .lockNow))
        #expect(set(s, "Existing", 7, [2]) == .writeProtected)
        #expect(set(s, "Existing", 7, []) == .writeProtected)
    }

    @Test("LOCK_ON_CREATE allows the first write only")
    func lockOnCreate() {
        let s = store(with: VariablePolicy(namespace: Self.vendor, name: Ucs2.units("Once"), lockType: .lockOnCreate))
        #expect(set(s, "Once", 7, [1]) == .success)
        #expect(set(s, "Once", 7, [2]) == .writeProtected)
    }

    @Test("LOCK_ON_VAR_STATE locks while the state variable holds the value")
    func lockOnVarState() {
        var p = VariablePolicy(namespace: Self.vendor, name: Ucs2.units("Guarded"), lockType: .lockOnVarState)
        p.stateNamespace = Self.vendor; p.stateName = Ucs2.units("State"); p.stateValue = 1
        #expect(VariablePolicy(decoding: p.encoded) == p)
        let unlocked = store(with: p, state: [0])
        #expect(set(unlocked, "Guarded", 7, [1]) == .success)
        let locked = store(with: p, state: [1])
        #expect(set(locked, "Guarded", 7, [1]) == .writeProtected)
        let wrongSize = store(with: p, state: [1, 1])
        #expect(set(wrongSize, "Guarded", 7, [1]) == .success)
    }

    @Test("policies take effect at EndOfDxe only")
    func gating() {
        var s = VariableStore()
        _ = s.policy.register(VariablePolicy(namespace: Self.vendor, name: Ucs2.units("Late"), lockType: .lockNow))
        #expect(s.setVariable(VariableKey("Late", Self.vendor), attributes: 7, data: [1]) == .success)
        s.signalEndOfDxe()
        #expect(s.setVariable(VariableKey("Late", Self.vendor), attributes: 7, data: [2]) == .writeProtected)
    }

    @Test("MMI: IS_ENABLED, DISABLE refused, REGISTER, LOCK, and the interface locked at EndOfDxe")
    func commands() {
        let service = VariableService()
        let (st, reply) = policyMMI(service, .isEnabled, [0])
        #expect(st == .success && reply[20] == 1)
        #expect(policyMMI(service, .isEnabled).0 == .invalidParameter)  // no room for the state byte
        #expect(policyMMI(service, .disable).0 == .writeProtected)
        let entry = VariablePolicy(namespace: Self.vendor, name: Ucs2.units("X"), lockType: .lockNow).encoded
        #expect(policyMMI(service, .register, entry).0 == .success)
        #expect(policyMMI(service, .register, entry).0 == .alreadyStarted)
        #expect(policyMMI(service, .lock).0 == .success)
        #expect(policyMMI(service, .lock).0 == .writeProtected)
        #expect(policyMMI(service, .register, VariablePolicy(namespace: Self.vendor, name: Ucs2.units("Y")).encoded).0 == .writeProtected)
        #expect(policyMMI(service, VarCheckPolicyCommand(rawValue: 99)).0 == .unsupported)
        // A bad signature is answered INVALID_PARAMETER; a short message is ignored.
        var bad = VarCheckPolicyHeader.message(.isEnabled, parameters: [0]); bad[0] = 0
        #expect(service.handleMmRequest(headerGuid: .varCheckPolicyMmiHandler, message: bad)!.loadLE(UInt64.self, at: 12) == EfiStatus.invalidParameter.rawValue)
        #expect(service.handleMmRequest(headerGuid: .varCheckPolicyMmiHandler, message: [1, 2, 3]) == nil)
        let fresh = VariableService()
        _ = fresh.handleMmRequest(headerGuid: .endOfDxeEvent, message: [0])
        #expect(policyMMI(fresh, .register, entry).0 == .writeProtected)
    }

    @Test("MMI: DUMP pages out the table; GET_INFO returns the best match")
    func dumpAndInfo() {
        let service = VariableService()
        var entries: [[UInt8]] = []
        for i in 0..<400 {
            let e = VariablePolicy(namespace: Self.vendor, name: Ucs2.units("Policy\(i)"), lockType: .lockOnCreate).encoded
            entries.append(e)
            #expect(policyMMI(service, .register, e).0 == .success)
        }
        let total = entries.joined().count
        let length = 16384 - 24
        var (st, r) = policyMMI(service, .dump, [UInt8](repeating: 0, count: 13), length: length)
        #expect(st == .success && Int(r.loadLE(UInt32.self, at: 24)) == total && r[32] == 1)
        var collected = [UInt8]()
        var page: UInt32 = 1
        repeat {
            var params = [UInt8](repeating: 0, count: 13); params.storeLE(page, at: 0)
            (st, r) = policyMMI(service, .dump, params, length: length)
            #expect(st == .success)
            let size = Int(r.loadLE(UInt32.self, at: 28))
            collected += r[33..<(33 + size)]
            page += 1
        } while r[32] == 1 && page < 10
        #expect(collected == Array(entries.joined()))
        // The snapshot is gone after the last page.
        var again = [UInt8](repeating: 0, count: 13); again.storeLE(UInt32(1), at: 0)
        #expect(policyMMI(service, .dump, again, length: length).0 == .timeout)

        var info = [UInt8](repeating: 0, count: 68)
        info.replace(at: 0, with: Self.vendor.bytes)
        let name = Ucs2.nulTerminatedBytes(Ucs2.units("Policy7"))
        info.storeLE(UInt32(name.count), at: 16)
        let (ist, ir) = policyMMI(service, .getInfo, info + name, length: length)
        #expect(ist == .success)
        #expect(Array(ir[44..<88]) == Array(entries[7][0..<44]))
        #expect(ir.loadLE(UInt32.self, at: 40) == UInt32(name.count))
        var missing = info; missing.replace(at: 0, with: EfiGuid.globalVariable.bytes)
        #expect(policyMMI(service, .getInfo, missing + name, length: length).0 == .notFound)
    }

    @Test("LOCK_VARIABLE registers a LOCK_NOW policy; refused after EndOfDxe")
    func lockVariable() {
        let service = VariableService()
        let payload = GetNextVariableNamePayload.encode(guid: Self.vendor, name: Ucs2.units("Locked"), nameBufferSize: 14)
        let msg = SmmVariableHeader.message(.lockVariable, payload: payload)
        let reply = service.handleMmRequest(headerGuid: .smmVariableProtocol, message: msg)!
        // Golden: the request comes back with ReturnStatus 0.
        #expect(Hex.encode(reply) == "0800000000000000" + "0000000000000000" + Hex.encode(Self.vendor.bytes) + "0e00000000000000"
                + "4c006f0063006b00650064000000")
        #expect(service.handleMmRequest(headerGuid: .smmVariableProtocol, message: msg)!.loadLE(UInt64.self, at: 8) == 0)  // same lock again
        #expect(MmProbe.set(service, VariableKey("Locked", Self.vendor), attributes: 7, data: [1]) == .success)  // before EndOfDxe: allowed
        _ = service.handleMmRequest(headerGuid: .endOfDxeEvent, message: [0])
        #expect(MmProbe.set(service, VariableKey("Locked", Self.vendor), attributes: 7, data: [2]) == .writeProtected)
        #expect(service.handleMmRequest(headerGuid: .smmVariableProtocol, message: msg)!.loadLE(UInt64.self, at: 8) == EfiStatus.accessDenied.rawValue)
    }
}
