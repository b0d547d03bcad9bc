import ArgumentParser
import Driver
import EfiTypes
import Efivarfs
import Foundation
import Guest
import MmWire
import Platform
import SvsmAbi
import Trace
import VariableService

struct InfoCommand: DriverCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Storage figures, the MM payload size, vCPUs, Secure Boot state and the UEFI-MM attestation manifest.",
                                                    discussion: """
                                                        The manifest is read as a guest reads it: SVSM_ATTEST_SINGLE_SERVICE for the
                                                        UEFI MM service through a vCPU's CAA, with the report's REPORT_DATA checked.
                                                        The profile's open questions are the behaviours modelled without a readable
                                                        source (docs/svsm-profiles.md).

                                                        Examples:
                                                          efivarfs-bridge info --json
                                                          efivarfs-bridge info --svsm coconut --ephemeral
                                                        """)
    @Flag(help: "One JSON object.") var json = false
    @OptionGroup var machine: MachineOptions

    func perform(on m: Machine) -> CommandOutput {
        var out = CommandOutput()
        let sets: [(String, UInt32)] = [("nv,bs,rt", 0x7), ("bs,rt", 0x6), ("nv,bs,rt,at", 0x27)]
        let infos: [(String, Result<VariableStorageInfo, EfiStatusError>)]
        let sb: UInt8?, setup: UInt8?, pk: Bool
        do {
            (infos, sb, setup, pk) = try m.driver.onCpu { (cpu) throws(SvsmCallError) in
                var i: [(String, Result<VariableStorageInfo, EfiStatusError>)] = []
                for (n, a) in sets { i.append((n, try cpu.queryVariableInfo(attributes: a))) }
                func byte(_ n: String) throws(SvsmCallError) -> UInt8? {
                    if case .found(_, let d) = try cpu.readVariable(VariableKey(n, .globalVariable)) { return d.first }
                    return nil
                }
                var hasPk = false
                if case .found = try cpu.readVariable(VariableKey("PK", .globalVariable)) { hasPk = true }
                return (i, try byte("SecureBoot"), try byte("SetupMode"), hasPk)
            }
        } catch { return .svsmFailure("info", error) }
        let attestation: UefiMmAttestation
        do { attestation = try m.attestUefiMm() } catch { return .fail("info: \(error)", code: 1) }
        let target = m.profile == .coconut && !machine.coconutPersistence ? nil : machine.storeChoice().path
        let mf = attestation.manifest
        func flag(_ b: Bool?) -> String { b.map { $0 ? "1" : "0" } ?? "?" }
        if json {
            let q = infos.map { n, r in
                switch r {
                case .success(let v):
                    return "\"\(n)\":{\"maximum_storage\":\(v.maximumVariableStorageSize),\"remaining_storage\":\(v.remainingVariableStorageSize),\"maximum_variable\":\(v.maximumVariableSize)}"
                case .failure(let e): return "\"\(n)\":{\"refused\":\"\(e.status.name)\"}"
                }
            }.joined(separator: ",")
            let manifest = "{\"bytes\":\"\(Hex.encode(attestation.manifestBytes))\",\"version\":\(mf.map { "\($0.version)" } ?? "null"),"
                + "\"persistent_nv_vars\":\(mf.map { "\($0.persistentNvVariables)" } ?? "null"),"
                + "\"secureboot_enabled\":\(mf.map { "\($0.secureBootEnabled)" } ?? "null"),"
                + "\"secureboot_db_update\":\(mf.map { "\($0.secureBootDbUpdate)" } ?? "null"),"
                + "\"service_guid\":\"\(SvsmAttestation.uefiMmServiceGuid)\",\"read_with\":\"SVSM_ATTEST_SINGLE_SERVICE\","
                + "\"report_binds_manifest\":\(attestation.reportBindsManifest),\"listed_in_services\":\(attestation.listedInServices)}"
            out.print("{\"profile\":\"\(m.profile.rawValue)\",\"query_variable_info\":{\(q)},\"payload_size\":\(m.driver.maxPayloadSize),"
                  + "\"var_check_properties\":\(m.driver.hasVarCheckProperties),\"vcpus\":\(m.vcpus.count),"
                  + "\"secure_boot\":\(sb.map { "\($0)" } ?? "null"),\"setup_mode\":\(setup.map { "\($0)" } ?? "null"),\"pk\":\(pk),"
                  + "\"manifest\":\(manifest),\"notes\":[\(m.storeNotes.map(jsonString).joined(separator: ","))],"
                  + "\"open_questions\":[\(m.profile.openQuestions.map(jsonString).joined(separator: ","))],"
                  + "\"store\":\(target.map(jsonString) ?? "null")}")
        } else {
            out.print("SVSM profile: \(m.profile.rawValue) — \(m.profile.summary)")
            for n in m.storeNotes { out.print("  \(n)") }
            for (n, r) in infos {
                switch r {
                case .success(let v): out.print("QueryVariableInfo(\(n)): maximum storage \(v.maximumVariableStorageSize), remaining \(v.remainingVariableStorageSize), maximum variable \(v.maximumVariableSize)")
                case .failure(let e): out.print("QueryVariableInfo(\(n)): refused (\(e.status.name))")
                }
            }
            out.print("MM payload size: \(m.driver.maxPayloadSize) bytes; VAR_CHECK properties: \(m.driver.hasVarCheckProperties ? "served" : "not served (the driver skips the property check)")")
            out.print("vCPUs: \(m.vcpus.count)")
            out.print("SecureBoot: \(sb.map { "\($0)" } ?? "absent"), SetupMode: \(setup.map { "\($0)" } ?? "absent"), PK: \(pk ? "present" : "absent")")
            out.print("UEFI-MM manifest (SVSM_ATTEST_SINGLE_SERVICE \(SvsmAttestation.uefiMmServiceGuid)): \(Hex.encode(attestation.manifestBytes))")
            out.print("  version \(mf.map { "\($0.version)" } ?? "?"): persistent_nv_vars=\(flag(mf?.persistentNvVariables)) secureboot_enabled=\(flag(mf?.secureBootEnabled)) secureboot_db_update=\(flag(mf?.secureBootDbUpdate))")
            out.print("  report: REPORT_DATA \(attestation.reportBindsManifest ? "=" : "≠") SHA-512(nonce ‖ manifest); listed in SVSM_ATTEST_SERVICES: \(attestation.listedInServices ? "yes" : "no"); unsigned (the model has no PSP)")
            if !m.profile.openQuestions.isEmpty {
                out.print("Open questions (modelled without a readable source):")
                for q in m.profile.openQuestions { out.print("  - \(q)") }
            }
            out.print("store: \(target ?? "(memory only)")")
        }
        return out
    }
}
