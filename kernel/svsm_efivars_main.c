// SPDX-License-Identifier: GPL-2.0
/*
 * EFI runtime variable services through an SVSM
 *
 * An AMD SEV-SNP guest whose UEFI variable store lives in the SVSM (protocol
 * 4, UEFI MM) reaches it with SVSM calls through each vCPU's Calling Area
 * instead of through firmware runtime services. This driver registers as the
 * efivars backend, like drivers/firmware/efi/stmm/tee_stmm_efi.c, and speaks
 * the same EFI_MM_COMMUNICATE / SMM variable messages. Differences from
 * tee_stmm_efi (see README.md):
 *
 * - one MM buffer per possible CPU, allocated at load, used with preemption
 *   disabled, instead of a buffer allocated per call under efivars_lock;
 * - VAR_CHECK_VARIABLE_PROPERTY_GET is probed once and used only if the SVSM
 *   supports it;
 * - its own query_variable_store() built on QUERY_VARIABLE_INFO;
 * - set_variable_nonblocking() works: no call path sleeps;
 * - every reply is checked against the buffer and the caller's sizes.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/build_bug.h>
#include <linux/efi.h>
#include <linux/kernel.h>
#include <linux/minmax.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/notifier.h>
#include <linux/percpu.h>
#include <linux/preempt.h>
#include <linux/rwsem.h>
#include <linux/sizes.h>
#include <linux/stddef.h>
#include <linux/string.h>
#include <linux/ucs2_string.h>

#include "mm_communication.h"
#include "svsm_efivars.h"

static char *transport = "auto";
module_param(transport, charp, 0444);
MODULE_PARM_DESC(transport, "auto (default), shm (ivshmem test transport) or svsm (SEV-SNP)");

unsigned int svsm_efi_call_timeout_ms = 5000;
module_param_named(call_timeout_ms, svsm_efi_call_timeout_ms, uint, 0644);
MODULE_PARM_DESC(call_timeout_ms, "shm transport: give up on an unanswered call after this many ms (default 5000)");

unsigned int svsm_efi_max_retries = 16;
module_param_named(max_retries, svsm_efi_max_retries, uint, 0644);
MODULE_PARM_DESC(max_retries, "repeat a call answered BUSY or INCOMPLETE at most this often (default 16)");

/* The smallest payload tee_stmm_efi accepts: an access header and 32 bytes */
#define SVSM_EFI_MIN_PAYLOAD	(SVSM_MM_ACCESS_VARIABLE_SIZE + 0x20)
/* Bytes in front of a payload: EFI_MM_COMMUNICATE_HEADER + SMM variable header */
#define SVSM_EFI_HEADERS	(SVSM_MM_COMMUNICATE_HEADER_SIZE + SVSM_MM_VARIABLE_HEADER_SIZE)

/* Name used to ask once whether VAR_CHECK_VARIABLE_PROPERTY_GET works */
#define SVSM_EFI_PROBE_GUID \
	EFI_GUID(0x0f82e17b, 0x02b3, 0x4e7c, \
		 0x8b, 0xb8, 0x4a, 0x98, 0xc0, 0x89, 0x50, 0x5d)

static_assert(SVSM_MM_COMMUNICATE_HEADER_SIZE == 24);
static_assert(offsetof(struct svsm_mm_communicate_header, message_len) == 16);
static_assert(SVSM_MM_VARIABLE_HEADER_SIZE == 16);
static_assert(offsetof(struct svsm_mm_access_variable, data_size) == 16);
static_assert(offsetof(struct svsm_mm_access_variable, name_size) == 24);
static_assert(offsetof(struct svsm_mm_access_variable, attr) == 32);
static_assert(offsetof(struct svsm_mm_access_variable, name) == 36);
static_assert(SVSM_MM_ACCESS_VARIABLE_SIZE == 40);
static_assert(offsetof(struct svsm_mm_get_next_name, name_size) == 16);
static_assert(SVSM_MM_GET_NEXT_NAME_SIZE == 24);
static_assert(offsetof(struct svsm_mm_query_info, attr) == 24);
static_assert(sizeof(struct svsm_mm_query_info) == 32);
static_assert(sizeof(struct svsm_mm_payload_size) == 8);
static_assert(sizeof(struct svsm_var_check_property) == 24);
static_assert(offsetof(struct svsm_mm_var_check_property, property) == 24);
static_assert(sizeof(struct svsm_mm_var_check_property) == 48);

