import Testing
@testable import EfiTypes
@testable import Efivarfs
@testable import Guest
@testable import Hardware
@testable import MmWire
@testable import Platform
@testable import SvsmAbi

/// The EFI runtime route's model (efi_mm, Linux's wrappers, OVMF's runtime path) and the
/// caa-routes scenario, each observation checked against what the sources say.
@Suite("CAA routes: efi_mm, runtime-service faults, the driver")
struct CaaRoutesTests {
    /// A booted machine with route a2 set up on `kernel`: efi_mm built from the machine's
    /// CAAs and OVMF's runtime buffer, the wrappers and efivarfs on top.
    struct RuntimeStack {
        let machine: Machine
        let tables: EfiPageTables
        let wrappers: EfiRuntimeWrappers
        let efivarfs: RuntimeServicesEfivarfs

        init(_ kernel: LinuxKernelRelease, vcpus: Int = 2) throws {
            var c = Machine.Configuration(); c.vcpuCount = vcpus
            machine = try Machine(c)
            let m = machine
            let areas = m.vcpus.vcpus.map { PerCpuCallingArea(apicId: $0.apicId, physical: $0.svsmCaa, home: .memblock) }
            let region = EfiRuntimeRegion(name: "mm", kind: .runtimeServicesData, physicalStart: m.firmwareMmBuffer, pages: 16)
            tables = EfiPageTables.build(for: kernel, runtimeRegions: [region], callingAreas: areas, ramSize: m.memory.ramSize)
            let va = try #require(tables.mappings.first { $0.origin == .runtimeRegionVirtual("mm") }).virtualStart
            wrappers = EfiRuntimeWrappers(kernel: kernel, vcpus: m.vcpus, pageTables: tables, memory: m.memory,
                                          firmware: Edk2RuntimeVariableServices(buffer: Edk2CommunicateBuffer(virtual: va, physical: m.firmwareMmBuffer),
                                                                                transport: m.transport))
            efivarfs = RuntimeServicesEfivarfs(runtime: wrappers)
        }
    }

    @Test("efi_mm: without a7549636f67f no CAA is reachable at VA == PA; with it each is, RW NX encrypted, and nothing else changes")
    func efiMmCallingAreas() {
        let areas = [PerCpuCallingArea(apicId: 0, physical: GuestPhysicalAddress(0x10_3000), home: .kernelImage),
                     PerCpuCallingArea(apicId: 1, physical: GuestPhysicalAddress(0x11_a000), home: .memblock)]
        let region = EfiRuntimeRegion(name: "data", kind: .runtimeServicesData, physicalStart: GuestPhysicalAddress(0x20_0000), pages: 16)
        let old = EfiPageTables.build(for: .v6_16Stable, runtimeRegions: [region], callingAreas: areas, ramSize: 1 << 30)
        let new = EfiPageTables.build(for: .mainline, runtimeRegions: [region], callingAreas: areas, ramSize: 1 << 30)
        for a in areas {
            let va = VirtualAddress(sameNumberAs: a.physical)
            #expect(old.translate(va, write: true) == .notPresent)
            guard case .mapped(let gpa, let m) = new.translate(va.advanced(by: 0x10), write: true) else {
                Issue.record("CPU \(a.apicId)'s CAA not mapped on mainline"); continue
            }
            #expect(gpa == a.physical.advanced(by: 0x10) && m.flags == [.writable, .noExecute, .encrypted] && m.origin == .callingArea(apicId: a.apicId))
        }
        #expect(new.mappings.count - old.mappings.count == areas.count)
        // The kernel's own address of a memblock CAA is its direct-map address, which efi_mm
        // shares: mapped either way, but not where the firmware looks.
        let direct = VirtualAddress(LinuxVirtualLayout.pageOffset + 0x11_a000)
        #expect(areas[1].kernelVirtual == direct)
        #expect(old.translate(direct, write: true) == .mapped(GuestPhysicalAddress(0x11_a000), old.mappings.last!))
    }

