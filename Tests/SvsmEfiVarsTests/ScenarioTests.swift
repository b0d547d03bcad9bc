import Testing
@testable import Driver
@testable import EfiTypes
@testable import Efivarfs
@testable import Guest
@testable import Hardware
@testable import Host
@testable import MmWire
@testable import Platform
@testable import Svsm
@testable import SvsmAbi
@testable import Trace
@testable import VariableService

@Suite("SVSM platform: boot story and CAA relocation")
struct ScenarioTests {
    @Test("the caa-relocation scenario: the observed call_pending, RAX, EFI status and served CAA of each call", arguments: [1, 2, 8])
    func caaRelocation(_ vcpus: Int) throws {
        let (boot, steps) = try CaaRelocationScenario(vcpuCount: vcpus).run()
        #expect(boot.contains { $0.contains("REMAP_CA") })
        #expect(steps.count == (vcpus > 1 ? 5 : 4))
        let firmwareCaa = Machine.firmwareCaa
        // Through the firmware's CAA: the SVSM reads another CAA, call_pending is still 1 on
        // resume, no RAX, no status.
        let viaFirmware = try #require(steps[1].observations.first)
        #expect(viaFirmware.caaUsed == firmwareCaa)
        #expect(viaFirmware.caaServed != firmwareCaa && viaFirmware.caaServed != nil)
        #expect(viaFirmware.callPendingAtResume == 1)
        #expect(viaFirmware.error == .notExecuted && viaFirmware.rax == nil && viaFirmware.efiStatus == nil)
        // Through the CAA MSR_SVSM_CAA names: the one the SVSM serves; RAX 0, EFI_SUCCESS.
        let viaMsr = try #require(steps[2].observations.first)
        #expect(viaMsr.caaUsed == viaMsr.caaServed && viaMsr.caaUsed != firmwareCaa)
        #expect(viaMsr.callPendingAtResume == 0 && viaMsr.rax == 0 && viaMsr.efiStatus == .success)
        if vcpus > 1 {
            // Through vCPU 1's CAA on vCPU 0: not executed.
            let migrated = try #require(steps[3].observations.first)
            #expect(migrated.vcpu == 0 && migrated.caaUsed != migrated.caaServed)
            #expect(migrated.callPendingAtResume == 1 && migrated.error == .notExecuted)
        }
        // Each vCPU through its own CAA: served, RAX 0, EFI_SUCCESS, on every vCPU.
        let own = steps[steps.count - 1].observations
        #expect(own.map(\.vcpu) == (0..<UInt32(vcpus)).map { $0 })
        for o in own {
            #expect(o.caaUsed == o.caaServed && o.callPendingAtResume == 0 && o.rax == 0 && o.efiStatus == .success, "\(o)")
        }
        #expect(Set(own.map(\.caaUsed)).count == vcpus)
    }

    @Test("boot: firmware reserves a VMSA + CAA pair per AP, never 2 MiB aligned; the OS binds its own CAAs")
    func bootLayout() throws {
        var c = Machine.Configuration(); c.vcpuCount = 6
        let m = try Machine(c)
        // Firmware's pages: two reserved pages per AP plus the 64 KiB MM buffer.
        let reserved = m.allocator.reservedRegions
        #expect(reserved.filter { $0.length == 8192 }.count == 5)
        for r in reserved where r.length == 8192 { #expect(r.start.rawValue % (2 << 20) != 0) }
        for v in m.vcpus.vcpus {
            let b = try #require(m.svsm.binding(apicId: v.apicId))
            #expect(b.caa == v.svsmCaa && b.vmsa == v.vmsa)
            #expect(v.vmsa.rawValue % (2 << 20) != 0)
            #expect(!reserved.contains { $0.contains(GuestRegion(start: v.svsmCaa, length: 4096)) })  // not a firmware page
            #expect(v.rdmsr(SvsmCaaMsr.index) == v.svsmCaa.rawValue)
        }
        #expect(try SecretsPage.read(from: Machine.secretsPage, in: m.memory).caa == Machine.firmwareCaa)
    }

    @Test("the secrets page carries the SVSM fields at 0x140-0x15C")
    func secretsPage() throws {
        let m = try Machine()
        let raw = try m.memory.read(Machine.secretsPage.advanced(by: 0x140), count: 0x20)
        #expect(raw.loadLE(UInt64.self, at: 0) == m.memory.svsmRegion.start.rawValue)
        #expect(raw.loadLE(UInt64.self, at: 8) == m.memory.svsmRegion.length)
        #expect(raw.loadLE(UInt64.self, at: 0x10) == 0xA000)
        #expect(raw.loadLE(UInt32.self, at: 0x18) == 1)
        #expect(raw[0x1C] == 2)
    }

    @Test("--vcpus outside 1...512 is refused")
    func vcpuBounds() {
        var c = Machine.Configuration(); c.vcpuCount = 513
        #expect(throws: Machine.BootError.self) { try Machine(c) }
    }

    @Test("fault reactions at the driver: drop-exit and exhausted BUSY/INCOMPLETE are SVSM call failures (Linux: EFI_DEVICE_ERROR); retried BUSY succeeds")
    func faultReactions() throws {
        func machine(_ spec: String, retries: Int = 16) throws -> Machine {
            var c = Machine.Configuration()
            try c.faults.add(spec)
            c.maxRetries = retries
            return try Machine(c)
        }
        let key = VariableKey("Timeout", .globalVariable)
        let expected: [(String, SvsmCallError)] = [("drop-exit=1", .notExecuted), ("busy=1", .retriesExhausted(.busy, attempts: 4)),
                                                   ("incomplete=1", .retriesExhausted(.incomplete, attempts: 4))]
        for (spec, failure) in expected {
            let m = try machine(spec, retries: 3)
            #expect(throws: failure, "\(spec)") { try m.driver.onCpu { (cpu) throws(SvsmCallError) in try cpu.getVariable(key, capacity: 2) } }
        }
        for spec in ["busy=0.5", "incomplete=0.5", "spurious-entry=1"] {
            let m = try machine(spec, retries: 64)
            for _ in 0..<50 {
                #expect(try m.driver.onCpu { (cpu) throws(SvsmCallError) in try cpu.getVariable(key, capacity: 2) } == .found(attributes: .nvBsRt, data: [0, 0]), "\(spec)")
            }
        }
    }

    @Test("requests are spread over every vCPU")
    func spread() throws {
        let stats = CallStatistics()
        var c = Machine.Configuration(); c.vcpuCount = 16; c.observer = stats
        let m = try Machine(c)
        for _ in 0..<32 { _ = try m.driver.onCpu { (cpu) throws(SvsmCallError) in try cpu.getVariable(VariableKey("Timeout", .globalVariable), capacity: 2) } }
        #expect(stats.snapshot.vcpusUsed == Set(0..<16))
        #expect(stats.snapshot.failedCalls == 0)
    }
}
