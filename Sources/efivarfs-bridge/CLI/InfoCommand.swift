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

struct InfoCommand: DriverCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Storage figures, the MM payload size, vCPUs, Secure Boot state and the UEFI-MM attestation manifest.",
                                                    discussion: "Example:\n  efivarfs-bridge info --json")
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
        let target = machine.storeChoice().path
        // Only what the model knows: COCONUT's manifest flag secureboot_enabled is "PK
        // exists" (uefi_mm_get_manifest), which the store answers; the other two flags
        // depend on the SVSM build and are not modelled here.
        if json {
            let q = infos.map { n, r in
                switch r {
                case .success(let v):
                    return "\"\(n)\":{\"maximum_storage\":\(v.maximumVariableStorageSize),\"remaining_storage\":\(v.remainingVariableStorageSize),\"maximum_variable\":\(v.maximumVariableSize)}"
                case .failure(let e): return "\"\(n)\":{\"refused\":\"\(e.status.name)\"}"
                }
            }.joined(separator: ",")
            out.print("{\"query_variable_info\":{\(q)},\"payload_size\":\(m.driver.maxPayloadSize),\"vcpus\":\(m.vcpus.count),"
                  + "\"secure_boot\":\(sb.map { "\($0)" } ?? "null"),\"setup_mode\":\(setup.map { "\($0)" } ?? "null"),"
                  + "\"manifest\":{\"secureboot_enabled\":\(pk),\"source\":\"derived from the store: PK present\",\"not_modelled\":[\"persistent_nv_vars\",\"secureboot_db_update\"]},"
                  + "\"store\":\(target.map(jsonString) ?? "null")}")
        } else {
            for (n, r) in infos {
                switch r {
                case .success(let v): out.print("QueryVariableInfo(\(n)): maximum storage \(v.maximumVariableStorageSize), remaining \(v.remainingVariableStorageSize), maximum variable \(v.maximumVariableSize)")
                case .failure(let e): out.print("QueryVariableInfo(\(n)): refused (\(e.status.name))")
                }
            }
            out.print("MM payload size: \(m.driver.maxPayloadSize) bytes\nvCPUs: \(m.vcpus.count)")
            out.print("SecureBoot: \(sb.map { "\($0)" } ?? "absent"), SetupMode: \(setup.map { "\($0)" } ?? "absent")")
            out.print("UEFI-MM manifest: secureboot_enabled=\(pk) (derived from the store: PK present); persistent_nv_vars and secureboot_db_update: not modelled")
            out.print("store: \(target ?? "(memory only)")")
        }
        return out
    }
}
