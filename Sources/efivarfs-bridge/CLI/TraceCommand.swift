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
            discussion: "Example:\n  efivarfs-bridge trace summarize /tmp/svsm.jsonl")
        @Argument(help: "A trace written by `mount --trace`.") var file: String
        func run() throws {
            let records: [TraceRecord]
            do { records = try TraceAnalysis.read(path: file) } catch { throw cliFail("\(error)") }
            try writeStdout(Array(TraceAnalysis.render(records).utf8))
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