/**
 * struct svsm_efi_slot - one CPU's MM buffer
 * @buf:	kernel address of the buffer
 * @gpa:	its guest-physical address, what the SVSM is given in RCX
 * @busy:	set while an operation on this CPU uses the buffer; seen set
 *		only by an interrupt or NMI (efi-pstore's non-blocking write)
 *		that arrives in the middle of an operation on the same CPU
 */
struct svsm_efi_slot {
	void *buf;
	u64 gpa;
	int busy;
};

static DEFINE_PER_CPU(struct svsm_efi_slot, svsm_efi_slots);

static const struct svsm_efi_transport *svsm_efi_transport;
static size_t svsm_efi_buf_size;	/* bytes of each CPU's MM buffer (RDX) */
static size_t svsm_efi_max_payload;	/* bytes after the two headers */
static bool svsm_efi_var_check;		/* VAR_CHECK_VARIABLE_PROPERTY_GET works */

static struct efivars svsm_efivars;
static struct efivar_operations svsm_efivar_ops;

/*
 * Take this CPU's buffer. Preemption stays disabled until svsm_efi_put():
 * the buffer and (for the SVSM transport) the Calling Area belong to the CPU.
 * Nothing between the two sleeps. EFI_NOT_READY if an operation interrupted
 * on this CPU holds the buffer, EFI_DEVICE_ERROR if the transport cannot
 * make a call on this CPU now.
 */
static efi_status_t svsm_efi_get(struct svsm_efi_slot **slotp)
{
	struct svsm_efi_slot *slot;

	preempt_disable();
	slot = this_cpu_ptr(&svsm_efi_slots);
	if (READ_ONCE(slot->busy)) {
		preempt_enable();
		return EFI_NOT_READY;
	}
	WRITE_ONCE(slot->busy, 1);
	barrier();
	if (svsm_efi_transport->prepare && svsm_efi_transport->prepare()) {
		barrier();
		WRITE_ONCE(slot->busy, 0);
		preempt_enable();
		return EFI_DEVICE_ERROR;
	}
	*slotp = slot;
	return EFI_SUCCESS;
}

static void svsm_efi_put(struct svsm_efi_slot *slot)
{
	barrier();
	WRITE_ONCE(slot->busy, 0);
	preempt_enable();
}

/* Lay out both headers for @function and return the payload. */
static void *svsm_efi_setup(struct svsm_efi_slot *slot, size_t payload_size,
			    u64 function)
{
	const efi_guid_t guid = SVSM_EFI_MM_VARIABLE_GUID;
	struct svsm_mm_communicate_header *mm = slot->buf;
	struct svsm_mm_variable_header *var = (void *)mm->data;

	memset(slot->buf, 0, SVSM_EFI_HEADERS + payload_size);
	memcpy(&mm->header_guid, &guid, sizeof(guid));
	mm->message_len = SVSM_MM_VARIABLE_HEADER_SIZE + payload_size;
	var->function = function;
	/* A variable service always writes ReturnStatus; a silent one fails. */
	var->ret_status = EFI_DEVICE_ERROR;
	return var->data;
}

/*
 * Send the message in this CPU's buffer and return the variable service's
 * ReturnStatus, or EFI_DEVICE_ERROR if the SVSM call failed or its answer
 * claims more than the buffer holds.
 */
static efi_status_t svsm_efi_communicate(struct svsm_efi_slot *slot)
{
	struct svsm_mm_communicate_header *mm = slot->buf;
	struct svsm_mm_variable_header *var = (void *)mm->data;
	u64 len;
	int ret;

	ret = svsm_efi_transport->mm_request(slot->buf, slot->gpa,
					     svsm_efi_buf_size);
	if (ret) {
		pr_err_ratelimited("UEFI MM request failed: %d\n", ret);
		return EFI_DEVICE_ERROR;
	}

	len = READ_ONCE(mm->message_len);
	if (len < SVSM_MM_VARIABLE_HEADER_SIZE ||
	    len > svsm_efi_buf_size - SVSM_MM_COMMUNICATE_HEADER_SIZE) {
		pr_err_ratelimited("reply MessageLength %llu does not fit the %zu-byte buffer\n",
				   len, svsm_efi_buf_size);
		return EFI_DEVICE_ERROR;
	}
	return READ_ONCE(var->ret_status);
}

