import Foundation
import SvsmEfiVars

/// (d) The variable-file importers. The first byte picks the format. A file the reader
/// accepts must survive a round trip through the writer (the fd writer into the same
/// volume when the variables fit, the JSON writer always) and read back as the same
/// variables; a file it refuses must be refused with a located error.
enum VariableFileTarget {
    static func run(_ data: [UInt8]) throws(PropertyViolation) {
        guard let selector = data.first else { return }
        let file = Array(data.dropFirst())
        if selector & 1 == 0 {
            let vars: [ExportedVariable]
            do { vars = try OvmfVarsFile.read(file, path: "fuzz.fd") } catch {
                try require(!error.location.isEmpty && !error.reason.isEmpty, "an fd error without a location")
                return
            }
            // Sorted by name as the writer places them; equal names in different GUIDs keep order.
            guard let written = try? OvmfVarsFile.write(vars, template: file, path: "fuzz.fd") else { return }
            try require(written.count == file.count, "the fd writer changed the volume size")
            let again: [ExportedVariable]
            do { again = try OvmfVarsFile.read(written, path: "fuzz.fd") } catch { throw violation("our own fd does not read back: \(error)") }
            try require(Set(again.map(\.key)) == Set(vars.map(\.key)) && again.count == vars.count, "fd round trip changed the variables")
            for v in vars { try require(again.first { $0.key == v.key } == v, "fd round trip changed \(v.key)") }
        } else {
            let vars: [ExportedVariable]
            do { vars = try QemuVarsJson.read(file, path: "fuzz.json") } catch {
                try require(!error.location.isEmpty && !error.reason.isEmpty, "a JSON error without a location")
                return
            }
            let again: [ExportedVariable]
            do { again = try QemuVarsJson.read(QemuVarsJson.write(vars), path: "fuzz.json") } catch {
                throw violation("our own JSON does not read back: \(error)")
            }
            try require(again == vars, "JSON round trip changed the variables")
        }
    }

    /// Small volumes cut from Debian's OVMF files (same header, a shorter store), and the
    /// JSON our writer makes of them.
    static func seeds() -> [(name: String, bytes: [UInt8])] {
        var out: [(String, [UInt8])] = []
        for (name, size) in [("OVMF_VARS.fd", 0x2000), ("OVMF_VARS.ms.fd", 0x10000)] {
            guard let full = FileManager.default.contents(atPath: "/usr/share/OVMF/" + name).map(Array.init),
                  let vars = try? OvmfVarsFile.read(full, path: name),
                  let small = shrunkVolume(full, to: size),
                  let fd = try? OvmfVarsFile.write(vars, template: small, path: name) else { continue }
            out.append(("fd-" + name, [0] + fd))
            out.append(("json-" + name, [1] + QemuVarsJson.write(vars)))
        }
        out.append(("json-minimal", [1] + Array(#"{"version":2,"variables":[]}"#.utf8)))
        return out
    }

    /// The volume header and store header of `fd`, with FvLength and the store Size cut to
    /// `size` bytes and the header checksum made good again.
    static func shrunkVolume(_ fd: [UInt8], to size: Int) -> [UInt8]? {
        guard fd.count > size else { return nil }
        var v = [UInt8](repeating: 0xFF, count: size)
        let headerLength = Int(fd.loadLE(UInt16.self, at: 0x30))
        v.replaceSubrange(0..<(headerLength + 28), with: fd[0..<(headerLength + 28)])
        v.storeLE(UInt64(size), at: 0x20)
        v.storeLE(UInt16(0), at: 0x32)
        var sum: UInt16 = 0
        for i in stride(from: 0, to: headerLength, by: 2) { sum &+= v.loadLE(UInt16.self, at: i) }
        v.storeLE(UInt16(0) &- sum, at: 0x32)
        v.storeLE(UInt32(size - headerLength), at: headerLength + 16)
        return v
    }
}
