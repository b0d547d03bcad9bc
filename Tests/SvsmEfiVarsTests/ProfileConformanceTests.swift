import Foundation
import Testing
@testable import Driver
@testable import EfiTypes
@testable import Efivarfs
@testable import FuzzTargets
@testable import MmWire
@testable import PeerVariableStores
@testable import Platform
@testable import Svsm
@testable import VariableService

/// Differential conformance: one corpus of MM requests — a whole boot and an efivarfs
/// session recorded from the SVSM, the fuzz targets' MM seeds, the authenticated-write
/// seeds — replayed through every profile's store. Every difference from edk2 must be
/// one docs/svsm-profiles.md lists for that profile, by its id.
@Suite("Differential conformance: every profile answers the corpus as docs/svsm-profiles.md says", .serialized)
struct ProfileConformanceTests {
    struct Request {
        let guid: EfiGuid
        let message: [UInt8]
        let origin: String
    }

    /// The firmware's and the driver's buffers are both 64 KiB (OVMF's MAX_BUFFER_SIZE and
    /// the driver's probe), so the recorded requests are replayed with that RDX.
    static let bufferSize: UInt64 = 64 * 1024
    static let vendor = EfiGuid("3cc04c6c-0c4b-4f2c-8b6e-6c8a0f3e1d20")!

    /// A booted edk2 machine, recorded from power-on, then an efivarfs session through the
    /// modelled Linux filesystem: populate, read every file, create, append, rewrite,
    /// delete, refused writes, statfs.
    static func recordedSession() throws -> [Request] {
        let log = Locked<[Request]>([])
        var c = Machine.Configuration()
        c.vcpuCount = 2
        c.observeFirmwareRequests = true
        c.mmRequestObserver = { _, buffer in
            let r = Request(guid: EfiGuid(bytes: buffer, at: 0), message: Array(buffer[MmCommunicateHeader.size...]), origin: "session")
            log.withLock { $0.append(r) }
        }
        let m = try Machine(c)
        let fs = Efivarfs(driver: m.driver)
        try fs.populate()
        for (name, ino) in fs.list() {
            _ = try? fs.read(ino, handle: nil, offset: 0, count: 1 << 16, caller: .root)
            _ = name
        }
        func name(_ s: String) -> [UInt8] { Array("\(s)-\(vendor)".utf8) }
        let (a, _) = try fs.create(name("Conformance"), mode: 0o644, caller: .root)
        _ = try? fs.write(a.ino, [7, 0, 0, 0, 1, 2, 3])
        _ = try? fs.write(a.ino, [0x47, 0, 0, 0, 4, 5])  // APPEND_WRITE
        _ = try? fs.write(a.ino, [7, 0, 0, 0, 9])
        _ = try? fs.read(a.ino, handle: nil, offset: 0, count: 100, caller: .root)
        let (v, _) = try fs.create(name("Volatile"), mode: 0o644, caller: .root)
        _ = try? fs.write(v.ino, [6, 0, 0, 0, 1])           // volatile, created at runtime
        let (b, _) = try fs.create(name("BootOnly"), mode: 0o644, caller: .root)
        _ = try? fs.write(b.ino, [3, 0, 0, 0, 1])           // no RUNTIME_ACCESS at runtime
        let (n, _) = try fs.create(name("NvOnly"), mode: 0o644, caller: .root)
        _ = try? fs.write(n.ino, [1, 0, 0, 0, 1])           // NV alone
        let (u, _) = try fs.create(name("Bits"), mode: 0o644, caller: .root)
        _ = try? fs.write(u.ino, [0x87, 0, 0, 0, 1])        // an attribute bit no spec defines
        if let sb = try? fs.lookup(Array("SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c".utf8)) {
            _ = try? fs.write(sb.ino, [6, 0, 0, 0, 1])      // a read-only variable
        }
        if let bo = try? fs.lookup(Array("BootOrder-8be4df61-93ca-11d2-aa0d-00e098032b8c".utf8)) {
            _ = try? fs.write(bo.ino, [7, 0, 0, 0, 1, 0, 2, 0, 0, 0])
        }
        try? fs.setFlagsForTest(a.ino, 0, caller: .root)
        try? fs.unlink(name("Conformance"))
        let (g, _) = try fs.create(name("Ghost"), mode: 0o644, caller: .root)
        _ = try? fs.write(g.ino, [7, 0, 0, 0])              // delete what does not exist
        _ = fs.statfs()
        withExtendedLifetime(m) {}
        return log.withLock { $0 }
    }

