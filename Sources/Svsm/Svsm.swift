import EfiTypes
import Hardware
import MmWire
import SvsmAbi

/// Faults the SVSM itself can answer with, each with a probability: the call is consumed
/// (call_pending cleared) and not done.
public struct SvsmFaults: Sendable, Equatable {
    /// SVSM_ERR_BUSY.
    public var busy: Double = 0
    /// SVSM_ERR_INCOMPLETE.
    public var incomplete: Double = 0
    public var seed: UInt64 = 0x5eed
    public init() {}
    public var isEmpty: Bool { busy == 0 && incomplete == 0 }
}

/// The SVSM at VMPL0: a registry of vCPUs and their CAAs, the request loop that reads a
/// CAA and dispatches a call, and the protocols it serves.
///
/// Run by the processor when the host resumes a vCPU's VMPL0 context after a VMGEXIT. It
/// sees guest memory by GPA through `SvsmGuestAccess`, never through guest-side objects, and
/// hands protocol-4 messages to its MM service (the variable store, one per profile).
public final class Svsm: Vmpl0Software {
    public struct Configuration: Sendable {
        /// APIC IDs the platform has (CREATE_VCPU names one of them).
        public var maxVcpus: Int = 512
        /// The VMPL the guest OS runs at (COCONUT `GUEST_VMPL`).
        public var guestVmpl: UInt8 = 2
        /// Whether protocol 4 is built in (COCONUT cargo feature `uefivars`).
        public var uefiMmEnabled: Bool = true
        /// Whether protocol 1 (attestation) is served; COCONUT always serves it, a host that
        /// offers only part of the ABI (serve-svsm) turns it off.
        public var attestationEnabled: Bool = true
        /// The core-protocol calls served (nil: every call COCONUT serves); any other answers
        /// UNSUPPORTED_CALL. serve-svsm offers QUERY_PROTOCOL only: its vCPUs and their pages
        /// are fixed by the shared-memory layout (kernel/SHM-TRANSPORT.md §5.4).
        public var coreCalls: Set<UInt32>? = nil
        public init() {}
    }

    /// UEFI_MM_BUFFER_LIMIT in COCONUT `protocols/uefivars.rs`.
    public static let uefiMmBufferLimit: UInt64 = 256 * 1024
    /// sizeof(EFI_MM_COMMUNICATE_HEADER).
    public static let mmHeaderSize: UInt64 = 24

    public let configuration: Configuration
    public let access: SvsmGuestAccess
    let mmService: any MmService
    /// `PERCPU_VMSAS`, keyed by APIC ID.
    let registry: Locked<[UInt32: VcpuBinding]>
    /// The pages the registry protects, rebuilt whenever it changes (core calls only), so
    /// that checking a request does not walk every vCPU.
    let protection = Locked(ProtectedPages([]))
    let sevFeatures: UInt64
    /// BUSY/INCOMPLETE injection; off until the platform turns it on (after boot).
    private let faults = Locked<(SvsmFaults, SeededRandom)?>(nil)
    /// Sees every protocol-4 request (`observeMmRequests`).
    private let mmRequestObserver = Locked<MmRequestObserver?>(nil)

    /// Called with the SVSM's private copy of each UEFI MM request that passed the buffer
    /// checks: the EFI_MM_COMMUNICATE header (24 bytes) followed by MessageLength bytes of
    /// message, before the MM service sees it. `--log-requests` of mount and serve-svsm.
    public typealias MmRequestObserver = @Sendable (_ apicId: UInt32, _ communicateBuffer: [UInt8]) -> Void

    public init(memory: GuestMemory, mmService: any MmService, configuration: Configuration = Configuration(), sevFeatures: UInt64 = 1) {
        self.configuration = configuration
        self.access = SvsmGuestAccess(memory: memory)
        self.mmService = mmService
        self.registry = Locked([:])
        self.sevFeatures = sevFeatures
    }

    /// Starts (or stops, with an empty plan) answering calls with injected faults.
    public func injectFaults(_ plan: SvsmFaults) {
        faults.withLock { $0 = plan.isEmpty ? nil : (plan, SeededRandom(seed: plan.seed)) }
    }

    /// `Vmpl0Software`: the request loop for one run.
    public func run(apicId: UInt32) { _ = enter(apicId: apicId) }

    /// Starts (or, with nil, stops) handing every UEFI MM request to `observer`.
    public func observeMmRequests(_ observer: MmRequestObserver?) {
        mmRequestObserver.withLock { $0 = observer }
    }

    func notifyMmRequest(apicId: UInt32, headerGuid: EfiGuid, messageLength: UInt64, message: [UInt8]) {
        guard let o = mmRequestObserver.withLock({ $0 }) else { return }
        // The header as the guest wrote it, built only when someone records requests.
        var header = [UInt8](zeroed: MmCommunicateHeader.size)
        header.store(headerGuid, at: MmCommunicateHeader.headerGuidOffset)
        header.storeLE(messageLength, at: MmCommunicateHeader.messageLengthOffset)
        o(apicId, header + message)
    }

