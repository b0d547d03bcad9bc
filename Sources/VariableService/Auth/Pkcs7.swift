import EfiTypes
import CCrypto
import Foundation

/// PKCS#7 and X.509 through OpenSSL's libcrypto, the library edk2's AuthVariableLib uses
/// (through BaseCryptLib). Chosen over swift-certificates' CMS support because the
/// verifier must accept exactly what edk2 accepts: partial chains to the given anchor, no
/// validity-period checks, any key usage, detached binary content.
package enum Pkcs7 {
    package enum DigestAlgorithm: Sendable {
        case sha256, sha384, sha512
        var nid: Int32 {
            switch self {
            case .sha256: return ccrypto_nid_sha256()
            case .sha384: return ccrypto_nid_sha384()
            case .sha512: return ccrypto_nid_sha512()
            }
        }
    }

    /// OID 1.2.840.113549.1.7.2 (signedData) as DER.
    package static let signedDataOid: [UInt8] = [0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02]

    /// edk2 `WrapPkcs7Data`: a bare SignedData gets the ContentInfo wrapper.
    package static func wrap(_ d: [UInt8]) -> [UInt8] {
        if d.count > 17, Array(d[4..<15]) == signedDataOid, d[15] == 0xA0, d[16] == 0x82 { return d }
        func length(_ n: Int) -> [UInt8] { [0x82, UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] }
        let inner = [0xA0] + length(d.count) + d
        let body = signedDataOid + inner
        return [0x30] + length(body.count) + body
    }

    package static func digestAlgorithm(_ p7: [UInt8]) -> DigestAlgorithm? {
        let nid = p7.withUnsafeBufferPointer { ccrypto_pkcs7_digest_nid($0.baseAddress, $0.count) }
        switch nid {
        case ccrypto_nid_sha256(): return .sha256
        case ccrypto_nid_sha384(): return .sha384
        case ccrypto_nid_sha512(): return .sha512
        default: return nil
        }
    }

    package static func verify(_ p7: [UInt8], anchor: [UInt8], data: [UInt8]) -> Bool {
        p7.withUnsafeBufferPointer { p in
            anchor.withUnsafeBufferPointer { a in
                data.withUnsafeBufferPointer { d in
                    ccrypto_pkcs7_verify(p.baseAddress, p.count, a.baseAddress, a.count, d.baseAddress, d.count) == 1
                }
            }
        }
    }

    /// The signer certificate and the top-level certificate (last in the list), DER.
    package static func signers(_ p7: [UInt8]) -> (signer: [UInt8], top: [UInt8])? {
        var s: UnsafeMutablePointer<UInt8>?, t: UnsafeMutablePointer<UInt8>?
        var sl = 0, tl = 0
        let ok = p7.withUnsafeBufferPointer { ccrypto_pkcs7_signers($0.baseAddress, $0.count, &s, &sl, &t, &tl) }
        defer { ccrypto_free(s); ccrypto_free(t) }
        guard ok == 1, let sp = s, let tp = t else { return nil }
        return (Array(UnsafeBufferPointer(start: sp, count: sl)), Array(UnsafeBufferPointer(start: tp, count: tl)))
    }

    package static func hasRsaKey(_ cert: [UInt8]) -> Bool {
        cert.withUnsafeBufferPointer { ccrypto_x509_has_rsa_key($0.baseAddress, $0.count) == 1 }
    }

    package static func commonNameAndTbs(_ cert: [UInt8]) -> (cn: [UInt8], tbs: [UInt8])? {
        var c: UnsafeMutablePointer<UInt8>?, t: UnsafeMutablePointer<UInt8>?
        var cl = 0, tl = 0
        let ok = cert.withUnsafeBufferPointer { ccrypto_x509_cn_and_tbs($0.baseAddress, $0.count, &c, &cl, &t, &tl) }
        defer { free(c); free(t) }
        guard ok == 1, let cp = c, let tp = t else { return nil }
        return (Array(UnsafeBufferPointer(start: cp, count: cl)), Array(UnsafeBufferPointer(start: tp, count: tl)))
    }

    package static func digest(_ alg: DigestAlgorithm, _ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](zeroed: 64)
        let n = data.withUnsafeBufferPointer { d in out.withUnsafeMutableBufferPointer { ccrypto_digest(alg.nid, d.baseAddress, d.count, $0.baseAddress) } }
        return Array(out[0..<Int(n)])
    }
}