    @Test("efi_map_region: runtime regions top-down below EFI_VA_START, keeping the offset in the 2 MiB page; 1:1 as well")
    func efiMapRegion() {
        let aligned = EfiRuntimeRegion(name: "a", kind: .runtimeServicesCode, physicalStart: GuestPhysicalAddress(0x40_0000), pages: 3)
        let offset = EfiRuntimeRegion(name: "b", kind: .runtimeServicesData, physicalStart: GuestPhysicalAddress(0x20_9000), pages: 2)
        let t = EfiPageTables.build(for: .mainline, runtimeRegions: [aligned, offset], callingAreas: [], ramSize: 1 << 30)
        let a = t.mappings.first { $0.origin == .runtimeRegionVirtual("a") }!
        let b = t.mappings.first { $0.origin == .runtimeRegionVirtual("b") }!
        #expect(a.virtualStart.rawValue == 0xffff_fffe_ffe0_0000)      // -4G - 3 pages, rounded down to 2 MiB
        #expect(b.virtualStart.rawValue & 0x1f_ffff == 0x9000 && b.virtualStart < a.virtualStart)
        #expect(!a.flags.contains(.noExecute) && b.flags.contains(.noExecute))
        #expect(t.translate(VirtualAddress(0x20_9000), write: true) == .mapped(GuestPhysicalAddress(0x20_9000), t.mappings.first { $0.origin == .runtimeRegionIdentity("b") }!))
    }

    @Test("6.16.y: the firmware's call_pending store faults at the worker's CAA; EFI_ABORTED → EINTR, runtime services off, then EIO, an empty mount, no SVSM call")
    func pageFaultDisablesRuntimeServices() throws {
        let s = try RuntimeStack(.v6_16Stable)
        let pendingBefore = try s.machine.vcpus.vcpus.map { try s.machine.memory.readU8($0.svsmCaa) }
        #expect(s.efivarfs.read(RuntimeServicesRoute.timeout) == .failed(.interrupted))
        let state = s.wrappers.snapshot
        let call = try #require(state.calls.first)
        let worker = try #require(s.machine.vcpus.vcpus.first { $0.apicId == call.workerVcpu })
        #expect(call.fault == .pageFault(address: VirtualAddress(sameNumberAs: worker.svsmCaa), write: true, interruptsEnabled: false))
        #expect(call.wrapperStatus == .aborted)
        #expect(!state.runtimeServicesEnabled && state.workerFrozen)
        #expect(state.kernelLog.contains { $0.hasPrefix("[Firmware Bug]: Page fault caused by firmware at PA: \(worker.svsmCaa)") })
        #expect(try s.machine.vcpus.vcpus.map { try s.machine.memory.readU8($0.svsmCaa) } == pendingBefore)

        #expect(s.efivarfs.write(RuntimeServicesRoute.probeKey, attributes: VariableAttributes.nvBsRt.rawValue, data: [1]) == .failed(.ioError))
        #expect(s.efivarfs.write(RuntimeServicesRoute.probeKey, attributes: VariableAttributes.bsRt.rawValue, data: [1]) == .failed(.ioError))
        #expect(s.efivarfs.read(RuntimeServicesRoute.timeout) == .failed(.ioError))
        #expect(s.efivarfs.mountListing() == .completed([]))
        let later = s.wrappers.snapshot.calls.dropFirst()
        #expect(later.count == 4 && later.allSatisfy { $0.workerVcpu == nil && $0.wrapperStatus == .deviceError })
        #expect(s.wrappers.snapshot.kernelLog.filter { $0 == "efi: EFI Runtime Services are disabled!" }.count == 1)
    }

