import Foundation

/// The command's readable output.
public enum CaaAllocationText {
    public static func render(_ report: CaaAllocationReport, boots: [FirmwareBootResult], fullMap: Bool = false) -> String {
        var out: [String] = []
        func line(_ s: String = "") { out.append(s) }
        let l = report.layout

        line("CAA allocation with \(report.vcpus) vCPU\(report.vcpus == 1 ? "" : "s") (\(report.vcpus - 1) AP\(report.vcpus == 2 ? "" : "s")), q35 guest with \(ByteCount.format(l.ramBytes)) RAM")
        line()
        line("Layout (decisions and their sources: docs/caa-allocation.md, \"Layout\")")
        line("  low RAM      \(l.lowRam)  \(ByteCount.format(l.lowRam.bytes))   below the PCI hole (qemu hw/i386/pc_q35.c pc_q35_init)")
        if let h = l.highRam { line("  high RAM     \(h)  \(ByteCount.format(h.bytes))") }
        if let p = l.peiMemory { line("  PEI memory   \(p)  \(ByteCount.format(p.bytes)) at the top of low RAM (OvmfPkg PlatformPei MemDetect.c PublishPeiMemory)") }
        if let lo = l.bins.map(\.range.first).min(), let hi = l.bins.map(\.range.end).max() {
            line("  DXE bins     \(PageRange(pages: lo..<hi))  " + l.bins.map { "\(shortName($0.type)) \($0.range.count)" }.joined(separator: ", ") + " pages")
        }
        for r in l.fixedRegions {
            line("  fixed        \(r.range)  \(r.type?.specName ?? "hole"): \(r.what)")
        }
        line("  SWIOTLB      \(l.swiotlbBand) (SEV: 6 % of memory, power of two)")

        for (f, boot) in zip(report.policies, boots) {
            line()
            line("== \(f.policy): \(f.summary)")
            line("EFI memory map at ExitBootServices: \(f.efiDescriptors) descriptors (\(f.efiDescriptorsBelow4GiB) below 4 GiB)")
            line("  by type: " + f.efiDescriptorsByType.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
                .map { "\($0.key) \($0.value)" }.joined(separator: ", "))
            line("  Reserved pages: \(f.reservedPages), of which \(f.saveAreaReservedPages) held by AP save areas")
            for p in f.phases {
                let blocks = p.reservedBlocks
                let sizes = Dictionary(grouping: blocks, by: \.count).sorted { $0.key < $1.key }
                    .map { "\($0.value.count) × \(ByteCount.pages($0.key))" }.joined(separator: ", ")
                line("  \(p.phase) save areas: \(p.saveAreas) APs in \(p.span) (\(ByteCount.format(p.span.bytes))); Reserved blocks holding them: \(blocks.count) (\(sizes))"
                     + (p.erratumAps.isEmpty ? "" : "; erratum branch at AP \(p.erratumAps.map(String.init).joined(separator: ", "))"))
                if let run = p.alternatingRun {
                    line("    alternating single pages: \(run.range) \(run.reservedPages) Reserved / \(run.usablePages) usable (\(run.descriptors) descriptors)")
                }
            }
            line("  the map where the AP pages sit:")
            for entry in excerpt(boot, full: fullMap) { line("    " + entry) }
            if let big = f.largestFreeBelow4GiB {
                line("  largest free block below 4 GiB at SWIOTLB time: \(big) \(ByteCount.format(big.bytes))")
            }
            line("Into Linux")
            line("  e820 from the EFI stub (setup_e820, neighbours of one type merged): \(f.e820Entries) entries, \(f.e820RamEntries) usable, \(f.e820ReservedEntries) reserved")
            line("  boot_params.e820_table: \(f.zeroPageEntries) of 128" + (f.setupE820ExtEntries > 0 ? "; SETUP_E820_EXT carries the other \(f.setupE820ExtEntries)" : "; no SETUP_E820_EXT needed"))
            for k in f.kernel {
                let dropped = k.dropped.isEmpty ? "keeps all" : "keeps \(k.keptEntries), drops \(k.dropped.count) from \(k.dropped.first!.range.base) up (\(ByteCount.format(k.dropped.filter { $0.type == .ram }.reduce(0) { $0 + $1.range.bytes })) of RAM)"
                line("  kernel e820 table, NODES_SHIFT=\(k.nodesShift): \(k.maxEntries) entries, \(dropped); memblock.memory \(k.memblockRegions) regions"
                     + (k.memblockDoublings > 0 ? " (doubles \(k.memblockDoublings)× from 128)" : " (within the initial 128)"))
            }
            let s = f.swiotlb
            line("  SWIOTLB (NODES_SHIFT=\(s.nodesShift) view): 6 % of \(ByteCount.format(s.sizing.memBytes)) → \(ByteCount.format(s.sizing.requestedBytes)) → \(s.sizing.slabs) slabs = \(ByteCount.format(s.bytes)); "
                 + (s.fits ? "fits in the largest free block (\(ByteCount.format(s.largestFreeBytes)))"
                    : "does NOT fit in \(ByteCount.format(s.largestFreeBytes)); the halving loop ends at \(s.sizeAfterHalving.map(ByteCount.format) ?? "nothing (SWIOTLB empty)")"))
        }

        line()
        line("Checks against the sources and the thread")
        for c in report.checks {
            let mark: String
            switch c.verdict {
            case .match: mark = "match   "
            case .differs: mark = "differs "
            case .mismatch: mark = "MISMATCH"
            }
            line("  \(mark) \(c.policy): \(c.claim)")
            line("           expected \(c.expected); model \(c.observed)   [\(c.source)]")
            if !c.note.isEmpty { line("           why: \(c.note)") }
        }

        line()
        line("Why did the 120+ vCPU boot hang? Not settled by the sources.")
        line(wrap(report.hang.statement, indent: "  "))
        for (i, c) in report.hang.candidates.enumerated() {
            line("  \(i + 1). \(c.mechanism)")
            line("     trigger: \(c.trigger)   [\(c.source)]")
            for p in c.predictions {
                let onset: String
                if !p.scanned { onset = "onset not scanned" } else if let n = p.onsetVcpus {
                    onset = "from \(n) vCPUs" + (p.swiotlbAtOnset.map { " (SWIOTLB then \(ByteCount.format($0)))" } ?? "")
                } else { onset = "not for 1 to 512 vCPUs" }
                let then = p.swiotlbIfItBites.map { "; SWIOTLB now \(ByteCount.format($0))" } ?? ""
                line("     \(pad(p.policy, 22)) \(pad(p.figure, 34)) \(p.triggered ? "TRIGGERED" : "no       ")  \(onset)\(then)")
            }
            line(wrap("if so: \(c.consequence); open: \(c.open)", indent: "     "))
        }

        line()
        line("Firmware CAA pages after ExitBootServices, per route")
        for r in report.routes.routes {
            line("  (\(r.id)) \(r.route)")
            line(wrap("CAA used: \(r.caaUsed)", indent: "       "))
            line("       needs the firmware's per-AP CAA pages: \(r.needsFirmwareApCaa ? "yes" : "no")")
            line(wrap("could they be boot-services memory, for this route: \(r.bootServicesMemoryForTheRoute)", indent: "       "))
            line("       [\(r.source)]")
        }
        line("  What the firmware and the SVSM do with those pages:")
        for fact in report.routes.facts {
            line(wrap("[\(fact.standing.rawValue)] \(fact.statement) [\(fact.source)]", indent: "    ", hanging: "      "))
        }
        line(wrap("Answer (derived): \(report.routes.answer)", indent: "  "))
        line("  The map at \(CaaAllocationScenario.routeVcpus) vCPUs, upstream edk2 in PEI and DXE:")
        line("    \(pad("policy", 34)) \(pad("EFI", 5)) \(pad("e820", 5)) \(pad("Reserved", 9)) \(pad("RAM rgns", 9)) \(pad("largest free", 13)) SWIOTLB")
        for v in report.routes.variants {
            line("    \(pad(v.policy, 34)) \(pad("\(v.efiDescriptors)", 5)) \(pad("\(v.e820Entries)", 5)) \(pad("\(v.reservedPages)", 9)) \(pad("\(v.memblockRegions)", 9)) \(pad(ByteCount.format(v.largestFreeBelow4GiB), 13)) \(ByteCount.format(v.swiotlbBytes))")
            line("      \(v.note)")
        }

        line()
        let matches = report.checks.filter { $0.verdict == .match }.count
        let differs = report.checks.filter { $0.verdict == .differs }.count
        let mismatches = report.checks.count - matches - differs
        line("\(matches) checks match the sources, \(differs) differ from a sentence of the thread for the reason given, \(mismatches) contradict the sources"
             + (report.figuresMatchSources ? "" : " — the model is wrong somewhere"))
        return out.joined(separator: "\n") + "\n"
    }

