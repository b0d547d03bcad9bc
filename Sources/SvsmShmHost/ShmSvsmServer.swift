#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CShmAtomics
import EfiTypes
import Hardware
import MmWire
import Svsm
import SvsmAbi

/// serve-svsm's engine: the host side of the shm transport (kernel/SHM-TRANSPORT.md). It
/// watches the header for a guest that attaches, registers that guest's vCPUs in an `Svsm`
/// over the window, and answers each doorbell by running that SVSM's request loop
/// (`Svsm.enter(apicId:)`), the same code the modelled machine's VMGEXITs run.
///
/// Per generation the window is a `GuestMemory` whose base is the guest's `window_gpa` and
/// whose memory map is only the MM-buffer area [window_gpa + 1 MiB, window_gpa + size): the
/// SVSM's region checks refuse the header and the per-vCPU pages as buffers (as COCONUT
/// refuses a CAA or VMSA page), and no GPA outside the window reaches the mapping.
///
/// One thread serves every vCPU, one call at a time (the store serialises calls anyway).
/// `pollOnce` is one pass; `serve` loops with the polling policy. Both must be called from
/// one thread at a time: the generation and counters they keep are not locked.
public final class ShmSvsmServer: @unchecked Sendable {
    /// Faults of a misbehaving host, for testing the module's side.
    public struct Faults: Sendable, Equatable {
        /// Answer only this many calls, then never ring a doorbell back (0: never answer).
        public var answerLimit: Int?
        /// BUSY/INCOMPLETE from the SVSM itself.
        public var svsm = SvsmFaults()
        public init() {}
    }

    /// One call served: what the guest asked, what it got.
    public struct ServedCall: Sendable {
        public var apicId: UInt32
        public var caa: GuestPhysicalAddress
        public var input: SvsmRegisters
        public var output: SvsmRegisters
        public var outcome: Svsm.EntryOutcome
        public var startNanoseconds: UInt64
        public var durationNanoseconds: UInt64
        /// For an executed UEFI MM request: the SMM variable function and the ReturnStatus
        /// the service wrote (read back from the buffer; for traces only).
        public var mmFunction: UInt64?
        public var efiStatus: UInt64?
    }

    public enum Event: Sendable {
        case attached(ShmAttachment)
        case refused(ShmRefusal)
        case served(ServedCall)
    }

    /// When `serve` looks at the doorbells, by the time since the last call (or attach):
    /// continuously (PAUSE between passes) for `spin`, then with naps of `shortNap` until
    /// `shortNapWindow`, then naps of `nap` until `napWindow`, then naps of `idleNap`.
    /// Defaults: spin 50 µs; 20 µs naps up to 200 ms; 1 ms naps up to 2 s; then 10 ms naps.
    /// The timer slack is set to 1 µs, so a nap is about as long as asked. A call in a burst
    /// waits tens of µs; the first call after a quiet spell at most one nap (≤ 10 ms; the
    /// guest gives up after 5 s); an idle server wakes 100 times a second for one pass over
    /// the header and ≤ 127 doorbells.
    public struct PollingPolicy: Sendable {
        public var spinNanoseconds: UInt64 = 50_000
        public var shortNapNanoseconds: UInt64 = 20_000
        public var shortNapWindowNanoseconds: UInt64 = 200_000_000
        public var napNanoseconds: UInt64 = 1_000_000
        public var napWindowNanoseconds: UInt64 = 2_000_000_000
        public var idleNapNanoseconds: UInt64 = 10_000_000
        public init() {}

        /// How long to nap after `idle` ns without a call; nil: spin.
        public func nap(afterIdle idle: UInt64) -> UInt64? {
            if idle < spinNanoseconds { return nil }
            if idle < shortNapWindowNanoseconds { return shortNapNanoseconds }
            if idle < napWindowNanoseconds { return napNanoseconds }
            return idleNapNanoseconds
        }
    }

    public let window: SharedWindow
    let mmService: any MmService
    let faults: Faults
    let events: @Sendable (Event) -> Void
    let mmRequestObserver: Svsm.MmRequestObserver?

    /// The generation last looked at (served or refused).
    private var seenGeneration: UInt32?
    /// The generation served, its SVSM and its window memory.
    public private(set) var attachment: ShmAttachment?
    public private(set) var svsm: Svsm?
    public private(set) var memory: GuestMemory?
    private var answered = 0

    public init(window: SharedWindow, mmService: any MmService, faults: Faults = Faults(),
                mmRequestObserver: Svsm.MmRequestObserver? = nil, events: @escaping @Sendable (Event) -> Void = { _ in }) {
        self.window = window
        self.mmService = mmService
        self.faults = faults
        self.mmRequestObserver = mmRequestObserver
        self.events = events
    }

    /// The SVSM's configuration here: protocol 4, and of the core protocol only
    /// QUERY_PROTOCOL (§5.4); the vCPUs are the header's.
    public static var svsmConfiguration: Svsm.Configuration {
        var c = Svsm.Configuration()
        c.maxVcpus = Int(ShmLayout.maxVcpus)
        c.coreCalls = [SvsmCallId.coreQueryProtocol.callId]
        c.attestationEnabled = false
        return c
    }

