/* Rosters and presence subscriptions (RFC 6121 §2, §3): roster get, set and
 * remove with roster pushes to interested resources (§2.1.6) and roster
 * versioning (§2.6, stream feature urn:xmpp:features:rosterver); the
 * subscription state machine of Appendix A for stanzas the user sends
 * (the "sender's server" side, §3.x.2) and stanzas addressed to the user
 * (the "recipient's server" side, §3.x.3), kept apart so that federation
 * feeds the inbound side unchanged; pre-approval (§3.4, stream feature
 * urn:xmpp:features:pre-approval); inbound requests stored and redelivered
 * to each newly available resource until answered (§3.1.3). All state
 * goes through the per-account queue of roster_store.c, and every reply
 * or push that acknowledges a change is sent only after the write
 * completed. */
#include <string.h>

#include "mod/roster_store.h"
#include "starling/module.h"

#define NS_ROSTERVER "urn:xmpp:features:rosterver"
#define NS_PREAPPROVAL "urn:xmpp:features:pre-approval"
#define MAX_NAME 1023  /* bytes of an item name or group (RFC 6121 §2.3.3 "server limit") */
#define MAX_GROUPS 64

struct roster_opts {
    int64_t max_items;
};

static const struct st_option roster_options[] = {
    {"max_items", ST_OPT_INT, offsetof(struct roster_opts, max_items), "1000", 1, 100000, NULL,
     NULL, "maximum number of items in one roster (adding more: <not-allowed/>)"},
    ST_OPT_END,
};

static struct rs *state(struct st_module *m)
{
    return st_module_data(m);
}

/* ---- roster get (RFC 6121 §2.2, §2.6) ---- */

struct iq_op {
    struct st_xml *iq; /* the request (a reference) */
    char *jid;         /* the contact concerned (set) */
    char *name;
    char **groups;
    size_t ngroups;
    bool remove;
};

static void iq_op_free(void *arg)
{
    struct iq_op *o = arg;
    st_xml_unref(o->iq);
    st_free(o->jid);
    st_free(o->name);
    for (size_t i = 0; i < o->ngroups; i++)
        st_free(o->groups[i]);
    st_free(o->groups);
    st_free(o);
}

/* Routes a reply; one to a stanza without 'to' comes from the sender's own account. */
static void send_reply(struct st_server *srv, struct st_xml *r, const char *account)
{
    if (!st_xml_attr(r, "from"))
        st_xml_set_attr(r, "from", account);
    st_send(srv, r);
    st_xml_unref(r);
}

static void send_error(struct st_server *srv, struct st_xml *stanza, const char *type,
                       const char *cond, const char *account)
{
    send_reply(srv, st_stanza_error(stanza, type, cond, NULL), account);
}

static void run_get(struct rs_user *u, void *arg)
{
    struct iq_op *o = arg;
    struct st_server *srv = rs_server(u->rs);
    if (u->failed) {
        send_error(srv, o->iq, "wait", "internal-server-error", u->bare);
    } else {
        char ver[32];
        snprintf(ver, sizeof ver, "%llu", (unsigned long long)u->ver);
        struct st_xml *q = st_xml_child(o->iq, "query", RS_NS_ROSTER);
        const char *cver = q ? st_xml_attr(q, "ver") : NULL;
        struct st_xml *r = st_iq_result(o->iq);
        if (!cver || strcmp(cver, ver) != 0) {
            /* §2.6.3: the whole roster; an unchanged one gets an empty result. */
            struct st_xml *rq = st_xml_add_child(r, "query", RS_NS_ROSTER);
            if (cver)
                st_xml_set_attr(rq, "ver", ver);
            for (struct st_map_entry *e = st_map_first(&u->items); e;
                 e = st_map_next(&u->items, e))
                rs_item_xml(rq, e->value, NULL);
        }
        send_reply(srv, r, u->bare);
    }
    iq_op_free(o);
    rs_done(u);
}

/* RFC 6121 §2.1.5 / §2.3.3: only the account itself manages its roster. */
static bool own_roster(struct st_event *ev)
{
    return ev->origin && ev->from && ev->to && ev->from->local && ev->to->local &&
           strcmp(ev->from->bare, ev->to->bare) == 0;
}

