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

@Suite("MM communicate wire format")
struct MmWireFormatTests {
    /// GetVariable("Timeout", EFI_GLOBAL_VARIABLE, DataSize = 2) as edk2's client sends it
    /// (tianocore/edk2 MdeModulePkg/Universal/Variable/RuntimeDxe/VariableSmmRuntimeDxe.c
    /// `FindVariableInSmm`): EFI_MM_COMMUNICATE_HEADER (MdePkg/Include/Protocol/MmCommunication.h),
    /// then SMM_VARIABLE_COMMUNICATE_HEADER and SMM_VARIABLE_COMMUNICATE_ACCESS_VARIABLE
    /// (MdeModulePkg/Include/Guid/SmmVariableCommon.h); MessageLength = 16 + 36 + 16 + 2 = 70.
    static let getTimeoutRequest = hex("""
        33d532ede69909429cc02d72cdd998a7 4600000000000000
        0100000000000000 0000000000000000
        61dfe48bca93d211aa0d00e098032b8c 0200000000000000 1000000000000000 00000000
        540069006d0065006f00750074000000 0000
        """)

    @Test("GET_VARIABLE request encodes byte for byte as the worked example")
    func getVariableRequestGolden() {
        let payload = AccessVariablePayload.encode(guid: .globalVariable, name: Ucs2.units("Timeout"), attributes: 0, dataSize: 2)
        let buffer = MmCommunicateHeader.encode(headerGuid: .smmVariableProtocol, message: SmmVariableHeader.message(.getVariable, payload: payload))
        #expect(Hex.encode(buffer) == Hex.encode(Self.getTimeoutRequest))
        #expect(buffer.count == 24 + 70)
    }

    @Test("GET_VARIABLE response: status 0, attributes 7, DataSize 2, data 05 00")
    func getVariableResponseGolden() {
        let store = VariableStore.booted([("Timeout", .globalVariable, .nvBsRt, [5, 0])])
        let service = VariableService(store: store)
        let message = Array(Self.getTimeoutRequest[24...])
        let reply = service.handleMmRequest(headerGuid: .smmVariableProtocol, message: message)!
        let expected = hex("""
            0100000000000000 0000000000000000
            61dfe48bca93d211aa0d00e098032b8c 0200000000000000 1000000000000000 07000000
            540069006d0065006f00750074000000 0500
            """)
        #expect(Hex.encode(reply) == Hex.encode(expected))
    }

    @Test("GET_VARIABLE with DataSize 0 answers BUFFER_TOO_SMALL with the size and attributes")
    func getVariableTooSmall() {
        let store = VariableStore.booted([("Timeout", .globalVariable, .nvBsRt, [5, 0])])
        let service = VariableService(store: store)
        let payload = AccessVariablePayload.encode(guid: .globalVariable, name: Ucs2.units("Timeout"), attributes: 0, dataSize: 0)
        let reply = service.handleMmRequest(headerGuid: .smmVariableProtocol, message: SmmVariableHeader.message(.getVariable, payload: payload))!
        let expected = hex("""
            0100000000000000 0500000000000080
            61dfe48bca93d211aa0d00e098032b8c 0200000000000000 1000000000000000 07000000
            540069006d0065006f00750074000000
            """)
        #expect(Hex.encode(reply) == Hex.encode(expected))
    }

    @Test("GET_PAYLOAD_SIZE answers 65496 (64 KiB - 24 - 16)")
    func payloadSize() {
        let reply = VariableService().handleMmRequest(headerGuid: .smmVariableProtocol,
                                                      message: SmmVariableHeader.message(.getPayloadSize, payload: [UInt8](repeating: 0, count: 8)))!
        #expect(Hex.encode(reply) == "0b00000000000000" + "0000000000000000" + "d8ff000000000000")
    }

