import EfiTypes
import MmWire

/// VarCheckLib and VarCheckUefiLib as OVMF links them into its MM variable driver
/// (MdeModulePkg/Library/VarCheckLib/VarCheckLib.c,
/// MdeModulePkg/Library/VarCheckUefiLib/VarCheckUefiLibNullClass.c, both tianocore/edk2;
/// OVMF links them through OvmfPkg/OvmfPkgX64.dsc). Active only after EndOfDxe
/// (VarCheckLib.c `VarCheckLibSetVariableCheck` returns EFI_SUCCESS until then).
enum UefiDataCheck: Sendable {
    case none, loadOption, keyOption, devicePath, asciiString, array(Int)
}

struct UefiVariableRule: Sendable {
    let property: VariableProperty
    let check: UefiDataCheck
}

enum VarCheckTable {
    static let nvBsRt = VariableAttributes.nvBsRt.rawValue
    static let bsRt = VariableAttributes.bsRt.rawValue
    static let nvBsRtAt = VariableAttributes.nvBsRt.rawValue | VariableAttributes.timeBasedAuthenticatedWriteAccess.rawValue
    static let max = UInt64.max

    static func rule(_ attrs: UInt32, _ minSize: UInt64, _ maxSize: UInt64 = max, readOnly: Bool = false, check: UefiDataCheck = .none) -> UefiVariableRule {
        UefiVariableRule(property: VariableProperty(property: readOnly ? VariableProperty.readOnly : 0, attributes: attrs,
                                                    minSize: minSize, maxSize: maxSize), check: check)
    }

    /// Exact names in EFI_GLOBAL_VARIABLE (VarCheckUefiLibNullClass.c `mGlobalVariableList`).
    static let global: [String: UefiVariableRule] = [
        "LangCodes": rule(bsRt, 1, check: .asciiString),
        "Lang": rule(nvBsRt, 1, check: .asciiString),
        "Timeout": rule(nvBsRt, 2, 2),
        "PlatformLangCodes": rule(bsRt, 1, check: .asciiString),
        "PlatformLang": rule(nvBsRt, 1, check: .asciiString),
        "ConIn": rule(nvBsRt, 4, check: .devicePath),
        "ConOut": rule(nvBsRt, 4, check: .devicePath),
        "ErrOut": rule(nvBsRt, 4, check: .devicePath),
        "ConInDev": rule(bsRt, 4, check: .devicePath),
        "ConOutDev": rule(bsRt, 4, check: .devicePath),
        "ErrOutDev": rule(bsRt, 4, check: .devicePath),
        "BootOrder": rule(nvBsRt, 2, check: .array(2)),
        "BootNext": rule(nvBsRt, 2, 2),
        "BootCurrent": rule(bsRt, 2, 2),
        "BootOptionSupport": rule(bsRt, 4, 4),
        "DriverOrder": rule(nvBsRt, 2, check: .array(2)),
        "SysPrepOrder": rule(nvBsRt, 2, check: .array(2)),
        "HwErrRecSupport": rule(nvBsRt, 2, 2),
        "SetupMode": rule(bsRt, 1, 1, readOnly: true),
        "KEK": rule(nvBsRtAt, 1),
        "PK": rule(nvBsRtAt, 1),
        "SignatureSupport": rule(bsRt, 16, readOnly: true, check: .array(16)),
        "SecureBoot": rule(bsRt, 1, 1, readOnly: true),
        "KEKDefault": rule(bsRt, 1, readOnly: true),
        "PKDefault": rule(bsRt, 1, readOnly: true),
        "dbDefault": rule(bsRt, 1, readOnly: true),
        "dbxDefault": rule(bsRt, 1, readOnly: true),
        "dbtDefault": rule(bsRt, 1, readOnly: true),
        "OsIndicationsSupported": rule(bsRt, 8, 8),
        "OsIndications": rule(nvBsRt, 8, 8),
        "VendorKeys": rule(bsRt, 1, 1, readOnly: true),
        "AuditMode": rule(bsRt, 1, 1),
        "DeployedMode": rule(bsRt, 1, 1),
    ]