    /// One pass: the header (a new generation is attached or refused), then every
    /// registered vCPU's doorbell. Returns how many things happened (attachments and calls).
    @discardableResult
    public func pollOnce() -> Int {
        var happened = checkHeader() ? 1 : 0
        guard let a = attachment, let svsm, let memory else { return happened }
        if let limit = faults.answerLimit, answered >= limit { return happened }
        for i in 0..<a.vcpuCount {
            let doorbell = Int(ShmLayout.registerPage(i) + ShmLayout.doorbellOffset)
            guard window.loadAcquireU64(doorbell) == ShmLayout.doorbellRequest else { continue }
            serve(vcpu: i, doorbell: doorbell, attachment: a, svsm: svsm, memory: memory)
            happened += 1
            answered += 1
            if let limit = faults.answerLimit, answered >= limit { break }
        }
        return happened
    }

    /// Serves until `running` returns false, with `policy`.
    public func serve(policy: PollingPolicy = PollingPolicy(), while running: () -> Bool) {
        _ = cshm_set_timer_slack(1000)
        var last = ShmSvsmServer.now()
        while running() {
            if pollOnce() > 0 {
                last = ShmSvsmServer.now()
                continue
            }
            if let nap = policy.nap(afterIdle: ShmSvsmServer.now() &- last) {
                ShmSvsmServer.nap(nap)
            } else {
                cshm_cpu_relax()
            }
        }
    }

    /// §3, host side: a new guest_generation is checked and, if sound, served.
    private func checkHeader() -> Bool {
        let g = window.loadAcquireU32(ShmLayout.guestGenerationOffset)
        guard g != seenGeneration else { return false }
        seenGeneration = g
        // Whatever comes of it, the previous generation's vCPUs are abandoned.
        attachment = nil; svsm = nil; memory = nil
        // A guest never announces generation 0: a new (zeroed) file has no guest yet.
        guard g != 0 else { return false }
        let checked = ShmAttachment.check(
            generation: g, magic: window.loadU64(ShmLayout.magicOffset), version: window.loadU32(ShmLayout.versionOffset),
            vcpuCount: window.loadU32(ShmLayout.vcpuCountOffset), windowGpa: window.loadU64(ShmLayout.windowGpaOffset),
            windowSize: window.loadU64(ShmLayout.windowSizeOffset), fileSize: window.size)
        switch checked {
        case .failure(let refusal):
            events(.refused(refusal))
            return true
        case .success(let a):
            let base = a.windowGpa
            let buffers = GuestRegion(start: base.advanced(by: ShmLayout.buffersOffset), length: a.windowSize - ShmLayout.buffersOffset)
            let memory = GuestMemory(mapping: window.pointer, base: base, size: a.windowSize, memoryMap: [buffers])
            let svsm = Svsm(memory: memory, mmService: mmService, configuration: ShmSvsmServer.svsmConfiguration)
            for i in 0..<a.vcpuCount {
                svsm.register(apicId: i, vmsa: base.advanced(by: ShmLayout.registerPage(i)), caa: base.advanced(by: ShmLayout.caaPage(i)))
            }
            svsm.observeMmRequests(mmRequestObserver)
            svsm.injectFaults(faults.svsm)
            self.attachment = a; self.svsm = svsm; self.memory = memory
            window.storeReleaseU32(ShmLayout.hostGenerationOffset, g)
            events(.attached(a))
            return true
        }
    }

    /// §5.2: call_pending read and cleared, the call dispatched, the registers written back
    /// (all in `Svsm.enter`), then the answer in the doorbell.
    private func serve(vcpu i: UInt32, doorbell: Int, attachment a: ShmAttachment, svsm: Svsm, memory: GuestMemory) {
        let start = ShmSvsmServer.now()
        let vmsa = a.windowGpa.advanced(by: ShmLayout.registerPage(i))
        func registers() -> SvsmRegisters {
            func r(_ offset: UInt64) -> UInt64 { (try? memory.readU64(vmsa.advanced(by: offset))) ?? 0 }
            return SvsmRegisters(rax: r(VmsaLayout.rax), rcx: r(VmsaLayout.rcx), rdx: r(VmsaLayout.rdx), r8: r(VmsaLayout.r8))
        }
        let input = registers()
        let outcome = svsm.enter(apicId: i)
        let output = registers()
        var function: UInt64?, status: UInt64?
        if case .processed(.uefiMmRequest, .success) = outcome,
           let head = try? memory.read(GuestPhysicalAddress(input.rcx).advanced(by: Svsm.mmHeaderSize), count: 16) {
            function = head.loadLE(UInt64.self, at: 0)
            status = head.loadLE(UInt64.self, at: 8)
        }
        window.storeReleaseU64(doorbell, ShmLayout.doorbellResponse)
        let end = ShmSvsmServer.now()
        events(.served(ServedCall(apicId: i, caa: a.windowGpa.advanced(by: ShmLayout.caaPage(i)), input: input, output: output,
                                  outcome: outcome, startNanoseconds: start, durationNanoseconds: end &- start,
                                  mmFunction: function, efiStatus: status)))
    }

    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    static func nap(_ nanoseconds: UInt64) {
        var want = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        var left = timespec()
        while nanosleep(&want, &left) != 0 && errno == EINTR { want = left }
    }
}
