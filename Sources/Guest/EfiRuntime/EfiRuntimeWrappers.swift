import EfiTypes
import Hardware
import MmWire

/// `efi_rts_work.efi_rts_id` for the variable services.
public enum EfiRuntimeService: String, Sendable {
    case getVariable = "GetVariable"
    case getNextVariableName = "GetNextVariableName"
    case setVariable = "SetVariable"
    case queryVariableInfo = "QueryVariableInfo"
}

/// One call through the wrappers, as the kernel saw it.
public struct EfiRuntimeCallRecord: Sendable, Equatable {
    public let service: EfiRuntimeService
    /// The vCPU the efi_rts_wq worker ran the firmware on; nil when the call was not queued.
    public let workerVcpu: UInt32?
    /// The page fault `efi_crash_gracefully_on_page_fault` took over, if any.
    public let fault: EfiRuntimeFault?
    /// EFI_ABORTED after a fault, EFI_DEVICE_ERROR when runtime services were already off;
    /// nil when the firmware's own result came back.
    public let wrapperStatus: EfiStatus?
}

/// What is held while the firmware runs a call: the snapshot the scenario takes at each
/// SVSM call.
public struct EfiRuntimeExecution: Sendable, Equatable {
    /// `efi_runtime_lock`, taken by the calling task (`down_interruptible`).
    public let efiRuntimeLockHeld: Bool
    public let workerVcpu: UInt32
    /// The worker's interrupt flag at that moment.
    public let interruptsEnabled: Bool
}

/// Linux's runtime-service wrappers for the variable services (torvalds/linux
/// drivers/firmware/efi/runtime-wrappers.c `virt_efi_get_variable` … `__efi_queue_work`,
/// `efi_call_rts`) with the x86 page-fault recovery (arch/x86/platform/efi/quirks.c
/// `efi_crash_gracefully_on_page_fault`):
///
/// - every call takes `efi_runtime_lock` and is queued to the ordered `efi_rts_wq`, whose
///   worker switches to efi_mm (`arch_efi_call_virt_setup`) with preemption disabled;
/// - with EFI_RUNTIME_SERVICES cleared the call is not queued and answers EFI_DEVICE_ERROR
///   ("EFI Runtime Services are disabled!" once; e006ac300308);
/// - a page fault in the firmware ends the call with EFI_ABORTED, clears
///   EFI_RUNTIME_SERVICES and parks the worker for good.
public final class EfiRuntimeWrappers: Sendable {
    public struct State: Sendable {
        /// `efi_enabled(EFI_RUNTIME_SERVICES)`.
        public var runtimeServicesEnabled = true
        /// The efi_rts_wq worker sleeps in its `for (;;) schedule()` loop.
        public var workerFrozen = false
        public var kernelLog: [String] = []
        public var calls: [EfiRuntimeCallRecord] = []
        var warnedDisabled = false
        var efiRuntimeLockHeld = false
        var running: EfiRuntimeContext?
    }

    public let kernel: LinuxKernelRelease
    public let vcpus: VcpuSet
    public let pageTables: EfiPageTables
    public let memory: GuestMemory
    public let firmware: Edk2RuntimeVariableServices
    let state = Locked(State())
    /// `efi_runtime_lock`: a binary semaphore, so one call at a time.
    let runtimeLock = Lock()

    public init(kernel: LinuxKernelRelease, vcpus: VcpuSet, pageTables: EfiPageTables, memory: GuestMemory,
                firmware: Edk2RuntimeVariableServices) {
        self.kernel = kernel; self.vcpus = vcpus; self.pageTables = pageTables; self.memory = memory; self.firmware = firmware
    }

    public var snapshot: State { state.withLock { $0 } }

    /// Who holds what while the firmware runs, or nil between calls.
    public var execution: EfiRuntimeExecution? {
        state.withLock { s in
            s.running.map { EfiRuntimeExecution(efiRuntimeLockHeld: s.efiRuntimeLockHeld, workerVcpu: $0.vcpu.apicId,
                                                interruptsEnabled: $0.interruptsEnabled) }
        }
    }

    // MARK: efi.get_variable & co.

    public func getVariable(_ key: VariableKey, dataSize: Int) throws(EfiRuntimeFault) -> GetVariableResult {
        try run(.getVariable, failed: GetVariableResult.error) { (c) throws(EfiRuntimeFault) in
            try firmware.getVariable(key, dataSize: dataSize, in: c)
        }
    }

