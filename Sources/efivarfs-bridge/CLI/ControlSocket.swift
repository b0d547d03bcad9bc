import ArgumentParser
import Driver
import EfiTypes
import Efivarfs
import Foundation
import Guest
import MmWire
import Platform
import Trace
import VariableService

/// The control channel of a live mount: a Unix socket the server answers with one document
/// per connection. Its path is derived from the mount point, so `stats` needs only the
/// mount point: `$XDG_RUNTIME_DIR` (else /tmp) `/efivarfs-bridge-<uid>/<crc32 of the mount
/// point's real path>.sock`. A request line "stats" (or nothing) gets the statistics
/// document; a JSON object `{"argv": [...]}` runs that scripting command with this
/// server's driver and gets its `CommandOutput` back as JSON.
enum ControlSocket {
    static func path(forMountPoint mountPoint: String) -> String {
        let resolved = realPath(ofMountPoint: mountPoint)
        let base = ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        let name = String(Crc32.checksum(Array(resolved.utf8)), radix: 16)
        return "\(base)/efivarfs-bridge-\(getuid())/\(name).sock"
    }

    /// The mount point's real path, found without a stat of the mount point itself: on a
    /// live mount that stat is a FUSE request to the server, and a stopped or hung server
    /// leaves the caller waiting in the kernel (request_wait_answer, state D) — `stats` of a
    /// stopped server hung there instead of saying it did not answer. Only the parent
    /// directory is resolved (realpath); the last component is followed only when it is a
    /// symbolic link, which readlink(2) learns from the parent directory without asking the
    /// mounted filesystem.
    static func realPath(ofMountPoint mountPoint: String) -> String {
        // Absolute and without "." or ".." (lexically: getcwd(3) asks no filesystem).
        func lexical(_ p: String) -> String {
            var parts: [Substring] = []
            let absolute = p.hasPrefix("/") ? p : FileManager.default.currentDirectoryPath + "/" + p
            for c in absolute.split(separator: "/") where c != "." {
                if c == ".." { _ = parts.popLast() } else { parts.append(c) }
            }
            return "/" + parts.joined(separator: "/")
        }
        var path = lexical(mountPoint)
        for _ in 0..<40 {  // MAXSYMLINKS
            guard path != "/" else { return path }
            let parent = (path as NSString).deletingLastPathComponent
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: path) else {
                guard let r = realpath(parent, nil) else { return path }
                defer { free(r) }
                return (String(cString: r) as NSString).appendingPathComponent((path as NSString).lastPathComponent)
            }
            path = lexical(target.hasPrefix("/") ? target : parent + "/" + target)
        }
        return path
    }

    /// How long a client waits for a server's answer: a stopped or hung server must not hang
    /// the script that asked ($EFIVARFS_BRIDGE_CONTROL_TIMEOUT seconds, default 10).
    static var timeout: TimeInterval {
        ProcessInfo.processInfo.environment["EFIVARFS_BRIDGE_CONTROL_TIMEOUT"].flatMap(TimeInterval.init) ?? 10
    }

    static func address(_ path: String) -> sockaddr_un? {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in bytes.enumerated() { p[i] = b }
            p[bytes.count] = 0
        }
        return addr
    }

    /// Serves every connection on a thread of its own until the process ends.
    static func serve(path: String, stats: @escaping @Sendable () -> String, machine: Machine, readOnly: Bool = false) {
        let dir = (path as NSString).deletingLastPathComponent
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0, var addr = address(path) else { return }
        let bound = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(fd, 8) == 0 else { close(fd); return }
        let thread = Thread {
            while true {
                let c = accept(fd, nil, nil)
                if c < 0 { if errno == EINTR { continue }; return }
                // A client that never finishes its request must not stop the others.
                setTimeout(c, timeout)
                // As large as a client's reply may be: a `set --data-file` of a few MiB
                // must reach perform() and get its size refusal, not be cut short.
                let request = readAll(c, limit: 64 << 20)
                // A client that gave up waiting (this server was stopped past its timeout)
                // has closed its end, and told its caller the command was not answered: do
                // not run it now. (A client that only finished its request has shut down its
                // writing side: no POLLHUP.)
                var peer = pollfd(fd: c, events: 0, revents: 0)
                if poll(&peer, 1, 0) == 1, peer.revents & Int16(POLLHUP) != 0 { close(c); continue }
                let reply = answer(request, stats: stats, machine: machine, readOnly: readOnly)
                _ = reply.withUnsafeBytes { write(c, $0.baseAddress, reply.count) }
                close(c)
            }
        }
        thread.start()
    }

    static func setTimeout(_ fd: Int32, _ seconds: TimeInterval) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Everything up to end of file, or nil when the peer did not finish in time.
    static func readAll(_ fd: Int32, limit: Int) -> [UInt8]? {
        var out = [UInt8]()
        var buf = [UInt8](zeroed: 4096)
        while out.count < limit {
            let n = read(fd, &buf, buf.count)
            if n < 0 {
                if errno == EINTR { continue }
                return errno == EAGAIN || errno == EWOULDBLOCK ? nil : out
            }
            if n == 0 { break }
            out += buf[0..<n]
        }
        return out
    }

    static func answer(_ request: [UInt8]?, stats: () -> String, machine: Machine, readOnly: Bool = false) -> [UInt8] {
        guard let request, let obj = try? JSONSerialization.jsonObject(with: Data(request)) as? [String: Any],
              let argv = obj["argv"] as? [String] else {
            return Array(stats().utf8)
        }
        var output: CommandOutput
        do {
            let parsed = try EfivarfsBridge.parseAsRoot(argv)
            if let command = parsed as? any DriverCommand {
                // A store served read-only (-o ro) is read-only for the scripting commands
                // too: the mount's EROFS must not be bypassed through its own server.
                if readOnly && type(of: command).changesStore {
                    output = .fail("\(argv.dropFirst().first ?? ""): refused: EFI_WRITE_PROTECTED (the live mount serving this store is read-only, -o ro)",
                                   code: CliExit.refused)
                } else {
                    output = SvsmOperation.run("control:" + (type(of: command).configuration.commandName ?? "command")) { command.perform(on: machine) }
                }
            } else {
                output = .fail("\(argv.first ?? "") cannot run through a live mount", code: 64)
            }
        } catch {
            output = .fail(EfivarfsBridge.message(for: error), code: 64)
        }
        return Array((try? JSONEncoder().encode(output)) ?? Data())
    }

    enum ExchangeError: Error {
        /// Nobody listens (a stale socket): the store's lock says who held it.
        case unreachable
        /// The server took the request and did not answer in time (stopped, hung).
        case noAnswer
        /// The server closed the connection without a whole answer.
        case closed
    }

    /// Runs a scripting command in the server that holds the store.
    static func run(path: String, arguments: [String]) throws(ExchangeError) -> CommandOutput {
        guard let request = try? JSONSerialization.data(withJSONObject: ["argv": arguments]) else { throw .unreachable }
        let reply = try exchange(path: path, request: Array(request))
        guard let output = try? JSONDecoder().decode(CommandOutput.self, from: Data(reply)) else { throw .closed }
        return output
    }

    static func exchange(path: String, request: [UInt8]) throws(ExchangeError) -> [UInt8] {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0, var addr = address(path) else { throw .unreachable }
        defer { close(fd) }
        setTimeout(fd, timeout)
        let ok = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard ok == 0 else { throw .unreachable }
        // A timeout (EAGAIN) is a server that does not answer; any other failure, or an empty
        // reply, one that closed the connection (MSG_NOSIGNAL: no SIGPIPE to die of).
        var sent = 0
        while sent < request.count {
            let n = request.withUnsafeBytes { send(fd, $0.baseAddress! + sent, request.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw errno == EAGAIN || errno == EWOULDBLOCK ? .noAnswer : .closed
            }
            sent += n
        }
        shutdown(fd, Int32(SHUT_WR))
        guard let reply = readAll(fd, limit: 64 << 20) else { throw .noAnswer }
        guard !reply.isEmpty else { throw .closed }
        return reply
    }

    static func query(path: String) throws(ExchangeError) -> String {
        String(decoding: try exchange(path: path, request: Array("stats\n".utf8)), as: UTF8.self)
    }

    /// The JSON document a live mount answers with. Keys are sorted, so equal counts come
    /// out in the same order on every run.
    static func report(statistics: CallStatistics, vcpus: VcpuSet, service: VariableService, extra: String = "") -> String {
        let s = statistics.snapshot
        let g = service.syncStatistics
        let usage = vcpus.usage
        func obj(_ d: [String: Int]) -> String {
            "{" + d.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}"
        }
        return "{\"svsm_calls\":\(s.calls),\"failed_calls\":\(s.failedCalls),\"efi_errors\":\(s.efiErrors),"
            + "\"per_efi_status\":\(obj(s.perEfiStatus)),"
            + "\"per_call\":\(obj(s.perCall)),\"per_mm_function\":\(obj(s.perMmFunction)),"
            + "\"vcpus\":{\"count\":\(vcpus.count),\"in_use\":\(usage.inUse),\"peak_in_use\":\(usage.peak),\"used\":\(s.vcpusUsed.count)},"
            + "\"store\":{\"fdatasyncs\":\(g.syncs),\"writes_acknowledged\":\(g.acknowledged)},"
            + "\"operations\":" + operations(s.perOperation) + extra + "}\n"
    }

    /// Per operation kind: what its SVSM calls cost (`operations_with_calls` counts
    /// operations that made at least one call; the efivarfs counts are in `efivarfs_operations`).
    static func operations(_ perOperation: [String: OperationCost]) -> String {
        "{" + perOperation.sorted { $0.key < $1.key }.map { k, c in
            "\"\(k)\":{\"operations_with_calls\":\(c.operationsWithCalls),\"svsm_calls\":\(c.calls),\"mm_round_trips\":\(c.mmRoundTrips),"
                + "\"world_switches\":\(c.worldSwitches),\"request_bytes\":\(c.requestBytes),\"reply_bytes\":\(c.replyBytes),"
                + "\"modelled_ns\":\(c.modelledNanoseconds)}"
        }.joined(separator: ",") + "}"
    }

    static func counts<N: BinaryInteger>(_ d: [String: N]) -> String {
        "{" + d.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}"
    }
}