    @Test("mainline: the firmware's calls execute through the worker's own CAA; a write lands in the store and reads back")
    func mainlineRoundTrip() throws {
        let s = try RuntimeStack(.mainline, vcpus: 3)
        let data: [UInt8] = [0xde, 0xad, 0xbe, 0xef]
        #expect(s.efivarfs.write(RuntimeServicesRoute.probeKey, attributes: VariableAttributes.nvBsRt.rawValue, data: data) == .completed(8))
        var expected = [UInt8](repeating: 0, count: 4)
        expected.storeLE(VariableAttributes.nvBsRt.rawValue, at: 0)
        #expect(s.efivarfs.read(RuntimeServicesRoute.probeKey) == .completed(expected + data))
        // The same variable through the project's driver: it really is in the SVSM's store.
        let viaDriver = try s.machine.driver.onCpu { (cpu) throws(SvsmCallError) in try cpu.readVariable(RuntimeServicesRoute.probeKey) }
        #expect(viaDriver == .found(attributes: .nvBsRt, data: data))
        let state = s.wrappers.snapshot
        #expect(state.runtimeServicesEnabled && state.calls.allSatisfy { $0.fault == nil && $0.workerVcpu != nil })
        // QueryVariableInfo, SetVariable, GetVariable, then GetVariable twice.
        #expect(state.calls.map(\.service) == [.queryVariableInfo, .setVariable, .getVariable, .getVariable, .getVariable])
        #expect(Set(state.calls.compactMap(\.workerVcpu)).count == 3)   // the worker moved between calls
    }

    @Test("a kernel without the decode fix: the #VC for the firmware's RDMSR is not resolved; the model stops there (open)")
    func withoutDecodeFix() throws {
        let kernel = LinuxKernelRelease(name: "v6.16", decodesEfiRuntimeInstructions: false, mapsCallingAreasInEfiMm: false,
                                        bootCpuCallingArea: .memblockPage)
        let s = try RuntimeStack(kernel)
        guard case .halted(.unresolvedVc) = s.efivarfs.read(RuntimeServicesRoute.timeout) else {
            Issue.record("expected the model to stop at the unresolved #VC"); return
        }
        #expect(s.wrappers.snapshot.runtimeServicesEnabled)
    }

    @Test("efi_crash_gracefully_on_page_fault leaves a fault at or below 0xfff to the ordinary oops path")
    func nullPageFaultNotTakenOver() throws {
        let s = try RuntimeStack(.v6_16Stable)
        #expect(!s.wrappers.crashGracefully(at: VirtualAddress(0xff8)))
        #expect(s.wrappers.snapshot.runtimeServicesEnabled)
        #expect(s.wrappers.crashGracefully(at: VirtualAddress(0x1000)))
        #expect(!s.wrappers.snapshot.runtimeServicesEnabled)
    }

    @Test("the caa-routes scenario: every check holds, on 2 and 5 vCPUs", arguments: [2, 5])
    func scenario(_ vcpus: Int) throws {
        let report = try CaaRoutesScenario(vcpuCount: vcpus).run()
        for c in report.checks { #expect(c.ok, "\(c.claim): \(c.observed)") }
        #expect(report.checks.count == 21)
        // Route a2 on 6.16.y never reached the SVSM; on mainline every call did, through its own CAA.
        #expect(report.withoutMapping.operations.allSatisfy { $0.svsmCalls.isEmpty })
        let mainlineCalls = report.mainline.operations.flatMap(\.svsmCalls)
        #expect(!mainlineCalls.isEmpty && mainlineCalls.allSatisfy { $0.executed && $0.caaUsed == $0.caaServed })
        #expect(report.mainline.migration?.call?.executed == false)
        // Route b: every vCPU, 2 calls per read; a migrated call is not executed.
        #expect(report.driver.vcpusServed == Set(0..<UInt32(vcpus)))
        #expect(report.driver.reads.allSatisfy { $0.svsmCalls.count == 2 })
        #expect(report.driver.migration?.call.map { !$0.executed && $0.callPendingAtResume == 1 } == true)
        #expect(!report.mmio.exitWithoutCallRanAnything)
        #expect(report.table.map(\.route).map { $0.prefix(2) } == ["a1", "a2", "b "])
    }
}
