import SvsmEfiVars

/// (b) The MM service's decoders, fed directly: each input is up to eight messages, each
/// sent under a HeaderGuid chosen by its first byte, to a fresh service over a booted store
/// (so an input replays the same way every time).
final class MmPayloadTarget: Sendable {
    static let shared = MmPayloadTarget()

    /// The HeaderGuids the dispatch knows, and one it does not.
    static let headerGuids: [EfiGuid] = [.smmVariableProtocol, .varCheckPolicyMmiHandler, .endOfDxeEvent,
                                         .readyToBootEvent, .exitBootServicesEvent, .globalVariable]

    /// The store after an OVMF-like boot at runtime, shared copy-on-write by every input.
    let base: VariableStore

    init() { base = FuzzStores.bootedStore() }

    func run(_ data: [UInt8]) throws(PropertyViolation) {
        let service = VariableService(store: base)
        var input = FuzzInput(data)
        var steps = 0
        while !input.isExhausted && steps < 8 {
            steps += 1
            let guid = Self.headerGuids[Int(input.u8()) % Self.headerGuids.count]
            let message = input.block()
            guard let reply = service.handleMmRequest(headerGuid: guid, message: message) else {
                // No handler for the GUID, or a policy message shorter than its header or longer
                // than the policy MMI's buffer: edk2 leaves the buffer alone for these.
                try require(guid == .globalVariable || (guid == .varCheckPolicyMmiHandler && (message.count < VarCheckPolicyHeader.size || message.count > VarCheckPolicyHeader.commBufferSize - MmCommunicateHeader.size)),
                        "\(guid) went unanswered for a \(message.count)-byte message")
                continue
            }
            // The SVSM copies the reply over the request: it must fit (protocol 4 refuses it
            // otherwise, but no handler of ours may rely on that).
            try require(reply.count <= message.count, "reply of \(reply.count) bytes to a \(message.count)-byte message")
        }
    }

    static func seeds() -> [(name: String, bytes: [UInt8])] {
        FuzzMessages.all.map { (name, guid, message) in
            var s = FuzzSeed()
            s.u8(UInt8(headerGuids.firstIndex(of: guid)!))
            s.block(message)
            return (name, s.bytes)
        }
    }
}

/// Real request messages, as the driver and the firmware build them: the seeds of the
/// MM-level targets.
enum FuzzMessages {
    static let bootOrder = VariableKey("BootOrder", .globalVariable)
    static let crash = VariableKey("dump-type0-1-1-1", .linuxEfiCrash)

    static func variable(_ f: SmmVariableFunction, _ payload: [UInt8]) -> [UInt8] { SmmVariableHeader.message(f, payload: payload) }

