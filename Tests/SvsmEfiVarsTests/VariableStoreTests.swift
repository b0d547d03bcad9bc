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

@Suite("Variable store: edk2 semantics")
struct VariableStoreTests {
    static let g = EfiGuid.globalVariable
    static let vendor = EfiGuid("210be57c-9849-4fc7-a635-e6382d1aec27")!
    static let nvbsrt = VariableAttributes.nvBsRt.rawValue

    struct SetCase: CustomTestStringConvertible, Sendable {
        let label: String
        let name: String
        let guid: EfiGuid
        let attributes: UInt32
        let data: [UInt8]
        let runtime: Bool
        let expected: EfiStatus
        var testDescription: String { label }
    }

    /// Every SetVariable failure branch, each with edk2's status. The store holds
    /// `Existing` (NV|BS|RT), `BsOnly` (NV|BS), `Volatile` (BS|RT) under the vendor GUID.
    static let failures: [SetCase] = [
        SetCase(label: "empty name", name: "", guid: vendor, attributes: nvbsrt, data: [1], runtime: false, expected: .invalidParameter),
        SetCase(label: "reserved attribute bit 0x80", name: "A", guid: vendor, attributes: 0x87, data: [1], runtime: false, expected: .invalidParameter),
        SetCase(label: "RT without BS", name: "A", guid: vendor, attributes: 0x05, data: [1], runtime: false, expected: .invalidParameter),
        SetCase(label: "RT without BS, with AW", name: "A", guid: vendor, attributes: 0x15, data: [1], runtime: false, expected: .unsupported),
        SetCase(label: "NV alone", name: "A", guid: vendor, attributes: 0x01, data: [1], runtime: false, expected: .invalidParameter),
        SetCase(label: "HR without a hardware-error store", name: "HwErrRec0001", guid: .hardwareErrorVariable, attributes: 0x0F, data: [1], runtime: false, expected: .invalidParameter),
        SetCase(label: "AW and AT together", name: "A", guid: vendor, attributes: 0x37, data: [UInt8](repeating: 0, count: 64), runtime: false, expected: .unsupported),
        SetCase(label: "AW (counter-based) unsupported", name: "A", guid: vendor, attributes: 0x17, data: [UInt8](repeating: 0, count: 560), runtime: false, expected: .unsupported),
        SetCase(label: "AT data shorter than the descriptor", name: "A", guid: vendor, attributes: 0x27, data: [UInt8](repeating: 0, count: 39), runtime: false, expected: .securityViolation),
        SetCase(label: "AT dwLength below 24", name: "A", guid: vendor, attributes: 0x27, data: { var d = [UInt8](repeating: 0, count: 48); d.storeLE(UInt32(20), at: 16); return d }(), runtime: false, expected: .securityViolation),
        SetCase(label: "AT dwLength past the data", name: "A", guid: vendor, attributes: 0x27, data: { var d = [UInt8](repeating: 0, count: 48); d.storeLE(UInt32(40), at: 16); return d }(), runtime: false, expected: .securityViolation),
        SetCase(label: "NV variable larger than MaxVariableSize - 60", name: "Big", guid: vendor, attributes: nvbsrt, data: [UInt8](repeating: 1, count: 0x8400 - 60 - 8 + 1), runtime: false, expected: .invalidParameter),
        SetCase(label: "rewrite with different attributes", name: "Existing", guid: vendor, attributes: 0x03, data: [1], runtime: false, expected: .invalidParameter),
        SetCase(label: "runtime write to a BS-only variable", name: "BsOnly", guid: vendor, attributes: 0x03, data: [1], runtime: true, expected: .writeProtected),
        SetCase(label: "runtime write to a volatile variable", name: "Volatile", guid: vendor, attributes: 0x06, data: [9], runtime: true, expected: .writeProtected),
        SetCase(label: "runtime creation of a volatile variable", name: "NewVolatile", guid: vendor, attributes: 0x06, data: [9], runtime: true, expected: .invalidParameter),
        SetCase(label: "runtime creation of a BS-only variable", name: "NewBs", guid: vendor, attributes: 0x03, data: [9], runtime: true, expected: .invalidParameter),
        SetCase(label: "delete of a variable that does not exist", name: "Missing", guid: vendor, attributes: nvbsrt, data: [], runtime: true, expected: .notFound),
        SetCase(label: "attributes 0 on a missing variable", name: "Missing", guid: vendor, attributes: 0, data: [], runtime: true, expected: .notFound),
        SetCase(label: "read-only property: SecureBoot", name: "SecureBoot", guid: g, attributes: 0x06, data: [1], runtime: true, expected: .writeProtected),
        SetCase(label: "UEFI-defined variable with wrong attributes", name: "BootOrder", guid: g, attributes: 0x03, data: [1, 0], runtime: true, expected: .invalidParameter),
        SetCase(label: "UEFI-defined variable size out of range", name: "Timeout", guid: g, attributes: nvbsrt, data: [1, 2, 3], runtime: true, expected: .invalidParameter),
        SetCase(label: "unknown name in the global GUID", name: "MadeUp", guid: g, attributes: nvbsrt, data: [1], runtime: true, expected: .invalidParameter),
        SetCase(label: "BootOrder of odd length", name: "BootOrder", guid: g, attributes: nvbsrt, data: [1, 0, 2], runtime: true, expected: .invalidParameter),
        SetCase(label: "Boot#### that is not a load option", name: "Boot0009", guid: g, attributes: nvbsrt, data: [1, 0, 0, 0, 4, 0, 0, 0], runtime: true, expected: .invalidParameter),
        SetCase(label: "Lang without a NUL", name: "Lang", guid: g, attributes: nvbsrt, data: Array("eng".utf8), runtime: true, expected: .invalidParameter),
        SetCase(label: "non-authenticated write to KEK", name: "KEK", guid: g, attributes: nvbsrt, data: [1], runtime: true, expected: .invalidParameter),
        SetCase(label: "PK payload that is not a signature list", name: "PK", guid: g, attributes: 0x27, data: { var d = [UInt8](repeating: 0, count: 60); d.storeLE(UInt32(24), at: 16); return d }(), runtime: true, expected: .invalidParameter),
        SetCase(label: "PK needs a signature even in setup mode", name: "PK", guid: g, attributes: 0x27, data: { var d = [UInt8](repeating: 0, count: 40); d.storeLE(UInt32(24), at: 16); return d }(), runtime: true, expected: .securityViolation),
        SetCase(label: "private authenticated variable without a valid PKCS#7 signature", name: "Private", guid: vendor, attributes: 0x27, data: { var d = [UInt8](repeating: 0, count: 60); d.storeLE(UInt32(24), at: 16); return d }(), runtime: true, expected: .securityViolation),
    ]