    public func getNextVariableName(after key: VariableKey, nameBufferSize: Int) throws(EfiRuntimeFault) -> GetNextVariableNameResult {
        try run(.getNextVariableName, failed: GetNextVariableNameResult.error) { (c) throws(EfiRuntimeFault) in
            try firmware.getNextVariableName(after: key, nameBufferSize: nameBufferSize, in: c)
        }
    }

    public func setVariable(_ key: VariableKey, attributes: UInt32, data: [UInt8]) throws(EfiRuntimeFault) -> EfiStatus {
        try run(.setVariable, failed: { $0 }) { (c) throws(EfiRuntimeFault) in
            try firmware.setVariable(key, attributes: attributes, data: data, in: c)
        }
    }

    public func queryVariableInfo(attributes: UInt32) throws(EfiRuntimeFault) -> Result<VariableStorageInfo, EfiStatusError> {
        try run(.queryVariableInfo, failed: { .failure(EfiStatusError($0)) }) { (c) throws(EfiRuntimeFault) in
            try firmware.queryVariableInfo(attributes: attributes, in: c)
        }
    }

    // MARK: __efi_queue_work and efi_call_rts

    /// One blocking call: `down_interruptible(&efi_runtime_lock)`, `__efi_queue_work`, the
    /// worker's `efi_call_rts`, `up(&efi_runtime_lock)`. Faults other than a page fault
    /// (the guest terminated, a #VC the kernel cannot resolve) end the model's run: thrown.
    func run<R>(_ service: EfiRuntimeService, failed: (EfiStatus) -> R,
                _ body: (EfiRuntimeContext) throws(EfiRuntimeFault) -> R) throws(EfiRuntimeFault) -> R {
        try runtimeLock.withLock { () throws(EfiRuntimeFault) -> R in
            state.withLock { $0.efiRuntimeLockHeld = true }
            defer { state.withLock { $0.efiRuntimeLockHeld = false } }
            let enabled = state.withLock { s -> Bool in
                if !s.runtimeServicesEnabled && !s.warnedDisabled {
                    s.warnedDisabled = true
                    s.kernelLog.append("efi: EFI Runtime Services are disabled!")
                }
                return s.runtimeServicesEnabled
            }
            guard enabled else {
                record(EfiRuntimeCallRecord(service: service, workerVcpu: nil, fault: nil, wrapperStatus: .deviceError))
                return failed(.deviceError)
            }
            // The worker holds one vCPU from efi_enter_mm to efi_leave_mm: preemption is
            // off while efi_mm is borrowed (efi_64.c `efi_enter_mm`).
            return try vcpus.withVcpu { (vcpu: Vcpu) throws(EfiRuntimeFault) -> R in
                let context = EfiRuntimeContext(vcpu: vcpu, pageTables: pageTables, memory: memory,
                                                vcHandler: LinuxVcHandler(kernel: kernel))
                state.withLock { $0.running = context }
                defer { state.withLock { $0.running = nil } }
                do throws(EfiRuntimeFault) {
                    let result = try body(context)
                    record(EfiRuntimeCallRecord(service: service, workerVcpu: vcpu.apicId, fault: nil, wrapperStatus: nil))
                    return result
                } catch {
                    guard case .pageFault(let address, _, _) = error, crashGracefully(at: address) else { throw error }
                    record(EfiRuntimeCallRecord(service: service, workerVcpu: vcpu.apicId, fault: error, wrapperStatus: .aborted))
                    return failed(.aborted)
                }
            }
        }
    }

    /// `efi_crash_gracefully_on_page_fault` for a fault inside the efi_rts_wq work item (the
    /// only place the model runs firmware): true when it takes the fault over.
    func crashGracefully(at address: VirtualAddress) -> Bool {
        // A fault on page 0 stays an ordinary oops.
        guard address.rawValue >= LinuxVirtualLayout.nullPageEnd else { return false }
        state.withLock { s in
            s.kernelLog.append("[Firmware Bug]: Page fault caused by firmware at PA: \(address) (WARN in efi_crash_gracefully_on_page_fault)")
            // arch_efi_call_virt_teardown, status = EFI_ABORTED, complete(), then:
            s.runtimeServicesEnabled = false
            s.kernelLog.append("efi: Froze efi_rts_wq and disabled EFI Runtime Services")
            s.workerFrozen = true
            // __efi_queue_work: WARN_ON_ONCE(efi_rts_work.status == EFI_ABORTED).
            s.kernelLog.append("WARNING in __efi_queue_work: efi_rts_work.status == EFI_ABORTED")
        }
        return true
    }

    func record(_ r: EfiRuntimeCallRecord) { state.withLock { $0.calls.append(r) } }
}