static int on_roster_get(struct st_event *ev, void *ud)
{
    struct st_module *m = ud;
    if (!own_roster(ev))
        return st_reply_error(ev, "auth", "forbidden", NULL);
    st_session_set_interested(ev->origin, true);
    struct iq_op *o = ST_NEW(struct iq_op);
    o->iq = st_xml_ref(ev->stanza);
    if (rs_enqueue(state(m), ev->to->domain, ev->to->local, run_get, iq_op_free, o) != 0) {
        iq_op_free(o);
        return st_reply_error(ev, "wait", "internal-server-error", NULL);
    }
    return ST_EV_HANDLED;
}

/* ---- roster set and remove (RFC 6121 §2.3-2.5) ---- */

struct set_ctx {
    struct iq_op *o;
    struct st_sub_state before;
};

static void set_written(struct rs_user *u, int rc, void *arg)
{
    struct set_ctx *c = arg;
    struct iq_op *o = c->o;
    struct st_server *srv = rs_server(u->rs);
    if (rc) {
        send_error(srv, o->iq, "wait", "internal-server-error", u->bare);
    } else {
        send_reply(srv, st_iq_result(o->iq), u->bare);
        rs_push(u, o->jid);
        if (o->remove) {
            /* §2.5.2: cancel both directions with the contact. */
            struct st_jid cj;
            if (st_jid_parse(o->jid, &cj) == 0) {
                if (c->before.to || c->before.pending_out)
                    rs_send_typed(srv, "unsubscribe", u->bare, cj.bare);
                if (c->before.from || c->before.pending_in) {
                    if (c->before.from)
                        rs_send_unavailable(srv, u->host, u->bare, cj.bare);
                    rs_send_typed(srv, "unsubscribed", u->bare, cj.bare);
                }
                st_jid_clear(&cj);
            }
        }
    }
    iq_op_free(o);
    st_free(c);
    rs_done(u);
}

static void run_set(struct rs_user *u, void *arg)
{
    struct iq_op *o = arg;
    struct st_server *srv = rs_server(u->rs);
    const char *err = NULL, *etype = "cancel";
    struct rs_item *it = rs_item_get(u, o->jid);
    if (u->failed) {
        err = "internal-server-error";
        etype = "wait";
    } else if (o->remove && !it) {
        err = "item-not-found"; /* §2.5.3 */
    } else if (!o->remove && !it && u->items.count >= rs_max_items(u->rs)) {
        err = "not-allowed"; /* the configured maximum roster size */
    }
    if (err) {
        send_error(srv, o->iq, etype, err, u->bare);
        iq_op_free(o);
        rs_done(u);
        return;
    }
    struct set_ctx *c = ST_NEW(struct set_ctx);
    c->o = o;
    rs_state(u, o->jid, &c->before);
    struct rs_batch *b = rs_batch_new(u, set_written, c);
    if (o->remove) {
        bool had_pending = c->before.pending_in;
        rs_item_del(u, o->jid);
        if (had_pending)
            rs_batch_pending(b, o->jid, NULL, 0);
    } else {
        /* §2.1.2.5: 'subscription' (other than remove), 'ask' and 'approved' in a set are
         * ignored: only name and groups change. */
        it = rs_item_put(u, o->jid);
        rs_item_set_meta(it, o->name, o->groups, o->ngroups);
    }
    rs_batch_item(b, o->jid);
    rs_batch_ver(b);
    rs_batch_commit(b);
}

