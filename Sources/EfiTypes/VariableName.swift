/// Variable names as people type them: `Name-GUID` (efivarfs), `GUID-Name` (efivar -n),
/// and a few well-known GUIDs by short name (`BootOrder-global`, `global-BootOrder`).
public enum VariableName {
    public static let wellKnownGuids: [String: EfiGuid] = [
        "global": .globalVariable,
        "security": .imageSecurityDatabase,
        "db": .imageSecurityDatabase,
        "shim": .shimLock,
        "hwerr": .hardwareErrorVariable,
        "secureboot": .secureBootEnableDisable,
        "custommode": .customModeEnable,
        "certdb": .certDb,
    ]

    static func guid(_ s: Substring) -> EfiGuid? {
        EfiGuid(String(s)) ?? wellKnownGuids[s.lowercased()]
    }

    /// Parses a name; nil when neither form fits.
    public static func parse(_ text: String) -> VariableKey? {
        // Name-GUID: the last 36 characters are a GUID.
        if text.count > 37 {
            let guidStart = text.index(text.endIndex, offsetBy: -36)
            let dash = text.index(before: guidStart)
            if text[dash] == "-", let g = EfiGuid(String(text[guidStart...])) {
                return VariableKey(guid: g, name: Ucs2.units(String(text[..<dash])))
            }
            // GUID-Name.
            let afterGuid = text.index(text.startIndex, offsetBy: 36)
            if text[afterGuid] == "-", let g = EfiGuid(String(text[..<afterGuid])) {
                return VariableKey(guid: g, name: Ucs2.units(String(text[text.index(after: afterGuid)...])))
            }
        }
        // Short GUID names, on either side.
        if let dash = text.lastIndex(of: "-"), let g = wellKnownGuids[text[text.index(after: dash)...].lowercased()],
           dash != text.startIndex {
            return VariableKey(guid: g, name: Ucs2.units(String(text[..<dash])))
        }
        if let dash = text.firstIndex(of: "-"), let g = wellKnownGuids[text[..<dash].lowercased()],
           text.index(after: dash) != text.endIndex {
            return VariableKey(guid: g, name: Ucs2.units(String(text[text.index(after: dash)...])))
        }
        return nil
    }
}
