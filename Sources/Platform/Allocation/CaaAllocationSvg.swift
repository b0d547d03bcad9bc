import Foundation

/// `--svg FILE`: the low-memory map around the AP pages, Reserved versus usable, one column
/// per policy, all at one scale. Each cluster of save-area pages gets a zoom panel; the
/// panels of a column are stacked top (high addresses) to bottom with the gap between them
/// written out. A thin bar on the left of each column shows the whole of low RAM and where
/// the panels are.
public enum CaaAllocationSvg {
    /// A zoom panel: the pages it shows and where they are drawn.
    public struct Panel: Sendable, Hashable {
        public let policy: String
        public let window: PageRange
        /// y of the window's top (its highest page's upper edge).
        public let top: Double
        public let pixelsPerPage: Double
        /// The descriptors drawn, whole (they are clipped to the window when drawn).
        public let descriptors: [EfiMemoryDescriptor]

        /// Where a descriptor is drawn: y and height after clipping to the window.
        public func placement(of d: EfiMemoryDescriptor) -> (y: Double, height: Double)? {
            guard let c = d.range.clamped(to: window) else { return nil }
            return (top + Double(window.end - c.end) * pixelsPerPage, Double(c.count) * pixelsPerPage)
        }
    }

    public struct Drawing: Sendable {
        public let svg: String
        public let panels: [Panel]
        public let pixelsPerPage: Double
    }

    static let columnWidth = 300.0, barX = 18.0, barWidth = 14.0, panelX = 60.0, panelWidth = 120.0
    static let headerHeight = 74.0, panelGap = 34.0, budget = 760.0

    /// Save-area pages grouped into clusters no more than `gap` pages apart, each widened by
    /// a margin: the zoom windows.
    public static func windows(_ boot: FirmwareBootResult, gap: UInt64 = 64) -> [PageRange] {
        let pages = boot.saveAreas.flatMap { $0.kept + $0.freed }.flatMap { Array($0.pages) }.sorted()
        var clusters: [PageRange] = []
        for p in pages {
            if let last = clusters.last, p < last.end + gap {
                clusters[clusters.count - 1] = PageRange(pages: last.first..<max(last.end, p + 1))
            } else {
                clusters.append(PageRange(first: p, count: 1))
            }
        }
        var widened = clusters.map { c -> PageRange in
            let margin = max(8, c.count / 20)
            return PageRange(pages: (c.first >= margin ? c.first - margin : 0)..<(c.end + margin))
        }
        // Merge windows that touch after widening; highest first (drawn top to bottom).
        widened.sort { $0.first < $1.first }
        var merged: [PageRange] = []
        for w in widened {
            if let last = merged.last, w.first <= last.end {
                merged[merged.count - 1] = PageRange(pages: last.first..<max(last.end, w.end))
            } else {
                merged.append(w)
            }
        }
        return merged.reversed()
    }

