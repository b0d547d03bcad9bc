import Foundation
import Hardware
import SvsmAbi

/// One vCPU as the guest OS sees it: the processor's state for it and the OS's per-CPU SVSM
/// data (Linux `per_cpu(svsm_caa_pa)`).
///
/// A `Vcpu` is used by one thread at a time: whoever holds it from `VcpuSet.withVcpu`
/// (the model of "interrupts off on this CPU").
public final class Vcpu: @unchecked Sendable {
    public let cpu: VirtualCpu
    public var apicId: UInt32 { cpu.apicId }
    public var vmsa: GuestPhysicalAddress { cpu.vmsa }
    /// The OS's per-CPU CAA (`svsm_caa_pa`); before the OS takes over, the firmware's CAA.
    /// Changed only by the code that remaps it (REMAP_CA) while holding the vCPU.
    public var svsmCaa: GuestPhysicalAddress

    public init(apicId: UInt32, vmsa: GuestPhysicalAddress, caa: GuestPhysicalAddress) {
        self.cpu = VirtualCpu(apicId: apicId, vmsa: vmsa)
        self.svsmCaa = caa
    }
}

/// The set of vCPUs an OS runs on, handed out one request at a time.
///
/// A filesystem request holds one vCPU for all the SVSM calls it makes, and reads that
/// vCPU's CAA only after it holds it, so no "migration" can separate the CAA from the CPU
/// that issues the VMGEXIT (the race described for `snp_svsm_vtpm_send_command`).
public final class VcpuSet: @unchecked Sendable {
    public let vcpus: [Vcpu]
    private var busy: [Bool]
    private var freeCount: Int
    /// Where the next request lands: requests are spread over the vCPUs the way a
    /// scheduler spreads tasks over CPUs, so every vCPU's CAA and buffer get used.
    private var cursor = 0
    private let condition = NSCondition()
    private var peakInUse = 0

    public init(_ vcpus: [Vcpu]) {
        self.vcpus = vcpus
        self.busy = [Bool](repeating: false, count: vcpus.count)
        self.freeCount = vcpus.count
    }

    public var count: Int { vcpus.count }

    private func take(_ index: Int) {
        busy[index] = true
        freeCount -= 1
        peakInUse = max(peakInUse, vcpus.count - freeCount)
    }

    private func give(_ index: Int) {
        condition.lock()
        busy[index] = false
        freeCount += 1
        condition.broadcast()
        condition.unlock()
    }

    /// Runs `body` on a free vCPU, waiting for one if all are busy.
    public func withVcpu<R, E: Error>(_ body: (Vcpu) throws(E) -> R) throws(E) -> R {
        condition.lock()
        while freeCount == 0 { condition.wait() }
        var index = cursor
        while busy[index] { index = (index + 1) % vcpus.count }
        cursor = (index + 1) % vcpus.count
        take(index)
        condition.unlock()
        defer { give(index) }
        return try body(vcpus[index])
    }

    /// Runs `body` on one particular vCPU (boot code pins itself to the BSP).
    public func withVcpu<R, E: Error>(apicId: UInt32, _ body: (Vcpu) throws(E) -> R) throws(E) -> R {
        let index = Int(apicId)
        condition.lock()
        while busy[index] { condition.wait() }
        take(index)
        condition.unlock()
        defer { give(index) }
        return try body(vcpus[index])
    }

    /// vCPUs busy now and the most that were ever busy at once.
    public var usage: (inUse: Int, peak: Int) {
        condition.lock(); defer { condition.unlock() }
        return (vcpus.count - freeCount, peakInUse)
    }
}
