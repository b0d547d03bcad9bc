/// The fuzzer's bytes, taken front to back as the values a harness needs. Reading past the
/// end yields zeros, so every input is a complete (if dull) test case and a shorter input
/// is always a simpler one for the fuzzer to minimise towards.
public struct FuzzInput {
    let bytes: [UInt8]
    var offset = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var isExhausted: Bool { offset >= bytes.count }

    public mutating func u8() -> UInt8 {
        defer { offset += 1 }
        return offset < bytes.count ? bytes[offset] : 0
    }

    public mutating func u16() -> UInt16 { UInt16(u8()) | UInt16(u8()) << 8 }
    public mutating func u32() -> UInt32 { UInt32(u16()) | UInt32(u16()) << 16 }
    public mutating func u64() -> UInt64 { UInt64(u32()) | UInt64(u32()) << 32 }

    /// Up to `count` bytes (fewer at the end of the input).
    public mutating func bytes(_ count: Int) -> [UInt8] {
        let start = min(offset, bytes.count)
        let end = min(bytes.count, start + count)
        offset = end
        return Array(bytes[start..<end])
    }

    /// A block with a 16-bit length prefix: how the targets split an input into steps.
    public mutating func block() -> [UInt8] { bytes(Int(u16())) }

    /// Everything left.
    public mutating func rest() -> [UInt8] { bytes(bytes.count) }
}

/// The writer side of `FuzzInput`, for building seeds.
public struct FuzzSeed {
    public private(set) var bytes: [UInt8] = []
    public init() {}
    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { u8(UInt8(v & 0xff)); u8(UInt8(v >> 8)) }
    public mutating func u32(_ v: UInt32) { u16(UInt16(v & 0xffff)); u16(UInt16(v >> 16)) }
    public mutating func u64(_ v: UInt64) { u32(UInt32(v & 0xffff_ffff)); u32(UInt32(v >> 32)) }
    public mutating func raw(_ b: [UInt8]) { bytes += b }
    public mutating func block(_ b: [UInt8]) { precondition(b.count <= 0xffff); u16(UInt16(b.count)); bytes += b }
}

/// A broken property of a target: the input that broke it is a bug. libFuzzer's entry point
/// turns it into a crash so that the input is recorded; the test suite records it as the
/// failure of one test, with the input, and goes on.
public struct PropertyViolation: Error, CustomStringConvertible {
    public let message: String
    public let file: StaticString
    public let line: UInt
    public var description: String { "property violated at \(file):\(line): \(message)" }
}

func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
             file: StaticString = #fileID, line: UInt = #line) throws(PropertyViolation) {
    if !condition() { throw PropertyViolation(message: message(), file: file, line: line) }
}

func violation(_ message: String, file: StaticString = #fileID, line: UInt = #line) -> PropertyViolation {
    PropertyViolation(message: message, file: file, line: line)
}
