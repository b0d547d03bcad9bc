// SPDX-License-Identifier: GPL-2.0
/*
 * svsm_efivars "svsm" transport: real SVSM calls from an SEV-SNP guest.
 *
 * The call itself needs svsm_perform_call_protocol() and the per-CPU Calling
 * Areas, which are private to arch/x86/coco/sev. A kernel carrying
 * patches/0001-x86-sev-export-svsm-uefi-mm-call.patch exports two helpers
 * for it; they are looked up when this transport is chosen, so that the same
 * module loads (with the shm transport) on a kernel without them.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": svsm: " fmt

#include <linux/cc_platform.h>
#include <linux/gfp.h>
#include <linux/io.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/topology.h>

#include <asm/sev.h>

#include "svsm_efivars.h"

#ifdef CONFIG_AMD_MEM_ENCRYPT

static int (*svsm_query_protocol)(u32 protocol, u32 version, u64 *versions);
static int (*svsm_uefi_mm_request)(void *buffer, size_t size);

bool svsm_efi_svsm_present(void)
{
	return cc_platform_has(CC_ATTR_GUEST_SEV_SNP) && snp_vmpl;
}

static int svsm_init(void)
{
	if (!svsm_efi_svsm_present()) {
		pr_err("not an SEV-SNP guest running under an SVSM\n");
		return -ENODEV;
	}

	svsm_query_protocol = symbol_get(snp_svsm_query_protocol);
	svsm_uefi_mm_request = symbol_get(snp_svsm_uefi_mm_request);
	if (!svsm_query_protocol || !svsm_uefi_mm_request) {
		pr_err("this kernel does not export snp_svsm_uefi_mm_request() (patch 0001-x86-sev-export-svsm-uefi-mm-call)\n");
		if (svsm_query_protocol)
			symbol_put(snp_svsm_query_protocol);
		if (svsm_uefi_mm_request)
			symbol_put(snp_svsm_uefi_mm_request);
		return -ENOENT;
	}
	return 0;
}

static void svsm_exit(void)
{
	symbol_put(snp_svsm_query_protocol);
	symbol_put(snp_svsm_uefi_mm_request);
}

static int svsm_query(u64 *versions)
{
	return svsm_query_protocol(SVSM_EFI_UEFI_MM_PROTOCOL,
				   SVSM_EFI_UEFI_MM_VERSION, versions);
}

/*
 * The helper picks this CPU's Calling Area with interrupts disabled, and
 * repeats BUSY and INCOMPLETE answers as svsm_perform_call_protocol() does
 * (without a bound: the SVSM is trusted, and protocol 4 never answers
 * either). There is no timeout: the VMGEXIT returns when the host resumes
 * the vCPU.
 */
static int svsm_mm_request(void *va, u64 gpa, size_t size)
{
	return svsm_uefi_mm_request(va, size) ? -EIO : 0;
}

static size_t svsm_max_buffer(void)
{
	return SVSM_EFI_MAX_BUFFER;
}

/* Private (encrypted), page-aligned, physically contiguous, CPU-local */
static int svsm_alloc_buffer(unsigned int cpu, size_t size, void **va,
			     u64 *gpa)
{
	struct page *page;

	page = alloc_pages_node(cpu_to_node(cpu), GFP_KERNEL | __GFP_ZERO,
				get_order(size));
	if (!page)
		return -ENOMEM;
	*va = page_address(page);
	*gpa = page_to_phys(page);
	return 0;
}

static void svsm_free_buffer(unsigned int cpu, void *va, size_t size)
{
	free_pages((unsigned long)va, get_order(size));
}

#else /* !CONFIG_AMD_MEM_ENCRYPT */

bool svsm_efi_svsm_present(void)
{
	return false;
}

static int svsm_init(void)
{
	pr_err("this kernel has no SEV support (CONFIG_AMD_MEM_ENCRYPT)\n");
	return -ENODEV;
}

static void svsm_exit(void) { }
static int svsm_query(u64 *versions) { return -ENODEV; }
static int svsm_mm_request(void *va, u64 gpa, size_t size) { return -ENODEV; }
static size_t svsm_max_buffer(void) { return 0; }

static int svsm_alloc_buffer(unsigned int cpu, size_t size, void **va,
			     u64 *gpa)
{
	return -ENODEV;
}

static void svsm_free_buffer(unsigned int cpu, void *va, size_t size) { }

#endif /* CONFIG_AMD_MEM_ENCRYPT */

const struct svsm_efi_transport svsm_efi_svsm_transport = {
	.name = "svsm",
	.init = svsm_init,
	.exit = svsm_exit,
	.query_protocol = svsm_query,
	.max_buffer = svsm_max_buffer,
	.alloc_buffer = svsm_alloc_buffer,
	.free_buffer = svsm_free_buffer,
	.mm_request = svsm_mm_request,
};
