/// A seeded xorshift64* generator behind a lock: fault injection draws from it, so a run
/// with the same seed and the same sequence of calls makes the same decisions.
public final class SeededRandom: Sendable {
    private let state: Locked<UInt64>

    public init(seed: UInt64) { state = Locked(seed | 1) }

    /// True with probability `p` (0 never draws).
    public func fires(_ p: Double) -> Bool {
        guard p > 0 else { return false }
        let x: UInt64 = state.withLock { s in
            s ^= s >> 12; s ^= s << 25; s ^= s >> 27
            return s &* 2685821657736338717
        }
        return Double(x >> 11) / Double(1 << 53) < p
    }
}
