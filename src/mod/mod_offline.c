/* XEP-0160 offline messages with XEP-0203 delay stamps. The router fires
 * "message/offline" for a normal/chat message to an existing local account
 * with no available resource of non-negative priority (RFC 6121 §8.5.2.2.1,
 * §8.5.3.2.1). Messages with a body or another payload besides XEP-0085
 * chat states are stamped <delay xmlns='urn:xmpp:delay' from='HOST'
 * stamp='...Z'/> and appended to the account's "offline" archive; chat-state
 * only, empty and XEP-0334 <no-store/> messages are dropped silently. When
 * the account already holds `max_messages`, the sender gets
 * <service-unavailable/> of type wait (the condition XEP-0160 §2 names; wait
 * because the box empties at the recipient's next login). When a session
 * sends available presence with non-negative priority, or raises a negative
 * priority to non-negative (RFC 6121 §4.7.2.1), the stored messages go to
 * that session in order and are deleted once queued to it. All work for one
 * account runs one operation at a time (store, count, deliver, delete), so
 * two resources coming online at once get each message exactly once, the
 * quota check cannot race, and messages routed to the account while a
 * delivery is pending wait behind the stored ones; at most 1000 per account
 * wait to be written and 1000 behind a delivery, beyond that the sender gets
 * <resource-constraint/> (wait) and the log one line. Durability: a message is
 * stored when its append commits (storage.h); there is no acknowledgement
 * in RFC 6120 to delay, so a crash before the commit (a few milliseconds)
 * loses it, as it would in any server without XEP-0198. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "starling/module.h"

#define NS_OFFLINE "http://jabber.org/protocol/msgoffline"
#define NS_DELAY "urn:xmpp:delay"
#define NS_CHATSTATES "http://jabber.org/protocol/chatstates"
#define NS_HINTS "urn:xmpp:hints"
#define STORE "offline"
#define PAGE 256 /* messages read and delivered per storage round trip */

struct offline_opts {
    int64_t max_messages;
};

static const struct st_option offline_options[] = {
    {"max_messages", ST_OPT_INT, offsetof(struct offline_opts, max_messages), "1000", 1,
     1000000, NULL, NULL,
     "messages kept per account; further ones get <service-unavailable/> (type wait)"},
    ST_OPT_END,
};

enum op_kind { OP_STORE, OP_DELIVER };

/* Per account: messages waiting to be written, and messages waiting while stored ones are
 * being delivered (as many as the router holds per account during an existence check). A
 * flood to one account must not grow memory without end while storage catches up. */
#define QUEUE_MAX 1000

struct op {
    struct op *next;
    enum op_kind kind;
    struct st_xml *stanza; /* STORE: the message as received (reference) */
    struct st_xml *stamped; /* STORE: the copy to store, with <delay/> */
    char *target;           /* DELIVER: full JID of the session that became available */
};

struct held {
    struct held *next;
    struct st_xml *stanza;
};

struct offline_state;

/* Per-account queue; exists while it has operations or held stanzas. */
struct account {
    struct offline_state *os;
    char *bare, *host, *user;
    struct op *first, **tail; /* first is running while busy */
    bool busy;
    unsigned delivering; /* DELIVER operations queued or running */
    unsigned storing;    /* STORE operations queued or running */
    struct held *held, **held_tail;
    unsigned nheld;
    size_t delivered; /* DELIVER: messages of the current page queued to the client */
};

struct offline_state {
    struct st_server *srv;
    int64_t max_messages;
    struct st_map accounts; /* bare JID -> struct account* */
    bool unloaded;          /* module gone; finish storage work, route nothing */
};

static void run_next(struct account *a);

static void op_free(struct op *o)
{
    st_xml_unref(o->stanza);
    st_xml_unref(o->stamped);
    st_free(o->target);
    st_free(o);
}

static struct account *account_get(struct offline_state *os, const struct st_jid *j)
{
    struct account *a = st_map_get(&os->accounts, j->bare);
    if (a)
        return a;
    a = ST_NEW(struct account);
    a->os = os;
    a->bare = st_strdup(j->bare);
    a->host = st_strdup(j->domain);
    a->user = st_strdup(j->local);
    a->tail = &a->first;
    a->held_tail = &a->held;
    st_map_set(&os->accounts, a->bare, a);
    return a;
}

static void release_held(struct account *a)
{
    struct held *h = a->held;
    a->held = NULL;
    a->held_tail = &a->held;
    a->nheld = 0;
    while (h) {
        struct held *n = h->next;
        /* Routed again: the stored messages went first. After unload nothing is routed. */
        if (!a->os->unloaded)
            st_send(a->os->srv, h->stanza);
        st_xml_unref(h->stanza);
        st_free(h);
        h = n;
    }
}

