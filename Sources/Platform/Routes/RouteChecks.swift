import EfiTypes
import Efivarfs
import Guest
import SvsmAbi

/// The scenario's verdicts: for each run, what the sources say must happen, compared with
/// what the run shows. The claims carry their sources; the observations are read from the
/// run, never restated.
enum RouteChecks {
    typealias Check = CaaRoutesScenario.Check

    static func withoutMapping(_ r: RuntimeServicesRoute.Run) -> [Check] {
        var checks: [Check] = []
        let mapped = r.callingAreas.filter { if case .mapped = $0.firmwareStore { return true }; return false }
        checks.append(Check(claim: "efi_mm maps no per-CPU CAA at VA == PA",
                            source: "a7549636f67f (before it, sev_es_efi_map_ghcbs mapped the GHCBs only)",
                            observed: "\(mapped.count) of \(r.callingAreas.count) CAAs mapped", ok: mapped.isEmpty))
        let first = r.operations[0]
        let fault = first.runtimeCalls.first?.fault
        let worker = first.runtimeCalls.first?.workerVcpu
        let workerCaa = r.callingAreas.first { $0.area.apicId == worker }?.area.physical
        var faultAtCaa = false
        var irqAtFault: Bool?
        if case .pageFault(let address, let write, let irq)? = fault, let caa = workerCaa {
            faultAtCaa = write && address == VirtualAddress(sameNumberAs: caa)
            irqAtFault = irq
        }
        checks.append(Check(claim: "the firmware's `mov byte [Caa], 1` faults at the worker CPU's CAA address",
                            source: "VmgExitSvsm.nasm AsmVmgExitSvsm; AmdSvsmLib.c AmdSvsmUefiMmRequest",
                            observed: fault.map { "\($0) on vCPU \(worker.map(String.init) ?? "?")" } ?? "no fault",
                            ok: faultAtCaa))
        let pendingSet = r.callPendingAtEnd.values.filter { $0 != 0 }.count
        checks.append(Check(claim: "no VMGEXIT reaches the SVSM; no CAA has call_pending set",
                            source: "the store faults before rep vmmcall (VmgExitSvsm.nasm)",
                            observed: "\(first.svsmCalls.count) SVSM calls, \(pendingSet) CAAs with call_pending ≠ 0",
                            ok: first.svsmCalls.isEmpty && pendingSet == 0))
        checks.append(Check(claim: "the faulting call returns EFI_ABORTED; the efivarfs read fails with EINTR",
                            source: "quirks.c efi_crash_gracefully_on_page_fault; efi.c efi_status_to_err (EFI_ABORTED → -EINTR)",
                            observed: "\(first.runtimeCalls.first?.wrapperStatus?.name ?? "no status"), read → \(first.result)",
                            ok: first.runtimeCalls.first?.wrapperStatus == .aborted && first.result == .failed(.interrupted)))
        checks.append(Check(claim: "EFI_RUNTIME_SERVICES is cleared and the efi_rts_wq worker parked for good",
                            source: "quirks.c: clear_bit(EFI_RUNTIME_SERVICES), \"Froze efi_rts_wq and disabled EFI Runtime Services\"",
                            observed: "EFI_RUNTIME_SERVICES \(r.runtimeServicesEnabled ? "set" : "clear"), worker \(r.workerFrozen ? "parked" : "running")",
                            ok: !r.runtimeServicesEnabled && r.workerFrozen
                                && first.kernelLog.contains { $0.contains("Froze efi_rts_wq") }))
        let later = Array(r.operations.dropFirst())
        let laterCalls = later.flatMap(\.runtimeCalls)
        let laterOk = later.prefix(2).allSatisfy { $0.result == .failed(.ioError) }
            && laterCalls.allSatisfy { $0.workerVcpu == nil && $0.wrapperStatus == .deviceError }
            && later.allSatisfy { $0.svsmCalls.isEmpty }
        checks.append(Check(claim: "every later call is not queued and answers EFI_DEVICE_ERROR: write and read fail with EIO",
                            source: "runtime-wrappers.c __efi_queue_work (e006ac300308); efi_status_to_err (EFI_DEVICE_ERROR → -EIO)",
                            observed: later.prefix(2).map { "\($0.result)" }.joined(separator: ", ")
                                + "; \(laterCalls.count) calls not queued, \(later.flatMap(\.svsmCalls).count) SVSM calls",
                            ok: laterOk))
        let listing = r.operations.last
        checks.append(Check(claim: "a new efivarfs mount lists no variable",
                            source: "fs/efivarfs/vars.c efivar_init (another status ends the listing with a warning)",
                            observed: listing.map { "\($0.result)" } ?? "-", ok: listing?.result == .listed(0)))
        checks.append(Check(claim: "the fault comes with interrupts off: SvsmMsrProtocol disabled them before the store",
                            source: "AmdSvsmLib.c SvsmMsrProtocol (GetInterruptState/DisableInterrupts)",
                            observed: irqAtFault.map { $0 ? "IF set" : "IF clear" } ?? "-", ok: irqAtFault == false))
        return checks
    }

