/// Faults a prototyping engineer can inject into the call path, each with a probability.
/// Off by default.
public struct FaultPlan: Sendable, Equatable {
    /// The host does not run the SVSM for an exit: call_pending stays set.
    public var dropExit: Double = 0
    /// The SVSM answers SVSM_ERR_BUSY without doing the call.
    public var busy: Double = 0
    /// The SVSM answers SVSM_ERR_INCOMPLETE without doing the call.
    public var incomplete: Double = 0
    /// The host runs the SVSM once more after the exit, with call_pending clear.
    public var spuriousEntry: Double = 0
    public var seed: UInt64 = 0x5eed

    public init() {}

    public var isEmpty: Bool { dropExit == 0 && busy == 0 && incomplete == 0 && spuriousEntry == 0 }

    public enum ParseError: Error, CustomStringConvertible {
        case malformed(String)
        public var description: String {
            switch self {
            case .malformed(let s): return "bad fault specification '\(s)': expected drop-exit=P, busy=P, incomplete=P or spurious-entry=P with 0 <= P <= 1"
            }
        }
    }

    /// Adds one `name=P` specification (the `--fault` option).
    public mutating func add(_ spec: String) throws(ParseError) {
        let parts = spec.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, let p = Double(parts[1]), p >= 0, p <= 1 else { throw .malformed(spec) }
        switch parts[0] {
        case "drop-exit": dropExit = p
        case "busy": busy = p
        case "incomplete": incomplete = p
        case "spurious-entry": spuriousEntry = p
        case "seed": seed = UInt64(p)
        default: throw .malformed(spec)
        }
    }
}

/// Draws the fault decisions from a seeded generator, so a failing run can be replayed.
final class FaultInjector: Sendable {
    let plan: FaultPlan
    private let state: Locked<UInt64>
    init(_ plan: FaultPlan) { self.plan = plan; self.state = Locked(plan.seed | 1) }

    func fires(_ p: Double) -> Bool {
        guard p > 0 else { return false }
        let x: UInt64 = state.withLock { s in
            // xorshift64*
            s ^= s >> 12; s ^= s << 25; s ^= s >> 27
            return s &* 2685821657736338717
        }
        return Double(x >> 11) / Double(1 << 53) < p
    }
}
