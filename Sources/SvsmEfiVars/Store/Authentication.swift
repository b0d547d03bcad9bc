/// Authenticated variables (AuthVariableLib). The signature verifier is not there yet (the
/// Secure Boot issue), so this file holds the dispatch and the rules that need no
/// cryptography: which writes are refused outright, and the setup-mode path in which
/// edk2 takes KEK/db/dbx/dbt without verifying a signature.
extension VariableStore {
    static let pk = VariableKey("PK", .globalVariable)
    static let kek = VariableKey("KEK", .globalVariable)
    static let signatureDatabases: Set<VariableKey> = [
        VariableKey("db", .imageSecurityDatabase), VariableKey("dbx", .imageSecurityDatabase),
        VariableKey("dbt", .imageSecurityDatabase),
    ]

    public var inSetupMode: Bool { find(VariableStore.pk) == nil }

    /// Returns a final status, or nil to go on with `updateVariable`.
    mutating func processAuthentication(_ key: VariableKey, attributes: VariableAttributes,
                                        descriptor: AuthenticationDescriptor?, existing: StoredVariable?) -> EfiStatus? {
        let isKeyVariable = key == VariableStore.pk || key == VariableStore.kek || VariableStore.signatureDatabases.contains(key)
        if isKeyVariable {
            // ProcessVarWithPk / ProcessVarWithKek: NV and AT are required.
            guard attributes.contains(.nonVolatile), attributes.contains(.timeBasedAuthenticatedWriteAccess) else {
                return .invalidParameter
            }
            // OVMF sets PcdRequireSelfSignedPk: even in setup mode PK must be signed.
            if inSetupMode && key != VariableStore.pk { return nil }
            return .securityViolation  // needs PKCS#7 verification (not implemented yet)
        }
        if attributes.contains(.timeBasedAuthenticatedWriteAccess) {
            return .securityViolation  // private authenticated variables need verification
        }
        if let e = existing, e.attributes.contains(.timeBasedAuthenticatedWriteAccess) {
            // A non-authenticated write to an authenticated variable.
            return .writeProtected
        }
        return nil
    }

    /// AuthVariableLibInitialize for a store without PK: SetupMode, SecureBoot,
    /// SignatureSupport, VendorKeys, CustomMode, certdb (uefi-variables.md §5.3).
    public mutating func initializeAuthVariables() {
        let setup: UInt8 = inSetupMode ? 1 : 0
        firmwareWrite(VariableKey("SetupMode", .globalVariable), attributes: .bsRt, data: [setup])
        // SignatureSupport as edk2 publishes it: SHA1, SHA256, RSA2048, X509.
        let supported = ["826ca512-cf10-4ac9-b187-be01496631bd", "c1c41626-504c-4092-aca9-41f936934328",
                         "3c5766e8-269c-4e34-aa14-ed776e85b3b6", "a5c059a1-94e4-4aa7-87b5-ab155c2bf072"]
        firmwareWrite(VariableKey("SignatureSupport", .globalVariable), attributes: .bsRt,
                      data: supported.flatMap { EfiGuid($0)!.bytes })
        let secureBootEnableKey = VariableKey("SecureBootEnable", .secureBootEnableDisable)
        if setup == 1 {
            firmwareWrite(secureBootEnableKey, attributes: .nvBs, data: nil)
        } else if find(secureBootEnableKey) == nil {
            firmwareWrite(secureBootEnableKey, attributes: .nvBs, data: [1])
        }
        let enabled = setup == 0 && find(secureBootEnableKey)?.data == [1]
        firmwareWrite(VariableKey("SecureBoot", .globalVariable), attributes: .bsRt, data: [enabled ? 1 : 0])
        firmwareWrite(VariableKey("CustomMode", .customModeEnable), attributes: .nvBs, data: [0])
        let certdb = VariableKey("certdb", .certDb)
        if find(certdb) == nil {
            putRecord(certdb, StoredVariable(attributes: [.nvBsRt, .timeBasedAuthenticatedWriteAccess], data: [4, 0, 0, 0], timestamp: .zero))
        }
        let vendorKeysNv = VariableKey("VendorKeysNv", .vendorKeysNv)
        if find(vendorKeysNv) == nil {
            putRecord(vendorKeysNv, StoredVariable(attributes: [.nvBs, .timeBasedAuthenticatedWriteAccess], data: [1], timestamp: .zero))
        }
        firmwareWrite(VariableKey("VendorKeys", .globalVariable), attributes: .bsRt, data: find(vendorKeysNv)!.data)
    }
}
