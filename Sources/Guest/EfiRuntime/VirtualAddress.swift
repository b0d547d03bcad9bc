import SvsmAbi

/// A virtual address in the guest's x86-64 address space. A distinct type from
/// `GuestPhysicalAddress` so that the one place where firmware uses a physical address as a
/// pointer (`init(sameNumberAs:)`) is visible.
public struct VirtualAddress: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ value: UInt64) { self.rawValue = value }

    /// The pointer firmware makes of a physical address: the same number, dereferenced
    /// through the page tables that happen to be active.
    public init(sameNumberAs gpa: GuestPhysicalAddress) { self.rawValue = gpa.rawValue }

    public func advanced(by n: UInt64) -> VirtualAddress { VirtualAddress(rawValue &+ n) }
    /// The lower (user) half of a 4-level address space.
    public var isLowerHalf: Bool { rawValue < 0x0000_8000_0000_0000 }

    public static func < (a: VirtualAddress, b: VirtualAddress) -> Bool { a.rawValue < b.rawValue }
    public var description: String {
        let hex = String(rawValue, radix: 16)
        return "0x" + (isLowerHalf ? hex : String(hex.prefix(4)) + "_" + String(hex.dropFirst(4)))
    }
}

/// Fixed points of Linux's x86-64 virtual memory map (4-level paging, no KASLR;
/// torvalds/linux Documentation/arch/x86/x86_64/mm.rst, arch/x86/include/asm/page_64_types.h).
public enum LinuxVirtualLayout {
    /// PAGE_OFFSET: the direct map of all physical memory.
    public static let pageOffset: UInt64 = 0xffff_8880_0000_0000
    /// EFI_VA_START (-4 GiB) and EFI_VA_END (-68 GiB): the window `efi_map_region` hands
    /// out runtime-region addresses from, top down.
    public static let efiVaStart: UInt64 = 0xffff_ffff_0000_0000
    public static let efiVaEnd: UInt64 = 0xffff_ffef_0000_0000
    /// PMD_SIZE.
    public static let pmdSize: UInt64 = 2 << 20
    /// `page_fault_oops` treats a fault at or below this address as a NULL dereference
    /// (arch/x86/platform/efi/quirks.c `efi_crash_gracefully_on_page_fault`: `phys_addr <= 0x0fff`).
    public static let nullPageEnd: UInt64 = 0x1000
}
