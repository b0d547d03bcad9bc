/// An EFI_GUID, kept in its binary (wire) form: Data1 u32 LE, Data2 u16 LE, Data3 u16 LE,
/// Data4[8] as is. The text form prints Data1..Data3 big-endian and is lowercase
/// (Linux `%pUl`, `efi_guid_to_str`).
public struct EfiGuid: Hashable, Sendable, CustomStringConvertible, Comparable {
    /// The 16 binary bytes, first 8 in `low` and last 8 in `high` (both little-endian loads).
    public let low: UInt64
    public let high: UInt64

    public init(low: UInt64, high: UInt64) { self.low = low; self.high = high }

    public init(bytes: [UInt8], at offset: Int = 0) {
        precondition(bytes.count >= offset + 16)
        low = bytes.loadLE(UInt64.self, at: offset)
        high = bytes.loadLE(UInt64.self, at: offset + 8)
    }

    public var bytes: [UInt8] {
        var out = [UInt8](zeroed: 16)
        out.storeLE(low, at: 0)
        out.storeLE(high, at: 8)
        return out
    }

    /// Parses the 36-character text form; hex digits may be in either case.
    public init?(_ text: String) {
        var t = text
        guard let g = t.withUTF8({ EfiGuid.parse($0) }) else { return nil }
        self = g
    }

    /// Parses the text form from bytes (a file name's GUID part), without a String.
    public init?(utf8: ArraySlice<UInt8>) {
        guard let g = utf8.withUnsafeBufferPointer({ EfiGuid.parse($0) }) else { return nil }
        self = g
    }

    /// Text byte `k` (pairs of hex digits, dashes left out) holds binary byte
    /// `textOrder(k)`, and the other way round: 3,2,1,0 | 5,4 | 7,6 | 8..15 (`guid_parse`,
    /// the first three fields little-endian).
    @inline(__always)
    static func textOrder(_ k: Int) -> Int { k < 4 ? 3 - k : k < 6 ? 9 - k : k < 8 ? 13 - k : k }

    /// Linux `guid_parse` (lib/uuid.c) in one pass over the text, no intermediate arrays:
    /// every efivarfs create, lookup and unlink parses or checks one. The 32 digits are read
    /// in text order into two numbers, Data1..Data3 and Data4, and put into wire order once
    /// at the end: a byte-by-byte walk in wire order, through a lookup table, cost about 840
    /// instructions a GUID (callgrind), a third of an efivarfs lookup. Nil unless the text
    /// passes `uuid_is_valid` (lib/uuid.c): 36 characters, '-' at 8, 13, 18 and 23, a hex
    /// digit of either case elsewhere.
    static func parse(_ p: UnsafeBufferPointer<UInt8>) -> EfiGuid? {
        guard p.count == 36, p[8] == 0x2d, p[13] == 0x2d, p[18] == 0x2d, p[23] == 0x2d else { return nil }
        var valid = true
        // The digits of p[from..<to] appended to `value`, four bits each.
        func digits(_ from: Int, _ to: Int, _ value: inout UInt64) {
            for i in from..<to {
                let c = p[i]
                var v = c &- 0x30                      // '0'...'9'
                if v > 9 {
                    v = (c | 0x20) &- 0x61             // 'a'...'f', either case
                    if v > 5 { valid = false }
                    v &+= 10
                }
                value = value << 4 | UInt64(v & 0xf)
            }
        }
        var front: UInt64 = 0, data4: UInt64 = 0       // text order, big-endian
        digits(0, 8, &front); digits(9, 13, &front); digits(14, 18, &front)
        digits(19, 23, &data4); digits(24, 36, &data4)
        guard valid else { return nil }
        // Data1, Data2 and Data3 are stored little-endian; Data4's bytes as written.
        let data1 = front >> 32, data2 = front >> 16 & 0xffff, data3 = front & 0xffff
        return EfiGuid(low: data1 | data2 << 32 | data3 << 48, high: data4.byteSwapped)
    }

