import EfiTypes
import MmWire

/// Authenticated variables as edk2's AuthVariableLib handles them
/// (SecurityPkg/Library/AuthVariableLib/AuthService.c, AuthVariableLib.c), with OVMF's
/// settings: PcdRequireSelfSignedPk = TRUE. Two OVMF behaviours are configurable and off by
/// default: honouring CustomMode, and deleting an authenticated variable with an unsigned
/// empty write. OVMF allows both because its `UserPhysicalPresent ()` always returns TRUE
/// (tianocore/edk2 OvmfPkg/Library/PlatformSecureLib/PlatformSecureLib.c). The default is a
/// decision: in a confidential VM nobody is physically present and the host is not
/// trusted, so neither shortcut around the signature checks is granted unless asked for.
public struct SecureBootConfiguration: Sendable, Equatable {
    /// edk2 `VariableGlobal.AuthSupport`: AuthVariableLib is built in (an OVMF built with
    /// SECURE_BOOT_ENABLE). Without it (AuthVariableLibNull) no Secure Boot variables, no
    /// certdb, and authenticated writes are refused (Variable.c `VariableWriteServiceInitialize`,
    /// `VariableServiceSetVariable`, `VariableServiceQueryVariableInfo`).
    public var authSupport = true
    public var requireSelfSignedPk = true
    public var honourCustomMode = false
    public var allowUnsignedAuthDelete = false
    public init() {}
}

enum AuthVarType { case pk, kek, payload, priv }

extension VariableStore {
    static let pk = VariableKey("PK", .globalVariable)
    static let kek = VariableKey("KEK", .globalVariable)
    static let signatureDatabases: Set<VariableKey> = [
        VariableKey("db", .imageSecurityDatabase), VariableKey("dbx", .imageSecurityDatabase),
        VariableKey("dbt", .imageSecurityDatabase),
    ]
    static let setupModeKey = VariableKey("SetupMode", .globalVariable)
    static let secureBootKey = VariableKey("SecureBoot", .globalVariable)
    static let secureBootEnableKey = VariableKey("SecureBootEnable", .secureBootEnableDisable)
    static let customModeKey = VariableKey("CustomMode", .customModeEnable)
    static let vendorKeysKey = VariableKey("VendorKeys", .globalVariable)
    static let vendorKeysNvKey = VariableKey("VendorKeysNv", .vendorKeysNv)
    static let certDbKey = VariableKey("certdb", .certDb)
    static let certDbVolatileKey = VariableKey("certdbv", .certDb)
    /// WIN_CERT_TYPE_EFI_GUID.
    static let winCertTypeEfiGuid: UInt16 = 0x0EF1

    /// Setup mode: SetupMode = 1 (edk2 keeps it in `mPlatformMode`).
    public var inSetupMode: Bool { find(VariableStore.setupModeKey)?.data.first.map { $0 == 1 } ?? (find(VariableStore.pk) == nil) }
    var inCustomMode: Bool { secureBoot.honourCustomMode && find(VariableStore.customModeKey)?.data == [1] }

    /// AuthVariableLibProcessVariable. Returns a final status, or nil to continue with a
    /// plain `updateVariable`.
    mutating func processAuthentication(_ key: VariableKey, attributes: VariableAttributes, data: [UInt8],
                                        descriptor: AuthenticationDescriptor?, existing: StoredVariable?) -> EfiStatus? {
        if key == VariableStore.pk { return processVarWithPk(key, attributes, data, descriptor, existing, isPk: true) }
        if key == VariableStore.kek { return processVarWithPk(key, attributes, data, descriptor, existing, isPk: false) }
        if VariableStore.signatureDatabases.contains(key) {
            // db/dbx/dbt: signed by PK, or else by KEK.
            var trial = self
            let s = trial.processVarWithPk(key, attributes, data, descriptor, existing, isPk: false)
            if s == .success { self = trial; return s }
            return processVarWithKek(key, attributes, data, descriptor, existing)
        }
        return processVariable(key, attributes, data, descriptor, existing)
    }

    /// ProcessVariable: everything that is not a Secure Boot key variable.
    private mutating func processVariable(_ key: VariableKey, _ attrs: VariableAttributes, _ data: [UInt8],
                                          _ d: AuthenticationDescriptor?, _ existing: StoredVariable?) -> EfiStatus? {
        if let e = existing, e.attributes.contains(.timeBasedAuthenticatedWriteAccess),
           secureBoot.allowUnsignedAuthDelete, isDeleteAuthVariable(e, attrs, data, d) {
            removeRecord(key)
            deleteCertDb(key, volatile: !e.attributes.contains(.nonVolatile))
            return .success
        }
        if let d {
            return verifyTimeBasedPayloadAndUpdate(key, attrs, data, d, existing, type: .priv)
        }
        if let e = existing, e.attributes.contains(.timeBasedAuthenticatedWriteAccess) { return .writeProtected }
        return nil
    }

