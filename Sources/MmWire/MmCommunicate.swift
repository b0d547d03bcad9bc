import EfiTypes

/// EFI_MM_COMMUNICATE_HEADER (v1, packed; edk2 MdePkg/Include/Protocol/MmCommunication.h;
/// Linux `struct efi_mm_communicate_header`).
///
/// | off | size | field |
/// |---|---|---|
/// | 0 | 16 | HeaderGuid |
/// | 16 | 8 | MessageLength (excludes this header) |
/// | 24 | n | Data |
public enum MmCommunicateHeader {
    public static let size = 24
    public static let headerGuidOffset = 0
    public static let messageLengthOffset = 16

    /// A whole buffer: header followed by `message`.
    public static func encode(headerGuid: EfiGuid, message: [UInt8]) -> [UInt8] {
        // One allocation, the message copied in as one block.
        var out = [UInt8](zeroed: size + message.count)
        out.store(headerGuid, at: headerGuidOffset)
        out.storeLE(UInt64(message.count), at: messageLengthOffset)
        out.replace(at: size, with: message)
        return out
    }
}

/// SMM variable protocol function numbers (edk2 MdeModulePkg/Include/Guid/SmmVariableCommon.h;
/// 12-14 from VariableSmm.c and Linux `mm_communication.h`).
public struct SmmVariableFunction: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let getVariable = SmmVariableFunction(rawValue: 1)
    public static let getNextVariableName = SmmVariableFunction(rawValue: 2)
    public static let setVariable = SmmVariableFunction(rawValue: 3)
    public static let queryVariableInfo = SmmVariableFunction(rawValue: 4)
    public static let readyToBoot = SmmVariableFunction(rawValue: 5)
    public static let exitBootService = SmmVariableFunction(rawValue: 6)
    public static let getStatistics = SmmVariableFunction(rawValue: 7)
    public static let lockVariable = SmmVariableFunction(rawValue: 8)
    public static let varCheckVariablePropertySet = SmmVariableFunction(rawValue: 9)
    public static let varCheckVariablePropertyGet = SmmVariableFunction(rawValue: 10)
    public static let getPayloadSize = SmmVariableFunction(rawValue: 11)
    public static let initRuntimeVariableCacheContext = SmmVariableFunction(rawValue: 12)
    public static let syncRuntimeCache = SmmVariableFunction(rawValue: 13)
    public static let getRuntimeCacheInfo = SmmVariableFunction(rawValue: 14)

    public var name: String {
        switch rawValue {
        case 1: return "GET_VARIABLE"
        case 2: return "GET_NEXT_VARIABLE_NAME"
        case 3: return "SET_VARIABLE"
        case 4: return "QUERY_VARIABLE_INFO"
        case 5: return "READY_TO_BOOT"
        case 6: return "EXIT_BOOT_SERVICE"
        case 7: return "GET_STATISTICS"
        case 8: return "LOCK_VARIABLE"
        case 9: return "VAR_CHECK_VARIABLE_PROPERTY_SET"
        case 10: return "VAR_CHECK_VARIABLE_PROPERTY_GET"
        case 11: return "GET_PAYLOAD_SIZE"
        case 12: return "INIT_RUNTIME_VARIABLE_CACHE_CONTEXT"
        case 13: return "SYNC_RUNTIME_CACHE"
        case 14: return "GET_RUNTIME_CACHE_INFO"
        default: return "FUNCTION_\(rawValue)"
        }
    }
    public var description: String { name }
}

/// SMM_VARIABLE_COMMUNICATE_HEADER at message offset 0: Function (UINTN), ReturnStatus
/// (EFI_STATUS), then the payload.
public enum SmmVariableHeader {
    public static let size = 16
    public static let functionOffset = 0
    public static let returnStatusOffset = 8

    /// A message: the header with ReturnStatus 0 followed by `payload`.
    public static func message(_ function: SmmVariableFunction, payload: [UInt8]) -> [UInt8] {
        // One allocation, the payload copied in as one block.
        var out = [UInt8](zeroed: size + payload.count)
        out.storeLE(function.rawValue, at: functionOffset)
        out.replace(at: size, with: payload)
        return out
    }
}

/// SMM_VARIABLE_COMMUNICATE_ACCESS_VARIABLE (GetVariable, SetVariable). Offsets from the
/// payload start; `OFFSET_OF(…, Name) = 36`.
public enum AccessVariablePayload {
    public static let guidOffset = 0
    public static let dataSizeOffset = 16
    public static let nameSizeOffset = 24
    public static let attributesOffset = 32
    public static let nameOffset = 36

