import EfiTypes
import Hardware
import SvsmAbi

/// What an SVSM attestation call returned: the manifest and the report.
public struct SvsmAttestationResult: Sendable {
    public let manifest: [UInt8]
    public let report: [UInt8]
    public let nonce: [UInt8]
}

public enum SvsmAttestationError: Error, CustomStringConvertible {
    case call(SvsmCallError)
    case memory(GuestMemoryError)
    public var description: String {
        switch self {
        case .call(let e): return "SVSM attestation call: \(e)"
        case .memory(let e): return "SVSM attestation buffers: \(e)"
        }
    }
}

/// The guest's attestation request through the SVSM (Linux `snp_issue_svsm_attest_req`,
/// reached from configfs-tsm with `service_provider` svsm: `sev_svsm_report_new` in
/// drivers/virt/coco/sev-guest): page-aligned buffers for the operation, nonce, report and
/// manifest, one call through the vCPU's own CAA, then the sizes from RCX and R8.
public struct SvsmAttestationCall {
    public let transport: SvsmCallTransport
    public let allocator: PageAllocator

    public init(transport: SvsmCallTransport, allocator: PageAllocator) {
        self.transport = transport
        self.allocator = allocator
    }

    /// SVSM_ATTEST_SINGLE_SERVICE for `service`, or SVSM_ATTEST_SERVICES when nil.
    public func attest(service: EfiGuid?, nonce: [UInt8], on vcpu: Vcpu) throws(SvsmAttestationError) -> SvsmAttestationResult {
        let memory = allocator.memory
        let pages = 4
        let base: GuestPhysicalAddress
        do { base = try allocator.allocatePages(pages) } catch { throw .memory(error) }
        defer { for i in 0..<pages { allocator.freePage(base.advanced(by: UInt64(i) * GuestPhysicalAddress.pageSize)) } }
        let opGpa = base, nonceGpa = base.advanced(by: 4096), reportGpa = base.advanced(by: 8192), manifestGpa = base.advanced(by: 12288)
        let op = SvsmAttestation.ServicesOp(reportGpa: reportGpa.rawValue, reportSize: 4096, nonceGpa: nonceGpa.rawValue,
                                            nonceSize: UInt16(nonce.count), manifestGpa: manifestGpa.rawValue, manifestSize: 4096)
        let call: SvsmCallId
        do {
            try memory.write(nonceGpa, nonce)
            if let service {
                try memory.write(opGpa, SvsmAttestation.SingleServiceOp(op: op, service: service).bytes)
                call = .attestSingleService
            } else {
                try memory.write(opGpa, op.bytes)
                call = .attestServices
            }
        } catch { throw .memory(error) }
        let out: SvsmRegisters
        do { out = try transport.perform(call, rcx: opGpa.rawValue, on: vcpu, caa: vcpu.svsmCaa) } catch { throw .call(error) }
        do {
            let manifest = try memory.read(manifestGpa, count: Int(min(out.rcx, 4096)))
            let report = try memory.read(reportGpa, count: Int(min(out.r8, 4096)))
            return SvsmAttestationResult(manifest: manifest, report: report, nonce: nonce)
        } catch { throw .memory(error) }
    }
}
