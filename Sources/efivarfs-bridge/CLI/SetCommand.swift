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

struct SetCommand: DriverCommand {
    static let configuration = CommandConfiguration(commandName: "set", abstract: "Write one variable (SetVariable).",
        discussion: """
            An empty value, or attributes without bs and rt, would delete the variable (that is
            what SetVariable does with them): set refuses both; use `delete` to delete.

            Examples:
              efivarfs-bridge set Greeting-210be57c-9849-4fc7-a635-e6382d1aec27 --attributes nv,bs,rt --ascii hello
              efivarfs-bridge set Timeout-global --attributes 0x7 --hex 0500
              efivarfs-bridge set db-security --attributes nv,bs,rt,at,ap --data-file db-append.auth
            """)
    @Argument(help: "Name-GUID, GUID-Name, or Name-<short GUID name>.") var name: String
    @Option(help: "nv,bs,rt[,hr,at,ap] or a number such as 0x7.") var attributes: String
    @Option(help: "Take the data from a file (read by this command, also beside a live mount).") var dataFile: String?
    @Option(help: "The data as hex.") var hex: String?
    @Option(help: "The data as UCS-2 (with a terminating NUL).") var utf16: String?
    @Option(help: "The data as ASCII (without a NUL).") var ascii: String?
    @Flag(help: "Add APPEND_WRITE.") var append = false
    @Flag(help: "Write a name longer than efivarfs lists (it would hide every variable after it from efivarfs).") var force = false
    @OptionGroup var machine: MachineOptions

    static var changesStore: Bool { true }

    /// The longest name efivarfs lists: its GetNextVariableName buffer holds 512 bytes,
    /// 255 CHAR16 and the NUL (fs/efivarfs/vars.c `efivar_init`).
    static let longestListedNameSize = Efivarfs.nameBufferSize

    func validate() throws {
        let key = try parseName(name)
        guard let attrs = VariableAttributes(parsing: attributes) else {
            throw ValidationError("bad --attributes '\(attributes)': use nv,bs,rt,hr,at,ap or a number")
        }
        guard [dataFile != nil, hex != nil, utf16 != nil, ascii != nil].filter({ $0 }).count == 1 else {
            throw ValidationError("give the data once: --data-file, --hex, --utf16 or --ascii")
        }
        if let h = hex, Hex.decode(h) == nil { throw ValidationError("--hex: odd number of digits or a non-hex character") }
        // SetVariable deletes on attributes without BS and RT, and on empty data without
        // APPEND_WRITE (edk2 Variable.c UpdateVariable): a script must ask for that by name.
        if attrs.intersection([.bootserviceAccess, .runtimeAccess]).isEmpty {
            throw ValidationError("attributes \(attrs) have neither bs nor rt, which deletes the variable; use `efivarfs-bridge delete \(name)` to delete")
        }
        if try data().isEmpty && !append {
            throw ValidationError("an empty value deletes the variable; use `efivarfs-bridge delete \(name)` to delete")
        }
        if key.nameSize > SetCommand.longestListedNameSize && !force {
            throw ValidationError("the name has \(key.name.count) CHAR16; efivarfs lists names of up to \(SetCommand.longestListedNameSize / 2 - 1) and stops at a longer one, hiding every variable after it. Pass --force to write it anyway")
        }
    }

    /// The data, read here (in the caller's working directory).
    func data() throws -> [UInt8] {
        if let f = dataFile {
            guard let d = FileManager.default.contents(atPath: f) else {
                let reason = access(f, R_OK) == 0 ? "cannot read it" : String(cString: strerror(errno))
                throw ValidationError("--data-file \(f): \(reason)")
            }
            return Array(d)
        }
        if let h = hex { return Hex.decode(h) ?? [] }
        if let u = utf16 { return Ucs2.nulTerminatedBytes(Ucs2.units(u)) }
        return Array((ascii ?? "").utf8)
    }

    /// A live mount's server gets the bytes, not the file's name.
    func argumentsForServer() throws -> [String] {
        var args = ["set", name, "--attributes", attributes, "--hex", Hex.encode(try data())]
        if append { args.append("--append") }
        if force { args.append("--force") }
        return args + Array(CommandLine.arguments.dropFirst()).machineArguments
    }

    func perform(on m: Machine) -> CommandOutput {
        guard let key = VariableName.parse(name), var attrs = VariableAttributes(parsing: attributes) else {
            return .fail("\(name): bad name or attributes", code: 64)
        }
        if append { attrs.insert(.appendWrite) }
        let bytes: [UInt8]
        do { bytes = try data() } catch { return .fail("\(error)", code: 64) }
        do {
            return try m.driver.onCpu { (cpu) throws(SvsmCallError) -> CommandOutput in
                let status = try cpu.setVariable(key, attributes: attrs.rawValue, data: bytes)
                var out = SetCommand.result(name, status)
                if status == .invalidParameter, let hint = try SetCommand.sizeHint(cpu, key: key, attributes: attrs, size: bytes.count) {
                    out.stderr = "efivarfs-bridge: \(name): refused by the store: EFI_INVALID_PARAMETER (\(hint))\n"
                }
                return out
            }
        } catch { return .svsmFailure(name, error) }
    }

    /// The outcome of a SetVariable as the scripting commands report it.
    static func result(_ name: String, _ status: EfiStatus) -> CommandOutput {
        if status == .notFound { return .fail("\(name): no such variable", code: CliExit.notFound) }
        if status != .success { return .fail("\(name): refused by the store: \(status.name)", code: CliExit.refused) }
        return CommandOutput()
    }

    /// Why a write may be too large: what QueryVariableInfo allows for these attributes and
    /// what one MM message carries. Nil when the size is within both.
    static func sizeHint(_ cpu: SvsmVariableDriver.Cpu, key: VariableKey, attributes: VariableAttributes, size: Int) throws(SvsmCallError) -> String? {
        let payloadRoom = cpu.maxPayloadSize - AccessVariablePayload.nameOffset - key.nameSize
        var limits: [String] = []
        if size > payloadRoom { limits.append("one MM message carries at most \(payloadRoom) bytes of data for this name") }
        if case .success(let info) = try cpu.queryVariableInfo(attributes: attributes.subtracting(.appendWrite).rawValue),
           size + key.nameSize > Int(info.maximumVariableSize) {
            limits.append("QueryVariableInfo(\(attributes.subtracting(.appendWrite))) allows \(info.maximumVariableSize) bytes of name and data")
        }
        guard !limits.isEmpty else { return nil }
        return "\(size) bytes of data; " + limits.joined(separator: "; ")
    }
}

extension Array where Element == String {
    /// The options that choose and configure the machine (store, vCPUs, faults), for
    /// forwarding: everything from the first option that MachineOptions knows.
    var machineArguments: [String] {
        let known: Set<String> = ["--store", "--ephemeral", "--from-fd", "--from-json", "--vcpus", "--fault", "--max-retries",
                                  "--nv-store-size", "--create"]
        var out: [String] = []
        var i = 0
        while i < count {
            let a = self[i]
            let flag = a.split(separator: "=", maxSplits: 1).first.map(String.init) ?? a
            if known.contains(flag) {
                out.append(a)
                if !a.contains("="), !["--ephemeral", "--create"].contains(flag), i + 1 < count { out.append(self[i + 1]); i += 1 }
            }
            i += 1
        }
        return out
    }
}
