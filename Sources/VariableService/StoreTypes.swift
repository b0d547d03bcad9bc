import EfiTypes
import MmWire

/// A stored variable. APPEND_WRITE is never stored.
public struct StoredVariable: Equatable, Sendable {
    public var attributes: VariableAttributes
    public var data: [UInt8]
    /// EFI_TIME of the last authenticated write (16 bytes), for AT variables.
    public var timestamp: EfiTime?
    /// QEMU's signer digest for an authenticated variable that is not a Secure Boot
    /// database: SHA-256 over the signer's CN and the root certificate's fingerprint
    /// (hw/uefi/var-service-pkcs7.c `build_digest_authvar`), kept so later writes can be
    /// checked against it. edk2 keeps the same fact in certdb instead, so it is nil there.
    public var digest: [UInt8]?
    public init(attributes: VariableAttributes, data: [UInt8], timestamp: EfiTime? = nil, digest: [UInt8]? = nil) {
        self.attributes = attributes; self.data = data; self.timestamp = timestamp; self.digest = digest
    }
}

/// Size limits, with OVMF 4M defaults (OvmfPkg/OvmfPkgX64.dsc, VarStore.fdf.inc).
public struct StoreLimits: Sendable, Equatable {
    /// PcdMaxVariableSize.
    public var maxVariableSize = 0x8400
    /// PcdMaxAuthVariableSize.
    public var maxAuthVariableSize = 0x8400
    /// PcdMaxVolatileVariableSize (0 → MaxVariableSize).
    public var maxVolatileVariableSize = 0x8400
    /// PcdMaxHardwareErrorVariableSize.
    public var maxHardwareErrorVariableSize = 0x8000
    /// PcdHwErrStorageSize: 0 means HR variables are unsupported (OVMF).
    public var hwErrStorageSize = 0
    /// VARIABLE_STORE_HEADER.Size of the NV store (0x3ffb8 in the 4M OVMF_VARS.fd), so a
    /// store always fits an exported 4M volume.
    public var nvStoreSize = 0x3ffb8
    /// PcdVariableStoreSize for the volatile store.
    public var volatileStoreSize = 0x40000
    /// GET_PAYLOAD_SIZE answer: 64 KiB - 24 - 16, as QEMU reports for OVMF's buffer.
    public var payloadSize = 65496
    public init() {}

    /// sizeof(AUTHENTICATED_VARIABLE_HEADER): the store is in the auth format.
    public static let variableHeaderSize = 60
    /// sizeof(VARIABLE_STORE_HEADER).
    public static let storeHeaderSize = 28

    /// edk2 record size: HEADER_ALIGN(60 + NameSize + DataSize), 4-byte aligned on x86.
    public static func recordSize(nameSize: Int, dataSize: Int) -> Int {
        (variableHeaderSize + nameSize + dataSize + 3) & ~3
    }
}

/// Boot phase flags (edk2 mEndOfDxe, ReadyToBoot, AtRuntime).
public struct BootPhase: Sendable, Equatable {
    public var endOfDxe = false
    public var readyToBoot = false
    public var atRuntime = false
    public init() {}
}
