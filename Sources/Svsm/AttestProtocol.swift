import CCrypto
import EfiTypes
import Hardware
import MmWire
import SvsmAbi

/// Protocol 1, SVSM_ATTEST_PROTOCOL (COCONUT `kernel/src/protocols/attest.rs`), with the
/// UEFI MM service's manifest in it as COCONUT's "uefivars: wire up attestation manifest"
/// adds it: SVSM_ATTEST_SERVICES returns a services manifest listing the UEFI MM service,
/// SVSM_ATTEST_SINGLE_SERVICE returns that service's 8-byte manifest. Either way the
/// report's REPORT_DATA is SHA-512(nonce ‖ manifest).
extension Svsm {
    static let attestVersion: ClosedRange<UInt32> = 1...1

    func attestProtocol(_ call: UInt32, regs: inout SvsmRegisters) throws(SvsmError) {
        switch call {
        case 0: try attestServices(regs: &regs)
        case 1: try attestSingleService(regs: &regs)
        default: throw .unsupportedProtocol  // attest_protocol_request's default
        }
    }

    /// The services this SVSM attests: the UEFI MM service when protocol 4 is built in.
    var attestedServices: [(guid: EfiGuid, data: [UInt8])] {
        configuration.uefiMmEnabled ? [(SvsmAttestation.uefiMmServiceGuid, mmService.uefiMmManifest().bytes)] : []
    }

    private func attestServices(regs: inout SvsmRegisters) throws(SvsmError) {
        let op = try readOp(GuestPhysicalAddress(regs.rcx), size: SvsmAttestation.ServicesOp.size).flatMap(SvsmAttestation.ServicesOp.init(bytes:))
        guard let op else { throw .invalidParameter }
        let manifest = SvsmAttestation.servicesManifest(attestedServices)
        try answer(op, manifest: manifest, regs: &regs)
    }

    private func attestSingleService(regs: inout SvsmRegisters) throws(SvsmError) {
        let op = try readOp(GuestPhysicalAddress(regs.rcx), size: SvsmAttestation.SingleServiceOp.size).flatMap(SvsmAttestation.SingleServiceOp.init(bytes:))
        guard let op, op.manifestVersion == 0 else { throw .invalidParameter }
        guard let service = attestedServices.first(where: { $0.guid == op.service }) else { throw .unsupportedProtocol }
        try answer(op.op, manifest: service.data, regs: &regs)
    }

    /// `read_from_guest` of the operation; any failure is INVALID_PARAMETER.
    private func readOp(_ gpa: GuestPhysicalAddress, size: Int) throws(SvsmError) -> [UInt8]? {
        do { return try access.read(GuestRegion(start: gpa, length: UInt64(size)), protected: protectedPages) } catch { throw .invalidParameter }
    }

    /// `get_nonce`, the report, `write_report_and_manifest`: RCX = manifest size, R8 =
    /// report size, RDX = 0 (no certificates).
    private func answer(_ op: SvsmAttestation.ServicesOp, manifest: [UInt8], regs: inout SvsmRegisters) throws(SvsmError) {
        let nonceGpa = GuestPhysicalAddress(op.nonceGpa)
        guard Int(op.nonceSize) == SvsmAttestation.nonceSize,
              nonceGpa.rawValue & (GuestPhysicalAddress.pageSize - 1) + UInt64(op.nonceSize) <= GuestPhysicalAddress.pageSize else {
            throw .invalidParameter
        }
        let nonce: [UInt8]
        do { nonce = try access.read(GuestRegion(start: nonceGpa, length: UInt64(op.nonceSize)), protected: protectedPages) } catch {
            throw .invalidParameter
        }
        let report = SnpAttestationReport.make(reportData: Svsm.sha512(nonce + manifest))
        let reportGpa = GuestPhysicalAddress(op.reportGpa), manifestGpa = GuestPhysicalAddress(op.manifestGpa)
        guard reportGpa.pageAligned, manifestGpa.pageAligned else { throw .invalidParameter }
        guard manifest.count <= Int(op.manifestSize) else { throw .attestation(0) }
        guard report.count <= Int(op.reportSize) else { throw .attestation(1) }
        try access.write(reportGpa, report, protected: protectedPages)
        regs.r8 = UInt64(report.count)
        try access.write(manifestGpa, manifest, protected: protectedPages)
        regs.rcx = UInt64(manifest.count)
        regs.rdx = 0
    }

    public static func sha512(_ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](zeroed: 64)
        _ = data.withUnsafeBufferPointer { d in out.withUnsafeMutableBufferPointer { ccrypto_digest(ccrypto_nid_sha512(), d.baseAddress, d.count, $0.baseAddress) } }
        return out
    }
}
