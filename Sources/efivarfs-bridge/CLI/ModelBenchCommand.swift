import ArgumentParser
import Foundation
import SvsmEfiVars

/// The cost of the model itself, in process: no FUSE, no kernel.
struct ModelBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench-model",
        abstract: "Measure the in-process cost of an SVSM call and of an MM round trip (GET_VARIABLE).",
        discussion: "Example:\n  efivarfs-bridge bench-model --iterations 200000")
    @Option(help: "Calls per measurement.") var iterations = 100_000
    @Option(help: "Measure only one: svsm or mm (for instruction counts under callgrind).") var only: String?

    func validate() throws {
        guard iterations > 0 else { throw ValidationError("--iterations must be positive") }
        guard only == nil || only == "svsm" || only == "mm" else { throw ValidationError("--only takes svsm or mm") }
    }

    func run() throws {
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
                measure("MM round trip (GET_VARIABLE Timeout)") { _ = cpu.getVariable(key, capacity: 2) }
            } }
        }
    }
}