    public var description: String {
        // '-' after text bytes 3, 5, 7 and 9.
        let digits: StaticString = "0123456789abcdef"
        var out = [UInt8]()
        out.reserveCapacity(36)
        for k in 0..<16 {
            let i = EfiGuid.textOrder(k)
            let b = UInt8(truncatingIfNeeded: (i < 8 ? low >> (8 * i) : high >> (8 * (i - 8))))
            digits.withUTF8Buffer { d in out.append(d[Int(b >> 4)]); out.append(d[Int(b & 0xf)]) }
            if k == 3 || k == 5 || k == 7 || k == 9 { out.append(0x2d) }
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func < (a: EfiGuid, b: EfiGuid) -> Bool {
        a.description < b.description
    }

    public static let zero = EfiGuid(low: 0, high: 0)
}

/// GUIDs this project names, with the sources that define them.
extension EfiGuid {
    private static func g(_ s: String) -> EfiGuid { EfiGuid(s)! }
    /// EFI_GLOBAL_VARIABLE (MdePkg/Include/Guid/GlobalVariable.h).
    public static let globalVariable = g("8be4df61-93ca-11d2-aa0d-00e098032b8c")
    /// EFI_IMAGE_SECURITY_DATABASE_GUID.
    public static let imageSecurityDatabase = g("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
    /// gEfiHardwareErrorVariableGuid.
    public static let hardwareErrorVariable = g("414e6bdd-e47b-47cc-b244-bb61020cf516")
    /// gEfiSmmVariableProtocolGuid = Linux EFI_MM_VARIABLE_GUID.
    public static let smmVariableProtocol = g("ed32d533-99e6-4209-9cc0-2d72cdd998a7")
    /// gVarCheckPolicyLibMmiHandlerGuid.
    public static let varCheckPolicyMmiHandler = g("da1b0d11-d1a7-46c4-9dc9-f3714875c6eb")
    /// gEfiEndOfDxeEventGroupGuid.
    public static let endOfDxeEvent = g("02ce967a-dd7e-4ffc-9ee7-810cf0470880")
    /// gEfiEventReadyToBootGuid.
    public static let readyToBootEvent = g("7ce88fb3-4bd7-4679-87a8-a8d8dee50d2b")
    /// gEfiEventExitBootServicesGuid.
    public static let exitBootServicesEvent = g("27abf055-b1b8-4c26-8048-748f37baa2df")
    /// LINUX_EFI_CRASH_GUID: every name under it is removable in efivarfs.
    public static let linuxEfiCrash = g("cfc8fc79-be2e-4ddc-97f0-9f98bfe298a0")
    /// LINUX_EFI_RANDOM_SEED_TABLE_GUID: hidden by efivarfs, EPERM on create.
    public static let linuxEfiRandomSeedTable = g("1ce1e5bc-7ceb-42f2-81e5-8aadf180f57b")
    /// gEfiSecureBootEnableDisableGuid.
    public static let secureBootEnableDisable = g("f0a30bc7-af08-4556-99c4-001009c93a44")
    /// gEfiCustomModeEnableGuid.
    public static let customModeEnable = g("c076ec0c-7028-4399-a072-71ee5c448b9f")
    /// gEfiVendorKeysNvGuid.
    public static let vendorKeysNv = g("9073e4e0-60ec-4b6e-9903-4c223c260f3c")
    /// gEfiCertDbGuid.
    public static let certDb = g("d9bee56e-75dc-49d9-b4d7-b534210f637a")
    /// gEdkiiVarErrorFlagGuid.
    public static let varErrorFlag = g("04b37fe8-f6ae-480b-bdd5-37d98c5e89aa")
    /// gMtcVendorGuid (MonotonicCounter), as in the Debian OVMF stores.
    public static let mtcVendor = g("eb704011-1402-11d3-8e77-00a0c969723b")
    /// gEfiMemoryTypeInformationGuid.
    public static let memoryTypeInformation = g("4c19049f-4137-4dd3-9c10-8b97a83ffdfa")
    /// shim's vendor GUID (MokList, SbatLevel...).
    public static let shimLock = g("605dab50-e046-4300-abb6-3dd810dd8b23")
    /// QEMU/OVMF platform "LoaderInfo" style vendor GUID used by systemd-boot (LoaderEntries).
    public static let systemdLoader = g("4a67b082-0a4c-41cf-b6c7-440b29bb8c4f")
    /// libefivar's ESP sync GUID (RTStorageVolatile / VarToFile).
    public static let rtStorageVolatile = g("b2ac5fc9-92b7-4acd-aeac-11e818c3130c")
}
