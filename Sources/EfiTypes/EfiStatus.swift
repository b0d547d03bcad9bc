/// EFI_STATUS as the 64-bit value edk2 writes into ReturnStatus (UINTN on x86-64; the
/// error bit is bit 63). Names follow the UEFI specification, Appendix D.
public struct EfiStatus: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    static let errorBit: UInt64 = 1 << 63
    private static func error(_ code: UInt64) -> EfiStatus { EfiStatus(rawValue: errorBit | code) }

    public static let success = EfiStatus(rawValue: 0)
    public static let loadError = error(1)
    public static let invalidParameter = error(2)
    public static let unsupported = error(3)
    public static let badBufferSize = error(4)
    public static let bufferTooSmall = error(5)
    public static let notReady = error(6)
    public static let deviceError = error(7)
    public static let writeProtected = error(8)
    public static let outOfResources = error(9)
    public static let volumeCorrupted = error(10)
    public static let notFound = error(14)
    public static let accessDenied = error(15)
    public static let timeout = error(18)
    public static let alreadyStarted = error(20)
    public static let aborted = error(21)
    public static let securityViolation = error(26)

    public var isError: Bool { rawValue & EfiStatus.errorBit != 0 }

    private static let names: [UInt64: String] = [
        0: "EFI_SUCCESS", 1: "EFI_LOAD_ERROR", 2: "EFI_INVALID_PARAMETER", 3: "EFI_UNSUPPORTED",
        4: "EFI_BAD_BUFFER_SIZE", 5: "EFI_BUFFER_TOO_SMALL", 6: "EFI_NOT_READY",
        7: "EFI_DEVICE_ERROR", 8: "EFI_WRITE_PROTECTED", 9: "EFI_OUT_OF_RESOURCES",
        10: "EFI_VOLUME_CORRUPTED", 14: "EFI_NOT_FOUND", 15: "EFI_ACCESS_DENIED",
        18: "EFI_TIMEOUT", 20: "EFI_ALREADY_STARTED", 21: "EFI_ABORTED", 26: "EFI_SECURITY_VIOLATION",
    ]

    public var name: String {
        if rawValue == 0 { return "EFI_SUCCESS" }
        if isError, let n = EfiStatus.names[rawValue & ~EfiStatus.errorBit] { return n }
        return "EFI_STATUS(0x\(String(rawValue, radix: 16)))"
    }
    public var description: String { name }
}

/// An EFI_STATUS that is an error, for typed throws and `Result`.
public struct EfiStatusError: Error, Equatable, Sendable, CustomStringConvertible {
    public let status: EfiStatus
    public init(_ status: EfiStatus) { precondition(status.isError); self.status = status }
    public static let invalidParameter = EfiStatusError(.invalidParameter)
    public static let unsupported = EfiStatusError(.unsupported)
    public static let notFound = EfiStatusError(.notFound)
    public static let writeProtected = EfiStatusError(.writeProtected)
    public static let outOfResources = EfiStatusError(.outOfResources)
    public static let securityViolation = EfiStatusError(.securityViolation)
    public static let accessDenied = EfiStatusError(.accessDenied)
    public var description: String { status.name }
}
