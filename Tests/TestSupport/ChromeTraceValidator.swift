import Foundation

/// Test-only: checks a Chrome trace-event document (what `trace export --perfetto` writes)
/// for the fields the format requires.
public enum ChromeTraceValidator {
    /// Checks the fields the trace-event format requires; returns the problems found.
    public static func validate(_ json: Any) -> [String] {
        guard let root = json as? [String: Any], let events = root["traceEvents"] as? [[String: Any]] else {
            return ["the root must be an object with a 'traceEvents' array"]
        }
        var problems: [String] = []
        for (i, e) in events.enumerated() {
            guard let ph = e["ph"] as? String, ph.count == 1 else { problems.append("event \(i): 'ph' must be a one-letter string"); continue }
            if e["name"] as? String == nil { problems.append("event \(i): 'name' must be a string") }
            if e["pid"] as? Int == nil { problems.append("event \(i): 'pid' must be an integer") }
            if e["tid"] as? Int == nil { problems.append("event \(i): 'tid' must be an integer") }
            if ph == "X" {
                if (e["ts"] as? NSNumber) == nil { problems.append("event \(i): 'ts' must be a number") }
                if let d = e["dur"] as? NSNumber { if d.doubleValue < 0 { problems.append("event \(i): negative 'dur'") } }
                else { problems.append("event \(i): an 'X' event needs 'dur'") }
            } else if ph == "M" {
                if (e["args"] as? [String: Any])?["name"] as? String == nil { problems.append("event \(i): metadata needs args.name") }
            } else {
                problems.append("event \(i): unexpected phase '\(ph)'")
            }
        }
        return problems
    }
}
