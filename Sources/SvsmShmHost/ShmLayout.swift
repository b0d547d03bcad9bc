import SvsmAbi

/// The shared window of the C module's shm transport, as kernel/SHM-TRANSPORT.md lays it out
/// (version 1): offsets from byte 0 of the window, all integers little-endian.
public enum ShmLayout {
    /// "SVSMSHM1".
    public static let magic: UInt64 = 0x314D_4853_4D53_5653
    public static let version: UInt32 = 1
    /// vcpu_count is 1 … 127: the per-vCPU pages end below `buffersOffset`.
    public static let maxVcpus: UInt32 = 127
    /// The size serve-svsm gives a new (empty) file, and QEMU's `size=16M`.
    public static let defaultWindowSize = 16 << 20
    /// The guest refuses a smaller BAR; the host a smaller file.
    public static let minimumWindowSize = 2 << 20
    /// The MM buffers start here; below it are the header and the per-vCPU pages.
    public static let buffersOffset: UInt64 = 0x10_0000
    public static let pageSize: UInt64 = GuestPhysicalAddress.pageSize

    // The header page (§3).
    public static let magicOffset = 0x00
    public static let versionOffset = 0x08
    public static let vcpuCountOffset = 0x0C
    public static let windowGpaOffset = 0x10
    public static let windowSizeOffset = 0x18
    public static let guestGenerationOffset = 0x20
    public static let hostGenerationOffset = 0x24

    /// vCPU `i`'s register page (the VMSA's GPRs at `VmsaLayout` offsets, and the doorbell).
    public static func registerPage(_ vcpu: UInt32) -> UInt64 { (1 + 2 * UInt64(vcpu)) * pageSize }
    /// vCPU `i`'s Calling Area page.
    public static func caaPage(_ vcpu: UInt32) -> UInt64 { (2 + 2 * UInt64(vcpu)) * pageSize }
    /// The doorbell, in the register page: the GHCB MSR value of a VMGEXIT.
    public static let doorbellOffset: UInt64 = 0xFF0
    /// Doorbell values: the guest's request (`GHCB_MSR_VMPL_REQ` for VMPL 0) and the answer.
    public static let doorbellRequest = GhcbMsr.vmplRequest(level: 0)
    public static let doorbellResponse = GhcbMsr.vmplResponse
}

/// What the guest's header announces for one generation, once checked.
public struct ShmAttachment: Sendable, Equatable, CustomStringConvertible {
    public var generation: UInt32
    public var vcpuCount: UInt32
    public var windowGpa: GuestPhysicalAddress
    public var windowSize: UInt64

    /// The header fields as the guest wrote them, checked against §3 and the file: a magic
    /// and version 1, 1 ≤ vcpu_count ≤ 127, window_size = the file's size, window_gpa 4 KiB
    /// aligned and the window not wrapping the 64-bit space. The reason for a refusal.
    public static func check(generation: UInt32, magic: UInt64, version: UInt32, vcpuCount: UInt32,
                             windowGpa: UInt64, windowSize: UInt64, fileSize: Int) -> Result<ShmAttachment, ShmRefusal> {
        guard magic == ShmLayout.magic else { return .failure(ShmRefusal(generation: generation, reason: "magic 0x\(String(magic, radix: 16)) is not SVSMSHM1")) }
        guard version == ShmLayout.version else { return .failure(ShmRefusal(generation: generation, reason: "version \(version), not 1")) }
        guard (1...ShmLayout.maxVcpus).contains(vcpuCount) else {
            return .failure(ShmRefusal(generation: generation, reason: "vcpu_count \(vcpuCount) is not 1 … \(ShmLayout.maxVcpus)"))
        }
        guard windowSize == UInt64(fileSize) else {
            return .failure(ShmRefusal(generation: generation, reason: "window_size 0x\(String(windowSize, radix: 16)) is not the file's size 0x\(String(fileSize, radix: 16))"))
        }
        guard windowGpa % ShmLayout.pageSize == 0 else {
            return .failure(ShmRefusal(generation: generation, reason: "window_gpa 0x\(String(windowGpa, radix: 16)) is not 4 KiB aligned"))
        }
        guard GuestRegion(start: GuestPhysicalAddress(windowGpa), length: windowSize).end != nil else {
            return .failure(ShmRefusal(generation: generation, reason: "window_gpa 0x\(String(windowGpa, radix: 16)) + window_size wraps the address space"))
        }
        return .success(ShmAttachment(generation: generation, vcpuCount: vcpuCount, windowGpa: GuestPhysicalAddress(windowGpa), windowSize: windowSize))
    }

    public var description: String {
        "generation \(generation): \(vcpuCount) vCPU\(vcpuCount == 1 ? "" : "s"), window \(windowGpa)+0x\(String(windowSize, radix: 16))"
    }
}

/// A generation the host did not serve, and why.
public struct ShmRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    public var generation: UInt32
    public var reason: String
    public var description: String { "generation \(generation) refused: \(reason)" }
}