    /// `IsDeleteAuthVariable`: the same attributes and a descriptor with nothing after it.
    private func isDeleteAuthVariable(_ e: StoredVariable, _ attrs: VariableAttributes, _ data: [UInt8], _ d: AuthenticationDescriptor?) -> Bool {
        guard let d, attrs == e.attributes else { return false }
        return data.count == d.totalLength
    }

    /// ProcessVarWithPk.
    private mutating func processVarWithPk(_ key: VariableKey, _ attrs: VariableAttributes, _ data: [UInt8],
                                           _ d: AuthenticationDescriptor?, _ existing: StoredVariable?, isPk: Bool) -> EfiStatus {
        guard attrs.contains(.nonVolatile), attrs.contains(.timeBasedAuthenticatedWriteAccess), let d else { return .invalidParameter }
        let payload = Array(data[d.totalLength...])
        let isDelete = payload.isEmpty
        let check = SignatureList.checkFormat(payload, isPk: isPk)
        if check != .success { return check }
        let setup = inSetupMode
        let status: EfiStatus
        if inCustomMode || (setup && !(secureBoot.requireSelfSignedPk && isPk)) {
            status = unauthenticatedUpdate(key, attrs, payload, d.timestamp, existing)
            if status == .success && (!setup || (secureBoot.requireSelfSignedPk && isPk)) { markVendorKeysModified() }
        } else if !setup {
            status = verifyTimeBasedPayloadAndUpdate(key, attrs, data, d, existing, type: .pk)
        } else {
            status = verifyTimeBasedPayloadAndUpdate(key, attrs, data, d, existing, type: .payload)
        }
        if status == .success && isPk {
            if setup && !isDelete { updatePlatformMode(user: true) }
            if !setup && isDelete { updatePlatformMode(user: false) }
        }
        return status
    }

    /// ProcessVarWithKek: db/dbx/dbt signed by a KEK certificate.
    private mutating func processVarWithKek(_ key: VariableKey, _ attrs: VariableAttributes, _ data: [UInt8],
                                            _ d: AuthenticationDescriptor?, _ existing: StoredVariable?) -> EfiStatus {
        guard attrs.contains(.nonVolatile), attrs.contains(.timeBasedAuthenticatedWriteAccess), let d else { return .invalidParameter }
        let payload = Array(data[d.totalLength...])
        let check = SignatureList.checkFormat(payload, isPk: false)
        if check != .success { return check }
        if !inSetupMode && !inCustomMode {
            return verifyTimeBasedPayloadAndUpdate(key, attrs, data, d, existing, type: .kek)
        }
        let status = unauthenticatedUpdate(key, attrs, payload, d.timestamp, existing)
        if status == .success && !inSetupMode { markVendorKeysModified() }
        return status
    }

    /// The write of a key variable without signature verification (setup or custom mode).
    private mutating func unauthenticatedUpdate(_ key: VariableKey, _ attrs: VariableAttributes, _ payload: [UInt8],
                                                _ time: EfiTime, _ existing: StoredVariable?) -> EfiStatus {
        var body = payload
        if attrs.contains(.appendWrite), let e = existing { body = SignatureList.filter(existing: e.data, new: payload) }
        return updateVariable(key, attributes: attrs, payload: body, timestamp: time, existing: existing)
    }

