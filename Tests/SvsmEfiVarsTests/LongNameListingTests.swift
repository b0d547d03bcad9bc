import Testing
@testable import Driver
@testable import EfiTypes
@testable import Efivarfs
@testable import Guest
@testable import Platform

/// Issue #20, item 5: a variable name longer than the 512-byte buffer Linux's efivar_init
/// offers GetNextVariableName (torvalds/linux fs/efivarfs/vars.c: `variable_name_size =
/// 512` on every call; EFI_BUFFER_TOO_SMALL warns "Variable name size exceeds maximum" and
/// ends the walk). The mount must stop there as efivarfs does; `list` must not.
@Suite("Long variable names: efivarfs's walk stops, list's goes on")
struct LongNameListingTests {
    static let guidText = "210be57c-9849-4fc7-a635-e6382d1aec27"
    static let guid = EfiGuid(guidText)!
    /// 300 CHAR16 and the NUL: NameSize 602.
    static let long = String(repeating: "L", count: 300)

    /// A booted machine with Before, the long name and After written in that order (the
    /// store lists non-volatile variables in insertion order, so After follows the long one).
    static func machine() throws -> Machine {
        let m = try Machine()
        for (name, byte) in [("Before", UInt8(1)), (long, 2), ("After", 3)] {
            let status = try m.driver.onCpu { (cpu) throws(SvsmCallError) in
                try cpu.setVariable(VariableKey(name, guid), attributes: 0x7, data: [byte])
            }
            #expect(status == .success, "SetVariable(\(name.prefix(8))…)")
        }
        return m
    }

    @Test("efivar_init's walk stops at the 602-byte name (BUFFER_TOO_SMALL): neither it nor anything after it is listed")
    func efivarfsStops() throws {
        let m = try Self.machine()
        let fs = Efivarfs(driver: m.driver)
        try fs.populate()
        #expect(fs.populated == .nameTooLong(needed: 602))
        let names = Set(fs.list().map { String(decoding: $0.0, as: UTF8.self) })
        #expect(names.contains("Before-\(Self.guidText)"))
        #expect(!names.contains { $0.hasPrefix("LLLL") })
        #expect(!names.contains("After-\(Self.guidText)"))
        #expect(names.contains("BootOrder-8be4df61-93ca-11d2-aa0d-00e098032b8c"))
    }

    @Test("the walk with a fixed 512-byte buffer ends .nameTooLong(602) after Before; the growing walk (list) ends .complete with all three")
    func enumeration() throws {
        let m = try Self.machine()
        let fixed = m.driver.onCpu { cpu in cpu.enumerateVariables(nameBufferSize: Efivarfs.nameBufferSize, growing: false) }
        #expect(fixed.end == .nameTooLong(needed: 602))
        #expect(fixed.keys.last == VariableKey("Before", Self.guid))
        let growing = m.driver.onCpu { cpu in cpu.enumerateVariables(nameBufferSize: Efivarfs.nameBufferSize, growing: true) }
        #expect(growing.end == .complete)
        let tail = growing.keys.filter { $0.guid == Self.guid }.map { Ucs2.string($0.name) }
        #expect(tail == ["Before", Self.long, "After"])
        #expect(growing.keys.count == fixed.keys.count + 2)
    }
}