    /// Wildcard names in EFI_GLOBAL_VARIABLE: prefix + 4 hex digits.
    static let globalWildcards: [(String, UefiVariableRule)] = [
        ("Boot", rule(nvBsRt, 6, check: .loadOption)),
        ("Driver", rule(nvBsRt, 6, check: .loadOption)),
        ("SysPrep", rule(nvBsRt, 6, check: .loadOption)),
        ("Key", rule(nvBsRt, 10, 22, check: .keyOption)),
        ("PlatformRecovery", rule(bsRt, 6, check: .loadOption)),
    ]

    static let imageSecurity: [String: UefiVariableRule] = [
        "db": rule(nvBsRtAt, 1), "dbx": rule(nvBsRtAt, 1), "dbt": rule(nvBsRtAt, 1),
    ]

    /// Properties other edk2 drivers register (AuthVariableLib `mAuthVarEntry`, the variable
    /// driver's VarErrorFlag).
    static let others: [VariableKey: VariableProperty] = [
        VariableKey("SecureBootEnable", .secureBootEnableDisable): VariableProperty(attributes: VariableAttributes.nvBs.rawValue, minSize: 1, maxSize: 1),
        VariableKey("CustomMode", .customModeEnable): VariableProperty(attributes: VariableAttributes.nvBs.rawValue, minSize: 1, maxSize: 1),
        VariableKey("VendorKeysNv", .vendorKeysNv): VariableProperty(property: VariableProperty.readOnly, attributes: nvBsRtAt, minSize: 1, maxSize: 1),
        VariableKey("certdb", .certDb): VariableProperty(property: VariableProperty.readOnly, attributes: nvBsRtAt, minSize: 4),
        VariableKey("certdbv", .certDb): VariableProperty(property: VariableProperty.readOnly, attributes: bsRt | VariableAttributes.timeBasedAuthenticatedWriteAccess.rawValue, minSize: 4),
        VariableKey("VarErrorFlag", .varErrorFlag): VariableProperty(property: VariableProperty.readOnly, attributes: nvBsRt, minSize: 1, maxSize: 1),
    ]

    static func isHex4(_ units: ArraySlice<UInt16>, upperOnly: Bool) -> Bool {
        guard units.count == 4 else { return false }
        return units.allSatisfy { u in
            (0x30...0x39).contains(u) || (0x41...0x46).contains(u) || (!upperOnly && (0x61...0x66).contains(u))
        }
    }

    /// The UEFI-defined rule for a variable, if it has one (VarCheckUefiLib accepts
    /// lower-case wildcard digits; VarCheckLib's own table only upper case).
    /// Only the three GUIDs with rules pay for the name's conversion to a String: every
    /// SetVariable and property query asks.
    static func uefiRule(_ key: VariableKey) -> UefiVariableRule? {
        if key.guid == .globalVariable {
            let name = Ucs2.string(key.name)
            if let r = global[name] { return r }
            for (prefix, r) in globalWildcards where key.name.count == prefix.utf16.count + 4 && name.hasPrefix(prefix) {
                if isHex4(key.name[prefix.utf16.count...], upperOnly: false) { return r }
            }
        } else if key.guid == .imageSecurityDatabase {
            return imageSecurity[Ucs2.string(key.name)]
        } else if key.guid == .hardwareErrorVariable {
            if key.name.count == 12, Ucs2.string(key.name).hasPrefix("HwErrRec"), isHex4(key.name[8...], upperOnly: false) {
                return rule(nvBsRt | VariableAttributes.hardwareErrorRecord.rawValue, 1)
            }
        }
        return nil
    }
}

extension VariableStore {
    /// The property that applies to `key`: one registered through function 9, one another
    /// driver registered, or the UEFI-defined one.
    public func variableProperty(_ key: VariableKey) -> VariableProperty? {
        if let p = properties[key] { return p }
        if let p = VarCheckTable.others[key] { return p }
        return VarCheckTable.uefiRule(key)?.property
    }