    /// VerifyTimeBasedPayloadAndUpdate: descriptor rules, replay check, PKCS#7 verification
    /// against the authorising certificates, then the write (with certdb for private
    /// variables).
    private mutating func verifyTimeBasedPayloadAndUpdate(_ key: VariableKey, _ attrs: VariableAttributes, _ data: [UInt8],
                                                          _ d: AuthenticationDescriptor, _ existing: StoredVariable?,
                                                          type: AuthVarType) -> EfiStatus {
        // Only the date and time may be set in the EFI_TIME.
        let t = d.timestamp.bytes
        guard t[7] == 0, t[8..<16].allSatisfy({ $0 == 0 }) else { return .securityViolation }
        guard data.loadLE(UInt16.self, at: 22) == VariableStore.winCertTypeEfiGuid,
              EfiGuid(bytes: data, at: 24) == SignatureList.certPkcs7 else { return .securityViolation }
        // Replay: a non-append write must be strictly newer (seconds resolution).
        if let e = existing, !attrs.contains(.appendWrite), let old = e.timestamp, !(old < d.timestamp) {
            return .securityViolation
        }
        let p7 = Pkcs7.wrap(Array(data[AuthenticationDescriptor.certDataOffset..<d.totalLength]))
        guard let alg = Pkcs7.digestAlgorithm(p7) else { return .securityViolation }
        let payload = Array(data[d.totalLength...])
        var signed = Ucs2.nulTerminatedBytes(key.name).dropLast(2).map { $0 }
        signed += key.guid.bytes
        signed.appendLE(attrs.rawValue)
        signed += d.timestamp.bytes
        signed += payload

        var certDigest: [UInt8]?
        switch type {
        case .pk:
            guard let pk = find(VariableStore.pk), let root = SignatureList.x509Certificates(pk.data).first,
                  let (_, top) = Pkcs7.signers(p7), top == root, Pkcs7.verify(p7, anchor: root, data: signed) else {
                return .securityViolation
            }
        case .kek:
            let anchors = SignatureList.x509Certificates(find(VariableStore.kek)?.data ?? [])
            guard anchors.contains(where: { Pkcs7.verify(p7, anchor: $0, data: signed) }) else { return .securityViolation }
        case .payload:
            guard let root = SignatureList.x509Certificates(payload).first, Pkcs7.verify(p7, anchor: root, data: signed) else {
                return .securityViolation
            }
        case .priv:
            guard let (signer, top) = Pkcs7.signers(p7), let (cn, tbs) = Pkcs7.commonNameAndTbs(top) else { return .securityViolation }
            let signerCn = Pkcs7.commonNameAndTbs(signer)?.cn ?? cn
            let digest = Pkcs7.digest(alg, signerCn + tbs)
            if existing != nil {
                guard findCertDb(key, volatile: !attrs.contains(.nonVolatile)) == digest else { return .securityViolation }
            }
            guard Pkcs7.verify(p7, anchor: top, data: signed) else { return .securityViolation }
            certDigest = digest
        }

        var body = payload
        if attrs.contains(.appendWrite), let e = existing,
           key == VariableStore.kek || VariableStore.signatureDatabases.contains(key) {
            body = SignatureList.filter(existing: e.data, new: payload)
        }
        let status = updateVariable(key, attributes: attrs, payload: body, timestamp: d.timestamp, existing: existing)
        guard status == .success, type == .priv else { return status }
        let volatile = !attrs.contains(.nonVolatile)
        if find(key) == nil {
            deleteCertDb(key, volatile: volatile)
        } else if existing == nil, let digest = certDigest {
            insertCertDb(key, digest: digest, volatile: volatile)
        }
        return status
    }

    /// UpdatePlatformMode: SetupMode changes at once; SecureBoot and SecureBootEnable only
    /// at boot time (after ExitBootServices they wait for the next boot).
    mutating func updatePlatformMode(user: Bool) {
        firmwareWrite(VariableStore.setupModeKey, attributes: .bsRt, data: [user ? 0 : 1])
        if phase.atRuntime { return }
        if find(VariableStore.secureBootKey) != nil {
            firmwareWrite(VariableStore.secureBootKey, attributes: .bsRt, data: [user ? 1 : 0])
        }
        firmwareWrite(VariableStore.secureBootEnableKey, attributes: .nvBs, data: user ? [1] : nil)
    }

    /// Keys changed by something other than the platform vendor: VendorKeysNv = VendorKeys = 0.
    mutating func markVendorKeysModified() {
        if let v = find(VariableStore.vendorKeysNvKey) {
            putRecord(VariableStore.vendorKeysNvKey, StoredVariable(attributes: v.attributes, data: [0], timestamp: v.timestamp))
        }
        firmwareWrite(VariableStore.vendorKeysKey, attributes: .bsRt, data: [0])
    }

