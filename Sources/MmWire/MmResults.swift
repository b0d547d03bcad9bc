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
