/* SPDX-License-Identifier: GPL-2.0 */
/*
 * EFI_MM_COMMUNICATE and SMM variable protocol layouts, as edk2 defines them
 * (MdePkg/Include/Protocol/MmCommunication.h,
 * MdeModulePkg/Include/Guid/SmmVariableCommon.h) and as Linux's
 * drivers/firmware/efi/stmm/mm_communication.h declares them (LP64).
 *
 * The offsets are checked at build time in svsm_efivars.c.
 */
#ifndef _SVSM_EFIVARS_MM_COMMUNICATION_H
#define _SVSM_EFIVARS_MM_COMMUNICATION_H

#include <linux/efi.h>
#include <linux/types.h>

/* HeaderGuid of variable requests: gEfiSmmVariableProtocolGuid */
#define SVSM_EFI_MM_VARIABLE_GUID \
	EFI_GUID(0xed32d533, 0x99e6, 0x4209, \
		 0x9c, 0xc0, 0x2d, 0x72, 0xcd, 0xd9, 0x98, 0xa7)

/* EFI_MM_COMMUNICATE_HEADER: 24 bytes, packed */
struct svsm_mm_communicate_header {
	efi_guid_t header_guid;
	u64 message_len;	/* bytes after this header */
	u8 data[];
} __packed;

#define SVSM_MM_COMMUNICATE_HEADER_SIZE \
	sizeof(struct svsm_mm_communicate_header)

/* SMM_VARIABLE_COMMUNICATE_HEADER.Function */
#define SVSM_MM_GET_VARIABLE			1
#define SVSM_MM_GET_NEXT_VARIABLE_NAME		2
#define SVSM_MM_SET_VARIABLE			3
#define SVSM_MM_QUERY_VARIABLE_INFO		4
#define SVSM_MM_VAR_CHECK_PROPERTY_GET		10
#define SVSM_MM_GET_PAYLOAD_SIZE		11

/* SMM_VARIABLE_COMMUNICATE_HEADER: 16 bytes */
struct svsm_mm_variable_header {
	u64 function;
	u64 ret_status;		/* efi_status_t, written by the variable service */
	u8 data[];
};

#define SVSM_MM_VARIABLE_HEADER_SIZE sizeof(struct svsm_mm_variable_header)

/*
 * SMM_VARIABLE_COMMUNICATE_ACCESS_VARIABLE: sizeof is 40, the name starts at
 * 36 (edk2 uses OFFSET_OF(Name); Linux sizes payloads with sizeof, leaving 4
 * bytes of slack at the end, and so does this driver).
 */
struct svsm_mm_access_variable {
	efi_guid_t guid;
	u64 data_size;
	u64 name_size;		/* bytes, including the UCS-2 NUL */
	u32 attr;
	efi_char16_t name[];	/* name_size bytes, then data_size bytes */
};

#define SVSM_MM_ACCESS_VARIABLE_SIZE sizeof(struct svsm_mm_access_variable)

/* SMM_VARIABLE_COMMUNICATE_GET_NEXT_VARIABLE_NAME: sizeof is 24 */
struct svsm_mm_get_next_name {
	efi_guid_t guid;
	u64 name_size;
	efi_char16_t name[];
};

#define SVSM_MM_GET_NEXT_NAME_SIZE sizeof(struct svsm_mm_get_next_name)

/* SMM_VARIABLE_COMMUNICATE_QUERY_VARIABLE_INFO: sizeof is 32 */
struct svsm_mm_query_info {
	u64 max_variable_storage;
	u64 remaining_variable_storage;
	u64 max_variable_size;
	u32 attr;
};

/* SMM_VARIABLE_COMMUNICATE_GET_PAYLOAD_SIZE: sizeof is 8 */
struct svsm_mm_payload_size {
	u64 size;
};

/* VAR_CHECK_VARIABLE_PROPERTY: sizeof is 24 */
#define SVSM_VAR_CHECK_PROPERTY_REVISION	0x0001
#define SVSM_VAR_CHECK_PROPERTY_READ_ONLY	BIT(0)

struct svsm_var_check_property {
	u16 revision;
	u16 property;
	u32 attributes;
	u64 minsize;
	u64 maxsize;
};

/* SMM_VARIABLE_COMMUNICATE_VAR_CHECK_VARIABLE_PROPERTY: sizeof is 48 */
struct svsm_mm_var_check_property {
	efi_guid_t guid;
	u64 name_size;
	struct svsm_var_check_property property;
	efi_char16_t name[];
};

#endif /* _SVSM_EFIVARS_MM_COMMUNICATION_H */
