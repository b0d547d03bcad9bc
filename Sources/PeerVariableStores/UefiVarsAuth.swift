import EfiTypes
import VariableService

/// AuthVariableLib of the uefi-vars design (hw/uefi/var-service-auth.c and
/// var-service-pkcs7.c): the Secure Boot variables, AUTHENTICATION_2 checks and the
/// variables `uefi_vars_auth_init` (re)creates.
enum UefiVarsAuth {
    static let pk = VariableKey("PK", .globalVariable)
    static let kek = VariableKey("KEK", .globalVariable)
    static let db = VariableKey("db", .imageSecurityDatabase)
    static let dbx = VariableKey("dbx", .imageSecurityDatabase)
    static let setupMode = VariableKey("SetupMode", .globalVariable)
    static let signatureSupport = VariableKey("SignatureSupport", .globalVariable)
    static let secureBoot = VariableKey("SecureBoot", .globalVariable)
    static let secureBootEnable = VariableKey("SecureBootEnable", .secureBootEnableDisable)
    static let customMode = VariableKey("CustomMode", .customModeEnable)
    static let vendorKeys = VariableKey("VendorKeys", .globalVariable)
    /// QEMU keeps VendorKeysNv in the global namespace (edk2 uses its own GUID).
    static let vendorKeysNv = VariableKey("VendorKeysNv", .globalVariable)

    /// `sigdb_attrs`: what PK, KEK, db and dbx must carry.
    static let sigdbAttributes: VariableAttributes = [.nonVolatile, .bootserviceAccess, .runtimeAccess, .timeBasedAuthenticatedWriteAccess]
    static let certTypePkcs7 = EfiGuid("4aafd29d-68df-49ee-8aa9-347d375665a7")!
    static let certSha256 = EfiGuid("c1c41626-504c-4092-aca9-41f936934328")!
    static let certX509 = EfiGuid("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")!
    /// `set_signature_support`: SHA256, SHA384, SHA512, RSA2048, X509.
    static let signatureSupportGuids = ["c1c41626-504c-4092-aca9-41f936934328", "ff3e5307-9fd0-48c9-85f1-8ad56c701e01",
                                        "093e0fae-a6c4-4f50-9f1b-d41e2b89c19a", "3c5766e8-269c-4e34-aa14-ed776e85b3b6",
                                        "a5c059a1-94e4-4aa7-87b5-ab155c2bf072"].map { EfiGuid($0)! }

    static func isSecureBootDatabase(_ k: VariableKey) -> Bool { k == pk || k == kek || k == db || k == dbx }

    /// The database whose certificates may sign `k` (`uefi_vars_find_siglist`): PK signs PK
    /// and KEK, only KEK signs db and dbx.
    static func signer(of k: VariableKey) -> VariableKey? {
        if k == pk || k == kek { return pk }
        if k == db || k == dbx { return kek }
        return nil
    }

    /// `uefi_time_compare`: field by field, year first (the pad bytes and the time zone do
    /// not count).
    static func compare(_ a: EfiTime, _ b: EfiTime) -> Int {
        func fields(_ t: EfiTime) -> [UInt32] {
            let x = t.bytes
            return [UInt32(x.loadLE(UInt16.self, at: 0)), UInt32(x[2]), UInt32(x[3]), UInt32(x[4]), UInt32(x[5]), UInt32(x[6]),
                    x.loadLE(UInt32.self, at: 8)]
        }
        for (p, q) in zip(fields(a), fields(b)) where p != q { return p < q ? -1 : 1 }
        return 0
    }

    /// `wrap_pkcs7`. QEMU means to leave a SignedData that already has its ContentInfo
    /// alone, but tests byte 15 against 0x0a where the [0] tag is 0xa0, so it wraps every
    /// signature, wrapped or not; a signature that already carries a ContentInfo then does
    /// not parse. The model does what the code does.
    static func wrap(_ d: [UInt8]) -> [UInt8] {
        let oid: [UInt8] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02]
        if d.count > 16, d[4] == 0x06, d[5] == 0x09, Array(d[6..<15]) == oid, d[15] == 0x0a, d[16] == 0x82 { return d }
        let size = d.count + 19
        var w: [UInt8] = [0x30, 0x82, UInt8((size - 4) >> 8 & 0xff), UInt8((size - 4) & 0xff), 0x06, 0x09] + oid
        w += [0xa0, 0x82, UInt8(d.count >> 8 & 0xff), UInt8(d.count & 0xff)]
        return w + d
    }
}

/// The parts of a SET_VARIABLE an AUTHENTICATION_2 check reads.
struct AuthenticatedWrite {
    let name: [UInt8]
    let guid: EfiGuid
    let attributes: UInt32
    let data: [UInt8]

    /// sizeof(variable_auth_2): EFI_TIME, dwLength, wRevision, wCertificateType, CertType.
    static let descriptorSize = 40
    var headerLength: UInt32 { data.loadLE(UInt32.self, at: 16) }
    var timestamp: EfiTime { EfiTime(bytes: Array(data[0..<16])) }
    /// Where the payload starts (16 + dwLength).
    var payloadOffset: Int { 16 + Int(headerLength) }
    var payload: [UInt8] { Array(data[payloadOffset...]) }