    public static func render(_ boots: [FirmwareBootResult]) -> Drawing {
        let allWindows = boots.map { windows($0) }
        let tallest = allWindows.map { $0.reduce(0) { $0 + $1.count } }.max() ?? 0
        let gaps = Double(allWindows.map(\.count).max().map { max($0 - 1, 0) } ?? 0) * panelGap
        let scale = tallest == 0 ? 1 : min(6, max(0.05, (budget - gaps) / Double(tallest)))

        var body: [String] = []
        var panels: [Panel] = []
        var columnHeights: [Double] = []
        for (column, boot) in boots.enumerated() {
            let x0 = 20 + Double(column) * columnWidth
            body.append("<g class=\"column\" data-policy=\"\(esc(boot.policy.name))\">")
            body.append(text(x0, 24, boot.policy.name, size: 15, weight: "bold"))
            body.append(text(x0, 42, "\(boot.vcpus) vCPUs, \(boot.saveAreaReservedPagesText)", size: 11))
            var y = headerHeight
            let ws = allWindows[column]
            if ws.isEmpty { body.append(text(x0 + panelX, y + 14, "no APs: no save areas", size: 11)) }
            for (k, w) in ws.enumerated() {
                let drawn = boot.descriptors(overlapping: w)
                let panel = Panel(policy: boot.policy.name, window: w, top: y, pixelsPerPage: scale, descriptors: drawn)
                panels.append(panel)
                body.append("<g class=\"panel\" data-window-first-page=\"\(w.first)\" data-window-pages=\"\(w.count)\" data-top=\"\(fmt(y))\" data-pixels-per-page=\"\(fmt(scale))\">")
                for d in drawn {
                    guard let (ry, rh) = panel.placement(of: d) else { continue }
                    body.append("<rect class=\"desc\" x=\"\(fmt(x0 + panelX))\" y=\"\(fmt(ry))\" width=\"\(fmt(panelWidth))\" height=\"\(fmt(rh))\" fill=\"\(color(d.type))\" data-first-page=\"\(d.range.first)\" data-pages=\"\(d.range.count)\" data-type=\"\(d.type.specName)\"><title>\(d.range.base) \(d.type.specName) \(ByteCount.pages(d.range.count))</title></rect>")
                }
                let h = Double(w.count) * scale
                body.append("<rect class=\"frame\" x=\"\(fmt(x0 + panelX))\" y=\"\(fmt(y))\" width=\"\(fmt(panelWidth))\" height=\"\(fmt(h))\" fill=\"none\" stroke=\"#333\" stroke-width=\"0.5\"/>")
                if h >= 48 {
                    body.append(text(x0 + panelX + panelWidth + 6, y + 9, w.limit.description, size: 9))
                    body.append(text(x0 + panelX + panelWidth + 6, y + h, w.base.description, size: 9))
                    body.append(text(x0 + panelX + panelWidth + 6, y + h / 2 + 4, clusterLabel(boot, w), size: 10))
                } else {
                    body.append(text(x0 + panelX + panelWidth + 6, y + h / 2 - 1, clusterLabel(boot, w), size: 10))
                    body.append(text(x0 + panelX + panelWidth + 6, y + h / 2 + 10, "at \(w.base)", size: 9))
                }
                body.append("</g>")
                y += h
                if k + 1 < ws.count {
                    let gapPages = w.first - ws[k + 1].end
                    body.append(text(x0 + panelX + 4, y + panelGap / 2 + 4, "⋮ \(ByteCount.format(gapPages * PhysicalAddress.pageSize)) not shown ⋮", size: 10))
                    y += panelGap
                }
            }
            body.append(overview(boot, x0: x0, windows: ws, top: headerHeight, height: max(y - headerHeight, 200)))
            body.append("</g>")
            columnHeights.append(max(y, headerHeight + 200))
        }

        let contentHeight = (columnHeights.max() ?? headerHeight) + 20
        let width = 40 + Double(max(boots.count, 1)) * columnWidth
        var legendY = contentHeight + 10
        var legend: [String] = []
        for (label, fill) in [("EfiReservedMemoryType (stays reserved for the OS)", color(.reservedMemoryType)),
                              ("other non-RAM (runtime, ACPI)", color(.runtimeServicesData)),
                              ("free (EfiConventionalMemory)", color(.conventionalMemory)),
                              ("boot-services / loader memory (usable after ExitBootServices)", color(.bootServicesData))] {
            legend.append("<rect class=\"legend\" x=\"20\" y=\"\(fmt(legendY))\" width=\"14\" height=\"10\" fill=\"\(fill)\"/>")
            legend.append(text(40, legendY + 9, label, size: 11))
            legendY += 16
        }
        // Scale bar: a power-of-two page count drawn 40–160 px long.
        var barPages: UInt64 = 1
        while Double(barPages) * scale < 40 { barPages *= 2 }
        let barLength = Double(barPages) * scale
        legend.append("<g class=\"scale\" data-pages=\"\(barPages)\" data-length=\"\(fmt(barLength))\">")
        legend.append("<line x1=\"24\" y1=\"\(fmt(legendY + 4))\" x2=\"24\" y2=\"\(fmt(legendY + 4 + barLength))\" stroke=\"#000\" stroke-width=\"2\"/>")
        legend.append(text(32, legendY + 8 + barLength / 2, "\(ByteCount.pages(barPages)) = \(ByteCount.format(barPages * PhysicalAddress.pageSize)) (1 page = \(fmt(scale)) px); addresses grow upwards", size: 11))
        legend.append("</g>")
        let height = legendY + barLength + 20

        let svg = """
            <?xml version="1.0" encoding="UTF-8"?>
            <svg xmlns="http://www.w3.org/2000/svg" width="\(fmt(width))" height="\(fmt(height))" viewBox="0 0 \(fmt(width)) \(fmt(height))" font-family="sans-serif">
            <rect x="0" y="0" width="\(fmt(width))" height="\(fmt(height))" fill="#fff"/>
            \(body.joined(separator: "\n"))
            \(legend.joined(separator: "\n"))
            </svg>

            """
        return Drawing(svg: svg, panels: panels, pixelsPerPage: scale)
    }

