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

@main
struct EfivarfsBridge: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "efivarfs-bridge",
        abstract: "A model of an SVSM-backed EFI variable driver, served as an efivarfs-compatible FUSE filesystem.",
        discussion: """
            The store lives behind a modelled SVSM (protocol 4, UEFI MM); every filesystem
            request becomes SVSM calls through a vCPU's own Calling Area.

            Examples:
              efivarfs-bridge mount /run/efivars
              EFIVARFS_PATH=/run/efivars/ efibootmgr -v
              fusermount3 -u /run/efivars
            """,
        version: "efivarfs-bridge \(BuildInfo.version)",
        subcommands: [MountCommand.self, ServeSvsmCommand.self, RunCommand.self, ListCommand.self, GetCommand.self, SetCommand.self, DeleteCommand.self, InfoCommand.self,
                      ImportCommand.self, ExportCommand.self, StatsCommand.self, ScenarioCommand.self, ModelBenchCommand.self,
                      TraceCommand.self]
    )
}

enum BuildInfo {
    static let version = "0.3.0"
}

/// `--store`, else $EFIVARFS_BRIDGE_STORE, else the per-user state directory.
func storeDirectoryFor(_ explicit: String?) -> String {
    if let s = explicit { return s }
    let env = ProcessInfo.processInfo.environment
    if let s = env["EFIVARFS_BRIDGE_STORE"], !s.isEmpty { return s }
    if let x = env["XDG_STATE_HOME"], !x.isEmpty { return x + "/efivarfs-bridge/store" }
    return (env["HOME"] ?? NSHomeDirectory()) + "/.local/state/efivarfs-bridge/store"
}

/// A size in bytes as people write it: decimal, 0x-hex, or with a K, M or G suffix
/// (powers of 1024), e.g. 262072, 0x3ffb8, 256K, 64M.
func parseByteSize(_ text: String) -> Int? {
    var t = text.trimmingCharacters(in: .whitespaces)
    var scale = 1
    if let last = t.last, let s = ["k": 1 << 10, "K": 1 << 10, "m": 1 << 20, "M": 1 << 20, "g": 1 << 30, "G": 1 << 30][last] {
        scale = s
        t.removeLast()
    }
    let value: Int?
    if t.hasPrefix("0x") || t.hasPrefix("0X") { value = Int(t.dropFirst(2), radix: 16) } else { value = Int(t) }
    guard let v = value, v >= 0 else { return nil }
    let (r, overflow) = v.multipliedReportingOverflow(by: scale)
    return overflow ? nil : r
}

/// Options shared by every command that boots a machine.
struct MachineOptions: ParsableArguments {
    // Unconditional parsing, so that `--vcpus -1` reaches the range check instead of being
    // read as an option.
    @Option(name: .long, parsing: .unconditional, help: "Number of vCPUs, 1 to 512.")
    var vcpus: Int = 4

    @Option(name: .customLong("fault"), help: ArgumentHelp("Inject a fault: drop-exit=P, busy=P, incomplete=P or spurious-entry=P (probability 0..1). Repeatable.", valueName: "name=P"))
    var faults: [String] = []

    @Option(name: .long, parsing: .unconditional, help: "Retries of an SVSM call answered BUSY or INCOMPLETE before the driver gives up (0 to 10000).")
    var maxRetries: Int = 16

    @Option(name: .long, help: ArgumentHelp("The durable variable store (a directory). Default: $EFIVARFS_BRIDGE_STORE, else $XDG_STATE_HOME/efivarfs-bridge/store, else ~/.local/state/efivarfs-bridge/store.", valueName: "directory"))
    var store: String?

    @Flag(name: .long, help: "Keep variables in memory only: every run starts from a freshly booted OVMF VM.")
    var ephemeral = false

    @Flag(name: .long, help: "Create the store if it does not exist (mount always does; other commands refuse a missing store).")
    var create = false

    @Option(name: .long, help: ArgumentHelp("Size of the non-volatile variable store: bytes, 0x-hex or with K/M/G (default 0x3ffb8, a 4M OVMF_VARS.fd's, or what the store recorded when it was made). Larger stores do not fit an fd export.", valueName: "size"))
    var nvStoreSize: String?

    @Option(name: .customLong("from-fd"), help: ArgumentHelp("Serve this OVMF_VARS.fd live: every change is written into it in place, as edk2 writes its flash (records appended, State bits flipped, a reclaim rewrites it when full); it keeps its size.", valueName: "file"))
    var fromFd: String?

    @Option(name: .customLong("from-json"), help: ArgumentHelp("Serve this QEMU uefi-vars JSON file live, rewritten atomically on each change.", valueName: "file"))
    var fromJson: String?

    @OptionGroup var profile: ProfileOptions

    var coconutPersistence: Bool { profile.coconutPersistence }

    @Option(name: .customLong("world-switch"), help: ArgumentHelp("Charge every SVSM call this modelled world-switch cost per attempt, as simulated time in traces and stats: nanoseconds (5000, 5us) or a preset: vmrun-floor (1 us), snp-estimate (5 us), slow-host (20 us). BENCHMARKS.md says where each comes from.", valueName: "ns|preset"))
    var worldSwitch: String?

