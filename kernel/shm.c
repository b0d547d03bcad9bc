// SPDX-License-Identifier: GPL-2.0
/*
 * svsm_efivars "shm" transport: SVSM calls to a host process through an
 * ivshmem-plain PCI device, for testing without SEV-SNP. The layout and the
 * protocol are specified in SHM-TRANSPORT.md; the host side is
 * "efivarfs-bridge serve-svsm --shm FILE".
 *
 * Each CPU has a page standing for its VMSA's register save area and a page
 * for its Calling Area. A call is made as svsm_perform_call_protocol() makes
 * it, with the VMGEXIT replaced by a doorbell word that the host polls:
 * registers and call_pending are written, the doorbell is set to the GHCB MSR
 * "VMPL request" value, and the guest spins until the host writes the
 * response value. Unlike the real path, interrupts stay enabled while the
 * CPU spins (preemption is disabled, which is all that keeps the CPU's pages
 * the CPU's own), and the spin gives up after call_timeout_ms.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": shm: " fmt

#include <linux/atomic.h>
#include <linux/delay.h>
#include <linux/io.h>
#include <linux/kernel.h>
#include <linux/moduleparam.h>
#include <linux/pci.h>
#include <linux/percpu.h>
#include <linux/sizes.h>
#include <linux/timekeeping.h>

#include <asm/svm.h>

#include "svsm_efivars.h"

#define SVSM_SHM_VENDOR		0x1af4	/* Red Hat, Inc. */
#define SVSM_SHM_DEVICE		0x1110	/* Inter-VM shared memory */
#define SVSM_SHM_BAR		2

#define SVSM_SHM_MAGIC		0x314D48534D535653ULL	/* "SVSMSHM1" */
#define SVSM_SHM_VERSION	1
#define SVSM_SHM_MAX_VCPUS	127
#define SVSM_SHM_BUFFERS	SZ_1M	/* MM buffers start here */

/* Register page: offsets of struct sev_es_save_area, and the doorbell */
#define SVSM_SHM_RAX		0x1f8
#define SVSM_SHM_RCX		0x308
#define SVSM_SHM_RDX		0x310
#define SVSM_SHM_R8		0x340
#define SVSM_SHM_R9		0x348
#define SVSM_SHM_DOORBELL	0xff0

/* GHCB MSR protocol values written to the doorbell */
#define SVSM_SHM_VMPL_REQUEST	0x016ULL	/* VMPL 0 in bits 63:32 */
#define SVSM_SHM_VMPL_RESPONSE	0x017ULL

static_assert(offsetof(struct sev_es_save_area, rax) == SVSM_SHM_RAX);
static_assert(offsetof(struct sev_es_save_area, rcx) == SVSM_SHM_RCX);
static_assert(offsetof(struct sev_es_save_area, rdx) == SVSM_SHM_RDX);
static_assert(offsetof(struct sev_es_save_area, r8) == SVSM_SHM_R8);
static_assert(offsetof(struct sev_es_save_area, r9) == SVSM_SHM_R9);
static_assert(SVSM_SHM_BUFFERS >= (1 + 2 * SVSM_SHM_MAX_VCPUS + 1) * SZ_4K);

static unsigned int attach_timeout_ms = 10000;
module_param(attach_timeout_ms, uint, 0444);
MODULE_PARM_DESC(attach_timeout_ms, "shm transport: wait this long for the host to serve the vCPUs (default 10000)");

/* Page 0 of the window; little-endian, as everything on x86 */
struct svsm_shm_header {
	u64 magic;
	u32 version;
	u32 vcpu_count;
	u64 window_gpa;
	u64 window_size;
	u32 guest_generation;
	u32 host_generation;
};

static_assert(offsetof(struct svsm_shm_header, window_gpa) == 0x10);
static_assert(offsetof(struct svsm_shm_header, guest_generation) == 0x20);
static_assert(offsetof(struct svsm_shm_header, host_generation) == 0x24);

static struct pci_dev *svsm_shm_pdev;
static void *svsm_shm_base;
static u64 svsm_shm_gpa;
static u64 svsm_shm_size;

/*
 * Set when a call on this CPU timed out. The host may still be working on it
 * (reading the registers, writing the buffer), so no new call is made on this
 * CPU's pages, and its buffer is not touched, until the host has answered.
 */
