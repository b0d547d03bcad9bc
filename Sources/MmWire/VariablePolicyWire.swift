import EfiTypes

/// The variable policy MMI wire format (edk2 MdeModulePkg/Include/Guid/VarCheckPolicyMmi.h,
/// Protocol/VariablePolicy.h). All structures are packed.
public enum VarCheckPolicyHeader {
    /// 'V','C','P','C'.
    public static let signature: UInt32 = 0x4350_4356
    public static let revision: UInt32 = 1
    public static let size = 20
    public static let signatureOffset = 0
    public static let revisionOffset = 4
    public static let commandOffset = 8
    public static let resultOffset = 12
    /// VAR_CHECK_POLICY_MM_COMM_BUFFER_SIZE, the whole MM buffer including its 24-byte header.
    public static let commBufferSize = 16384

    public static func message(_ command: VarCheckPolicyCommand, parameters: [UInt8] = []) -> [UInt8] {
        var m = [UInt8](zeroed: size)
        m.storeLE(signature, at: signatureOffset)
        m.storeLE(revision, at: revisionOffset)
        m.storeLE(command.rawValue, at: commandOffset)
        return m + parameters
    }
}

public struct VarCheckPolicyCommand: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let disable = VarCheckPolicyCommand(rawValue: 1)
    public static let isEnabled = VarCheckPolicyCommand(rawValue: 2)
    public static let register = VarCheckPolicyCommand(rawValue: 3)
    public static let dump = VarCheckPolicyCommand(rawValue: 4)
    public static let lock = VarCheckPolicyCommand(rawValue: 5)
    public static let getInfo = VarCheckPolicyCommand(rawValue: 6)
    public static let getLockVarStateInfo = VarCheckPolicyCommand(rawValue: 7)
}

/// VAR_CHECK_POLICY_COMM_DUMP_PARAMS: PageRequested u32, TotalSize u32, PageSize u32, HasMore u8.
public enum PolicyDumpParams {
    public static let size = 13
    /// 16384 - (24 + 20 + 13).
    public static let pageSize = 16327
}

/// VARIABLE_POLICY_ENTRY (44 bytes + tails) and the lock-on-variable-state tail (18 bytes
/// + name).
public enum VariablePolicyEntryLayout {
    public static let revision: UInt32 = 0x0001_0000
    public static let fixedSize = 44
    public static let lockOnVarStateFixedSize = 18
    public static let noMaxSize: UInt32 = 0xFFFF_FFFF
}

public struct VariablePolicyLockType: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let noLock = VariablePolicyLockType(rawValue: 0)
    public static let lockNow = VariablePolicyLockType(rawValue: 1)
    public static let lockOnCreate = VariablePolicyLockType(rawValue: 2)
    public static let lockOnVarState = VariablePolicyLockType(rawValue: 3)
}

/// A variable policy, decoded. `encoded` gives back the packed entry.
public struct VariablePolicy: Equatable, Sendable {
    public var namespace: EfiGuid
    /// nil: the whole namespace. May hold '#' wildcards (one hex digit each).
    public var name: [UInt16]?
    public var minSize: UInt32 = 0
    public var maxSize: UInt32 = VariablePolicyEntryLayout.noMaxSize
    public var attributesMustHave: UInt32 = 0
    public var attributesCantHave: UInt32 = 0
    public var lockType: VariablePolicyLockType = .noLock
    /// For LOCK_ON_VAR_STATE: the variable whose one-byte value locks this one.
    public var stateNamespace: EfiGuid = .zero
    public var stateValue: UInt8 = 0
    public var stateName: [UInt16] = []

    public init(namespace: EfiGuid, name: [UInt16]?, lockType: VariablePolicyLockType = .noLock) {
        self.namespace = namespace; self.name = name; self.lockType = lockType
    }

    public var encoded: [UInt8] {
        var tail = [UInt8]()
        if lockType == .lockOnVarState {
            tail += stateNamespace.bytes
            tail += [stateValue, 0]
            tail += Ucs2.nulTerminatedBytes(stateName)
        }
        let offsetToName = VariablePolicyEntryLayout.fixedSize + tail.count
        let nameBytes = name.map { Ucs2.nulTerminatedBytes($0) } ?? []
        var e = [UInt8](zeroed: VariablePolicyEntryLayout.fixedSize)
        e.storeLE(VariablePolicyEntryLayout.revision, at: 0)
        e.storeLE(UInt16(offsetToName + nameBytes.count), at: 4)
        e.storeLE(UInt16(offsetToName), at: 6)
        e.store(namespace, at: 8)
        e.storeLE(minSize, at: 24)
        e.storeLE(maxSize, at: 28)
        e.storeLE(attributesMustHave, at: 32)
        e.storeLE(attributesCantHave, at: 36)
        e[40] = lockType.rawValue
        return e + tail + nameBytes
    }

    /// `IsValidVariablePolicyStructure`: nil for an invalid entry. `bytes` is exactly the
    /// entry (its Size).
    public init?(decoding bytes: [UInt8]) {
        let f = VariablePolicyEntryLayout.fixedSize
        guard bytes.count >= f else { return nil }
        let version = bytes.loadLE(UInt32.self, at: 0)
        let size = Int(bytes.loadLE(UInt16.self, at: 4))
        let offsetToName = Int(bytes.loadLE(UInt16.self, at: 6))
        guard size != 0, size >= f, size == bytes.count, version == VariablePolicyEntryLayout.revision else { return nil }
        namespace = EfiGuid(bytes: bytes, at: 8)
        minSize = bytes.loadLE(UInt32.self, at: 24)
        maxSize = bytes.loadLE(UInt32.self, at: 28)
        attributesMustHave = bytes.loadLE(UInt32.self, at: 32)
        attributesCantHave = bytes.loadLE(UInt32.self, at: 36)
        lockType = VariablePolicyLockType(rawValue: bytes[40])
        guard maxSize != 0, lockType.rawValue <= 3 else { return nil }
        if lockType == .lockOnVarState {
            let s = f + VariablePolicyEntryLayout.lockOnVarStateFixedSize
            guard size >= s + 2 else { return nil }
            stateNamespace = EfiGuid(bytes: bytes, at: f)
            stateValue = bytes[f + 16]
            guard let n = Ucs2.readNulTerminated(bytes, offset: s, byteCount: size - s), !n.isEmpty else { return nil }
            stateName = n
            // The state name's NUL is followed directly by the policy name.
            guard offsetToName == s + n.count * 2 + 2 else { return nil }
        } else {
            guard offsetToName == f else { return nil }
        }
        guard offsetToName <= size else { return nil }
        if size == offsetToName {
            name = nil
        } else {
            guard (size - offsetToName) % 2 == 0, size - offsetToName >= 2,
                  bytes[size - 2] == 0, bytes[size - 1] == 0,
                  let n = Ucs2.readNulTerminated(bytes, offset: offsetToName, byteCount: size - offsetToName),
                  n.count * 2 + 2 == size - offsetToName else { return nil }
            guard n.filter({ $0 == UInt16(ascii: "#") }).count <= 255 else { return nil }
            name = n
        }
    }
}