    static func seeded(runtime: Bool) -> VariableStore {
        var s = VariableStore()
        s.initializeAuthVariables()
        for (n, a) in [("Existing", nvbsrt), ("BsOnly", UInt32(0x03)), ("Volatile", UInt32(0x06))] {
            #expect(s.setVariable(VariableKey(n, vendor), attributes: a, data: [1, 2]) == .success)
        }
        s.signalEndOfDxe()
        if runtime { s.signalExitBootServices() }
        return s
    }

    @Test("SetVariable failure branches give edk2's EFI_STATUS and leave the store unchanged", arguments: failures)
    func setFailures(_ c: SetCase) {
        var s = Self.seeded(runtime: c.runtime)
        let before = s.allVariables.map { "\($0.0)=\($0.1.data)" }
        #expect(s.setVariable(VariableKey(c.name, c.guid), attributes: c.attributes, data: c.data) == c.expected)
        #expect(s.allVariables.map { "\($0.0)=\($0.1.data)" } == before)
    }

    @Test("create, replace, append, delete by size 0 and by attributes 0")
    func lifecycle() {
        var s = Self.seeded(runtime: true)
        let k = VariableKey("Fresh", Self.vendor)
        #expect(s.setVariable(k, attributes: Self.nvbsrt, data: [1]) == .success)
        #expect(s.setVariable(k, attributes: Self.nvbsrt | 0x40, data: [2, 3]) == .success)
        #expect(s.getVariable(k, capacity: 10) == .found(attributes: .nvBsRt, data: [1, 2, 3]))
        #expect(s.setVariable(k, attributes: Self.nvbsrt | 0x40, data: []) == .success)  // append nothing: no delete
        #expect(s.find(k)?.data == [1, 2, 3])
        #expect(s.setVariable(k, attributes: Self.nvbsrt, data: [9]) == .success)
        #expect(s.find(k)?.data == [9])
        #expect(s.setVariable(k, attributes: Self.nvbsrt, data: []) == .success)
        #expect(s.find(k) == nil)
        #expect(s.setVariable(k, attributes: Self.nvbsrt, data: [1]) == .success)
        #expect(s.setVariable(k, attributes: 0, data: []) == .success)
        #expect(s.find(k) == nil)
        // APPEND_WRITE is never stored.
        #expect(s.setVariable(k, attributes: Self.nvbsrt | 0x40, data: [4]) == .success)
        #expect(s.find(k)?.attributes == .nvBsRt)
    }

