import Synchronization

/// Which filesystem (or command) operation an SVSM call was made for: efivarfs's `read`,
/// `write`, `unlink`, `statfs`, the mount-time `enumerate`, the firmware and OS `boot`, a
/// scripting command (`cli:get`) ... The tag rides along as a task-local value (on a FUSE
/// worker thread, outside any task, Swift keeps it per thread) from the efivarfs entry
/// point through the driver to the transport, which copies it into the call record, so
/// that traces and statistics can say what each efivarfs operation costs in SVSM calls.
public struct SvsmOperation: Sendable, Hashable {
    public var kind: String
    /// Unique per process: the calls of one operation share it.
    public var id: UInt64

    /// The operation the current thread (or task) is running, if any.
    @TaskLocal public static var current: SvsmOperation?

    private static let nextId = Atomic<UInt64>(1)

    /// Runs `body` as one operation of `kind`: every SVSM call it makes is tagged with it.
    /// Nested operations keep the outer tag (a write's size query belongs to the write).
    public static func run<R, E: Error>(_ kind: String, _ body: () throws(E) -> R) throws(E) -> R {
        if current != nil { return try body() }
        let op = SvsmOperation(kind: kind, id: nextId.add(1, ordering: .relaxed).oldValue)
        let result: Result<R, E> = $current.withValue(op) {
            do throws(E) { return .success(try body()) } catch { return .failure(error) }
        }
        return try result.get()
    }
}