static efi_status_t svsm_efi_bad_reply(const char *what, u64 value)
{
	pr_err_ratelimited("reply rejected: %s %llu\n", what, value);
	return EFI_DEVICE_ERROR;
}

static size_t svsm_efi_name_size(const efi_char16_t *name)
{
	return (ucs2_strnlen(name, EFI_VAR_NAME_LEN) + 1) * sizeof(efi_char16_t);
}

static efi_status_t svsm_efi_get_payload_size(u64 *size)
{
	struct svsm_mm_payload_size *p;
	struct svsm_efi_slot *slot;
	efi_status_t status;

	status = svsm_efi_get(&slot);
	if (status != EFI_SUCCESS)
		return status;
	p = svsm_efi_setup(slot, sizeof(*p), SVSM_MM_GET_PAYLOAD_SIZE);
	status = svsm_efi_communicate(slot);
	if (status == EFI_SUCCESS)
		*size = READ_ONCE(p->size);
	svsm_efi_put(slot);
	return status;
}

/*
 * VAR_CHECK_VARIABLE_PROPERTY_GET into @property, with the buffer of @slot.
 * NOT_FOUND (no property set) is SUCCESS with an all-zero property, as in
 * tee_stmm_efi.
 */
static efi_status_t svsm_efi_property(struct svsm_efi_slot *slot,
				      const efi_char16_t *name, size_t name_size,
				      const efi_guid_t *vendor,
				      struct svsm_var_check_property *property)
{
	struct svsm_mm_var_check_property *p;
	size_t payload_size = sizeof(*p) + name_size;
	efi_status_t status;

	memset(property, 0, sizeof(*property));
	if (payload_size > svsm_efi_max_payload)
		return EFI_INVALID_PARAMETER;

	p = svsm_efi_setup(slot, payload_size, SVSM_MM_VAR_CHECK_PROPERTY_GET);
	memcpy(&p->guid, vendor, sizeof(p->guid));
	p->name_size = name_size;
	memcpy(p->name, name, name_size);

	status = svsm_efi_communicate(slot);
	if (status == EFI_NOT_FOUND)
		return EFI_SUCCESS;
	if (status == EFI_SUCCESS)
		memcpy(property, &p->property, sizeof(*property));
	return status;
}

static efi_status_t svsm_efi_get_variable(efi_char16_t *name,
					  efi_guid_t *vendor, u32 *attributes,
					  unsigned long *data_size, void *data)
{
	struct svsm_mm_access_variable *acc;
	struct svsm_efi_slot *slot;
	size_t name_size, dsize, payload_size;
	efi_status_t status;
	u64 rname, rdata;
	u32 rattr;

	if (!name || !vendor || !data_size)
		return EFI_INVALID_PARAMETER;

	name_size = svsm_efi_name_size(name);
	if (name_size > svsm_efi_max_payload - SVSM_MM_ACCESS_VARIABLE_SIZE)
		return EFI_INVALID_PARAMETER;

	/*
	 * Trim the request to what fits in the buffer, as tee_stmm_efi does:
	 * the variable service reports the real size with BUFFER_TOO_SMALL.
	 */
	dsize = min_t(size_t, *data_size,
		      svsm_efi_max_payload - SVSM_MM_ACCESS_VARIABLE_SIZE - name_size);
	payload_size = SVSM_MM_ACCESS_VARIABLE_SIZE + name_size + dsize;

	status = svsm_efi_get(&slot);
	if (status != EFI_SUCCESS)
		return status;

	acc = svsm_efi_setup(slot, payload_size, SVSM_MM_GET_VARIABLE);
	memcpy(&acc->guid, vendor, sizeof(acc->guid));
	acc->data_size = dsize;
	acc->name_size = name_size;
	acc->attr = attributes ? *attributes : 0;
	memcpy(acc->name, name, name_size);

	status = svsm_efi_communicate(slot);
	if (status != EFI_SUCCESS && status != EFI_BUFFER_TOO_SMALL)
		goto out;

	/* Read each field of the reply once, check it, then use the copy. */
	rdata = READ_ONCE(acc->data_size);
	if (status == EFI_BUFFER_TOO_SMALL) {
		*data_size = rdata;
		goto out;
	}
	rname = READ_ONCE(acc->name_size);
	rattr = READ_ONCE(acc->attr);
	if (rdata > dsize) {
		status = svsm_efi_bad_reply("GetVariable DataSize", rdata);
		goto out;
	}
	if (rname > payload_size - SVSM_MM_ACCESS_VARIABLE_SIZE - rdata) {
		status = svsm_efi_bad_reply("GetVariable NameSize", rname);
		goto out;
	}

	*data_size = rdata;
	if (attributes)
		*attributes = rattr;
	if (!data) {
		status = EFI_INVALID_PARAMETER;
		goto out;
	}
	memcpy(data, (u8 *)acc->name + rname, rdata);
out:
	svsm_efi_put(slot);
	return status;
}

