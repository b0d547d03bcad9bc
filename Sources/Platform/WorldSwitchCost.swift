/// The modelled cost of one world switch: an SVSM call's round trip from the guest (VMPL2)
/// through the hypervisor to the SVSM (VMPL0) and back — guest VMGEXIT, #VMEXIT to the
/// host, the host's VMRUN of the VMPL0 VMSA, the SVSM's VMGEXIT when it is done, and the
/// VMRUN of the guest again. `--world-switch` takes nanoseconds or a preset; every SVSM
/// call is charged this much per attempt as simulated time (BENCHMARKS.md "World switches").
public enum WorldSwitchCost {
    public struct Preset: Sendable {
        public let name: String
        public let nanoseconds: UInt64
        /// Where the number comes from, and whether it is measured or assumed.
        public let basis: String
    }

    /// No published measurement of an SVSM call's (or a VMPL switch's) round trip was
    /// found; the first preset is derived from a published KVM SVM measurement and is a
    /// floor, the other two are labelled assumptions.
    public static let presets: [Preset] = [
        Preset(name: "vmrun-floor", nanoseconds: 1_000,
               basis: "derived, a floor: two VMRUN/#VMEXIT legs at the 1,344-1,376 cycles measured between pre-vmrun and post-vmrun in KVM SVM (LKML, December 2020, the vmsave/vmload host-state thread), at ~2.7 GHz; a plain SVM guest, so without SEV-SNP's encrypted VMSA switch, RMP checks and KVM's VMGEXIT and VMPL handling"),
        Preset(name: "snp-estimate", nanoseconds: 5_000,
               basis: "assumption: the floor plus KVM's VMGEXIT decode, the VMSA swap between VMPLs and the SVSM's own entry and exit, about five times the bare legs"),
        Preset(name: "slow-host", nanoseconds: 20_000,
               basis: "assumption: a host that handles the VMPL switch in its user-space VMM (an exit to QEMU and back) or a loaded host"),
    ]

    /// Nanoseconds from "5000", "5000ns", "5us", "5µs", "1.5us", "2ms", or a preset's name.
    public static func parse(_ text: String) -> UInt64? {
        if let p = presets.first(where: { $0.name == text }) { return p.nanoseconds }
        var t = Substring(text)
        var scale = 1.0
        for (suffix, s) in [("ns", 1.0), ("us", 1e3), ("µs", 1e3), ("ms", 1e6)] where t.hasSuffix(suffix) {
            t = t.dropLast(suffix.count)
            scale = s
            break
        }
        guard let v = Double(t), v >= 0, v * scale <= 1e12 else { return nil }
        return UInt64((v * scale).rounded())
    }
}
