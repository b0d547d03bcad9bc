import Testing
@testable import Driver
@testable import EfiTypes
@testable import Guest
@testable import Hardware
@testable import Host
@testable import MmWire
@testable import Svsm
@testable import VariableService

/// A variable service with another client's SetVariable landing in the middle of a
/// GetNextVariableName walk — a live mount's writer beside `efivarfs-bridge list`: just
/// before the walk's `at`-th step, `rewrite` gets a new value (and, as in edk2, whose
/// UpdateVariable appends the new record, moves to the end of the store's order).
final class RewriteDuringWalk: MmService, @unchecked Sendable {
    let inner: VariableService
    let rewrite: VariableKey
    let at: Int
    private let steps = Locked(0)

    init(_ inner: VariableService, rewrite: VariableKey, at: Int) { self.inner = inner; self.rewrite = rewrite; self.at = at }

    func uefiMmManifest() -> UefiMmManifest { inner.uefiMmManifest() }

    func handleMmRequest(headerGuid: EfiGuid, message: [UInt8], bufferSize: UInt64) -> [UInt8]? {
        if headerGuid == .smmVariableProtocol, message.count >= SmmVariableHeader.size,
           SmmVariableFunction(rawValue: message.loadLE(UInt64.self, at: SmmVariableHeader.functionOffset)) == .getNextVariableName {
            let step = steps.withLock { $0 += 1; return $0 }
            if step == at {
                let set = AccessVariablePayload.encode(guid: rewrite.guid, name: rewrite.name, attributes: VariableAttributes.nvBsRt.rawValue,
                                                       dataSize: 1, data: [UInt8(step)])
                _ = inner.handleMmRequest(headerGuid: headerGuid, message: SmmVariableHeader.message(.setVariable, payload: set))
            }
        }
        return inner.handleMmRequest(headerGuid: headerGuid, message: message, bufferSize: bufferSize)
    }
}

@Suite("A listing while another client rewrites a variable")
struct ListingUnderRewritesTests {
    static let guid = EfiGuid("210be57c-9849-4fc7-a635-e6382d1aec27")!
    static let names = (0..<6).map { VariableKey("A\($0)", guid) }

    /// A driver on one vCPU over `service`, whose store holds A0…A5 in that order.
    static func driver(rewriting key: VariableKey, at step: Int) throws -> SvsmVariableDriver {
        var store = VariableStore()
        for k in names { store.putRecord(k, StoredVariable(attributes: .nvBsRt, data: [0])) }
        let service = RewriteDuringWalk(VariableService(store: store), rewrite: key, at: step)
        let memory = GuestMemory()
        let svsm = Svsm(memory: memory, mmService: service)
        try svsm.launch(bootVmsa: SvsmFixture.bootVmsa, firmwareCaa: SvsmFixture.caa)
        let transport = SvsmCallTransport(processor: Processor(memory: memory, vmpl0: svsm), hypervisor: Hypervisor(), maxRetries: 4)
        let bsp = Vcpu(apicId: 0, vmsa: SvsmFixture.bootVmsa, caa: SvsmFixture.caa)
        return try SvsmVariableDriver(vcpus: VcpuSet([bsp]), transport: transport, allocator: PageAllocator(memory: memory))
    }

    @Test("A1 rewritten after the walk passed it comes back at the end: efivar_init's walk stops (.duplicate), list's walk lists each name once and completes")
    func rewriteDuringWalk() throws {
        // Steps 1…3 return A0, A1, A2; before step 4 (the name after A2) A1 is rewritten.
        let strict = try Self.driver(rewriting: Self.names[1], at: 4)
        let stopped = strict.onCpu { cpu in cpu.enumerateVariables(nameBufferSize: 512, growing: true) }
        #expect(stopped.end == .duplicate(Self.names[1]))
        #expect(stopped.keys == Self.names)

        let tolerant = try Self.driver(rewriting: Self.names[1], at: 4)
        let listed = tolerant.onCpu { cpu in cpu.enumerateVariables(nameBufferSize: 512, growing: true, toleratingRepeats: true) }
        #expect(listed.end == .complete)
        #expect(listed.keys == Self.names)
    }
}
