/// Little-endian reads and writes at explicit offsets over byte arrays.
///
/// Every wire format in this project (the CAA, MM communicate buffers, SMM variable
/// payloads) is packed and little-endian; reading it through these helpers keeps each
/// length check explicit instead of casting memory to a struct.
public enum ByteCodingError: Error, Equatable, Sendable {
    case outOfBounds(offset: Int, count: Int, available: Int)
}

public struct ByteReader: Sendable {
    public let bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    @inline(__always)
    func check(_ offset: Int, _ count: Int) throws(ByteCodingError) {
        guard offset >= 0, count >= 0, offset <= bytes.count, count <= bytes.count - offset else {
            throw .outOfBounds(offset: offset, count: count, available: bytes.count)
        }
    }

    public func u8(at offset: Int) throws(ByteCodingError) -> UInt8 {
        try check(offset, 1)
        return bytes[offset]
    }
    public func u16(at offset: Int) throws(ByteCodingError) -> UInt16 {
        try check(offset, 2)
        return bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt16.self) }.littleEndian
    }
    public func u32(at offset: Int) throws(ByteCodingError) -> UInt32 {
        try check(offset, 4)
        return bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }.littleEndian
    }
    public func u64(at offset: Int) throws(ByteCodingError) -> UInt64 {
        try check(offset, 8)
        return bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self) }.littleEndian
    }
    public func slice(at offset: Int, count: Int) throws(ByteCodingError) -> [UInt8] {
        try check(offset, count)
        return Array(bytes[offset..<(offset + count)])
    }
    public func guid(at offset: Int) throws(ByteCodingError) -> EfiGuid {
        try check(offset, 16)
        return EfiGuid(bytes: bytes, at: offset)
    }
}

extension Array where Element == UInt8 {
    /// Stores `value` little-endian at `offset`; the array must already be long enough.
    @inline(__always)
    public mutating func storeLE<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= count, "storeLE out of bounds")
        withUnsafeMutableBytes { $0.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self) }
    }

    @inline(__always)
    public func loadLE<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= count, "loadLE out of bounds")
        return withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }.littleEndian
    }

    public mutating func appendLE<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }

    public mutating func store(_ guid: EfiGuid, at offset: Int) {
        guid.withBytes { src in
            for i in 0..<16 { self[offset + i] = src[i] }
        }
    }

    public mutating func replace(at offset: Int, with source: [UInt8]) {
        precondition(offset >= 0 && offset + source.count <= count, "replace out of bounds")
        replaceSubrange(offset..<(offset + source.count), with: source)
    }
}

public enum Hex {
    /// Lowercase hex without separators.
    public static func encode<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xf)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Parses hex, ignoring spaces, newlines and colons. Returns nil on odd length or a bad digit.
    public static func decode(_ text: String) -> [UInt8]? {
        var out = [UInt8]()
        var high: UInt8? = nil
        for c in text.utf8 {
            if c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09 || c == 0x3a { continue }
            guard let v = nibble(c) else { return nil }
            if let h = high { out.append(h << 4 | v); high = nil } else { high = v }
        }
        return high == nil ? out : nil
    }

    static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }
}