    /// Requests no well-behaved client sends after boot but a guest can: each shows one
    /// documented difference at the store itself (efivarfs and the driver refuse most of
    /// them before they reach it).
    static func direct() -> [Request] {
        func variable(_ f: SmmVariableFunction, _ payload: [UInt8], _ what: String) -> Request {
            Request(guid: .smmVariableProtocol, message: SmmVariableHeader.message(f, payload: payload), origin: "direct/\(what)")
        }
        func set(_ name: String, _ guid: EfiGuid, _ attrs: UInt32, _ data: [UInt8], _ what: String) -> Request {
            variable(.setVariable, AccessVariablePayload.encode(guid: guid, name: Ucs2.units(name), attributes: attrs, dataSize: data.count, data: data), what)
        }
        // DataSize asks for more than any buffer holds; the message itself is small.
        var bigAsk = AccessVariablePayload.encode(guid: .globalVariable, name: Ucs2.units("BootOrder"), attributes: 0, dataSize: 0)
        bigAsk.storeLE(UInt64(0x20000), at: AccessVariablePayload.dataSizeOffset)
        var oddName = AccessVariablePayload.encode(guid: vendor, name: Ucs2.units("Odd"), attributes: 0, dataSize: 4)
        oddName.storeLE(UInt64(7), at: AccessVariablePayload.nameSizeOffset)
        return [
            set("Bits", vendor, 0x87, [1], "unknown-attribute-bits"),
            set("NvOnly", vendor, 0x1, [1], "nv-alone"),
            set("BootOnly", vendor, 0x3, [1], "no-runtime-access-at-runtime"),
            set("SecureBoot", .globalVariable, 0x6, [1], "read-only-variable"),
            set("BootOrder", .globalVariable, 0x7, [1, 0, 2], "odd-sized-boot-order"),
            set("Big", vendor, 0x7, [UInt8](repeating: 1, count: 0x8400), "over-max-variable-size"),
            variable(.getVariable, AccessVariablePayload.encode(guid: .memoryTypeInformation, name: Ucs2.units("MemoryTypeInformation"),
                                                                 attributes: 0, dataSize: 64), "boot-service-only"),
            variable(.getVariable, oddName, "odd-name-size"),
            variable(.getVariable, bigAsk, "data-size-beyond-the-buffer"),
            variable(.getVariable, AccessVariablePayload.encode(guid: .globalVariable, name: Ucs2.units("BootOrder"), attributes: 0, dataSize: 0x10000),
                     "message-beyond-the-buffer"),
            variable(.readyToBoot, [], "ready-to-boot-at-runtime"),
            variable(.getPayloadSize, [UInt8](repeating: 0, count: 8), "payload-size"),
            variable(.varCheckVariablePropertySet, VarCheckPropertyPayload.encode(guid: vendor, name: Ucs2.units("Prop"),
                                                                                  property: VariableProperty(revision: 1, minSize: 0, maxSize: 8)), "property-set"),
            variable(.getStatistics, [UInt8](repeating: 0, count: 32), "statistics"),
            variable(SmmVariableFunction(rawValue: 12), [UInt8](repeating: 0, count: 32), "runtime-cache"),
            Request(guid: .smmVariableProtocol, message: [1, 0, 0], origin: "direct/short-message"),
        ]
    }