static DEFINE_PER_CPU(bool, svsm_shm_stale);

struct svsm_shm_call {
	u64 rax, rcx, rdx, r8;
	u64 rax_out, rcx_out;
};

static u8 *svsm_shm_regs(unsigned int cpu)
{
	return svsm_shm_base + (1 + 2 * cpu) * SZ_4K;
}

static u8 *svsm_shm_caa(unsigned int cpu)
{
	return svsm_shm_base + (2 + 2 * cpu) * SZ_4K;
}

static u64 *svsm_shm_reg(unsigned int cpu, unsigned int offset)
{
	return (u64 *)(svsm_shm_regs(cpu) + offset);
}

/*
 * Spin until the host has written the response value into the doorbell, or
 * the time runs out; anything else the doorbell holds meanwhile (a host's
 * partial store, garbage) is waited out. ktime_get_mono_fast_ns() works in
 * any context, NMI included. Returns the last value read.
 */
static u64 svsm_shm_wait(u64 *doorbell)
{
	u64 timeout = (u64)READ_ONCE(svsm_efi_call_timeout_ms) * NSEC_PER_MSEC;
	u64 start = ktime_get_mono_fast_ns();
	u64 value;

	for (;;) {
		value = READ_ONCE(*doorbell);
		if (value == SVSM_SHM_VMPL_RESPONSE)
			return value;
		if (ktime_get_mono_fast_ns() - start > timeout)
			return value;
		cpu_relax();
	}
}

/*
 * Before a CPU's buffer is written: refuse the CPU whose last call timed out
 * and is still unanswered, and forget the timeout once the host has answered.
 */
static int svsm_shm_ready(unsigned int cpu)
{
	u64 *doorbell = svsm_shm_reg(cpu, SVSM_SHM_DOORBELL);

	if (!this_cpu_read(svsm_shm_stale))
		return 0;
	if (READ_ONCE(*doorbell) != SVSM_SHM_VMPL_RESPONSE) {
		pr_err_ratelimited("CPU %u: the host has not answered the call that timed out\n",
				   cpu);
		return -ETIMEDOUT;
	}
	/* The late answer is complete: disarm whatever it left behind. */
	rmb();	/* the host's writes before its response */
	xchg(svsm_shm_caa(cpu), 0);
	this_cpu_write(svsm_shm_stale, false);
	return 0;
}

/* One attempt, as svsm_issue_call() does it; preemption is disabled. */
static int svsm_shm_issue(unsigned int cpu, struct svsm_shm_call *call)
{
	u64 *doorbell = svsm_shm_reg(cpu, SVSM_SHM_DOORBELL);
	u8 *caa = svsm_shm_caa(cpu);
	u64 response;
	u8 pending;

	WRITE_ONCE(*svsm_shm_reg(cpu, SVSM_SHM_RAX), call->rax);
	WRITE_ONCE(*svsm_shm_reg(cpu, SVSM_SHM_RCX), call->rcx);
	WRITE_ONCE(*svsm_shm_reg(cpu, SVSM_SHM_RDX), call->rdx);
	WRITE_ONCE(*svsm_shm_reg(cpu, SVSM_SHM_R8), call->r8);
	WRITE_ONCE(*svsm_shm_reg(cpu, SVSM_SHM_R9), 0);
	WRITE_ONCE(caa[0], 1);
	/* The registers and call_pending before the host sees the request */
	wmb();
	WRITE_ONCE(*doorbell, SVSM_SHM_VMPL_REQUEST);

	response = svsm_shm_wait(doorbell);
	if (response != SVSM_SHM_VMPL_RESPONSE) {
		/*
		 * No answer. Disarm the request, so that a host that gets to
		 * it later sees call_pending clear and does nothing, and keep
		 * the CPU's pages out of use until the host answers.
		 */
		xchg(&caa[0], 0);
		this_cpu_write(svsm_shm_stale, true);
		pr_err_ratelimited("CPU %u: no answer within %u ms (doorbell 0x%llx)\n",
				   cpu, READ_ONCE(svsm_efi_call_timeout_ms), response);
		return -ETIMEDOUT;
	}
	/* The host wrote the registers before the response */
	rmb();
	pending = xchg(&caa[0], 0);
	if (pending) {
		pr_err_ratelimited("CPU %u: the call was not executed\n", cpu);
		return -EIO;
	}
	call->rax_out = READ_ONCE(*svsm_shm_reg(cpu, SVSM_SHM_RAX));
	call->rcx_out = READ_ONCE(*svsm_shm_reg(cpu, SVSM_SHM_RCX));
	return 0;
}

