import ArgumentParser
import Driver
import EfiTypes
import Efivarfs
import Foundation
import Guest
import MmWire
import Platform
import Trace
import VariableService

struct ScenarioCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scenario",
        abstract: "Replay a driver-design scenario step by step.",
        subcommands: [CaaRelocation.self, CaaAllocationCommand.self, CaaRoutes.self]
    )

    struct CaaRelocation: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "caa-relocation",
            abstract: "Why UEFI runtime services lose the SVSM once Linux remaps its CAAs, and what works instead.",
            discussion: """
                Boots the modelled guest, then shows: a runtime GetVariable through the
                firmware's CAA (not executed), the same call after RDMSR 0xC001F000
                discovery (works on the SVSM side; whether it survives efi_mm is
                `scenario caa-routes`), a call through another vCPU's CAA (not executed), and
                the driver's call through each vCPU's own CAA (works). Exits 0 only if
                every step behaves as expected.

                Example:
                  efivarfs-bridge scenario caa-relocation --vcpus 8
                """
        )

        @Option(name: .long, help: "Number of vCPUs, 1 to 512.")
        var vcpus: Int = 4

        @Option(name: .long, help: ArgumentHelp("The store behind protocol 4: edk2, coconut or qemu.", valueName: "profile"))
        var svsm: SvsmProfile = .edk2

        func validate() throws {
            guard (1...512).contains(vcpus) else { throw ValidationError("--vcpus must be between 1 and 512") }
        }

        func run() throws {
            let (boot, steps) = try CaaRelocationScenario(vcpuCount: vcpus, profile: svsm).run()
            print("SVSM profile: \(svsm.rawValue) (\(svsm.summary))\n")
            print("Boot")
            for line in boot { print("  \(line)") }
            for (i, s) in steps.enumerated() {
                print("\nStep \(i + 1): \(s.title)")
                for line in s.lines { print("  \(line)") }
                print("  expected: \(s.expected) — \(s.ok ? "as expected" : "NOT AS EXPECTED")")
            }
            let failures = steps.filter { !$0.ok }.count
            print("\n\(steps.count - failures) of \(steps.count) steps behaved as expected")
            if failures > 0 { throw ExitCode(1) }
        }
    }

    struct CaaRoutes: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "caa-routes",
            abstract: "The three routes to the SVSM's variable store side by side: MMIO trap, OVMF runtime services, the driver.",
            discussion: """
                Runs route a2 (OVMF's runtime services reaching the SVSM through the CAA
                address MSR_SVSM_CAA returns, inside efi_mm) on Linux 6.16.y, whose efi_mm
                does not map the CAAs, and on mainline, which does; runs the driver (route
                b) on every vCPU; walks the MMIO-trap idea (route a1) as far as the sources
                go. Prints efi_mm, every call, a comparison table and checks against the
                cited sources. Exits 0 only if every check holds. Sources: docs/caa-routes.md.

                Example:
                  efivarfs-bridge scenario caa-routes --vcpus 4
                """
        )

        @Option(name: .long, help: "Number of vCPUs, 2 to 512 (two are needed to show a migration).")
        var vcpus: Int = 4

        @Option(name: .long, help: ArgumentHelp("The store behind protocol 4: edk2, coconut or qemu.", valueName: "profile"))
        var svsm: SvsmProfile = .edk2

        func validate() throws {
            guard (2...512).contains(vcpus) else { throw ValidationError("--vcpus must be between 2 and 512") }
        }

        func run() throws {
            let report = try CaaRoutesScenario(vcpuCount: vcpus, profile: svsm).run()
            print("SVSM profile: \(svsm.rawValue) (\(svsm.summary))\n")
            for line in CaaRoutesText.lines(report, vcpuCount: vcpus) { print(line) }
            if !report.ok { throw ExitCode(1) }
        }
    }
}
