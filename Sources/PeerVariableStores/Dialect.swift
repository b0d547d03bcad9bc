import EfiTypes

extension UefiVarsStore {
    /// Where QEMU's uefi-vars and COCONUT's virtfw-varstore differ. Each switch names its
    /// source; `openQuestions` lists the virtfw choices no readable source settles.
    public struct Dialect: Sendable, Equatable {
        public enum PayloadSize: Sendable, Equatable {
            /// `buf_size - sizeof(mm_header) - sizeof(mm_variable)`: the registered buffer
            /// minus 40 (`uefi_vars_mm_get_payload_size`).
            case bufferMinus40
            /// A fixed answer: the store never sees the buffer.
            case constant(UInt64)
        }
        public enum ReplyBound: Sendable, Equatable {
            /// The buffer the firmware registered, at most 64 KiB (QEMU).
            case registeredBuffer
            /// Only the request: COCONUT hands the store the message bytes and nothing else.
            case request
        }
        public enum WriteBack: Sendable, Equatable {
            /// 24 + MessageLength bytes (`uefi_vars_cmd_mm`).
            case wholeMessage
            /// Exactly the reply (COCONUT `uefi_mm_request`: `copy_slice_to_guest(&rsp, …)`).
            case replyOnly
        }
        public enum InitialVariables: Sendable, Equatable {
            /// `uefi_vars_auth_init`: SetupMode, SignatureSupport, SecureBootEnable,
            /// SecureBoot, CustomMode, VendorKeysNv, VendorKeys.
            case qemuAuthInit
            /// COCONUT `uefi_mm_protocol_init` over `EfiVarStore::reset`.
            case virtfwReset
        }
        public enum ManifestRule: Sendable, Equatable {
            /// COCONUT's hard-coded flags.
            case coconut
            /// What the store can do (the model's answer for stores COCONUT does not run).
            case storeCapabilities
        }

        public let name: String
        public let payloadSize: PayloadSize
        public let replyBound: ReplyBound
        public let writeBack: WriteBack
        /// The status for a variable name that is not a valid NUL-terminated UCS-2 string.
        public let invalidNameStatus: EfiStatus
        /// Whether an update keeps the variable's place in the list (virtfw's
        /// `set_unchecked` replaces in place) or moves it to the end (QEMU adds the new
        /// record at the tail, then deletes the old one).
        public let updateInPlace: Bool
        /// Whether AUTHENTICATION_2 signatures are verified (QEMU with GnuTLS) or not at all
        /// (virtfw-varstore: "needs pkcs7 signature verification", its README).
        public let verifiesPkcs7: Bool
        public let initialVariables: InitialVariables
        public let manifestRule: ManifestRule
        /// virtfw behaviours modelled without a readable source, each with the choice made.
        public let openQuestions: [String]

        /// QEMU `hw/uefi` as merged (hw/uefi/var-service-*.c).
        public static let qemu = Dialect(
            name: "qemu", payloadSize: .bufferMinus40, replyBound: .registeredBuffer, writeBack: .wholeMessage,
            invalidNameStatus: .invalidParameter, updateInPlace: false, verifiesPkcs7: true,
            initialVariables: .qemuAuthInit, manifestRule: .storeCapabilities, openQuestions: [])

        /// COCONUT-SVSM's protocol 4 on virtfw-varstore 0.6.x. Known from its visible
        /// sources: the functions it serves (`mm/variable.rs` constants), BAD_BUFFER_SIZE for
        /// names that do not convert (`mm/util.rs`), in-place replacement (`store.rs`
        /// `set_unchecked`), no PKCS#7 (README), the reply-only write-back and the manifest
        /// (COCONUT `protocols/uefivars.rs`).
        public static let virtfw = Dialect(
            name: "coconut", payloadSize: .constant(65496), replyBound: .request, writeBack: .replyOnly,
            invalidNameStatus: .badBufferSize, updateInPlace: true, verifiesPkcs7: false,
            initialVariables: .virtfwReset, manifestRule: .coconut,
            openQuestions: [
                "GET_PAYLOAD_SIZE: the value is not visible; the store never sees the buffer, so it is a constant. Modelled as 65496 (the largest OVMF's 64 KiB buffer allows).",
                "Statuses for functions 7, 9, 10, 12-14: mm/variable.rs defines no constants for them. Modelled as EFI_UNSUPPORTED (QEMU's default case).",
                "GetVariable/GetNextVariableName/SetVariable/QueryVariableInfo checks, limits and statuses: not visible. Modelled as QEMU's uefi-vars (same author), within the request.",
                "Which name helper each function uses (until_nul or with_nul): not visible. Modelled as until_nul: even length, a NUL within NameSize, no surrogates.",
                "Authenticated variables without PKCS#7: user-mode writes of PK, KEK, db, dbx, and every write of another time-based authenticated variable, are refused with EFI_SECURITY_VIOLATION (the manifest's secureboot_db_update is false); setup-mode and custom-mode writes of the Secure Boot variables pass unverified (tests/secure-boot.rs).",
                "Variables EfiVarStore::reset creates: not visible. Modelled as SetupMode, SignatureSupport, SecureBoot (BS|RT) and CustomMode (NV|BS), from authvar.rs's setters.",
                "Policy commands other than IS_ENABLED, REGISTER and LOCK: DUMP is commented out in mm/policy.rs. Modelled as EFI_UNSUPPORTED, as QEMU.",
                "dbx under the secureboot feature: virtfw-libefi's DBX_X86_64 list (443 SHA-256 entries) is not available to the model; dbx holds one placeholder SHA-256 entry, as virt-firmware's add_dummy_dbx writes.",
                "KEK under the secureboot feature: enroll_kek_microsoft's list is not visible. Modelled as Microsoft's KEK CA 2011 and KEK 2K CA 2023, as python virt-firmware's add_microsoft_kek_keys('all').",
            ])
    }
}