    static func mainline(_ r: RuntimeServicesRoute.Run) -> [Check] {
        var checks: [Check] = []
        let identity = r.callingAreas.filter { v in
            guard case .mapped(let gpa, let m) = v.firmwareStore else { return false }
            return gpa == v.area.physical && m.flags.isSuperset(of: [.writable, .encrypted, .noExecute])
        }
        checks.append(Check(claim: "efi_mm maps every per-CPU CAA 1:1, RW, NX, encrypted",
                            source: "a7549636f67f sev_es_efi_map_ghcbs_cas (pflags_enc = cc_mkenc(_PAGE_NX | _PAGE_RW))",
                            observed: "\(identity.count) of \(r.callingAreas.count) CAAs", ok: identity.count == r.callingAreas.count))
        let cpu0 = r.callingAreas.first
        checks.append(Check(claim: "CPU 0's per-CPU CAA is boot_svsm_ca_page, and the SVSM serves it",
                            source: "c54604fb7f25 alloc_runtime_data",
                            observed: cpu0.map { "\($0.area.home == .kernelImage ? "kernel image" : "memblock") page \($0.area.physical), SVSM serves \($0.servedBySvsm.map { "\($0)" } ?? "none")" } ?? "-",
                            ok: cpu0?.area.home == .kernelImage && cpu0?.servedBySvsm == cpu0?.area.physical))
        let read = r.operations[0]
        let ownCaa = read.svsmCalls.allSatisfy { $0.executed && $0.caaUsed == $0.caaServed }
        checks.append(Check(claim: "an efivarfs read is two GetVariable calls, one SVSM call each, through the worker's own CAA",
                            source: "fs/efivarfs/file.c efivarfs_file_read; VariableSmmRuntimeDxe.c RuntimeServiceGetVariable",
                            observed: "\(read.result); SVSM calls: \(read.svsmCalls.map(\.function).joined(separator: ", "))",
                            ok: read.result.isRead && read.svsmCalls.count == 2 && ownCaa))
        let write = r.operations[1]
        let functions = write.svsmCalls.map(\.function)
        checks.append(Check(claim: "an efivarfs write of new non-volatile data is QueryVariableInfo, SetVariable, GetVariable",
                            source: "fs/efivarfs/vars.c efivar_entry_set_get_size; quirks.c efi_query_variable_store",
                            observed: "\(write.result); SVSM calls: \(functions.joined(separator: ", "))",
                            ok: write.result == .wrote(4 + RuntimeServicesRoute.probeData.count)
                                && functions == ["QUERY_VARIABLE_INFO", "SET_VARIABLE", "GET_VARIABLE"]))
        let held = r.operations.prefix(2).flatMap(\.svsmCalls).compactMap(\.held)
        let expected = HeldAtCall(efivarsLock: true, efiRuntimeLock: true, vcpuHeld: true, interruptsEnabled: false)
        checks.append(Check(claim: "at each VMGEXIT the caller holds efivars_lock and efi_runtime_lock, the worker its CPU, interrupts off",
                            source: "fs/efivarfs/vars.c efivar_lock; runtime-wrappers.c efi_runtime_lock; efi_64.c efi_enter_mm; AmdSvsmLib.c SvsmMsrProtocol",
                            observed: "\(held.filter { $0 == expected }.count) of \(held.count) calls",
                            ok: !held.isEmpty && held.allSatisfy { $0 == expected }))
        checks.append(Check(claim: "runtime services stay on; a new mount lists the store's variables",
                            source: "fs/efivarfs/vars.c efivar_init",
                            observed: "EFI_RUNTIME_SERVICES \(r.runtimeServicesEnabled ? "set" : "clear"), listing \(r.operations.last.map { "\($0.result)" } ?? "-")",
                            ok: r.runtimeServicesEnabled && { if case .listed(let n)? = r.operations.last?.result { return n > 0 }; return false }()))
        if let mig = r.migration {
            checks.append(notExecuted(mig, claim: "(counterfactual) RDMSR answered on vCPU 1, VMGEXIT on vCPU 0: not executed",
                                      source: "coconut-svsm execloop.rs get_and_clear_caa_request_flag; AmdSvsmLib.c SvsmMsrProtocol (Pending != 0 → SnpTerminate)"))
        }
        return checks
    }

