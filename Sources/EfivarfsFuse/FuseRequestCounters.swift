import CFuseServer

/// How many FUSE requests of each kind the kernel has sent this process's worker pool, by
/// opcode name (LOOKUP, OPEN, READ, ...), counted from each request's header as a worker
/// reads it: the cost of a workload in kernel round trips, whatever the answer was.
public enum FuseRequestCounters {
    public static func snapshot() -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for op in 0..<UInt32(CFUSE_OPCODE_SLOTS) {
            let n = cfuse_request_count(op)
            guard n > 0, let name = cfuse_opcode_name(op) else { continue }
            out[String(cString: name)] = n
        }
        return out
    }
}
