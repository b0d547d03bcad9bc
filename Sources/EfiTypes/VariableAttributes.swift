/// EFI variable attribute bits (UEFI spec §8.2; Linux include/linux/efi.h).
public struct VariableAttributes: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let nonVolatile = VariableAttributes(rawValue: 0x01)
    public static let bootserviceAccess = VariableAttributes(rawValue: 0x02)
    public static let runtimeAccess = VariableAttributes(rawValue: 0x04)
    public static let hardwareErrorRecord = VariableAttributes(rawValue: 0x08)
    /// Deprecated counter-based authentication; edk2 answers EFI_UNSUPPORTED.
    public static let authenticatedWriteAccess = VariableAttributes(rawValue: 0x10)
    public static let timeBasedAuthenticatedWriteAccess = VariableAttributes(rawValue: 0x20)
    public static let appendWrite = VariableAttributes(rawValue: 0x40)

    public static let nvBsRt: VariableAttributes = [.nonVolatile, .bootserviceAccess, .runtimeAccess]
    public static let bsRt: VariableAttributes = [.bootserviceAccess, .runtimeAccess]
    public static let nvBs: VariableAttributes = [.nonVolatile, .bootserviceAccess]

    /// edk2 EFI_VARIABLE_ATTRIBUTES_MASK: NV|BS|RT|HR|AT|AP (AW deliberately excluded).
    public static let edk2Mask = VariableAttributes(rawValue: 0x6F)
    /// Linux EFI_VARIABLE_MASK: the bits efivarfs accepts on write.
    public static let linuxMask = VariableAttributes(rawValue: 0x7F)

    static let shortNames: [(VariableAttributes, String)] = [
        (.nonVolatile, "nv"), (.bootserviceAccess, "bs"), (.runtimeAccess, "rt"),
        (.hardwareErrorRecord, "hr"), (.authenticatedWriteAccess, "aw"),
        (.timeBasedAuthenticatedWriteAccess, "at"), (.appendWrite, "ap"),
    ]

    public var description: String {
        var parts = VariableAttributes.shortNames.filter { contains($0.0) }.map { $0.1 }
        let rest = rawValue & ~0x7F
        if rest != 0 { parts.append("0x" + String(rest, radix: 16)) }
        return parts.isEmpty ? "0" : parts.joined(separator: ",")
    }

    /// Parses "nv,bs,rt" or a number ("0x7", "7").
    public init?(parsing text: String) {
        let t = text
        if t.hasPrefix("0x") || t.hasPrefix("0X") {
            guard let v = UInt32(t.dropFirst(2), radix: 16) else { return nil }
            self.init(rawValue: v); return
        }
        if let v = UInt32(t) { self.init(rawValue: v); return }
        var value: UInt32 = 0
        for part in t.split(separator: ",") {
            let p = part.lowercased()
            guard let bit = VariableAttributes.shortNames.first(where: { $0.1 == p }) else { return nil }
            value |= bit.0.rawValue
        }
        self.init(rawValue: value)
    }
}
