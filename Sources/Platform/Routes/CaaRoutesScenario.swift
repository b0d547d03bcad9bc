import EfiTypes
import Efivarfs
import Guest
import SvsmAbi

/// The three routes from a Linux guest to the SVSM's variable store, side by side:
/// (a1) an MMIO trap into the SVSM, (a2) OVMF's runtime services through the CAA address
/// MSR_SVSM_CAA returns — run twice, on a kernel whose efi_mm does not map the CAAs and on
/// current mainline, which does — and (b) the project's driver. Each observation is checked
/// against what the cited sources say it must be.
public struct CaaRoutesScenario: Sendable {
    public let vcpuCount: Int
    /// The store behind protocol 4.
    public let profile: SvsmProfile
    public init(vcpuCount: Int, profile: SvsmProfile = .edk2) { self.vcpuCount = vcpuCount; self.profile = profile }

    /// An expectation derived from a source, and what the run showed.
    public struct Check: Sendable {
        public let claim: String
        public let source: String
        public let observed: String
        public let ok: Bool
    }

    /// One line of the comparison table.
    public struct Row: Sendable {
        public let route: String
        public let worksWithMainline: String
        public let kernelChange: String
        public let callsPerRead: String
        public let callsPerWrite: String
        public let locks: String
        public let migration: String
    }

    public struct Report: Sendable {
        public let withoutMapping: RuntimeServicesRoute.Run
        public let mainline: RuntimeServicesRoute.Run
        public let driver: DriverRoute.Run
        public let mmio: MmioTrapRoute.Run
        public let checks: [Check]
        public let table: [Row]
        public var ok: Bool { checks.allSatisfy(\.ok) }
    }

    public func run() throws -> Report {
        let old = try RuntimeServicesRoute(kernel: .v6_16Stable, vcpuCount: vcpuCount, profile: profile).run()
        let new = try RuntimeServicesRoute(kernel: .mainline, vcpuCount: vcpuCount, profile: profile).run()
        let driver = try DriverRoute(vcpuCount: vcpuCount, profile: profile).run()
        let mmio = try MmioTrapRoute(vcpuCount: vcpuCount, profile: profile).run()
        let checks = RouteChecks.withoutMapping(old) + RouteChecks.mainline(new) + RouteChecks.driver(driver, vcpuCount: vcpuCount)
            + RouteChecks.mmio(mmio)
        return Report(withoutMapping: old, mainline: new, driver: driver, mmio: mmio, checks: checks,
                      table: RouteTable.rows(old: old, new: new, driver: driver))
    }
}
