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
    private var value: Value
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    public init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
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
