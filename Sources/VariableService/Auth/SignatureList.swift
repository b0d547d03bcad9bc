import EfiTypes
import MmWire

/// EFI_SIGNATURE_LIST (MdePkg/Include/Guid/ImageAuthentication.h): a 28-byte header
/// (SignatureType, SignatureListSize, SignatureHeaderSize, SignatureSize), the header,
/// then entries of { SignatureOwner GUID, SignatureData }.
package struct SignatureList: Equatable {
    package static let headerSize = 28
    package var type: EfiGuid
    package var signatureHeader: [UInt8]
    package var signatureSize: Int
    /// Each entry whole: owner (16 bytes) + data.
    package var entries: [[UInt8]]

    package init(type: EfiGuid, signatureHeader: [UInt8] = [], signatureSize: Int, entries: [[UInt8]]) {
        self.type = type; self.signatureHeader = signatureHeader; self.signatureSize = signatureSize; self.entries = entries
    }

    package var encoded: [UInt8] {
        var out = [UInt8](zeroed: SignatureList.headerSize)
        out.store(type, at: 0)
        out.storeLE(UInt32(SignatureList.headerSize + signatureHeader.count + entries.count * signatureSize), at: 16)
        out.storeLE(UInt32(signatureHeader.count), at: 20)
        out.storeLE(UInt32(signatureSize), at: 24)
        return out + signatureHeader + entries.joined()
    }

    package static let certX509 = EfiGuid("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")!
    package static let certPkcs7 = EfiGuid("4aafd29d-68df-49ee-8aa9-347d375665a7")!

    /// edk2 `mSupportSigItem`: type → SignatureData size (nil = any, X.509).
    package static let supported: [EfiGuid: Int?] = [
        EfiGuid("c1c41626-504c-4092-aca9-41f936934328")!: 32,   // SHA256
        EfiGuid("3c5766e8-269c-4e34-aa14-ed776e85b3b6")!: 256,  // RSA2048
        EfiGuid("e2b36190-879b-4a3d-ad8d-f2e7bba32784")!: 256,  // RSA2048_SHA256
        EfiGuid("826ca512-cf10-4ac9-b187-be01496631bd")!: 20,   // SHA1
        EfiGuid("67f8444f-8743-48f1-a328-1eaab8736080")!: 256,  // RSA2048_SHA1
        certX509: nil,
        EfiGuid("0b6e5233-a65c-44c9-9407-d9ab83bfc8bd")!: 28,   // SHA224
        EfiGuid("ff3e5307-9fd0-48c9-85f1-8ad56c701e01")!: 48,   // SHA384
        EfiGuid("093e0fae-a6c4-4f50-9f1b-d41e2b89c19a")!: 64,   // SHA512
        EfiGuid("3bd2a492-96c0-4079-b420-fcf98ef103ed")!: 48,   // X509_SHA256
        EfiGuid("7076876e-80c2-4ee6-aad2-28b349a6865b")!: 64,   // X509_SHA384
        EfiGuid("446dbf63-2502-4cda-bcfa-2465d2b0fe9d")!: 80,   // X509_SHA512
    ]

    /// Splits a database into lists; nil if the framing is broken.
    package static func parse(_ d: [UInt8]) -> [SignatureList]? {
        var lists: [SignatureList] = []
        var i = 0
        while i < d.count {
            guard d.count - i >= headerSize else { return nil }
            let listSize = Int(d.loadLE(UInt32.self, at: i + 16))
            let hdrSize = Int(d.loadLE(UInt32.self, at: i + 20))
            let sigSize = Int(d.loadLE(UInt32.self, at: i + 24))
            guard listSize >= headerSize, listSize <= d.count - i, hdrSize <= listSize - headerSize, sigSize > 16 else { return nil }
            let body = listSize - headerSize - hdrSize
            guard body % sigSize == 0 else { return nil }
            let start = i + headerSize + hdrSize
            var entries: [[UInt8]] = []
            for k in 0..<(body / sigSize) { entries.append(Array(d[(start + k * sigSize)..<(start + (k + 1) * sigSize)])) }
            lists.append(SignatureList(type: EfiGuid(bytes: d, at: i), signatureHeader: Array(d[(i + headerSize)..<start]),
                                       signatureSize: sigSize, entries: entries))
            i += listSize
        }
        return lists
    }

    /// edk2 `CheckSignatureListFormat` for PK, KEK, db, dbx, dbt (empty data passes).
    package static func checkFormat(_ d: [UInt8], isPk: Bool) -> EfiStatus {
        if d.isEmpty { return .success }
        guard let lists = parse(d) else { return .invalidParameter }
        var count = 0
        for l in lists {
            guard let expected = supported[l.type] else { return .invalidParameter }
            if let size = expected, l.signatureSize - 16 != size { return .invalidParameter }
            if !l.signatureHeader.isEmpty { return .invalidParameter }
            if l.type == certX509 {
                for e in l.entries where !Pkcs7.hasRsaKey(Array(e[16...])) { return .invalidParameter }
            }
            count += l.entries.count
        }
        if isPk && count > 1 { return .invalidParameter }
        return .success
    }

    /// Every X.509 certificate in a database, DER.
    package static func x509Certificates(_ d: [UInt8]) -> [[UInt8]] {
        (parse(d) ?? []).filter { $0.type == certX509 }.flatMap { $0.entries.map { Array($0[16...]) } }
    }

    /// edk2 `FilterSignatureList`: drop from `new` every entry already present in `existing`
    /// in a list of the same type and size; drop lists that become empty. (Duplicates
    /// within the new data are kept, as edk2 keeps them.)
    package static func filter(existing: [UInt8], new: [UInt8]) -> [UInt8] {
        guard let old = parse(existing), let incoming = parse(new) else { return new }
        var out: [UInt8] = []
        for var l in incoming {
            let present = Set(old.filter { $0.type == l.type && $0.signatureSize == l.signatureSize }.flatMap(\.entries))
            l.entries = l.entries.filter { !present.contains($0) }
            if !l.entries.isEmpty { out += l.encoded }
        }
        return out
    }
}