/* A call with the BUSY/INCOMPLETE retries; preemption is disabled. */
static int svsm_shm_call(struct svsm_shm_call *call)
{
	unsigned int cpu = smp_processor_id();
	unsigned int attempt = 0;
	int ret;

	ret = svsm_shm_ready(cpu);
	if (ret)
		return ret;

	for (;;) {
		ret = svsm_shm_issue(cpu, call);
		if (ret)
			return ret;
		if (call->rax_out == SVSM_EFI_RESULT_SUCCESS)
			return 0;
		if (call->rax_out != SVSM_EFI_RESULT_BUSY &&
		    call->rax_out != SVSM_EFI_RESULT_INCOMPLETE) {
			pr_err_ratelimited("call 0x%llx failed: 0x%llx\n",
					   call->rax, call->rax_out);
			return -EIO;
		}
		if (attempt++ >= READ_ONCE(svsm_efi_max_retries)) {
			pr_err_ratelimited("call 0x%llx still 0x%llx after %u attempts\n",
					   call->rax, call->rax_out, attempt);
			return -EAGAIN;
		}
	}
}

static int svsm_shm_query_protocol(u64 *versions)
{
	struct svsm_shm_call call = {
		.rax = SVSM_EFI_CALL(SVSM_EFI_CORE_PROTOCOL,
				     SVSM_EFI_CORE_QUERY_PROTOCOL),
		.rcx = SVSM_EFI_CALL(SVSM_EFI_UEFI_MM_PROTOCOL,
				     SVSM_EFI_UEFI_MM_VERSION),
	};
	int ret;

	preempt_disable();
	ret = svsm_shm_call(&call);
	preempt_enable();
	if (!ret)
		*versions = call.rcx_out;
	return ret;
}

static int svsm_shm_mm_request(void *va, u64 gpa, size_t size)
{
	struct svsm_shm_call call = {
		.rax = SVSM_EFI_CALL(SVSM_EFI_UEFI_MM_PROTOCOL,
				     SVSM_EFI_UEFI_MM_REQUEST),
		.rcx = gpa,
		.rdx = size,
	};

	return svsm_shm_call(&call);
}

static int svsm_shm_prepare(void)
{
	return svsm_shm_ready(smp_processor_id());
}

static size_t svsm_shm_max_buffer(void)
{
	return ((svsm_shm_size - SVSM_SHM_BUFFERS) / nr_cpu_ids) & PAGE_MASK;
}

static int svsm_shm_alloc_buffer(unsigned int cpu, size_t size, void **va,
				 u64 *gpa)
{
	u64 offset = SVSM_SHM_BUFFERS + (u64)cpu * size;

	if (offset + size > svsm_shm_size)
		return -ENOSPC;
	*va = svsm_shm_base + offset;
	*gpa = svsm_shm_gpa + offset;
	return 0;
}

static void svsm_shm_free_buffer(unsigned int cpu, void *va, size_t size)
{
}

bool svsm_efi_shm_present(void)
{
	struct pci_dev *pdev;

	pdev = pci_get_device(SVSM_SHM_VENDOR, SVSM_SHM_DEVICE, NULL);
	pci_dev_put(pdev);
	return pdev;
}