    /// `build_signed_data`: the name without its last two bytes (NameSize − 2, whatever
    /// they are), the GUID, the attributes as sent, the timestamp, the payload.
    var signedData: [UInt8] {
        var s = Array(name.prefix(max(0, name.count - 2)))
        s += guid.bytes
        s.appendLE(attributes)
        s += timestamp.bytes
        return s + payload
    }

    /// `build_pkcs7`: the certificate data (after the 24-byte WIN_CERTIFICATE_UEFI_GUID
    /// header), wrapped.
    var pkcs7: [UInt8] { UefiVarsAuth.wrap(Array(data[AuthenticatedWrite.descriptorSize..<payloadOffset])) }
}

extension UefiVarsStore {
    /// SetupMode is 1 (`setup_mode_is_active`).
    var inSetupMode: Bool { list.find(UefiVarsAuth.setupMode)?.value.data.first == 1 }
    /// CustomMode is 1 (`custom_mode_is_active`).
    var inCustomMode: Bool { list.find(UefiVarsAuth.customMode)?.value.data.first == 1 }

    /// `uefi_vars_check_auth_2`: the descriptor, the signature, then timestamp and payload
    /// go into `record`.
    mutating func checkAuthentication2(_ record: inout UefiVarRecord, _ w: AuthenticatedWrite) -> EfiStatus {
        guard w.data.count >= AuthenticatedWrite.descriptorSize else { return .securityViolation }
        let hdrLength = w.headerLength
        guard hdrLength >= 24 else { return .securityViolation }
        guard w.data.count >= 16 + Int(hdrLength) else { return .securityViolation }
        guard w.data.loadLE(UInt16.self, at: 20) == 0x0200, w.data.loadLE(UInt16.self, at: 22) == 0x0EF1,
              EfiGuid(bytes: w.data, at: 24) == UefiVarsAuth.certTypePkcs7 else { return .unsupported }
        let status = UefiVarsAuth.isSecureBootDatabase(record.key) ? checkSecureBootSignature(record, w) : checkOtherSignature(&record, w)
        guard status == .success else { return status }
        record.value.timestamp = w.timestamp
        record.value.data = w.payload
        return .success
    }

    /// `uefi_vars_check_auth_2_sb`.
    private func checkSecureBootSignature(_ record: UefiVarRecord, _ w: AuthenticatedWrite) -> EfiStatus {
        if inCustomMode { return .success }
        if inSetupMode && record.key != UefiVarsAuth.pk { return .success }
        guard dialect.verifiesPkcs7 else {
            // virtfw-varstore cannot verify: the PK that ends setup mode passes as its own
            // test writes it; everything else in user mode is refused.
            return inSetupMode ? .success : .securityViolation
        }
        if w.headerLength == 24 { return .securityViolation }  // no signature
        let anchors: [[UInt8]]
        if let signer = UefiVarsAuth.signer(of: record.key), let db = list.find(signer) {
            anchors = UefiVarsSignatureLists(db.value.data).certificates
        } else if inSetupMode && record.key == UefiVarsAuth.pk {
            anchors = UefiVarsSignatureLists(w.payload).certificates  // self-signed
        } else {
            return .securityViolation
        }
        let p7 = w.pkcs7, signed = w.signedData
        return anchors.contains { Pkcs7.verify(p7, anchor: $0, data: signed) } ? .success : .securityViolation
    }

    /// Time-based authenticated variables other than the Secure Boot databases: the
    /// signature must chain to the last certificate it carries, and the signer's CN and
    /// that root are remembered as a digest (`build_trust_list_authvar`,
    /// `build_digest_authvar`).
    private func checkOtherSignature(_ record: inout UefiVarRecord, _ w: AuthenticatedWrite) -> EfiStatus {
        guard dialect.verifiesPkcs7 else { return .securityViolation }
        let p7 = w.pkcs7
        guard let (signer, root) = Pkcs7.signers(p7), let cn = Pkcs7.commonNameAndTbs(signer)?.cn else { return .securityViolation }
        guard Pkcs7.verify(p7, anchor: root, data: w.signedData) else { return .securityViolation }
        record.value.digest = Pkcs7.digest(.sha256, cn + Pkcs7.digest(.sha256, root))
        return .success
    }

    /// `uefi_vars_check_secure_boot`: the databases need exactly NV|BS|RT|AT; the device
    /// options protect SecureBootEnable and CustomMode.
    func checkSecureBoot(_ r: UefiVarRecord) -> EfiStatus {
        if UefiVarsAuth.isSecureBootDatabase(r.key) && r.value.attributes != UefiVarsAuth.sigdbAttributes { return .invalidParameter }
        if r.key == UefiVarsAuth.secureBootEnable && configuration.forceSecureBoot && r.value.data.first != 1 { return .writeProtected }
        if r.key == UefiVarsAuth.customMode && configuration.disableCustomMode { return .writeProtected }
        return .success
    }

