import EfiTypes
import SvsmAbi

/// Reading and writing the secrets page's SVSM fields in guest memory (the firmware reads
/// them; the platform writes them at launch, as the SVSM loader does).
extension SecretsPage {
    public static func write(_ f: SvsmFields, to page: GuestPhysicalAddress, in memory: GuestMemory) throws(GuestMemoryError) {
        var bytes = [UInt8](zeroed: 0x20)
        bytes.storeLE(f.base.rawValue, at: 0)
        bytes.storeLE(f.size, at: 8)
        bytes.storeLE(f.caa.rawValue, at: 0x10)
        bytes.storeLE(f.maxVersion, at: 0x18)
        bytes[0x1C] = f.guestVmpl
        try memory.write(page.advanced(by: svsmBaseOffset), bytes)
    }

    public static func read(from page: GuestPhysicalAddress, in memory: GuestMemory) throws(GuestMemoryError) -> SvsmFields {
        let b = try memory.read(page.advanced(by: svsmBaseOffset), count: 0x20)
        return SvsmFields(base: GuestPhysicalAddress(b.loadLE(UInt64.self, at: 0)),
                          size: b.loadLE(UInt64.self, at: 8),
                          caa: GuestPhysicalAddress(b.loadLE(UInt64.self, at: 0x10)),
                          maxVersion: b.loadLE(UInt32.self, at: 0x18),
                          guestVmpl: b[0x1C])
    }
}