static efi_status_t svsm_efi_get_next_variable(unsigned long *name_size,
					       efi_char16_t *name,
					       efi_guid_t *guid)
{
	struct svsm_mm_get_next_name *next;
	struct svsm_efi_slot *slot;
	size_t in_size, out_size, payload_size;
	efi_status_t status;
	u64 rname;

	if (!name_size || !name || !guid)
		return EFI_INVALID_PARAMETER;

	out_size = *name_size;
	in_size = svsm_efi_name_size(name);
	if (out_size < in_size)
		return EFI_INVALID_PARAMETER;
	if (in_size > svsm_efi_max_payload - SVSM_MM_GET_NEXT_NAME_SIZE)
		return EFI_INVALID_PARAMETER;
	out_size = min_t(size_t, out_size,
			 svsm_efi_max_payload - SVSM_MM_GET_NEXT_NAME_SIZE);
	payload_size = SVSM_MM_GET_NEXT_NAME_SIZE + out_size;

	status = svsm_efi_get(&slot);
	if (status != EFI_SUCCESS)
		return status;

	/* svsm_efi_setup() zeroed the name space beyond the previous name. */
	next = svsm_efi_setup(slot, payload_size,
			      SVSM_MM_GET_NEXT_VARIABLE_NAME);
	memcpy(&next->guid, guid, sizeof(next->guid));
	next->name_size = out_size;
	memcpy(next->name, name, in_size);

	status = svsm_efi_communicate(slot);
	if (status != EFI_SUCCESS && status != EFI_BUFFER_TOO_SMALL)
		goto out;

	rname = READ_ONCE(next->name_size);
	if (status == EFI_BUFFER_TOO_SMALL) {
		*name_size = rname;
		goto out;
	}
	if (rname > out_size || rname < sizeof(efi_char16_t) ||
	    rname % sizeof(efi_char16_t)) {
		status = svsm_efi_bad_reply("GetNextVariableName NameSize", rname);
		goto out;
	}
	memcpy(guid, &next->guid, sizeof(*guid));
	memcpy(name, next->name, rname);
	/* Checked on the copy: the reply's memory may change under us. */
	if (name[rname / sizeof(efi_char16_t) - 1] != 0) {
		name[rname / sizeof(efi_char16_t) - 1] = 0;
		status = svsm_efi_bad_reply("GetNextVariableName unterminated name of size",
					    rname);
		goto out;
	}
	*name_size = rname;
out:
	svsm_efi_put(slot);
	return status;
}

