/* Thread-pool jobs with completion on the loop (see worker.h). */
#include "event/worker.h"
#include "base/err.h"
#include "base/mem.h"

struct job {
    uv_work_t req;
    void (*work)(void *);
    void (*done)(void *);
    void *ud;
};

static void run_work(uv_work_t *req)
{
    struct job *j = req->data;
    j->work(j->ud);
}

static void run_done(uv_work_t *req, int status)
{
    (void)status;
    struct job *j = req->data;
    j->done(j->ud);
    st_free(j);
}

int st_worker_submit(uv_loop_t *loop, void (*work)(void *ud), void (*done)(void *ud), void *ud)
{
    struct job *j = ST_NEW(struct job);
    j->work = work;
    j->done = done;
    j->ud = ud;
    j->req.data = j;
    if (uv_queue_work(loop, &j->req, run_work, run_done) != 0) {
        st_free(j);
        return ST_EIO;
    }
    return 0;
}
