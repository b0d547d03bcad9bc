/// A guest-physical address. A distinct type so that a GPA can never be passed where a
/// size or a host pointer is meant.
public struct GuestPhysicalAddress: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ value: UInt64) { self.rawValue = value }

    public static let pageSize: UInt64 = 4096

    public var pageAligned: Bool { rawValue & (GuestPhysicalAddress.pageSize - 1) == 0 }
    /// The address of the 4 KiB page that holds this address.
    public var page: GuestPhysicalAddress { GuestPhysicalAddress(rawValue & ~(GuestPhysicalAddress.pageSize - 1)) }
    public func advanced(by n: UInt64) -> GuestPhysicalAddress { GuestPhysicalAddress(rawValue &+ n) }

    public static func < (a: GuestPhysicalAddress, b: GuestPhysicalAddress) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "0x" + String(rawValue, radix: 16) }
}

/// A half-open range of guest-physical memory.
public struct GuestRegion: Hashable, Sendable, CustomStringConvertible {
    public let start: GuestPhysicalAddress
    public let length: UInt64
    public init(start: GuestPhysicalAddress, length: UInt64) { self.start = start; self.length = length }

    /// One past the last byte; nil if the region wraps the 64-bit space.
    public var end: UInt64? {
        let (e, overflow) = start.rawValue.addingReportingOverflow(length)
        return overflow ? nil : e
    }
    public func contains(_ other: GuestRegion) -> Bool {
        guard let e = end, let oe = other.end else { return false }
        return other.start.rawValue >= start.rawValue && oe <= e
    }
    public func overlaps(_ other: GuestRegion) -> Bool {
        guard let e = end, let oe = other.end else { return true }
        return start.rawValue < oe && other.start.rawValue < e
    }
    public var description: String { "[\(start), +0x\(String(length, radix: 16)))" }
}