static efi_status_t svsm_efi_set_variable(efi_char16_t *name,
					  efi_guid_t *vendor, u32 attributes,
					  unsigned long data_size, void *data)
{
	struct svsm_var_check_property property;
	struct svsm_mm_access_variable *acc;
	struct svsm_efi_slot *slot;
	size_t name_size, payload_size;
	efi_status_t status;

	if (!name || name[0] == 0 || !vendor)
		return EFI_INVALID_PARAMETER;
	if (data_size > 0 && !data)
		return EFI_INVALID_PARAMETER;

	name_size = svsm_efi_name_size(name);
	if (data_size > svsm_efi_max_payload)
		return EFI_INVALID_PARAMETER;
	payload_size = SVSM_MM_ACCESS_VARIABLE_SIZE + name_size + data_size;
	if (payload_size > svsm_efi_max_payload)
		return EFI_INVALID_PARAMETER;

	status = svsm_efi_get(&slot);
	if (status != EFI_SUCCESS)
		return status;

	/* READ_ONLY, as tee_stmm_efi checks it, when the SVSM can tell. */
	if (svsm_efi_var_check) {
		status = svsm_efi_property(slot, name, name_size, vendor,
					   &property);
		if (status != EFI_SUCCESS && status != EFI_UNSUPPORTED) {
			pr_err_ratelimited("getting the variable property failed: 0x%lx\n",
					   status);
			goto out;
		}
		if (status == EFI_SUCCESS &&
		    (property.property & SVSM_VAR_CHECK_PROPERTY_READ_ONLY)) {
			status = EFI_WRITE_PROTECTED;
			goto out;
		}
	}

	acc = svsm_efi_setup(slot, payload_size, SVSM_MM_SET_VARIABLE);
	memcpy(&acc->guid, vendor, sizeof(acc->guid));
	acc->data_size = data_size;
	acc->name_size = name_size;
	acc->attr = attributes;
	memcpy(acc->name, name, name_size);
	if (data_size)
		memcpy((u8 *)acc->name + name_size, data, data_size);

	status = svsm_efi_communicate(slot);
out:
	svsm_efi_put(slot);
	return status;
}

static efi_status_t svsm_efi_query_variable_info(u32 attributes,
						 u64 *max_variable_storage_size,
						 u64 *remaining_variable_storage_size,
						 u64 *max_variable_size)
{
	struct svsm_mm_query_info *q;
	struct svsm_efi_slot *slot;
	efi_status_t status;

	if (!max_variable_storage_size || !remaining_variable_storage_size ||
	    !max_variable_size)
		return EFI_INVALID_PARAMETER;

	status = svsm_efi_get(&slot);
	if (status != EFI_SUCCESS)
		return status;

	q = svsm_efi_setup(slot, sizeof(*q), SVSM_MM_QUERY_VARIABLE_INFO);
	q->attr = attributes;
	status = svsm_efi_communicate(slot);
	if (status == EFI_SUCCESS) {
		*max_variable_storage_size = READ_ONCE(q->max_variable_storage);
		*remaining_variable_storage_size =
			READ_ONCE(q->remaining_variable_storage);
		*max_variable_size = READ_ONCE(q->max_variable_size);
	}
	svsm_efi_put(slot);
	return status;
}

/*
 * check_var_size() asks this before every non-empty write. x86's
 * efi_query_variable_store() calls firmware runtime services, which cannot
 * reach the SVSM's store (the firmware's Calling Area is gone once Linux owns
 * the CAAs). This one asks the SVSM and keeps the same reserve
 * (efivar_reserved_space(): 5 KiB unless efi_no_storage_paranoia), without
 * the dummy write that makes flash firmware collect garbage. Unlike x86 it
 * does not let size > remaining wrap around. It never sleeps, so the
 * non-blocking variant is the same.
 */
static efi_status_t svsm_efi_query_variable_store(u32 attributes,
						  unsigned long size,
						  bool nonblocking)
{
	u64 storage, remaining, max_size;
	efi_status_t status;

	if (!(attributes & EFI_VARIABLE_NON_VOLATILE))
		return EFI_SUCCESS;

	status = svsm_efi_query_variable_info(attributes, &storage, &remaining,
					      &max_size);
	if (status != EFI_SUCCESS)
		return status;

	if (size > remaining || remaining - size < efivar_reserved_space())
		return EFI_OUT_OF_RESOURCES;
	return EFI_SUCCESS;
}

/*
 * efi-pstore writes through this in oops and panic context, with
 * efivar_trylock(). tee_stmm_efi answers EFI_UNSUPPORTED; here no call path
 * sleeps (the buffer is this CPU's, the SVSM call spins), so the write is
 * made. If the interrupted context was itself using this CPU's buffer, the
 * answer is EFI_NOT_READY, as the runtime-services wrapper answers when it
 * cannot take its lock.
 */
static efi_status_t svsm_efi_set_variable_nonblocking(efi_char16_t *name,
						      efi_guid_t *vendor,
						      u32 attributes,
						      unsigned long data_size,
						      void *data)
{
	return svsm_efi_set_variable(name, vendor, attributes, data_size, data);
}