    static var all: [(String, EfiGuid, [UInt8])] {
        let nvBsRt = VariableAttributes.nvBsRt.rawValue
        var policy = VariablePolicy(namespace: crash.guid, name: crash.name, lockType: .lockOnCreate)
        policy.maxSize = 64
        var stateLocked = VariablePolicy(namespace: .globalVariable, name: Ucs2.units("Boot####"), lockType: .lockOnVarState)
        stateLocked.stateNamespace = crash.guid
        stateLocked.stateName = crash.name
        stateLocked.stateValue = 1
        var dump = [UInt8](zeroed: PolicyDumpParams.size)
        dump.storeLE(UInt32(0), at: 0)
        return [
            ("get-bootorder", .smmVariableProtocol, variable(.getVariable, AccessVariablePayload.encode(guid: bootOrder.guid, name: bootOrder.name, attributes: 0, dataSize: 256))),
            ("get-bootorder-too-small", .smmVariableProtocol, variable(.getVariable, AccessVariablePayload.encode(guid: bootOrder.guid, name: bootOrder.name, attributes: 0, dataSize: 0))),
            ("get-next-first", .smmVariableProtocol, variable(.getNextVariableName, GetNextVariableNamePayload.encode(guid: .zero, name: [], nameBufferSize: 512))),
            ("get-next-after-bootorder", .smmVariableProtocol, variable(.getNextVariableName, GetNextVariableNamePayload.encode(guid: bootOrder.guid, name: bootOrder.name, nameBufferSize: 512))),
            ("set-crash", .smmVariableProtocol, variable(.setVariable, AccessVariablePayload.encode(guid: crash.guid, name: crash.name, attributes: nvBsRt, dataSize: 8, data: Array("panic!\n\0".utf8)))),
            ("append-crash", .smmVariableProtocol, variable(.setVariable, AccessVariablePayload.encode(guid: crash.guid, name: crash.name, attributes: nvBsRt | VariableAttributes.appendWrite.rawValue, dataSize: 4, data: [1, 2, 3, 4]))),
            ("delete-bootorder", .smmVariableProtocol, variable(.setVariable, AccessVariablePayload.encode(guid: bootOrder.guid, name: bootOrder.name, attributes: 0, dataSize: 0, data: []))),
            ("query-info", .smmVariableProtocol, variable(.queryVariableInfo, QueryVariableInfoPayload.encode(attributes: nvBsRt))),
            ("property-set", .smmVariableProtocol, variable(.varCheckVariablePropertySet, VarCheckPropertyPayload.encode(guid: crash.guid, name: crash.name, property: VariableProperty(property: VariableProperty.readOnly)))),
            ("property-get", .smmVariableProtocol, variable(.varCheckVariablePropertyGet, VarCheckPropertyPayload.encode(guid: bootOrder.guid, name: bootOrder.name))),
            ("lock-variable", .smmVariableProtocol, variable(.lockVariable, AccessVariablePayload.encode(guid: crash.guid, name: crash.name, attributes: 0, dataSize: 0))),
            ("payload-size", .smmVariableProtocol, variable(.getPayloadSize, [UInt8](zeroed: GetPayloadSizePayload.size))),
            ("policy-is-enabled", .varCheckPolicyMmiHandler, VarCheckPolicyHeader.message(.isEnabled, parameters: [0])),
            ("policy-register", .varCheckPolicyMmiHandler, VarCheckPolicyHeader.message(.register, parameters: policy.encoded)),
            ("policy-register-var-state", .varCheckPolicyMmiHandler, VarCheckPolicyHeader.message(.register, parameters: stateLocked.encoded)),
            ("policy-dump", .varCheckPolicyMmiHandler, VarCheckPolicyHeader.message(.dump, parameters: dump + [UInt8](zeroed: 512))),
            ("policy-lock", .varCheckPolicyMmiHandler, VarCheckPolicyHeader.message(.lock)),
            ("policy-get-info", .varCheckPolicyMmiHandler, VarCheckPolicyHeader.message(.getInfo, parameters: [UInt8](zeroed: 256))),
            ("end-of-dxe", .endOfDxeEvent, []),
            ("unknown-guid", .globalVariable, [1, 2, 3]),
        ]
    }
}

/// Stores the targets start from.
enum FuzzStores {
    /// A few OVMF-like variables, then EndOfDxe, ReadyToBoot and ExitBootServices.
    static func bootedStore() -> VariableStore {
        var s = VariableStore()
        s.initializeAuthVariables()
        let bsRt = VariableAttributes.nvBsRt.rawValue
        _ = s.setVariable(VariableKey("BootOrder", .globalVariable), attributes: bsRt, data: [0, 0, 1, 0])
        _ = s.setVariable(VariableKey("Boot0000", .globalVariable), attributes: bsRt,
                          data: [1, 0, 0, 0, 0x1c, 0] + Ucs2.nulTerminatedBytes(Ucs2.units("UiApp")) + [0x7f, 0xff, 4, 0])
        _ = s.setVariable(VariableKey("Lang", .globalVariable), attributes: bsRt, data: Array("eng\0".utf8))
        _ = s.setVariable(VariableKey("PlatformLang", .globalVariable), attributes: bsRt, data: Array("en\0".utf8))
        _ = s.setVariable(VariableKey("Timeout", .globalVariable), attributes: bsRt, data: [0, 0])
        s.signalEndOfDxe()
        s.signalReadyToBoot()
        s.signalExitBootServices()
        return s
    }
}