    @Test("GET_NEXT_VARIABLE_NAME from the empty name returns the first variable")
    func getNextGolden() {
        let store = VariableStore.booted([("Timeout", .globalVariable, .nvBsRt, [5, 0])])
        let service = VariableService(store: store)
        let payload = GetNextVariableNamePayload.encode(guid: .zero, name: [], nameBufferSize: 18)
        let reply = service.handleMmRequest(headerGuid: .smmVariableProtocol, message: SmmVariableHeader.message(.getNextVariableName, payload: payload))!
        let expected = hex("""
            0200000000000000 0000000000000000
            61dfe48bca93d211aa0d00e098032b8c 1000000000000000
            540069006d0065006f00750074000000 0000
            """)
        #expect(Hex.encode(reply) == Hex.encode(expected))
    }

    @Test("QUERY_VARIABLE_INFO for NV|BS|RT on an empty store reports the 4M OVMF figures")
    func queryGolden() {
        var s = VariableStore(); s.signalEndOfDxe(); s.signalExitBootServices()
        let reply = VariableService(store: s).handleMmRequest(headerGuid: .smmVariableProtocol,
                                                              message: SmmVariableHeader.message(.queryVariableInfo, payload: QueryVariableInfoPayload.encode(attributes: 7)))!
        // Max 0x3ff9c, remaining 0x3ff9c, max variable 0x8400 - 60 = 0x83c4.
        #expect(Hex.encode(reply) == "0400000000000000" + "0000000000000000" + "9cff030000000000" + "9cff030000000000" + "c483000000000000" + "0700000000000000")
    }

    @Test("GET_STATISTICS and the runtime-cache functions answer EFI_UNSUPPORTED", arguments: [7, 12, 13, 14, 99])
    func unsupportedFunctions(_ f: UInt64) {
        let reply = VariableService().handleMmRequest(headerGuid: .smmVariableProtocol,
                                                      message: SmmVariableHeader.message(SmmVariableFunction(rawValue: f), payload: [UInt8](repeating: 0, count: 64)))!
        #expect(reply.loadLE(UInt64.self, at: 8) == EfiStatus.unsupported.rawValue)
    }

    @Test("a header GUID nobody serves leaves the message unchanged")
    func unknownGuid() {
        #expect(VariableService().handleMmRequest(headerGuid: EfiGuid("12345678-1234-1234-1234-123456789abc")!, message: [1, 2, 3]) == nil)
    }

    @Test("malformed access payloads: short is BAD_BUFFER_SIZE, inconsistent sizes ACCESS_DENIED, store unchanged",
          arguments: [
            // payload shorter than the 36-byte fixed part
            ("short", [UInt8](repeating: 0, count: 20), EfiStatus.badBufferSize),
            // NameSize 0
            ("nameSize0", AccessVariablePayload.encode(guid: .globalVariable, name: [], attributes: 7, dataSize: 0).enumerated().map { $0.offset == 24 ? 0 : $0.element }, .accessDenied),
            // DataSize past the end
            ("dataPastEnd", { var p = AccessVariablePayload.encode(guid: .globalVariable, name: Ucs2.units("X"), attributes: 7, dataSize: 1, data: [1]); p.storeLE(UInt64(100), at: 16); return p }(), .accessDenied),
            // name without NUL
            ("noNul", { var p = AccessVariablePayload.encode(guid: .globalVariable, name: Ucs2.units("X"), attributes: 7, dataSize: 1, data: [1]); p[38] = 0x41; return p }(), .accessDenied),
            // odd NameSize
            ("oddNameSize", { var p = AccessVariablePayload.encode(guid: .globalVariable, name: Ucs2.units("X"), attributes: 7, dataSize: 1, data: [1]); p.storeLE(UInt64(3), at: 24); return p }(), .accessDenied),
            // overflowing sizes
            ("overflow", { var p = AccessVariablePayload.encode(guid: .globalVariable, name: Ucs2.units("X"), attributes: 7, dataSize: 1, data: [1]); p.storeLE(UInt64.max - 10, at: 16); return p }(), .accessDenied),
          ])
    func malformedSet(_ label: String, _ payload: [UInt8], _ status: EfiStatus) {
        let service = VariableService(store: VariableStore())
        let reply = service.handleMmRequest(headerGuid: .smmVariableProtocol, message: SmmVariableHeader.message(.setVariable, payload: payload))!
        #expect(EfiStatus(rawValue: reply.loadLE(UInt64.self, at: 8)) == status, "\(label)")
        #expect(MmProbe.firstName(service) == .error(.notFound))  // nothing was stored
    }