    /// The MM fuzz target's seeds, decoded as the target reads them.
    static func mmSeeds() -> [[Request]] {
        MmPayloadTarget.seeds().map { seed in
            var input = FuzzInput(seed.bytes)
            var out: [Request] = []
            while !input.isExhausted && out.count < 8 {
                let guid = MmPayloadTarget.headerGuids[Int(input.u8()) % MmPayloadTarget.headerGuids.count]
                out.append(Request(guid: guid, message: input.block(), origin: "mm-payload/\(seed.name)"))
            }
            return out
        }
    }

    /// The authenticated-write seeds as SET_VARIABLE messages.
    static func authSeeds() -> [[Request]] {
        AuthVariableTarget.seeds().map { seed in
            guard let selector = seed.bytes.first else { return [] }
            let key = AuthVariableTarget.targets[Int(selector & 0x7f) % AuthVariableTarget.targets.count]
            var attributes: VariableAttributes = [.nvBsRt, .timeBasedAuthenticatedWriteAccess]
            if selector & 0x80 != 0 { attributes.insert(.appendWrite) }
            let data = Array(seed.bytes.dropFirst())
            let payload = AccessVariablePayload.encode(guid: key.guid, name: key.name, attributes: attributes.rawValue, dataSize: data.count, data: data)
            return [Request(guid: .smmVariableProtocol, message: SmmVariableHeader.message(.setVariable, payload: payload), origin: "auth-variable/\(seed.name)")]
        }
    }

    /// A profile's store as power-on leaves it, behind the service.
    static func service(_ profile: SvsmProfile) throws -> VariableService {
        var c = Machine.Configuration()
        c.profile = profile
        let opened = try Machine.openStore(c)
        return VariableService(store: opened.store, journal: opened.journal)
    }

