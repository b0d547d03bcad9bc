import EfiTypes
import MmWire
import PeerVariableStores
import VariableService

/// Which variable store sits behind protocol 4 (docs/svsm-profiles.md lists every
/// difference, each with its source).
public enum SvsmProfile: String, CaseIterable, Sendable {
    /// edk2's VariableSmm with AuthVariableLib: what a persistent, PKCS#7-capable SVSM
    /// store converges to. The default.
    case edk2
    /// COCONUT-SVSM's protocol 4 on virtfw-varstore 0.6.x, as merged.
    case coconut
    /// QEMU's hw/uefi uefi-vars service, behind the same ABI.
    case qemu

    public var summary: String {
        switch self {
        case .edk2: return "edk2 VariableSmm + AuthVariableLib (persistent, PKCS#7)"
        case .coconut: return "COCONUT-SVSM protocol 4 on virtfw-varstore 0.6.x (functions 1-6, 8, 11; no PKCS#7; empty at each SVSM start)"
        case .qemu: return "QEMU hw/uefi uefi-vars (functions 1-6, 8, 11; GnuTLS PKCS#7; JSON persistence)"
        }
    }

    /// The choices this profile makes where its sources could not be read.
    public var openQuestions: [String] {
        switch self {
        case .coconut: return UefiVarsStore.Dialect.virtfw.openQuestions
        case .edk2, .qemu: return []
        }
    }
}

/// The edk2 firmware build: with Secure Boot (SECURE_BOOT_ENABLE, AuthVariableLib) it
/// creates certdb, certdbv, SetupMode, SecureBoot, SignatureSupport, VendorKeys and friends
/// and accepts authenticated writes; without it (AuthVariableLibNull, Debian's
/// OVMF_CODE_4M.fd) it creates none of them and refuses authenticated writes.
public enum FirmwareBuild: String, CaseIterable, Sendable {
    case secureBoot = "secure-boot"
    case plain

    /// Non-volatile variables only a Secure-Boot-capable build writes (AuthVariableLib's
    /// initialisation and the Secure Boot databases): if a VM's file holds one, its firmware
    /// has Secure Boot.
    static let evidence: Set<VariableKey> = [
        VariableKey("certdb", .certDb), VariableKey("VendorKeysNv", .vendorKeysNv),
        VariableKey("SecureBootEnable", .secureBootEnableDisable), VariableKey("CustomMode", .customModeEnable),
        VariableKey("PK", .globalVariable), VariableKey("KEK", .globalVariable),
        VariableKey("db", .imageSecurityDatabase), VariableKey("dbx", .imageSecurityDatabase),
    ]

    /// The build a VM's file shows. A variable only AuthVariableLib writes means a
    /// Secure-Boot-capable build booted the file. Variables without one mean a build without
    /// it booted the file: a mount must not write what that firmware would not. A file no
    /// firmware has booted yet (Debian's blank OVMF_VARS_4M.fd) shows nothing; the
    /// distributions' OVMF builds are Secure-Boot-capable — Debian 12's OVMF_CODE_4M.fd,
    /// the image its README.Debian calls the one for non-Secure-Boot guests, writes certdb,
    /// certdbv, VendorKeysNv, CustomMode, SetupMode, SecureBoot, SignatureSupport and
    /// VendorKeys on its first boot — so that is the default there.
    static func detect(in variables: [ExportedVariable]) -> (FirmwareBuild, reason: String) {
        if let v = variables.first(where: { evidence.contains($0.key) }) {
            return (.secureBoot, "the file holds \(v.key), which only a Secure-Boot-capable build writes")
        }
        if !variables.isEmpty {
            return (.plain, "a firmware booted the file and wrote none of the variables a Secure-Boot-capable build writes")
        }
        return (.secureBoot, "no firmware has booted the file yet; distribution OVMF builds are Secure-Boot-capable")
    }
}

/// COCONUT-SVSM's cargo features that change the store.
public struct CoconutFeatures: Sendable, Equatable {
    /// `secureboot`: PK (external management), Microsoft KEK and db, and dbx enrolled at
    /// SVSM start when the store is in setup mode.
    public var secureBoot = false
    /// `persistence` with storage present: the store survives SVSM restarts.
    public var persistence = false
    public init() {}
}
