import EfiTypes
import MmWire
import VariableService

/// A variable policy as hw/uefi/var-service-policy.c keeps it: the entry's fields, its name
/// (NUL not required) and the LOCK_ON_VAR_STATE target.
struct UefiVarsPolicy: Sendable {
    enum Lock: Sendable, Equatable {
        case none, lockNow, lockOnCreate
        case lockOnVarState(namespace: EfiGuid, name: [UInt8], value: UInt8)
        /// A lock type the engine does not know: the entry is kept and never refuses.
        case unknown
    }
    /// sizeof(variable_policy_entry): version, size, offset_to_name, namespace, min and max
    /// size, must- and cant-have attributes, lock type, 3 bytes of padding.
    static let entrySize = 44
    /// sizeof(variable_lock_on_var_state): namespace, value, reserved.
    static let lockOnVarStateSize = 18

    let namespace: EfiGuid
    /// The name bytes (`size - offset_to_name`).
    let name: [UInt8]
    let minSize: UInt32
    let maxSize: UInt32
    let mustHave: UInt32
    let cantHave: UInt32
    let lock: Lock

    var units: [UInt16] { UefiVarsName.canonical(name) }
    /// `calc_policy`: '#' wildcards, for the priority order.
    var hashmarks: Int { units.filter { $0 == 0x23 }.count }
}

extension UefiVarsStore {
    /// `uefi_vars_add_policy`: sorted by priority — fewer wildcards first, namespace-wide
    /// (empty-name) policies last — and at the tail of its group.
    mutating func addPolicy(_ p: UefiVarsPolicy) {
        let at = policies.firstIndex { q in q.hashmarks > p.hashmarks || (q.name.isEmpty && !p.name.isEmpty) }
        policies.insert(p, at: at ?? policies.count)
    }

    /// `uefi_vars_policy_check`: only after EndOfDxe; the first matching policy decides.
    func policyCheck(_ r: UefiVarRecord, isNew: Bool) -> EfiStatus {
        guard endOfDxe else { return .success }
        guard let p = policies.first(where: { $0.namespace == r.key.guid && UefiVarsName.wildcardMatch(pattern: $0.units, name: r.key.name) })
        else { return .success }
        let attrs = r.value.attributes.rawValue
        if attrs & p.mustHave != p.mustHave { return .invalidParameter }
        if attrs & p.cantHave != 0 { return .invalidParameter }
        let size = UInt64(r.value.data.count)
        if size < UInt64(p.minSize) || size > UInt64(p.maxSize) { return .invalidParameter }
        switch p.lock {
        case .none, .unknown: return .success
        case .lockNow: return .writeProtected
        case .lockOnCreate: return isNew ? .success : .writeProtected
        case .lockOnVarState(let ns, let name, let value):
            let target = VariableKey(guid: ns, name: UefiVarsName.canonical(name))
            if let v = list.find(target), v.value.data.count == 1, v.value.data[0] == value { return .writeProtected }
            return .success
        }
    }

    /// `uefi_vars_mm_check_policy_proto`. Signature and revision are not checked. Nil when
    /// the message is shorter than the header (a device error, nothing written).
    mutating func policyProtocol(_ b: inout MessageBuffer) -> Int? {
        guard b.length >= VarCheckPolicyHeader.size else { return nil }
        let command = b.u32(at: 8)
        var result: EfiStatus
        switch command {
        case VarCheckPolicyCommand.isEnabled.rawValue:
            if b.length < VarCheckPolicyHeader.size + 1 {
                result = .badBufferSize
            } else {
                b.set([1], at: VarCheckPolicyHeader.size)
                result = .success
            }
        case VarCheckPolicyCommand.register.rawValue:
            result = policyLocked ? .writeProtected : registerPolicy(b)
        case VarCheckPolicyCommand.lock.rawValue:
            policyLocked = true
            result = .success
        default:
            // DISABLE, DUMP, GET_INFO, GET_LOCK_VAR_STATE_INFO and unknown commands.
            result = .unsupported
        }
        b.set(result.rawValue, at: 12)
        return VarCheckPolicyHeader.size
    }

    /// `uefi_vars_mm_check_policy_register`: framing, a name that is valid UCS-2 (no NUL
    /// needed), no exact duplicate. Version and MaxSize are not checked.
    private mutating func registerPolicy(_ b: MessageBuffer) -> EfiStatus {
        let e = VarCheckPolicyHeader.size
        guard b.length >= e + UefiVarsPolicy.entrySize else { return .badBufferSize }
        let size = Int(b.u16(at: e + 4)), nameOffset = Int(b.u16(at: e + 6))
        guard b.length >= e + size else { return .badBufferSize }
        guard size >= UefiVarsPolicy.entrySize, nameOffset >= UefiVarsPolicy.entrySize else { return .badBufferSize }
        let type = b.bytes[e + 40]
        if type == 3 && nameOffset < UefiVarsPolicy.entrySize + UefiVarsPolicy.lockOnVarStateSize { return .badBufferSize }
        guard size >= nameOffset else { return .badBufferSize }
        guard UefiVarsName.qemuCheck(b, at: e + nameOffset, len: UInt64(size - nameOffset), mustBeTerminated: false) == .valid else {
            return .invalidParameter
        }
        let namespace = EfiGuid(bytes: b.bytes, at: e + 8)
        let name = b.slice(e + nameOffset, size - nameOffset)
        let units = UefiVarsName.canonical(name)
        if policies.contains(where: { $0.namespace == namespace && $0.units == units }) { return .alreadyStarted }
        let lock: UefiVarsPolicy.Lock
        switch type {
        case 0: lock = .none
        case 1: lock = .lockNow
        case 2: lock = .lockOnCreate
        case 3:
            let s = e + UefiVarsPolicy.entrySize
            lock = .lockOnVarState(namespace: EfiGuid(bytes: b.bytes, at: s), name: b.slice(s + UefiVarsPolicy.lockOnVarStateSize,
                                   nameOffset - UefiVarsPolicy.entrySize - UefiVarsPolicy.lockOnVarStateSize), value: b.bytes[s + 16])
        default: lock = .unknown
        }
        addPolicy(UefiVarsPolicy(namespace: namespace, name: name, minSize: b.u32(at: e + 24), maxSize: b.u32(at: e + 28),
                                 mustHave: b.u32(at: e + 32), cantHave: b.u32(at: e + 36), lock: lock))
        return .success
    }
}
