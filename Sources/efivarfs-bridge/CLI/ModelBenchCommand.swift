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

/// The cost of the model itself, in process: no FUSE, no kernel.
struct ModelBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench-model",
        abstract: "Measure the in-process cost of an SVSM call and of an MM round trip (GET_VARIABLE).",
        discussion: "Example:\n  efivarfs-bridge bench-model --iterations 200000")
    @Option(help: "Calls per measurement.") var iterations = 100_000
    @Option(help: "Measure only one: svsm, mm, or durable (group commit, writers straight into the variable service).") var only: String?
    @Option(help: "For durable: the directory for a scratch store (default: a new one under /tmp).") var storeDirectory: String?

    func validate() throws {
        guard iterations > 0 else { throw ValidationError("--iterations must be positive") }
        guard only == nil || ["svsm", "mm", "durable"].contains(only!) else { throw ValidationError("--only takes svsm, mm or durable") }
    }

    /// Durable SetVariables from 1 and from 8 writers at once, straight into the variable
    /// service over a native store: what group commit does when requests are concurrent.
    /// (Through efivarfs they are not: Linux's efivars_lock serialises every SetVariable.)
    func durable() throws {
        let dir = storeDirectory ?? NSTemporaryDirectory() + "bench-durable-\(getpid())"
        defer { if storeDirectory == nil { try? FileManager.default.removeItem(atPath: dir) } }
        let vendor = EfiGuid("cfc8fc79-be2e-4ddc-97f0-9f98bfe298a0")!
        for writers in [1, 8] {
            try? FileManager.default.removeItem(atPath: dir)
            let (journal, _) = try NativeJournal.open(directory: dir)
            let service = VariableService(store: VariableStore(), journal: journal)
            let perWriter = max(1, min(iterations, 100_000) / writers)
            let t0 = DispatchTime.now().uptimeNanoseconds
            DispatchQueue.concurrentPerform(iterations: writers) { w in
                for i in 0..<perWriter {
                    let payload = AccessVariablePayload.encode(guid: vendor, name: Ucs2.units("W\(w)-\(i % 64)"), attributes: 7, dataSize: 64,
                                                               data: [UInt8](repeating: UInt8(i & 0xff), count: 64))
                    _ = service.handleMmRequest(headerGuid: .smmVariableProtocol, message: SmmVariableHeader.message(.setVariable, payload: payload))
                }
            }
            let s = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            let g = service.syncStatistics
            print(String(format: "durable SetVariable, %d writer(s): %.0f per second; %d fdatasyncs for %d writes (%.1f per sync)",
                         writers, Double(perWriter * writers) / s, g.syncs, Int(g.acknowledged), Double(g.acknowledged) / Double(max(g.syncs, 1))))
            service.releaseStore()
        }
    }

    func run() throws {
        if only == "durable" { try durable(); return }
        let m = try Machine(Machine.Configuration())
        let key = VariableKey("Timeout", .globalVariable)
        func measure(_ name: String, _ body: () -> Void) {
            body()  // warm up
            let t0 = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<iterations { body() }
            let ns = Double(DispatchTime.now().uptimeNanoseconds - t0) / Double(iterations)
            print(String(format: "%@: %.0f ns per call (%d calls)", name, ns, iterations))
        }
        m.vcpus.withVcpu { v in
            if only != "mm" { measure("SVSM call (QUERY_PROTOCOL) through the CAA") {
                _ = try? m.transport.perform(.coreQueryProtocol, rcx: 4 << 32 | 1, on: v, caa: v.svsmCaa)
            } }
            if only != "svsm" { m.driver.onCpuHeld(v) { cpu in
                measure("MM round trip (GET_VARIABLE Timeout)") { _ = try? cpu.getVariable(key, capacity: 2) }
            } }
        }
    }
}
