import CProcess
import Foundation

/// Background mode without fork(): the command starts itself again with `--ready-fd 3`
/// (a pipe) in a new session, and returns once the child writes a byte on it (the mount is
/// up) or exits (it failed and said why on stderr).
enum Daemon {
    static func spawnAndWait(arguments: [String]) -> Int32 {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return 1 }
        // The server lives on after we exit: it must not keep any descriptor we inherited
        // (a caller waiting for our output, or Foundation's process-exit socket, would
        // otherwise wait for the server instead of for us).
        markInheritedDescriptorsCloseOnExec(except: [fds[0], fds[1]])
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        // Close the read end first: it may itself be descriptor 3.
        posix_spawn_file_actions_addclose(&actions, fds[0])
        posix_spawn_file_actions_adddup2(&actions, fds[1], 3)
        if fds[1] != 3 { posix_spawn_file_actions_addclose(&actions, fds[1]) }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        posix_spawnattr_setflags(&attr, Int16(0x80)  /* POSIX_SPAWN_SETSID (glibc) */)
        defer { posix_spawn_file_actions_destroy(&actions); posix_spawnattr_destroy(&attr) }
        let exe = "/proc/self/exe"
        let argv = [CommandLine.arguments[0]] + arguments + ["--ready-fd", "3"]
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { cargs.forEach { free($0) } }
        // The child learns who started it, to die with it until it is ready.
        var env = ProcessInfo.processInfo.environment
        env[parentVariable] = "\(getpid())"
        var cenv: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { cenv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, exe, &actions, &attr, &cargs, &cenv)
        close(fds[1])
        guard rc == 0 else {
            FileHandle.standardError.write(Data("efivarfs-bridge: cannot start the server: \(String(cString: strerror(rc)))\n".utf8))
            close(fds[0]); return 1
        }
        // Wait for the ready byte, the end of the pipe (the server failed), or the deadline:
        // a server that crashed may be held by a crash reporter that keeps the pipe open.
        var status: Int32 = 0
        let deadline = Date().addingTimeInterval(readyTimeout)
        while true {
            var p = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 200) > 0 {
                var byte: UInt8 = 0
                let n = read(fds[0], &byte, 1)
                close(fds[0])
                if n == 1 { return 0 }
                waitpid(pid, &status, 0)
                break
            }
            if waitpid(pid, &status, WNOHANG) == pid { close(fds[0]); break }
            if Date() > deadline {
                close(fds[0])
                kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
                FileHandle.standardError.write(Data("efivarfs-bridge: the server did not come up within \(Int(readyTimeout)) s; stopped it\n".utf8))
                return 1
            }
        }
        let code = (status >> 8) & 0xff
        return status & 0x7f != 0 || code == 0 ? 1 : code
    }

    /// How long `mount` waits for its server to report the mount up.
    static let readyTimeout: TimeInterval = 60

    static func markInheritedDescriptorsCloseOnExec(except keep: Set<Int32>) {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return }
        for e in entries {
            guard let fd = Int32(e), fd > 2, !keep.contains(fd) else { continue }
            let flags = fcntl(fd, F_GETFD)
            if flags >= 0 { _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
        }
    }

    static let parentVariable = "EFIVARFS_BRIDGE_PARENT_PID"

    /// In the child, until it is ready: die with the `mount` command that started it
    /// (PR_SET_PDEATHSIG), so that a server that never comes up — say, retrying a busy SVSM —
    /// cannot outlive it. A parent that is already gone is noticed at once.
    static func dieWithParentUntilReady() {
        _ = cprocess_set_parent_death_signal(SIGKILL)
        if let p = ProcessInfo.processInfo.environment[parentVariable].flatMap({ Int32($0) }), getppid() != p {
            exit(1)
        }
    }

    /// In the child: tell the parent the mount is up, then let go of its terminal. From now
    /// on the server lives on its own.
    static func signalReady(_ fd: Int32) {
        _ = cprocess_set_parent_death_signal(0)
        unsetenv(parentVariable)
        var one: UInt8 = 1
        _ = write(fd, &one, 1)
        close(fd)
        let devNull = open("/dev/null", O_RDWR)
        if devNull >= 0 {
            dup2(devNull, 0); dup2(devNull, 1); dup2(devNull, 2)
            if devNull > 2 { close(devNull) }
        }
    }
}