    static func driver(_ r: DriverRoute.Run, vcpuCount: Int) -> [Check] {
        var checks: [Check] = []
        let all = r.reads + [r.write, r.readBack]
        let calls = all.flatMap(\.svsmCalls)
        checks.append(Check(claim: "reads work on every vCPU, each call through that vCPU's own CAA",
                            source: "project: SvsmVariableDriver.onCpu / VcpuSet.withVcpu; coconut-svsm execloop.rs (reads the bound CAA)",
                            observed: "vCPUs served \(r.vcpusServed.count) of \(vcpuCount); \(calls.filter { $0.executed && $0.caaUsed == $0.caaServed }.count) of \(calls.count) calls through the own CAA",
                            ok: r.vcpusServed.count == vcpuCount && calls.allSatisfy { $0.executed && $0.caaUsed == $0.caaServed }
                                && r.reads.allSatisfy(\.result.isRead)))
        checks.append(Check(claim: "a read is two protocol-4 calls (size, then data)",
                            source: "fs/efivarfs/file.c efivarfs_file_read; project Efivarfs.read → readVariable",
                            observed: "per read: \(Set(r.reads.map(\.svsmCalls.count)).sorted().map(String.init).joined(separator: "/"))",
                            ok: r.reads.allSatisfy { $0.svsmCalls.count == 2 }))
        let expectedWrite = ["QUERY_VARIABLE_INFO"] + (r.hasVarCheckProperties ? ["VAR_CHECK_VARIABLE_PROPERTY_GET"] : []) + ["SET_VARIABLE", "GET_VARIABLE"]
        checks.append(Check(claim: "a write is QueryVariableInfo, [property get,] SetVariable, GetVariable; the data reads back",
                            source: "fs/efivarfs/vars.c efivar_entry_set_get_size; tee_stmm_efi.c tee_set_variable (property check)",
                            observed: "\(r.write.result): \(r.write.svsmCalls.map(\.function).joined(separator: ", ")); read back \(r.readBack.result)",
                            ok: r.write.svsmCalls.map(\.function) == expectedWrite
                                && r.readBack.result == .read(Self.attributeBytes + RuntimeServicesRoute.probeData)))
        checks.append(Check(claim: "the calling vCPU is held across every call (the model of interrupts off)",
                            source: "arch/x86/coco/sev/svsm.c svsm_perform_call_protocol (native_local_irq_save)",
                            observed: "\(calls.filter { $0.held?.vcpuHeld == true }.count) of \(calls.count) calls",
                            ok: calls.allSatisfy { $0.held?.vcpuHeld == true }))
        if let mig = r.migration {
            checks.append(notExecuted(mig, claim: "a call on vCPU 0 through vCPU 1's CAA is not executed",
                                      source: "coconut-svsm execloop.rs; svsm.c svsm_perform_ghcb_protocol (pending → -EINVAL)"))
        }
        return checks
    }

    static func mmio(_ r: MmioTrapRoute.Run) -> [Check] {
        [Check(claim: "an exit whose CAA has call_pending = 0 runs nothing in the SVSM",
               source: "coconut-svsm execloop.rs get_svsm_request_message",
               observed: "RAX 0x\(String(r.raxBefore, radix: 16)) → 0x\(String(r.raxAfter, radix: 16))",
               ok: !r.exitWithoutCallRanAnything)]
    }

    static var attributeBytes: [UInt8] {
        var b = [UInt8](zeroed: 4)
        b.storeLE(VariableAttributes.nvBsRt.rawValue, at: 0)
        return b
    }

    /// A call made through another vCPU's CAA (a migration between CAA choice and VMGEXIT):
    /// the SVSM reads the CAA its registry binds, finds nothing pending, and call_pending
    /// stays 1 on resume.
    static func notExecuted(_ mig: MigrationObservation, claim: String, source: String) -> Check {
        Check(claim: claim, source: source,
              observed: mig.call.map { "call_pending at resume \($0.callPendingAtResume), \($0.executed ? "executed" : "not executed")" } ?? "no call",
              ok: mig.call.map { !$0.executed && $0.callPendingAtResume == 1 } ?? false)
    }
}

extension RouteOperation.Result {
    var isRead: Bool { if case .read(let b) = self { return b.count > 4 }; return false }
}