    @Test("a message shorter than the SMM header is returned untouched")
    func shortMessage() {
        #expect(VariableService().handleMmRequest(headerGuid: .smmVariableProtocol, message: [1, 2, 3]) == [1, 2, 3])
    }

    @Test("the boot events are handled and idempotent")
    func events() {
        let service = VariableService()
        for _ in 0..<2 {
            _ = service.handleMmRequest(headerGuid: .endOfDxeEvent, message: [0])
            _ = service.handleMmRequest(headerGuid: .readyToBootEvent, message: [0])
            _ = service.handleMmRequest(headerGuid: .exitBootServicesEvent, message: [0])
        }
        // After ExitBootServices a boot-services-only variable cannot be created (the
        // runtime rule), and READY_TO_BOOT as a function is EFI_UNSUPPORTED.
        #expect(MmProbe.set(service, VariableKey("BsOnly", .linuxEfiCrash), attributes: 0x3, data: [1]) == .invalidParameter)
        let reply = service.handleMmRequest(headerGuid: .smmVariableProtocol, message: SmmVariableHeader.message(.readyToBoot, payload: []))!
        #expect(reply.loadLE(UInt64.self, at: 8) == EfiStatus.unsupported.rawValue)
    }

    @Test("a name read out of a message: up to the first NUL within NameSize, little-endian, or nil")
    func namesReadOutOfMessages() {
        let ab = hex("4100420000000000")
        #expect(Ucs2.readNulTerminated(ab, offset: 0, byteCount: 6) == [0x41, 0x42])
        #expect(Ucs2.readNulTerminated(ab, offset: 0, byteCount: 8) == [0x41, 0x42])
        // The NUL must lie within NameSize: 4 or 5 bytes end before it.
        #expect(Ucs2.readNulTerminated(ab, offset: 0, byteCount: 4) == nil)
        #expect(Ucs2.readNulTerminated(ab, offset: 0, byteCount: 5) == nil)
        // ... and within the message, whatever NameSize claims.
        #expect(Ucs2.readNulTerminated(hex("41004200"), offset: 0, byteCount: 64) == nil)
        #expect(Ucs2.readNulTerminated(ab, offset: 2, byteCount: 4) == [0x42])
        #expect(Ucs2.readNulTerminated(ab, offset: 4, byteCount: 2) == [])
        #expect(Ucs2.readNulTerminated(ab, offset: 9, byteCount: 2) == nil)
        #expect(Ucs2.readNulTerminated(ab, offset: -1, byteCount: 2) == nil)
        // High bytes and unpaired surrogates come through unchanged.
        #expect(Ucs2.readNulTerminated(hex("00d801dce9000000"), offset: 0, byteCount: 8) == [0xd800, 0xdc01, 0x00e9])
    }

    @Test("zeroed byte arrays: the count asked for, every byte zero")
    func zeroedArrays() {
        for n in [0, 1, 24, 4096] {
            let a = [UInt8](zeroed: n)
            #expect(a.count == n && a.allSatisfy { $0 == 0 })
        }
    }
}

@Suite("MM variable functions: whole-buffer golden vectors")
struct MmGoldenTests {
    static let vendor = EfiGuid("210be57c-9849-4fc7-a635-e6382d1aec27")!
    static let vendorHex = "7ce50b21499 8c74fa635e6382d1aec27".replacingOccurrences(of: " ", with: "")

    func run(_ service: VariableService, _ f: SmmVariableFunction, _ payload: [UInt8]) -> [UInt8] {
        let request = MmCommunicateHeader.encode(headerGuid: .smmVariableProtocol, message: SmmVariableHeader.message(f, payload: payload))
        let reply = service.handleMmRequest(headerGuid: .smmVariableProtocol, message: Array(request[24...]))!
        return Array(request[0..<24]) + reply
    }