static int on_roster_set(struct st_event *ev, void *ud)
{
    struct st_module *m = ud;
    if (!own_roster(ev))
        return st_reply_error(ev, "auth", "forbidden", NULL);
    struct st_xml *q = st_xml_first_element(ev->stanza);
    struct st_xml *item = NULL;
    unsigned nitems = 0;
    for (struct st_xml *c = st_xml_first_element(q); c; c = st_xml_next_element(c))
        if (st_xml_is(c, "item", RS_NS_ROSTER)) {
            item = c;
            nitems++;
        }
    if (nitems != 1) /* §2.3.3: exactly one item */
        return st_reply_error(ev, "modify", "bad-request", "a roster set has exactly one item");
    const char *jid_s = st_xml_attr(item, "jid");
    struct st_jid cj;
    if (!jid_s || st_jid_parse(jid_s, &cj) != 0)
        return st_reply_error(ev, "modify", "bad-request", "invalid 'jid'");
    struct iq_op *o = ST_NEW(struct iq_op);
    o->iq = st_xml_ref(ev->stanza);
    o->jid = st_strdup(cj.full);
    st_jid_clear(&cj);
    const char *sub = st_xml_attr(item, "subscription");
    o->remove = sub && strcmp(sub, "remove") == 0;
    const char *err = NULL, *etype = "modify", *text = NULL;
    if (!o->remove) {
        const char *name = st_xml_attr(item, "name");
        if (name && strlen(name) > MAX_NAME) {
            err = "not-acceptable";
            text = "name too long";
        } else if (name && *name) {
            o->name = st_strdup(name);
        }
        for (struct st_xml *g = st_xml_first_element(item); g && !err;
             g = st_xml_next_element(g)) {
            if (!st_xml_is(g, "group", RS_NS_ROSTER))
                continue;
            char *t = st_xml_text(g);
            if (!*t) {
                err = "not-acceptable"; /* §2.3.3: empty group */
                text = "empty group";
            } else if (strlen(t) > MAX_NAME) {
                err = "not-acceptable";
                text = "group name too long";
            } else if (o->ngroups >= MAX_GROUPS) {
                err = "not-acceptable";
                text = "too many groups";
            }
            for (size_t i = 0; i < o->ngroups && !err; i++)
                if (strcmp(o->groups[i], t) == 0) {
                    err = "bad-request"; /* §2.3.3: duplicate group */
                    text = "duplicate group";
                }
            if (err) {
                st_free(t);
                break;
            }
            o->groups = st_realloc(o->groups, (o->ngroups + 1) * sizeof *o->groups);
            o->groups[o->ngroups++] = t;
        }
    }
    if (err) {
        iq_op_free(o);
        return st_reply_error(ev, etype, err, text);
    }
    if (rs_enqueue(state(m), ev->to->domain, ev->to->local, run_set, iq_op_free, o) != 0) {
        iq_op_free(o);
        return st_reply_error(ev, "wait", "internal-server-error", NULL);
    }
    return ST_EV_HANDLED;
}

/* ---- subscriptions (RFC 6121 §3, Appendix A) ---- */

struct sub_op {
    struct st_xml *stanza; /* a reference */
    enum st_sub_event ev;
    enum st_sub_dir dir;
    char *contact;         /* bare JID of the other party */
    unsigned act;
};

static void sub_op_free(void *arg)
{
    struct sub_op *o = arg;
    st_xml_unref(o->stanza);
    st_free(o->contact);
    st_free(o);
}

/* Delivers a subscription stanza to the user's resources: requests to available resources
 * (§3.1.3), everything else to interested resources (§3.1.6, §3.2.3, §3.3.3). */
static void deliver_local(struct rs_user *u, struct sub_op *o)
{
    struct st_server *srv = rs_server(u->rs);
    struct st_xml *p = st_xml_copy(o->stanza);
    st_xml_set_attr(p, "to", u->bare);
    for (struct st_session *s = st_session_first(srv, u->host, u->bare); s;
         s = st_session_next(s)) {
        bool want = o->ev == ST_SUB_SUBSCRIBE ? st_session_available(s) : st_session_interested(s);
        if (want)
            st_session_deliver(s, p);
    }
    st_xml_unref(p);
}

static void sub_written(struct rs_user *u, int rc, void *arg)
{
    struct sub_op *o = arg;
    struct st_server *srv = rs_server(u->rs);
    unsigned act = o->act;
    if (rc) {
        if (o->dir == ST_SUB_OUT)
            send_error(srv, o->stanza, "wait", "internal-server-error", u->bare);
        goto out;
    }
    if (act & ST_SUB_PUSH)
        rs_push(u, o->contact);
    if (act & ST_SUB_DELIVER)
        deliver_local(u, o);
    if (act & ST_SUB_REPLY_SUBSCRIBED)
        rs_send_typed(srv, "subscribed", u->bare, o->contact);
    if (act & ST_SUB_ROUTE) {
        /* §3.1.2: stamped with the user's bare JID, addressed to the contact's bare JID. */
        struct st_xml *p = st_xml_copy(o->stanza);
        st_xml_set_attr(p, "from", u->bare);
        st_xml_set_attr(p, "to", o->contact);
        st_send(srv, p);
        st_xml_unref(p);
    }
    if (act & ST_SUB_SEND_PRESENCE)
        rs_send_presence(srv, u->host, u->bare, o->contact);
    if (act & ST_SUB_SEND_UNAVAILABLE)
        rs_send_unavailable(srv, u->host, u->bare, o->contact);
out:
    sub_op_free(o);
    rs_done(u);
}

