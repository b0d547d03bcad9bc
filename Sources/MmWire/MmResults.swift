import EfiTypes

/// What GetVariable answers, as the SMM_VARIABLE_COMMUNICATE_ACCESS_VARIABLE reply carries it:
/// the data with its attributes, or the size it needs (EFI_BUFFER_TOO_SMALL), or an error.
/// The variable service produces it; the driver decodes it from the bytes.
public enum GetVariableResult: Equatable, Sendable {
    case found(attributes: VariableAttributes, data: [UInt8])
    /// The caller's buffer is too small: the size needed and the attributes.
    case bufferTooSmall(attributes: VariableAttributes, size: Int)
    case error(EfiStatus)
}

/// What GetNextVariableName answers (SMM_VARIABLE_COMMUNICATE_GET_NEXT_VARIABLE_NAME).
public enum GetNextVariableNameResult: Equatable, Sendable {
    case next(VariableKey)
    /// The name buffer is too small: the NameSize needed.
    case bufferTooSmall(needed: Int)
    case error(EfiStatus)
}

/// What QueryVariableInfo answers (SMM_VARIABLE_COMMUNICATE_QUERY_VARIABLE_INFO).
public struct VariableStorageInfo: Equatable, Sendable {
    public var maximumVariableStorageSize: UInt64
    public var remainingVariableStorageSize: UInt64
    public var maximumVariableSize: UInt64
    public init(maximumVariableStorageSize: UInt64, remainingVariableStorageSize: UInt64, maximumVariableSize: UInt64) {
        self.maximumVariableStorageSize = maximumVariableStorageSize
        self.remainingVariableStorageSize = remainingVariableStorageSize
        self.maximumVariableSize = maximumVariableSize
    }
}

/// Decoding a variable-protocol reply, as a client reads it: the Linux driver and OVMF's
/// runtime variable services read the same fields the same way. A reply that claims more
/// than it holds is the service's error (EFI_DEVICE_ERROR): nothing is read past what came
/// back.
public enum MmVariableReply {
    /// GET_VARIABLE's reply; `asked` is the DataSize the request offered (a reply with more
    /// data than that is refused).
    public static func getVariable(status: EfiStatus, reply: [UInt8], asked: Int? = nil) -> GetVariableResult {
        guard status == .success || status == .bufferTooSmall else { return .error(status) }
        guard reply.count >= AccessVariablePayload.nameOffset else { return .error(.deviceError) }
        let size = Int(clamping: reply.loadLE(UInt64.self, at: AccessVariablePayload.dataSizeOffset))
        let attributes = VariableAttributes(rawValue: reply.loadLE(UInt32.self, at: AccessVariablePayload.attributesOffset))
        if status == .bufferTooSmall { return .bufferTooSmall(attributes: attributes, size: size) }
        let nameSize = Int(clamping: reply.loadLE(UInt64.self, at: AccessVariablePayload.nameSizeOffset))
        let (start, overflow) = AccessVariablePayload.nameOffset.addingReportingOverflow(nameSize)
        guard !overflow, size <= (asked ?? size), start <= reply.count, size <= reply.count - start else { return .error(.deviceError) }
        return .found(attributes: attributes, data: Array(reply[start..<(start + size)]))
    }

    /// GET_NEXT_VARIABLE_NAME's reply.
    public static func getNextVariableName(status: EfiStatus, reply: [UInt8]) -> GetNextVariableNameResult {
        guard reply.count >= GetNextVariableNamePayload.nameOffset else { return .error(.deviceError) }
        let size = Int(clamping: reply.loadLE(UInt64.self, at: GetNextVariableNamePayload.nameSizeOffset))
        switch status {
        case .success:
            guard let name = Ucs2.readNulTerminated(reply, offset: GetNextVariableNamePayload.nameOffset,
                                                    byteCount: min(size, reply.count - GetNextVariableNamePayload.nameOffset)) else {
                return .error(.deviceError)
            }
            return .next(VariableKey(guid: EfiGuid(bytes: reply, at: GetNextVariableNamePayload.guidOffset), name: name))
        case .bufferTooSmall: return .bufferTooSmall(needed: size)
        default: return .error(status)
        }
    }

    /// QUERY_VARIABLE_INFO's reply; a non-error status other than SUCCESS is a device error.
    public static func queryVariableInfo(status: EfiStatus, reply: [UInt8]) -> Result<VariableStorageInfo, EfiStatusError> {
        guard status == .success else { return .failure(EfiStatusError(status.isError ? status : .deviceError)) }
        guard reply.count >= QueryVariableInfoPayload.size else { return .failure(EfiStatusError(.deviceError)) }
        return .success(VariableStorageInfo(
            maximumVariableStorageSize: reply.loadLE(UInt64.self, at: QueryVariableInfoPayload.maximumVariableStorageSizeOffset),
            remainingVariableStorageSize: reply.loadLE(UInt64.self, at: QueryVariableInfoPayload.remainingVariableStorageSizeOffset),
            maximumVariableSize: reply.loadLE(UInt64.self, at: QueryVariableInfoPayload.maximumVariableSizeOffset)))
    }
}
