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

@Suite("Support types")
struct SupportTests {
    @Test("EFI_GUID binary form is Data1..Data3 little-endian, Data4 as is")
    func guidBinaryOrder() {
        let g = EfiGuid("8be4df61-93ca-11d2-aa0d-00e098032b8c")!
        #expect(Hex.encode(g.bytes) == "61dfe48bca93d211aa0d00e098032b8c")
        #expect(g.description == "8be4df61-93ca-11d2-aa0d-00e098032b8c")
        #expect(EfiGuid("8BE4DF61-93CA-11D2-AA0D-00E098032B8C") == g)
        // From a file name's bytes, as efivarfs create parses it.
        let name = Array("Boot0001-8be4df61-93ca-11d2-aa0d-00e098032b8c".utf8)
        #expect(EfiGuid(utf8: name[9...]) == g)
        #expect(EfiGuid(utf8: name[8...]) == nil)
        #expect(EfiGuid(bytes: Hex.decode("61dfe48bca93d211aa0d00e098032b8c")!) == g)
    }

    /// The parser against a reference built another way (Hex.decodeStrict of the digits,
    /// then the first three fields reversed, as `guid_parse` stores them), for every byte
    /// value at every one of the 36 positions of a GUID's text: valid exactly when a dash
    /// position holds '-' and every other position a hex digit of either case.
    @Test("GUID text: every byte at every position, against a reference parser")
    func guidTextEveryByte() throws {
        func reference(_ t: [UInt8]) -> EfiGuid? {
            guard t.count == 36 else { return nil }
            for (i, c) in t.enumerated() where [8, 13, 18, 23].contains(i) != (c == UInt8(ascii: "-")) { return nil }
            let digits = t.enumerated().filter { ![8, 13, 18, 23].contains($0.offset) }.map(\.element)
            guard digits.allSatisfy({ Hex.nibble($0) != nil }), let text = Hex.decodeStrict(String(decoding: digits, as: UTF8.self)) else { return nil }
            return EfiGuid(bytes: text[0..<4].reversed() + text[4..<6].reversed() + text[6..<8].reversed() + text[8...])
        }
        let base = Array("8be4df61-93ca-11d2-aa0d-00e098032b8c".utf8)
        let g = try #require(EfiGuid(utf8: base[...]))
        #expect(g == reference(base) && Hex.encode(g.bytes) == "61dfe48bca93d211aa0d00e098032b8c")
        var valid = 0
        for position in 0..<36 {
            for byte in 0...255 {
                var t = base
                t[position] = UInt8(byte)
                let parsed = EfiGuid(utf8: t[...])
                #expect(parsed == reference(t), "byte \(byte) at \(position)")
                if parsed != nil { valid += 1 }
            }
        }
        // 32 digit positions × 22 hex digits (0-9, a-f, A-F) + 4 dash positions × 1.
        #expect(valid == 32 * 22 + 4)
        // Every digit value in every place, and round trips through the text form.
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let r = EfiGuid(low: rng.next(), high: rng.next())
            #expect(EfiGuid(r.description) == r)
            #expect(EfiGuid(r.description.uppercased()) == r)
            #expect(reference(Array(r.description.utf8)) == r)
        }
    }

    @Test("gEfiSmmVariableProtocolGuid bytes match the StMM header GUID")
    func smmGuid() {
        #expect(Hex.encode(EfiGuid.smmVariableProtocol.bytes) == "33d532ede69909429cc02d72cdd998a7")
    }

    @Test("uuid_is_valid: 36 characters, dashes at 8/13/18/23, hex elsewhere",
          arguments: ["12345678-1234-1234-1234-123456789abc", "ABCDEF01-abcd-ABCD-abcd-0123456789AB"])
    func guidTextValid(_ s: String) { #expect(EfiGuid(s) != nil) }

    @Test("malformed GUID text is refused",
          arguments: ["12345678=1234-1234-1234-123456789abc", "1234567-1234-1234-1234-123456789abcd", "g2345678-1234-1234-1234-123456789abc", ""])
    func guidTextInvalid(_ s: String) { #expect(EfiGuid(s) == nil) }

    @Test("attributes parse from names and numbers")
    func attributes() {
        #expect(VariableAttributes(parsing: "nv,bs,rt")?.rawValue == 7)
        #expect(VariableAttributes(parsing: "0x27")?.rawValue == 0x27)
        #expect(VariableAttributes(parsing: "nv,xx") == nil)
        #expect(VariableAttributes(rawValue: 0x67).description == "nv,bs,rt,at,ap")
    }

    @Test("EFI_STATUS values carry the error bit")
    func statusValues() {
        #expect(EfiStatus.notFound.rawValue == 0x8000_0000_0000_000E)
        #expect(EfiStatus.securityViolation.name == "EFI_SECURITY_VIOLATION")
        #expect(!EfiStatus.success.isError)
    }

    @Test("Linux ucs2_as_utf8 encodes surrogates one at a time")
    func linuxUtf8() {
        #expect(Ucs2.linuxUtf8([0x41, 0xE9, 0x20AC]) == [0x41, 0xC3, 0xA9, 0xE2, 0x82, 0xAC])
        #expect(Ucs2.linuxUtf8([0xD83D]) == [0xED, 0xA0, 0xBD])
    }

    @Test("CRC-32 matches the IEEE check value")
    func crc() { #expect(Crc32.checksum(Array("123456789".utf8)) == 0xCBF4_3926) }
}
