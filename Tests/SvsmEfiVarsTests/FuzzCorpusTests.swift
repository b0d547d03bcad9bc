import Foundation
import FuzzTargets
import Testing
import TestSupport

/// The committed seed corpora of the fuzz targets, replayed through the same entry points
/// libFuzzer drives: every seed still runs clean (a broken property stops the process), and
/// the corpus on disk is still the one the seed builders make.
@Suite("Fuzz corpora")
struct FuzzCorpusTests {
    static let corpusRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Fuzz/corpus").standardized.path

    @Test("every committed seed runs clean", arguments: FuzzTarget.allCases)
    func seedsRunClean(_ target: FuzzTarget) throws {
        let dir = Self.corpusRoot + "/" + target.rawValue
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(!names.isEmpty)
        var violations: [String] = []
        for name in names {
            let data = try #require(FileManager.default.contents(atPath: dir + "/" + name))
            do { try target.run(Array(data)) } catch { violations.append("\(name): \(error)") }
        }
        #expect(violations.isEmpty, "\(violations)")
    }

    @Test("the built-in seeds are committed, and every committed seed but the regression inputs comes from a builder",
          arguments: FuzzTarget.allCases)
    func seedsCommitted(_ target: FuzzTarget) throws {
        // Some builders cut their seeds from Debian's OVMF files; without them they would
        // quietly build fewer seeds and this test would check less.
        try requirePrerequisites(.ovmf)
        let dir = Self.corpusRoot + "/" + target.rawValue
        let seeds = target.seeds()
        for seed in seeds {
            let onDisk = FileManager.default.contents(atPath: dir + "/" + seed.name).map(Array.init)
            #expect(onDisk == seed.bytes, "\(target.rawValue)/\(seed.name) differs from its builder; run efivarfs-fuzz seeds")
        }
        let committed = try FileManager.default.contentsOfDirectory(atPath: dir).filter { !$0.hasPrefix("regression-") }
        let unbuilt = Set(committed).subtracting(seeds.map(\.name))
        #expect(unbuilt.isEmpty, "committed seeds no builder makes any more: \(unbuilt.sorted())")
    }
}
