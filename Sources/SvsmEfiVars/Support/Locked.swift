#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A value behind a pthread mutex, with `Mutex`'s `withLock` shape.
///
/// Used instead of Synchronization's `Mutex`: on Linux that one locks with raw futex system
/// calls, which ThreadSanitizer does not intercept, so every access made under it was
/// reported as a data race and `swift test --sanitize=thread` could not tell real races
/// from these (issue #10). `pthread_mutex_lock` is intercepted, so the sanitizer checks the
/// real locking.
public final class Locked<Value>: @unchecked Sendable {
    // The mutex comes first: a zero-sized `value` (Locked<Void>) would otherwise share its
    // address with the next field, and ThreadSanitizer would report the inout access to
    // `value` as racing with reads of `mutex`.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    public init(_ value: Value) {
        mutex = .allocate(capacity: 1)
        self.value = value
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    public func withLock<Result, E: Error>(_ body: (inout Value) throws(E) -> Result) throws(E) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
