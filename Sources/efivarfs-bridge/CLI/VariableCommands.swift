import ArgumentParser
import Foundation
import SvsmEfiVars

/// Exit codes of the scripting commands.
enum CliExit {
    static let notFound: Int32 = 3
    static let refused: Int32 = 4
    static let failure: Int32 = 1
    // Usage errors exit with ArgumentParser's 64 (EX_USAGE).
}

func cliFail(_ message: String, code: Int32 = CliExit.failure) -> ExitCode {
    FileHandle.standardError.write(Data("efivarfs-bridge: \(message)\n".utf8))
    return ExitCode(code)
}

/// What a scripting command produced: bytes for stdout, a message for stderr, an exit code.
struct CommandOutput: Codable {
    var stdout: [UInt8] = []
    var stderr = ""
    var code: Int32 = 0

    static func fail(_ message: String, code: Int32) -> CommandOutput {
        CommandOutput(stderr: "efivarfs-bridge: \(message)\n", code: code)
    }
    mutating func print(_ line: String) { stdout += Array((line + "\n").utf8) }

    /// The outcome of a SetVariable as the scripting commands report it.
    static func setResult(_ name: String, _ status: EfiStatus) -> CommandOutput {
        if status == .notFound { return .fail("\(name): no such variable", code: CliExit.notFound) }
        if status != .success { return .fail("\(name): refused by the store: \(status.name)", code: CliExit.refused) }
        return CommandOutput()
    }
}

/// A command that works through the driver of a booted machine: run locally on a store
/// nobody serves, or, when a live mount holds the store, by that mount's own driver over
/// its control socket — either way the same driver → SVSM → store path.
protocol DriverCommand: ParsableCommand {
    var machine: MachineOptions { get }
    func perform(on m: Machine) -> CommandOutput
}

extension DriverCommand {
    func run() throws {
        let output: CommandOutput
        do {
            let m = try Machine(machine.configuration())
            output = perform(on: m)
        } catch Machine.BootError.store(let e as NativeStoreFile.Failure) {
            guard case .locked(_, _, let control?) = e, !control.isEmpty,
                  let remote = ControlSocket.run(path: control, arguments: Array(CommandLine.arguments.dropFirst())) else {
                throw cliFail(e.description)
            }
            output = remote
        } catch {
            throw cliFail("\(error)")
        }
        FileHandle.standardOutput.write(Data(output.stdout))
        if !output.stderr.isEmpty { FileHandle.standardError.write(Data(output.stderr.utf8)) }
        if output.code != 0 { throw ExitCode(output.code) }
    }
}

func parseName(_ text: String) throws -> VariableKey {
    guard let key = VariableName.parse(text) else {
        throw ValidationError("'\(text)' is not a variable name: use Name-GUID, GUID-Name, or a short GUID name such as BootOrder-global")
    }
    return key
}

func jsonString(_ s: String) -> String {
    let data = try! JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes])
    return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
}

struct ListCommand: DriverCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the variables the OS sees (GetNextVariableName).",
                                                    discussion: "Examples:\n  efivarfs-bridge list\n  efivarfs-bridge list --json | jq -r '.[].name'")
    @Flag(help: "One JSON array of {name, guid, attributes, size}.") var json = false
    @OptionGroup var machine: MachineOptions

    func perform(on m: Machine) -> CommandOutput {
        var out = CommandOutput()
        let entries: [(VariableKey, VariableAttributes, Int)] = m.driver.onCpu { cpu in
            var out: [(VariableKey, VariableAttributes, Int)] = []
            var previous = VariableKey(guid: .zero, name: [])
            while case .next(let k) = cpu.getNextVariable(after: previous, nameBufferSize: 1024) {
                previous = k
                if case .bufferTooSmall(let a, let size) = cpu.getVariable(k, capacity: 0) { out.append((k, a, size)) }
            }
            return out
        }
        if json {
            let items = entries.map { k, a, n in
                "{\"name\":\(jsonString(Ucs2.string(k.name))),\"guid\":\"\(k.guid)\",\"attributes\":\(a.rawValue),\"size\":\(n)}"
            }
            out.print("[" + items.joined(separator: ",") + "]")
        } else {
            for (k, _, _) in entries { out.print("\(Ucs2.string(k.name))-\(k.guid)") }
        }
        return out
    }
}

