/* The deadline timer a stream owns (c2s, s2s, component): the negotiation deadline, then the
 * deadline for a peer to read the end of the stream. The handle is allocated when first armed;
 * closing it is asynchronous, so the owner stays alive while st_stream_timer_held() and frees
 * itself from on_closed. */
#ifndef ST_EVENT_STREAM_TIMER_H
#define ST_EVENT_STREAM_TIMER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct st_stream_timer {
    uv_timer_t *h; /* NULL until armed, and again once closed */
    bool closing;
    void *owner;
    void (*on_closed)(void *owner); /* the handle is gone: the owner may free itself */
};

void st_stream_timer_init(struct st_stream_timer *t, void *owner, void (*on_closed)(void *owner));
/* Starts or restarts the timer; cb gets the handle, whose data is the owner. Ignored once
 * closing. */
void st_stream_timer_arm(struct st_stream_timer *t, uv_loop_t *loop, uint64_t ms, uv_timer_cb cb);
/* Stops the timer without closing it (a deadline was met; it may be armed again). */
void st_stream_timer_pause(struct st_stream_timer *t);
/* Stops and closes the handle; on_closed follows from the loop. */
void st_stream_timer_close(struct st_stream_timer *t);

static inline bool st_stream_timer_held(const struct st_stream_timer *t)
{
    return t->h != NULL;
}

#endif