/* Allocate (or, with @size 0, free) every possible CPU's MM buffer. */
static int svsm_efi_buffers(size_t size)
{
	unsigned int cpu;
	int ret = 0;

	for_each_possible_cpu(cpu) {
		struct svsm_efi_slot *slot = per_cpu_ptr(&svsm_efi_slots, cpu);

		if (slot->buf) {
			svsm_efi_transport->free_buffer(cpu, slot->buf,
							svsm_efi_buf_size);
			slot->buf = NULL;
			slot->gpa = 0;
		}
	}
	svsm_efi_buf_size = 0;
	svsm_efi_max_payload = 0;
	if (!size)
		return 0;

	for_each_possible_cpu(cpu) {
		struct svsm_efi_slot *slot = per_cpu_ptr(&svsm_efi_slots, cpu);

		ret = svsm_efi_transport->alloc_buffer(cpu, size, &slot->buf,
						       &slot->gpa);
		if (ret)
			break;
	}
	svsm_efi_buf_size = size;
	svsm_efi_max_payload = size - SVSM_EFI_HEADERS;
	if (ret)
		svsm_efi_buffers(0);
	return ret;
}

/* Protocol 4 (QUERY_PROTOCOL), then the payload size and the buffers. */
static int svsm_efi_probe(void)
{
	static const efi_char16_t probe_name[] = {
		'S', 'v', 's', 'm', 'E', 'f', 'i', 'v', 'a', 'r', 's', 0
	};
	const efi_guid_t probe_guid = SVSM_EFI_PROBE_GUID;
	struct svsm_var_check_property property;
	struct svsm_efi_slot *slot;
	size_t cap, size;
	efi_status_t status;
	u64 versions, payload;
	int ret;

	ret = svsm_efi_transport->query_protocol(&versions);
	if (ret) {
		pr_err("SVSM_CORE_QUERY_PROTOCOL failed: %d\n", ret);
		return ret;
	}
	if (!versions) {
		pr_err("the SVSM does not offer the UEFI MM protocol (4) version %d\n",
		       SVSM_EFI_UEFI_MM_VERSION);
		return -ENODEV;
	}
	pr_info("SVSM UEFI MM protocol versions %u to %u\n",
		lower_32_bits(versions), upper_32_bits(versions));

	cap = min_t(size_t, svsm_efi_transport->max_buffer(), SVSM_EFI_MAX_BUFFER);
	if (cap < PAGE_ALIGN(SVSM_EFI_HEADERS + SVSM_EFI_MIN_PAYLOAD)) {
		pr_err("the %s transport has no room for the buffers\n",
		       svsm_efi_transport->name);
		return -ENOSPC;
	}
	/*
	 * Ask through buffers as large as the ones the driver will use: the
	 * answer may depend on the buffer (QEMU's uefi-vars answers the buffer
	 * size minus 40), so a one-page probe would cap every variable near
	 * 4 KiB. 64 KiB is OVMF's MAX_BUFFER_SIZE; the usual answer fills it
	 * exactly, and the buffers are then kept.
	 */
	ret = svsm_efi_buffers(min_t(size_t, cap, SZ_64K));
	if (ret)
		return ret;
	status = svsm_efi_get_payload_size(&payload);
	if (status != EFI_SUCCESS) {
		svsm_efi_buffers(0);
		pr_err("GET_PAYLOAD_SIZE failed: 0x%lx\n", status);
		return -EIO;
	}
	if (payload < SVSM_EFI_MIN_PAYLOAD) {
		svsm_efi_buffers(0);
		pr_err("GET_PAYLOAD_SIZE answered %llu bytes, less than %zu\n",
		       payload, SVSM_EFI_MIN_PAYLOAD);
		return -EIO;
	}
	/*
	 * tee_stmm_efi subtracts 2 from the answer to work around an edk2
	 * StandaloneMmCpu (AArch64) miscalculation. The SVSM is not that code:
	 * it bounds a message by MessageLength <= RDX - 24 exactly, so the
	 * answer is used as it is.
	 */
	if (payload > cap - SVSM_EFI_HEADERS) {
		pr_warn("payload size %llu capped to %zu\n", payload,
			cap - SVSM_EFI_HEADERS);
		payload = cap - SVSM_EFI_HEADERS;
	}
	size = PAGE_ALIGN(SVSM_EFI_HEADERS + payload);
	if (size != svsm_efi_buf_size) {
		ret = svsm_efi_buffers(size);
		if (ret)
			return ret;
	}
	/* The whole page-rounded buffer is ours, but the SVSM's limit holds. */
	svsm_efi_max_payload = payload;

	/* Ask once whether the SVSM keeps variable properties. */
	status = svsm_efi_get(&slot);
	if (status == EFI_SUCCESS) {
		status = svsm_efi_property(slot, probe_name, sizeof(probe_name),
					   &probe_guid, &property);
		svsm_efi_put(slot);
	}
	svsm_efi_var_check = status == EFI_SUCCESS;
	if (!svsm_efi_var_check && status != EFI_UNSUPPORTED)
		pr_warn("VAR_CHECK_VARIABLE_PROPERTY_GET answered 0x%lx, not using it\n",
			status);

	pr_info("payload %llu bytes, %zu-byte buffer per CPU, variable properties %s\n",
		payload, size, svsm_efi_var_check ? "used" : "not supported");
	return 0;
}

