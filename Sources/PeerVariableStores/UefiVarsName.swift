import EfiTypes

/// Variable names as the two stores check and compare them.
enum UefiVarsName {
    enum Check: Equatable {
        case valid
        case invalid
        /// QEMU would read past its buffer: `uefi_str_is_valid` is passed NameSize in bytes
        /// and scans that many CHAR16s. The model stops at the buffer's end and refuses the
        /// name, where QEMU reads whatever lies beyond.
        case pastBuffer
    }

    /// QEMU `uefi_str_is_valid(name, name_size, must_be_null_terminated)`: walks up to
    /// `len` CHAR16s (the byte count, used as a count of CHAR16s); a NUL ends the string,
    /// a surrogate (0xD800-0xDFFF) is refused, reaching `len` is valid only when no NUL is
    /// required.
    static func qemuCheck(_ b: MessageBuffer, at offset: Int, len: UInt64, mustBeTerminated: Bool) -> Check {
        var pos: UInt64 = 0
        while true {
            if pos == len { return mustBeTerminated ? .invalid : .valid }
            let at = offset + Int(pos) * 2
            guard at + 2 <= b.bytes.count else { return .pastBuffer }
            let u = b.u16(at: at)
            if u == 0 { return .valid }
            if (0xD800...0xDFFF).contains(u) { return .invalid }
            pos += 1
        }
    }

    /// virtfw-varstore `mm/util.rs` `cstr16_from_bytes_until_nul`: the bytes must view as
    /// `[u16]` (even length) and hold a NUL, with only valid UCS-2 before it.
    static func virtfwCheck(_ b: MessageBuffer, at offset: Int, size: UInt64) -> Check {
        guard size % 2 == 0 else { return .invalid }
        var i = 0
        while UInt64(i) < size {
            let u = b.u16(at: offset + i)
            if u == 0 { return .valid }
            if (0xD800...0xDFFF).contains(u) { return .invalid }
            i += 2
        }
        return .invalid
    }

    /// The name as the store compares it (`uefi_str_equal`): the CHAR16s before the first
    /// NUL, or all of them.
    static func canonical(_ raw: [UInt8]) -> [UInt16] {
        var units: [UInt16] = []
        var i = 0
        while i + 1 < raw.count {
            let u = raw.loadLE(UInt16.self, at: i)
            if u == 0 { break }
            units.append(u)
            i += 2
        }
        return units
    }

    /// `uefi_str_equal_ex(pattern, name, wildcards_in_a = true)` for policies: '#' in the
    /// pattern matches one hex digit; both end at a NUL or at their end.
    static func wildcardMatch(pattern: [UInt16], name: [UInt16]) -> Bool {
        var pos = 0
        while true {
            let aEnd = pos == pattern.count, bEnd = pos == name.count
            if aEnd && bEnd { return true }
            if aEnd || bEnd { return false }
            let a = pattern[pos], c = name[pos]
            if a == UInt16(ascii: "#") {
                guard c < 0x80, UInt8(c).isHexDigit else { return false }
            } else if a != c {
                return false
            }
            pos += 1
        }
    }
}

private extension UInt8 {
    var isHexDigit: Bool { (0x30...0x39).contains(self) || (0x41...0x46).contains(self) || (0x61...0x66).contains(self) }
}

private extension UInt16 {
    init(ascii: Unicode.Scalar) { self = UInt16(ascii.value) }
}
