import Foundation

// Page-granular addresses for the CAA allocation model. Everything in this
// directory depends on Foundation only, so it can move into the platform target as a unit.

/// A guest-physical address in bytes (UEFI's `EFI_PHYSICAL_ADDRESS`, Linux's `phys_addr_t`).
public struct PhysicalAddress: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    /// `EFI_PAGE_SIZE` (MdePkg/Include/Uefi/UefiBaseType.h); also x86's `PAGE_SIZE`.
    public static let pageSize: UInt64 = 4096
    /// 2 MiB in pages: AMD erratum #1467 forbids a VMSA on such a boundary.
    public static let pagesPer2MiB: UInt64 = 512

    public let value: UInt64
    public init(_ value: UInt64) { self.value = value }
    public init(page: UInt64) { value = page * Self.pageSize }

    /// The page this address falls in.
    public var page: UInt64 { value / Self.pageSize }
    public var isPageAligned: Bool { value % Self.pageSize == 0 }
    /// `_IS_ALIGNED (Address, SIZE_2MB)` as AmdSev.c tests it.
    public var is2MiBAligned: Bool { value % (Self.pageSize * Self.pagesPer2MiB) == 0 }

    public static func < (a: Self, b: Self) -> Bool { a.value < b.value }
    public var description: String { String(format: "0x%09llx", value) }

    public init(from decoder: any Decoder) throws { value = try decoder.singleValueContainer().decode(UInt64.self) }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(value)
    }
}

/// A run of whole 4 KiB pages, `[first, first + count)` in page numbers.
public struct PageRange: Hashable, Sendable, Codable, CustomStringConvertible {
    public let first: UInt64
    public let count: UInt64
    public init(first: UInt64, count: UInt64) {
        self.first = first
        self.count = count
    }
    public init(pages: Range<UInt64>) { self.init(first: pages.lowerBound, count: UInt64(pages.count)) }

    /// One past the last page.
    public var end: UInt64 { first + count }
    public var pages: Range<UInt64> { first..<end }
    public var base: PhysicalAddress { PhysicalAddress(page: first) }
    public var limit: PhysicalAddress { PhysicalAddress(page: end) }
    public var bytes: UInt64 { count * PhysicalAddress.pageSize }
    public var isEmpty: Bool { count == 0 }

    public func contains(page: UInt64) -> Bool { page >= first && page < end }
    public func contains(_ other: PageRange) -> Bool { other.first >= first && other.end <= end }
    public func overlaps(_ other: PageRange) -> Bool { other.first < end && first < other.end }
    public func clamped(to other: PageRange) -> PageRange? {
        let lo = max(first, other.first), hi = min(end, other.end)
        return lo < hi ? PageRange(first: lo, count: hi - lo) : nil
    }

    /// `[0x07f9e0000, 0x07fa9d000)`: bytes, end exclusive, like Linux's e820 printout.
    public var description: String { "[\(base), \(limit))" }

    enum CodingKeys: String, CodingKey { case base, pages }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let base = try c.decode(UInt64.self, forKey: .base)
        self.init(first: base / PhysicalAddress.pageSize, count: try c.decode(UInt64.self, forKey: .pages))
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(base.value, forKey: .base)
        try c.encode(count, forKey: .pages)
    }
}

/// Byte counts for people: `4 KiB`, `256 MiB`, `1.83 GiB`.
public enum ByteCount {
    public static let kib: UInt64 = 1 << 10
    public static let mib: UInt64 = 1 << 20
    public static let gib: UInt64 = 1 << 30

    public static func format(_ bytes: UInt64) -> String {
        func trimmed(_ v: Double, _ unit: String) -> String {
            let s = v == v.rounded() ? String(format: "%.0f", v) : String(format: "%.2f", v)
            return "\(s) \(unit)"
        }
        if bytes >= gib { return trimmed(Double(bytes) / Double(gib), "GiB") }
        if bytes >= mib { return trimmed(Double(bytes) / Double(mib), "MiB") }
        if bytes >= kib { return trimmed(Double(bytes) / Double(kib), "KiB") }
        return "\(bytes) B"
    }

    /// `1 page` / `238 pages`.
    public static func pages(_ n: UInt64) -> String { n == 1 ? "1 page" : "\(n) pages" }
}