    /// After a PK write: QEMU runs `uefi_vars_auth_init` again; virtfw leaves setup mode
    /// ("Setting PK turns off setup mode", tests/secure-boot.rs) — modelled as the same
    /// recomputation of its mode variables.
    mutating func afterPkWrite() {
        switch dialect.initialVariables {
        case .qemuAuthInit: authInit()
        case .virtfwReset: virtfwModeVariables()
        }
    }

    /// `uefi_vars_auth_init`. Each write goes through `uefi_vars_set_variable` (delete, then
    /// add at the tail), so these variables move to the end of the list every time.
    mutating func authInit() {
        let userMode = list.find(UefiVarsAuth.pk) != nil
        setStoreVariable(UefiVarsAuth.setupMode, [.bootserviceAccess, .runtimeAccess], [userMode ? 0 : 1])
        setStoreVariable(UefiVarsAuth.signatureSupport, [.bootserviceAccess, .runtimeAccess], UefiVarsAuth.signatureSupportGuids.flatMap(\.bytes))
        var sbe: UInt8 = 0
        if let v = list.find(UefiVarsAuth.secureBootEnable) {
            if userMode { sbe = v.value.data.first ?? 0 }
        } else if userMode {
            sbe = 1
            setStoreVariable(UefiVarsAuth.secureBootEnable, .nvBs, [1])
        }
        if configuration.forceSecureBoot && sbe != 1 {
            sbe = 1
            setStoreVariable(UefiVarsAuth.secureBootEnable, .nvBs, [1])
        }
        setStoreVariable(UefiVarsAuth.secureBoot, [.bootserviceAccess, .runtimeAccess], [sbe == 1 && userMode ? 1 : 0])
        setStoreVariable(UefiVarsAuth.customMode, .nvBs, [0])
        setStoreVariable(UefiVarsAuth.vendorKeysNv, [.nonVolatile, .bootserviceAccess, .timeBasedAuthenticatedWriteAccess], [0])
        setStoreVariable(UefiVarsAuth.vendorKeys, [.bootserviceAccess, .runtimeAccess], [0])
    }

    /// `uefi_vars_set_variable`: the store's own write, no checks (the digest of an older
    /// record is not kept, as QEMU allocates a fresh record).
    mutating func setStoreVariable(_ key: VariableKey, _ attributes: VariableAttributes, _ data: [UInt8], timestamp: EfiTime? = nil) {
        list.put(UefiVarRecord(key: key, value: StoredVariable(attributes: attributes, data: data, timestamp: timestamp)))
    }
}

/// QEMU's view of a signature database (var-service-siglist.c): X.509 certificates (each
/// list must hold exactly one) and SHA-256 hashes, deduplicated; anything else is skipped,
/// and parsing stops at the first list that does not frame. Regenerated as one list per
/// certificate, then one list of all hashes.
struct UefiVarsSignatureLists {
    private(set) var certificates: [[UInt8]] = []
    private var owners: [[UInt8]] = []
    private var hashes: [(owner: [UInt8], hash: [UInt8])] = []

    init(_ databases: [UInt8]...) {
        for d in databases { parse(d) }
    }

    private mutating func parse(_ d: [UInt8]) {
        var i = 0
        while i < d.count {
            guard d.count - i >= 28 else { break }
            let type = EfiGuid(bytes: d, at: i)
            let listSize = Int(d.loadLE(UInt32.self, at: i + 16))
            let headerSize = Int(d.loadLE(UInt32.self, at: i + 20))
            let sigSize = Int(d.loadLE(UInt32.self, at: i + 24))
            guard listSize >= 28, listSize <= d.count - i, sigSize > 16 else { break }
            var start = 28 + headerSize
            if type == UefiVarsAuth.certX509 {
                guard start + sigSize == listSize else { break }
                let cert = Array(d[(i + start + 16)..<(i + start + sigSize)])
                if !certificates.contains(cert) {
                    certificates.append(cert)
                    owners.append(Array(d[(i + start)..<(i + start + 16)]))
                }
            } else if type == UefiVarsAuth.certSha256 {
                guard sigSize == 48, start + sigSize <= listSize else { break }
                while start <= listSize - sigSize {
                    let hash = Array(d[(i + start + 16)..<(i + start + 48)])
                    if !hashes.contains(where: { $0.hash == hash }) { hashes.append((Array(d[(i + start)..<(i + start + 16)]), hash)) }
                    start += sigSize
                }
            }
            i += listSize
        }
    }

    var encoded: [UInt8] {
        var out: [UInt8] = []
        func list(_ type: EfiGuid, sigSize: Int, _ body: [UInt8]) {
            var h = type.bytes
            h.appendLE(UInt32(28 + body.count))
            h.appendLE(UInt32(0))
            h.appendLE(UInt32(sigSize))
            out += h + body
        }
        for (cert, owner) in zip(certificates, owners) { list(UefiVarsAuth.certX509, sigSize: 16 + cert.count, owner + cert) }
        if !hashes.isEmpty { list(UefiVarsAuth.certSha256, sigSize: 48, hashes.flatMap { $0.owner + $0.hash }) }
        return out
    }
}
