/* SPDX-License-Identifier: GPL-2.0 */
/*
 * svsm_efivars: EFI variables in an SVSM (protocol 4, UEFI MM), internal
 * interface between the efivars backend and its transports.
 */
#ifndef _SVSM_EFIVARS_H
#define _SVSM_EFIVARS_H

#include <linux/types.h>

/* SVSM call ABI (AMD publication 58019, section 5) */
#define SVSM_EFI_CALL(protocol, call)	(((u64)(protocol) << 32) | (call))
#define SVSM_EFI_CORE_PROTOCOL		0
#define SVSM_EFI_CORE_QUERY_PROTOCOL	6
#define SVSM_EFI_UEFI_MM_PROTOCOL	4
#define SVSM_EFI_UEFI_MM_REQUEST	1
#define SVSM_EFI_UEFI_MM_VERSION	1

#define SVSM_EFI_RESULT_SUCCESS		0x00000000ULL
#define SVSM_EFI_RESULT_INCOMPLETE	0x80000000ULL
#define SVSM_EFI_RESULT_BUSY		0x80000007ULL

/* Largest MM buffer an SVSM accepts (COCONUT's UEFI_MM_BUFFER_LIMIT) */
#define SVSM_EFI_MAX_BUFFER		(256 * 1024)

/* Module parameters shared with the transports */
extern unsigned int svsm_efi_call_timeout_ms;
extern unsigned int svsm_efi_max_retries;

/**
 * struct svsm_efi_transport - how an SVSM call reaches the SVSM
 * @name:		"shm" or "svsm"
 * @init:		find and set up the transport; -ENODEV if absent
 * @exit:		undo @init
 * @query_protocol:	core QUERY_PROTOCOL(4, 1); 0 and the versions word
 *			(RCX out: max << 32 | min, 0 if unsupported), or -errno
 *			if the call failed
 * @max_buffer:		largest MM buffer the transport can give each CPU
 * @alloc_buffer:	the MM buffer of @cpu: @size bytes, page aligned,
 *			returned as kernel address and guest-physical address
 * @free_buffer:	release what @alloc_buffer gave
 * @prepare:		optional; called with preemption disabled before this
 *			CPU's buffer is written: -errno keeps the buffer unused
 * @mm_request:		SVSM_UEFI_MM_REQUEST on this CPU (called with
 *			preemption disabled) for the buffer of this CPU;
 *			0, -ETIMEDOUT (no answer), -EAGAIN (still busy after the
 *			retries), -EIO (the call was not executed or failed)
 */
struct svsm_efi_transport {
	const char *name;
	int (*init)(void);
	void (*exit)(void);
	int (*query_protocol)(u64 *versions);
	size_t (*max_buffer)(void);
	int (*alloc_buffer)(unsigned int cpu, size_t size, void **va, u64 *gpa);
	void (*free_buffer)(unsigned int cpu, void *va, size_t size);
	int (*prepare)(void);
	int (*mm_request)(void *va, u64 gpa, size_t size);
};

extern const struct svsm_efi_transport svsm_efi_shm_transport;
extern const struct svsm_efi_transport svsm_efi_svsm_transport;

#ifdef CONFIG_AMD_MEM_ENCRYPT
/*
 * Exported by a kernel with patches/0001-x86-sev-export-svsm-uefi-mm-call.patch
 * and declared there in <asm/sev.h>; repeated here so that the module builds
 * against headers without them (the svsm transport looks them up at load).
 */
int snp_svsm_query_protocol(u32 protocol, u32 version, u64 *versions);
int snp_svsm_uefi_mm_request(void *buffer, size_t size);
#endif

bool svsm_efi_shm_present(void);
bool svsm_efi_svsm_present(void);

#endif /* _SVSM_EFIVARS_H */
