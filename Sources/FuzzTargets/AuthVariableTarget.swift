import Foundation
import SvsmEfiVars

/// (e) Time-based authenticated writes (EFI_VARIABLE_AUTHENTICATION_2, PKCS#7 through
/// libcrypto) against a store at runtime in user mode with Microsoft's keys (Debian's
/// OVMF_VARS_4M.ms.fd, when installed; otherwise setup mode with no keys). The first byte
/// picks the variable and APPEND_WRITE, the rest is the data SetVariable receives.
///
/// Properties: the answer is one of the statuses edk2's AuthVariableLib gives; a refused
/// write leaves the store exactly as it was.
final class AuthVariableTarget: Sendable {
    static let shared = AuthVariableTarget()

    static let targets: [VariableKey] = [
        VariableKey("db", .imageSecurityDatabase), VariableKey("dbx", .imageSecurityDatabase),
        VariableKey("KEK", .globalVariable), VariableKey("PK", .globalVariable),
        VariableKey("dbt", .imageSecurityDatabase), VariableKey("FuzzPrivate", .linuxEfiCrash),
    ]
    static let statuses: Set<EfiStatus> = [.success, .securityViolation, .invalidParameter, .writeProtected,
                                           .outOfResources, .unsupported, .notFound, .accessDenied]
    let base: VariableStore

    init() {
        var s = VariableStore()
        if let fd = FileManager.default.contents(atPath: "/usr/share/OVMF/OVMF_VARS_4M.ms.fd").map(Array.init),
           let vars = try? OvmfVarsFile.read(fd, path: "OVMF_VARS_4M.ms.fd") {
            s.restore(vars)
        }
        s.initializeAuthVariables()
        s.signalEndOfDxe()
        s.signalReadyToBoot()
        s.signalExitBootServices()
        base = s
    }

    func run(_ data: [UInt8]) throws(PropertyViolation) {
        guard let selector = data.first else { return }
        var store = base
        let key = Self.targets[Int(selector & 0x7f) % Self.targets.count]
        var attributes: VariableAttributes = [.nvBsRt, .timeBasedAuthenticatedWriteAccess]
        if selector & 0x80 != 0 { attributes.insert(.appendWrite) }
        let before = store.allVariables
        let status = store.setVariable(key, attributes: attributes.rawValue, data: Array(data.dropFirst()))
        try require(Self.statuses.contains(status), "SetVariable answered \(status)")
        if status != .success {
            let after = store.allVariables
            try require(after.count == before.count && zip(after, before).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 },
                    "a refused write (\(status)) changed the store")
        }
    }

    static func seeds() -> [(name: String, bytes: [UInt8])] {
        var out: [(String, [UInt8])] = []
        if let dbx = FileManager.default.contents(atPath: "Tests/IntegrationTests/Fixtures/DBXUpdate-amd64.bin").map(Array.init) {
            out.append(("dbx-update-append", [0x81] + dbx))
            out.append(("dbx-update-no-append", [0x01] + dbx))
            out.append(("dbx-update-as-db", [0x80] + dbx))
        }
        // A descriptor with an empty PKCS#7 and an empty EFI_SIGNATURE_LIST payload.
        var d = [UInt8](zeroed: 16)
        d.storeLE(UInt16(2026), at: 0); d[2] = 11; d[3] = 26
        var cert = [UInt8](zeroed: 24)
        cert.storeLE(UInt32(24), at: 0)
        cert.storeLE(UInt16(0x0200), at: 4)
        cert.storeLE(UInt16(0x0EF1), at: 6)
        cert.replaceSubrange(8..<24, with: EfiGuid("4aafd29d-68df-49ee-8aa9-347d375665a7")!.bytes)
        out.append(("empty-descriptor-db", [0x00] + d + cert))
        out.append(("empty-descriptor-private", [0x05] + d + cert + [1, 2, 3]))
        return out
    }
}