static void state_free_if_done(struct offline_state *os)
{
    if (os->unloaded && os->accounts.count == 0) {
        st_map_free(&os->accounts);
        st_free(os);
    }
}

/* Finishes the running operation and starts the next; frees the account when idle. */
static void op_done(struct account *a)
{
    struct op *o = a->first;
    a->first = o->next;
    if (!a->first)
        a->tail = &a->first;
    a->busy = false;
    if (o->kind == OP_STORE)
        a->storing--;
    if (o->kind == OP_DELIVER && --a->delivering == 0)
        release_held(a);
    op_free(o);
    run_next(a);
}

static void enqueue(struct account *a, struct op *o)
{
    if (o->kind == OP_DELIVER)
        a->delivering++;
    else
        a->storing++;
    *a->tail = o;
    a->tail = &o->next;
    run_next(a);
}

static void reply_error(struct account *a, const struct st_xml *stanza, const char *type,
                        const char *cond, const char *text)
{
    if (a->os->unloaded)
        return;
    struct st_xml *err = st_stanza_error(stanza, type, cond, text);
    st_send(a->os->srv, err);
    st_xml_unref(err);
}

/* ---- storing ---- */

static void on_appended(void *ud, int rc, const char *id)
{
    struct account *a = ud;
    if (rc) {
        st_log_error("offline", "storing a message for %s failed: %s", a->bare, st_strerror(rc));
        reply_error(a, a->first->stanza, "wait", "internal-server-error", NULL);
    } else {
        st_log_debug("offline", "stored message %s for %s", id, a->bare);
    }
    op_done(a);
}

static void on_counted(void *ud, int rc)
{
    struct account *a = ud;
    struct op *o = a->first;
    if (rc < 0) {
        st_log_error("offline", "counting messages of %s failed: %s", a->bare, st_strerror(rc));
        reply_error(a, o->stanza, "wait", "internal-server-error", NULL);
        op_done(a);
        return;
    }
    if (rc >= a->os->max_messages) {
        st_log_info("offline", "offline storage of %s is full (%d messages)", a->bare, rc);
        reply_error(a, o->stanza, "wait", "service-unavailable", "offline storage is full");
        op_done(a);
        return;
    }
    struct st_buf b;
    st_buf_init(&b, ST_STORAGE_VALUE_MAX);
    int src = st_xml_serialize(o->stamped, ST_NS_CLIENT, &b);
    struct st_jid from;
    char *with = NULL;
    if (st_jid_parse(st_xml_attr(o->stanza, "from"), &from) == 0) {
        with = st_strdup(from.bare ? from.bare : from.full);
        st_jid_clear(&from);
    }
    if (!src)
        src = st_archive_append(st_server_storage(a->os->srv), a->host, a->user, STORE, with,
                                (int64_t)time(NULL), b.data, b.len, on_appended, a);
    st_free(with);
    st_buf_free(&b);
    if (src) {
        st_log_error("offline", "cannot store a message for %s: %s", a->bare, st_strerror(src));
        reply_error(a, o->stanza, "wait", "internal-server-error", NULL);
        op_done(a);
    }
}

/* ---- delivering ---- */

static bool takes_offline(const struct st_session *s)
{
    return s && st_session_available(s) && st_session_priority(s) >= 0;
}

/* The session that became available, or else any available non-negative one of the
 * account (the first may have left while the query ran). */
static struct st_session *delivery_target(struct account *a, const char *target)
{
    struct st_server *srv = a->os->srv;
    struct st_jid j;
    struct st_session *s = NULL;
    if (st_jid_parse(target, &j) == 0) {
        s = st_session_find_full(srv, &j);
        st_jid_clear(&j);
    }
    if (takes_offline(s))
        return s;
    for (s = st_session_first(srv, a->host, a->bare); s; s = st_session_next(s))
        if (takes_offline(s))
            return s;
    return NULL;
}

static void query_page(struct account *a);

static void on_deleted(void *ud, int rc)
{
    struct account *a = ud;
    if (rc < 0) {
        /* Delivered but still stored: they would come again at the next login. */
        st_log_error("offline", "deleting delivered messages of %s failed: %s", a->bare,
                     st_strerror(rc));
        op_done(a);
        return;
    }
    if (a->delivered == PAGE) {
        query_page(a); /* maybe more */
        return;
    }
    op_done(a);
}

