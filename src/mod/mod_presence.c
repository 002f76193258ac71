/* Presence (RFC 6121 §4): initial presence (§4.2) is broadcast to the
 * contacts with a 'from' or 'both' subscription and to the user's
 * available resources, and probes go to the contacts the user is
 * subscribed to; subsequent presence (§4.4) and unavailable presence
 * (§4.5) are broadcast the same way, also when the connection is lost
 * (the server sends unavailable on the resource's behalf, with the status
 * of its last presence). Inbound probes (§4.3.2) are answered from the
 * sessions: the last presence of every available resource, unavailable
 * when there is none, and 'unsubscribed' to anyone without a subscription
 * — an unknown account looks exactly like a non-contact. Directed presence
 * (§4.6) is tracked per resource and followed by unavailable when the
 * resource goes unavailable. Resources with negative priority (§4.7.2.1)
 * are available and receive presence; the core keeps bare-JID messages
 * from them. The roster comes from the roster module's cache
 * (roster_store.h). */
#include <string.h>

#include "mod/roster_store.h"
#include "starling/module.h"

struct pres {
    struct st_server *srv;
    struct rs *rs;          /* the roster module's state, or NULL when it is not loaded */
    struct st_map directed; /* full JID -> struct st_map * of directed-presence recipients */
};

static struct pres *P(void *ud)
{
    return st_module_data(ud);
}

static void directed_free_set(struct st_map *set)
{
    if (!set)
        return;
    st_map_free(set);
    st_free(set);
}

/* ---- broadcast (§4.2.2, §4.4.2, §4.5.2) ---- */

struct bc_op {
    struct st_xml *p; /* the presence to broadcast, from the full JID, no 'to' */
    bool initial;
    bool unavailable;
    char **directed;  /* unavailable: directed-presence recipients to notify */
    size_t ndirected;
};

static void bc_free(void *arg)
{
    struct bc_op *o = arg;
    st_xml_unref(o->p);
    for (size_t i = 0; i < o->ndirected; i++)
        st_free(o->directed[i]);
    st_free(o->directed);
    st_free(o);
}

static void send_to(struct st_server *srv, struct st_xml *p, const char *to)
{
    struct st_xml *c = st_xml_copy(p);
    st_xml_set_attr(c, "to", to);
    st_send(srv, c);
    st_xml_unref(c);
}

static void run_bc(struct rs_user *u, void *arg)
{
    struct bc_op *o = arg;
    struct st_server *srv = rs_server(u->rs);
    for (struct st_map_entry *e = st_map_first(&u->items); e && !u->failed;
         e = st_map_next(&u->items, e)) {
        struct rs_item *it = e->value;
        if (it->from)
            send_to(srv, o->p, it->jid);
        if (o->initial && it->to)
            rs_send_typed(srv, "probe", u->bare, it->jid);
    }
    for (size_t i = 0; i < o->ndirected; i++) {
        /* Subscribers already had the broadcast (§4.6.2: no duplicate). */
        struct st_jid d;
        if (st_jid_parse(o->directed[i], &d) != 0)
            continue;
        struct rs_item *it = u->failed ? NULL : rs_item_get(u, d.bare);
        if (!(it && it->from) && strcmp(d.bare, u->bare) != 0)
            send_to(srv, o->p, o->directed[i]);
        st_jid_clear(&d);
    }
    bc_free(o);
    rs_done(u);
}

