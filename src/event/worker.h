/* Work off the loop thread: CPU-heavy jobs (PBKDF2 for PLAIN and for
 * setting passwords) run on libuv's thread pool and complete on the loop. */
#ifndef ST_EVENT_WORKER_H
#define ST_EVENT_WORKER_H

#include <uv.h>

/* work runs on a pool thread; done runs on the loop thread afterwards (always, also at
 * shutdown). Both get ud. Returns 0 or ST_EIO. */
int st_worker_submit(uv_loop_t *loop, void (*work)(void *ud), void (*done)(void *ud), void *ud);

#endif
