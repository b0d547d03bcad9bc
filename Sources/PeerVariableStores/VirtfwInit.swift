import EfiTypes
import VariableService

/// COCONUT-SVSM built with cargo feature `secureboot`: the keys `uefi_mm_protocol_init`
/// enrols when the store is in setup mode (`enroll_pk_mgmt`, `enroll_kek_microsoft`,
/// `enroll_db_microsoft_uefi`, `enroll_dbx_native`, virtfw-varstore `src/enroll.rs`). Every
/// database is written with `set_unchecked` (no checks) and attributes NV|BS|RT|AT.
public struct VirtfwEnrolment: Sendable, Equatable {
    public init() {}

    /// EFI_CERT_EXTERNAL_MANAGEMENT: a PK that stands for "the platform is managed
    /// elsewhere" — one signature of one zero byte (`EfiSigDB::new_pk_external_mgmt`, the
    /// shape python virt-firmware's `add_external_mgmt` writes).
    static let certExternalManagement = EfiGuid("452e8ced-dfff-4b8c-ae01-5118862e682c")!
    /// The owner virt-firmware gives the keys it enrols for a managed platform.
    static let ovmfEnrollDefaultKeys = EfiGuid("a0baa8a3-041d-48a8-bc87-c36d121b5e3d")!
    static let microsoftVendor = EfiGuid("77fa9abd-0359-4d32-bd60-28f4e78f784b")!

    var pk: [UInt8] { UefiVarsEnrolmentList.list(VirtfwEnrolment.certExternalManagement, owner: VirtfwEnrolment.ovmfEnrollDefaultKeys, [[0]]) }
    var kek: [UInt8] {
        [MicrosoftCertificates.kek2011, MicrosoftCertificates.kek2023].flatMap {
            UefiVarsEnrolmentList.list(UefiVarsAuth.certX509, owner: VirtfwEnrolment.microsoftVendor, [$0.der])
        }
    }
    /// MICROSOFT_DB_UEFI_2011 and MICROSOFT_DB_UEFI_2023 (enroll.rs).
    var db: [UInt8] {
        [MicrosoftCertificates.uefiCa2011, MicrosoftCertificates.uefiCa2023].flatMap {
            UefiVarsEnrolmentList.list(UefiVarsAuth.certX509, owner: VirtfwEnrolment.microsoftVendor, [$0.der])
        }
    }
    /// The placeholder: SHA-256 of nothing (see `Dialect.virtfw.openQuestions`).
    var dbx: [UInt8] {
        UefiVarsEnrolmentList.list(UefiVarsAuth.certSha256, owner: VirtfwEnrolment.ovmfEnrollDefaultKeys, [Pkcs7.digest(.sha256, [])])
    }
}

enum UefiVarsEnrolmentList {
    /// One EFI_SIGNATURE_LIST of `type` with equal-sized signatures, each owned by `owner`.
    static func list(_ type: EfiGuid, owner: EfiGuid, _ signatures: [[UInt8]]) -> [UInt8] {
        SignatureList(type: type, signatureSize: 16 + (signatures.first?.count ?? 0), entries: signatures.map { owner.bytes + $0 }).encoded
    }
}

extension UefiVarsStore {
    /// shim's `FB_NO_REBOOT` (vendor GUID 605dab50-…, NV|BS|RT): COCONUT sets it when the
    /// store cannot persist, so that fallback.efi does not create boot entries and reboot
    /// in a loop (`quirk_disable_shim_reboot`, virtfw-varstore `src/quirks.rs`).
    static let fbNoReboot = VariableKey("FB_NO_REBOOT", .shimLock)

    /// COCONUT `uefi_mm_protocol_init` (kernel/src/protocols/uefivars.rs, the version with
    /// the `persistence` feature): [persistence: read the store] → [secureboot: enrol if in
    /// setup mode] → the shim quirk unless persistence is available → `store.reset()`.
    mutating func virtfwInit(enrolment: VirtfwEnrolment?) {
        if let e = enrolment, list.find(UefiVarsAuth.pk) == nil {
            let at: VariableAttributes = [.nonVolatile, .bootserviceAccess, .runtimeAccess, .timeBasedAuthenticatedWriteAccess]
            setStoreVariable(UefiVarsAuth.pk, at, e.pk, timestamp: .zero)
            setStoreVariable(UefiVarsAuth.kek, at, e.kek, timestamp: .zero)
            setStoreVariable(UefiVarsAuth.db, at, e.db, timestamp: .zero)
            setStoreVariable(UefiVarsAuth.dbx, at, e.dbx, timestamp: .zero)
        }
        if !configuration.persistence {
            setStoreVariable(UefiVarsStore.fbNoReboot, .nvBsRt, [1])
        }
        virtfwModeVariables()
    }

    /// What `EfiVarStore::reset` leaves (modelled; see the open questions): the mode
    /// variables from authvar.rs's setters.
    mutating func virtfwModeVariables() {
        let userMode = list.find(UefiVarsAuth.pk) != nil
        setStoreVariable(UefiVarsAuth.setupMode, [.bootserviceAccess, .runtimeAccess], [userMode ? 0 : 1])
        setStoreVariable(UefiVarsAuth.signatureSupport, [.bootserviceAccess, .runtimeAccess], UefiVarsAuth.signatureSupportGuids.flatMap(\.bytes))
        let enabled = list.find(UefiVarsAuth.secureBootEnable)?.value.data.first ?? 1
        setStoreVariable(UefiVarsAuth.secureBoot, [.bootserviceAccess, .runtimeAccess], [userMode && enabled == 1 ? 1 : 0])
        if list.find(UefiVarsAuth.customMode) == nil { setStoreVariable(UefiVarsAuth.customMode, .nvBs, [0]) }
    }
}
