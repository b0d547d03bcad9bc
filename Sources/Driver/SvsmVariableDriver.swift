import EfiTypes
import Guest
import Hardware
import MmWire
import SvsmAbi

/// The modelled Linux driver: an `efivar_operations` backend that sends each variable call
/// to the SVSM (protocol 4) through the current vCPU's own CAA. Built like
/// drivers/firmware/efi/stmm/tee_stmm_efi.c: size and build the message, communicate,
/// copy back and return the status. It sees only the bytes of the MM wire format.
///
/// Buffers: one page-aligned MM buffer per vCPU, in private guest memory, never a CAA
/// page. The CPU that holds the vCPU (interrupts off) owns its buffer, so no driver lock
/// is needed; the SVSM serialises the store itself. (tee_stmm_efi allocates per call and
/// relies on efivars_lock; a per-CPU buffer is the choice that lets calls from many vCPUs
/// proceed without a global lock.)
///
/// An SVSM-level failure (the call not executed, an error result, retries exhausted) is
/// thrown as `SvsmCallError`; Linux turns it into EFI_DEVICE_ERROR, and so do the callers
/// that stand for Linux (efivarfs).
public final class SvsmVariableDriver: Sendable {
    public enum ProbeError: Error, CustomStringConvertible {
        case protocolNotSupported
        case callFailed(SvsmCallError)
        case payloadTooSmall(UInt64)
        case payloadStatus(EfiStatus)
        case memory(GuestMemoryError)
        public var description: String {
            switch self {
            case .protocolNotSupported: return "the SVSM does not offer protocol 4 (UEFI MM) version 1"
            case .callFailed(let e): return "SVSM call failed during probe: \(e)"
            case .payloadTooSmall(let n): return "GET_PAYLOAD_SIZE reported \(n) bytes (at least 72 needed)"
            case .payloadStatus(let s): return "GET_PAYLOAD_SIZE failed: \(s.name)"
            case .memory(let e): return "cannot allocate the MM buffer: \(e)"
            }
        }
    }

    /// The buffer GET_PAYLOAD_SIZE is asked through (OVMF VirtMmCommunicationDxe's
    /// MAX_BUFFER_SIZE).
    public static let probeBufferSize = 64 * 1024

    public let vcpus: VcpuSet
    public let transport: SvsmCallTransport
    /// VariablePayloadSize from GET_PAYLOAD_SIZE.
    public let maxPayloadSize: Int
    /// 24 + 16 + payload, rounded up to whole pages: what RDX names.
    public let bufferSize: Int
    /// Each vCPU's MM buffer, by APIC ID.
    let buffers: [UInt32: GuestPhysicalAddress]
    /// Whether the service answers VAR_CHECK_VARIABLE_PROPERTY_GET (function 10): probed
    /// once. Without it the driver cannot learn READ_ONLY properties and skips the check;
    /// the service still refuses a write to a read-only variable itself.
    public let hasVarCheckProperties: Bool
    /// The runtime variable cache (`--driver-cache`), if this driver keeps one.
    public let cache: DriverVariableCache?

