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

@Suite("Variable names on the command line")
struct VariableNameTests {
    @Test("Name-GUID, GUID-Name and short GUID names", arguments: [
        ("BootOrder-8be4df61-93ca-11d2-aa0d-00e098032b8c", "BootOrder", EfiGuid.globalVariable),
        ("8BE4DF61-93CA-11D2-AA0D-00E098032B8C-BootOrder", "BootOrder", .globalVariable),
        ("BootOrder-global", "BootOrder", .globalVariable),
        ("global-Timeout", "Timeout", .globalVariable),
        ("db-security", "db", .imageSecurityDatabase),
        ("dump-type0-1-cfc8fc79-be2e-4ddc-97f0-9f98bfe298a0", "dump-type0-1", .linuxEfiCrash),
    ])
    func parses(_ text: String, _ name: String, _ guid: EfiGuid) {
        #expect(VariableName.parse(text) == VariableKey(name, guid))
    }

    @Test("malformed names are refused", arguments: ["X", "BootOrder", "BootOrder-nosuchguid", "-global", "global-"])
    func refuses(_ text: String) { #expect(VariableName.parse(text) == nil) }
}
