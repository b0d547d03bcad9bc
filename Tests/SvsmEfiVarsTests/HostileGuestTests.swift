import Foundation
import FuzzTargets
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

/// Hostile-guest properties: whatever the guest hands the SVSM, the SVSM writes
/// nothing outside the request's buffer and answers with COCONUT's code.
@Suite("Hostile guest")
struct HostileGuestTests {
    /// A second vCPU whose VMSA and CAA are guest pages right after a 1-page MM buffer.
    static func fixtureWithAp() throws -> (SvsmFixture, buffer: GuestPhysicalAddress, vmsa: GuestPhysicalAddress, caa: GuestPhysicalAddress) {
        let f = SvsmFixture()
        let buffer = try f.allocator.allocatePages(3)
        let vmsa = buffer.advanced(by: 4096), caa = buffer.advanced(by: 8192)
        try f.memory.writeU8(vmsa.advanced(by: VmsaLayout.vmpl), 2)
        try f.memory.writeU64(vmsa.advanced(by: VmsaLayout.efer), VmsaLayout.eferSvme)
        try f.memory.writeU64(vmsa.advanced(by: VmsaLayout.sevFeatures), 1)
        let (r, _) = f.call(.coreCreateVcpu, rcx: vmsa.rawValue, rdx: caa.rawValue, r8: 1)
        try #require(r == .success)
        return (f, buffer, vmsa, caa)
    }

    static func snapshot(_ m: GuestMemory, _ gpa: GuestPhysicalAddress, pages: Int) throws -> [UInt8] {
        try m.read(gpa, count: pages * 4096)
    }

    @Test("a buffer whose message runs into a VMSA page: INVALID_ADDRESS, nothing written")
    func messageIntoVmsa() throws {
        let (f, buffer, _, _) = try Self.fixtureWithAp()
        // GET_VARIABLE with room for 8 KiB of data: the message crosses into the VMSA page.
        let message = SmmVariableHeader.message(.getVariable, payload: AccessVariablePayload.encode(
            guid: .globalVariable, name: Ucs2.units("BootOrder"), attributes: 0, dataSize: 6000))
        try f.memory.write(buffer, MmCommunicateHeader.encode(headerGuid: .smmVariableProtocol, message: message + [UInt8](repeating: 0, count: 6000)))
        let before = try Self.snapshot(f.memory, buffer, pages: 3)
        #expect(f.call(.uefiMmRequest, rcx: buffer.rawValue, rdx: 3 * 4096).0 == .invalidAddress)
        #expect(try Self.snapshot(f.memory, buffer, pages: 3) == before)
    }

    @Test("a buffer on a registered VMSA or CAA page: INVALID_ADDRESS, nothing written")
    func bufferOnProtectedPages() throws {
        let (f, _, vmsa, caa) = try Self.fixtureWithAp()
        for page in [vmsa, caa] {
            let before = try Self.snapshot(f.memory, page, pages: 1)
            #expect(f.call(.uefiMmRequest, rcx: page.rawValue, rdx: 4096).0 == .invalidAddress)
            #expect(try Self.snapshot(f.memory, page, pages: 1) == before)
        }
    }

    @Test("a header claiming more than RDX: INVALID_PARAMETER, nothing written")
    func messageLengthBeyondRdx() throws {
        let f = SvsmFixture()
        let buffer = try f.allocator.allocatePages(2)
        var bytes = MmCommunicateHeader.encode(headerGuid: .smmVariableProtocol, message: [UInt8](repeating: 0, count: 64))
        bytes.storeLE(UInt64(4096), at: MmCommunicateHeader.messageLengthOffset)
        try f.memory.write(buffer, bytes)
        let before = try Self.snapshot(f.memory, buffer, pages: 2)
        #expect(f.call(.uefiMmRequest, rcx: buffer.rawValue, rdx: 4096).0 == .invalidParameter)
        #expect(try Self.snapshot(f.memory, buffer, pages: 2) == before)
    }

    @Test("5,000 random hostile call sequences: no write outside what each call may write, every call answered")
    func randomCallSequences() {
        // The fuzz target's harness checks every byte of guest RAM after each call.
        var rng = SplitMix(seed: 0x5e55_10a1)  // VariableStoreTests' generator: a failure replays
        let seeds = FuzzTarget.svsmProtocol.seeds().map(\.bytes)
        var violations: [String] = []
        for i in 0..<5000 {
            var input = seeds[i % seeds.count]
            // Mutate a few bytes, sometimes truncate, sometimes append noise.
            for _ in 0..<(1 + Int(rng.next() % 8)) where !input.isEmpty {
                input[Int(rng.next() % UInt64(input.count))] = UInt8(truncatingIfNeeded: rng.next())
            }
            if rng.next() % 4 == 0 { input = Array(input.prefix(Int(rng.next() % UInt64(input.count + 1)))) }
            if rng.next() % 4 == 0 { input += (0..<Int(rng.next() % 64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }
            do { try FuzzTarget.svsmProtocol.run(input) } catch {
                violations.append("sequence \(i): \(error); input \(Hex.encode(input))")
            }
        }
        #expect(violations.isEmpty, "\(violations.count) of 5,000 sequences broke a property; first: \(violations.prefix(3))")
    }
}
