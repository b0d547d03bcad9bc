#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Which filesystem (or command) operation an SVSM call was made for: efivarfs's `read`,
/// `write`, `unlink`, `statfs`, the mount-time `enumerate`, the firmware and OS `boot`, a
/// scripting command (`cli:get`) ... The tag is set for the current thread from the
/// efivarfs entry point, and the transport copies it into the call record, so that traces
/// and statistics can say what each efivarfs operation costs in SVSM calls.
///
/// Per thread, not a `@TaskLocal`: `run` takes a synchronous body, so an operation never
/// leaves the thread that started it, and a task-local lookup (made twice per SVSM call)
/// cost a metadata lookup and a thread-local walk each time on the request path.
public struct SvsmOperation: Sendable, Hashable {
    public var kind: String
    /// Unique per process: the calls of one operation share it.
    public var id: UInt64

    private static let nextId = Atomic<UInt64>(1)

    /// The operation the current thread is running, if any.
    public static var current: SvsmOperation? { OperationSlot.current.operation }

    /// Runs `body` as one operation of `kind`: every SVSM call it makes is tagged with it.
    /// Nested operations keep the outer tag (a write's size query belongs to the write).
    public static func run<R, E: Error>(_ kind: String, _ body: () throws(E) -> R) throws(E) -> R {
        let slot = OperationSlot.current
        if slot.operation != nil { return try body() }
        slot.operation = SvsmOperation(kind: kind, id: nextId.add(1, ordering: .relaxed).oldValue)
        defer { slot.operation = nil }
        return try body()
    }
}

/// One thread's current operation, kept behind a pthread key (freed when the thread ends).
/// Only its own thread touches it.
private final class OperationSlot: @unchecked Sendable {
    var operation: SvsmOperation?

    static let key: pthread_key_t = {
        var key = pthread_key_t()
        let rc = pthread_key_create(&key) { p in
            if let p { Unmanaged<OperationSlot>.fromOpaque(p).release() }
        }
        precondition(rc == 0, "pthread_key_create failed")
        return key
    }()

    static var current: OperationSlot {
        if let p = pthread_getspecific(key) { return Unmanaged<OperationSlot>.fromOpaque(p).takeUnretainedValue() }
        let slot = OperationSlot()
        pthread_setspecific(key, Unmanaged.passRetained(slot).toOpaque())
        return slot
    }
}
