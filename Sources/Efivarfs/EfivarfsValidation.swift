import EfiTypes
/// The kernel's write-time validation and removable whitelist: the table
/// `variable_validate[]` and `variable_matches` (torvalds/linux: fs/efivarfs/vars.c),
/// reproduced with their quirk: validation passes `utf8_size + 1` as the length, so exact
/// names never match and only `Boot####`/`Driver####` load options are really validated.
public enum EfivarfsValidation {
    enum Validator { case uint16, bootOrder, loadOption, devicePath, asciiString }

    struct Entry {
        let vendor: EfiGuid
        let pattern: [UInt8]
        let validator: Validator?
    }

    static func e(_ g: EfiGuid, _ p: String, _ v: Validator?) -> Entry { Entry(vendor: g, pattern: Array(p.utf8), validator: v) }

    /// Sorted as in the kernel: globs after the exact names they shadow.
    static let table: [Entry] = [
        e(.globalVariable, "BootNext", .uint16),
        e(.globalVariable, "BootOrder", .bootOrder),
        e(.globalVariable, "Boot*", .loadOption),
        e(.globalVariable, "DriverOrder", .bootOrder),
        e(.globalVariable, "Driver*", .loadOption),
        e(.globalVariable, "ConIn", .devicePath),
        e(.globalVariable, "ConInDev", .devicePath),
        e(.globalVariable, "ConOut", .devicePath),
        e(.globalVariable, "ConOutDev", .devicePath),
        e(.globalVariable, "ErrOut", .devicePath),
        e(.globalVariable, "ErrOutDev", .devicePath),
        e(.globalVariable, "Lang", .asciiString),
        e(.globalVariable, "OsIndications", nil),
        e(.globalVariable, "PlatformLang", .asciiString),
        e(.globalVariable, "Timeout", .uint16),
        e(.linuxEfiCrash, "*", nil),
    ]

    /// `variable_matches`: `match` ends as the number of pattern characters consumed.
    static func variableMatches(_ name: [UInt8], len: Int, _ pattern: [UInt8]) -> (Bool, Int) {
        var match = 0
        while true {
            let c: UInt8 = match < pattern.count ? pattern[match] : 0
            switch c {
            case UInt8(ascii: "*"): return (true, match)
            case 0: return (match == len, match)
            default:
                let n: UInt8 = match < name.count ? name[match] : 0
                if match < len && c == n { match += 1; continue }
                return (false, match)
            }
        }
    }

    /// `efivar_validate`: true if the data may be written.
    public static func validate(_ key: VariableKey, data: [UInt8]) -> Bool {
        // Only two vendors have entries: the name's UTF-8 is made only for them.
        guard table.contains(where: { $0.vendor == key.guid }) else { return true }
        let utf8 = Ucs2.linuxUtf8(key.name)
        for entry in table where entry.vendor == key.guid {
            let (matched, match) = variableMatches(utf8, len: utf8.count + 1, entry.pattern)
            if matched {
                guard let v = entry.validator else { return true }
                return run(v, name: key.name, match: match, data)
            }
        }
        return true
    }

    /// `efivar_variable_is_removable`: the same table, with the correct length.
    public static func isRemovable(_ key: VariableKey, utf8Name: [UInt8]) -> Bool {
        for entry in table where entry.vendor == key.guid {
            if variableMatches(utf8Name, len: utf8Name.count, entry.pattern).0 { return true }
        }
        return false
    }

    static func run(_ v: Validator, name: [UInt16], match: Int, _ d: [UInt8]) -> Bool {
        switch v {
        case .uint16: return d.count == 2
        case .bootOrder: return d.count % 2 == 0
        case .asciiString: return d.allSatisfy { $0 <= 127 } && d.contains(0)
        case .devicePath: return validateDevicePath(d[...])
        case .loadOption: return validateLoadOption(name, match: match, d)
        }
    }

    static func validateLoadOption(_ name: [UInt16], match: Int, _ d: [UInt8]) -> Bool {
        for i in match..<(match + 4) {
            let c: UInt16 = i < name.count ? name[i] : 0
            if c > 127 || Hex.nibble(UInt8(c & 0xff)) == nil { return true }
        }
        if name.count > match + 4 { return false }
        if d.count < 8 { return false }
        let filePathLength = Int(d[4]) | Int(d[5]) << 8
        // ucs2_strnlen over (len - 6) / 2 units, in bytes, plus the NUL.
        let maxUnits = (d.count - 6) / 2
        var units = 0
        while units < maxUnits && !(d[6 + 2 * units] == 0 && d[7 + 2 * units] == 0) { units += 1 }
        let descLength = 2 * units + 2
        if descLength + filePathLength + 6 > d.count { return false }
        return validateDevicePath(d[(6 + descLength)..<(6 + descLength + filePathLength)])
    }

    /// `validate_device_path`: walk nodes while they fit; true at an end-of-entire-path node.
    static func validateDevicePath(_ d: ArraySlice<UInt8>) -> Bool {
        let len = d.count
        guard len >= 4 else { return false }
        var offset = 0
        while offset <= len - 4 {
            let base = d.startIndex + offset
            let type = d[base], subtype = d[base + 1]
            let length = Int(d[base + 2]) | Int(d[base + 3]) << 8
            guard length >= 4, length <= len - offset else { return false }
            offset += length
            if (type == 0x7F || type == 0xFF) && subtype == 0xFF { return true }
        }
        return false
    }
}
