import EfiTypes
/// efivarfs file names: `<VariableName>-<GUID>` (torvalds/linux: fs/efivarfs/inode.c,
/// super.c, vars.c). Names are byte strings, as the VFS hands them over.
public enum EfivarfsName {
    public static let guidLength = 36
    public static let nameMax = 255

    /// `efivarfs_valid_name`: at least one name byte, '-', and a valid GUID at the end.
    public static func isValid(_ name: [UInt8]) -> Bool { guid(ofName: name) != nil }

    /// The GUID at the end of a valid name; nil when `isValid` is false. The check and the
    /// parse are one pass.
    static func guid(ofName name: [UInt8]) -> EfiGuid? {
        guard name.count >= guidLength + 2 else { return nil }
        guard name[name.count - guidLength - 1] == UInt8(ascii: "-") else { return nil }
        return EfiGuid(utf8: name[(name.count - guidLength)...])
    }

    /// The lookup key: the name part exactly, the GUID lower-cased (`efivarfs_d_compare`
    /// and `efivarfs_d_hash` compare the GUID case-insensitively).
    public static func lookupKey(_ name: [UInt8]) -> LookupKey {
        isValid(name) ? lookupKey(validName: name) : LookupKey(bytes: name)
    }

    /// The lookup key of a name the caller has already checked with `isValid` (lookup,
    /// create and unlink check first: the GUID is not parsed twice).
    public static func lookupKey(validName name: [UInt8]) -> LookupKey {
        var k = name
        for i in (name.count - guidLength)..<name.count where (0x41...0x5a).contains(k[i]) { k[i] += 0x20 }
        return LookupKey(bytes: k)
    }

    /// A dentry's key in the name table. Hashed as one run of bytes: Array's own hashing
    /// feeds the hasher a byte at a time, and every lookup, create and unlink hashes one.
    public struct LookupKey: Hashable, Sendable {
        public let bytes: [UInt8]
        public func hash(into hasher: inout Hasher) {
            hasher.combine(bytes.count)
            bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
        }
    }

    /// `efivarfs_create`: the EFI name is the file name's bytes widened to CHAR16 (not
    /// UTF-8-decoded), the GUID parsed from the text.
    public static func variableKey(forCreatedName name: [UInt8]) -> VariableKey? {
        guard let guid = guid(ofName: name) else { return nil }
        let namePart = name[..<(name.count - guidLength - 1)]
        return VariableKey(guid: guid, name: namePart.map { UInt16($0) })
    }

    /// The name efivarfs lists for a firmware variable: UCS-2 → UTF-8 (the kernel's
    /// encoder), '-', lowercase GUID, every '/' replaced by '!'.
    public static func fileName(for key: VariableKey) -> [UInt8] {
        var out = Ucs2.linuxUtf8(key.name)
        out.append(UInt8(ascii: "-"))
        out.append(contentsOf: Array(key.guid.description.utf8))
        for i in out.indices where out[i] == UInt8(ascii: "/") { out[i] = UInt8(ascii: "!") }
        return out
    }
}