    @Test("after ExitBootServices, boot-service-only variables are invisible to Get and GetNext")
    func runtimeVisibility() {
        let boot = Self.seeded(runtime: false)
        let runtime = Self.seeded(runtime: true)
        let bs = VariableKey("BsOnly", Self.vendor)
        #expect(boot.getVariable(bs, capacity: 8) == .found(attributes: .nvBs, data: [1, 2]))
        #expect(runtime.getVariable(bs, capacity: 8) == .error(.notFound))
        #expect(boot.visibleKeys.contains(bs))
        #expect(!runtime.visibleKeys.contains(bs))
        #expect(runtime.getNextVariableName(after: bs, capacity: 512) == .error(.invalidParameter))
    }

    @Test("GetNextVariableName: volatile first, then NV, updates move to the end; errors")
    func getNextOrder() {
        var s = VariableStore()
        for n in ["N1", "N2"] { _ = s.setVariable(VariableKey(n, Self.vendor), attributes: Self.nvbsrt, data: [1]) }
        _ = s.setVariable(VariableKey("V1", Self.vendor), attributes: 0x06, data: [1])
        _ = s.setVariable(VariableKey("N1", Self.vendor), attributes: Self.nvbsrt, data: [2])
        #expect(s.visibleKeys.map { Ucs2.string($0.name) } == ["V1", "N2", "N1"])
        var names: [String] = []
        var k = VariableKey(guid: .zero, name: [])
        while case .next(let n) = s.getNextVariableName(after: k, capacity: 512) { names.append(Ucs2.string(n.name)); k = n }
        #expect(names == ["V1", "N2", "N1"])
        #expect(s.getNextVariableName(after: k, capacity: 512) == .error(.notFound))
        #expect(s.getNextVariableName(after: VariableKey("Nope", Self.vendor), capacity: 512) == .error(.invalidParameter))
        #expect(s.getNextVariableName(after: VariableKey(guid: .zero, name: []), capacity: 4) == .bufferTooSmall(needed: 6))
    }

    @Test("GetNextVariableName order survives many deletes and rewrites (the record log's gaps and squeezes)")
    func getNextOrderWithGaps() {
        var s = VariableStore()
        var expected: [String] = []  // a plain list: append on write, move to the end on rewrite
        var rng = SplitMix(seed: 7)
        for step in 0..<3000 {
            let name = "V\(rng.next() % 200)"
            let key = VariableKey(name, Self.vendor)
            if rng.next() % 3 == 0 {
                _ = s.setVariable(key, attributes: Self.nvbsrt, data: [])
                expected.removeAll { $0 == name }
            } else {
                #expect(s.setVariable(key, attributes: Self.nvbsrt, data: [UInt8(truncatingIfNeeded: step)]) == .success)
                expected.removeAll { $0 == name }
                expected.append(name)
            }
        }
        #expect(s.visibleKeys.map { Ucs2.string($0.name) } == expected)
        var names: [String] = []
        var k = VariableKey(guid: .zero, name: [])
        while case .next(let n) = s.getNextVariableName(after: k, capacity: 512) { names.append(Ucs2.string(n.name)); k = n }
        #expect(names == expected)
        #expect(s.count == expected.count)
    }