/* Broadcasts p (from session s's full JID) after s's presence state was updated. */
static void broadcast(struct pres *ps, struct st_session *s, struct st_xml *p, bool initial,
                      bool unavailable)
{
    const struct st_jid *me = st_session_jid(s);
    struct st_xml *bp = st_xml_copy(p);
    st_xml_set_attr(bp, "to", NULL);
    st_xml_set_attr(bp, "from", me->full);

    /* The user's own resources: every available one, the sender included (§4.2.2, §4.4.2);
     * a new resource also learns about the others (as if it had probed its own account). */
    for (struct st_session *o = st_session_first(ps->srv, me->domain, me->bare); o;
         o = st_session_next(o)) {
        if (!st_session_available(o))
            continue;
        st_session_deliver(o, bp);
        if (initial && o != s && st_session_presence(o)) {
            struct st_xml *op = st_xml_copy(st_session_presence(o));
            st_xml_set_attr(op, "from", st_session_jid(o)->full);
            st_xml_set_attr(op, "to", me->full);
            st_session_deliver(s, op);
            st_xml_unref(op);
        }
    }

    struct bc_op *o = ST_NEW(struct bc_op);
    o->p = bp;
    o->initial = initial;
    o->unavailable = unavailable;
    if (unavailable) {
        struct st_map *set = st_map_del(&ps->directed, me->full);
        if (set) {
            o->directed = st_malloc((set->count + 1) * sizeof *o->directed);
            for (struct st_map_entry *e = st_map_first(set); e; e = st_map_next(set, e))
                o->directed[o->ndirected++] = st_strdup(e->key);
            directed_free_set(set);
        }
    }
    if (!ps->rs || rs_enqueue(ps->rs, me->domain, me->local, run_bc, bc_free, o) != 0) {
        for (size_t i = 0; i < o->ndirected; i++)
            send_to(ps->srv, bp, o->directed[i]);
        bc_free(o);
    }
}

static int on_broadcast(struct st_event *ev, void *ud)
{
    struct pres *ps = P(ud);
    struct st_session *s = ev->origin;
    const char *type = st_xml_attr(ev->stanza, "type");
    bool unavailable = type && strcmp(type, "unavailable") == 0;
    if (type && !unavailable)
        return ST_EV_HANDLED; /* subscription or probe without 'to', or an error: nothing to do */
    bool was = st_session_available(s);
    st_session_set_presence(s, ev->stanza);
    if (unavailable && !was) {
        /* Not available: only directed presence (§4.6.3) needs closing. */
        broadcast(ps, s, ev->stanza, false, true);
        return ST_EV_HANDLED;
    }
    broadcast(ps, s, ev->stanza, !was && !unavailable, unavailable);
    return ST_EV_HANDLED;
}

static int on_closed(struct st_event *ev, void *ud)
{
    struct pres *ps = P(ud);
    struct st_session *s = ev->origin;
    const struct st_jid *me = st_session_jid(s);
    bool was = st_session_available(s);
    if (!was && !st_map_get(&ps->directed, me->full))
        return ST_EV_PASS;
    /* §4.5.2: the server sends unavailable on behalf of a vanished resource, keeping the
     * status it last announced. */
    struct st_xml *p = st_xml_new("presence", ST_NS_CLIENT);
    st_xml_set_attr(p, "type", "unavailable");
    st_xml_set_attr(p, "from", me->full);
    struct st_xml *last = st_session_presence(s);
    struct st_xml *status = last ? st_xml_child(last, "status", NULL) : NULL;
    if (status) {
        char *t = st_xml_text(status);
        st_xml_add_text_child(p, "status", t);
        st_free(t);
    }
    if (was)
        st_session_set_presence(s, p);
    broadcast(ps, s, p, false, true);
    st_xml_unref(p);
    return ST_EV_PASS;
}

/* ---- directed presence and probes ---- */

struct probe_op {
    char *prober;      /* the probe's 'from' as given (the answer goes there) */
    char *prober_bare;
};

static void probe_free(void *arg)
{
    struct probe_op *o = arg;
    st_free(o->prober);
    st_free(o->prober_bare);
    st_free(o);
}

static void run_probe(struct rs_user *u, void *arg)
{
    struct probe_op *o = arg;
    struct st_server *srv = rs_server(u->rs);
    if (u->failed)
        goto out;
    /* §4.3.2: the user is u; the prober must have a subscription to u's presence. */
    struct rs_item *it = rs_item_get(u, o->prober_bare);
    bool self = strcmp(o->prober_bare, u->bare) == 0;
    if (!self && !(it && it->from)) {
        rs_send_typed(srv, "unsubscribed", u->bare, o->prober);
        goto out;
    }
    if (rs_send_presence(srv, u->host, u->bare, o->prober) == 0)
        rs_send_typed(srv, "unavailable", u->bare, o->prober);
out:
    probe_free(o);
    rs_done(u);
}