    public static func encode(guid: EfiGuid, name: [UInt16], attributes: UInt32, dataSize: Int, data: [UInt8]? = nil) -> [UInt8] {
        let nameSize = name.count * 2 + 2
        var out = [UInt8](zeroed: nameOffset + nameSize + dataSize)
        out.store(guid, at: guidOffset)
        out.storeLE(UInt64(dataSize), at: dataSizeOffset)
        out.storeLE(UInt64(nameSize), at: nameSizeOffset)
        out.storeLE(attributes, at: attributesOffset)
        out.storeUcs2(name, at: nameOffset)
        if let d = data { out.replace(at: nameOffset + nameSize, with: d) }
        return out
    }
}

/// SMM_VARIABLE_COMMUNICATE_GET_NEXT_VARIABLE_NAME (also LOCK_VARIABLE).
public enum GetNextVariableNamePayload {
    public static let guidOffset = 0
    public static let nameSizeOffset = 16
    public static let nameOffset = 24

    /// `nameBufferSize` is the caller's output buffer; the name area is zero-filled up to
    /// it, as the edk2 client and tee_stmm_efi do.
    public static func encode(guid: EfiGuid, name: [UInt16], nameBufferSize: Int) -> [UInt8] {
        let area = max(nameBufferSize, name.count * 2 + 2)
        var out = [UInt8](zeroed: nameOffset + area)
        out.store(guid, at: guidOffset)
        out.storeLE(UInt64(nameBufferSize), at: nameSizeOffset)
        out.storeUcs2(name, at: nameOffset)
        return out
    }
}

/// SMM_VARIABLE_COMMUNICATE_QUERY_VARIABLE_INFO: sizeof = 32 in edk2 (28 bytes of fields
/// and 4 of tail padding); the handler requires a payload of at least 32.
public enum QueryVariableInfoPayload {
    public static let maximumVariableStorageSizeOffset = 0
    public static let remainingVariableStorageSizeOffset = 8
    public static let maximumVariableSizeOffset = 16
    public static let attributesOffset = 24
    public static let size = 32

    public static func encode(attributes: UInt32) -> [UInt8] {
        var out = [UInt8](zeroed: size)
        out.storeLE(attributes, at: attributesOffset)
        return out
    }
}

/// SMM_VARIABLE_COMMUNICATE_VAR_CHECK_VARIABLE_PROPERTY: Guid @0, NameSize @16,
/// VAR_CHECK_VARIABLE_PROPERTY (24 bytes) @24, Name @48.
public enum VarCheckPropertyPayload {
    public static let guidOffset = 0
    public static let nameSizeOffset = 16
    public static let propertyOffset = 24
    public static let nameOffset = 48

    public static func encode(guid: EfiGuid, name: [UInt16], property: VariableProperty = VariableProperty()) -> [UInt8] {
        let nameSize = name.count * 2 + 2
        var out = [UInt8](zeroed: nameOffset + nameSize)
        out.store(guid, at: guidOffset)
        out.storeLE(UInt64(nameSize), at: nameSizeOffset)
        property.store(into: &out, at: propertyOffset)
        out.storeUcs2(name, at: nameOffset)
        return out
    }
}

/// VAR_CHECK_VARIABLE_PROPERTY (edk2 MdeModulePkg/Include/Protocol/VarCheck.h).
public struct VariableProperty: Equatable, Sendable {
    public static let revision: UInt16 = 0x0001
    public static let readOnly: UInt16 = 0x0001
    public static let size = 24

    public var revision: UInt16 = VariableProperty.revision
    public var property: UInt16 = 0
    public var attributes: UInt32 = 0
    public var minSize: UInt64 = 1
    public var maxSize: UInt64 = UInt64.max
    public init(revision: UInt16 = VariableProperty.revision, property: UInt16 = 0, attributes: UInt32 = 0, minSize: UInt64 = 1, maxSize: UInt64 = UInt64.max) {
        self.revision = revision; self.property = property; self.attributes = attributes
        self.minSize = minSize; self.maxSize = maxSize
    }

    public var isReadOnly: Bool { property & VariableProperty.readOnly != 0 }

    /// Writes the 24 bytes at `offset` of a message being built (no array of its own).
    public func store(into out: inout [UInt8], at offset: Int) {
        out.storeLE(revision, at: offset)
        out.storeLE(property, at: offset + 2)
        out.storeLE(attributes, at: offset + 4)
        out.storeLE(minSize, at: offset + 8)
        out.storeLE(maxSize, at: offset + 16)
    }

    public init(decoding b: [UInt8], at offset: Int) {
        revision = b.loadLE(UInt16.self, at: offset)
        property = b.loadLE(UInt16.self, at: offset + 2)
        attributes = b.loadLE(UInt32.self, at: offset + 4)
        minSize = b.loadLE(UInt64.self, at: offset + 8)
        maxSize = b.loadLE(UInt64.self, at: offset + 16)
    }
}

/// SMM_VARIABLE_COMMUNICATE_GET_PAYLOAD_SIZE: VariablePayloadSize (UINTN).
public enum GetPayloadSizePayload {
    public static let size = 8
}
