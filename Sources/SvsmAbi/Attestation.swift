import EfiTypes

extension SvsmCallId {
    /// SVSM_ATTEST_PROTOCOL (1): SVSM_ATTEST_SERVICES (0) and SVSM_ATTEST_SINGLE_SERVICE (1)
    /// (SVSM spec §7; COCONUT `kernel/src/protocols/attest.rs`).
    public static let attestServices = SvsmCallId(protocol: 1, call: 0)
    public static let attestSingleService = SvsmCallId(protocol: 1, call: 1)
}

/// The attestation calls' operation structures and the services manifest, as COCONUT
/// lays them out (`attest.rs`: `AttestServicesOp`, `AttestSingleServiceOp`, `GuidTable`).
public enum SvsmAttestation {
    /// The GUID that starts a services manifest (`SERVICES_MANIFEST_GUID`).
    public static let servicesManifestGuid = EfiGuid("63849ebb-3d92-4670-a1ff-58f9c94b87bb")!
    /// The UEFI MM service (`SVSM_ATTEST_UEFI_MM_GUID`, added to attest.rs by COCONUT's
    /// commit "uefivars: wire up attestation manifest"; that version of attest.rs is not
    /// among the stored sources, so the value is carried here unverified).
    public static let uefiMmServiceGuid = EfiGuid("a4453a59-9e1b-4787-a033-1986d6adbe55")!
    /// The vTPM service (`SVSM_ATTEST_VTPM_GUID`).
    public static let vtpmServiceGuid = EfiGuid("c476f1eb-0123-45a5-9641-b4e7dde5bfe3")!
    /// REPORT_DATA is 64 bytes, so the nonce must be too (`get_nonce`).
    public static let nonceSize = 64
    /// Each manifest header and entry: GUID, u32, u32.
    public static let guidEntrySize = 24

    /// `AttestServicesOp` (0x40 bytes, packed; SVSM spec table 11).
    public struct ServicesOp: Equatable, Sendable {
        public static let size = 0x40
        public var reportGpa: UInt64
        public var reportSize: UInt32
        public var nonceGpa: UInt64
        public var nonceSize: UInt16
        public var manifestGpa: UInt64
        public var manifestSize: UInt32
        public var certificateGpa: UInt64
        public var certificateSize: UInt32

        public init(reportGpa: UInt64, reportSize: UInt32, nonceGpa: UInt64, nonceSize: UInt16, manifestGpa: UInt64, manifestSize: UInt32,
                    certificateGpa: UInt64 = 0, certificateSize: UInt32 = 0) {
            self.reportGpa = reportGpa; self.reportSize = reportSize; self.nonceGpa = nonceGpa; self.nonceSize = nonceSize
            self.manifestGpa = manifestGpa; self.manifestSize = manifestSize; self.certificateGpa = certificateGpa; self.certificateSize = certificateSize
        }

        public var bytes: [UInt8] {
            var b = [UInt8](zeroed: ServicesOp.size)
            b.storeLE(reportGpa, at: 0x00); b.storeLE(reportSize, at: 0x08)
            b.storeLE(nonceGpa, at: 0x10); b.storeLE(nonceSize, at: 0x18)
            b.storeLE(manifestGpa, at: 0x20); b.storeLE(manifestSize, at: 0x28)
            b.storeLE(certificateGpa, at: 0x30); b.storeLE(certificateSize, at: 0x38)
            return b
        }

        /// Nil when a reserved byte is not zero (`is_reserved_clear`: INVALID_PARAMETER).
        public init?(bytes b: [UInt8]) {
            guard b.count >= ServicesOp.size else { return nil }
            let reserved = [0x0C..<0x10, 0x1A..<0x20, 0x2C..<0x30, 0x3C..<0x40]
            guard reserved.allSatisfy({ r in b[r].allSatisfy { $0 == 0 } }) else { return nil }
            self.init(reportGpa: b.loadLE(UInt64.self, at: 0x00), reportSize: b.loadLE(UInt32.self, at: 0x08),
                      nonceGpa: b.loadLE(UInt64.self, at: 0x10), nonceSize: b.loadLE(UInt16.self, at: 0x18),
                      manifestGpa: b.loadLE(UInt64.self, at: 0x20), manifestSize: b.loadLE(UInt32.self, at: 0x28),
                      certificateGpa: b.loadLE(UInt64.self, at: 0x30), certificateSize: b.loadLE(UInt32.self, at: 0x38))
        }
    }