static void on_page(void *ud, int rc, const struct st_archive_item *items, size_t n,
                    int complete)
{
    (void)complete;
    struct account *a = ud;
    struct op *o = a->first;
    a->delivered = 0;
    if (rc < 0) {
        st_log_error("offline", "reading messages of %s failed: %s", a->bare, st_strerror(rc));
        op_done(a);
        return;
    }
    struct st_session *s = a->os->unloaded ? NULL : delivery_target(a, o->target);
    for (size_t i = 0; s && i < n; i++) {
        struct st_xml *m = st_stanza_parse(items[i].data, items[i].len);
        if (!m) {
            /* Cannot ever be delivered: count it as done so it does not block the rest. */
            st_log_error("offline", "dropping unreadable stored message %s of %s", items[i].id,
                         a->bare);
            a->delivered++;
            continue;
        }
        rc = st_session_send(s, m);
        st_xml_unref(m);
        if (rc)
            break;
        a->delivered++;
    }
    if (a->delivered == 0) {
        op_done(a);
        return;
    }
    st_log_info("offline", "delivered %zu offline message%s to %s", a->delivered,
                a->delivered == 1 ? "" : "s", st_session_jid(s)->full);
    /* Exactly the oldest `delivered` items: nothing else touches this store meanwhile,
     * because the account's operations run one at a time. */
    struct st_archive_query q = {.max = a->delivered};
    rc = st_archive_delete(st_server_storage(a->os->srv), a->host, a->user, STORE, &q,
                           on_deleted, a);
    if (rc)
        on_deleted(a, rc);
}

static void query_page(struct account *a)
{
    struct st_archive_query q = {.max = PAGE};
    int rc = st_archive_query(st_server_storage(a->os->srv), a->host, a->user, STORE, &q,
                              on_page, a);
    if (rc) {
        st_log_error("offline", "cannot read messages of %s: %s", a->bare, st_strerror(rc));
        op_done(a);
    }
}

static void run_next(struct account *a)
{
    struct offline_state *os = a->os;
    if (a->busy)
        return;
    if (!a->first) {
        if (a->held)
            release_held(a);
        st_map_del(&os->accounts, a->bare);
        st_free(a->bare);
        st_free(a->host);
        st_free(a->user);
        st_free(a);
        state_free_if_done(os);
        return;
    }
    a->busy = true;
    if (a->first->kind == OP_STORE) {
        int rc = st_archive_count(st_server_storage(os->srv), a->host, a->user, STORE,
                                  on_counted, a);
        if (rc)
            on_counted(a, rc);
    } else if (os->unloaded) {
        op_done(a);
    } else {
        query_page(a);
    }
}

/* ---- events ---- */

/* XEP-0160 §3 / XEP-0085 §5.6: store what a person would miss — a body or any payload
 * other than chat states and the thread id; XEP-0334 <no-store/> opts out. */
static bool worth_storing(const struct st_xml *m)
{
    bool payload = false;
    for (struct st_xml *c = st_xml_first_element(m); c; c = st_xml_next_element(c)) {
        if (strcmp(c->ns, NS_HINTS) == 0 &&
            (strcmp(c->name, "no-store") == 0 || strcmp(c->name, "no-permanent-store") == 0))
            return false;
        if (strcmp(c->ns, ST_NS_CLIENT) == 0 && strcmp(c->name, "body") == 0)
            payload = true;
        else if (strcmp(c->ns, NS_CHATSTATES) == 0)
            continue;
        else if (strcmp(c->ns, ST_NS_CLIENT) == 0 && strcmp(c->name, "thread") == 0)
            continue;
        else if (strcmp(c->ns, NS_HINTS) == 0)
            continue;
        else
            payload = true;
    }
    return payload;
}

/* XEP-0203 §3 with XEP-0082 date-time in UTC. */
static void utc_stamp(char *out, size_t size)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, size, "%s.%03ldZ", base, ts.tv_nsec / 1000000);
}