static int __init svsm_efi_choose_transport(void)
{
	if (!strcmp(transport, "shm")) {
		svsm_efi_transport = &svsm_efi_shm_transport;
	} else if (!strcmp(transport, "svsm")) {
		svsm_efi_transport = &svsm_efi_svsm_transport;
	} else if (!strcmp(transport, "auto")) {
		if (svsm_efi_shm_present()) {
			svsm_efi_transport = &svsm_efi_shm_transport;
		} else if (svsm_efi_svsm_present()) {
			svsm_efi_transport = &svsm_efi_svsm_transport;
		} else {
			pr_err("no transport: no ivshmem-plain device (1af4:1110), and not an SEV-SNP guest running under an SVSM\n");
			return -ENODEV;
		}
	} else {
		pr_err("transport=%s: use auto, shm or svsm\n", transport);
		return -EINVAL;
	}
	return 0;
}

static void svsm_efi_warn_if_mounted(void)
{
	bool mounted;

	/* Every efivarfs superblock has a notifier on efivar_ops_nh. */
	down_read(&efivar_ops_nh.rwsem);
	mounted = efivar_ops_nh.head;
	up_read(&efivar_ops_nh.rwsem);
	if (mounted)
		pr_warn("efivarfs is still mounted: with no other efivars backend its next access fails\n");
}

static int __init svsm_efi_init(void)
{
	int ret;

	ret = svsm_efi_choose_transport();
	if (ret)
		return ret;

	ret = svsm_efi_transport->init();
	if (ret) {
		pr_err("%s transport: %d\n", svsm_efi_transport->name, ret);
		return ret;
	}

	ret = svsm_efi_probe();
	if (ret)
		goto err_transport;

	svsm_efivar_ops.get_variable = svsm_efi_get_variable;
	svsm_efivar_ops.get_next_variable = svsm_efi_get_next_variable;
	svsm_efivar_ops.set_variable = svsm_efi_set_variable;
	svsm_efivar_ops.set_variable_nonblocking = svsm_efi_set_variable_nonblocking;
	svsm_efivar_ops.query_variable_store = svsm_efi_query_variable_store;
	svsm_efivar_ops.query_variable_info = svsm_efi_query_variable_info;

	efivars_generic_ops_unregister();
	ret = efivars_register(&svsm_efivars, &svsm_efivar_ops);
	if (ret) {
		pr_err("efivars_register: %d\n", ret);
		efivars_generic_ops_register();
		goto err_buffers;
	}
	pr_info("Using SVSM-based EFI runtime variable services (%s transport)\n",
		svsm_efi_transport->name);
	return 0;

err_buffers:
	svsm_efi_buffers(0);
err_transport:
	svsm_efi_transport->exit();
	return ret;
}

static void __exit svsm_efi_exit(void)
{
	/*
	 * efivars_unregister() takes efivars_lock, which every caller of the
	 * operations holds (efivar_trylock() for the non-blocking write): once
	 * it returns no operation runs, and none starts.
	 */
	efivars_unregister(&svsm_efivars);
	efivars_generic_ops_register();
	if (!efivar_is_available())
		svsm_efi_warn_if_mounted();
	svsm_efi_buffers(0);
	svsm_efi_transport->exit();
}

module_init(svsm_efi_init);
module_exit(svsm_efi_exit);

MODULE_ALIAS("platform:svsm-uefi-mm");
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("EFI runtime variable services through an SVSM (UEFI MM protocol)");
