import EfiTypes
import Guest
import MmWire
import SvsmAbi

/// Every SVSM call the guest makes, each with what the guest held at that moment (taken by
/// a probe the route installs), so that call counts and lock states come from the run.
/// What the calling side holds during one SVSM call; nil where the model cannot see it.
public struct HeldAtCall: Sendable, Equatable {
    /// `efivars_lock`, taken by efivarfs around each firmware call.
    public var efivarsLock: Bool?
    /// `efi_runtime_lock`, taken by the runtime-service wrappers (route a2 only).
    public var efiRuntimeLock: Bool?
    /// The vCPU the call runs on is held by its caller: the model of preemption (a2) or
    /// interrupts (b) being off on that CPU.
    public var vcpuHeld: Bool
    /// The interrupt flag of that vCPU, where the route tracks it.
    public var interruptsEnabled: Bool?
}

final class SvsmCallLog: SvsmCallObserver, Sendable {
    struct Entry: Sendable {
        let record: SvsmCallRecord
        let held: HeldAtCall?
    }

    private let entries = Locked<[Entry]>([])
    private let probe = Locked<(@Sendable (SvsmCallRecord) -> HeldAtCall)?>(nil)

    func svsmCallCompleted(_ record: SvsmCallRecord) {
        let p = probe.withLock { $0 }
        let held = p?(record)
        entries.withLock { $0.append(Entry(record: record, held: held)) }
    }

    func setProbe(_ p: @escaping @Sendable (SvsmCallRecord) -> HeldAtCall) { probe.withLock { $0 = p } }

    var count: Int { entries.withLock { $0.count } }

    /// The entries after the first `mark` ones.
    func since(_ mark: Int) -> [Entry] { entries.withLock { Array($0.dropFirst(mark)) } }

    /// The calls `body` makes.
    func measure<R>(_ body: () -> R) -> (R, [Entry]) {
        let mark = count
        let r = body()
        return (r, since(mark))
    }
}
