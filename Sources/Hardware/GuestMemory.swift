#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SvsmAbi

public enum GuestMemoryError: Error, Equatable, Sendable {
    /// The range is not inside guest RAM.
    case outOfRange(GuestRegion)
    /// The guest's page allocator has no free range of the requested size.
    case outOfMemory(pages: Int)
}

/// The guest's physical address space: RAM backed by one anonymous mapping, and a memory
/// map that leaves out the range the SVSM occupies. (Who owns which page — the guest's page
/// allocator, the SVSM's registry — is not the memory's business.)
///
/// Pages are backed lazily by the host (MAP_NORESERVE), so a 64 KiB MM buffer that is
/// mostly unused costs only the pages really touched.
///
/// Both sides of the trust boundary address this memory by GPA only. The guest's own
/// accessors here check that a range is RAM; the SVSM adds its own checks on top
/// (see `SvsmGuestAccess`).
public final class GuestMemory: @unchecked Sendable {
    public static let pageSize = Int(GuestPhysicalAddress.pageSize)

    /// Bytes of memory, from `base`.
    public let ramSize: UInt64
    /// The GPA of the first byte: 0 for the model's RAM, the window's GPA for a shared window.
    public let base: GuestPhysicalAddress
    /// RAM the guest owns, as the SVSM's MEMORY_MAP lists it (the SVSM range is not in it).
    public let memoryMap: [GuestRegion]
    /// The range the SVSM occupies (the secrets page's SVSM_BASE / SVSM_SIZE); empty for a
    /// shared window.
    public let svsmRegion: GuestRegion

    private let host: UnsafeMutableRawPointer
    /// Whether `deinit` unmaps `host` (false for a mapping someone else owns).
    private let ownsMapping: Bool