    /// Probe as Linux would: QUERY_PROTOCOL(4, 1), then GET_PAYLOAD_SIZE, then allocate
    /// the per-CPU buffers, then ask once whether VAR_CHECK properties are served.
    public init(vcpus: VcpuSet, transport: SvsmCallTransport, allocator: PageAllocator) throws(ProbeError) {
        self.vcpus = vcpus
        self.transport = transport
        let rcx: UInt64
        do {
            rcx = try vcpus.withVcpu { (v: Vcpu) throws(SvsmCallError) -> UInt64 in
                try transport.perform(.coreQueryProtocol, rcx: 4 << 32 | 1, on: v, caa: v.svsmCaa).rcx
            }
        } catch { throw .callFailed(error) }
        guard rcx != 0 else { throw .protocolNotSupported }
        // GET_PAYLOAD_SIZE through a buffer as large as the driver will use: QEMU's answer is
        // the buffer it is handed minus 40, so a one-page probe would learn 4056 and cap
        // every variable near 4 KiB. 64 KiB is OVMF's MAX_BUFFER_SIZE, the buffer every
        // store behind protocol 4 is built for.
        let probePages = SvsmVariableDriver.probeBufferSize / 4096
        let probeBuffer: GuestPhysicalAddress
        do { probeBuffer = try allocator.allocatePages(probePages) } catch { throw .memory(error) }
        let (status, reply): (EfiStatus, [UInt8])
        do {
            (status, reply) = try vcpus.withVcpu { (v: Vcpu) throws(SvsmCallError) in
                try MmCommunicator(channel: SvsmMmChannel(transport: transport, vcpu: v, caa: v.svsmCaa, buffer: probeBuffer,
                                                          bufferSize: SvsmVariableDriver.probeBufferSize))
                    .variableCall(.getPayloadSize, payload: [UInt8](zeroed: GetPayloadSizePayload.size))
            }
        } catch { throw .callFailed(error) }
        guard status == .success else { throw .payloadStatus(status) }
        let payload = reply.loadLE(UInt64.self, at: 0)
        for i in 0..<probePages { allocator.freePage(probeBuffer.advanced(by: UInt64(i) * 4096)) }
        // tee_stmm_efi refuses less than 40 + 0x20.
        guard payload >= 72, payload <= 1 << 20 else { throw .payloadTooSmall(payload) }
        self.maxPayloadSize = Int(payload)
        let pages = (MmCommunicateHeader.size + SmmVariableHeader.size + Int(payload) + 4095) / 4096
        self.bufferSize = pages * 4096
        var buffers: [UInt32: GuestPhysicalAddress] = [:]
        for v in vcpus.vcpus {
            do { buffers[v.apicId] = try allocator.allocatePages(pages) } catch { throw .memory(error) }
        }
        self.buffers = buffers
        // VAR_CHECK probe: a property query for a name nobody registers. SUCCESS or
        // NOT_FOUND mean the function is there; EFI_UNSUPPORTED (QEMU's uefi-vars, COCONUT's
        // store) means it is not.
        let probeKey = VariableKey("SvsmVariableDriverProbe", .linuxEfiCrash)
        var hasVarCheck = true
        do {
            let (s, _) = try vcpus.withVcpu { (v: Vcpu) throws(SvsmCallError) in
                try MmCommunicator(channel: SvsmMmChannel(transport: transport, vcpu: v, caa: v.svsmCaa, buffer: buffers[v.apicId]!,
                                                          bufferSize: pages * 4096))
                    .variableCall(.varCheckVariablePropertyGet, payload: VarCheckPropertyPayload.encode(guid: probeKey.guid, name: probeKey.name))
            }
            hasVarCheck = s == .success || s == .notFound
        } catch { throw .callFailed(error) }
        self.hasVarCheckProperties = hasVarCheck
        self.cache = nil
    }

    /// Reuses a probed driver's buffers with another transport (the runtime one, with
    /// fault injection and tracing), with a runtime variable cache or without.
    public init(reusing other: SvsmVariableDriver, transport: SvsmCallTransport, cache: DriverVariableCache? = nil) {
        self.vcpus = other.vcpus
        self.transport = transport
        self.maxPayloadSize = other.maxPayloadSize
        self.bufferSize = other.bufferSize
        self.buffers = other.buffers
        self.hasVarCheckProperties = other.hasVarCheckProperties
        self.cache = cache
    }

    /// Runs `body` holding one vCPU: every SVSM call it makes goes through that vCPU's CAA.
    public func onCpu<R, E: Error>(_ body: (Cpu) throws(E) -> R) throws(E) -> R {
        try vcpus.withVcpu { (v: Vcpu) throws(E) -> R in try body(Cpu(driver: self, vcpu: v)) }
    }

    /// Runs `body` on a vCPU the caller already holds.
    public func onCpuHeld<R, E: Error>(_ vcpu: Vcpu, _ body: (Cpu) throws(E) -> R) throws(E) -> R {
        try body(Cpu(driver: self, vcpu: vcpu))
    }

    /// The MM buffer of the vCPU with this APIC ID.
    public func buffer(forApicId apicId: UInt32) -> GuestPhysicalAddress? { buffers[apicId] }
}
