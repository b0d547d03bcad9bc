#ifndef EFIVARFS_BRIDGE_CPROCESS_H
#define EFIVARFS_BRIDGE_CPROCESS_H

/// prctl(PR_SET_PDEATHSIG, sig): the signal this process gets when its parent exits (0 to
/// turn it off). prctl is variadic, which Swift cannot call. Returns 0 or -1 with errno.
int cprocess_set_parent_death_signal(int sig);

#endif
