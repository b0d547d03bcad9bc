/// Little-endian reads and writes at explicit offsets over byte arrays.
///
/// Every wire format in this project (the CAA, MM communicate buffers, SMM variable
/// payloads) is packed and little-endian; the parsers check each length before they read
/// through these helpers, instead of casting memory to a struct. They are @inlinable so
/// that each caller's module specializes them for its integer type: unspecialized, every
/// call looked up generic metadata at run time (BENCHMARKS.md, "Where the gap is").
extension Array where Element == UInt8 {
    /// `count` zero bytes. Not `init(repeating:count:)`: that one allocates through the
    /// standard library's generic `_allocateBufferUninitialized`, which is never inlined and
    /// looks up the storage class's metadata in the runtime's hash table on every call
    /// (Swift 6.3 on Linux: 134 ns against 43-64 ns for this form, 5 million 64-71 byte
    /// arrays). The collection initializer is specialized here and allocates directly.
    @inlinable @inline(__always)
    public init(zeroed count: Int) { self.init(repeatElement(0, count: count)) }

    /// Stores `value` little-endian at `offset`; the array must already be long enough.
    @inlinable @inline(__always)
    public mutating func storeLE<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= count, "storeLE out of bounds")
        withUnsafeMutableBytes { $0.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self) }
    }

    @inlinable @inline(__always)
    public func loadLE<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= count, "loadLE out of bounds")
        return withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }.littleEndian
    }

    @inlinable
    public mutating func appendLE<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }

    @inlinable
    public mutating func store(_ guid: EfiGuid, at offset: Int) {
        storeLE(guid.low, at: offset)
        storeLE(guid.high, at: offset + 8)
    }

    @inlinable
    public mutating func replace(at offset: Int, with source: [UInt8]) {
        precondition(offset >= 0 && offset + source.count <= count, "replace out of bounds")
        guard !source.isEmpty else { return }
        withUnsafeMutableBytes { dst in
            source.withUnsafeBytes { src in
                if let s = src.baseAddress { (dst.baseAddress! + offset).copyMemory(from: s, byteCount: src.count) }
            }
        }
    }

    /// Stores UCS-2 code units little-endian at `offset`, then a NUL (StrSize bytes in all),
    /// without building them as an array first.
    @inlinable
    public mutating func storeUcs2(_ units: [UInt16], at offset: Int) {
        precondition(offset >= 0 && offset + units.count * 2 + 2 <= count, "storeUcs2 out of bounds")
        withUnsafeMutableBytes { dst in
            for (i, u) in units.enumerated() { dst.storeBytes(of: u.littleEndian, toByteOffset: offset + 2 * i, as: UInt16.self) }
            dst.storeBytes(of: 0, toByteOffset: offset + 2 * units.count, as: UInt16.self)
        }
    }
}

/// The same little-endian coding over memory read or built in place (an MM buffer in guest
/// memory), where the caller has already checked the range.
extension UnsafeRawBufferPointer {
    @inlinable @inline(__always)
    public func loadLE<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    @inlinable
    public func loadGuid(at offset: Int) -> EfiGuid {
        EfiGuid(low: loadLE(UInt64.self, at: offset), high: loadLE(UInt64.self, at: offset + 8))
    }
}

extension UnsafeMutableRawBufferPointer {
    @inlinable @inline(__always)
    public func storeLE<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
    }

    @inlinable
    public func store(_ guid: EfiGuid, at offset: Int) {
        storeLE(guid.low, at: offset)
        storeLE(guid.high, at: offset + 8)
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
    public static func decode(_ text: String) -> [UInt8]? { decode(text, separators: true) }

    /// Hex digits only, nothing between them: what file formats hold (a separator there
    /// would make the length check of a fixed-size field meaningless).
    public static func decodeStrict(_ text: String) -> [UInt8]? { decode(text, separators: false) }

    static func decode(_ text: String, separators: Bool) -> [UInt8]? {
        var out = [UInt8]()
        var high: UInt8? = nil
        for c in text.utf8 {
            if separators && (c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09 || c == 0x3a) { continue }
            guard let v = nibble(c) else { return nil }
            if let h = high { out.append(h << 4 | v); high = nil } else { high = v }
        }
        return high == nil ? out : nil
    }

    public static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }
}
