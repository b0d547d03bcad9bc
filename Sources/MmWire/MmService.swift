import EfiTypes

/// An MM service: what a communicate buffer's HeaderGuid and message are handed to, and
/// what answers them — edk2's MM core dispatch over its MMI handlers, COCONUT's
/// `core_request_dispatch` over its store, QEMU's `uefi_vars_cmd_mm`. The SVSM's protocol 4
/// calls it with a private copy of the message; every SVSM variable store (each profile)
/// implements it.
public protocol MmService: Sendable {
    /// The reply message; nil when no handler serves `headerGuid` (the buffer then stays as
    /// it was). `bufferSize` is the size of the communicate buffer the caller handed over
    /// (RDX of SVSM_UEFI_MM_REQUEST): a service whose answers depend on the buffer (QEMU's
    /// GET_PAYLOAD_SIZE, its size checks) reads it here; the others ignore it. The message
    /// is handed over (`consuming`): a service that answers in place writes into the very
    /// copy the SVSM made, instead of copying it again.
    func handleMmRequest(headerGuid: EfiGuid, message: consuming [UInt8], bufferSize: UInt64) -> [UInt8]?

    /// The attestation manifest this store's SVSM reports for the UEFI MM service
    /// (COCONUT `uefi_mm_get_manifest`), read with the store locked.
    func uefiMmManifest() -> UefiMmManifest
}

extension MmService {
    /// A request in a buffer exactly as large as the message needs.
    public func handleMmRequest(headerGuid: EfiGuid, message: [UInt8]) -> [UInt8]? {
        handleMmRequest(headerGuid: headerGuid, message: message, bufferSize: UInt64(MmCommunicateHeader.size + message.count))
    }
}

/// The UEFI MM service's attestation manifest as COCONUT builds it (`kernel/src/protocols/
/// uefivars.rs`, `UefiMmManifest` and `UefiMmManifestFlags`): `#[repr(C, packed)]
/// { version: u32, flags: u32 }`, little-endian, 8 bytes. Flags: bit 0 persistent_nv_vars,
/// bit 1 secureboot_enabled, bit 2 secureboot_db_update, bits 3-31 reserved (zero).
public struct UefiMmManifest: Equatable, Sendable, CustomStringConvertible {
    public static let size = 8
    /// The only version COCONUT builds (and SVSM_ATTEST_SINGLE_SERVICE accepts).
    public static let currentVersion: UInt32 = 0

    public var version: UInt32
    /// Non-volatile variables reach persistent storage.
    public var persistentNvVariables: Bool
    /// Secure Boot is enabled: COCONUT sets it when the variable PK exists.
    public var secureBootEnabled: Bool
    /// db and dbx can be updated by the guest with a valid PKCS#7 signature.
    public var secureBootDbUpdate: Bool
    /// Bits 3-31 as read (zero in everything COCONUT builds).
    public var reservedFlags: UInt32

    public init(persistentNvVariables: Bool, secureBootEnabled: Bool, secureBootDbUpdate: Bool) {
        self.version = UefiMmManifest.currentVersion
        self.persistentNvVariables = persistentNvVariables
        self.secureBootEnabled = secureBootEnabled
        self.secureBootDbUpdate = secureBootDbUpdate
        self.reservedFlags = 0
    }

    public var flags: UInt32 {
        (persistentNvVariables ? 1 : 0) | (secureBootEnabled ? 2 : 0) | (secureBootDbUpdate ? 4 : 0) | reservedFlags << 3
    }

    public var bytes: [UInt8] {
        var b: [UInt8] = []
        b.appendLE(version)
        b.appendLE(flags)
        return b
    }

    /// Decodes the 8 bytes; nil when they are not exactly 8.
    public init?(bytes: [UInt8]) {
        guard bytes.count == UefiMmManifest.size else { return nil }
        version = bytes.loadLE(UInt32.self, at: 0)
        let f = bytes.loadLE(UInt32.self, at: 4)
        persistentNvVariables = f & 1 != 0
        secureBootEnabled = f & 2 != 0
        secureBootDbUpdate = f & 4 != 0
        reservedFlags = f >> 3
    }

    public var description: String {
        "version \(version), persistent_nv_vars=\(persistentNvVariables ? 1 : 0), secureboot_enabled=\(secureBootEnabled ? 1 : 0), "
            + "secureboot_db_update=\(secureBootDbUpdate ? 1 : 0)" + (reservedFlags != 0 ? ", reserved bits 0x\(String(reservedFlags << 3, radix: 16))" : "")
    }
}
