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
        let ws = (o["world_switch_ns"] as? Int) ?? 0
        if let ops = o["operations"] as? [String: [String: Int]], !ops.isEmpty {
            let counted = (o["efivarfs_operations"] as? [String: Int]) ?? [:]
            print("per operation (ops: efivarfs operations run, or operations that made calls; modelled at \(ws) ns per world switch)")
            print("  " + "operation".padding(toLength: 16, withPad: " ", startingAt: 0) + ["ops", "calls", "MM trips", "switches", "bytes", "modelled µs"].map { $0.leftPad(12) }.joined())
            for (k, c) in ops.sorted(by: { $0.key < $1.key }) {
                let n = counted[k] ?? c["operations_with_calls"] ?? 0
                let cols = [n, c["svsm_calls"] ?? 0, c["mm_round_trips"] ?? 0, c["world_switches"] ?? 0,
                            (c["request_bytes"] ?? 0) + (c["reply_bytes"] ?? 0)].map { "\($0)".leftPad(12) }
                print("  " + k.padding(toLength: 16, withPad: " ", startingAt: 0) + cols.joined()
                      + String(format: "%.1f", Double(c["modelled_ns"] ?? 0) / 1000).leftPad(12))
            }
            for (k, n) in counted.sorted(by: { $0.key < $1.key }) where ops[k] == nil {
                print("  " + k.padding(toLength: 16, withPad: " ", startingAt: 0) + "\(n)".leftPad(12) + "0".leftPad(12))
            }
        }
        if let c = o["driver_cache"] as? [String: Int] {
            print("driver cache: \(c["hits"] ?? 0) hits, \(c["misses"] ?? 0) misses, \(c["bypasses"] ?? 0) bypasses (write in flight), \(c["fills"] ?? 0) fills, \(c["dropped_fills"] ?? 0) dropped, \(c["invalidations"] ?? 0) invalidations")
        }
        if let f = o["fuse_requests"] as? [String: Int], !f.isEmpty {
            print("FUSE requests: " + f.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
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

extension String {
    func leftPad(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}