    /// `AttestSingleServiceOp` (0x58 bytes): the services op, the service GUID at 0x40, the
    /// manifest version at 0x50 (only 0), 4 reserved bytes.
    public struct SingleServiceOp: Equatable, Sendable {
        public static let size = 0x58
        public var op: ServicesOp
        public var service: EfiGuid
        public var manifestVersion: UInt32

        public init(op: ServicesOp, service: EfiGuid, manifestVersion: UInt32 = 0) {
            self.op = op; self.service = service; self.manifestVersion = manifestVersion
        }

        public var bytes: [UInt8] {
            var b = op.bytes + [UInt8](zeroed: SingleServiceOp.size - ServicesOp.size)
            b.store(service, at: 0x40)
            b.storeLE(manifestVersion, at: 0x50)
            return b
        }

        /// Nil when a reserved byte is set (the manifest version is checked by the caller).
        public init?(bytes b: [UInt8]) {
            guard b.count >= SingleServiceOp.size, let op = ServicesOp(bytes: b), b[0x54..<0x58].allSatisfy({ $0 == 0 }) else { return nil }
            self.init(op: op, service: EfiGuid(bytes: b, at: 0x40), manifestVersion: b.loadLE(UInt32.self, at: 0x50))
        }
    }

    /// `GuidTable::to_vec`: header (manifest GUID, total length, entry count), one entry
    /// per service (GUID, offset of its data from the table's start, data size), then the
    /// data blobs in entry order.
    public static func servicesManifest(_ services: [(guid: EfiGuid, data: [UInt8])]) -> [UInt8] {
        let headerSize = (1 + services.count) * guidEntrySize
        let total = headerSize + services.reduce(0) { $0 + $1.data.count }
        var out = servicesManifestGuid.bytes
        out.appendLE(UInt32(total))
        out.appendLE(UInt32(services.count))
        var cursor = UInt32(headerSize)
        for s in services {
            out += s.guid.bytes
            out.appendLE(cursor)
            out.appendLE(UInt32(s.data.count))
            cursor += UInt32(s.data.count)
        }
        for s in services { out += s.data }
        return out
    }

    /// Splits a services manifest into its entries; nil when it does not frame.
    public static func parseServicesManifest(_ m: [UInt8]) -> [(guid: EfiGuid, data: [UInt8])]? {
        guard m.count >= guidEntrySize, EfiGuid(bytes: m, at: 0) == servicesManifestGuid,
              Int(m.loadLE(UInt32.self, at: 16)) == m.count else { return nil }
        let n = Int(m.loadLE(UInt32.self, at: 20))
        guard n <= (m.count / guidEntrySize) - 1 else { return nil }
        var out: [(EfiGuid, [UInt8])] = []
        for i in stride(from: 1, through: n, by: 1) {
            let e = i * guidEntrySize
            let offset = Int(m.loadLE(UInt32.self, at: e + 16)), size = Int(m.loadLE(UInt32.self, at: e + 20))
            guard offset <= m.count, size <= m.count - offset else { return nil }
            out.append((EfiGuid(bytes: m, at: e), Array(m[offset..<(offset + size)])))
        }
        return out
    }
}

/// The SEV-SNP ATTESTATION_REPORT (SEV Secure Nested Paging Firmware ABI, table 22), the
/// fields the model fills: the SVSM asks for it at VMPL0 with REPORT_DATA =
/// SHA-512(nonce ‖ manifest). The model has no PSP: the report is unsigned (signature
/// zero) and says so.
public enum SnpAttestationReport {
    public static let size = 0x4A0
    public static let versionOffset = 0x00
    public static let vmplOffset = 0x30
    public static let signatureAlgorithmOffset = 0x34
    public static let reportDataOffset = 0x50
    public static let signatureOffset = 0x2A0

    public static func make(reportData: [UInt8], vmpl: UInt32 = 0) -> [UInt8] {
        precondition(reportData.count == 64)
        var r = [UInt8](zeroed: size)
        r.storeLE(UInt32(2), at: versionOffset)
        r.storeLE(vmpl, at: vmplOffset)
        r.storeLE(UInt32(1), at: signatureAlgorithmOffset)  // ECDSA P-384 with SHA-384
        r.replaceSubrange(reportDataOffset..<(reportDataOffset + 64), with: reportData)
        return r
    }

    /// REPORT_DATA, or nothing when the report is too short to hold it.
    public static func reportData(_ report: [UInt8]) -> [UInt8] {
        guard report.count >= reportDataOffset + 64 else { return [] }
        return Array(report[reportDataOffset..<(reportDataOffset + 64)])
    }
}
