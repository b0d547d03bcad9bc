import Guest
import SvsmAbi

/// The scenario as text: each run, the address space it runs in, every call, the table,
/// and the checks with their sources.
public enum CaaRoutesText {
    public static func lines(_ r: CaaRoutesScenario.Report, vcpuCount: Int) -> [String] {
        var out: [String] = []
        out.append("Three routes from a Linux guest to the SVSM's UEFI variable store (protocol 4), \(vcpuCount) vCPUs.")
        out.append("Route a2 twice: without the CAA mapping in efi_mm (6.16.y) and as mainline is today (≥ v6.18, which has it since v6.17).")
        out.append("")
        out += runtimeRun(r.withoutMapping, title: "Route a2 on \(r.withoutMapping.kernel.name)")
        out.append("")
        out += runtimeRun(r.mainline, title: "Route a2 on \(r.mainline.kernel.name) — Linux as it is today")
        out.append("")
        out += driverRun(r.driver)
        out.append("")
        out += mmio(r.mmio)
        out.append("")
        out += table(r.table)
        out.append("")
        out.append("Checks (expected from the cited sources, observed in the runs above)")
        for c in r.checks {
            out.append("  \(c.ok ? "as expected    " : "NOT AS EXPECTED") \(c.claim)")
            out.append("      observed: \(c.observed)   [\(c.source)]")
        }
        out.append("")
        out.append("\(r.checks.filter(\.ok).count) of \(r.checks.count) checks as expected")
        return out
    }

    static func runtimeRun(_ run: RuntimeServicesRoute.Run, title: String) -> [String] {
        var out = [title]
        for n in run.modelNotes { out.append("  model: \(n)") }
        out.append("  efi_mm, the runtime services' address space (efi_64.c efi_setup_page_tables, efi_map_region, efi_sync_low_kernel_mappings):")
        for m in run.pageTables.mappings {
            out.append("    \(m.virtualStart) → \(m.physicalStart), \(m.pages) page\(m.pages == 1 ? "" : "s"), \(flags(m.flags)): \(m.origin)")
        }
        for n in EfiPageTables.notPlaced { out.append("    (also mapped, not placed in the model: \(n))") }
        out.append("  per-CPU CAAs (per_cpu(svsm_caa_pa)) and the firmware's store through VA == PA:")
        for v in run.callingAreas {
            let home = v.area.home == .kernelImage ? "boot_svsm_ca_page in the kernel image" : "memblock page, kernel VA \(v.area.kernelVirtual.map { "\($0)" } ?? "-")"
            out.append("    CPU \(v.area.apicId): \(v.area.physical) (\(home)); SVSM serves \(v.servedBySvsm.map { "\($0)" } ?? "none"); store → \(translation(v.firmwareStore))")
        }
        out.append("  efivarfs on this kernel (firmware: VariableSmmRuntimeDxe → VirtMmCommunicationDxe → AmdSvsmUefiMmRequest, buffer \(run.communicateBuffer.virtual) = PA \(run.communicateBuffer.physical)):")
        for op in run.operations {
            out.append("    \(op.name): \(op.result)")
            for c in op.runtimeCalls {
                if let f = c.fault {
                    out.append("      \(c.service.rawValue) on worker vCPU \(c.workerVcpu.map(String.init) ?? "-"): RDMSR 0xC001F000 answered; \(f) → \(c.wrapperStatus?.name ?? "")")
                } else if c.workerVcpu == nil {
                    out.append("      \(c.service.rawValue): not queued (EFI_RUNTIME_SERVICES clear) → \(c.wrapperStatus?.name ?? "")")
                }
            }
            out += calls(op.svsmCalls, efiMm: true)
            if op.runtimeCalls.contains(where: { $0.workerVcpu != nil }) || !op.svsmCalls.isEmpty {
                out.append("      SVSM calls: \(op.svsmCalls.count)")
            }
            for l in op.kernelLog { out.append("      kernel: \(l)") }
        }
        out.append("  after the run: EFI_RUNTIME_SERVICES \(run.runtimeServicesEnabled ? "set" : "clear"), efi_rts_wq worker \(run.workerFrozen ? "parked in its schedule() loop" : "running")")
        if !run.runtimeServicesEnabled {
            out.append("  efivarfs then: the mounted directory keeps its names and sizes; every read and write fails with EIO; a new mount is empty")
            out.append("  open: the fault comes with interrupts off (SvsmMsrProtocol disabled them) inside an FPU section entered with them on; local_irq_restore(regs->flags) in efi_crash_gracefully_on_page_fault (2c340aab5485) keeps them off; what the parked worker's CPU does next is not stated by any source")
            out.append("  open: plain v6.16 without 8fbf23010d27 — the #VC for the firmware's RDMSR goes through the kernel decoder; no source says what it then does")
        }
        if let m = run.migration { out += migration(m) }
        return out
    }