    @Flag(name: .customLong("world-switch-delay"), help: "Also spend the --world-switch cost: the calling thread spins for it, so that throughput measurements feel it.")
    var worldSwitchDelay = false

    @Flag(name: .customLong("driver-cache"), help: "Keep a runtime variable cache in the driver: reads and listings answered from memory, emptied by every SetVariable (BENCHMARKS.md, \"The driver cache\").")
    var driverCache = false

    /// `--from-fd` / `--from-json`, else $EFIVARFS_BRIDGE_FROM_FD / $EFIVARFS_BRIDGE_FROM_JSON
    /// (when no other store is named on the command line).
    var liveFd: String? {
        if let f = fromFd { return f }
        guard store == nil, fromJson == nil, !ephemeral else { return nil }
        return ProcessInfo.processInfo.environment["EFIVARFS_BRIDGE_FROM_FD"].flatMap { $0.isEmpty ? nil : $0 }
    }
    var liveJson: String? {
        if let j = fromJson { return j }
        guard store == nil, liveFd == nil, !ephemeral else { return nil }
        return ProcessInfo.processInfo.environment["EFIVARFS_BRIDGE_FROM_JSON"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Whether the command line names a store (the default store directory is not one): a
    /// coconut run without persistence then serves memory, as COCONUT's store is empty at
    /// every SVSM start, and refuses a store that was named.
    var explicitStore: Bool { store != nil || liveFd != nil || liveJson != nil }

    /// The store directory this invocation uses, or nil for --ephemeral or a live file.
    var storeDirectory: String? {
        if ephemeral || liveFd != nil || liveJson != nil || profile.inMemoryOnly(storeNamed: store != nil) { return nil }
        return storeDirectoryFor(store)
    }

    /// The store this invocation names. `mount` always may create a native store.
    func storeChoice(alwaysCreate: Bool = false) -> StoreChoice {
        if ephemeral { return .memory }
        if let f = liveFd { return .firmwareVolume(path: f) }
        if let j = liveJson { return .qemuJson(path: j) }
        return .native(directory: storeDirectoryFor(store), create: alwaysCreate || create)
    }

    func validate() throws {
        guard (1...512).contains(vcpus) else { throw ValidationError("--vcpus must be between 1 and 512 (got \(vcpus))") }
        guard (0...10_000).contains(maxRetries) else { throw ValidationError("--max-retries must be between 0 and 10000 (got \(maxRetries))") }
        if let t = nvStoreSize {
            guard let n = parseByteSize(t) else { throw ValidationError("--nv-store-size: '\(t)' is not a size (bytes, 0x-hex, or with K, M or G)") }
            guard n >= 0x1000, n <= 1 << 30 else { throw ValidationError("--nv-store-size must be between 4 KiB and 1 GiB (got \(n))") }
        }
        if [ephemeral, store != nil, fromFd != nil, fromJson != nil].filter({ $0 }).count > 1 {
            throw ValidationError("name one store: --store, --from-fd, --from-json or --ephemeral")
        }
        var plan = FaultPlan()
        for f in faults { do { try plan.add(f) } catch { throw ValidationError(error.description) } }
        if let w = worldSwitch, WorldSwitchCost.parse(w) == nil {
            throw ValidationError("--world-switch: '\(w)' is neither nanoseconds (5000, 5us) nor a preset (\(WorldSwitchCost.presets.map(\.name).joined(separator: ", ")))")
        }
        if worldSwitchDelay && worldSwitch == nil { throw ValidationError("--world-switch-delay needs --world-switch") }
    }

    func configuration(alwaysCreate: Bool = false) -> Machine.Configuration {
        var c = Machine.Configuration()
        c.vcpuCount = vcpus
        c.maxRetries = maxRetries
        var plan = FaultPlan()
        for f in faults { try? plan.add(f) }
        c.faults = plan
        c.nvStoreSize = nvStoreSize.flatMap(parseByteSize)
        profile.apply(to: &c, store: storeChoice(alwaysCreate: alwaysCreate), storeNamed: explicitStore)
        c.worldSwitchNanoseconds = worldSwitch.flatMap(WorldSwitchCost.parse) ?? 0
        c.spendWorldSwitch = worldSwitchDelay
        c.driverCache = driverCache ? .invalidateOnWrite : .off
        return c
    }
}

/// Writes to stdout and fails loudly when it cannot (a full disk, a closed pipe): a
/// script must not take a cut-short listing for a whole one.
func writeStdout(_ bytes: [UInt8]) throws {
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(1, $0.baseAddress! + done, bytes.count - done) }
        if n < 0 {
            if errno == EINTR { continue }
            throw cliFail("cannot write to standard output: \(String(cString: strerror(errno)))")
        }
        done += n
    }
}

/// One line on stderr.
func printError(_ message: String) {
    FileHandle.standardError.write(Data("efivarfs-bridge: \(message)\n".utf8))
}
