/* A stream's deadline timer (see stream_timer.h). */
#include "event/stream_timer.h"

#include "base/mem.h"

/* The handle with a way back to its st_stream_timer for the close callback (its data is the
 * owner, for the timer callbacks). */
struct handle {
    uv_timer_t h; /* first: a uv_handle_t * is a struct handle * */
    struct st_stream_timer *t;
};

void st_stream_timer_init(struct st_stream_timer *t, void *owner, void (*on_closed)(void *owner))
{
    t->h = NULL;
    t->closing = false;
    t->owner = owner;
    t->on_closed = on_closed;
}

static void closed(uv_handle_t *h)
{
    struct st_stream_timer *t = ((struct handle *)(void *)h)->t;
    st_free(h);
    t->h = NULL;
    t->closing = false;
    t->on_closed(t->owner); /* last: the owner may free t */
}

void st_stream_timer_arm(struct st_stream_timer *t, uv_loop_t *loop, uint64_t ms, uv_timer_cb cb)
{
    if (t->closing)
        return;
    if (!t->h) {
        struct handle *w = ST_NEW(struct handle);
        w->t = t;
        uv_timer_init(loop, &w->h);
        w->h.data = t->owner;
        t->h = &w->h;
    }
    uv_timer_start(t->h, cb, ms, 0);
}

void st_stream_timer_pause(struct st_stream_timer *t)
{
    if (t->h && !t->closing)
        uv_timer_stop(t->h);
}

void st_stream_timer_close(struct st_stream_timer *t)
{
    if (t->h && !t->closing) {
        uv_timer_stop(t->h);
        t->closing = true;
        uv_close((uv_handle_t *)t->h, closed);
    }
}
