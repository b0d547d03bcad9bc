import Foundation
import Testing
import TestSupport

/// Concurrency: 128 clients (8 processes x 16 threads, `Stress/stress.c`) on a
/// mount with `--vcpus 128` and a durable store, for a bounded time (8 s here;
/// EFIVARFS_STRESS_SECONDS for a longer run). A watchdog kills the clients if they are not
/// done well after that, which fails the test (a deadlock). Afterwards the bridge must
/// still answer, and after a remount every private variable must hold exactly what the
/// clients' model of their acknowledged operations says.
@Suite("Concurrency stress", .serialized)
struct StressTests {
    static let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Stress/stress.c").path

    @Test("128 clients: private variables match the model, shared ones hold a written value, no deadlock, no crash")
    func oneHundredTwentyEightClients() throws {
        try requirePrerequisites(.gcc)
        let work = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(work)'") }
        let binary = work + "/stress"
        let cc = Shell.run("gcc -O2 -Wall -pthread -o '\(binary)' '\(Self.source)'")
        try #require(cc.status == 0, "gcc: \(cc.err)")
        let seconds = Int(ProcessInfo.processInfo.environment["EFIVARFS_STRESS_SECONDS"] ?? "") ?? 8
        let store = work + "/store", models = work + "/models"
        try FileManager.default.createDirectory(atPath: models, withIntermediateDirectories: true)

        try Bridge.withMount("--vcpus 128 --store '\(store)'") { dir in
            let r = Shell.run("timeout -s KILL \(seconds + 120) '\(binary)' '\(dir)' 8 16 \(seconds) '\(models)'")
            print("stress: \(r.out.split(separator: "\n").last ?? "")")
            #expect(r.status != 137, "watchdog: the clients did not finish (deadlock?)")
            #expect(r.status == 0, "stress failed:\n\(r.err.split(separator: "\n").prefix(20).joined(separator: "\n"))")
            #expect(r.out.contains("errors=0 clients=128"))
            // The bridge is still there and answers: a listing that succeeds and names the
            // firmware's variables (ls's own status; a pipe would report only the last command's).
            let listing = Shell.run("ls '\(dir)'")
            #expect(listing.status == 0, "ls after the stress: \(listing.err)")
            #expect(listing.out.contains("BootOrder-\(globalGuid)"))
            #expect(Bridge.isMounted(dir))
        }
        // Every private variable after a remount of the durable store.
        try Bridge.withMount("--store '\(store)'") { dir in
            let lines = try FileManager.default.contentsOfDirectory(atPath: models).filter { $0.hasPrefix("model-") }
                .flatMap { try String(contentsOfFile: models + "/" + $0, encoding: .utf8).split(separator: "\n") }
            #expect(lines.count == 256)
            var mismatches: [String] = []
            for line in lines {
                let parts = line.split(separator: " ")
                let name = String(parts[0]), want = parts.count > 1 ? String(parts[1]) : ""
                let path = dir + "/" + name
                if want == "-" {
                    if FileManager.default.fileExists(atPath: path) { mismatches.append("\(name) should be absent") }
                } else {
                    let got = FileManager.default.contents(atPath: path).map { Array($0.dropFirst(4)) }
                    if got.map({ $0.map { String(format: "%02x", $0) }.joined() }) != want { mismatches.append("\(name) differs") }
                }
            }
            #expect(mismatches.isEmpty, "\(mismatches.prefix(10))")
        }
    }
}
