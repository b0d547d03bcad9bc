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

struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats",
        abstract: "Ask a live mount for its counters: SVSM calls per call and MM function, errors, vCPU use.",
        discussion: "Examples:\n  efivarfs-bridge stats /tmp/efivars\n  efivarfs-bridge stats --json /tmp/efivars | jq .per_mm_function")
    @Argument(help: "The mount point of a running efivarfs-bridge.") var mountPoint: String
    @Flag(help: "The JSON document as the server sends it.") var json = false

    func run() throws {
        let path = ControlSocket.path(forMountPoint: mountPoint)
        let text: String
        do { text = try ControlSocket.query(path: path) } catch {
            switch error {
            case .unreachable: throw cliFail("no efivarfs-bridge answers for \(mountPoint) (socket \(path))")
            case .noAnswer: throw cliFail("the efivarfs-bridge serving \(mountPoint) did not answer within \(Int(ControlSocket.timeout)) s (stopped?)")
            case .closed: throw cliFail("the efivarfs-bridge serving \(mountPoint) closed the connection (socket \(path)) without an answer")
            }
        }
        if json { try writeStdout(Array(text.utf8)); return }
        guard let o = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else { throw cliFail("unreadable answer from \(path)") }
        var out = ""
        func print(_ line: String) { out += line + "\n" }
        print("SVSM calls: \(o["svsm_calls"] ?? 0), failed: \(o["failed_calls"] ?? 0), EFI errors: \(o["efi_errors"] ?? 0)")
        if let e = o["per_efi_status"] as? [String: Int], !e.isEmpty {
            print("EFI errors by status (NOT_FOUND and BUFFER_TOO_SMALL are normal for reads and listings): "
                  + e.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        if let v = o["vcpus"] as? [String: Any] {
            print("vCPUs: \(v["count"] ?? 0), in use now: \(v["in_use"] ?? 0), at most at once: \(v["peak_in_use"] ?? 0), used so far: \(v["used"] ?? 0)")
        }
        if let st = o["store"] as? [String: Any], let syncs = st["fdatasyncs"] as? Int, syncs > 0 {
            print("durable store: \(st["writes_acknowledged"] ?? 0) SetVariables acknowledged by \(syncs) fdatasyncs (group commit)")
        }
        for (title, key) in [("per SVSM call", "per_call"), ("per MM function", "per_mm_function")] {
            print(title)
            for (k, n) in ((o[key] as? [String: Int]) ?? [:]).sorted(by: { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }) {
                print("  \(k): \(n)")
            }
        }
        try writeStdout(Array(out.utf8))
    }
}