static void run_sub(struct rs_user *u, void *arg)
{
    struct sub_op *o = arg;
    if (u->failed) {
        sub_written(u, ST_EIO, o);
        return;
    }
    struct st_sub_state cur, next;
    rs_state(u, o->contact, &cur);
    unsigned act = st_sub_apply(&cur, o->ev, o->dir, &next);
    if (next.exists && !cur.exists && u->items.count >= rs_max_items(u->rs)) {
        /* No room for the new item: the change is refused. */
        if (o->dir == ST_SUB_OUT)
            send_error(rs_server(u->rs), o->stanza, "cancel", "not-allowed", u->bare);
        sub_op_free(o);
        rs_done(u);
        return;
    }
    o->act = act;
    rs_set_state(u, o->contact, &next);
    struct rs_batch *b = rs_batch_new(u, sub_written, o);
    if (act & ST_SUB_WRITE) {
        rs_batch_item(b, o->contact);
        rs_batch_ver(b);
    }
    if (act & ST_SUB_STORE_PENDING) {
        struct st_buf buf;
        st_buf_init(&buf, ST_STORAGE_VALUE_MAX);
        if (st_xml_serialize(o->stanza, ST_NS_CLIENT, &buf) == 0)
            rs_batch_pending(b, o->contact, buf.data, buf.len);
        st_buf_free(&buf);
    }
    if (act & ST_SUB_DROP_PENDING)
        rs_batch_pending(b, o->contact, NULL, 0);
    rs_batch_commit(b);
}

static int queue_sub(struct rs *rs, const char *host, const char *user, struct st_xml *st,
                     enum st_sub_event sev, enum st_sub_dir dir, const char *contact)
{
    struct sub_op *o = ST_NEW(struct sub_op);
    o->stanza = st_xml_ref(st);
    o->ev = sev;
    o->dir = dir;
    o->contact = st_strdup(contact);
    int rc = rs_enqueue(rs, host, user, run_sub, sub_op_free, o);
    if (rc)
        sub_op_free(o);
    return rc;
}

struct exists_ctx {
    struct rs *rs;
    struct st_xml *stanza;
    char *host, *user, *contact;
};

static void exists_cb(void *ud, int exists)
{
    struct exists_ctx *c = ud;
    if (!rs_release(c->rs)) {
        exists = -1;
    } else if (exists == 1) {
        queue_sub(c->rs, c->host, c->user, c->stanza, ST_SUB_SUBSCRIBE, ST_SUB_IN, c->contact);
    } else if (exists == 0) {
        /* §3.1.3: no such user: the request is refused with 'unsubscribed'. */
        struct st_jid me;
        if (st_jid_make(c->user, c->host, NULL, &me) == 0) {
            rs_send_typed(rs_server(c->rs), "unsubscribed", me.bare, c->contact);
            st_jid_clear(&me);
        }
    }
    st_xml_unref(c->stanza);
    st_free(c->host);
    st_free(c->user);
    st_free(c->contact);
    st_free(c);
}

static int on_presence(struct st_event *ev, void *ud)
{
    struct st_module *m = ud;
    enum st_sub_event sev;
    if (!st_sub_event_parse(st_xml_attr(ev->stanza, "type"), &sev))
        return ST_EV_PASS;
    /* A component (XEP-0114) is another server as far as RFC 6121 is concerned. */
    bool remote = strcmp(ev->name, "presence/remote") == 0 ||
                  strcmp(ev->name, "presence/component") == 0;
    if (ev->origin) {
        /* The sender's server: a local user manages a subscription (§3.x.2). */
        if (!ev->to || !ev->to->domain)
            return ST_EV_HANDLED;
        const struct st_jid *me = st_session_jid(ev->origin);
        if (strcmp(ev->to->bare, me->bare) == 0)
            return ST_EV_HANDLED; /* subscribing to oneself is meaningless */
        if (queue_sub(state(m), me->domain, me->local, ev->stanza, sev, ST_SUB_OUT,
                      ev->to->bare) != 0)
            return st_reply_error(ev, "wait", "internal-server-error", NULL);
        return ST_EV_HANDLED;
    }
    if (remote)
        return ST_EV_PASS; /* server-generated, for another server: the s2s side routes it */
    if (!ev->to || !ev->to->local || !ev->from)
        return ST_EV_HANDLED; /* to the server itself: nothing to do */
    /* The recipient's server (§3.x.3): always about the bare JIDs (§3.1.3). */
    if (strcmp(ev->to->bare, ev->from->bare) == 0)
        return ST_EV_HANDLED;
    if (sev == ST_SUB_SUBSCRIBE && !st_session_first(ev->srv, ev->to->domain, ev->to->bare)) {
        struct exists_ctx *c = ST_NEW(struct exists_ctx);
        c->rs = state(m);
        c->stanza = st_xml_ref(ev->stanza);
        c->host = st_strdup(ev->to->domain);
        c->user = st_strdup(ev->to->local);
        c->contact = st_strdup(ev->from->bare);
        rs_hold(c->rs);
        if (st_account_exists(ev->srv, c->host, c->user, exists_cb, c) != 0)
            exists_cb(c, -1);
        return ST_EV_HANDLED;
    }
    queue_sub(state(m), ev->to->domain, ev->to->local, ev->stanza, sev, ST_SUB_IN, ev->from->bare);
    return ST_EV_HANDLED;
}

