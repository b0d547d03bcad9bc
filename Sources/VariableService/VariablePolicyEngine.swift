import EfiTypes
import MmWire

/// VariablePolicyLib (edk2 MdeModulePkg/Library/VariablePolicyLib/VariablePolicyLib.c):
/// registration, best-match lookup, and the checks on SetVariable.
public struct VariablePolicyEngine: Sendable, Equatable {
    public internal(set) var policies: [VariablePolicy] = []
    public internal(set) var disabled = false
    /// The interface is locked (LOCK command, or EndOfDxe as edk2's MM driver does).
    public internal(set) var locked = false
    /// The DUMP snapshot between page requests.
    var dumpSnapshot: [UInt8]?

    public init() {}

    /// `EvaluatePolicyMatch`: nil if no match, else the priority (0 = exact, n = number of
    /// '#' wildcards, 255 = whole namespace).
    static func matchPriority(_ p: VariablePolicy, name: [UInt16], guid: EfiGuid) -> Int? {
        guard p.namespace == guid else { return nil }
        guard let pattern = p.name else { return 255 }
        guard pattern.count == name.count else { return nil }
        var priority = 0
        for (a, b) in zip(pattern, name) {
            if a == UInt16(ascii: "#") {
                guard isHexDigit(b) else { return nil }
                priority += 1
            } else if a != b {
                return nil
            }
        }
        return priority
    }

    static func isHexDigit(_ u: UInt16) -> Bool {
        (0x30...0x39).contains(u) || (0x41...0x46).contains(u) || (0x61...0x66).contains(u)
    }

    /// `GetBestPolicyMatch`: the lowest priority wins, ties go to the first registered.
    public func bestMatch(name: [UInt16], guid: EfiGuid) -> VariablePolicy? {
        var best: (VariablePolicy, Int)?
        for p in policies {
            guard let pr = VariablePolicyEngine.matchPriority(p, name: name, guid: guid) else { continue }
            if best == nil || pr < best!.1 { best = (p, pr) }
            if pr == 0 { break }
        }
        return best?.0
    }

    /// `RegisterVariablePolicy`.
    public mutating func register(_ p: VariablePolicy) -> EfiStatus {
        if locked { return .writeProtected }
        if let existing = bestMatch(name: p.name ?? [], guid: p.namespace),
           existing.name == p.name, existing.namespace == p.namespace {
            return .alreadyStarted
        }
        policies.append(p)
        return .success
    }

    /// `ValidateSetVariable`: `lookup` answers (exists, size, first byte) for a variable.
    func validate(name: [UInt16], guid: EfiGuid, attributes: UInt32, dataSize: Int,
                  lookup: (VariableKey) -> StoredVariable?) -> EfiStatus {
        if disabled { return .success }
        guard let p = bestMatch(name: name, guid: guid) else { return .success }
        let isDelete = dataSize == 0 && attributes & VariableAttributes.appendWrite.rawValue == 0
        if !isDelete {
            if p.minSize > 0 && dataSize < Int(p.minSize) { return .invalidParameter }
            if p.maxSize > 0 && p.maxSize != VariablePolicyEntryLayout.noMaxSize && dataSize > Int(p.maxSize) { return .invalidParameter }
            if attributes & p.attributesMustHave != p.attributesMustHave || attributes & p.attributesCantHave != 0 {
                return .invalidParameter
            }
        }
        switch p.lockType {
        case .lockNow:
            return .writeProtected
        case .lockOnCreate:
            return lookup(VariableKey(guid: guid, name: name)) != nil ? .writeProtected : .success
        case .lockOnVarState:
            if let s = lookup(VariableKey(guid: p.stateNamespace, name: p.stateName)), s.data.count == 1, s.data[0] == p.stateValue {
                return .writeProtected
            }
            return .success
        default:
            return .success
        }
    }

    /// The whole table as DUMP returns it: the packed entries, concatenated.
    var dumpBytes: [UInt8] { policies.flatMap(\.encoded) }
}