    @Test("SET_VARIABLE: whole request and response")
    func setVariable() {
        let service = VariableService()
        let payload = AccessVariablePayload.encode(guid: Self.vendor, name: Ucs2.units("Ab"), attributes: 7, dataSize: 3, data: [1, 2, 3])
        let buffer = run(service, .setVariable, payload)
        #expect(Hex.encode(buffer) ==
            "33d532ede69909429cc02d72cdd998a7" + "3d00000000000000"   // header, MessageLength 16 + 36 + 6 + 3 = 61
            + "0300000000000000" + "0000000000000000"                // SET_VARIABLE, EFI_SUCCESS
            + Self.vendorHex + "0300000000000000" + "0600000000000000" + "07000000"
            + "410062000000" + "010203")
        #expect(MmProbe.get(service, VariableKey("Ab", Self.vendor)) == .found(attributes: .nvBsRt, data: [1, 2, 3]))
        // The same write with RT but no BS: EFI_INVALID_PARAMETER in ReturnStatus.
        let bad = run(service, .setVariable, AccessVariablePayload.encode(guid: Self.vendor, name: Ucs2.units("Cd"), attributes: 5, dataSize: 1, data: [1]))
        #expect(Hex.encode(Array(bad[24..<40])) == "0300000000000000" + "0200000000000080")
    }

    @Test("READY_TO_BOOT and EXIT_BOOT_SERVICE: header-only messages answered EFI_SUCCESS")
    func events() {
        let service = VariableService()
        #expect(Hex.encode(run(service, .readyToBoot, [])) == "33d532ede69909429cc02d72cdd998a7" + "1000000000000000" + "0500000000000000" + "0000000000000000")
        #expect(Hex.encode(run(service, .exitBootService, [])) == "33d532ede69909429cc02d72cdd998a7" + "1000000000000000" + "0600000000000000" + "0000000000000000")
        // At runtime: a boot-services-only variable cannot be created, and READY_TO_BOOT is
        // refused as it is after ExitBootServices.
        #expect(MmProbe.set(service, VariableKey("BsOnly", Self.vendor), attributes: 0x3, data: [1]) == .invalidParameter)
        #expect(run(service, .readyToBoot, []).loadLE(UInt64.self, at: 32) == EfiStatus.unsupported.rawValue)
    }

    @Test("VAR_CHECK_VARIABLE_PROPERTY_SET then _GET; built-in properties; NOT_FOUND without one")
    func properties() {
        let service = VariableService()
        let prop = VariableProperty(property: 1, attributes: 7, minSize: 2, maxSize: 8)
        let set = run(service, .varCheckVariablePropertySet, VarCheckPropertyPayload.encode(guid: Self.vendor, name: Ucs2.units("P"), property: prop))
        #expect(Hex.encode(Array(set[24..<40])) == "0900000000000000" + "0000000000000000")
        let get = run(service, .varCheckVariablePropertyGet, VarCheckPropertyPayload.encode(guid: Self.vendor, name: Ucs2.units("P"),
                                                                                              property: VariableProperty(revision: 0, minSize: 0, maxSize: 0)))
        #expect(Hex.encode(get) == "33d532ede69909429cc02d72cdd998a7" + "4400000000000000"
                + "0a00000000000000" + "0000000000000000"
                + Self.vendorHex + "0400000000000000"
                + "0100" + "0100" + "07000000" + "0200000000000000" + "0800000000000000"
                + "50000000")
        // Built-in: SecureBoot is read-only BS|RT, exactly 1 byte.
        let sb = run(service, .varCheckVariablePropertyGet, VarCheckPropertyPayload.encode(guid: .globalVariable, name: Ucs2.units("SecureBoot")))
        #expect(Hex.encode(Array(sb[64..<88])) == "0100" + "0100" + "06000000" + "0100000000000000" + "0100000000000000")
        let none = run(service, .varCheckVariablePropertyGet, VarCheckPropertyPayload.encode(guid: Self.vendor, name: Ucs2.units("Q")))
        #expect(none.loadLE(UInt64.self, at: 32) == EfiStatus.notFound.rawValue)
        // Revision other than 1: INVALID_PARAMETER; after EndOfDxe: ACCESS_DENIED.
        let rev = run(service, .varCheckVariablePropertySet, VarCheckPropertyPayload.encode(guid: Self.vendor, name: Ucs2.units("R"), property: VariableProperty(revision: 2)))
        #expect(rev.loadLE(UInt64.self, at: 32) == EfiStatus.invalidParameter.rawValue)
        _ = service.handleMmRequest(headerGuid: .endOfDxeEvent, message: [0])
        let late = run(service, .varCheckVariablePropertySet, VarCheckPropertyPayload.encode(guid: Self.vendor, name: Ucs2.units("S"), property: prop))
        #expect(late.loadLE(UInt64.self, at: 32) == EfiStatus.accessDenied.rawValue)
        // The registered read-only property is enforced after EndOfDxe.
        #expect(MmProbe.set(service, VariableKey("P", Self.vendor), attributes: 7, data: [1, 2]) == .writeProtected)
    }

    @Test("GET_NEXT_VARIABLE_NAME with a short buffer: BUFFER_TOO_SMALL and the size needed, name untouched")
    func getNextTooSmall() {
        let s = VariableStore.booted([("Timeout", .globalVariable, .nvBsRt, [5, 0])])
        let buffer = run(VariableService(store: s), .getNextVariableName, GetNextVariableNamePayload.encode(guid: .zero, name: [], nameBufferSize: 4))
        #expect(Hex.encode(Array(buffer[24...])) == "0200000000000000" + "0500000000000080"
                + "00000000000000000000000000000000" + "1000000000000000" + "00000000")
    }
}