    @Test("the record log: removal leaves order intact, squeezing keeps positions right")
    func orderedRecords() {
        var r = OrderedRecords<Int, String>()
        for i in 0..<100 { r.append(i, "v\(i)") }
        for i in stride(from: 0, to: 100, by: 2) { #expect(r.removeValue(forKey: i) == "v\(i)") }
        #expect(r.removeValue(forKey: 0) == nil)
        for i in 0..<70 where i % 2 == 1 { r.removeValue(forKey: i) }  // past half: squeezed
        #expect(r.elements.map(\.key) == Array(stride(from: 71, to: 100, by: 2)))
        #expect(r.count == 15)
        #expect(r[71] == "v71" && r[70] == nil)
        r.append(0, "again")
        #expect(r.elements.last?.key == 0)
        let s = r.slot(of: 97)!
        #expect(r.first(from: s + 1) { _ in true } == 99)
        #expect(r.first(from: s + 1) { $0 == "again" } == 0)
    }

    @Test("QueryVariableInfo validation order", arguments: [
        (UInt32(0), EfiStatus.invalidParameter), (0x10 | 0x07, .unsupported), (0x80, .unsupported), (0x40, .invalidParameter),
        (0x01, .invalidParameter), (0x05, .invalidParameter), (0x03, .invalidParameter), (0x0F, .unsupported),
    ])
    func queryValidation(_ attrs: UInt32, _ expected: EfiStatus) {
        var s = VariableStore(); s.signalExitBootServices()
        guard case .failure(let e) = s.queryVariableInfo(attrs) else { Issue.record("expected failure"); return }
        #expect(e.status == expected)
    }

    @Test("QueryVariableInfo adds up after a thousand random sets and deletes")
    func queryAccounting() {
        var s = VariableStore()
        s.signalEndOfDxe(); s.signalExitBootServices()
        var rng = SplitMix(seed: 42)
        var model: [String: Int] = [:]
        for _ in 0..<1000 {
            let name = "Var\(rng.next() % 50)"
            let k = VariableKey(name, Self.vendor)
            if rng.next() % 3 == 0 {
                _ = s.setVariable(k, attributes: Self.nvbsrt, data: [])
                model[name] = nil
            } else {
                let size = Int(rng.next() % 300) + 1
                let append = rng.next() % 4 == 0 && model[name] != nil
                let st = s.setVariable(k, attributes: Self.nvbsrt | (append ? 0x40 : 0), data: [UInt8](repeating: 7, count: size))
                #expect(st == .success)
                model[name] = append ? model[name]! + size : size
            }
        }
        let used = model.reduce(0) { acc, e in acc + Self.edk2RecordSize(nameSize: e.key.utf16.count * 2 + 2, dataSize: e.value) }
        guard case .success(let info) = s.queryVariableInfo(7) else { Issue.record("query failed"); return }
        #expect(info.maximumVariableStorageSize == 0x3ff9c)
        #expect(info.remainingVariableStorageSize == UInt64(0x3ff9c - used))
        #expect(info.maximumVariableSize == UInt64(min(0x8400 - 60, 0x3ff9c - used - 60)))
    }

    /// edk2's space for one variable, written down from its layout rather than taken from
    /// the implementation: sizeof(AUTHENTICATED_VARIABLE_HEADER) = StartId 2 + State 1 +
    /// Reserved 1 + Attributes 4 + MonotonicCount 8 + TimeStamp 16 + PubKeyIndex 4 +
    /// NameSize 4 + DataSize 4 + VendorGuid 16 = 60 bytes, then the name and the data, the
    /// whole rounded up to HEADER_ALIGN = 4 on x86 (MdeModulePkg/Include/Guid/VariableFormat.h).
    static func edk2RecordSize(nameSize: Int, dataSize: Int) -> Int {
        let header = 2 + 1 + 1 + 4 + 8 + 16 + 4 + 4 + 4 + 16
        let unaligned = header + nameSize + dataSize
        return unaligned % 4 == 0 ? unaligned : unaligned + (4 - unaligned % 4)
    }

    @Test("a full store answers EFI_OUT_OF_RESOURCES and stays usable")
    func fullStore() {
        var limits = StoreLimits(); limits.nvStoreSize = 28 + 1024
        var s = VariableStore(limits: limits)
        var i = 0
        while s.setVariable(VariableKey("F\(i)", Self.vendor), attributes: Self.nvbsrt, data: [UInt8](repeating: 1, count: 100)) == .success { i += 1 }
        #expect(s.setVariable(VariableKey("Last", Self.vendor), attributes: Self.nvbsrt, data: [UInt8](repeating: 1, count: 100)) == .outOfResources)
        #expect(s.setVariable(VariableKey("F0", Self.vendor), attributes: Self.nvbsrt, data: []) == .success)
        #expect(s.setVariable(VariableKey("Last", Self.vendor), attributes: Self.nvbsrt, data: [UInt8](repeating: 1, count: 100)) == .success)
    }

    @Test("initial Secure Boot state without PK: setup mode, SecureBoot 0, certdb empty")
    func authInit() {
        var s = VariableStore(); s.initializeAuthVariables()
        #expect(s.find(VariableKey("SetupMode", Self.g))?.data == [1])
        #expect(s.find(VariableKey("SecureBoot", Self.g))?.data == [0])
        #expect(s.find(VariableKey("certdb", .certDb))?.data == [4, 0, 0, 0])
        #expect(s.find(VariableKey("SignatureSupport", Self.g))?.data.count == 64)
    }

    @Test("in setup mode db takes an unsigned AUTH_2 write (edk2 does not verify before PK)")
    func setupModeDb() {
        var s = Self.seeded(runtime: true)
        var d = [UInt8](repeating: 0, count: 40)
        d.storeLE(UInt16(2026), at: 0); d[2] = 1; d[3] = 1
        d.storeLE(UInt32(24), at: 16); d.storeLE(UInt16(0x0200), at: 20); d.storeLE(UInt16(0x0EF1), at: 22)
        let list = hex("2616c4c14c509240aca941f936934328" + "4c000000" + "00000000" + "30000000") + [UInt8](repeating: 0xAB, count: 48)
        #expect(s.setVariable(VariableKey("db", .imageSecurityDatabase), attributes: 0x27, data: d + list) == .success)
        #expect(s.find(VariableKey("db", .imageSecurityDatabase))?.data == list)
    }
}

struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Variable store: Lang coupling and hardware error records")
struct LangAndHwErrTests {
    static func booted() -> VariableStore {
        var s = VariableStore()
        for (n, a, d) in [("LangCodes", UInt32(6), Array("engfraengfra".utf8) + [0]), ("PlatformLangCodes", 6, Array("en;fr;en-US;fr-FR".utf8) + [0]),
                          ("Lang", 7, Array("eng".utf8) + [0]), ("PlatformLang", 7, Array("en".utf8) + [0])] {
            #expect(s.setVariable(VariableKey(n, .globalVariable), attributes: a, data: d) == .success)
        }
        s.signalEndOfDxe(); s.signalExitBootServices()
        return s
    }