static void track(struct pres *ps, const char *from_full, const char *to, bool add)
{
    struct st_map *set = st_map_get(&ps->directed, from_full);
    if (add) {
        if (!set) {
            set = ST_NEW(struct st_map);
            st_map_init(set);
            st_map_set(&ps->directed, from_full, set);
        }
        if (set->count < 10000)
            st_map_set(set, to, (void *)1);
    } else if (set) {
        st_map_del(set, to);
        if (set->count == 0)
            directed_free_set(st_map_del(&ps->directed, from_full));
    }
}

static int on_presence(struct st_event *ev, void *ud)
{
    struct pres *ps = P(ud);
    const char *type = st_xml_attr(ev->stanza, "type");
    /* A component (XEP-0114) is another server as far as RFC 6121 is concerned. */
    bool remote = strcmp(ev->name, "presence/remote") == 0 ||
                  strcmp(ev->name, "presence/component") == 0;
    bool probe = type && strcmp(type, "probe") == 0;
    if (!ev->to || !ev->from)
        return ST_EV_PASS;
    if (ev->origin) {
        const struct st_jid *me = st_session_jid(ev->origin);
        if (probe) {
            /* §4.3: a client's probe is routed from its full JID; the contact's server
             * applies the subscription rules and answers that resource only. */
            struct st_xml *c = st_xml_copy(ev->stanza);
            st_xml_set_attr(c, "from", me->full);
            st_xml_set_attr(c, "to", ev->to->bare);
            st_send(ps->srv, c);
            st_xml_unref(c);
            return ST_EV_HANDLED;
        }
        /* §4.6.2: directed presence is remembered so unavailable follows it. */
        if (!type)
            track(ps, me->full, ev->to->full, true);
        else if (strcmp(type, "unavailable") == 0)
            track(ps, me->full, ev->to->full, false);
        return ST_EV_PASS;
    }
    if (!probe || remote || !ev->to->local)
        return ST_EV_PASS;
    if (!ps->rs)
        return ST_EV_HANDLED;
    struct probe_op *o = ST_NEW(struct probe_op);
    o->prober = st_strdup(ev->from->full);
    o->prober_bare = st_strdup(ev->from->bare);
    if (rs_enqueue(ps->rs, ev->to->domain, ev->to->local, run_probe, probe_free, o) != 0)
        probe_free(o);
    return ST_EV_HANDLED;
}

static int presence_load(struct st_module *m, const void *options)
{
    (void)options;
    struct pres *ps = ST_NEW(struct pres);
    ps->srv = st_module_server(m);
    struct st_module *roster = st_module_find(ps->srv, "roster");
    ps->rs = roster ? st_module_data(roster) : NULL;
    if (!ps->rs)
        st_log_warn("presence", "the roster module is not loaded: presence reaches own "
                                "resources and directed recipients only");
    st_map_init(&ps->directed);
    st_module_set_data(m, ps);
    st_module_hook(m, "presence/broadcast", on_broadcast, m, 0);
    st_module_hook(m, "presence/bare", on_presence, m, 0);
    st_module_hook(m, "presence/full", on_presence, m, 0);
    st_module_hook(m, "presence/remote", on_presence, m, 0);
    st_module_hook(m, "presence/component", on_presence, m, 0);
    st_module_hook(m, "session-closed", on_closed, m, 0);
    return 0;
}

static void presence_unload(struct st_module *m)
{
    struct pres *ps = st_module_data(m);
    for (struct st_map_entry *e = st_map_first(&ps->directed); e;
         e = st_map_next(&ps->directed, e))
        directed_free_set(e->value);
    st_map_free(&ps->directed);
    st_free(ps);
    st_module_set_data(m, NULL);
}

const struct st_module_def st_mod_presence = {
    .name = "presence",
    .description = "RFC 6121 presence: broadcast, probes, directed presence, unavailable on loss",
    .options = NULL,
    .default_on = true,
    .load = presence_load,
    .unload = presence_unload,
};