/// Looks at a service only through MM messages, as any caller must.
enum MmProbe {
    static func call(_ service: VariableService, _ f: SmmVariableFunction, _ payload: [UInt8]) -> (EfiStatus, [UInt8]) {
        let reply = service.handleMmRequest(headerGuid: .smmVariableProtocol, message: SmmVariableHeader.message(f, payload: payload))!
        return (EfiStatus(rawValue: reply.loadLE(UInt64.self, at: SmmVariableHeader.returnStatusOffset)), Array(reply[SmmVariableHeader.size...]))
    }

    static func set(_ service: VariableService, _ key: VariableKey, attributes: UInt32, data: [UInt8]) -> EfiStatus {
        call(service, .setVariable, AccessVariablePayload.encode(guid: key.guid, name: key.name, attributes: attributes, dataSize: data.count, data: data)).0
    }

    static func get(_ service: VariableService, _ key: VariableKey) -> GetVariableResult {
        let (status, p) = call(service, .getVariable, AccessVariablePayload.encode(guid: key.guid, name: key.name, attributes: 0, dataSize: 4096))
        guard status == .success else { return .error(status) }
        let size = Int(p.loadLE(UInt64.self, at: AccessVariablePayload.dataSizeOffset))
        let start = AccessVariablePayload.nameOffset + key.nameSize
        return .found(attributes: VariableAttributes(rawValue: p.loadLE(UInt32.self, at: AccessVariablePayload.attributesOffset)),
                      data: Array(p[start..<(start + size)]))
    }

    static func firstName(_ service: VariableService) -> GetNextVariableNameResult {
        let (status, p) = call(service, .getNextVariableName, GetNextVariableNamePayload.encode(guid: .zero, name: [], nameBufferSize: 512))
        guard status == .success else { return .error(status) }
        let name = Ucs2.readNulTerminated(p, offset: GetNextVariableNamePayload.nameOffset, byteCount: 512) ?? []
        return .next(VariableKey(guid: EfiGuid(bytes: p, at: 0), name: name))
    }
}
