#include "cshm_atomics.h"

#ifdef __linux__
#include <sys/prctl.h>
#endif

int cshm_set_timer_slack(unsigned long nanoseconds)
{
#ifdef __linux__
	return prctl(PR_SET_TIMERSLACK, nanoseconds, 0, 0, 0);
#else
	(void)nanoseconds;
	return 0;
#endif
}
