import ArgumentParser
import Driver
import EfiTypes
import Efivarfs
import Guest
import Logging
import MmWire
import Platform
import Trace
import VariableService

/// `--verbose` and `--log-level`: quiet by default (warnings and errors only), on stderr.
struct LoggingOptions: ParsableArguments {
    @Flag(name: .shortAndLong, help: "Log what happens (info level); twice the detail with --log-level debug.")
    var verbose = false

    @Option(name: .long, help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String?

    func validate() throws {
        if let l = logLevel, Logger.Level(rawValue: l) == nil {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
    }

    var level: Logger.Level { logLevel.flatMap(Logger.Level.init(rawValue:)) ?? (verbose ? .info : .warning) }

    func bootstrap() -> Logger {
        let level = self.level
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        return Logger(label: "efivarfs-bridge")
    }
}

/// Logs every SVSM call that failed (warning) and, at trace level, every call. A class: the
/// fan-out copies each observer it calls, and a copy of a `Logger` is several retains.
final class LoggingObserver: SvsmCallObserver {
    let logger: Logger
    /// The level is fixed once logging is set up: asked once here rather than through the
    /// log handler on every call.
    let tracesCalls: Bool
    init(logger: Logger) { self.logger = logger; self.tracesCalls = logger.logLevel <= .trace }
    /// Only the trace-level line shows a call's time.
    var needsTiming: Bool { tracesCalls }
    func svsmCallCompleted(_ r: SvsmCallRecord) {
        if let e = r.error {
            logger.warning("SVSM call \(r.call.name) on vCPU \(r.apicId) via CAA \(r.caa) failed: \(e)")
        } else if tracesCalls {
            logger.trace("\(r.call.name) vCPU \(r.apicId) CAA \(r.caa) \(r.mmFunction?.name ?? "") \(r.efiStatus?.name ?? "") \(r.durationNanoseconds) ns")
        }
    }
}
