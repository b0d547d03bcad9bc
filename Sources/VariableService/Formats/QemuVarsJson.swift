import EfiTypes
import Foundation

/// QEMU's uefi-vars JSON (qemu/qemu qapi/uefi.json, hw/uefi/var-service-json.c), version 2,
/// and what virt-fw-vars --output-json writes (virt-firmware, gitlab.com/kraxel/virt-firmware,
/// virt/firmware/efi/efijson.py).
public enum QemuVarsJson {
    public static func read(_ bytes: [UInt8], path: String) throws(VariableFileError) -> [ExportedVariable] {
        func fail(_ where_: String, _ why: String) -> VariableFileError { VariableFileError(path: path, location: where_, reason: why) }
        guard let root = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] else { throw fail("top level", "not a JSON object") }
        guard root["version"] as? Int == 2 else { throw fail("version", "only version 2 is supported") }
        guard let list = root["variables"] as? [[String: Any]] else { throw fail("variables", "missing or not an array of objects") }
        var out: [ExportedVariable] = []
        var seen = Set<VariableKey>()
        for (n, v) in list.enumerated() {
            let at = "variables[\(n)]"
            guard let g = v["guid"] as? String, let guid = EfiGuid(g) else { throw fail("\(at).guid", "not a GUID") }
            guard let name = v["name"] as? String, !name.isEmpty else { throw fail("\(at).name", "missing or empty") }
            guard let attr = v["attr"] as? Int, attr >= 0, attr <= Int(UInt32.max) else { throw fail("\(at).attr", "not an integer attribute set") }
            guard let hex = v["data"] as? String, let data = Hex.decodeStrict(hex) else { throw fail("\(at).data", "not an even-length hex string") }
            var time: EfiTime?
            if let t = v["time"] as? String {
                // Found by the variable-file fuzz target: spaces inside a 32-character
                // field once passed this check and crashed on the 14 bytes they left.
                guard let tb = Hex.decodeStrict(t), tb.count == 16 else { throw fail("\(at).time", "not 32 hex digits") }
                time = EfiTime(bytes: tb)
            }
            var digest: [UInt8]?
            if let d = v["digest"] as? String {
                guard let db = Hex.decodeStrict(d), !db.isEmpty else { throw fail("\(at).digest", "not a non-empty even-length hex string") }
                digest = db
            }
            let attrs = VariableAttributes(rawValue: UInt32(attr)).subtracting(.appendWrite)
            guard attrs.contains(.nonVolatile) else { throw fail("\(at).attr", "a volatile variable in a non-volatile store") }
            let key = VariableKey(guid: guid, name: Ucs2.units(name))
            guard seen.insert(key).inserted else { throw fail(at, "duplicate variable \(key)") }
            if attrs.contains(.timeBasedAuthenticatedWriteAccess) && time == nil { time = .zero }
            out.append(ExportedVariable(key, StoredVariable(attributes: attrs, data: data, timestamp: time, digest: digest)))
        }
        return out
    }

    /// Version 2; `time` for authenticated variables, as QEMU writes it.
    public static func write(_ variables: [ExportedVariable]) -> [UInt8] {
        let list: [[String: Any]] = variables.map { v in
            var o: [String: Any] = ["guid": v.key.guid.description, "name": Ucs2.string(v.key.name),
                                    "attr": Int(v.value.attributes.rawValue), "data": Hex.encode(v.value.data)]
            // QEMU writes `time` for authenticated variables; a timestamp another variable
            // carries (read from a file that had one) is kept too, so nothing read is lost.
            if v.value.attributes.contains(.timeBasedAuthenticatedWriteAccess) || v.value.timestamp != nil {
                o["time"] = Hex.encode((v.value.timestamp ?? .zero).bytes)
            }
            // QEMU's signer digest of a non-Secure-Boot authenticated variable
            // (var-service-json.c reads and writes it as hex).
            if let d = v.value.digest { o["digest"] = Hex.encode(d) }
            return o
        }
        let data = try! JSONSerialization.data(withJSONObject: ["version": 2, "variables": list], options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        return Array(data) + [0x0a]
    }
}
