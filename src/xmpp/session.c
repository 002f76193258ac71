/* Session registry (RFC 6120 §7): bound sessions are kept per host in a
 * map from bare JID to the account's list of resources, which is what the
 * router consults for full- and bare-JID delivery. */
#include "xmpp/session.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/rand.h"
#include "starling/module.h"
#include "xml/node.h"
#include "xmpp/server.h"

void st_session_init(struct st_session *s, struct st_server *srv, const struct st_session_ops *ops,
                     void *transport)
{
    memset(s, 0, sizeof *s);
    s->ops = ops;
    s->transport = transport;
    s->srv = srv;
    st_rand_id(s->id, sizeof s->id, 128);
    s->last_active_ms = uv_now(srv->loop);
}

void st_session_destroy(struct st_session *s)
{
    st_session_unbind(s);
    st_jid_clear(&s->jid);
    st_free(s->username);
    s->username = NULL;
    st_xml_unref(s->presence);
    s->presence = NULL;
}

static struct st_account_sessions *account(struct st_host *h, const char *bare, bool create)
{
    struct st_account_sessions *a = st_map_get(&h->accounts, bare);
    if (!a && create) {
        a = ST_NEW(struct st_account_sessions);
        st_map_set(&h->accounts, bare, a);
    }
    return a;
}

int st_session_bind(struct st_session *s, const char *resource)
{
    struct st_jid j;
    int rc = st_jid_make(s->username, s->host->name, resource, &j);
    if (rc)
        return ST_EINVAL;
    struct st_account_sessions *a = account(s->host, j.bare, false);
    if (a) {
        for (struct st_session *o = a->first; o; o = o->next_resource) {
            if (strcmp(o->jid.full, j.full) == 0) {
                st_jid_clear(&j);
                return ST_EEXIST;
            }
        }
        if (a->count >= (unsigned)s->srv->settings.c2s.max_resources) {
            st_jid_clear(&j);
            return ST_ELIMIT;
        }
    }
    a = account(s->host, j.bare, true);
    st_jid_clear(&s->jid);
    s->jid = j;
    s->next_resource = a->first;
    a->first = s;
    a->count++;
    s->bound = true;
    st_log_info(s->id, "bound %s", s->jid.full);
    struct st_event ev = {.srv = s->srv, .name = "session-bound", .origin = s,
                          .host = s->host->name};
    st_events_fire(&s->srv->events, &ev);
    return 0;
}

void st_session_unbind(struct st_session *s)
{
    if (!s->bound)
        return;
    struct st_event ev = {.srv = s->srv, .name = "session-closed", .origin = s,
                          .host = s->host->name};
    st_events_fire(&s->srv->events, &ev);
    struct st_account_sessions *a = account(s->host, s->jid.bare, false);
    if (a) {
        for (struct st_session **pp = &a->first; *pp; pp = &(*pp)->next_resource) {
            if (*pp == s) {
                *pp = s->next_resource;
                a->count--;
                break;
            }
        }
        if (!a->first) {
            st_map_del(&s->host->accounts, s->jid.bare);
            st_free(a);
        }
    }
    s->bound = false;
    s->next_resource = NULL;
    st_log_info(s->id, "unbound %s", s->jid.full);
}

struct st_session *st_session_find_full(struct st_server *srv, const struct st_jid *jid)
{
    if (!jid->resource)
        return NULL;
    struct st_host *h = st_server_host(srv, jid->domain);
    if (!h)
        return NULL;
    struct st_account_sessions *a = account(h, jid->bare, false);
    for (struct st_session *o = a ? a->first : NULL; o; o = o->next_resource)
        if (strcmp(o->jid.full, jid->full) == 0)
            return o;
    return NULL;
}

struct st_session *st_session_first(struct st_server *srv, const char *host, const char *bare)
{
    struct st_host *h = st_server_host(srv, host);
    if (!h)
        return NULL;
    struct st_account_sessions *a = account(h, bare, false);
    return a ? a->first : NULL;
}

static void fire(struct st_session *s, const char *name)
{
    struct st_event ev = {.srv = s->srv, .name = name, .origin = s,
                          .host = s->host ? s->host->name : NULL};
    st_events_fire(&s->srv->events, &ev);
}

void st_session_set_presence(struct st_session *s, struct st_xml *presence)
{
    const char *type = st_xml_attr(presence, "type");
    bool was = s->available;
    if (type && strcmp(type, "unavailable") == 0) {
        s->available = false;
        st_xml_unref(s->presence);
        s->presence = NULL;
        if (was)
            fire(s, "session-unavailable");
        return;
    }
    if (type)
        return; /* subscription management is not a broadcast */
    int prio = 0;
    struct st_xml *p = st_xml_child(presence, "priority", NULL);
    if (p) {
        char *t = st_xml_text(p);
        char *end = NULL;
        long v = strtol(t, &end, 10);
        if (end != t && *end == '\0')
            prio = v < -128 ? -128 : v > 127 ? 127 : (int)v;
        st_free(t);
    }
    s->priority = prio;
    s->available = true;
    st_xml_unref(s->presence);
    s->presence = st_xml_ref(presence);
    if (!was)
        fire(s, "session-available");
}

struct st_session *st_session_next(const struct st_session *s)
{
    return s->next_resource;
}

bool st_session_available(const struct st_session *s)
{
    return s->available;
}

int st_session_priority(const struct st_session *s)
{
    return s->priority;
}

struct st_xml *st_session_presence(const struct st_session *s)
{
    return s->presence;
}

bool st_session_interested(const struct st_session *s)
{
    return s->interested;
}

void st_session_set_interested(struct st_session *s, bool interested)
{
    s->interested = interested;
}

const char *st_session_host(const struct st_session *s)
{
    return s->host ? s->host->name : NULL;
}

int st_session_send(struct st_session *s, struct st_xml *stanza)
{
    if (s->closing)
        return ST_ECLOSED;
    return s->ops->send(s, stanza);
}

/* ---- module API ---- */

int st_session_deliver(struct st_session *s, struct st_xml *stanza)
{
    return st_session_send(s, stanza);
}

const struct st_jid *st_session_jid(const struct st_session *s)
{
    return &s->jid;
}

bool st_session_bound(const struct st_session *s)
{
    return s->bound;
}

uint64_t st_session_idle_ms(const struct st_session *s)
{
    uint64_t now = uv_now(s->srv->loop);
    return now > s->last_active_ms ? now - s->last_active_ms : 0;
}

void st_session_close(struct st_session *s, const char *condition, const char *text)
{
    s->ops->close(s, condition, text);
}

void st_sessions_foreach(struct st_server *srv, void (*fn)(struct st_session *s, void *ud),
                         void *ud)
{
    /* Collect first: fn may close sessions, which edits the maps. */
    size_t n = 0, cap = 64;
    struct st_session **list = st_malloc(cap * sizeof *list);
    for (struct st_map_entry *he = st_map_first(&srv->hosts); he;
         he = st_map_next(&srv->hosts, he)) {
        struct st_host *h = he->value;
        for (struct st_map_entry *ae = st_map_first(&h->accounts); ae;
             ae = st_map_next(&h->accounts, ae)) {
            struct st_account_sessions *a = ae->value;
            for (struct st_session *s = a->first; s; s = s->next_resource) {
                if (n == cap) {
                    cap *= 2;
                    list = st_realloc(list, cap * sizeof *list);
                }
                list[n++] = s;
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        fn(list[i], ud);
    st_free(list);
}
