import ArgumentParser
import Foundation
import SvsmEfiVars

/// Options naming the native store without booting a machine.
struct StoreOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The durable store (defaults as for mount).", valueName: "directory"))
    var store: String?

    var directory: String { storeDirectoryFor(store) }
}

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "import",
        abstract: "Replace the store's variables with those of an OVMF_VARS.fd or a QEMU/virt-fw-vars JSON file.",
        discussion: """
            The file is checked completely first; a bad file changes nothing.

            Examples:
              efivarfs-bridge import /usr/share/OVMF/OVMF_VARS_4M.ms.fd
              efivarfs-bridge import --format json --store /tmp/vm1 vm1-vars.json
            """)
    @Argument(help: "The file to read.") var file: String
    @Option(help: "auto, fd or json.") var format: String = "auto"
    @OptionGroup var storeOptions: StoreOptions

    func validate() throws {
        guard format == "auto" || VariableFileFormat(rawValue: format) != nil else { throw ValidationError("--format must be auto, fd or json") }
    }

    func run() throws {
        guard let bytes = FileManager.default.contents(atPath: file).map(Array.init) else { throw cliFail("cannot read \(file)") }
        guard let kind = format == "auto" ? VariableFileFormat.detect(bytes) : VariableFileFormat(rawValue: format) else {
            throw cliFail("\(file): neither a firmware volume nor JSON; name the format with --format")
        }
        let variables: [ExportedVariable]
        do {
            variables = kind == .fd ? try OvmfVarsFile.read(bytes, path: file) : try QemuVarsJson.read(bytes, path: file)
        } catch { throw cliFail(error.description) }
        do {
            let (store, _) = try NativeStoreFile.open(directory: storeOptions.directory)
            try store.compact(variables.map { ($0.key, $0.value) })
        } catch { throw cliFail(error.description) }
        print("imported \(variables.count) variables from \(file) (\(kind.rawValue)) into \(storeOptions.directory)")
    }
}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "export",
        abstract: "Write the store's variables as an OVMF_VARS.fd or as QEMU uefi-vars JSON.",
        discussion: """
            An fd export rewrites the variable store of a template volume (default: the file
            itself if it exists, else /usr/share/OVMF/OVMF_VARS_4M.fd) and keeps its size.

            Examples:
              efivarfs-bridge export --format json vars.json
              efivarfs-bridge export --format fd --template /usr/share/OVMF/OVMF_VARS_4M.fd OVMF_VARS.fd
            """)
    @Argument(help: "The file to write.") var file: String
    @Option(help: "fd or json.") var format: String
    @Option(help: "The firmware volume whose layout an fd export keeps.") var template: String?
    @OptionGroup var storeOptions: StoreOptions

    func validate() throws {
        guard VariableFileFormat(rawValue: format) != nil else { throw ValidationError("--format must be fd or json") }
    }

    func run() throws {
        let variables: [ExportedVariable]
        do {
            let (_, saved) = try NativeStoreFile.open(directory: storeOptions.directory)
            variables = saved.map { ExportedVariable($0.0, $0.1) }
        } catch { throw cliFail(error.description) }
        var out: [UInt8]
        if format == "json" {
            out = QemuVarsJson.write(variables)
        } else {
            let templatePath = template ?? (FileManager.default.fileExists(atPath: file) ? file : "/usr/share/OVMF/OVMF_VARS_4M.fd")
            guard let t = FileManager.default.contents(atPath: templatePath).map(Array.init) else {
                throw cliFail("no template volume: \(templatePath) cannot be read; name one with --template")
            }
            do { out = try OvmfVarsFile.write(variables, template: t, path: templatePath) } catch { throw cliFail(error.description) }
        }
        // Atomic replacement: a reader sees the old file or the new one.
        let tmp = file + ".tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: tmp, contents: Data(out)) else { throw cliFail("cannot write \(tmp)") }
        let fd = open(tmp, O_RDONLY)
        if fd >= 0 { fsync(fd); close(fd) }
        guard rename(tmp, file) == 0 else { unlink(tmp); throw cliFail("cannot replace \(file): \(String(cString: strerror(errno)))") }
        print("exported \(variables.count) variables to \(file) (\(format))")
    }
}
