import EfiTypes
import Guest
import MmWire
import Svsm
import SvsmAbi

/// The UEFI MM service's manifest as a guest obtains it: SVSM_ATTEST_SINGLE_SERVICE for the
/// UEFI MM GUID through a vCPU's own CAA (what Linux's configfs-tsm report with
/// `service_provider=svsm` and that `service_guid` does), with the report's REPORT_DATA
/// checked against SHA-512(nonce ‖ manifest).
public struct UefiMmAttestation: Sendable {
    public let manifestBytes: [UInt8]
    public let manifest: UefiMmManifest?
    /// REPORT_DATA equals SHA-512(nonce ‖ manifest).
    public let reportBindsManifest: Bool
    /// The same manifest is listed in SVSM_ATTEST_SERVICES' services manifest.
    public let listedInServices: Bool
}

extension Machine {
    /// Asks the SVSM for the UEFI MM manifest, both ways COCONUT serves it.
    public func attestUefiMm(nonce: [UInt8] = (0..<64).map { UInt8($0) }) throws(SvsmAttestationError) -> UefiMmAttestation {
        let call = SvsmAttestationCall(transport: transport, allocator: allocator)
        let (single, services) = try vcpus.withVcpu { (v: Vcpu) throws(SvsmAttestationError) in
            (try call.attest(service: SvsmAttestation.uefiMmServiceGuid, nonce: nonce, on: v), try call.attest(service: nil, nonce: nonce, on: v))
        }
        let binds = SnpAttestationReport.reportData(single.report) == Svsm.sha512(nonce + single.manifest)
            && SnpAttestationReport.reportData(services.report) == Svsm.sha512(nonce + services.manifest)
        let listed = SvsmAttestation.parseServicesManifest(services.manifest)?
            .contains { $0.guid == SvsmAttestation.uefiMmServiceGuid && $0.data == single.manifest } ?? false
        return UefiMmAttestation(manifestBytes: single.manifest, manifest: UefiMmManifest(bytes: single.manifest),
                                 reportBindsManifest: binds, listedInServices: listed)
    }
}
