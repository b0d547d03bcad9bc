import EfiTypes
import MmWire

/// Lang / PlatformLang coupling (edk2 Variable.c `AutoUpdateLangVariable`, with
/// PcdUefiVariableDefaultLangDeprecate FALSE as in OVMF). Matches on the name only, any GUID.
extension VariableStore {
    static let langCodesName = Ucs2.units("LangCodes")
    static let platformLangCodesName = Ucs2.units("PlatformLangCodes")
    static let langName = Ucs2.units("Lang")
    static let platformLangName = Ucs2.units("PlatformLang")

    /// Step 12 of SetVariable. Returns an error to abort the write, or nil.
    mutating func autoUpdateLangVariables(_ key: VariableKey, attributes: VariableAttributes, data: [UInt8]) -> EfiStatus? {
        let isDelete = (data.isEmpty && !attributes.contains(.appendWrite)) || attributes.intersection([.bootserviceAccess, .runtimeAccess]).isEmpty
        switch key.name {
        case VariableStore.langCodesName, VariableStore.platformLangCodesName:
            // Firmware-owned: never changed at runtime.
            if phase.atRuntime { return .writeProtected }
            if key.name == VariableStore.langCodesName { langCodes = isDelete ? nil : data } else { platformLangCodes = isDelete ? nil : data }
            return nil
        case VariableStore.platformLangName where !isDelete:
            guard let codes = platformLangCodes, let lang3 = langCodes,
                  let best = VariableStore.bestRfc4646(requested: VariableStore.asciiz(data), supported: VariableStore.asciiz(codes)),
                  let index = VariableStore.rfc4646List(VariableStore.asciiz(codes)).firstIndex(of: best) else { return nil }
            let iso = VariableStore.asciiz(lang3)
            guard iso.count >= 3 * (index + 1) else { return nil }
            let lang = Array(iso[(3 * index)..<(3 * index + 3)]) + [0]
            return writeCoupled(VariableKey(guid: .globalVariable, name: VariableStore.langName), lang)
        case VariableStore.langName where !isDelete:
            guard let codes = platformLangCodes, let lang3 = langCodes else { return nil }
            let requested = Array(VariableStore.asciiz(data).prefix(3))
            let iso = VariableStore.asciiz(lang3)
            var index: Int?
            var i = 0
            while i + 3 <= iso.count { if Array(iso[i..<(i + 3)]) == requested { index = i / 3; break }; i += 3 }
            let list = VariableStore.rfc4646List(VariableStore.asciiz(codes))
            guard let ix = index, ix < list.count else { return nil }
            return writeCoupled(VariableKey(guid: .globalVariable, name: VariableStore.platformLangName), list[ix] + [0])
        default:
            return nil
        }
    }

    /// The coupled variable is written NV|BS|RT by the driver itself (no VarCheck).
    private mutating func writeCoupled(_ key: VariableKey, _ data: [UInt8]) -> EfiStatus? {
        let v = StoredVariable(attributes: .nvBsRt, data: data)
        guard hasSpace(for: key, v, replacing: find(key)) else { return .outOfResources }
        putRecord(key, v)
        return nil
    }

    static func asciiz(_ d: [UInt8]) -> [UInt8] { Array(d.prefix { $0 != 0 }) }
    static func rfc4646List(_ codes: [UInt8]) -> [[UInt8]] { codes.split(separator: UInt8(ascii: ";")).map(Array.init) }

    /// edk2 `GetBestLanguage` for RFC 4646 lists: the requested tag, then shorter prefixes
    /// at '-' boundaries, compared case-insensitively against the supported entries.
    static func bestRfc4646(requested: [UInt8], supported: [UInt8]) -> [UInt8]? {
        let list = rfc4646List(supported)
        var tag = requested
        while !tag.isEmpty {
            if let hit = list.first(where: { $0.count == tag.count && zip($0, tag).allSatisfy { lower($0) == lower($1) } }) { return hit }
            guard let dash = tag.lastIndex(of: UInt8(ascii: "-")) else { break }
            tag = Array(tag[..<dash])
        }
        return nil
    }
    static func lower(_ c: UInt8) -> UInt8 { (0x41...0x5A).contains(c) ? c + 0x20 : c }
}