    /// Binds `apicId` to a VMSA and a CAA without a call: what the firmware launch and the
    /// OS boot (CREATE_VCPU, REMAP_CA) did before this guest attached. For a host that lays
    /// out the vCPUs itself (serve-svsm registers each vCPU's register page as its VMSA and
    /// its CAA page). Replaces an earlier binding of `apicId`; the CAA is not touched.
    public func register(apicId: UInt32, vmsa: GuestPhysicalAddress, caa: GuestPhysicalAddress) {
        updateRegistry { $0[apicId] = VcpuBinding(apicId: apicId, vmsa: vmsa, caa: caa) }
    }

    /// Forgets every vCPU (a new guest attached: the old one's calls are abandoned).
    public func forgetVcpus() {
        updateRegistry { $0.removeAll() }
    }

    /// Firmware launch: register the boot vCPU's VMSA and the CAA from firmware metadata
    /// (COCONUT `prepare_fw_launch`). The CAA header is zeroed.
    public func launch(bootVmsa: GuestPhysicalAddress, firmwareCaa: GuestPhysicalAddress) throws(SvsmError) {
        try access.setCaaHeader(firmwareCaa, 0)
        updateRegistry { $0[0] = VcpuBinding(apicId: 0, vmsa: bootVmsa, caa: firmwareCaa) }
    }

    /// Every change to the registry goes through here, so the protected pages always match it.
    func updateRegistry<E: Error>(_ body: (inout [UInt32: VcpuBinding]) throws(E) -> Void) throws(E) {
        try registry.withLock { (r: inout [UInt32: VcpuBinding]) throws(E) in try body(&r) }
        let p = ProtectedPages(bindings)
        protection.withLock { $0 = p }
    }

    public var protectedPages: ProtectedPages { protection.withLock { $0 } }

    public func binding(apicId: UInt32) -> VcpuBinding? { registry.withLock { $0[apicId] } }
    public var bindings: [VcpuBinding] { registry.withLock { Array($0.values) } }

    /// What happened when the SVSM ran for a vCPU.
    public enum EntryOutcome: Equatable, Sendable {
        /// call_pending was clear: nothing dispatched, registers untouched.
        case notPending
        /// The vCPU has no registered VMSA/CAA.
        case unknownVcpu
        case processed(SvsmCallId, SvsmResultCode)
    }

    /// The request loop for one exit of `apicId` (COCONUT `execloop.rs` +
    /// `requests.rs`): read and clear call_pending of the CAA registered for this vCPU,
    /// dispatch only if it was set, write RAX (zero-extended) and RCX/RDX/R8 to the VMSA.
    public func enter(apicId: UInt32) -> EntryOutcome {
        guard let b = binding(apicId: apicId) else { return .unknownVcpu }
        // get_and_clear_caa_request_flag: a non-atomic read-modify-write of bytes 0-7.
        guard let header = try? access.caaHeader(b.caa) else { return .notPending }
        let pending = UInt8(truncatingIfNeeded: header)
        try? access.setCaaHeader(b.caa, header & ~0xff)
        guard pending != 0 else { return .notPending }
        if let injected = injectedFault() {
            let id = SvsmCallId(rax: (try? access.vmsaU64(b.vmsa, VmsaLayout.rax)) ?? 0)
            try? access.setVmsaU64(b.vmsa, VmsaLayout.rax, injected.rax)
            return .processed(id, injected)
        }

        var regs = SvsmRegisters()
        do {
            regs.rax = try access.vmsaU64(b.vmsa, VmsaLayout.rax)
            regs.rcx = try access.vmsaU64(b.vmsa, VmsaLayout.rcx)
            regs.rdx = try access.vmsaU64(b.vmsa, VmsaLayout.rdx)
            regs.r8 = try access.vmsaU64(b.vmsa, VmsaLayout.r8)
        } catch { return .notPending }
        let id = SvsmCallId(rax: regs.rax)
        var out = regs
        let result: SvsmResultCode
        do {
            try dispatch(id, apicId: apicId, regs: &out)
            result = .success
        } catch {
            result = error.resultCode
        }
        // Written for every processed request, success or error (request_loop_main).
        // A later core call may have moved this vCPU's VMSA (never in this model), so the
        // binding read at entry is the one answered.
        try? access.setVmsaU64(b.vmsa, VmsaLayout.rax, result.rax)
        try? access.setVmsaU64(b.vmsa, VmsaLayout.rcx, out.rcx)
        try? access.setVmsaU64(b.vmsa, VmsaLayout.rdx, out.rdx)
        try? access.setVmsaU64(b.vmsa, VmsaLayout.r8, out.r8)
        return .processed(id, result)
    }

    /// BUSY or INCOMPLETE when a fault fires for this call.
    private func injectedFault() -> SvsmResultCode? {
        faults.withLock { f -> SvsmResultCode? in
            guard let (plan, random) = f else { return nil }
            if random.fires(plan.busy) { return .busy }
            if random.fires(plan.incomplete) { return .incomplete }
            return nil
        }
    }

    func dispatch(_ id: SvsmCallId, apicId: UInt32, regs: inout SvsmRegisters) throws(SvsmError) {
        switch id.protocolId {
        case 0:
            if let offered = configuration.coreCalls, !offered.contains(id.callId) { throw .unsupportedCall }
            try coreProtocol(id.callId, apicId: apicId, regs: &regs)
        case 1 where configuration.attestationEnabled: try attestProtocol(id.callId, regs: &regs)
        case 4 where configuration.uefiMmEnabled: try uefiMmProtocol(id.callId, apicId: apicId, regs: &regs)
        default: throw .unsupportedProtocol
        }
    }
}
