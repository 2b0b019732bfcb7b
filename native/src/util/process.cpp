/* Process helpers of the C API (include/chuxin.h) that Node has no call for. */
#include "chuxin.h"
#if defined(__linux__)
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>
#endif

int cx_die_with_parent(int parent_pid) {
#if defined(__linux__)
  // The kernel sends SIGKILL when the thread that started this process ends; checked against the pid afterwards,
  // since a parent that died before the prctl left this process to another (init or a subreaper) already.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return -1;
  return getppid() == static_cast<pid_t>(parent_pid) ? 1 : 0;
#else
  (void)parent_pid;
  return -1;
#endif
}
