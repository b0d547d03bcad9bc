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
        subcommands: [CaaRelocation.self, CaaAllocationCommand.self]
    )

    struct CaaRelocation: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "caa-relocation",
            abstract: "Why UEFI runtime services lose the SVSM once Linux remaps its CAAs, and what works instead.",
            discussion: """
                Boots the modelled guest, then shows: a runtime GetVariable through the
                firmware's CAA (not executed), the same call after RDMSR 0xC001F000
                discovery (works), a call through another vCPU's CAA (not executed), and
                the driver's call through each vCPU's own CAA (works). Exits 0 only if
                every step behaves as expected.

                Example:
                  efivarfs-bridge scenario caa-relocation --vcpus 8
                """
        )

        @Option(name: .long, help: "Number of vCPUs, 1 to 512.")
        var vcpus: Int = 4

        func validate() throws {
            guard (1...512).contains(vcpus) else { throw ValidationError("--vcpus must be between 1 and 512") }
        }

        func run() throws {
            let (boot, steps) = try CaaRelocationScenario(vcpuCount: vcpus).run()
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
}
