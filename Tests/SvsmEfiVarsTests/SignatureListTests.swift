import Testing
@testable import Driver
@testable import EfiTypes
@testable import Efivarfs
@testable import Guest
@testable import Hardware
@testable import Host
@testable import MmWire
@testable import Platform
@testable import Svsm
@testable import SvsmAbi
@testable import Trace
@testable import VariableService

@Suite("Signature databases")
struct SignatureListTests {
    static let sha256 = EfiGuid("c1c41626-504c-4092-aca9-41f936934328")!
    static let owner = EfiGuid("11111111-2222-3333-4444-555555555555")!

    static func hashList(_ hashes: [UInt8]...) -> [UInt8] {
        SignatureList(type: sha256, signatureHeader: [], signatureSize: 48, entries: hashes.map { owner.bytes + $0 }).encoded
    }

    @Test("EFI_SIGNATURE_LIST encodes with its 28-byte header")
    func golden() {
        let l = Self.hashList([UInt8](repeating: 0xAB, count: 32))
        #expect(Hex.encode(Array(l[0..<28])) == "2616c4c14c509240aca941f936934328" + "4c000000" + "00000000" + "30000000")
        #expect(l.count == 76)
        #expect(SignatureList.parse(l)?.first?.entries.count == 1)
    }

    @Test("CheckSignatureListFormat", arguments: [
        ("empty", [UInt8](), false, EfiStatus.success),
        ("one SHA-256", hashList([UInt8](repeating: 1, count: 32)), false, .success),
        ("SHA-256 of the wrong size", SignatureList(type: sha256, signatureHeader: [], signatureSize: 40, entries: [owner.bytes + [UInt8](repeating: 1, count: 24)]).encoded, false, .invalidParameter),
        ("a signature header", SignatureList(type: sha256, signatureHeader: [1, 2, 3, 4], signatureSize: 48, entries: [owner.bytes + [UInt8](repeating: 1, count: 32)]).encoded, false, .invalidParameter),
        ("an unknown type", SignatureList(type: owner, signatureHeader: [], signatureSize: 48, entries: [owner.bytes + [UInt8](repeating: 1, count: 32)]).encoded, false, .invalidParameter),
        ("two entries in PK", hashList([UInt8](repeating: 1, count: 32), [UInt8](repeating: 2, count: 32)), true, .invalidParameter),
        ("trailing bytes", hashList([UInt8](repeating: 1, count: 32)) + [0], false, .invalidParameter),
        ("an X.509 entry that is not a certificate", SignatureList(type: SignatureList.certX509, signatureHeader: [], signatureSize: 20, entries: [owner.bytes + [1, 2, 3, 4]]).encoded, false, .invalidParameter),
    ])
    func checkFormat(_ label: String, _ data: [UInt8], _ isPk: Bool, _ expected: EfiStatus) {
        #expect(SignatureList.checkFormat(data, isPk: isPk) == expected, "\(label)")
    }

    @Test("append de-duplication drops entries already present and empty lists")
    func filter() {
        let a = [UInt8](repeating: 1, count: 32), b = [UInt8](repeating: 2, count: 32)
        let existing = Self.hashList(a)
        #expect(SignatureList.filter(existing: existing, new: Self.hashList(a)) == [])
        #expect(SignatureList.filter(existing: existing, new: Self.hashList(a, b)) == Self.hashList(b))
    }

    @Test("a bare SignedData gets the ContentInfo wrapper; a wrapped one is left alone")
    func wrap() {
        let bare: [UInt8] = [0x30, 0x82, 0x00, 0x03, 0x02, 0x01, 0x01]
        let wrapped = Pkcs7.wrap(bare)
        #expect(Hex.encode(wrapped) == "30820016" + "06092a864886f70d010702" + "a0820007" + "30820003020101")
        #expect(Pkcs7.wrap(wrapped) == wrapped)
    }

    @Test("an AT write whose EFI_TIME has a non-zero nanosecond field is a security violation")
    func timestampFields() {
        var s = VariableStore(); s.signalEndOfDxe(); s.signalExitBootServices()
        var d = [UInt8](repeating: 0, count: 60)
        d.storeLE(UInt16(2026), at: 0); d[2] = 1; d[3] = 1
        d.storeLE(UInt32(5), at: 8)  // Nanosecond
        d.storeLE(UInt32(44), at: 16); d.storeLE(UInt16(0x0200), at: 20); d.storeLE(UInt16(0x0EF1), at: 22)
        d.replace(at: 24, with: SignatureList.certPkcs7.bytes)
        #expect(s.setVariable(VariableKey("Private", Self.owner), attributes: 0x27, data: d) == .securityViolation)
        d.storeLE(UInt32(0), at: 8)
        d.storeLE(UInt16(0x0002), at: 22)  // not WIN_CERT_TYPE_EFI_GUID
        #expect(s.setVariable(VariableKey("Private", Self.owner), attributes: 0x27, data: d) == .securityViolation)
        #expect(s.count == 0)
    }
}
