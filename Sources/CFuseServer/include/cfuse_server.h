#ifndef EFIVARFS_BRIDGE_CFUSE_SERVER_H
#define EFIVARFS_BRIDGE_CFUSE_SERVER_H

#include <stdint.h>

struct fuse_session;

/// Request counters: one slot per FUSE opcode below this (slot 0 collects the others).
#define CFUSE_OPCODE_SLOTS 64

/// Requests of this opcode the workers of cfuse_serve have read so far (all sessions of
/// the process).
uint64_t cfuse_request_count(unsigned opcode);

/// The opcode's name without the FUSE_ prefix ("LOOKUP"), or NULL for an unused slot.
const char *cfuse_opcode_name(unsigned opcode);

/// Serves a mounted FUSE session with `threads` workers until a stop is asked for
/// (SIGINT, SIGTERM, SIGHUP) or the kernel ends the connection (an unmount from outside),
/// then unmounts and stops every worker even while files are still open. Every request a
/// worker has read is processed and answered. Returns 0; or 1 when the connection could
/// not be aborted (no fusectl): the caller should then exit the process, which closes
/// /dev/fuse and ends the connection. `ready` (may be NULL) is called once, on this
/// thread, when the mount answers requests and this server holds no reference to it.
int cfuse_serve(struct fuse_session *se, const char *mountpoint, unsigned threads,
                void (*ready)(void *context), void *context);

/// Installs the stop signals' handler (call before starting threads, so they inherit the
/// mask); returns 0 or -1 with errno.
int cfuse_install_stop_handlers(void);

#endif