struct GetCommand: DriverCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "Print one variable.",
                                                    discussion: "Examples:\n  efivarfs-bridge get BootOrder-global --hex\n  efivarfs-bridge get Timeout-8be4df61-93ca-11d2-aa0d-00e098032b8c --json")
    @Argument(help: "Name-GUID, GUID-Name, or Name-<short GUID name>.") var name: String
    @Flag(help: "{name, guid, attributes, data (hex)}.") var json = false
    @Flag(help: "The data bytes only, unchanged.") var raw = false
    @Flag(help: "The data as hex.") var hex = false
    @OptionGroup var machine: MachineOptions

    func validate() throws {
        _ = try parseName(name)
        guard [json, raw, hex].filter({ $0 }).count <= 1 else { throw ValidationError("choose one of --json, --raw, --hex") }
    }

    func perform(on m: Machine) -> CommandOutput {
        var out = CommandOutput()
        guard let key = VariableName.parse(name) else { return .fail("\(name): not a variable name", code: 64) }
        switch m.driver.onCpu({ $0.readVariable(key) }) {
        case .found(let attrs, let data):
            if raw { out.stdout = data }
            else if hex { out.print(Hex.encode(data)) }
            else if json {
                out.print("{\"name\":\(jsonString(Ucs2.string(key.name))),\"guid\":\"\(key.guid)\",\"attributes\":\(attrs.rawValue),\"data\":\"\(Hex.encode(data))\"}")
            } else {
                out.print("\(Ucs2.string(key.name))-\(key.guid)\nattributes: 0x\(String(attrs.rawValue, radix: 16)) (\(attrs))\nsize: \(data.count)")
                out.print(Hex.encode(data))
            }
            return out
        case .error(.notFound):
            return .fail("\(name): no such variable", code: CliExit.notFound)
        case .error(let s):
            return .fail("\(name): \(s.name)", code: CliExit.refused)
        case .bufferTooSmall:
            return .fail("\(name): the variable does not fit the MM buffer", code: CliExit.failure)
        }
    }
}

struct SetCommand: DriverCommand {
    static let configuration = CommandConfiguration(commandName: "set", abstract: "Write one variable (SetVariable).",
        discussion: """
            Examples:
              efivarfs-bridge set Greeting-210be57c-9849-4fc7-a635-e6382d1aec27 --attributes nv,bs,rt --ascii hello
              efivarfs-bridge set Timeout-global --attributes 0x7 --hex 0500
              efivarfs-bridge set db-security --attributes nv,bs,rt,at,ap --data-file db-append.auth
            """)
    @Argument(help: "Name-GUID, GUID-Name, or Name-<short GUID name>.") var name: String
    @Option(help: "nv,bs,rt[,hr,at,ap] or a number such as 0x7.") var attributes: String
    @Option(help: "Take the data from a file.") var dataFile: String?
    @Option(help: "The data as hex.") var hex: String?
    @Option(help: "The data as UCS-2 (with a terminating NUL).") var utf16: String?
    @Option(help: "The data as ASCII (without a NUL).") var ascii: String?
    @Flag(help: "Add APPEND_WRITE.") var append = false
    @OptionGroup var machine: MachineOptions

    func validate() throws {
        _ = try parseName(name)
        guard VariableAttributes(parsing: attributes) != nil else { throw ValidationError("bad --attributes '\(attributes)': use nv,bs,rt,hr,at,ap or a number") }
        guard [dataFile != nil, hex != nil, utf16 != nil, ascii != nil].filter({ $0 }).count == 1 else {
            throw ValidationError("give the data once: --data-file, --hex, --utf16 or --ascii")
        }
        if let h = hex, Hex.decode(h) == nil { throw ValidationError("--hex: odd number of digits or a non-hex character") }
    }

    func data() -> [UInt8]? {
        if let f = dataFile { return FileManager.default.contents(atPath: f).map(Array.init) }
        if let h = hex { return Hex.decode(h) }
        if let u = utf16 { return Ucs2.nulTerminatedBytes(Ucs2.units(u)) }
        return Array((ascii ?? "").utf8)
    }

