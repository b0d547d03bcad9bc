/// UCS-2 names as EFI stores them: CHAR16 code units, compared as binary strings.
public enum Ucs2 {
    /// The code units of `s` (UTF-16; characters outside the BMP become surrogate pairs).
    public static func units(_ s: String) -> [UInt16] { Array(s.utf16) }

    /// NUL-terminated little-endian bytes: what NameSize counts.
    public static func nulTerminatedBytes(_ units: [UInt16]) -> [UInt8] {
        var out = [UInt8](zeroed: units.count * 2 + 2)
        out.storeUcs2(units, at: 0)
        return out
    }

    /// Reads code units from `bytes[offset..<offset+byteCount]` up to the first NUL.
    /// Returns nil when no NUL is found within the range (or before the end of `bytes`).
    public static func readNulTerminated(_ bytes: [UInt8], offset: Int, byteCount: Int) -> [UInt16]? {
        guard offset >= 0, offset <= bytes.count else { return nil }
        let limit = min(byteCount, bytes.count - offset)
        return bytes.withUnsafeBufferPointer { b -> [UInt16]? in
            // Find the NUL first, then copy once: the SVSM parses a name out of every request.
            var n = 0
            while 2 * n + 1 < limit {
                if b[offset + 2 * n] == 0 && b[offset + 2 * n + 1] == 0 { break }
                n += 1
            }
            guard 2 * n + 1 < limit else { return nil }
            // Filled in place: appending unit by unit checked the array's capacity and
            // uniqueness for each one.
            var units = [UInt16](repeatElement(0, count: n))
            units.withUnsafeMutableBufferPointer { u in
                for i in 0..<n { u[i] = UInt16(b[offset + 2 * i]) | UInt16(b[offset + 2 * i + 1]) << 8 }
            }
            return units
        }
    }

    /// Linux `ucs2_as_utf8`: one byte below 0x80, two below 0x800, else three bytes; surrogate
    /// halves are encoded one at a time and nothing is validated (lib/ucs2_string.c).
    public static func linuxUtf8(_ units: [UInt16]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(units.count)
        for c in units {
            if c < 0x80 {
                out.append(UInt8(c))
            } else if c < 0x800 {
                out.append(UInt8(0xC0 | (c >> 6)))
                out.append(UInt8(0x80 | (c & 0x3F)))
            } else {
                out.append(UInt8(0xE0 | (c >> 12)))
                out.append(UInt8(0x80 | ((c >> 6) & 0x3F)))
                out.append(UInt8(0x80 | (c & 0x3F)))
            }
        }
        return out
    }

    /// A printable rendering for messages and JSON.
    public static func string(_ units: [UInt16]) -> String { String(decoding: units, as: UTF16.self) }
}

extension UInt16 {
    /// A CHAR16 from an ASCII character literal.
    public init(ascii c: Unicode.Scalar) { self = UInt16(c.value) }
}
