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

/// Exit codes of the scripting commands.
enum CliExit {
    static let notFound: Int32 = 3
    static let refused: Int32 = 4
    static let failure: Int32 = 1
    // Usage errors exit with ArgumentParser's 64 (EX_USAGE).
}

func cliFail(_ message: String, code: Int32 = CliExit.failure) -> ExitCode {
    printError(message)
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

    /// An SVSM call that failed: exit 1 with the reason.
    static func svsmFailure(_ what: String, _ e: SvsmCallError) -> CommandOutput {
        .fail("\(what): the SVSM call failed: \(e)", code: CliExit.failure)
    }
}

/// A command that works through the driver of a booted machine: run locally on a store
/// nobody serves, or, when a live mount holds the store, by that mount's own driver over
/// its control socket — either way the same driver → SVSM → store path.
protocol DriverCommand: ParsableCommand {
    var machine: MachineOptions { get }
    func perform(on m: Machine) -> CommandOutput
    /// The arguments to send to a live mount's server: whatever must be read on this side
    /// (a file named relative to the caller) is replaced by what it holds.
    func argumentsForServer() throws -> [String]
    /// Whether the command changes the store (refused by a read-only mount's server).
    static var changesStore: Bool { get }
}

extension DriverCommand {
    func argumentsForServer() throws -> [String] { Array(CommandLine.arguments.dropFirst()) }
    static var changesStore: Bool { false }

    func run() throws {
        let output: CommandOutput
        do {
            let m = try Machine(machine.configuration())
            output = SvsmOperation.run("cli:" + (Self.configuration.commandName ?? "command")) { perform(on: m) }
        } catch Machine.BootError.store(.locked(let store, let owner, let control?)) {
            do { output = try ControlSocket.run(path: control, arguments: try argumentsForServer()) } catch let e as ControlSocket.ExchangeError {
                switch e {
                case .unreachable: throw cliFail("the store \(store) is in use by \(owner), which does not answer on \(control)")
                case .noAnswer:
                    throw cliFail("the store \(store) is in use by \(owner), which did not answer within \(Int(ControlSocket.timeout)) s (stopped or hung?)")
                case .closed:
                    throw cliFail("the store \(store) is in use by \(owner), which closed the connection on \(control) without an answer")
                }
            }
        } catch {
            throw cliFail("\(error)")
        }
        try writeStdout(output.stdout)
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
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List every variable the OS sees (GetNextVariableName).",
                                                    discussion: """
                                                        Unlike efivarfs, which stops at a name longer than its 512-byte buffer,
                                                        list asks again with the size the store needs, so it shows every variable.

                                                        Examples:
                                                          efivarfs-bridge list
                                                          efivarfs-bridge list --json | jq -r '.[].name'
                                                        """)
    @Flag(help: "One JSON array of {name, guid, attributes, size}.") var json = false
    @OptionGroup var machine: MachineOptions

    func perform(on m: Machine) -> CommandOutput {
        var out = CommandOutput()
        let (listing, entries): (VariableEnumeration, [(VariableKey, VariableAttributes, Int)]) = m.driver.onCpu { cpu in
            let listing = cpu.enumerateVariables(nameBufferSize: Efivarfs.nameBufferSize, growing: true, toleratingRepeats: true)
            let entries = listing.keys.compactMap { k -> (VariableKey, VariableAttributes, Int)? in
                if case .bufferTooSmall(let a, let size)? = try? cpu.getVariable(k, capacity: 0) { return (k, a, size) }
                return nil
            }
            return (listing, entries)
        }
        switch listing.end {
        case .complete: break
        case .svsmCallFailed(let e): return .svsmFailure("list", e)
        case .failed(let s): return .fail("list: GetNextVariableName answered \(s.name) after \(listing.keys.count) variables", code: CliExit.refused)
        case .unsupported: return .fail("list: the store does not support GetNextVariableName", code: CliExit.refused)
        case .nameTooLong(let n):
            return .fail("list: stopped after \(listing.keys.count) variables: the next name needs \(n) bytes, more than the MM buffer carries", code: CliExit.failure)
        case .duplicate(let k): return .fail("list: the store returned \(k) twice; stopped after \(listing.keys.count) variables", code: CliExit.failure)
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
        let r: GetVariableResult
        do { r = try m.driver.onCpu { (cpu) throws(SvsmCallError) in try cpu.readVariable(key) } } catch { return .svsmFailure(name, error) }
        switch r {
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

struct DeleteCommand: DriverCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete one variable (SetVariable with attributes 0).",
                                                    discussion: "Example:\n  efivarfs-bridge delete BootNext-global")
    @Argument(help: "Name-GUID, GUID-Name, or Name-<short GUID name>.") var name: String
    @OptionGroup var machine: MachineOptions
    static var changesStore: Bool { true }
    func validate() throws { _ = try parseName(name) }
    func perform(on m: Machine) -> CommandOutput {
        guard let key = VariableName.parse(name) else { return .fail("\(name): not a variable name", code: 64) }
        do {
            return SetCommand.result(name, try m.driver.onCpu { (cpu) throws(SvsmCallError) in try cpu.setVariable(key, attributes: 0, data: []) })
        } catch { return .svsmFailure(name, error) }
    }
}