/* ---- redelivery of stored requests (§3.1.3) ---- */

struct redeliver {
    struct rs *rs;
    char *full;
};

static void redeliver_free(void *arg)
{
    struct redeliver *r = arg;
    st_free(r->full);
    st_free(r);
}

static void pending_listed(void *ud, int rc, const struct st_kvmap_row *rows, size_t n)
{
    struct redeliver *r = ud;
    if (rs_release(r->rs) && rc == 0) {
        struct st_server *srv = rs_server(r->rs);
        struct st_jid j;
        if (st_jid_parse(r->full, &j) == 0) {
            struct st_session *s = st_session_find_full(srv, &j);
            for (size_t i = 0; s && i < n; i++) {
                struct st_xml *p = st_stanza_parse(rows[i].data, rows[i].len);
                if (!p)
                    continue;
                st_xml_set_attr(p, "to", j.bare);
                st_session_deliver(s, p);
                st_xml_unref(p);
            }
            st_jid_clear(&j);
        }
    }
    redeliver_free(r);
}

static void run_redeliver(struct rs_user *u, void *arg)
{
    struct redeliver *r = arg;
    if (u->failed || u->pending.count == 0 ||
        st_kvmap_list(st_server_storage(rs_server(u->rs)), u->host, u->user, "roster_pending",
                      pending_listed, r) != 0)
        redeliver_free(r);
    else
        rs_hold(u->rs);
    rs_done(u);
}

static int on_available(struct st_event *ev, void *ud)
{
    struct st_module *m = ud;
    const struct st_jid *j = st_session_jid(ev->origin);
    struct redeliver *r = ST_NEW(struct redeliver);
    r->rs = state(m);
    r->full = st_strdup(j->full);
    if (rs_enqueue(state(m), j->domain, j->local, run_redeliver, redeliver_free, r) != 0)
        redeliver_free(r);
    return ST_EV_PASS;
}

static int on_closed(struct st_event *ev, void *ud)
{
    struct st_module *m = ud;
    const struct st_jid *j = st_session_jid(ev->origin);
    rs_maybe_drop(state(m), j->domain, j->bare, ev->origin);
    return ST_EV_PASS;
}

static int on_features(struct st_event *ev, void *ud)
{
    (void)ud;
    st_xml_add_child(ev->features, "ver", NS_ROSTERVER);
    st_xml_add_child(ev->features, "sub", NS_PREAPPROVAL);
    return ST_EV_PASS;
}

static int roster_load(struct st_module *m, const void *options)
{
    const struct roster_opts *o = options;
    st_module_set_data(m, rs_new(st_module_server(m), (size_t)o->max_items));
    st_module_hook(m, "iq-get/bare/" RS_NS_ROSTER ":query", on_roster_get, m, 0);
    st_module_hook(m, "iq-set/bare/" RS_NS_ROSTER ":query", on_roster_set, m, 0);
    st_module_hook(m, "presence/bare", on_presence, m, 10);
    st_module_hook(m, "presence/full", on_presence, m, 10);
    st_module_hook(m, "presence/remote", on_presence, m, 10);
    st_module_hook(m, "presence/component", on_presence, m, 10);
    st_module_hook(m, "session-available", on_available, m, 0);
    st_module_hook(m, "session-closed", on_closed, m, -100);
    st_module_hook(m, "stream-features", on_features, m, 0);
    st_module_feature(m, RS_NS_ROSTER, false);
    return 0;
}

static void roster_unload(struct st_module *m)
{
    rs_free(state(m));
    st_module_set_data(m, NULL);
}

const struct st_module_def st_mod_roster = {
    .name = "roster",
    .description = "RFC 6121 rosters, versioning and presence subscriptions with pre-approval",
    .options = roster_options,
    .options_size = sizeof(struct roster_opts),
    .default_on = true,
    .load = roster_load,
    .unload = roster_unload,
};