    /// The EFI descriptors around each phase's save areas, with what each one is; runs of
    /// alternating single pages collapse to one line unless `full`.
    public static func excerpt(_ boot: FirmwareBootResult, full: Bool) -> [String] {
        let map = boot.efiMemoryMap
        let spans = FirmwarePhase.allCases.compactMap { boot.saveAreaSpan($0) }
        var indices = Set<Int>()
        if full {
            indices = Set(map.indices)
        } else {
            for span in spans {
                let hit = map.indices.filter { map[$0].range.overlaps(span) }
                guard let lo = hit.first, let hi = hit.last else { continue }
                for i in max(lo - 1, 0)...min(hi + 1, map.count - 1) { indices.insert(i) }
            }
        }
        var lines: [String] = []
        let sorted = indices.sorted()
        var k = 0
        var previous: Int?
        while k < sorted.count {
            let i = sorted[k]
            if let p = previous, i != p + 1 { lines.append("…") }
            // A run of single pages alternating between two types.
            var j = i
            while j + 1 < map.count, indices.contains(j + 1),
                  map[j].range.count == 1, map[j + 1].range.count == 1,
                  map[j].range.end == map[j + 1].range.first,
                  map[j + 1].type != map[j].type,
                  j == i || map[j + 1].type == map[j - 1].type {
                j += 1
            }
            if j - i + 1 >= 4 {
                let a = map[i].type, b = map[i + 1].type
                let na = (i...j).filter { map[$0].type == a }.count, nb = (j - i + 1) - na
                let range = PageRange(pages: map[i].range.first..<map[j].range.end)
                lines.append("\(range) \(na) × \(a) 1 page alternating with \(nb) × \(b) 1 page   \(runLabel(boot, range))")
                k += j - i + 1
                previous = j
                continue
            }
            lines.append("\(map[i].range) \(pad(map[i].type.specName, 26)) \(pad(ByteCount.pages(map[i].range.count), 11)) \(label(boot, map[i]))")
            k += 1
            previous = i
        }
        if let last = previous, last < map.count - 1 { lines.append("…") }
        return lines
    }

