import Guest

/// The comparison table: what each route needs and costs. Counts come from the runs; the
/// kernel facts are the cited commits'.
enum RouteTable {
    typealias Row = CaaRoutesScenario.Row

    static func rows(old: RuntimeServicesRoute.Run, new: RuntimeServicesRoute.Run, driver: DriverRoute.Run) -> [Row] {
        let newRead = new.operations[0], newWrite = new.operations[1]
        let oldFirst = old.operations[0]
        let driverReads = Set(driver.reads.map(\.svsmCalls.count)).sorted().map(String.init).joined(separator: "/")
        let a2Works = newRead.result.isRead && newWrite.result == .wrote(4 + RuntimeServicesRoute.probeData.count)
        return [
            Row(route: "a1 MMIO trap into the SVSM",
                worksWithMainline: "no: MMIO #VC goes to the hypervisor, a VMPL fault is a #NPF to the hypervisor, the SVSM acts only on VMGEXIT with call_pending",
                kernelChange: "none suffices: host forwarding of #NPF to VMPL0 (open) or ReflectVC in Linux and COCONUT",
                callsPerRead: "open", callsPerWrite: "open", locks: "open", migration: "open"),
            Row(route: "a2 OVMF runtime services via MSR_SVSM_CAA",
                worksWithMainline: a2Works ? "yes (v6.17+); on 6.16.y the first call page-faults: \(oldFirst.result), runtime services off" : "NOT AS EXPECTED",
                kernelChange: "a7549636f67f + 7b22e0432981 (v6.17-rc1, in mainline); firmware: edk2 AmdSvsmUefiMmRequest (138017014bd6)",
                callsPerRead: "\(newRead.svsmCalls.count) (+1 RDMSR #VC each)",
                callsPerWrite: "\(newWrite.svsmCalls.count) for new NV data (+1 RDMSR #VC each)",
                locks: "caller: efivars_lock, efi_runtime_lock (sleeping); worker: preemption off in efi_mm; IRQs off in SvsmMsrProtocol",
                migration: new.migration.map { m in "impossible (preemption off); forced: \(m.call?.executed == false ? "not executed → SnpTerminate, guest ends" : "NOT AS EXPECTED")" } ?? "n/a (1 vCPU)"),
            Row(route: "b project driver (SvsmVariableDriver)",
                worksWithMainline: "not as is: svsm_perform_call_protocol and the per-CPU CAA are private to arch/x86/coco/sev",
                kernelChange: "kernel/patches/0001: exported snp_svsm_uefi_mm_request (CAA chosen with IRQs off) + efivars backend module",
                callsPerRead: driverReads,
                callsPerWrite: "\(driver.write.svsmCalls.count) for new NV data\(driver.hasVarCheckProperties ? " (with the property get)" : "")",
                locks: "efivars_lock from efivarfs; IRQs off inside svsm_perform_call_protocol (model: the vCPU held per request)",
                migration: driver.migration.map { m in "impossible (CAA read after the vCPU is held); forced: \(m.call?.executed == false ? "not executed, call fails, nothing done" : "NOT AS EXPECTED")" } ?? "n/a (1 vCPU)"),
        ]
    }
}
