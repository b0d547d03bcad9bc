import ArgumentParser
import Foundation
import Platform

/// `efivarfs-bridge scenario caa-allocation`.
struct CaaAllocationCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "caa-allocation",
        abstract: "The memory map the OS receives with many vCPUs, and which firmware CAA pages each route needs.",
        discussion: """
            Runs the firmware's page allocators (PEI bump allocator, DXE bins and top-down
            search, FreePages, descriptor merging) for each save-area policy, converts the
            final EFI memory map to e820 as Linux's EFI stub does, and compares it with the
            limits on the way into Linux and the SWIOTLB the kernel needs. Then says which
            firmware CAA pages each route to the SVSM variable store needs after
            ExitBootServices. Exits 0 only if the figures agree with the sources and the
            thread (differences the sources explain are reported, not failures).

            A policy is SCHEME[:PHASES[:KEPT]]: SCHEME reporter or upstream; PHASES pei,
            dxe or pei+dxe (default pei+dxe); KEPT reserved (default), caa-bs-data or
            all-bs-data. Layout and sources: docs/caa-allocation.md.

            Examples:
              efivarfs-bridge scenario caa-allocation --vcpus 120
              efivarfs-bridge scenario caa-allocation --vcpus 512 --all-policies --svg map.svg
              efivarfs-bridge scenario caa-allocation --vcpus 120 --policy reporter:dxe --json
            """
    )

    @Option(name: .long, help: "Number of vCPUs, 1 to 512.")
    var vcpus: Int = 120

    @Option(name: .long, help: ArgumentHelp("Save-area policy, repeatable (default: reporter:pei and upstream:pei+dxe).", valueName: "scheme[:phases[:kept]]"))
    var policy: [String] = []

    @Flag(name: .long, help: "All six policies: reporter and upstream, each in pei, dxe and pei+dxe.")
    var allPolicies = false

    @Option(name: .long, help: "Guest RAM in MiB (q35 split; default 4096).")
    var ramMib: UInt64 = GuestMemoryLayout.defaultRamBytes / ByteCount.mib

    @Option(name: .long, help: ArgumentHelp("Draw the low-memory map around the AP pages, policies side by side.", valueName: "file"))
    var svg: String?

    @Flag(name: .long, help: "Print the whole EFI memory map, not just the region around the AP pages.")
    var fullMap = false

    @Flag(name: .long, help: "Skip the scan over 1 to 512 vCPUs that finds where each hang candidate starts.")
    var noOnsetScan = false

    @Flag(name: .long, help: "Print the report as JSON.")
    var json = false

    func validate() throws {
        guard FirmwareBoot.vcpuRange.contains(vcpus) else { throw ValidationError("--vcpus must be between 1 and 512") }
        for p in policy where SaveAreaPolicy.parse(p) == nil {
            throw ValidationError("--policy \(p): expected SCHEME[:PHASES[:KEPT]], e.g. upstream:pei+dxe or reporter:dxe")
        }
        if allPolicies && !policy.isEmpty { throw ValidationError("--all-policies and --policy exclude each other") }
        do { _ = try GuestMemoryLayout(ramBytes: ramMib * ByteCount.mib) } catch { throw ValidationError("--ram-mib: \(error)") }
    }

    func run() throws {
        let policies = allPolicies ? SaveAreaPolicy.all : policy.compactMap(SaveAreaPolicy.parse)
        let layout = try GuestMemoryLayout(ramBytes: ramMib * ByteCount.mib)
        let scenario = try CaaAllocationScenario(vcpus: vcpus, policies: policies, layout: layout)
        let (report, boots) = try scenario.run(scanOnsets: !noOnsetScan)
        if let svg {
            try CaaAllocationSvg.render(boots).svg.write(toFile: svg, atomically: true, encoding: .utf8)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(CaaAllocationText.render(report, boots: boots, fullMap: fullMap), terminator: "")
            if let svg { print("SVG written to \(svg)") }
        }
        if !report.figuresMatchSources { throw ExitCode(1) }
    }
}