    static func driverRun(_ run: DriverRoute.Run) -> [String] {
        var out = ["Route b: the project's driver (SvsmVariableDriver under Efivarfs), each request on one held vCPU"]
        for op in run.reads + [run.write, run.readBack] {
            out.append("    \(op.name): \(op.result)")
            out += calls(op.svsmCalls, efiMm: false)
        }
        out.append("  vCPUs served: \(run.vcpusServed.sorted().map(String.init).joined(separator: ", "))")
        if let m = run.migration { out += migration(m) }
        return out
    }

    static func mmio(_ run: MmioTrapRoute.Run) -> [String] {
        var out = ["Route a1: an MMIO trap into the SVSM, step by step"]
        for s in run.steps {
            out.append("  \(s.standing == .open ? "open    " : "sourced ") \(s.question)")
            out.append("           \(s.answer) [\(s.source)]")
        }
        out.append("  model: VMGEXIT on vCPU 0 with RAX = protocol 4 call 1 and call_pending 0: RAX 0x\(String(run.raxBefore, radix: 16)) → 0x\(String(run.raxAfter, radix: 16)) (\(run.exitWithoutCallRanAnything ? "the SVSM ran something" : "the SVSM ran nothing"))")
        return out
    }

    static func table(_ rows: [CaaRoutesScenario.Row]) -> [String] {
        var out = ["Comparison"]
        out.append("| route | works with Linux as it is | kernel change | SVSM calls per efivarfs read | per write | locks across the call | migration between CAA choice and VMGEXIT |")
        out.append("|---|---|---|---|---|---|---|")
        for r in rows {
            out.append("| \(r.route) | \(r.worksWithMainline) | \(r.kernelChange) | \(r.callsPerRead) | \(r.callsPerWrite) | \(r.locks) | \(r.migration) |")
        }
        return out
    }

    static func migration(_ m: MigrationObservation) -> [String] {
        var out = ["  migration between choosing the CAA (vCPU \(m.caaChosenOn)) and VMGEXIT (vCPU \(m.vmgexitOn)), forced:"]
        if let c = m.call { out.append("    " + svsmCall(c, efiMm: false)) }
        out.append("    → \(m.consequence)")
        out.append("    on this route it cannot happen: \(m.whyNotOnThisRoute)")
        return out
    }

    /// The calls of one operation; a long run (a mount's listing) shows its first two and
    /// its last.
    static func calls(_ calls: [ObservedSvsmCall], efiMm: Bool) -> [String] {
        let shown = calls.count > 4 ? Array(calls.prefix(2)) : calls
        var out = shown.map { "      " + svsmCall($0, efiMm: efiMm) }
        if calls.count > 4, let last = calls.last {
            out.append("      … \(calls.count - 3) more of the same kind")
            out.append("      " + svsmCall(last, efiMm: efiMm))
        }
        return out
    }

    static func svsmCall(_ c: ObservedSvsmCall, efiMm: Bool) -> String {
        let store = efiMm ? "RDMSR 0xC001F000 → #VC → svsm_caa_pa; mov byte [that address], 1 through efi_mm; " : ""
        let status = c.executed ? (c.efiStatus?.name ?? "SVSM_SUCCESS") : "not executed"
        return "vCPU \(c.apicId): \(store)CAA used \(c.caaUsed), SVSM reads \(c.caaServed.map { "\($0)" } ?? "none"): \(c.function) → \(status), call_pending at resume \(c.callPendingAtResume)"
    }

    static func flags(_ f: EfiPageTables.Flags) -> String {
        [f.contains(.writable) ? "RW" : "RO", f.contains(.noExecute) ? "NX" : "X", f.contains(.encrypted) ? "ENC" : "DEC"].joined(separator: " ")
    }

    static func translation(_ t: EfiPageTables.Translation) -> String {
        switch t {
        case .mapped(let gpa, let m): return "PA \(gpa) (\(m.origin))"
        case .notPresent: return "#PF, not mapped"
        case .readOnly(let m): return "#PF, read-only (\(m.origin))"
        }
    }
}
