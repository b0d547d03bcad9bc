import SvsmEfiVars

/// The fuzz targets, one per layer that reads bytes it does not control.
/// Each `run` checks properties beyond "does not crash"; a violation stops the process.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// (a) Protocol 4 and the core protocol as the SVSM sees them: guest memory contents
    /// and registers chosen by a hostile guest.
    case svsmProtocol = "svsm-protocol"
    /// (b) The MM variable and policy payload decoders behind the HeaderGuid dispatch.
    case mmPayload = "mm-payload"
    /// (c) The efivarfs write path: any name, any attributes and data.
    case efivarfsWrite = "efivarfs-write"
    /// (d) The OVMF_VARS.fd and QEMU JSON importers (and their writers, round trip).
    case variableFile = "variable-file"
    /// (e) The authenticated-variable parser: EFI_VARIABLE_AUTHENTICATION_2 + PKCS#7.
    case authVariable = "auth-variable"
    /// (f) The peer stores (QEMU uefi-vars, COCONUT virtfw-varstore) behind protocol 4.
    case peerStore = "peer-store"

    /// Runs one input; a broken property is thrown with what broke. Safe to call many
    /// times in one process (libFuzzer does), and from several threads (the test runner
    /// does): the targets keep state between inputs (a booted machine, a shadow of guest
    /// RAM), so one input runs at a time.
    public func run(_ data: [UInt8]) throws(PropertyViolation) {
        try FuzzTarget.serial.withLock { () throws(PropertyViolation) in try runAlone(data) }
    }

    private static let serial = Lock()

    private func runAlone(_ data: [UInt8]) throws(PropertyViolation) {
        switch self {
        case .svsmProtocol: try SvsmProtocolTarget.shared.run(data)
        case .mmPayload: try MmPayloadTarget.shared.run(data)
        case .efivarfsWrite: try EfivarfsWriteTarget.shared.run(data)
        case .variableFile: try VariableFileTarget.run(data)
        case .authVariable: try AuthVariableTarget.shared.run(data)
        case .peerStore: try PeerStoreTarget.shared.run(data)
        }
    }

    /// The seed corpus, built from the real wire formats with the library's own encoders
    /// and from Debian's OVMF files when they are installed.
    public func seeds() -> [(name: String, bytes: [UInt8])] {
        switch self {
        case .svsmProtocol: return SvsmProtocolTarget.seeds()
        case .mmPayload: return MmPayloadTarget.seeds()
        case .efivarfsWrite: return EfivarfsWriteTarget.seeds()
        case .variableFile: return VariableFileTarget.seeds()
        case .authVariable: return AuthVariableTarget.seeds()
        case .peerStore: return PeerStoreTarget.seeds()
        }
    }
}