    func perform(on m: Machine) -> CommandOutput {
        guard let key = VariableName.parse(name), var attrs = VariableAttributes(parsing: attributes) else {
            return .fail("\(name): bad name or attributes", code: 64)
        }
        if append { attrs.insert(.appendWrite) }
        guard let bytes = data() else { return .fail("cannot read \(dataFile ?? "the data")", code: CliExit.failure) }
        return CommandOutput.setResult(name, m.driver.onCpu { $0.setVariable(key, attributes: attrs.rawValue, data: bytes) })
    }
}

struct DeleteCommand: DriverCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete one variable (SetVariable with attributes 0).",
                                                    discussion: "Example:\n  efivarfs-bridge delete BootNext-global")
    @Argument(help: "Name-GUID, GUID-Name, or Name-<short GUID name>.") var name: String
    @OptionGroup var machine: MachineOptions
    func validate() throws { _ = try parseName(name) }
    func perform(on m: Machine) -> CommandOutput {
        guard let key = VariableName.parse(name) else { return .fail("\(name): not a variable name", code: 64) }
        return CommandOutput.setResult(name, m.driver.onCpu { $0.setVariable(key, attributes: 0, data: []) })
    }
}

struct InfoCommand: DriverCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Storage figures, the MM payload size, vCPUs, Secure Boot state and the UEFI-MM attestation manifest.",
                                                    discussion: "Example:\n  efivarfs-bridge info --json")
    @Flag(help: "One JSON object.") var json = false
    @OptionGroup var machine: MachineOptions

    func perform(on m: Machine) -> CommandOutput {
        var out = CommandOutput()
        let sets: [(String, UInt32)] = [("nv,bs,rt", 0x7), ("bs,rt", 0x6), ("nv,bs,rt,at", 0x27)]
        let (infos, sb, setup, pk): ([(String, VariableStore.VariableInfo?)], UInt8?, UInt8?, Bool) = m.driver.onCpu { cpu in
            let i = sets.map { (n, a) -> (String, VariableStore.VariableInfo?) in
                if case .success(let v) = cpu.queryVariableInfo(attributes: a) { return (n, v) }
                return (n, nil)
            }
            func byte(_ n: String) -> UInt8? { if case .found(_, let d) = cpu.readVariable(VariableKey(n, .globalVariable)) { return d.first }; return nil }
            var hasPk = false
            if case .found = cpu.readVariable(VariableKey("PK", .globalVariable)) { hasPk = true }
            return (i, byte("SecureBoot"), byte("SetupMode"), hasPk)
        }
        let target = machine.storeDirectory ?? machine.liveFd ?? machine.liveJson
        // Only what the model knows: COCONUT's manifest flag secureboot_enabled is "PK
        // exists" (uefi_mm_get_manifest), which the store answers; the other two flags
        // depend on the SVSM build and are not modelled here.
        if json {
            let q = infos.map { n, v in
                "\"\(n)\":" + (v.map { "{\"maximum_storage\":\($0.maximumVariableStorageSize),\"remaining_storage\":\($0.remainingVariableStorageSize),\"maximum_variable\":\($0.maximumVariableSize)}" } ?? "null")
            }.joined(separator: ",")
            out.print("{\"query_variable_info\":{\(q)},\"payload_size\":\(m.driver.maxPayloadSize),\"vcpus\":\(m.vcpus.count),"
                  + "\"secure_boot\":\(sb ?? 0),\"setup_mode\":\(setup ?? 0),"
                  + "\"manifest\":{\"secureboot_enabled\":\(pk),\"source\":\"derived from the store: PK present\",\"not_modelled\":[\"persistent_nv_vars\",\"secureboot_db_update\"]},"
                  + "\"store\":\(target.map(jsonString) ?? "null")}")
        } else {
            for (n, v) in infos {
                if let v { out.print("QueryVariableInfo(\(n)): maximum storage \(v.maximumVariableStorageSize), remaining \(v.remainingVariableStorageSize), maximum variable \(v.maximumVariableSize)") }
                else { out.print("QueryVariableInfo(\(n)): refused") }
            }
            out.print("MM payload size: \(m.driver.maxPayloadSize) bytes\nvCPUs: \(m.vcpus.count)")
            out.print("SecureBoot: \(sb ?? 0), SetupMode: \(setup ?? 0)")
            out.print("UEFI-MM manifest: secureboot_enabled=\(pk) (derived from the store: PK present); persistent_nv_vars and secureboot_db_update: not modelled")
            out.print("store: \(target ?? "(memory only)")")
        }
        return out
    }
}
