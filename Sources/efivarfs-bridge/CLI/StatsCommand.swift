import ArgumentParser
import Foundation
import SvsmEfiVars

/// The statistics channel of a live mount: a Unix socket the server answers with one JSON
/// document per connection. Its path is derived from the mount point, so `stats` needs only
/// the mount point: `$XDG_RUNTIME_DIR` (else /tmp) `/efivarfs-bridge-<uid>/<crc32 of the
/// mount point's real path>.sock`.
enum ControlSocket {
    static func path(forMountPoint mountPoint: String) -> String {
        let real = (try? FileManager.default.destinationOfSymbolicLink(atPath: mountPoint)) ?? mountPoint
        let resolved = URL(fileURLWithPath: real).standardizedFileURL.resolvingSymlinksInPath().path
        let base = ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        let name = String(Crc32.checksum(Array(resolved.utf8)), radix: 16)
        return "\(base)/efivarfs-bridge-\(getuid())/\(name).sock"
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

    /// Serves every connection on a thread of its own until the process ends: a request
    /// line "stats" (or nothing) gets the statistics document; a JSON object
    /// `{"argv": [...]}` runs that scripting command with this server's driver and gets its
    /// `CommandOutput` back as JSON.
    static func serve(path: String, stats: @escaping @Sendable () -> String, machine: Machine) {
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
                let request = readAll(c, limit: 1 << 20)
                let reply = answer(request, stats: stats, machine: machine)
                _ = reply.withUnsafeBytes { write(c, $0.baseAddress, reply.count) }
                close(c)
            }
        }
        thread.start()
    }

    static func readAll(_ fd: Int32, limit: Int) -> [UInt8] {
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 4096)
        while out.count < limit {
            let n = read(fd, &buf, buf.count)
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return out
    }

    static func answer(_ request: [UInt8], stats: () -> String, machine: Machine) -> [UInt8] {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(request)) as? [String: Any], let argv = obj["argv"] as? [String] else {
            return Array(stats().utf8)
        }
        var output: CommandOutput
        do {
            let parsed = try EfivarfsBridge.parseAsRoot(argv)
            if let command = parsed as? any DriverCommand {
                output = command.perform(on: machine)
            } else {
                output = .fail("\(argv.first ?? "") cannot run through a live mount", code: 64)
            }
        } catch {
            output = .fail(EfivarfsBridge.message(for: error), code: 64)
        }
        return Array((try? JSONEncoder().encode(output)) ?? Data())
    }

    /// Runs a scripting command in the server that holds the store.
    static func run(path: String, arguments: [String]) -> CommandOutput? {
        guard let request = try? JSONSerialization.data(withJSONObject: ["argv": arguments]),
              let reply = exchange(path: path, request: Array(request)) else { return nil }
        return try? JSONDecoder().decode(CommandOutput.self, from: Data(reply))
    }

    static func exchange(path: String, request: [UInt8]) -> [UInt8]? {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0, var addr = address(path) else { return nil }
        defer { close(fd) }
        let ok = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard ok == 0 else { return nil }
        _ = request.withUnsafeBytes { write(fd, $0.baseAddress, request.count) }
        shutdown(fd, Int32(SHUT_WR))
        return readAll(fd, limit: 64 << 20)
    }

    static func query(path: String) -> String? {
        exchange(path: path, request: Array("stats\n".utf8)).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The JSON document a live mount answers with.
    static func report(statistics: CallStatistics, vcpus: VcpuSet, service: VariableService) -> String {
        let s = statistics.snapshot
        let g = service.groupCommitStatistics
        let usage = vcpus.usage
        func obj(_ d: [String: Int]) -> String {
            "{" + d.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}"
        }
        return "{\"svsm_calls\":\(s.calls),\"failed_calls\":\(s.failedCalls),\"efi_errors\":\(s.efiErrors),"
            + "\"per_call\":\(obj(s.perCall)),\"per_mm_function\":\(obj(s.perMmFunction)),"
            + "\"vcpus\":{\"count\":\(vcpus.count),\"in_use\":\(usage.inUse),\"peak_in_use\":\(usage.peak),\"used\":\(s.vcpusUsed.count)},"
            + "\"store\":{\"fdatasyncs\":\(g.syncs),\"writes_acknowledged\":\(g.acknowledged)}}\n"
    }
}

struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats",
        abstract: "Ask a live mount for its counters: SVSM calls per call and MM function, errors, vCPU use.",
        discussion: "Examples:\n  efivarfs-bridge stats /tmp/efivars\n  efivarfs-bridge stats --json /tmp/efivars | jq .per_mm_function")
    @Argument(help: "The mount point of a running efivarfs-bridge.") var mountPoint: String
    @Flag(help: "The JSON document as the server sends it.") var json = false

    func run() throws {
        let path = ControlSocket.path(forMountPoint: mountPoint)
        guard let text = ControlSocket.query(path: path) else {
            throw cliFail("no efivarfs-bridge answers for \(mountPoint) (socket \(path))")
        }
        if json { print(text, terminator: ""); return }
        guard let o = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else { throw cliFail("unreadable answer from \(path)") }
        print("SVSM calls: \(o["svsm_calls"] ?? 0), failed: \(o["failed_calls"] ?? 0), EFI errors: \(o["efi_errors"] ?? 0)")
        if let v = o["vcpus"] as? [String: Any] {
            print("vCPUs: \(v["count"] ?? 0), in use now: \(v["in_use"] ?? 0), at most at once: \(v["peak_in_use"] ?? 0), used so far: \(v["used"] ?? 0)")
        }
        if let st = o["store"] as? [String: Any], let syncs = st["fdatasyncs"] as? Int, syncs > 0 {
            print("durable store: \(st["writes_acknowledged"] ?? 0) SetVariables acknowledged by \(syncs) fdatasyncs (group commit)")
        }
        for (title, key) in [("per SVSM call", "per_call"), ("per MM function", "per_mm_function")] {
            print(title)
            for (k, n) in ((o[key] as? [String: Int]) ?? [:]).sorted(by: { $0.value > $1.value }) { print("  \(k): \(n)") }
        }
    }
}