    /// VAR_CHECK_VARIABLE_PROPERTY_SET: refused after EndOfDxe.
    public mutating func setVariableProperty(_ key: VariableKey, _ property: VariableProperty) -> EfiStatus {
        if phase.endOfDxe { return .accessDenied }
        if key.name.isEmpty || property.revision != VariableProperty.revision { return .invalidParameter }
        properties[key] = property
        return .success
    }

    /// VarCheckLibSetVariableCheck for an untrusted request, then the VarCheckUefiLib
    /// handler.
    func varCheck(_ key: VariableKey, attributes: VariableAttributes, payload: [UInt8]) -> EfiStatus {
        let isDelete = (payload.isEmpty && !attributes.contains(.appendWrite)) || attributes.rawValue == 0
        if let p = variableProperty(key) {
            if p.isReadOnly { return .writeProtected }
            if !isDelete {
                if p.attributes != 0 && attributes.subtracting(.appendWrite).rawValue != p.attributes { return .invalidParameter }
                if !payload.isEmpty && (UInt64(payload.count) < p.minSize || UInt64(payload.count) > p.maxSize) {
                    return .invalidParameter
                }
            }
        }
        // SetVariableCheckHandlerUefiDefined (skipped for deletes).
        if !isDelete {
            if attributes.contains(.hardwareErrorRecord) {
                guard key.guid == .hardwareErrorVariable, VarCheckTable.uefiRule(key) != nil else { return .invalidParameter }
            }
            if key.guid == .globalVariable || key.guid == .imageSecurityDatabase || key.guid == .hardwareErrorVariable {
                guard let rule = VarCheckTable.uefiRule(key) else { return .invalidParameter }
                if !payload.isEmpty && !UefiDataValidator.validate(rule.check, payload) { return .invalidParameter }
            }
        }
        // The variable policy handler (VarCheckPolicyLib `ValidateSetVariable`).
        return policy.validate(name: key.name, guid: key.guid, attributes: attributes.rawValue, dataSize: payload.count) { find($0) }
    }
}

/// The type-specific data checks of VarCheckUefiLib.
enum UefiDataValidator {
    static func validate(_ check: UefiDataCheck, _ d: [UInt8]) -> Bool {
        switch check {
        case .none: return true
        case .asciiString: return d.contains(0)
        case .array(let size): return d.count % size == 0
        case .keyOption: return d.count >= 10 && (d.count - 10) % 4 == 0
        case .devicePath: return isDevicePathValid(d[...])
        case .loadOption: return isLoadOptionValid(d)
        }
    }

    /// EFI_LOAD_OPTION: u32 Attributes, u16 FilePathListLength, NUL-terminated CHAR16
    /// Description, FilePathList, optional data.
    static func isLoadOptionValid(_ d: [UInt8]) -> Bool {
        guard d.count >= 6 else { return false }
        let pathLength = Int(d.loadLE(UInt16.self, at: 4))
        var i = 6
        var terminated = false
        while i + 1 < d.count {
            if d[i] == 0 && d[i + 1] == 0 { terminated = true; i += 2; break }
            i += 2
        }
        guard terminated, pathLength >= 4, i + pathLength <= d.count else { return false }
        return isDevicePathValid(d[i..<(i + pathLength)])
    }

    /// IsDevicePathValid: nodes of (type, subtype, u16 length >= 4) inside the buffer,
    /// ending with an end-of-entire-path node (0x7F, 0xFF) exactly at the end.
    static func isDevicePathValid(_ d: ArraySlice<UInt8>) -> Bool {
        var i = d.startIndex
        while i + 4 <= d.endIndex {
            let type = d[i], subtype = d[i + 1]
            let length = Int(d[i + 2]) | Int(d[i + 3]) << 8
            guard length >= 4, i + length <= d.endIndex else { return false }
            if type == 0x7F && subtype == 0xFF { return i + length == d.endIndex }
            i += length
        }
        return false
    }
}
