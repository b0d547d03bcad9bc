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
/// from these. `pthread_mutex_lock` is intercepted, so the sanitizer checks the
/// real locking.
public final class Locked<Value>: @unchecked Sendable {
    // For a lock without data use `Lock`: a zero-sized `value` here shares its address
    // with other memory of the object, and ThreadSanitizer reports the inout access to it.
    @usableFromInline let mutex: UnsafeMutablePointer<pthread_mutex_t>
    // The value lives in its own allocation and `withLock` is inlinable: a stored property
    // passed inout costs a dynamic exclusivity check on every call, and an unspecialized
    // generic call a metadata lookup, on every lock the request path takes.
    @usableFromInline let value: UnsafeMutablePointer<Value>

    public init(_ value: Value) {
        mutex = .allocate(capacity: 1)
        self.value = .allocate(capacity: 1)
        self.value.initialize(to: value)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        value.deinitialize(count: 1)
        value.deallocate()
    }

    @inlinable
    public func withLock<Result, E: Error>(_ body: (inout Value) throws(E) -> Result) throws(E) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value.pointee)
    }
}

/// A critical section without data (the kernel's `efivars_lock`): a pthread mutex, like
/// `Locked`, but with nothing behind it — `Locked<Void>`'s zero-sized value made
/// ThreadSanitizer see its inout access as racing with the object's header.
public final class Lock: @unchecked Sendable {
    @usableFromInline let mutex: UnsafeMutablePointer<pthread_mutex_t>

    public init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @inlinable
    public func withLock<Result, E: Error>(_ body: () throws(E) -> Result) throws(E) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}
