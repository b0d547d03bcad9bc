import Hardware
import SvsmAbi

/// Why firmware code running in efi_mm stopped.
public enum EfiRuntimeFault: Error, Equatable, Sendable, CustomStringConvertible {
    /// #PF: no present, writable translation for the access. `interruptsEnabled` is the
    /// interrupt flag the fault saw (`regs->flags`).
    case pageFault(address: VirtualAddress, write: Bool, interruptsEnabled: Bool)
    /// A #VC the OS's handler does not resolve for this kernel; what follows is not
    /// settled by the sources.
    case unresolvedVc(String)
    /// The firmware ended the guest (`SnpTerminate`: the GHCB terminate request, then
    /// `CpuDeadLoop`).
    case guestTerminated(String)

    public var description: String {
        switch self {
        case .pageFault(let a, let w, let irq):
            return "#PF on \(w ? "write" : "read") of \(a) (interrupts \(irq ? "enabled" : "disabled"))"
        case .unresolvedVc(let s): return "unresolved #VC: \(s)"
        case .guestTerminated(let s): return "guest terminated: \(s)"
        }
    }
}

/// The OS's #VC handler as EFI runtime code meets it: RDMSR of MSR_SVSM_CAA is answered
/// locally with this CPU's `svsm_caa_pa` (torvalds/linux arch/x86/coco/sev/vc-handle.c
/// `__vc_handle_msr_caa`), provided the handler can decode the instruction from efi_mm.
public struct LinuxVcHandler: Sendable {
    public let kernel: LinuxKernelRelease
    public init(kernel: LinuxKernelRelease) { self.kernel = kernel }

    public func rdmsrFromEfiRuntime(_ index: UInt32, on vcpu: Vcpu) throws(EfiRuntimeFault) -> UInt64 {
        guard kernel.decodesEfiRuntimeInstructions else {
            throw .unresolvedVc("RDMSR from efi_mm without 7b22e0432981: vc_decode_insn uses the kernel decoder; no source states the outcome")
        }
        guard let value = vcpu.rdmsr(index) else { throw .unresolvedVc("RDMSR 0x\(String(index, radix: 16)) is not emulated") }
        return value
    }
}

/// The CPU state of one runtime-service call: the vCPU the efi_rts_wq worker runs on
/// (held for the whole call, as preemption is off while efi_mm is borrowed), efi_mm's page
/// tables, and the interrupt flag, which the firmware clears around its SVSM call.
public final class EfiRuntimeContext: @unchecked Sendable {
    public let vcpu: Vcpu
    public let pageTables: EfiPageTables
    public let memory: GuestMemory
    public let vcHandler: LinuxVcHandler
    /// RFLAGS.IF of the worker: on when the call starts (`efi_call_virt_check_flags`
    /// expects it unchanged at the end).
    public private(set) var interruptsEnabled = true

    public init(vcpu: Vcpu, pageTables: EfiPageTables, memory: GuestMemory, vcHandler: LinuxVcHandler) {
        self.vcpu = vcpu; self.pageTables = pageTables; self.memory = memory; self.vcHandler = vcHandler
    }

    public func disableInterrupts() { interruptsEnabled = false }
    public func enableInterrupts() { interruptsEnabled = true }

    /// The physical address behind a store of `count` bytes at `va`, or the #PF it raises.
    public func physicalForWrite(_ va: VirtualAddress, count: Int) throws(EfiRuntimeFault) -> GuestPhysicalAddress {
        guard case .mapped(let gpa, _) = pageTables.translate(va, count: UInt64(count), write: true) else {
            throw .pageFault(address: va, write: true, interruptsEnabled: interruptsEnabled)
        }
        return gpa
    }

    public func physicalForRead(_ va: VirtualAddress, count: Int) throws(EfiRuntimeFault) -> GuestPhysicalAddress {
        guard case .mapped(let gpa, _) = pageTables.translate(va, count: UInt64(count), write: false) else {
            throw .pageFault(address: va, write: false, interruptsEnabled: interruptsEnabled)
        }
        return gpa
    }

    // efi_mm's mappings cover guest RAM only, so the memory accesses below do not fail
    // once the translation succeeded; were one to, it is reported as the fault it would be.
    public func store(_ va: VirtualAddress, _ bytes: [UInt8]) throws(EfiRuntimeFault) {
        let gpa = try physicalForWrite(va, count: bytes.count)
        do { try memory.write(gpa, bytes) } catch { throw .pageFault(address: va, write: true, interruptsEnabled: interruptsEnabled) }
    }

    public func load(_ va: VirtualAddress, count: Int) throws(EfiRuntimeFault) -> [UInt8] {
        let gpa = try physicalForRead(va, count: count)
        do { return try memory.read(gpa, count: count) } catch { throw .pageFault(address: va, write: false, interruptsEnabled: interruptsEnabled) }
    }
}
