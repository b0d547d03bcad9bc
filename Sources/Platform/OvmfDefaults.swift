import EfiTypes
import VariableService

/// The variables a freshly booted OVMF VM shows, written by the firmware model through
/// SetVariable at boot time (before EndOfDxe). Contents follow what OVMF's BDS and
/// platform drivers create (QEMU q35 with a disk and the UEFI shell), in the shape the
/// Debian OVMF_VARS_4M.ms.fd store holds them.
public enum OvmfDefaults {
    public struct Entry: Sendable {
        public let key: VariableKey
        public let attributes: VariableAttributes
        public let data: [UInt8]
    }

    static let uiApp = "462caa21-7614-4503-836e-8ab6f4662331"
    static let shell = "7c04a583-9e3e-4f1c-ad65-e05268d0b4d1"
    static let dxeFv = "7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1"
    static let loadOptionActive: UInt32 = 0x1
    static let loadOptionHidden: UInt32 = 0x8
    static let loadOptionCategoryApp: UInt32 = 0x100

    static func u16(_ v: UInt16) -> [UInt8] { var b = [UInt8](); b.appendLE(v); return b }
    static func u64(_ v: UInt64) -> [UInt8] { var b = [UInt8](); b.appendLE(v); return b }
    static func ascii(_ s: String) -> [UInt8] { Array(s.utf8) + [0] }

    public static var entries: [Entry] {
        let g = EfiGuid.globalVariable
        func e(_ name: String, _ guid: EfiGuid, _ a: VariableAttributes, _ d: [UInt8]) -> Entry {
            Entry(key: VariableKey(name, guid), attributes: a, data: d)
        }
        let console = DevicePath.pciRoot() + DevicePath.pci(device: 0x1F, function: 0) + DevicePath.serialConsole() + DevicePath.end
        let conIn = console  // serial console in, as QEMU's default OVMF configuration has
        let boot0000 = DevicePath.loadOption(attributes: loadOptionActive | loadOptionHidden | loadOptionCategoryApp,
                                             description: "UiApp", path: DevicePath.fv(dxeFv) + DevicePath.fvFile(uiApp) + DevicePath.end)
        let boot0001 = DevicePath.loadOption(attributes: loadOptionActive, description: "UEFI QEMU HARDDISK QM00001 ",
                                             path: DevicePath.pciRoot() + DevicePath.pci(device: 0x1F, function: 2)
                                                + DevicePath.ata(secondary: false, slave: false) + DevicePath.end,
                                             optionalData: EfiGuid("8108ac4e-9f11-4d59-850e-e21a522c59b2")!.bytes)  // BDS auto-created option
        let boot0002 = DevicePath.loadOption(attributes: loadOptionActive, description: "EFI Internal Shell",
                                             path: DevicePath.fv(dxeFv) + DevicePath.fvFile(shell) + DevicePath.end)
        // EFI_KEY_OPTION: KeyData (one key, no shift state), the CRC32 of the boot option
        // it starts, the option number, then the EFI_INPUT_KEY. OVMF maps F2 and Esc to
        // the boot manager menu (UiApp).
        func keyOption(scanCode: UInt16, bootOption: UInt16, target: [UInt8]) -> [UInt8] {
            var b = [UInt8](); b.appendLE(UInt32(0x4000_0000)); b.appendLE(Crc32.checksum(target)); b.appendLE(bootOption)
            b.appendLE(scanCode); b.appendLE(UInt16(0)); return b
        }
        return [
            // Non-volatile, as the BDS leaves them.
            e("Boot0000", g, .nvBsRt, boot0000),
            e("Boot0001", g, .nvBsRt, boot0001),
            e("Boot0002", g, .nvBsRt, boot0002),
            e("BootOrder", g, .nvBsRt, u16(1) + u16(2) + u16(0)),
            e("Timeout", g, .nvBsRt, u16(0)),
            e("Lang", g, .nvBsRt, Array("eng".utf8) + [0]),
            e("PlatformLang", g, .nvBsRt, ascii("en")),
            e("ConIn", g, .nvBsRt, conIn),
            e("ConOut", g, .nvBsRt, console),
            e("ErrOut", g, .nvBsRt, console),
            e("Key0000", g, .nvBsRt, keyOption(scanCode: 0x0C, bootOption: 0, target: boot0000)),  // SCAN_F2
            e("Key0001", g, .nvBsRt, keyOption(scanCode: 0x17, bootOption: 0, target: boot0000)),  // SCAN_ESC
            // Volatile, recreated by the firmware on every boot.
            e("BootCurrent", g, .bsRt, u16(1)),
            e("BootOptionSupport", g, .bsRt, [0x13, 0x03, 0x00, 0x00]),
            e("LangCodes", g, .bsRt, ascii("engfraengfra")),  // PcdUefiVariableDefaultLangCodes
            e("PlatformLangCodes", g, .bsRt, ascii("en;fr;en-US;fr-FR")),  // PcdUefiVariableDefaultPlatformLangCodes
            e("OsIndicationsSupported", g, .bsRt, u64(0x0000_0000_0000_0041)),
            e("ConInDev", g, .bsRt, conIn),
            e("ConOutDev", g, .bsRt, console),
            e("ErrOutDev", g, .bsRt, console),
            // BdsEntry's default platform-recovery option (the removable-media path).
            e("PlatformRecovery0000", g, .bsRt,
              DevicePath.loadOption(attributes: loadOptionActive, description: "Default PlatformRecovery",
                                    path: DevicePath.filePath("\\EFI\\BOOT\\BOOTX64.EFI") + DevicePath.end)),
            // Vendor GUIDs.
            e("MTC", .mtcVendor, .nvBsRt, [0x01, 0x00, 0x00, 0x00]),
            e("VarErrorFlag", .varErrorFlag, .nvBsRt, [0xFF]),
            e("MemoryTypeInformation", .memoryTypeInformation, .nvBs,
              [0x0a, 0, 0, 0, 0x80, 0, 0, 0, 0x09, 0, 0, 0, 0x12, 0, 0, 0, 0x00, 0, 0, 0, 0x00, 0x01, 0, 0,
               0x06, 0, 0, 0, 0x00, 0x01, 0, 0, 0x05, 0, 0, 0, 0x00, 0x01, 0, 0, 0x04, 0, 0, 0, 0x00, 0x0f, 0, 0,
               0x0f, 0, 0, 0, 0x00, 0, 0, 0].prefix(48).map { $0 }),
        ]
    }
}
