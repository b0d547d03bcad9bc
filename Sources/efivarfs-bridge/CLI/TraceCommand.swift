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

struct TraceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "Read a --trace file: summaries and timelines.",
        subcommands: [Summarize.self, Export.self]
    )

    struct Summarize: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Counts, errors and latency percentiles per SVSM call, per MM function and per vCPU.",
            discussion: """
                Per operation (read, write, unlink, statfs, enumerate, boot, ...): SVSM calls, MM round
                trips, bytes across the boundary and modelled time, at the --world-switch cost the
                trace was written with, or at each cost given here.

                Examples:
                  efivarfs-bridge trace summarize /tmp/svsm.jsonl
                  efivarfs-bridge trace summarize --world-switch 1us,5us,20us /tmp/svsm.jsonl
                """)
        @Argument(help: "A trace written by `mount --trace`.") var file: String
        @Option(name: .customLong("world-switch"), help: ArgumentHelp("Model the calls at these world-switch costs (comma-separated: ns, 5us, or presets).", valueName: "costs"))
        var worldSwitch: String?
        func costs() -> [UInt64]? {
            guard let w = worldSwitch else { return [] }
            let parsed = w.split(separator: ",").map { WorldSwitchCost.parse(String($0)) }
            return parsed.contains(where: { $0 == nil }) ? nil : parsed.compactMap { $0 }
        }
        func validate() throws {
            if costs() == nil { throw ValidationError("--world-switch: give nanoseconds (5000, 5us) or presets, separated by commas") }
        }
        func run() throws {
            let records: [TraceRecord]
            do { records = try TraceAnalysis.read(path: file) } catch { throw cliFail("\(error)") }
            try writeStdout(Array(TraceAnalysis.render(records, costs: costs() ?? []).utf8))
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the Chrome trace-event format (Perfetto, chrome://tracing): one track per vCPU, one slice per call.",
            discussion: "Example:\n  efivarfs-bridge trace export --perfetto /tmp/svsm.jsonl /tmp/svsm-timeline.json")
        @Flag(help: "Chrome trace-event JSON, as Perfetto opens it (the only format so far).") var perfetto = false
        @Argument(help: "A trace written by `mount --trace`.") var file: String
        @Argument(help: "Where to write the timeline.") var output: String
        func validate() throws { guard perfetto else { throw ValidationError("choose an output format: --perfetto") } }
        func run() throws {
            let records: [TraceRecord]
            do { records = try TraceAnalysis.read(path: file) } catch { throw cliFail("\(error)") }
            let data: Data
            do { data = try JSONSerialization.data(withJSONObject: TraceAnalysis.chromeTrace(records), options: [.sortedKeys]) } catch {
                throw cliFail("cannot encode the timeline: \(error.localizedDescription)")
            }
            do { try DurableFile.replace(output, with: Array(data)) } catch {
                throw cliFail("cannot write \(output): \(String(cString: strerror(error.errno)))")
            }
        }
    }
}
