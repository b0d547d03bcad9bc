import Foundation

/// Group commit for the native store's log (issue #9): a SetVariable appends its records
/// while it holds the store lock, releases the lock, and only then waits for them to be on
/// disk. The first waiter that finds no fdatasync running starts one and it covers every
/// record appended before it began, so with several writers one fdatasync acknowledges
/// many SetVariables instead of each paying for its own while holding the store.
///
/// Tickets count appends (one per request with non-volatile changes); `durable` is the
/// newest ticket known to be on disk, `failedThrough` the newest one rolled back after a
/// failed fdatasync. A ticket is answered when it is at most either.
///
/// What this gives up: between its append and its fdatasync a change is visible to other
/// requests (a GetVariable may return a value whose SetVariable has not returned yet),
/// as a page cache shows written data before fsync. The writer itself is acknowledged only
/// after the fdatasync, so the crash guarantee of `NativeStoreFile` is unchanged.
final class GroupCommit: @unchecked Sendable {
    private let condition = NSCondition()
    private var staged: UInt64 = 0
    private var stagedLogEnd = 0
    private var durable: UInt64 = 0
    private var failedThrough: UInt64 = 0
    private var syncing = false
    /// fdatasync calls made and tickets they acknowledged (for `stats` and the benchmark).
    private(set) var syncs = 0
    private(set) var acknowledged: UInt64 = 0

    /// Records an append that ended the log at `logEnd`; called with the store lock held,
    /// after the records are written. Returns the request's ticket.
    func publish(logEnd: Int) -> UInt64 {
        condition.lock(); defer { condition.unlock() }
        staged += 1
        stagedLogEnd = logEnd
        return staged
    }

    /// The newest ticket handed out (read with the store lock held).
    var newestTicket: UInt64 { condition.lock(); defer { condition.unlock() }; return staged }

    /// Blocks until `ticket` is durable (true) or rolled back (false). `sync` runs the
    /// fdatasync, outside every lock; `settle` then runs with the outcome, the newest ticket
    /// and log end the sync covered, and returns the ticket now known durable (which may be
    /// newer, after a compaction) — or, on failure, the newest ticket it rolled back.
    func wait(for ticket: UInt64, sync: () -> Bool, settle: (_ ok: Bool, _ ticket: UInt64, _ logEnd: Int) -> UInt64) -> Bool {
        condition.lock()
        while true {
            if ticket <= durable { condition.unlock(); return true }
            if ticket <= failedThrough { condition.unlock(); return false }
            if syncing { condition.wait(); continue }
            syncing = true
            let target = staged, targetEnd = stagedLogEnd
            condition.unlock()
            let ok = sync()
            let settled = settle(ok, target, targetEnd)
            condition.lock()
            syncing = false
            syncs += 1
            if ok {
                acknowledged += max(settled, durable) - durable
                durable = max(durable, settled)
            } else {
                failedThrough = max(failedThrough, settled)
            }
            condition.broadcast()
        }
    }
}