    @Test("setting PlatformLang rewrites Lang to the matching ISO 639-2 code, and the reverse")
    func coupling() {
        var s = Self.booted()
        #expect(s.setVariable(VariableKey("PlatformLang", .globalVariable), attributes: 7, data: Array("fr-FR".utf8) + [0]) == .success)
        #expect(s.find(VariableKey("Lang", .globalVariable))?.data == Array("fra".utf8) + [0])
        #expect(s.setVariable(VariableKey("Lang", .globalVariable), attributes: 7, data: Array("eng".utf8) + [0]) == .success)
        #expect(s.find(VariableKey("PlatformLang", .globalVariable))?.data == Array("en".utf8) + [0])
        // RFC 4646 fallback: en-GB is not listed, en is.
        #expect(s.setVariable(VariableKey("PlatformLang", .globalVariable), attributes: 7, data: Array("en-GB".utf8) + [0]) == .success)
        #expect(s.find(VariableKey("Lang", .globalVariable))?.data == Array("eng".utf8) + [0])
    }

    @Test("LangCodes and PlatformLangCodes are write-protected at runtime")
    func codesProtected() {
        var s = Self.booted()
        // The volatile rule would say WRITE_PROTECTED too; the coupling says it first for any GUID.
        let vendor = EfiGuid("210be57c-9849-4fc7-a635-e6382d1aec27")!
        #expect(s.setVariable(VariableKey("LangCodes", vendor), attributes: 7, data: [0x61, 0]) == .writeProtected)
    }

    @Test("HR records need a hardware-error store; with one, they have their own quota and name rule")
    func hardwareErrorRecords() {
        var limits = StoreLimits(); limits.hwErrStorageSize = 0x300
        var s = VariableStore(limits: limits)
        s.signalEndOfDxe(); s.signalExitBootServices()
        let hr: UInt32 = 0x0F
        #expect(s.setVariable(VariableKey("HwErrRec0001", .hardwareErrorVariable), attributes: hr, data: [UInt8](repeating: 1, count: 200)) == .success)
        #expect(s.setVariable(VariableKey("HwErrRec0002", .hardwareErrorVariable), attributes: hr, data: [UInt8](repeating: 1, count: 200)) == .success)
        #expect(s.setVariable(VariableKey("HwErrRec0003", .hardwareErrorVariable), attributes: hr, data: [UInt8](repeating: 1, count: 200)) == .outOfResources)
        #expect(s.setVariable(VariableKey("NotHwErr", .hardwareErrorVariable), attributes: hr, data: [1]) == .invalidParameter)
        guard case .success(let info) = s.queryVariableInfo(hr) else { Issue.record("QVI"); return }
        #expect(info.maximumVariableStorageSize == 0x300)
        // Each record: HEADER_ALIGN(60 + 26 + 200) = 288 bytes ("HwErrRec0001" is 12
        // CHAR16 + NUL = 26 bytes); two of them leave 0x300 - 576 = 192.
        #expect(info.remainingVariableStorageSize == 192)
        // The common pool is untouched by HR records.
        guard case .success(let common) = s.queryVariableInfo(7) else { Issue.record("QVI"); return }
        #expect(common.remainingVariableStorageSize == common.maximumVariableStorageSize)
        #expect(common.maximumVariableStorageSize == UInt64(0x3ffb8 - 28 - 0x300))
    }
}
