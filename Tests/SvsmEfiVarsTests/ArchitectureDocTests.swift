import Foundation
import Testing

/// ARCHITECTURE.md's target tables against the package itself. The package's side comes from
/// `swift package dump-package` (the manifest as SwiftPM evaluates it, so conditional code or
/// a helper in Package.swift cannot fool it); the document's side from every table whose
/// header starts with `| target |`. Adding a target or a dependency to Package.swift without
/// updating the document fails here.
@Suite("ARCHITECTURE.md: the target table is the package's")
struct ArchitectureDocTests {
    /// The directory that holds Package.swift (this file is Tests/SvsmEfiVarsTests/…).
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// One target's direct dependencies: other targets of this package, and products of
    /// other packages.
    struct Dependencies: Equatable, Sendable, CustomStringConvertible {
        var targets: Set<String> = []
        var products: Set<String> = []
        var description: String { "targets \(targets.sorted()), products \(products.sorted())" }
    }

    enum Failure: Error, CustomStringConvertible {
        case dumpPackage(status: Int32, stderr: String)
        case unexpectedJson(String)
        case noTable
        case noGraphSection
        case malformedRow(String)
        case duplicate(String)
        var description: String {
            switch self {
            case .dumpPackage(let s, let e): return "swift package dump-package exited with \(s): \(e)"
            case .unexpectedJson(let what): return "dump-package JSON: \(what)"
            case .noTable: return "ARCHITECTURE.md has no table whose header starts with `| target |`"
            case .noGraphSection: return "ARCHITECTURE.md has no section \"## The target graph\""
            case .malformedRow(let line): return "ARCHITECTURE.md: a target-table row whose first cell is not one `name`, or that lacks a column: \(line)"
            case .duplicate(let name): return "ARCHITECTURE.md lists \(name) twice"
            }
        }
    }

    /// The package's targets, read once for all tests.
    static let declared: Result<[String: Dependencies], any Error> = Result { try dumpPackage() }

    /// Runs `swift package dump-package` on this package. The scratch path is a fresh
    /// temporary directory: the package's own build directory is locked by the `swift test`
    /// that runs this, and a second SwiftPM would wait for that lock.
    static func dumpPackage() throws -> [String: Dependencies] {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("architecture-doc-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["swift", "package", "--package-path", packageRoot.path, "--scratch-path", scratch.path, "dump-package"]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Read before waiting: the JSON is larger than a pipe's buffer.
        let json = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw Failure.dumpPackage(status: p.terminationStatus, stderr: String(decoding: errors, as: UTF8.self))
        }
        return try parseDump(json)
    }

    /// dump-package's `targets`: each with `name` and `dependencies`, a dependency being
    /// `{"byName": [name, condition]}`, `{"target": [name, condition]}` or
    /// `{"product": [name, package, moduleAliases, condition]}`. `byName` names a target when
    /// one has that name, else a product (SwiftPM's rule).
    static func parseDump(_ json: Data) throws -> [String: Dependencies] {
        guard let manifest = try JSONSerialization.jsonObject(with: json) as? [String: Any],
              let targets = manifest["targets"] as? [[String: Any]] else { throw Failure.unexpectedJson("no targets array") }
        let names = Set(targets.compactMap { $0["name"] as? String })
        var out: [String: Dependencies] = [:]
        for target in targets {
            guard let name = target["name"] as? String else { throw Failure.unexpectedJson("a target without a name") }
            var deps = Dependencies()
            for dependency in target["dependencies"] as? [[String: Any]] ?? [] {
                guard dependency.count == 1, let (kind, value) = dependency.first, let fields = value as? [Any],
                      let dependencyName = fields.first as? String else {
                    throw Failure.unexpectedJson("\(name): dependency \(dependency)")
                }
                switch kind {
                case "target": deps.targets.insert(dependencyName)
                case "product": deps.products.insert(dependencyName)
                case "byName":
                    if names.contains(dependencyName) { deps.targets.insert(dependencyName) } else { deps.products.insert(dependencyName) }
                default: throw Failure.unexpectedJson("\(name): dependency kind \(kind)")
                }
            }
            out[name] = deps
        }
        return out
    }

