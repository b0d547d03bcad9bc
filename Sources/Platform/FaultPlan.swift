import Host
import Svsm

/// Faults a prototyping engineer can inject into the call path (`--fault name=P`), each
/// with a probability, off by default: the host's (a dropped exit, a spurious VMPL0 run)
/// and the SVSM's own answers (BUSY, INCOMPLETE).
public struct FaultPlan: Sendable, Equatable {
    public var host = HostFaults()
    public var svsm = SvsmFaults()

    public init() {}

    public var isEmpty: Bool { host.dropExit == 0 && host.spuriousEntry == 0 && svsm.isEmpty }

    public enum ParseError: Error, CustomStringConvertible {
        case malformed(String)
        public var description: String {
            switch self {
            case .malformed(let s): return "bad fault specification '\(s)': expected drop-exit=P, busy=P, incomplete=P or spurious-entry=P with 0 <= P <= 1"
            }
        }
    }

    /// Adds one `name=P` specification.
    public mutating func add(_ spec: String) throws(ParseError) {
        let parts = spec.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, let p = Double(parts[1]), p >= 0, p <= 1 else { throw .malformed(spec) }
        switch parts[0] {
        case "drop-exit": host.dropExit = p
        case "spurious-entry": host.spuriousEntry = p
        case "busy": svsm.busy = p
        case "incomplete": svsm.incomplete = p
        default: throw .malformed(spec)
        }
    }
}
