import Foundation
import Testing

/// The benchmarks print numbers and are not tests, so CI never runs them: a script that no
/// longer parses, or a C tool that no longer compiles, would go unseen until someone wanted
/// numbers. These checks cost a second and fail on either.
@Suite("The benchmark scripts parse and their C tools compile")
struct BenchmarkScriptTests {
    static let benchmarks = DocsTruthTests.root.appendingPathComponent("Benchmarks")

    @Test("every script in Benchmarks/ parses (bash -n)")
    func scriptsParse() throws {
        let scripts = try FileManager.default.contentsOfDirectory(atPath: Self.benchmarks.path).filter { $0.hasSuffix(".sh") }.sorted()
        #expect(scripts.contains("run.sh") && scripts.contains("fuse-requests.sh"), "\(scripts)")
        for script in scripts {
            let r = Shell.run("bash -n '\(Self.benchmarks.path)/\(script)'")
            #expect(r.status == 0, "Benchmarks/\(script) does not parse: \(r.err)")
        }
    }

    /// The flags are run.sh's, with every warning an error.
    @Test("load.c and baselinefs.c compile without a warning")
    func toolsCompile() {
        let root = DocsTruthTests.root.path
        for (source, extra) in [("load.c", ""), ("baselinefs.c", "-I Sources/CFuseServer/include $(pkg-config --cflags fuse3)")] {
            let r = Shell.run("cd '\(root)' && cc -O2 -Wall -Wextra -Werror -c -o /dev/null Benchmarks/\(source) \(extra)")
            #expect(r.status == 0, "Benchmarks/\(source): \(r.err)")
        }
    }
}