    /// Every row of every table in ARCHITECTURE.md whose header starts with `| target |`: the
    /// target in the first cell (`name`), its target dependencies in the column headed
    /// `depends on …` and its product dependencies in the column headed `from packages`,
    /// each as `name`s separated by commas, or `—` for none.
    static func documented() throws -> [String: Dependencies] {
        let text = try String(contentsOf: packageRoot.appendingPathComponent("ARCHITECTURE.md"), encoding: .utf8)
        func cells(_ line: Substring) -> [String] {
            line.trimmingCharacters(in: .whitespaces).dropFirst().dropLast()
                .split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        }
        func names(_ cell: String) -> [String] {
            cell.split(separator: "`", omittingEmptySubsequences: false).enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
        }
        var out: [String: Dependencies] = [:]
        var columns: (targets: Int, products: Int)?
        var foundTable = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            guard line.hasPrefix("|") else { columns = nil; continue }
            let row = cells(line)
            if columns == nil {
                // A header row: is it a target table?
                guard row.first == "target",
                      let t = row.firstIndex(where: { $0.hasPrefix("depends on") }),
                      let p = row.firstIndex(of: "from packages") else { columns = (-1, -1); continue }
                columns = (t, p)
                foundTable = true
                continue
            }
            guard let (t, p) = columns, t >= 0 else { continue }
            if row.allSatisfy({ $0.allSatisfy { "-: ".contains($0) } }) { continue }  // the |---| line
            guard row.count > max(t, p), let name = names(row[0]).first, names(row[0]).count == 1 else {
                throw Failure.malformedRow(String(line))
            }
            guard out[name] == nil else { throw Failure.duplicate(name) }
            out[name] = Dependencies(targets: Set(names(row[t])), products: Set(names(row[p])))
        }
        guard foundTable else { throw Failure.noTable }
        return out
    }

    @Test("the target tables list exactly the targets Package.swift declares")
    func everyTargetListed() throws {
        let declared = try ArchitectureDocTests.declared.get()
        let documented = try ArchitectureDocTests.documented()
        let missing = Set(declared.keys).subtracting(documented.keys).sorted()
        let extra = Set(documented.keys).subtracting(declared.keys).sorted()
        #expect(missing.isEmpty, "targets in Package.swift that ARCHITECTURE.md does not list: \(missing)")
        #expect(extra.isEmpty, "targets ARCHITECTURE.md lists that Package.swift does not declare: \(extra)")
    }

    @Test("each target's row lists exactly its direct target and package-product dependencies")
    func everyDependencyListed() throws {
        let declared = try ArchitectureDocTests.declared.get()
        let documented = try ArchitectureDocTests.documented()
        for (name, deps) in declared.sorted(by: { $0.key < $1.key }) {
            guard let listed = documented[name] else { continue }  // reported by everyTargetListed
            #expect(listed.targets == deps.targets,
                    "\(name): ARCHITECTURE.md says it depends on \(listed.targets.sorted()), Package.swift on \(deps.targets.sorted())")
            #expect(listed.products == deps.products,
                    "\(name): ARCHITECTURE.md lists the products \(listed.products.sorted()), Package.swift \(deps.products.sorted())")
        }
    }

    /// The words of the section "## The target graph" (the drawing and the list of what it
    /// leaves out). Its edges are drawn by hand and not parsed; the tables carry the checked
    /// dependencies.
    static func graphSectionWords() throws -> Set<String> {
        let text = try String(contentsOf: packageRoot.appendingPathComponent("ARCHITECTURE.md"), encoding: .utf8)
        guard let start = text.range(of: "\n## The target graph\n") else { throw Failure.noGraphSection }
        let rest = text[start.upperBound...]
        let section = rest.range(of: "\n## ").map { rest[..<$0.lowerBound] } ?? rest
        let wordCharacters = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "_-"))
        return Set(section.unicodeScalars.split { !wordCharacters.contains($0) }.map { String($0) })
    }

    @Test("the target graph section names every target Package.swift declares")
    func everyTargetDrawn() throws {
        let declared = try ArchitectureDocTests.declared.get()
        let words = try ArchitectureDocTests.graphSectionWords()
        let missing = Set(declared.keys).subtracting(words).sorted()
        #expect(missing.isEmpty, "targets neither drawn nor listed under \"## The target graph\": \(missing)")
    }

    @Test("dump-package's dependency forms are read as SwiftPM reads them")
    func dumpParsing() throws {
        let json = """
            {"targets": [
              {"name": "A", "dependencies": [{"byName": ["B", null]}, {"byName": ["Lib", null]},
                                             {"target": ["C", null]}, {"product": ["P", "pkg", null, null]}]},
              {"name": "B", "dependencies": []}, {"name": "C"}
            ]}
            """
        let parsed = try ArchitectureDocTests.parseDump(Data(json.utf8))
        #expect(parsed["A"] == Dependencies(targets: ["B", "C"], products: ["Lib", "P"]))
        #expect(parsed["B"] == Dependencies())
        #expect(parsed["C"] == Dependencies())
    }
}
