#ifndef EFIVARFS_BRIDGE_CSHM_ATOMICS_H
#define EFIVARFS_BRIDGE_CSHM_ATOMICS_H

#include <stdint.h>

/*
 * The announcing fields of serve-svsm's shared window (kernel/SHM-TRANSPORT.md §2.1): single
 * aligned 4- and 8-byte loads and stores, with acquire (load) and release (store) ordering,
 * so that nothing the guest wrote before its doorbell is read before it, and everything the
 * host wrote is visible before its answer. Swift has no atomics over a raw pointer into
 * another process's memory; these are the compiler's builtins. The pointers must be aligned.
 */
static inline uint64_t cshm_load_acquire_u64(const void *p)
{
	return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE);
}

static inline uint32_t cshm_load_acquire_u32(const void *p)
{
	return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE);
}

static inline void cshm_store_release_u64(void *p, uint64_t v)
{
	__atomic_store_n((uint64_t *)p, v, __ATOMIC_RELEASE);
}

static inline void cshm_store_release_u32(void *p, uint32_t v)
{
	__atomic_store_n((uint32_t *)p, v, __ATOMIC_RELEASE);
}

/* The spin-loop hint (x86 PAUSE, arm64 YIELD). */
static inline void cshm_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/*
 * prctl(PR_SET_TIMERSLACK, ns) for the calling thread: how late the kernel may wake a
 * sleeper. The default 50 µs would turn serve-svsm's 20 µs naps into 70 µs ones. prctl is
 * variadic, which Swift cannot call. Returns 0 or -1 with errno.
 */
int cshm_set_timer_slack(unsigned long nanoseconds);

#endif
