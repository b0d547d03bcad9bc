import EfiTypes
import Foundation

/// The kernel's per-UID read rate limit for non-root readers: 100 reads per second, burst
/// 100; an over-limit read sleeps in 50 ms steps and never fails (kernel/user.c
/// `ratelimit_state_init(HZ, 100)`, fs/efivarfs/file.c).
final class ReadRateLimiter: Sendable {
    static let burst = 100
    static let intervalNanoseconds: UInt64 = 1_000_000_000
    static let sleepMicroseconds: UInt32 = 50_000

    private let windows = Locked([UInt32: (start: UInt64, count: Int)]())
    private let now: @Sendable () -> UInt64
    private let sleep: @Sendable (UInt32) -> Void

    init(now: @escaping @Sendable () -> UInt64 = { DispatchTime.now().uptimeNanoseconds },
         sleep: @escaping @Sendable (UInt32) -> Void = { usleep($0) }) {
        self.now = now
        self.sleep = sleep
    }

    /// `__ratelimit`: true if this read may go now.
    func tryAcquire(uid: UInt32) -> Bool {
        let t = now()
        return windows.withLock { w -> Bool in
            var entry = w[uid] ?? (t, 0)
            if t &- entry.start >= ReadRateLimiter.intervalNanoseconds { entry = (t, 0) }
            defer { w[uid] = entry }
            guard entry.count < ReadRateLimiter.burst else { return false }
            entry.count += 1
            return true
        }
    }

    /// Blocks until the read may go: `while (!__ratelimit(...)) msleep(50)`.
    func wait(uid: UInt32) {
        while !tryAcquire(uid: uid) { sleep(ReadRateLimiter.sleepMicroseconds) }
    }
}