static int on_offline(struct st_event *ev, void *ud)
{
    struct offline_state *os = ud;
    const char *type = st_message_type(ev->stanza);
    if (strcmp(type, "normal") != 0 && strcmp(type, "chat") != 0)
        return ST_EV_PASS; /* groupchat, headline and error are never stored */
    if (!ev->to || !ev->to->local)
        return ST_EV_PASS;
    if (!worth_storing(ev->stanza))
        return ST_EV_HANDLED; /* chat states to nobody: dropped silently */
    struct account *a = account_get(os, ev->to);
    if (a->storing >= QUEUE_MAX) {
        st_log_info("offline", "offline queue of %s is full; refusing a message", a->bare);
        reply_error(a, ev->stanza, "wait", "resource-constraint", NULL);
        return ST_EV_HANDLED;
    }
    struct op *o = ST_NEW(struct op);
    o->kind = OP_STORE;
    o->stanza = st_xml_ref(ev->stanza);
    o->stamped = st_xml_copy(ev->stanza);
    char stamp[64];
    utc_stamp(stamp, sizeof stamp);
    struct st_xml *d = st_xml_add_child(o->stamped, "delay", NS_DELAY);
    st_xml_set_attr(d, "from", ev->to->domain);
    st_xml_set_attr(d, "stamp", stamp);
    st_xml_add_text(d, "Offline Storage");
    enqueue(a, o);
    return ST_EV_HANDLED;
}

static void start_delivery(struct offline_state *os, struct st_session *s)
{
    const struct st_jid *j = st_session_jid(s);
    struct op *o = ST_NEW(struct op);
    o->kind = OP_DELIVER;
    o->target = st_strdup(j->full);
    enqueue(account_get(os, j), o);
}

static int on_available(struct st_event *ev, void *ud)
{
    if (ev->origin && st_session_bound(ev->origin) && st_session_priority(ev->origin) >= 0)
        start_delivery(ud, ev->origin);
    return ST_EV_PASS;
}

/* RFC 6121 §4.7.2.1: a resource raising its priority from negative to non-negative now
 * takes offline messages. Runs before the presence module records the new priority. */
static int on_broadcast(struct st_event *ev, void *ud)
{
    struct st_session *s = ev->origin;
    if (!s || !st_session_available(s) || st_session_priority(s) >= 0 ||
        st_xml_attr(ev->stanza, "type"))
        return ST_EV_PASS;
    long prio = 0;
    struct st_xml *p = st_xml_child(ev->stanza, "priority", ST_NS_CLIENT);
    if (p) {
        char *t = st_xml_text(p);
        char *end = NULL;
        prio = strtol(t, &end, 10);
        if (end == t || *end)
            prio = 0;
        st_free(t);
    }
    if (prio >= 0)
        start_delivery(ud, s);
    return ST_EV_PASS;
}

/* While stored messages are on their way to the account, later messages to it wait so
 * they arrive after them. */
static int on_message(struct st_event *ev, void *ud)
{
    struct offline_state *os = ud;
    if (!ev->to || !ev->to->local || !ev->to->bare)
        return ST_EV_PASS;
    struct account *a = st_map_get(&os->accounts, ev->to->bare);
    if (!a || a->delivering == 0)
        return ST_EV_PASS;
    if (a->nheld >= QUEUE_MAX) {
        st_log_info("offline", "%s is still receiving stored messages and %u more wait; "
                    "refusing a message", a->bare, a->nheld);
        reply_error(a, ev->stanza, "wait", "resource-constraint", NULL);
        return ST_EV_HANDLED;
    }
    a->nheld++;
    struct held *h = ST_NEW(struct held);
    h->stanza = st_xml_ref(ev->stanza);
    *a->held_tail = h;
    a->held_tail = &h->next;
    return ST_EV_HANDLED;
}

static int offline_load(struct st_module *m, const void *options)
{
    const struct offline_opts *opts = options;
    struct offline_state *os = ST_NEW(struct offline_state);
    os->srv = st_module_server(m);
    os->max_messages = opts->max_messages;
    st_map_init(&os->accounts);
    st_module_set_data(m, os);
    st_module_hook(m, "message/offline", on_offline, os, 0);
    st_module_hook(m, "session-available", on_available, os, 0);
    st_module_hook(m, "presence/broadcast", on_broadcast, os, 1000);
    st_module_hook(m, "message/bare", on_message, os, 1000);
    st_module_hook(m, "message/full", on_message, os, 1000);
    st_module_feature(m, NS_OFFLINE, false);
    return 0;
}

/* Storage work already started finishes after unload (appends still commit); deliveries
 * and replies stop. The state goes with the last account queue. */
static void offline_unload(struct st_module *m)
{
    struct offline_state *os = st_module_data(m);
    os->unloaded = true;
    state_free_if_done(os);
}

const struct st_module_def st_mod_offline = {
    .name = "offline",
    .description = "XEP-0160 offline messages with XEP-0203 delay stamps",
    .options = offline_options,
    .options_size = sizeof(struct offline_opts),
    .default_on = true,
    .load = offline_load,
    .unload = offline_unload,
};
