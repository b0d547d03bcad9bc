import EfiTypes
import VariableService

/// Building blocks for the default store's device paths and load options (UEFI spec §10
/// device path nodes; EFI_LOAD_OPTION §3.1.3).
enum DevicePath {
    static func node(_ type: UInt8, _ subtype: UInt8, _ body: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [type, subtype]
        out.appendLE(UInt16(4 + body.count))
        return out + body
    }
    static let end: [UInt8] = [0x7F, 0xFF, 0x04, 0x00]

    /// ACPI PciRoot(uid): HID PNP0A03 (EISA 0x0A0341D0).
    static func pciRoot(_ uid: UInt32 = 0) -> [UInt8] {
        var b = [UInt8](); b.appendLE(UInt32(0x0A03_41D0)); b.appendLE(uid)
        return node(0x02, 0x01, b)
    }
    static func pci(device: UInt8, function: UInt8) -> [UInt8] { node(0x01, 0x01, [function, device]) }
    /// ATA: primary/secondary, master/slave, LUN.
    static func ata(secondary: Bool, slave: Bool) -> [UInt8] {
        var b: [UInt8] = [secondary ? 1 : 0, slave ? 1 : 0]; b.appendLE(UInt16(0))
        return node(0x03, 0x01, b)
    }
    /// Acpi(PNP0501, uid) serial port, then Uart(115200,8,N,1), then VenVt100().
    static func serialConsole() -> [UInt8] {
        var acpi = [UInt8](); acpi.appendLE(UInt32(0x0501_41D0)); acpi.appendLE(UInt32(0))
        var uart = [UInt8](); uart.appendLE(UInt32(0)); uart.appendLE(UInt64(115200)); uart += [8, 1, 1]
        let vt100 = EfiGuid("dfa66065-b419-11d3-9a2d-0090273fc14d")!.bytes
        return node(0x02, 0x01, acpi) + node(0x03, 0x0E, uart) + node(0x03, 0x0A, vt100)
    }
    /// PIWG firmware volume / firmware file (MEDIA subtypes 7 and 6).
    static func fv(_ guid: String) -> [UInt8] { node(0x04, 0x07, EfiGuid(guid)!.bytes) }
    static func fvFile(_ guid: String) -> [UInt8] { node(0x04, 0x06, EfiGuid(guid)!.bytes) }
    /// MEDIA_FILEPATH_DP: a NUL-terminated UCS-2 path.
    static func filePath(_ path: String) -> [UInt8] { node(0x04, 0x04, Ucs2.nulTerminatedBytes(Ucs2.units(path))) }

    /// EFI_LOAD_OPTION: Attributes, FilePathListLength, Description (CHAR16, NUL), path, data.
    static func loadOption(attributes: UInt32, description: String, path: [UInt8], optionalData: [UInt8] = []) -> [UInt8] {
        var out = [UInt8]()
        out.appendLE(attributes)
        out.appendLE(UInt16(path.count))
        out += Ucs2.nulTerminatedBytes(Ucs2.units(description))
        return out + path + optionalData
    }
}
