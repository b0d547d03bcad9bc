import Foundation
import Testing
import TestSupport

/// Sentences of the documentation that once contradicted the code, checked against it: a doc
/// that drifts from the behaviour fails here instead of misleading a reader.
@Suite("Documentation that states what the code does")
struct DocsTruthTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static func read(_ path: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }

    /// `--from-fd` writes into the file in place, record by record as edk2 writes its flash
    /// (FirmwareVolumeBacking); the help must not promise an atomic replacement.
    @Test("mount --help describes --from-fd's writes as in place, not atomic")
    func fromFdHelp() throws {
        let help = Shell.run("'\(Bridge.binary)' mount --help").out
        // The option's entry: from its name to the next option's.
        let start = try #require(help.range(of: "--from-fd <file>"))
        let entry = String(help[start.upperBound...]).components(separatedBy: "\n  --").first ?? ""
        #expect(entry.contains("in place"), "\(entry)")
        #expect(!entry.lowercased().contains("atomic"), "\(entry)")
    }

    /// The README's list of differences names every modelled difference, not only FUSE's.
    @Test("the README's differences from the kernel's efivarfs list the modelled ones and mmap(MAP_PRIVATE)")
    func readmeDifferences() throws {
        let readme = try Self.read("README.md")
        let start = try #require(readme.range(of: "## Differences from the kernel's efivarfs"))
        let section = String(readme[start.upperBound...]).components(separatedBy: "\n## ").first ?? ""
        for phrase in ["consistent snapshot", "BUSY or INCOMPLETE", "--max-retries", "garbage-collection", "MAP_PRIVATE", "ENODEV",
                       "EFIVARFS_MAGIC", "zero-length", "ESPIPE", "RELEASE"] {
            #expect(section.contains(phrase), "README's differences section lacks '\(phrase)'")
        }
        #expect(!section.contains("only what FUSE cannot do"))
    }

    /// Efivarfs lists names newest inode first (sorted); a comment once said "in no particular order".
    @Test("no comment in the efivarfs layer calls its listing order arbitrary")
    func listingOrderComment() throws {
        let dir = Self.root.appendingPathComponent("Sources/Efivarfs")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".swift") }
        #expect(!files.isEmpty)
        for f in files {
            let text = try String(contentsOf: dir.appendingPathComponent(f), encoding: .utf8)
            #expect(!text.contains("no particular order"), "Sources/Efivarfs/\(f)")
        }
    }

    /// BENCHMARKS.md's summary quotes only figures its own tables show: every decimal number in
    /// the "## Summary" section appears as a table cell (alone or with its unit) in the file.
    @Test("every figure BENCHMARKS.md's summary quotes is in one of its tables")
    func benchmarkSummary() throws {
        let text = try Self.read("BENCHMARKS.md")
        let start = try #require(text.range(of: "\n## Summary\n"), "BENCHMARKS.md has a '## Summary' section")
        let summary = String(text[start.upperBound...]).components(separatedBy: "\n## ").first ?? ""
        let cells = Set(text.split(separator: "\n").filter { $0.hasPrefix("|") }.flatMap { row in
            row.split(separator: "|").map { cell -> String in
                let c = cell.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "**", with: "")
                return c.split(separator: " ").first.map(String.init) ?? c
            }
        })
        let figures = summary.matches(of: /\b\d[\d,]*\.\d+\b/).map { String(summary[$0.range]) }
        #expect(!figures.isEmpty, "the summary quotes no figure")
        for figure in figures {
            #expect(cells.contains(figure), "BENCHMARKS.md's summary quotes \(figure), which no table shows")
        }
    }
}