    /// - Parameters:
    ///   - ramSize: bytes of guest RAM, a multiple of 2 MiB.
    ///   - svsmRegion: the SVSM's private range inside RAM.
    public init(ramSize: UInt64 = 1 << 30,
                svsmRegion: GuestRegion = GuestRegion(start: GuestPhysicalAddress(0x0800_0000), length: 0x0100_0000)) {
        precondition(ramSize % (2 << 20) == 0 && ramSize > 0)
        self.ramSize = ramSize
        self.svsmRegion = svsmRegion
        var map: [GuestRegion] = []
        if svsmRegion.start.rawValue > 0 {
            map.append(GuestRegion(start: GuestPhysicalAddress(0), length: svsmRegion.start.rawValue))
        }
        let afterSvsm = svsmRegion.end!
        if afterSvsm < ramSize {
            map.append(GuestRegion(start: GuestPhysicalAddress(afterSvsm), length: ramSize - afterSvsm))
        }
        self.memoryMap = map
        let p = mmap(nil, Int(ramSize), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        precondition(p != MAP_FAILED, "cannot map guest RAM")
        self.host = p!
        self.base = GuestPhysicalAddress(0)
        self.ownsMapping = true
    }

    /// Guest memory over a mapping someone else made and keeps alive (serve-svsm's shared
    /// window): GPA `base + n` is byte `n` of `mapping`, for `0 <= n < size`; nothing outside
    /// it is addressable. `memoryMap` is what the SVSM may take as guest RAM (its region
    /// checks); the rest of the window is reachable only through the SVSM's own VMSA and CAA
    /// accessors. The mapping is not unmapped here.
    public init(mapping: UnsafeMutableRawPointer, base: GuestPhysicalAddress, size: UInt64, memoryMap: [GuestRegion]) {
        let window = GuestRegion(start: base, length: size)
        precondition(size > 0 && window.end != nil && size <= UInt64(Int.max), "the window wraps the address space")
        precondition(memoryMap.allSatisfy { window.contains($0) }, "the memory map must lie inside the window")
        self.host = mapping
        self.base = base
        self.ramSize = size
        self.memoryMap = memoryMap
        self.svsmRegion = GuestRegion(start: base, length: 0)
        self.ownsMapping = false
    }

    deinit { if ownsMapping { munmap(host, Int(ramSize)) } }

    /// All of RAM (from `base`) as the host sees it, for checkers that compare it with a snapshot (the
    /// hostile-guest fuzz target). Neither side of the trust boundary uses this.
    public func withHostView<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: host, count: Int(ramSize)))
    }

    /// True when the whole range is inside one memory-map entry.
    public func isGuestRam(_ region: GuestRegion) -> Bool {
        memoryMap.contains { $0.contains(region) }
    }

    // MARK: checked access by GPA

    @inline(__always)
    private func pointer(_ gpa: GuestPhysicalAddress, _ count: Int) throws(GuestMemoryError) -> UnsafeMutableRawPointer {
        let region = GuestRegion(start: gpa, length: UInt64(count))
        // base + ramSize cannot overflow (checked at init), gpa >= base makes the subtraction safe.
        guard count >= 0, gpa.rawValue >= base.rawValue, let end = region.end, end <= base.rawValue + ramSize else {
            throw .outOfRange(region)
        }
        return host + Int(gpa.rawValue - base.rawValue)
    }

    public func read(_ gpa: GuestPhysicalAddress, count: Int) throws(GuestMemoryError) -> [UInt8] {
        let p = try pointer(gpa, count)
        return [UInt8](UnsafeRawBufferPointer(start: p, count: count))
    }

    public func write(_ gpa: GuestPhysicalAddress, _ bytes: [UInt8]) throws(GuestMemoryError) {
        let p = try pointer(gpa, bytes.count)
        bytes.withUnsafeBytes { src in
            if let s = src.baseAddress { p.copyMemory(from: s, byteCount: bytes.count) }
        }
    }

    /// `body` over the bytes of a range in place, after one range check and without a copy:
    /// for a reader that takes what it needs out of the range and keeps no pointer to it.
    @inlinable
    public func withBytes<R>(_ gpa: GuestPhysicalAddress, count: Int, _ body: (UnsafeRawBufferPointer) -> R) throws(GuestMemoryError) -> R {
        body(UnsafeRawBufferPointer(start: try checkedPointer(gpa, count), count: count))
    }

    /// `body` over the bytes of a range, to fill them in place (one range check; a message
    /// is built where it will be read instead of in an array first).
    @inlinable
    public func withMutableBytes<R>(_ gpa: GuestPhysicalAddress, count: Int, _ body: (UnsafeMutableRawBufferPointer) -> R) throws(GuestMemoryError) -> R {
        body(UnsafeMutableRawBufferPointer(start: try checkedPointer(gpa, count), count: count))
    }

    /// The host address of a checked range, for the in-place accessors above.
    @usableFromInline
    func checkedPointer(_ gpa: GuestPhysicalAddress, _ count: Int) throws(GuestMemoryError) -> UnsafeMutableRawPointer {
        try pointer(gpa, count)
    }

    public func readU8(_ gpa: GuestPhysicalAddress) throws(GuestMemoryError) -> UInt8 {
        try pointer(gpa, 1).load(as: UInt8.self)
    }
    public func writeU8(_ gpa: GuestPhysicalAddress, _ v: UInt8) throws(GuestMemoryError) {
        try pointer(gpa, 1).storeBytes(of: v, as: UInt8.self)
    }
    public func readU64(_ gpa: GuestPhysicalAddress) throws(GuestMemoryError) -> UInt64 {
        try pointer(gpa, 8).loadUnaligned(as: UInt64.self).littleEndian
    }
    public func writeU64(_ gpa: GuestPhysicalAddress, _ v: UInt64) throws(GuestMemoryError) {
        try pointer(gpa, 8).storeBytes(of: v.littleEndian, as: UInt64.self)
    }
    public func fill(_ gpa: GuestPhysicalAddress, count: Int, with byte: UInt8) throws(GuestMemoryError) {
        memset(try pointer(gpa, count), Int32(byte), count)
    }

    /// The guest's atomic `xchg(&byte, new)`: returns the old value. The byte is only ever
    /// touched by the vCPU that owns the page while it is not running the SVSM, so a plain
    /// read and write model the instruction faithfully here.
    public func exchangeU8(_ gpa: GuestPhysicalAddress, _ new: UInt8) throws(GuestMemoryError) -> UInt8 {
        let p = try pointer(gpa, 1)
        let old = p.load(as: UInt8.self)
        p.storeBytes(of: new, as: UInt8.self)
        return old
    }
}