/* Lay out the pages, then tell the host and wait for it to serve them. */
static int svsm_shm_attach(void)
{
	struct svsm_shm_header *hdr = svsm_shm_base;
	unsigned long deadline;
	u32 generation;
	unsigned int cpu;

	generation = 0;
	if (READ_ONCE(hdr->magic) == SVSM_SHM_MAGIC)
		generation = max(READ_ONCE(hdr->guest_generation),
				 READ_ONCE(hdr->host_generation));
	if (++generation == 0)
		generation = 1;

	for (cpu = 0; cpu < nr_cpu_ids; cpu++) {
		memset(svsm_shm_regs(cpu), 0, SZ_4K);
		memset(svsm_shm_caa(cpu), 0, SZ_4K);
	}
	WRITE_ONCE(hdr->magic, SVSM_SHM_MAGIC);
	WRITE_ONCE(hdr->version, SVSM_SHM_VERSION);
	WRITE_ONCE(hdr->vcpu_count, nr_cpu_ids);
	WRITE_ONCE(hdr->window_gpa, svsm_shm_gpa);
	WRITE_ONCE(hdr->window_size, svsm_shm_size);
	/* The pages and the header before the generation that announces them */
	wmb();
	WRITE_ONCE(hdr->guest_generation, generation);

	deadline = jiffies + msecs_to_jiffies(attach_timeout_ms);
	while (READ_ONCE(hdr->host_generation) != generation) {
		if (time_after(jiffies, deadline)) {
			pr_err("no host serves the shared memory (generation %u): run efivarfs-bridge serve-svsm --shm\n",
			       generation);
			return -ETIMEDOUT;
		}
		msleep(20);
	}
	/* Nothing the host wrote before host_generation is read before it */
	rmb();
	pr_info("host serves %u vCPUs (generation %u), window 0x%llx+0x%llx\n",
		nr_cpu_ids, generation, svsm_shm_gpa, svsm_shm_size);
	return 0;
}

static int svsm_shm_init(void)
{
	struct pci_dev *pdev;
	int ret;

	if (nr_cpu_ids > SVSM_SHM_MAX_VCPUS) {
		pr_err("serves at most %d CPUs, this kernel has %u\n",
		       SVSM_SHM_MAX_VCPUS, nr_cpu_ids);
		return -E2BIG;
	}

	pdev = pci_get_device(SVSM_SHM_VENDOR, SVSM_SHM_DEVICE, NULL);
	if (!pdev) {
		pr_err("no ivshmem-plain device (%04x:%04x)\n", SVSM_SHM_VENDOR,
		       SVSM_SHM_DEVICE);
		return -ENODEV;
	}
	ret = pci_enable_device_mem(pdev);
	if (ret)
		goto err_put;
	ret = pci_request_region(pdev, SVSM_SHM_BAR, KBUILD_MODNAME);
	if (ret)
		goto err_disable;

	svsm_shm_gpa = pci_resource_start(pdev, SVSM_SHM_BAR);
	svsm_shm_size = pci_resource_len(pdev, SVSM_SHM_BAR);
	if (svsm_shm_size < 2 * SVSM_SHM_BUFFERS) {
		pr_err("BAR%d is %llu bytes, at least %u needed\n", SVSM_SHM_BAR,
		       svsm_shm_size, 2 * SVSM_SHM_BUFFERS);
		ret = -ENOSPC;
		goto err_release;
	}
	svsm_shm_base = memremap(svsm_shm_gpa, svsm_shm_size, MEMREMAP_WB);
	if (!svsm_shm_base) {
		ret = -ENOMEM;
		goto err_release;
	}
	svsm_shm_pdev = pdev;

	ret = svsm_shm_attach();
	if (ret)
		goto err_unmap;
	return 0;

err_unmap:
	memunmap(svsm_shm_base);
	svsm_shm_base = NULL;
	svsm_shm_pdev = NULL;
err_release:
	pci_release_region(pdev, SVSM_SHM_BAR);
err_disable:
	pci_disable_device(pdev);
err_put:
	pci_dev_put(pdev);
	return ret;
}

static void svsm_shm_exit(void)
{
	memunmap(svsm_shm_base);
	svsm_shm_base = NULL;
	pci_release_region(svsm_shm_pdev, SVSM_SHM_BAR);
	pci_disable_device(svsm_shm_pdev);
	pci_dev_put(svsm_shm_pdev);
	svsm_shm_pdev = NULL;
}

const struct svsm_efi_transport svsm_efi_shm_transport = {
	.name = "shm",
	.init = svsm_shm_init,
	.exit = svsm_shm_exit,
	.query_protocol = svsm_shm_query_protocol,
	.max_buffer = svsm_shm_max_buffer,
	.alloc_buffer = svsm_shm_alloc_buffer,
	.free_buffer = svsm_shm_free_buffer,
	.prepare = svsm_shm_prepare,
	.mm_request = svsm_shm_mm_request,
};
