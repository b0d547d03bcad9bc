import Foundation
import Testing

/// Runs shell commands and mounts the real bridge for integration tests. Every mount is
/// unmounted by `withMount` whatever the test body does.
enum Shell {
    struct Result { let status: Int32; let out: String; let err: String }

    @discardableResult
    static func run(_ command: String, environment: [String: String] = [:], input: Data? = nil) -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["-c", command]
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        let inPipe = Pipe()
        p.standardInput = inPipe
        do { try p.run() } catch { return Result(status: -1, out: "", err: "\(error)") }
        if let input { inPipe.fileHandleForWriting.write(input) }
        try? inPipe.fileHandleForWriting.close()
        // Read both pipes to the end before waiting, so a chatty command cannot block.
        let group = DispatchGroup()
        nonisolated(unsafe) var o = Data(), e = Data()
        group.enter(); DispatchQueue.global().async { o = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        group.enter(); DispatchQueue.global().async { e = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        group.wait()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, out: String(decoding: o, as: UTF8.self), err: String(decoding: e, as: UTF8.self))
    }
}

enum Bridge {
    /// The built `efivarfs-bridge` next to the test bundle (or EFIVARFS_BRIDGE_BIN).
    static var binary: String {
        if let b = ProcessInfo.processInfo.environment["EFIVARFS_BRIDGE_BIN"] { return b }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<3 {
            let candidate = dir.appendingPathComponent("efivarfs-bridge").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return FileManager.default.currentDirectoryPath + "/.build/debug/efivarfs-bridge"
    }

    static func makeTempDir() -> String {
        var template = Array((NSTemporaryDirectory() + "efivarfs-bridge-test.XXXXXX").utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        return String(cString: p!)
    }

    static func isMounted(_ dir: String) -> Bool {
        let mounts = (try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? ""
        return mounts.split(separator: "\n").contains { $0.split(separator: " ").dropFirst().first.map(String.init) == dir }
    }

    /// Unmounts and waits until the daemon serving `dir` has exited (up to 20 s), so that
    /// what it writes on the way out (the trace, the store's lock) is done before the test
    /// goes on — slow under the sanitizers.
    static func unmount(_ dir: String) {
        let daemons = Shell.run("pgrep -f -- 'efivarfs-bridge mount .*\(dir)'").out.split(separator: "\n").compactMap { Int32($0) }
        if isMounted(dir) { Shell.run("fusermount3 -u '\(dir)' || umount -l '\(dir)'") }
        for _ in 0..<50 where isMounted(dir) { usleep(100_000) }
        // Alive and not a zombie (a container's init may not reap it at once).
        func running(_ pid: Int32) -> Bool {
            guard kill(pid, 0) == 0, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            return !stat[close...].hasPrefix(") Z")
        }
        for pid in daemons {
            for _ in 0..<200 where running(pid) { usleep(100_000) }
        }
    }

    /// Mounts the bridge on a fresh temporary directory, runs `body`, and always unmounts.
    /// Without a `--store` of its own the mount is `--ephemeral`: a fresh default store.
    static func withMount(_ arguments: String = "", _ body: (String) throws -> Void) throws {
        let dir = makeTempDir()
        defer {
            unmount(dir)
            rmdir(dir)
        }
        let storeArgument = ["--store", "--from-fd", "--from-json"].contains { arguments.contains($0) } ? "" : "--ephemeral"
        let r = Shell.run("'\(binary)' mount \(storeArgument) \(arguments) '\(dir)'")
        try #require(r.status == 0, "mount failed: \(r.err)")
        try #require(isMounted(dir), "not in /proc/mounts after mount returned")
        try body(dir)
    }
}

let globalGuid = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
let testGuid = "210be57c-9849-4fc7-a635-e6382d1aec27"
