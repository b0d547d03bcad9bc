import ArgumentParser
import CRunSandbox
import Foundation
import EfiTypes
import Platform
import VariableService

/// `efivarfs-bridge run [mount options] -- CMD [ARGS...]`: CMD runs in a private
/// mount namespace where the store is mounted at /sys/firmware/efi/efivars and looks like
/// the kernel's efivarfs, so EFI tools work unchanged.
///
/// This file only checks the command line and finds a live mount of the same store; the
/// namespace, the mount and the seccomp supervisor are C (Sources/CRunSandbox), started by
/// exec'ing this binary again: unshare(CLONE_NEWNS) moves only the calling thread, and a
/// threaded process may only make async-signal-safe calls between fork and exec. The exec
/// keeps our pid, so signals sent to `run` reach the supervisor, which forwards them.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a command that sees the variable store as efivarfs at /sys/firmware/efi/efivars.",
        discussion: """
            CMD runs in a private mount namespace: the store is mounted at \
            /sys/firmware/efi/efivars (by a mount started for it, or a live mount of the \
            same store), /sys/firmware/efi exists, statfs reports EFIVARFS_MAGIC and the \
            mount table says efivarfs — for CMD only; the host's mounts and /sys stay as \
            they are. Everything is unmounted when CMD ends (or run is killed). CMD's exit \
            status is run's. Takes the store and mount options of `mount`.

            Examples:
              efivarfs-bridge run -- efibootmgr -v
              efivarfs-bridge run --enroll-generate /tmp/keys -- mokutil --sb-state
              efivarfs-bridge run --store /var/lib/vm1/efivars --shell
            """
    )

    @Flag(help: "Run an interactive shell ($SHELL, else /bin/sh) in that view instead of a command.")
    var shell = false

    @Flag(name: .customLong("keep-container"), help: "In a container, keep its marker (/.dockerenv) visible to CMD; bootctl then says 'Not booted with EFI'.")
    var keepContainer = false

    // The options of `mount`, passed on to the mount that run starts (checked by parsing them
    // as `mount` does, below).
    @Option(name: .short, help: ArgumentHelp("Mount options: uid=N, gid=N, allow_other.", valueName: "options"))
    var options: [String] = []
    @OptionGroup var machine: MachineOptions
    @OptionGroup var logging: LoggingOptions
    @OptionGroup var server: ServerOptions

    @Argument(parsing: .postTerminator, help: ArgumentHelp("The command and its arguments, after --.", valueName: "CMD"))
    var command: [String] = []

    /// Where the kernel mounts efivarfs, and where every tool looks.
    static let efivarsDirectory = "/sys/firmware/efi/efivars"

    func validate() throws {
        if shell && !command.isEmpty { throw ValidationError("give either --shell or a command after --, not both") }
        if !shell && command.isEmpty { throw ValidationError("name a command after -- (efivarfs-bridge run -- efibootmgr) or use --shell") }
        // Whatever `mount` would refuse, refuse here, before any namespace exists.
        do { _ = try MountCommand.parse(Self.mountArguments() + [Self.efivarsDirectory]) } catch {
            throw ValidationError(MountCommand.message(for: error))
        }
    }

    /// Our own command-line words between `run` and `--`, without run's own flags: passed
    /// verbatim to `mount`, so that every mount option (present and future) means the same.
    static func mountArguments() -> [String] {
        let all = CommandLine.arguments
        guard let start = all.firstIndex(of: "run") else { return [] }
        let rest = all[(start + 1)...]
        let end = rest.firstIndex(of: "--") ?? rest.endIndex
        return rest[rest.startIndex..<end].filter { $0 != "--shell" && $0 != "--keep-container" }
    }

    func run() throws {
        let cmd = shell ? [ProcessInfo.processInfo.environment["SHELL"].flatMap { $0.isEmpty ? nil : $0 } ?? "/bin/sh"] : command
        let live = try liveMountOfStore()
        var argv = [CommandLine.arguments[0], String(cString: ebr_run_sandbox_marker())]
        if keepContainer { argv.append("--keep-container") }
        if logging.verbose { argv.append("--verbose") }
        if let live { argv += ["--reuse", live.mountPoint, live.pid] }
        argv += ["--"] + (live == nil ? Self.mountArguments() : []) + ["--"] + cmd
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        execv("/proc/self/exe", &cargs)
        let reason = String(cString: strerror(errno))
        cargs.forEach { free($0) }
        throw cliFail("cannot start the sandbox (exec /proc/self/exe): \(reason)")
    }

    /// When a live mount already serves the store, `mount` would fail with "the store ... is
    /// in use by process N". Its lock file (StoreLock) names the owner's control socket,
    /// whose file name is derived from the mount point (ControlSocket.path): the mount in
    /// our mount table with that name is the one CMD gets, bind-mounted. A store locked by a
    /// mount we cannot see (another run's private namespace) gets mount's error.
    func liveMountOfStore() throws -> (mountPoint: String, pid: String)? {
        let owner: (pid: String, control: String?)?
        let store: String
        if let file = machine.liveFd ?? machine.liveJson {
            store = file; owner = StoreOwner.ofVariableFile(file)
        } else if let dir = machine.storeDirectory {
            store = dir; owner = StoreOwner.ofDirectory(dir)
        } else {
            return nil  // --ephemeral: nobody else can hold it
        }
        guard let owner else { return nil }
        if let control = owner.control, let point = Self.mountPoint(servingControlSocket: control) {
            return (point, owner.pid)
        }
        // Word for word what `mount` says.
        throw cliFail(Machine.BootError.store(.locked(store: store, owner: "process \(owner.pid)", control: owner.control)).description)
    }

    /// The efivarfs-bridge mount in our mount table whose control socket is `control`.
    /// The socket's file name is the CRC-32 of the mount point's real path
    /// (ControlSocket.path(forMountPoint:)); mountinfo already shows real paths, so the name
    /// is computed from the text alone. Nothing here may touch the mounts themselves: a
    /// stat of some other, hung FUSE mount would hang run.
    static func mountPoint(servingControlSocket control: String) -> String? {
        let name = (control as NSString).lastPathComponent
        guard let table = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
        for line in table.split(separator: "\n") {
            let halves = line.components(separatedBy: " - ")
            guard halves.count == 2, halves[1].hasPrefix("fuse.efivarfs ") else { continue }
            let fields = halves[0].split(separator: " ")
            guard fields.count > 4 else { continue }
            let point = unescapeMountField(String(fields[4]))
            if String(Crc32.checksum(Array(point.utf8)), radix: 16) + ".sock" == name { return point }
        }
        return nil
    }

    /// fs/proc_namespace.c mangle(): space, tab, newline and backslash as \ooo.
    static func unescapeMountField(_ s: String) -> String {
        var out = [UInt8]()
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "\\"), i + 3 < b.count, let v = UInt8(String(decoding: b[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                out.append(v); i += 4
            } else {
                out.append(b[i]); i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