    /// The ids docs/svsm-profiles.md lists, with the profiles each applies to.
    static func listedDifferences() throws -> [String: Set<String>] {
        let here = URL(fileURLWithPath: #filePath)
        let doc = here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/svsm-profiles.md")
        let text = try String(contentsOf: doc, encoding: .utf8)
        var out: [String: Set<String>] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("| `") {
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 2, cells[0].hasPrefix("`"), cells[0].hasSuffix("`") else { continue }
            let id = String(cells[0].dropFirst().dropLast())
            out[id] = Set(cells[1].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        }
        return out
    }

    struct Difference: CustomStringConvertible {
        let request: Request
        let index: Int
        let edk2: String
        let peer: String
        let id: String?
        var description: String { "\(request.origin) #\(index) \(ConformanceClassifier.describe(request)): edk2 \(edk2), peer \(peer) → \(id ?? "UNLISTED")" }
    }

    /// Replays `sequences` (each from a freshly booted store after `prefix`) and returns
    /// every difference, classified.
    static func replay(_ profile: SvsmProfile, prefix: [Request], sequences: [[Request]]) throws -> [Difference] {
        var diffs: [Difference] = []
        for seq in sequences {
            let reference = try service(.edk2), peer = try service(profile)
            for r in prefix {
                _ = reference.handleMmRequest(headerGuid: r.guid, message: r.message, bufferSize: bufferSize)
                _ = peer.handleMmRequest(headerGuid: r.guid, message: r.message, bufferSize: bufferSize)
            }
            var classifier = ConformanceClassifier(profile: profile, reference: reference, peer: peer)
            for (i, r) in seq.enumerated() {
                let e = reference.handleMmRequest(headerGuid: r.guid, message: r.message, bufferSize: bufferSize)
                let p = peer.handleMmRequest(headerGuid: r.guid, message: r.message, bufferSize: bufferSize)
                let (se, sp) = (ConformanceClassifier.summary(r, e), ConformanceClassifier.summary(r, p))
                if se != sp { diffs.append(Difference(request: r, index: i, edk2: se, peer: sp, id: classifier.classify(r, e, p))) }
            }
        }
        return diffs
    }

    @Test("the boot, an efivarfs session and the fuzz seeds: every difference is listed for its profile",
          arguments: [SvsmProfile.coconut, .qemu])
    func replayCorpus(_ profile: SvsmProfile) throws {
        let listed = try Self.listedDifferences()
        let session = try Self.recordedSession()
        // The boot ends where the driver starts: its first request is GET_PAYLOAD_SIZE.
        let bootEnd = session.firstIndex { $0.guid == .smmVariableProtocol && $0.message.count >= 8
            && $0.message.loadLE(UInt64.self, at: 0) == SmmVariableFunction.getPayloadSize.rawValue } ?? session.count
        let boot = Array(session[..<bootEnd])
        #expect(boot.count > 20 && session.count - bootEnd > 50, "the corpus is a whole boot and a session: \(boot.count) + \(session.count - bootEnd)")
        var diffs = try Self.replay(profile, prefix: [], sequences: [session])
        diffs += try Self.replay(profile, prefix: boot, sequences: Self.mmSeeds() + Self.authSeeds() + [Self.direct()])
        let unlisted = diffs.filter { d in d.id.map { !(listed[$0]?.contains(profile.rawValue) ?? false) } ?? true }
        let report = unlisted.prefix(40).map(\.description).joined(separator: "\n")
        #expect(unlisted.isEmpty, "\(unlisted.count) differences not listed in docs/svsm-profiles.md for \(profile):\n\(report)")
        // The corpus must reach the differences it is meant to show.
        let seen = Set(diffs.compactMap(\.id))
        for id in ["var-check-functions", "delete-missing", "attribute-rules", "initial-variables", "enumeration", "hidden-access-denied",
                   "uefi-variable-checks", "size-limits", "name-status", "get-buffer-bounds", "ready-to-boot-at-runtime", "unprocessed-message",
                   "query-info", "policy-mmi", "lock-variable", "append-write", "authenticated-variables"] {
            #expect(seen.contains(id), "\(profile): the corpus never showed \(id)")
        }
    }

    @Test("the classifier does not wave an invented difference through")
    func classifierRefusesTheUnknown() throws {
        let reference = try Self.service(.edk2), peer = try Self.service(.qemu)
        var c = ConformanceClassifier(profile: .qemu, reference: reference, peer: peer)
        // A GET of a variable both stores hold, answered with different data: nothing in
        // the docs allows that.
        let key = VariableKey("Conformance", Self.vendor)
        let get = Request(guid: .smmVariableProtocol, message: SmmVariableHeader.message(.getVariable, payload:
            AccessVariablePayload.encode(guid: key.guid, name: key.name, attributes: 0, dataSize: 8)), origin: "invented")
        var e = get.message, p = get.message
        e.storeLE(EfiStatus.success.rawValue, at: 8); p.storeLE(EfiStatus.success.rawValue, at: 8)
        p[p.count - 1] ^= 0xff
        #expect(c.classify(get, e, p) == nil)
    }
}

/// Names the documented difference a request shows between edk2 and a peer, or nil.
struct ConformanceClassifier {
    let profile: SvsmProfile
    /// Variables whose presence or content differs between the two stores right after
    /// power-on and the firmware's writes.
    let differingKeys: Set<VariableKey>
    /// Variables a classified difference left different in the two stores, with its id:
    /// later answers about them differ for the same reason.
    private(set) var diverged: [VariableKey: String] = [:]

    init(profile: SvsmProfile, reference: VariableService, peer: VariableService) {
        self.profile = profile
        var keys = Set<VariableKey>()
        let a = Dictionary(reference.allVariables.map { ($0.key, $0.value) }, uniquingKeysWith: { x, _ in x })
        let b = Dictionary(peer.allVariables.map { ($0.key, $0.value) }, uniquingKeysWith: { x, _ in x })
        for k in Set(a.keys).union(b.keys) where a[k]?.data != b[k]?.data || a[k]?.attributes != b[k]?.attributes { keys.insert(k) }
        differingKeys = keys
    }

    static func function(_ r: ProfileConformanceTests.Request) -> SmmVariableFunction? {
        r.guid == .smmVariableProtocol && r.message.count >= 8 ? SmmVariableFunction(rawValue: r.message.loadLE(UInt64.self, at: 0)) : nil
    }

    static func describe(_ r: ProfileConformanceTests.Request) -> String {
        if let f = function(r) { return "\(f.name)\(key(r).map { " \($0)" } ?? "")" }
        return "HeaderGuid \(r.guid), \(r.message.count) bytes"
    }

    /// The variable an access or name request names, when it decodes.
    static func key(_ r: ProfileConformanceTests.Request) -> VariableKey? {
        guard let f = function(r), r.message.count >= 16 else { return nil }
        let p = Array(r.message[16...])
        switch f {
        case .getVariable, .setVariable:
            guard p.count >= 36 else { return nil }
            let n = Int(clamping: p.loadLE(UInt64.self, at: 24))
            guard n >= 2, n <= p.count - 36, let name = Ucs2.readNulTerminated(p, offset: 36, byteCount: n) else { return nil }
            return VariableKey(guid: EfiGuid(bytes: p, at: 0), name: name)
        case .getNextVariableName:
            guard p.count >= 24 else { return nil }
            let n = Int(clamping: p.loadLE(UInt64.self, at: 16))
            guard n >= 2, n <= p.count - 24, let name = Ucs2.readNulTerminated(p, offset: 24, byteCount: n) else { return nil }
            return VariableKey(guid: EfiGuid(bytes: p, at: 0), name: name)
        default: return nil
        }
    }

    /// What a reply says, in the fields a client reads.
    static func summary(_ r: ProfileConformanceTests.Request, _ reply: [UInt8]?) -> String {
        guard let reply else { return "untouched" }
        if r.guid == .varCheckPolicyMmiHandler {
            return reply.count >= 20 ? "policy \(EfiStatus(rawValue: reply.loadLE(UInt64.self, at: 12)).name)" : "policy short"
        }
        guard let f = function(r) else { return reply == r.message ? "echo" : "changed" }
        guard reply.count >= 16 else { return "short reply" }
        let status = EfiStatus(rawValue: reply.loadLE(UInt64.self, at: 8))
        let p = Array(reply[16...])
        var detail = ""
        if status == .success {
            switch f {
            case .getVariable where p.count >= 36:
                let n = Int(clamping: p.loadLE(UInt64.self, at: 24)), d = Int(clamping: p.loadLE(UInt64.self, at: 16))
                let start = 36 + n
                let data = start <= p.count ? Array(p[start..<min(p.count, start + d)]) : []
                detail = " attrs 0x\(String(p.loadLE(UInt32.self, at: 32), radix: 16)) data \(Hex.encode(data))"
            case .getNextVariableName where p.count >= 24:
                detail = " next \(key(ProfileConformanceTests.Request(guid: r.guid, message: reply, origin: "")).map { "\($0)" } ?? "?")"
            case .queryVariableInfo where p.count >= 24:
                detail = " \(p.loadLE(UInt64.self, at: 0))/\(p.loadLE(UInt64.self, at: 8))/\(p.loadLE(UInt64.self, at: 16))"
            case .getPayloadSize where p.count >= 8:
                detail = " \(p.loadLE(UInt64.self, at: 0))"
            default: break
            }
        } else if status == .bufferTooSmall, f == .getVariable, p.count >= 24 {
            detail = " needs \(p.loadLE(UInt64.self, at: 16))"
        }
        return status.name + detail
    }

    mutating func classify(_ r: ProfileConformanceTests.Request, _ e: [UInt8]?, _ p: [UInt8]?) -> String? {
        let id = classifyOne(r, e, p)
        if let id, Self.function(r) == .setVariable, let key = Self.key(r), diverged[key] == nil { diverged[key] = id }
        return id
    }

    private func classifyOne(_ r: ProfileConformanceTests.Request, _ e: [UInt8]?, _ p: [UInt8]?) -> String? {
        if r.guid == .varCheckPolicyMmiHandler { return "policy-mmi" }
        // A message shorter than its header, or larger than QEMU's buffer: not processed.
        if (e == nil) != (p == nil) {
            return r.guid == .smmVariableProtocol && (r.message.count < 16 || UInt64(24 + r.message.count) > UefiVarsStore.maxBufferSize)
                ? "unprocessed-message" : nil
        }
        guard let f = Self.function(r) else { return nil }
        guard let e, let p, e.count >= 16, p.count >= 16 else { return nil }
        let se = EfiStatus(rawValue: e.loadLE(UInt64.self, at: 8)), sp = EfiStatus(rawValue: p.loadLE(UInt64.self, at: 8))
        let key = Self.key(r)
        let payload = Array(r.message[16...])
        switch f {
        case .varCheckVariablePropertyGet, .varCheckVariablePropertySet:
            return sp == .unsupported ? "var-check-functions" : nil
        case .getPayloadSize: return "payload-size"
        case .queryVariableInfo: return "query-info"
        case .readyToBoot: return se == .unsupported && sp == .success ? "ready-to-boot-at-runtime" : nil
        case .lockVariable: return "lock-variable"
        case .getVariable, .getNextVariableName, .setVariable:
            guard let key else {
                // The name does not decode as edk2 decodes it.
                return [EfiStatus.invalidParameter, .badBufferSize, .accessDenied, .outOfResources, .notFound].contains(sp) ? "name-status" : nil
            }
            if f == .getNextVariableName {
                if se == .bufferTooSmall || sp == .bufferTooSmall { return "get-buffer-bounds" }
                return [EfiStatus.success, .notFound, .invalidParameter].contains(se) && [EfiStatus.success, .notFound, .invalidParameter].contains(sp)
                    ? "enumeration" : nil
            }
            if f == .getVariable && [se, sp].contains(where: { $0 == .badBufferSize || $0 == .outOfResources }) { return "get-buffer-bounds" }
            if differingKeys.contains(key) { return "initial-variables" }
            if let earlier = diverged[key], f == .getVariable { return earlier }
            if f == .getVariable { return se == .notFound && sp == .accessDenied ? "hidden-access-denied" : nil }
            let attributes = VariableAttributes(rawValue: payload.count >= 36 ? payload.loadLE(UInt32.self, at: 32) : 0)
            let dataSize = payload.count >= 36 ? payload.loadLE(UInt64.self, at: 16) : 0
            if dataSize == 0 && se == .notFound && sp == .success { return "delete-missing" }
            if attributes.contains(.timeBasedAuthenticatedWriteAccess) || attributes.contains(.authenticatedWriteAccess) { return "authenticated-variables" }
            if attributes.contains(.appendWrite) { return "append-write" }
            // edk2's VarCheck: read-only properties and the UEFI-defined variables' rules.
            if se == .writeProtected && sp == .success { return "uefi-variable-checks" }
            if se == .invalidParameter && sp == .success && key.guid == .globalVariable { return "uefi-variable-checks" }
            if !attributes.subtracting(.edk2Mask).isEmpty || attributes.intersection(.nvBsRt) == .nonVolatile
                || !attributes.contains(.runtimeAccess) || !attributes.contains(.nonVolatile) {
                return "attribute-rules"
            }
            if se == .invalidParameter && (sp == .success || sp == .outOfResources) { return "size-limits" }
            return nil
        default:
            return se == sp ? nil : "unsupported-functions"
        }
    }
}

