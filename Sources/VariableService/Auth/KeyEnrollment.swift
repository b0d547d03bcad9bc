import EfiTypes
import CCrypto
import Foundation

/// Pre-enrolled Secure Boot keys for labs, like `virt-fw-vars --enroll-generate`: fresh
/// PK, KEK and db certificates placed in the store before the firmware boots, so that
/// AuthVariableLib's initialisation finds a PK and starts in user mode with SecureBoot = 1.
/// The private keys are written out so that the lab can sign further updates.
public struct KeyEnrollment: Sendable {
    public struct Key: Sendable {
        public let name: String
        public let certificateDer: [UInt8]
        public let certificatePem: [UInt8]
        public let privateKeyPem: [UInt8]
    }
    public let pk: Key
    public let kek: Key
    public let db: Key
    /// OVMF EnrollDefaultKeys' owner GUID.
    public static let owner = EfiGuid("a0baa8a3-041d-48a8-bc87-c36d121b5e3d")!

    public enum Failure: Error, CustomStringConvertible {
        case keyGeneration, write(String)
        public var description: String {
            switch self {
            case .keyGeneration: return "cannot generate a key pair and certificate"
            case .write(let p): return "cannot write \(p)"
            }
        }
    }

    static func make(_ cn: String, name: String) throws(Failure) -> Key {
        var der: UnsafeMutablePointer<UInt8>?, cpem: UnsafeMutablePointer<UInt8>?, kpem: UnsafeMutablePointer<UInt8>?
        var dl = 0, cl = 0, kl = 0
        let ok = ccrypto_make_self_signed(cn, &der, &dl, &cpem, &cl, &kpem, &kl)
        defer { free(der); free(cpem); free(kpem) }
        guard ok == 1, let d = der, let c = cpem, let k = kpem else { throw .keyGeneration }
        return Key(name: name, certificateDer: Array(UnsafeBufferPointer(start: d, count: dl)),
                   certificatePem: Array(UnsafeBufferPointer(start: c, count: cl)),
                   privateKeyPem: Array(UnsafeBufferPointer(start: k, count: kl)))
    }

    /// Generates the three keys and writes `<name>.crt`, `<name>.key` and `<name>.esl` into
    /// `directory`.
    public static func generate(into directory: String) throws(Failure) -> KeyEnrollment {
        let e = try generate()
        try e.write(into: directory)
        return e
    }

    /// Generates the three keys, in memory only.
    public static func generate() throws(Failure) -> KeyEnrollment {
        KeyEnrollment(pk: try make("efivarfs-bridge lab PK", name: "PK"),
                      kek: try make("efivarfs-bridge lab KEK", name: "KEK"),
                      db: try make("efivarfs-bridge lab db", name: "db"))
    }

    /// Writes `<name>.crt`, `<name>.key` and `<name>.esl` into `directory`; a failure names
    /// the file and the errno.
    public func write(into directory: String) throws(Failure) {
        for k in [pk, kek, db] {
            for (ext, bytes, mode) in [("crt", k.certificatePem, 0o644), ("key", k.privateKeyPem, 0o600), ("esl", KeyEnrollment.signatureList(k), 0o644)] {
                let path = (directory as NSString).appendingPathComponent("\(k.name).\(ext)")
                let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode_t(mode))
                guard fd >= 0 else { throw .write("\(path): \(String(cString: strerror(errno)))") }
                let n = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, bytes.count) }
                let e = errno
                close(fd)
                guard n == bytes.count else { throw .write("\(path): \(String(cString: strerror(n < 0 ? e : EIO)))") }
            }
        }
    }

    static func signatureList(_ k: Key) -> [UInt8] {
        SignatureList(type: SignatureList.certX509, signatureHeader: [], signatureSize: 16 + k.certificateDer.count,
                      entries: [owner.bytes + k.certificateDer]).encoded
    }

    /// PK, KEK and db as an offline editor of the variable file places them (NV|BS|RT|AT,
    /// timestamp zero), for any profile's store.
    public var variables: [ExportedVariable] {
        let attrs: VariableAttributes = [.nvBsRt, .timeBasedAuthenticatedWriteAccess]
        return [(VariableStore.pk, pk), (VariableStore.kek, kek), (VariableKey("db", .imageSecurityDatabase), db)].map {
            ExportedVariable($0.0, StoredVariable(attributes: attrs, data: KeyEnrollment.signatureList($0.1), timestamp: .zero))
        }
    }

    /// Places PK, KEK and db in the store.
    public func enroll(into store: inout VariableStore) { store.restore(variables) }
}
