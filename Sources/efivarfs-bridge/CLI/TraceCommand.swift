import ArgumentParser
import Foundation
import SvsmEfiVars

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
            do { print(TraceAnalysis.render(try TraceAnalysis.read(path: file)), terminator: "") } catch {
                FileHandle.standardError.write(Data("efivarfs-bridge: \(error)\n".utf8)); throw ExitCode(1)
            }
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
            do {
                let json = TraceAnalysis.chromeTrace(try TraceAnalysis.read(path: file))
                let data = try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])
                try data.write(to: URL(fileURLWithPath: output))
            } catch {
                FileHandle.standardError.write(Data("efivarfs-bridge: \(error)\n".utf8)); throw ExitCode(1)
            }
        }
    }
}