    /// AuthVariableLibInitialize: SetupMode, SignatureSupport, SecureBootEnable,
    /// SecureBoot, CustomMode, certdb, certdbv, VendorKeysNv, VendorKeys, in that order
    /// (tianocore/edk2 SecurityPkg/Library/AuthVariableLib/AuthVariableLib.c
    /// `AuthVariableLibInitialize`; certdbv also seen in a QEMU/OVMF boot's dmpstore).
    public mutating func initializeAuthVariables() {
        // AuthVariableLibNull's AuthVariableLibInitialize returns EFI_UNSUPPORTED: nothing.
        guard secureBoot.authSupport else { return }
        let setup: UInt8 = find(VariableStore.pk) == nil ? 1 : 0
        firmwareWrite(VariableStore.setupModeKey, attributes: .bsRt, data: [setup])
        // SignatureSupport as edk2 publishes it: SHA1, SHA256, RSA2048, X509.
        let supported = ["826ca512-cf10-4ac9-b187-be01496631bd", "c1c41626-504c-4092-aca9-41f936934328",
                         "3c5766e8-269c-4e34-aa14-ed776e85b3b6", "a5c059a1-94e4-4aa7-87b5-ab155c2bf072"]
        firmwareWrite(VariableKey("SignatureSupport", .globalVariable), attributes: .bsRt, data: supported.flatMap { EfiGuid($0)!.bytes })
        if setup == 1 {
            firmwareWrite(VariableStore.secureBootEnableKey, attributes: .nvBs, data: nil)
        } else if find(VariableStore.secureBootEnableKey) == nil {
            firmwareWrite(VariableStore.secureBootEnableKey, attributes: .nvBs, data: [1])
        }
        let enabled = setup == 0 && find(VariableStore.secureBootEnableKey)?.data == [1]
        firmwareWrite(VariableStore.secureBootKey, attributes: .bsRt, data: [enabled ? 1 : 0])
        firmwareWrite(VariableStore.customModeKey, attributes: .nvBs, data: [0])
        if find(VariableStore.certDbKey) == nil {
            putRecord(VariableStore.certDbKey, StoredVariable(attributes: [.nvBsRt, .timeBasedAuthenticatedWriteAccess], data: [4, 0, 0, 0], timestamp: .zero))
        }
        // The volatile certificate database, created empty at every initialisation.
        if find(VariableStore.certDbVolatileKey) == nil {
            putRecord(VariableStore.certDbVolatileKey, StoredVariable(attributes: [.bsRt, .timeBasedAuthenticatedWriteAccess], data: [4, 0, 0, 0], timestamp: .zero))
        }
        if find(VariableStore.vendorKeysNvKey) == nil {
            putRecord(VariableStore.vendorKeysNvKey, StoredVariable(attributes: [.nvBs, .timeBasedAuthenticatedWriteAccess], data: [1], timestamp: .zero))
        }
        firmwareWrite(VariableStore.vendorKeysKey, attributes: .bsRt, data: find(VariableStore.vendorKeysNvKey)!.data)
    }

    // MARK: certdb (AUTH_CERT_DB_DATA nodes after a u32 total size)

    private func certDbNodes(volatile: Bool) -> [(guid: EfiGuid, name: [UInt16], cert: [UInt8])] {
        guard let d = find(volatile ? VariableStore.certDbVolatileKey : VariableStore.certDbKey)?.data, d.count >= 4 else { return [] }
        var nodes: [(EfiGuid, [UInt16], [UInt8])] = []
        var i = 4
        while i + 28 <= d.count {
            let nodeSize = Int(d.loadLE(UInt32.self, at: i + 16))
            let nameSize = Int(d.loadLE(UInt32.self, at: i + 20))
            let certSize = Int(d.loadLE(UInt32.self, at: i + 24))
            guard nodeSize == 28 + nameSize * 2 + certSize, i + nodeSize <= d.count else { break }
            let name = (0..<nameSize).map { d.loadLE(UInt16.self, at: i + 28 + 2 * $0) }
            nodes.append((EfiGuid(bytes: d, at: i), name, Array(d[(i + 28 + nameSize * 2)..<(i + nodeSize)])))
            i += nodeSize
        }
        return nodes
    }

    private mutating func writeCertDb(_ nodes: [(guid: EfiGuid, name: [UInt16], cert: [UInt8])], volatile: Bool) {
        var body = [UInt8]()
        for n in nodes {
            var h = [UInt8](zeroed: 28)
            h.store(n.guid, at: 0)
            h.storeLE(UInt32(28 + n.name.count * 2 + n.cert.count), at: 16)
            h.storeLE(UInt32(n.name.count), at: 20)
            h.storeLE(UInt32(n.cert.count), at: 24)
            body += h
            for u in n.name { body.appendLE(u) }
            body += n.cert
        }
        var data = [UInt8](); data.appendLE(UInt32(4 + body.count)); data += body
        let key = volatile ? VariableStore.certDbVolatileKey : VariableStore.certDbKey
        let attrs: VariableAttributes = volatile ? [.bsRt, .timeBasedAuthenticatedWriteAccess] : [.nvBsRt, .timeBasedAuthenticatedWriteAccess]
        putRecord(key, StoredVariable(attributes: attrs, data: data, timestamp: .zero))
    }

    func findCertDb(_ key: VariableKey, volatile: Bool) -> [UInt8]? {
        certDbNodes(volatile: volatile).first { $0.guid == key.guid && $0.name == key.name }?.cert
    }
    mutating func insertCertDb(_ key: VariableKey, digest: [UInt8], volatile: Bool) {
        writeCertDb(certDbNodes(volatile: volatile).filter { !($0.guid == key.guid && $0.name == key.name) } + [(key.guid, key.name, digest)], volatile: volatile)
    }
    mutating func deleteCertDb(_ key: VariableKey, volatile: Bool) {
        let nodes = certDbNodes(volatile: volatile)
        let kept = nodes.filter { !($0.guid == key.guid && $0.name == key.name) }
        if kept.count != nodes.count { writeCertDb(kept, volatile: volatile) }
    }
}
