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

/// The native store a command names without booting a machine.
struct StoreOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The durable store (defaults as for mount).", valueName: "directory"))
    var store: String?

    var directory: String { storeDirectoryFor(store) }
}

/// Reads a variable file whose format is given or detected; every failure names the file.
func readVariableFile(_ path: String, format: String) throws -> (VariableFileFormat, [ExportedVariable]) {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw cliFail("cannot read \(path): \(String(cString: strerror(access(path, R_OK) == 0 ? EIO : errno)))")
    }
    let bytes = Array(data)
    guard let kind = format == "auto" ? VariableFileFormat.detect(bytes) : VariableFileFormat(rawValue: format) else {
        throw cliFail("\(path): neither a firmware volume nor JSON; name the format with --format")
    }
    do {
        return (kind, kind == .fd ? try OvmfVarsFile.read(bytes, path: path) : try QemuVarsJson.read(bytes, path: path))
    } catch { throw cliFail(error.description) }
}

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "import",
        abstract: "Replace a native store's variables with those of an OVMF_VARS.fd or a QEMU/virt-fw-vars JSON file.",
        discussion: """
            The file is checked completely first, and must fit the store; a bad file changes
            nothing. The store is created if it does not exist.

            Examples:
              efivarfs-bridge import /usr/share/OVMF/OVMF_VARS_4M.ms.fd
              efivarfs-bridge import --format json --store /tmp/vm1 vm1-vars.json
            """)
    @Argument(help: "The file to read.") var file: String
    @Option(help: "auto, fd or json.") var format: String = "auto"
    @Option(help: ArgumentHelp("The store's non-volatile size for a new store (as for mount).", valueName: "size")) var nvStoreSize: String?
    @OptionGroup var storeOptions: StoreOptions

    func validate() throws {
        guard format == "auto" || VariableFileFormat(rawValue: format) != nil else { throw ValidationError("--format must be auto, fd or json") }
        if let t = nvStoreSize, parseByteSize(t) == nil { throw ValidationError("--nv-store-size: '\(t)' is not a size") }
        for v in ["EFIVARFS_BRIDGE_FROM_FD", "EFIVARFS_BRIDGE_FROM_JSON"] where !(ProcessInfo.processInfo.environment[v] ?? "").isEmpty {
            throw ValidationError("import writes a native store, but \(v) names a VM file; unset it (to convert a VM file, use `export --from-fd` or `export --from-json`)")
        }
    }

    func run() throws {
        let (kind, variables) = try readVariableFile(file, format: format)
        let dir = storeOptions.directory
        let existed = FileManager.default.fileExists(atPath: dir)
        do {
            let (journal, _) = try NativeJournal.open(directory: dir, create: true)
            defer { journal.release() }
            let size = nvStoreSize.flatMap(parseByteSize) ?? journal.recordedNvStoreSize ?? StoreLimits().nvStoreSize
            // The variables must fit the store, by edk2's accounting: an over-full store
            // would refuse every later write, even one that shrinks a variable.
            var probe = VariableStore(limits: { var l = StoreLimits(); l.nvStoreSize = size; return l }())
            probe.restore(variables)
            guard probe.nonVolatileUsed <= probe.commonVariableSpace else {
                // A refused import changes nothing: not even an empty store left behind,
                // which later commands would take for a real one.
                if !existed { journal.release(); try? FileManager.default.removeItem(atPath: dir) }
                throw cliFail("\(file): its \(variables.count) variables need \(probe.nonVolatileUsed) bytes; the store \(dir) holds \(probe.commonVariableSpace) (--nv-store-size \(size)); pass a larger --nv-store-size")
            }
            if journal.recordedNvStoreSize != size { try journal.recordNvStoreSize(size) }
            try journal.saveAtPowerOn(variables)
        } catch let e as ExitCode { throw e } catch { throw cliFail("\(error)") }
        printError("imported \(variables.count) variables from \(file) (\(kind.rawValue)) into \(dir)")
    }
}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "export",
        abstract: "Write a store's variables as an OVMF_VARS.fd or as QEMU uefi-vars JSON.",
        discussion: """
            The source is the native store (--store, as for mount), or a VM file (--from-fd,
            --from-json, or $EFIVARFS_BRIDGE_FROM_FD / $EFIVARFS_BRIDGE_FROM_JSON). An fd
            export rewrites the variable store of a template volume (--template, default
            /usr/share/OVMF/OVMF_VARS_4M.fd) and keeps its size. FILE `-` is standard output.

            Examples:
              efivarfs-bridge export --format json vars.json
              efivarfs-bridge export --format fd --template /usr/share/OVMF/OVMF_VARS_4M.fd OVMF_VARS.fd
              efivarfs-bridge export --from-fd vm/OVMF_VARS.fd --format json -
            """)
    @Argument(help: "The file to write, or - for standard output.") var file: String
    @Option(help: "fd or json.") var format: String
    @Option(help: "The firmware volume whose layout an fd export keeps.") var template: String?
    @OptionGroup var storeOptions: StoreOptions
    @Option(name: .customLong("from-fd"), help: ArgumentHelp("Export this OVMF_VARS.fd's variables.", valueName: "file")) var fromFd: String?
    @Option(name: .customLong("from-json"), help: ArgumentHelp("Export this QEMU uefi-vars JSON file's variables.", valueName: "file")) var fromJson: String?

    static let defaultTemplate = "/usr/share/OVMF/OVMF_VARS_4M.fd"

    func validate() throws {
        guard VariableFileFormat(rawValue: format) != nil else { throw ValidationError("--format must be fd or json") }
        if [storeOptions.store != nil, fromFd != nil, fromJson != nil].filter({ $0 }).count > 1 {
            throw ValidationError("name one source: --store, --from-fd or --from-json")
        }
    }

    /// The source, with the environment's VM file when nothing is named.
    var source: StoreChoice {
        let env = ProcessInfo.processInfo.environment
        if let f = fromFd { return .firmwareVolume(path: f) }
        if let j = fromJson { return .qemuJson(path: j) }
        if storeOptions.store == nil {
            if let f = env["EFIVARFS_BRIDGE_FROM_FD"], !f.isEmpty { return .firmwareVolume(path: f) }
            if let j = env["EFIVARFS_BRIDGE_FROM_JSON"], !j.isEmpty { return .qemuJson(path: j) }
        }
        return .native(directory: storeOptions.directory, create: false)
    }

    func run() throws {
        let variables: [ExportedVariable]
        do {
            switch source {
            case .native(let dir, _):
                let (journal, saved) = try NativeJournal.open(directory: dir, create: false)
                journal.release()
                variables = saved
            case .firmwareVolume(let path): variables = try VariableFileSnapshot.read(path: path, format: .fd)
            case .qemuJson(let path): variables = try VariableFileSnapshot.read(path: path, format: .json)
            case .memory: variables = []
            }
        } catch { throw cliFail("\(error)") }
        let out: [UInt8]
        if format == "json" {
            out = QemuVarsJson.write(variables)
        } else {
            let templatePath = template ?? ExportCommand.defaultTemplate
            guard let t = FileManager.default.contents(atPath: templatePath).map(Array.init) else {
                let why = String(cString: strerror(access(templatePath, R_OK) == 0 ? EIO : errno))
                throw cliFail("cannot read the template \(templatePath): \(why)" + (template == nil ? " (Debian package ovmf; or name one with --template)" : ""))
            }
            do { out = try OvmfVarsFile.write(variables, template: t, path: templatePath) } catch { throw cliFail(error.description) }
        }
        if file == "-" {
            try writeStdout(out)
        } else {
            // A reader sees the old file or the new one.
            do { try DurableFile.replace(file, with: out) } catch { throw cliFail("cannot write \(file): \(String(cString: strerror(error.errno))) (\(error.operation) \(error.path))") }
        }
        printError("exported \(variables.count) variables to \(file == "-" ? "standard output" : file) (\(format)\(format == "fd" ? ", template \(template ?? ExportCommand.defaultTemplate)" : ""))")
    }
}
