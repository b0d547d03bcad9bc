import SvsmEfiVars

/// (c) The efivarfs write path down to the store: a booted machine (one vCPU, memory-only
/// store) with efivarfs over its driver; each input creates a file of any name and issues
/// up to three writes of any bytes, then reads back and removes what it made.
///
/// Properties: every refusal is an errno efivarfs can give for that operation; the first
/// successful write of a new variable reads back byte for byte (attributes without
/// APPEND_WRITE, then the data); the bridge's state is clean again after each input.
final class EfivarfsWriteTarget: Sendable {
    static let shared = EfivarfsWriteTarget()

    let machine: Machine
    let fs: Efivarfs

    static let createErrors: Set<Errno> = [.nameTooLong, .invalidArgument, .notPermitted, .fileExists]
    /// What a write can answer: its own checks (EINVAL), efi_status_to_err of the store's
    /// status, and NOT_FOUND turned into EIO.
    static let writeErrors: Set<Errno> = [.invalidArgument, .noSpace, .ioError, .readOnlyFileSystem, .permissionDenied,
                                          .interrupted]

    init() {
        var c = Machine.Configuration()
        c.vcpuCount = 1
        do { machine = try Machine(c) } catch { fatalError("boot: \(error)") }
        fs = Efivarfs(driver: machine.driver)
        do { try fs.populate() } catch { fatalError("populate: \(error)") }
    }

    func run(_ data: [UInt8]) throws(PropertyViolation) {
        var input = FuzzInput(data)
        let name = input.block()
        let root = Efivarfs.Caller(uid: 0, gid: 0)
        let node: NodeAttributes
        let handle: UInt64?
        do { (node, handle) = try fs.create(name, mode: 0o644, caller: root) } catch {
            try require(Self.createErrors.contains(error), "create answered \(error)")
            return
        }
        var firstWrite = true
        var writes = 0
        while !input.isExhausted && writes < 3 {
            writes += 1
            let buffer = input.block()
            let n: Int
            do { n = try fs.write(node.ino, buffer) } catch {
                try require(Self.writeErrors.contains(error), "write answered \(error)")
                continue
            }
            try require(n == buffer.count, "write returned \(n) for \(buffer.count) bytes")
            let raw = buffer.loadLE(UInt32.self, at: 0)
            if firstWrite && buffer.count > 4 && raw & VariableAttributes.appendWrite.rawValue == 0 {
                let back: [UInt8]
                do { back = try fs.read(node.ino, handle: handle, offset: 0, count: 1 << 20, caller: root) } catch {
                    try require(Self.writeErrors.contains(error), "reading back answered \(error)")
                    continue
                }
                var expected = buffer
                expected.storeLE(raw & ~VariableAttributes.appendWrite.rawValue, at: 0)
                try require(back == expected, "read back \(back.count) bytes that differ from the \(buffer.count) written")
            }
            firstWrite = false
        }
        // Clean up: the creating descriptor closes; whatever was stored goes.
        if let handle { fs.release(handle: handle) }
        if (try? fs.isImmutable(node.ino)) == true {
            _ = try? fs.ioctl(node.ino, .setFlags, input: [0, 0, 0, 0], outputSize: 0, caller: root)
        }
        try? fs.unlink(name)
        fs.forget(node.ino, count: 1)
    }

    static func seeds() -> [(name: String, bytes: [UInt8])] {
        func seed(_ name: String, _ writes: [[UInt8]]) -> [UInt8] {
            var s = FuzzSeed()
            s.block(Array(name.utf8))
            for w in writes { s.block(w) }
            return s.bytes
        }
        let nvBsRt = VariableAttributes.nvBsRt.rawValue
        func attrs(_ a: UInt32) -> [UInt8] { var b = [UInt8](zeroed: 4); b.storeLE(a, at: 0); return b }
        let crash = "dump-type0-1-1-1-cfc8fc79-be2e-4ddc-97f0-9f98bfe298a0"
        let test = "test-0123-4567-89ab-cdef-0123456789ab"
        return [
            ("crash-write", seed(crash, [attrs(nvBsRt) + Array("kernel panic".utf8)])),
            ("crash-append", seed(crash, [attrs(nvBsRt) + [1, 2, 3], attrs(nvBsRt | VariableAttributes.appendWrite.rawValue) + [4, 5]])),
            ("crash-delete-by-empty-write", seed(crash, [attrs(nvBsRt) + [1], attrs(nvBsRt)])),
            ("volatile", seed(test, [attrs(VariableAttributes.bootserviceAccess.rawValue | VariableAttributes.runtimeAccess.rawValue) + [0xaa]])),
            ("boot-entry", seed("Boot0042-8be4df61-93ca-11d2-aa0d-00e098032b8c",
                                [attrs(nvBsRt) + [1, 0, 0, 0, 4, 0, 0x41, 0, 0, 0, 0x7f, 0xff, 4, 0]])),
            ("bad-attributes", seed(test, [attrs(0xffff_ffff) + [1]])),
            ("short-write", seed(test, [[7, 0]])),
            ("bad-name", seed("noguid", [attrs(nvBsRt)])),
        ]
    }
}
