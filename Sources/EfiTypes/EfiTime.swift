/// EFI_TIME (16 bytes): Year u16, Month, Day, Hour, Minute, Second, Pad1, Nanosecond u32,
/// TimeZone i16, Daylight, Pad2.
public struct EfiTime: Equatable, Sendable, Comparable {
    public var bytes: [UInt8]
    public init(bytes: [UInt8]) { precondition(bytes.count == 16); self.bytes = bytes }
    public static let zero = EfiTime(bytes: [UInt8](zeroed: 16))

    public var year: UInt16 { bytes.loadLE(UInt16.self, at: 0) }
    /// The fields edk2 compares (AuthServiceInternalCompareTimeStamp): nanoseconds ignored.
    public var comparable: [UInt64] {
        [UInt64(year), UInt64(bytes[2]), UInt64(bytes[3]), UInt64(bytes[4]), UInt64(bytes[5]), UInt64(bytes[6])]
    }
    public static func < (a: EfiTime, b: EfiTime) -> Bool { a.comparable.lexicographicallyPrecedes(b.comparable) }
}

