import EfiTypes
import Efivarfs
import Guest
import MmWire
import SvsmAbi

/// One SVSM call as both sides saw it.
public struct ObservedSvsmCall: Sendable, Equatable {
    public let apicId: UInt32
    /// The CAA the caller set call_pending in.
    public let caaUsed: GuestPhysicalAddress
    /// The CAA the SVSM's registry binds to that vCPU: the one it reads and clears.
    public let caaServed: GuestPhysicalAddress?
    public let function: String
    /// call_pending as the caller's xchg found it on resume: 0 taken, 1 never run.
    public let callPendingAtResume: UInt8
    public let executed: Bool
    public let efiStatus: EfiStatus?
    public let held: HeldAtCall?
}

/// One efivarfs operation on a route: what came back, and every firmware and SVSM call
/// it caused.
public struct RouteOperation: Sendable {
    public enum Result: Sendable, Equatable, CustomStringConvertible {
        case read([UInt8])
        case wrote(Int)
        case listed(Int)
        case failed(Errno)
        case halted(EfiRuntimeFault)

        public var description: String {
            switch self {
            case .read(let b): return b.isEmpty ? "EOF" : "\(b.count) bytes (4 attribute bytes + \(b.count - 4) data)"
            case .wrote(let n): return "wrote \(n) bytes"
            case .listed(let n): return "\(n) names"
            case .failed(let e): return "\(Errno.symbol(e)) (\(e))"
            case .halted(let f): return "stopped: \(f)"
            }
        }
        public var errno: Errno? { if case .failed(let e) = self { return e }; return nil }
    }

    public let name: String
    public let result: Result
    public let svsmCalls: [ObservedSvsmCall]
    /// Route a2: the runtime-service calls the kernel made (empty on route b).
    public let runtimeCalls: [EfiRuntimeCallRecord]
    /// Route a2: what the kernel logged meanwhile.
    public let kernelLog: [String]
}

/// A call made on one vCPU through another vCPU's CAA: what a task migration between
/// choosing the CAA and VMGEXIT would do.
public struct MigrationObservation: Sendable, Equatable {
    public let caaChosenOn: UInt32
    public let vmgexitOn: UInt32
    public let call: ObservedSvsmCall?
    /// What the caller does with the outcome.
    public let consequence: String
    /// Why the route's own code cannot get there.
    public let whyNotOnThisRoute: String
}

extension Errno {
    /// The C name (EIO, EINTR, …) for the scenario's lines.
    static func symbol(_ e: Errno) -> String {
        switch e {
        case .ioError: return "EIO"
        case .interrupted: return "EINTR"
        case .invalidArgument: return "EINVAL"
        case .noSuchFile: return "ENOENT"
        case .noSpace: return "ENOSPC"
        case .notSupported: return "EOPNOTSUPP"
        case .readOnlyFileSystem: return "EROFS"
        case .permissionDenied: return "EACCES"
        default: return "errno \(e.rawValue)"
        }
    }
}

extension SvsmCallLog {
    /// The entries as observations, with the CAA the SVSM binds to each vCPU now.
    func observations(_ entries: [Entry], servedCaa: (UInt32) -> GuestPhysicalAddress?) -> [ObservedSvsmCall] {
        entries.map { e in
            ObservedSvsmCall(apicId: e.record.apicId, caaUsed: e.record.caa, caaServed: servedCaa(e.record.apicId),
                             function: e.record.mmFunction?.name ?? e.record.call.name,
                             callPendingAtResume: e.record.callPendingAtResume, executed: e.record.error != .notExecuted,
                             efiStatus: e.record.efiStatus, held: e.held)
        }
    }
}
