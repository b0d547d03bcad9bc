import Foundation
import Testing

@Suite("scenario caa-allocation, the binary")
struct CaaAllocationCommandTests {
    @Test("120 vCPUs: the memory maps, the checks, the hang candidates, the routes, the SVG; exit 0; bad arguments exit 64")
    func scenario() throws {
        let dir = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(dir)'") }
        let r = Shell.run("'\(Bridge.binary)' scenario caa-allocation --vcpus 120 --svg '\(dir)/map.svg'")
        #expect(r.status == 0, "\(r.err)")
        // reporter:pei: 16 + (2·119 - 1) = 253 descriptors; upstream:pei+dxe: 16 + 3 + 2 = 21
        // (CaaAllocationTests derives both).
        #expect(r.out.contains("== reporter:pei:") && r.out.contains("EFI memory map at ExitBootServices: 253 descriptors"))
        #expect(r.out.contains("== upstream:pei+dxe:") && r.out.contains("EFI memory map at ExitBootServices: 21 descriptors"))
        #expect(r.out.contains("119 Reserved / 118 usable"))
        #expect(r.out.contains("Not settled by the sources") && r.out.contains("from 125 vCPUs"))
        #expect(r.out.contains("(a2) edk2 runtime services") && r.out.contains("needs the firmware's per-AP CAA pages: no"))
        #expect(r.out.contains("0 contradict the sources"))
        let svg = try String(contentsOfFile: "\(dir)/map.svg", encoding: .utf8)
        #expect(svg.hasPrefix("<?xml") && svg.contains("class=\"desc\"") && svg.hasSuffix("</svg>\n"))

        let j = Shell.run("'\(Bridge.binary)' scenario caa-allocation --vcpus 512 --all-policies --no-onset-scan --json")
        #expect(j.status == 0, "\(j.err)")
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(j.out.utf8)) as? [String: Any])
        let policies = try #require(doc["policies"] as? [[String: Any]])
        #expect(policies.count == 6)
        // reporter:pei+dxe at 512: 16 + 1021 + 1018 = 2055 descriptors (CaaAllocationTests).
        #expect(policies.contains { $0["policy"] as? String == "reporter:pei+dxe" && $0["efiDescriptors"] as? Int == 2055 })

        #expect(Shell.run("'\(Bridge.binary)' scenario caa-allocation --vcpus 0").status == 64)
        #expect(Shell.run("'\(Bridge.binary)' scenario caa-allocation --policy upstream:smm").status == 64)
    }
}
