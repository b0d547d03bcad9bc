import Foundation
import Testing
@testable import Driver
@testable import EfiTypes
@testable import Efivarfs
@testable import Guest
@testable import Hardware
@testable import Host
@testable import MmWire
@testable import Platform
@testable import Svsm
@testable import SvsmAbi
@testable import Trace
@testable import VariableService

/// Record-level refusals of the OVMF_VARS.fd reader, on volumes made by our own writer
/// from Debian's OVMF_VARS.fd template.
@Suite("OVMF_VARS.fd records")
struct OvmfVarsFileTests {
    static let vendor = EfiGuid("210be57c-9849-4fc7-a635-e6382d1aec27")!

    static func volume(_ vars: [ExportedVariable]) throws -> [UInt8] {
        let template = try #require(FileManager.default.contents(atPath: "/usr/share/OVMF/OVMF_VARS.fd").map(Array.init),
                                    "Debian's ovmf package is needed")
        return try OvmfVarsFile.write(vars, template: template, path: "t.fd")
    }

    static func v(_ name: String, _ attrs: VariableAttributes = .nvBsRt) -> ExportedVariable {
        ExportedVariable(VariableKey(name, vendor), StoredVariable(attributes: attrs, data: [1, 2, 3]))
    }

    @Test("record errors name the record's offset: duplicate, name without NUL, volatile record")
    func recordErrors() throws {
        let dup = try Self.volume([Self.v("A"), Self.v("A")])
        #expect(throws: VariableFileError.self) { try OvmfVarsFile.read(dup, path: "t.fd") }
        do { _ = try OvmfVarsFile.read(dup, path: "t.fd") } catch {
            #expect(error.location.hasPrefix("record at offset 0x") && error.reason.hasPrefix("duplicate variable"))
        }

        var noNul = try Self.volume([Self.v("A")])
        let first = try OvmfVarsFile.layout(noNul, path: "t.fd").firstRecord
        noNul[first + OvmfVarsFile.headerSize + 2] = 0x41  // the NUL after "A" becomes 'A'
        do { _ = try OvmfVarsFile.read(noNul, path: "t.fd"); Issue.record("accepted a name without NUL") } catch {
            #expect(error.location == "record at offset 0x\(String(first, radix: 16))")
            #expect(error.reason == "name is not a NUL-terminated UCS-2 string of NameSize bytes")
        }

        let volatile = try Self.volume([Self.v("A", [.bootserviceAccess, .runtimeAccess])])
        do { _ = try OvmfVarsFile.read(volatile, path: "t.fd"); Issue.record("accepted a volatile record") } catch {
            #expect(error.reason == "a volatile variable in a non-volatile store")
        }
    }
}

@Suite("QEMU JSON fields")
struct QemuVarsJsonTests {
    static func json(time: String? = nil, data: String = "00") -> [UInt8] {
        let t = time.map { #","time":"\#($0)""# } ?? ""
        return Array(#"{"version":2,"variables":[{"guid":"210be57c-9849-4fc7-a635-e6382d1aec27","name":"A","attr":39,"data":"\#(data)"\#(t)}]}"#.utf8)
    }

    @Test("hex fields take hex digits only: separators inside time or data are refused, not a crash (fuzz regression)", arguments: [
        ("time", json(time: "000000000000000000    0000000000")),
        ("time", json(time: "00000000000000000000000000000000:")),
        ("time", json(time: "0000")),
        ("data", json(data: "00:11")),
        ("data", json(data: "00\\t11")),
        ("data", json(data: "0")),
    ])
    func strictHex(_ field: String, _ file: [UInt8]) {
        do { _ = try QemuVarsJson.read(file, path: "v.json"); Issue.record("accepted") } catch {
            #expect(error.location == "variables[0].\(field)")
        }
    }

    @Test("a well-formed time is kept")
    func goodTime() throws {
        let vars = try QemuVarsJson.read(Self.json(time: "e907030a02351e000000000000000000"), path: "v.json")
        #expect(vars.first?.value.timestamp?.bytes.first == 0xe9)
    }
}
