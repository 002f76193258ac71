/* Server-originated IQs (RFC 6120 §8.2.3): every get/set the server sends
 * is tracked by id until its result or error arrives from the entity it
 * was sent to, or a timer expires. A reply is matched on id AND sender so
 * a third party cannot answer for the addressee. */
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "starling/module.h"
#include "xmpp/router.h"
#include "xmpp/server.h"

struct pending {
    struct st_server *srv;
    char *id;
    char *to; /* expected sender of the reply (full string as sent) */
    st_iq_cb cb;
    void *ud;
    uv_timer_t timer;
};

static void pending_closed(uv_handle_t *h)
{
    struct pending *p = h->data;
    st_free(p->id);
    st_free(p->to);
    st_free(p);
}

static void finish(struct pending *p, const struct st_xml *reply)
{
    st_map_del(&p->srv->pending_iq, p->id);
    uv_timer_stop(&p->timer);
    p->cb(p->srv, reply, p->ud);
    uv_close((uv_handle_t *)&p->timer, pending_closed);
}

static void on_timeout(uv_timer_t *t)
{
    finish(t->data, NULL);
}

int st_iq_send(struct st_server *srv, struct st_xml *iq, uint64_t timeout_ms, st_iq_cb cb, void *ud)
{
    const char *to = st_xml_attr(iq, "to");
    if (!to)
        return ST_EINVAL;
    char id[48];
    if (!st_xml_attr(iq, "id")) {
        snprintf(id, sizeof id, "st%llu", (unsigned long long)++srv->iq_counter);
        st_xml_set_attr(iq, "id", id);
    }
    const char *cur = st_xml_attr(iq, "id");
    if (st_map_get(&srv->pending_iq, cur))
        return ST_EEXIST;
    struct st_jid tj;
    if (st_jid_parse(to, &tj) != 0)
        return ST_EINVAL;
    struct pending *p = ST_NEW(struct pending);
    p->srv = srv;
    p->id = st_strdup(cur);
    p->to = st_strdup(tj.full);
    st_jid_clear(&tj);
    p->cb = cb;
    p->ud = ud;
    uv_timer_init(srv->loop, &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, on_timeout, timeout_ms, 0);
    st_map_set(&srv->pending_iq, p->id, p);
    st_route(srv, NULL, iq);
    return 0;
}

int st_iq_pending_resolve(struct st_server *srv, struct st_xml *reply, const char *from)
{
    const char *id = st_xml_attr(reply, "id");
    if (!id || !from)
        return 0;
    struct pending *p = st_map_get(&srv->pending_iq, id);
    if (!p || strcmp(p->to, from) != 0)
        return 0;
    finish(p, reply);
    return 1;
}

void st_iq_pending_cancel_all(struct st_server *srv)
{
    struct st_map_entry *e;
    while ((e = st_map_first(&srv->pending_iq)) != NULL)
        finish(e->value, NULL);
}
