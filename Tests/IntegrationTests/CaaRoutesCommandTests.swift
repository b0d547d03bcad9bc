import Foundation
import Testing

@Suite("scenario caa-routes, the binary")
struct CaaRoutesCommandTests {
    @Test("3 vCPUs: both a2 runs, the driver, the MMIO steps, the table; every check holds, exit 0; --vcpus 1 exits 64")
    func scenario() {
        let r = Shell.run("'\(Bridge.binary)' scenario caa-routes --vcpus 3")
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("Route a2 on Linux 6.16.y") && r.out.contains("store → #PF, not mapped"))
        #expect(r.out.contains("efi: Froze efi_rts_wq and disabled EFI Runtime Services"))
        #expect(r.out.contains("read Timeout (efivarfs_file_read): EINTR") && r.out.contains("read Timeout again: EIO"))
        #expect(r.out.contains("— Linux as it is today") && r.out.contains("(sev_es_efi_map_ghcbs_cas)"))
        #expect(r.out.contains("Route b: the project's driver") && r.out.contains("vCPUs served: 0, 1, 2"))
        #expect(r.out.contains("Route a1") && r.out.contains("open     Does any hypervisor hand that #NPF on"))
        #expect(r.out.contains("| a2 OVMF runtime services via MSR_SVSM_CAA | yes (v6.17+)"))
        #expect(!r.out.contains("NOT AS EXPECTED"))
        #expect(r.out.contains("21 of 21 checks as expected"))
        #expect(Shell.run("'\(Bridge.binary)' scenario caa-routes --vcpus 1").status == 64)
    }
}