    /// The whole of low RAM as a thin bar, with where the panels are.
    static func overview(_ boot: FirmwareBootResult, x0: Double, windows: [PageRange], top: Double, height: Double) -> String {
        let low = boot.layout.lowRam
        let s = height / Double(low.count)
        var parts = ["<g class=\"overview\">"]
        // Neighbours of one colour merge; a stretch of pieces each under a pixel is one
        // stripe, red if any Reserved page is in it (single pages are for the zoom panels).
        var segments: [(range: PageRange, fill: String)] = []
        for d in boot.efiMemoryMap where d.range.first < low.end {
            guard let c = d.range.clamped(to: low) else { continue }
            var fill = color(d.type)
            if let last = segments.last, last.range.end == c.first {
                let tiny = Double(last.range.count) * s < 1 && Double(c.count) * s < 1
                if last.fill == fill || tiny {
                    if tiny && (last.fill == color(.reservedMemoryType) || d.type == .reservedMemoryType) { fill = color(.reservedMemoryType) }
                    segments[segments.count - 1] = (PageRange(pages: last.range.first..<c.end), tiny ? fill : last.fill)
                    continue
                }
            }
            segments.append((c, fill))
        }
        for seg in segments {
            let h = max(Double(seg.range.count) * s, 0.5)
            parts.append("<rect class=\"overview-segment\" x=\"\(fmt(x0 + barX))\" y=\"\(fmt(top + Double(low.end - seg.range.end) * s))\" width=\"\(fmt(barWidth))\" height=\"\(fmt(h))\" fill=\"\(seg.fill)\"/>")
        }
        for w in windows {
            let y = top + Double(low.end - min(w.end, low.end)) * s
            parts.append("<rect class=\"zoom-marker\" x=\"\(fmt(x0 + barX - 3))\" y=\"\(fmt(y - 1))\" width=\"\(fmt(barWidth + 6))\" height=\"\(fmt(max(Double(w.count) * s, 2) + 2))\" fill=\"none\" stroke=\"#000\" stroke-width=\"1\"/>")
        }
        parts.append(text(x0 + barX - 6, top + height + 12, "0", size: 9))
        parts.append(text(x0 + barX - 6, top - 4, ByteCount.format(low.bytes), size: 9))
        parts.append("</g>")
        return parts.joined(separator: "\n")
    }

    static func clusterLabel(_ boot: FirmwareBootResult, _ w: PageRange) -> String {
        let areas = boot.saveAreas.filter { a in a.kept.contains { $0.overlaps(w) } }
        guard let lo = areas.map(\.ap).min(), let hi = areas.map(\.ap).max() else { return "" }
        let inBin = boot.bins.contains { bin in
            bin.type == .reservedMemoryType && areas.allSatisfy { a in a.kept.allSatisfy { bin.range.contains($0) } }
        }
        return "\(areas[0].phase): AP\(lo == hi ? " \(lo)" : "s \(lo)–\(hi)")" + (inBin ? " (Reserved bin)" : "")
    }

    static func color(_ t: EfiMemoryType) -> String {
        switch t {
        case .reservedMemoryType: return "#d62728"
        case .conventionalMemory, .unacceptedMemoryType: return "#a6dba0"
        case .bootServicesCode, .bootServicesData, .loaderCode, .loaderData: return "#d9ead3"
        default: return "#f4a259"
        }
    }

    static func text(_ x: Double, _ y: Double, _ s: String, size: Int, weight: String = "normal") -> String {
        "<text x=\"\(fmt(x))\" y=\"\(fmt(y))\" font-size=\"\(size)\" font-weight=\"\(weight)\">\(esc(s))</text>"
    }

    static func fmt(_ v: Double) -> String {
        let r = (v * 1000).rounded() / 1000
        return r == r.rounded() ? String(Int(r)) : String(r)
    }

    static func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}

extension FirmwareBootResult {
    var saveAreaReservedPagesText: String {
        "\(saveAreaReservedPages) Reserved save-area pages"
    }
}
