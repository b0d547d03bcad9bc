/// The SVSM Calling Area: one 4 KiB page per vCPU (SVSM spec §5 Table 2; Linux
/// `struct svsm_ca`; COCONUT `SvsmCaa`).
///
/// | offset | size | field |
/// |---|---|---|
/// | 0x000 | 1 | call_pending |
/// | 0x001 | 1 | mem_available |
/// | 0x002 | 1 | no_eoi_required (COCONUT lazy EOI; reserved in the spec) |
/// | 0x003 | 5 | reserved |
/// | 0x008 | 4088 | svsm_buffer |
public enum CallingArea {
    public static let callPendingOffset: UInt64 = 0x000
    public static let memAvailableOffset: UInt64 = 0x001
    public static let noEoiRequiredOffset: UInt64 = 0x002
    /// The first 8 bytes belong to the protocol; the SVSM refuses buffers that overlap them.
    public static let headerSize: UInt64 = 8
    public static let bufferOffset: UInt64 = 0x008
    public static let size: UInt64 = 4096
}

/// The SNP secrets page fields that describe the SVSM (SVSM spec §4.1; Linux
/// `struct snp_secrets_page`; COCONUT `sev/secrets_page.rs`).
public enum SecretsPage {
    public static let svsmBaseOffset: UInt64 = 0x140
    public static let svsmSizeOffset: UInt64 = 0x148
    public static let svsmCaaOffset: UInt64 = 0x150
    public static let svsmMaxVersionOffset: UInt64 = 0x158
    public static let svsmGuestVmplOffset: UInt64 = 0x15C

    public struct SvsmFields: Equatable, Sendable {
        public var base: GuestPhysicalAddress
        public var size: UInt64
        public var caa: GuestPhysicalAddress
        public var maxVersion: UInt32
        public var guestVmpl: UInt8
        public init(base: GuestPhysicalAddress, size: UInt64, caa: GuestPhysicalAddress, maxVersion: UInt32, guestVmpl: UInt8) {
            self.base = base; self.size = size; self.caa = caa; self.maxVersion = maxVersion; self.guestVmpl = guestVmpl
        }
    }
}
