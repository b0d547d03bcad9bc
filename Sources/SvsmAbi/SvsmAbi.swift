import EfiTypes

/// SVSM result codes, as RAX carries them back (SVSM spec §5 Table 4; COCONUT
/// `protocols/errors.rs`; Linux `sev.h`). COCONUT writes them zero-extended to 64 bits.
public struct SvsmResultCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let success = SvsmResultCode(rawValue: 0x0000_0000)
    public static let incomplete = SvsmResultCode(rawValue: 0x8000_0000)
    public static let unsupportedProtocol = SvsmResultCode(rawValue: 0x8000_0001)
    public static let unsupportedCall = SvsmResultCode(rawValue: 0x8000_0002)
    public static let invalidAddress = SvsmResultCode(rawValue: 0x8000_0003)
    public static let invalidFormat = SvsmResultCode(rawValue: 0x8000_0004)
    public static let invalidParameter = SvsmResultCode(rawValue: 0x8000_0005)
    public static let invalidRequest = SvsmResultCode(rawValue: 0x8000_0006)
    public static let busy = SvsmResultCode(rawValue: 0x8000_0007)
    /// COCONUT `PROTOCOL_BASE(code)`: protocol-specific errors start here.
    public static func protocolBase(_ code: UInt32) -> SvsmResultCode { SvsmResultCode(rawValue: 0x8000_1000 + code) }

    /// RAX as the SVSM writes it: zero-extended.
    public var rax: UInt64 { UInt64(rawValue) }

    public var name: String {
        switch self {
        case .success: return "SVSM_SUCCESS"
        case .incomplete: return "SVSM_ERR_INCOMPLETE"
        case .unsupportedProtocol: return "SVSM_ERR_UNSUPPORTED_PROTOCOL"
        case .unsupportedCall: return "SVSM_ERR_UNSUPPORTED_CALL"
        case .invalidAddress: return "SVSM_ERR_INVALID_ADDRESS"
        case .invalidFormat: return "SVSM_ERR_INVALID_FORMAT"
        case .invalidParameter: return "SVSM_ERR_INVALID_PARAMETER"
        case .invalidRequest: return "SVSM_ERR_INVALID_REQUEST"
        case .busy: return "SVSM_ERR_BUSY"
        default:
            if rawValue >= 0x8000_1000 { return "SVSM_ERR_PROTOCOL(0x\(String(rawValue - 0x8000_1000, radix: 16)))" }
            return "SVSM_RESULT(0x\(String(rawValue, radix: 16)))"
        }
    }
    public var description: String { name }
}

/// RAX on entry: protocol in bits 63:32, call ID in bits 31:0 (SVSM spec §5).
public struct SvsmCallId: Hashable, Sendable, CustomStringConvertible {
    public let protocolId: UInt32
    public let callId: UInt32
    public init(protocol p: UInt32, call c: UInt32) { protocolId = p; callId = c }
    public init(rax: UInt64) { protocolId = UInt32(rax >> 32); callId = UInt32(truncatingIfNeeded: rax) }
    public var rax: UInt64 { UInt64(protocolId) << 32 | UInt64(callId) }

    public static let coreRemapCA = SvsmCallId(protocol: 0, call: 0)
    public static let corePvalidate = SvsmCallId(protocol: 0, call: 1)
    public static let coreCreateVcpu = SvsmCallId(protocol: 0, call: 2)
    public static let coreDeleteVcpu = SvsmCallId(protocol: 0, call: 3)
    public static let coreDepositMem = SvsmCallId(protocol: 0, call: 4)
    public static let coreWithdrawMem = SvsmCallId(protocol: 0, call: 5)
    public static let coreQueryProtocol = SvsmCallId(protocol: 0, call: 6)
    public static let coreConfigureVtom = SvsmCallId(protocol: 0, call: 7)
    /// SVSM_UEFI_MM_PROTOCOL (4), SVSM_UEFI_MM_REQUEST (1).
    public static let uefiMmRequest = SvsmCallId(protocol: 4, call: 1)

    public var name: String {
        switch self {
        case .coreRemapCA: return "SVSM_CORE_REMAP_CA"
        case .corePvalidate: return "SVSM_CORE_PVALIDATE"
        case .coreCreateVcpu: return "SVSM_CORE_CREATE_VCPU"
        case .coreDeleteVcpu: return "SVSM_CORE_DELETE_VCPU"
        case .coreDepositMem: return "SVSM_CORE_DEPOSIT_MEM"
        case .coreWithdrawMem: return "SVSM_CORE_WITHDRAW_MEM"
        case .coreQueryProtocol: return "SVSM_CORE_QUERY_PROTOCOL"
        case .coreConfigureVtom: return "SVSM_CORE_CONFIGURE_VTOM"
        case .uefiMmRequest: return "SVSM_UEFI_MM_REQUEST"
        default: return "SVSM_CALL(\(protocolId):\(callId))"
        }
    }
    public var description: String { name }
}

/// The general-purpose registers of the call ABI (SVSM spec §5; Linux `struct svsm_call`).
public struct SvsmRegisters: Equatable, Sendable {
    public var rax: UInt64 = 0
    public var rcx: UInt64 = 0
    public var rdx: UInt64 = 0
    public var r8: UInt64 = 0
    public var r9: UInt64 = 0
    public init(rax: UInt64 = 0, rcx: UInt64 = 0, rdx: UInt64 = 0, r8: UInt64 = 0, r9: UInt64 = 0) {
        self.rax = rax; self.rcx = rcx; self.rdx = rdx; self.r8 = r8; self.r9 = r9
    }
}

/// The VMSA fields this model touches, at their offsets in `struct sev_es_save_area`
/// (AMD APM vol. 2 table B-4; torvalds/linux: arch/x86/include/asm/svm.h).
public enum VmsaLayout {
    public static let vmpl: UInt64 = 0x0CA
    public static let efer: UInt64 = 0x0D0
    public static let rax: UInt64 = 0x1F8
    public static let rcx: UInt64 = 0x308
    public static let rdx: UInt64 = 0x310
    public static let r8: UInt64 = 0x340
    public static let r9: UInt64 = 0x348
    public static let sevFeatures: UInt64 = 0x3B0
    /// EFER.SVME, which must be set in a VMSA handed to CREATE_VCPU.
    public static let eferSvme: UInt64 = 1 << 12
}

/// The GHCB MSR protocol values for "run VMPL0" (Linux `sev-common.h`).
public enum GhcbMsr {
    public static let msrIndex: UInt32 = 0xC001_0130
    public static let vmplRequest: UInt64 = 0x016
    public static let vmplResponse: UInt64 = 0x017
    public static func vmplRequest(level: UInt8) -> UInt64 { vmplRequest | UInt64(level) << 32 }
}

/// MSR_SVSM_CAA: a synthetic MSR whose read (#VC into the OS) returns the current vCPU's
/// CAA GPA (SVSM spec §4.2).
public enum SvsmCaaMsr {
    public static let index: UInt32 = 0xC001_F000
}