    static func label(_ boot: FirmwareBootResult, _ d: EfiMemoryDescriptor) -> String {
        var parts: [String] = []
        let holders = boot.saveAreas.filter { a in a.kept.contains { $0.overlaps(d.range) } }
        if d.type != .conventionalMemory, let phase = holders.first?.phase, let lo = holders.map(\.ap).min(), let hi = holders.map(\.ap).max() {
            let kind = holders.allSatisfy({ $0.kept.map(\.count).reduce(0, +) == 2 }) ? "save areas (VMSA + CAA)" : "CAA pages"
            parts.append(lo == hi ? "\(phase) \(kind) of AP \(lo)" : "\(phase) \(kind) of APs \(lo)–\(hi)")
        }
        // A page still free after a save area gave it back: name the last AP that freed it.
        if d.type == .conventionalMemory, let last = boot.saveAreas.last(where: { a in a.freed.contains { $0.overlaps(d.range) } }) {
            parts.append("\(last.phase) page freed by AP \(last.ap)'s save area" + (last.erratumBranch ? " (erratum branch: the third page)" : ""))
        }
        for a in boot.allocations where a.range.overlaps(d.range) && a.type == d.type { parts.append(a.what) }
        if let bin = boot.bins.first(where: { $0.range.overlaps(d.range) && $0.type == d.type && $0.type == .reservedMemoryType }) {
            parts.append("the \(shortName(bin.type)) bin")
        }
        for r in GuestMemoryLayout.fixedRegions where r.type == d.type && r.range.overlaps(d.range) && d.type != .conventionalMemory {
            parts.append(r.what)
        }
        if parts.isEmpty, d.type == .conventionalMemory { parts.append("free") }
        return parts.joined(separator: "; ")
    }

    static func runLabel(_ boot: FirmwareBootResult, _ range: PageRange) -> String {
        let areas = boot.saveAreas.filter { a in a.kept.contains { $0.overlaps(range) } }
        guard let lo = areas.map(\.ap).min(), let hi = areas.map(\.ap).max() else { return "" }
        return "\(areas[0].phase) CAA pages of APs \(lo)–\(hi) and the freed VMSA pages between them"
    }

    static func shortName(_ t: EfiMemoryType) -> String {
        switch t {
        case .acpiMemoryNvs: return "ACPI NVS"
        case .acpiReclaimMemory: return "ACPI Reclaim"
        case .reservedMemoryType: return "Reserved"
        case .runtimeServicesData: return "RT Data"
        case .runtimeServicesCode: return "RT Code"
        case .bootServicesCode: return "BS Code"
        case .bootServicesData: return "BS Data"
        default: return t.specName
        }
    }

    static func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }

    /// Wraps at 100 columns.
    static func wrap(_ text: String, indent: String, hanging: String? = nil, width: Int = 100) -> String {
        var lines: [String] = []
        var current = indent
        let next = hanging ?? indent
        for word in text.split(separator: " ") {
            let trimmedCurrent = current.trimmingCharacters(in: .whitespaces)
            if !trimmedCurrent.isEmpty, current.count + 1 + word.count > width {
                lines.append(current)
                current = next + word
            } else {
                current += (trimmedCurrent.isEmpty ? "" : " ") + word
            }
        }
        lines.append(current)
        return lines.joined(separator: "\n")
    }
}
