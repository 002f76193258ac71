/* XEP-0356 Privileged Entity (urn:xmpp:privilege:2) and XEP-0355 Namespace
 * Delegation (urn:xmpp:delegation:2) for external components, granted per
 * component in the configuration (`components.<domain>.privileges`,
 * `.delegations`). When a component connects the server announces what it
 * may do (XEP-0356 §4, XEP-0355 §4.1 "advertising"). Roster permission
 * (§5): the component gets and sets users' rosters with IQs addressed to
 * their bare JIDs, answered by the server on the user's behalf; a set may
 * give the item a subscription state (what a gateway needs to put legacy
 * contacts straight into rosters) and is pushed to the user's interested
 * resources (RFC 6121 §2.1.6). Message permission (§6): a <privilege/>
 * message to the server forwards (XEP-0297) a message sent as a local
 * user. Presence permission (§7): with managed_entity the component
 * receives the available/unavailable presence of every local user's
 * resources, as if it had a subscription; `roster` is accepted but treated
 * as managed_entity (contacts' presence is not forwarded). Delegation
 * (XEP-0355 §5, "admin" mode): IQ get/set to a virtual host whose payload
 * namespace is delegated go to the component wrapped in <delegation/>
 * <forwarded/>, and its wrapped reply goes back to the requester. */
#include <stdio.h>
#include <string.h>

#include "mod/roster_store.h"
#include "starling/module.h"

#define NS_PRIV "urn:xmpp:privilege:2"
#define NS_DELEG "urn:xmpp:delegation:2"
#define NS_FORWARD "urn:xmpp:forward:0"
#define DELEG_TIMEOUT_MS 30000

struct priv {
    struct st_server *srv;
    struct rs *rs;         /* the roster module's state, or NULL */
    struct st_map present; /* connected component domains with presence permission */
    struct st_map delegates; /* connected component domains with delegated namespaces */
};

static struct priv *P(void *ud)
{
    return st_module_data(ud);
}

/* The component a stanza comes from when its sender is exactly a component's domain. */
static const struct st_component_settings *from_component(struct st_event *ev)
{
    if (!ev->from || ev->from->local || ev->from->resource)
        return NULL;
    return st_component_find(ev->srv, ev->from->domain);
}

/* ---- advertising (XEP-0356 §4, XEP-0355 §4.1) ---- */

static void add_perm(struct st_xml *p, const char *access, const char *type)
{
    struct st_xml *perm = st_xml_add_child(p, "perm", NULL);
    st_xml_set_attr(perm, "access", access);
    st_xml_set_attr(perm, "type", type);
}

static const char *const roster_names[] = {"none", "get", "set", "both"};
static const char *const message_names[] = {"none", "outgoing"};
static const char *const presence_names[] = {"none", "managed_entity", "roster"};

static void presence_cb(struct st_session *s, void *ud)
{
    struct st_event *ev = ud;
    struct st_xml *last = st_session_presence(s);
    if (!st_session_available(s) || !last)
        return;
    struct st_xml *p = st_xml_copy(last);
    st_xml_set_attr(p, "from", st_session_jid(s)->full);
    st_xml_set_attr(p, "to", ev->host);
    st_send(ev->srv, p);
    st_xml_unref(p);
}

static int on_connected(struct st_event *ev, void *ud)
{
    struct priv *ps = P(ud);
    const struct st_component_settings *cs = st_component_find(ev->srv, ev->host);
    if (!cs)
        return ST_EV_PASS;
    const char *host = st_component_host(ev->srv, cs->domain);
    const struct st_component_privileges *pv = &cs->privileges;
    if (pv->roster || pv->message || pv->presence) {
        struct st_xml *m = st_xml_new("message", ST_NS_CLIENT);
        st_xml_set_attr(m, "from", host);
        st_xml_set_attr(m, "to", cs->domain);
        struct st_xml *p = st_xml_add_child(m, "privilege", NS_PRIV);
        if (pv->roster)
            add_perm(p, "roster", roster_names[pv->roster]);
        if (pv->message)
            add_perm(p, "message", message_names[pv->message]);
        if (pv->presence)
            add_perm(p, "presence", presence_names[pv->presence]);
        st_send(ev->srv, m);
        st_xml_unref(m);
    }
    if (cs->delegations.n) {
        st_map_set(&ps->delegates, cs->domain, (void *)1);
        struct st_xml *m = st_xml_new("message", ST_NS_CLIENT);
        st_xml_set_attr(m, "from", host);
        st_xml_set_attr(m, "to", cs->domain);
        struct st_xml *d = st_xml_add_child(m, "delegation", NS_DELEG);
        for (size_t i = 0; i < cs->delegations.n; i++) {
            struct st_xml *x = st_xml_add_child(d, "delegated", NULL);
            st_xml_set_attr(x, "namespace", cs->delegations.items[i]);
        }
        st_send(ev->srv, m);
        st_xml_unref(m);
    }
    if (pv->presence) {
        st_map_set(&ps->present, cs->domain, (void *)1);
        /* §7: the component starts with the current presence of every user. */
        st_sessions_foreach(ev->srv, presence_cb, ev);
    }
    return ST_EV_PASS;
}

static int on_disconnected(struct st_event *ev, void *ud)
{
    st_map_del(&P(ud)->present, ev->host);
    st_map_del(&P(ud)->delegates, ev->host);
    return ST_EV_PASS;
}

/* ---- presence (§7) ---- */

static void presence_to_components(struct priv *ps, struct st_session *s, struct st_xml *pres)
{
    for (struct st_map_entry *e = st_map_first(&ps->present); e;
         e = st_map_next(&ps->present, e)) {
        const struct st_component_settings *cs = st_component_find(ps->srv, e->key);
        if (!cs || !cs->privileges.presence)
            continue;
        struct st_xml *p = st_xml_copy(pres);
        st_xml_set_attr(p, "from", st_session_jid(s)->full);
        st_xml_set_attr(p, "to", e->key);
        st_send(ps->srv, p);
        st_xml_unref(p);
    }
}

static int on_broadcast(struct st_event *ev, void *ud)
{
    struct priv *ps = P(ud);
    const char *type = st_xml_attr(ev->stanza, "type");
    if (ps->present.count && ev->origin && (!type || strcmp(type, "unavailable") == 0))
        presence_to_components(ps, ev->origin, ev->stanza);
    return ST_EV_PASS;
}

static int on_closed(struct st_event *ev, void *ud)
{
    struct priv *ps = P(ud);
    if (!ps->present.count || !st_session_available(ev->origin))
        return ST_EV_PASS;
    struct st_xml *p = st_xml_new("presence", ST_NS_CLIENT);
    st_xml_set_attr(p, "type", "unavailable");
    presence_to_components(ps, ev->origin, p);
    st_xml_unref(p);
    return ST_EV_PASS;
}

/* ---- roster (§5) ---- */

struct roster_op {
    struct st_xml *iq; /* a reference */
    bool set;
};

static void roster_op_free(void *arg)
{
    struct roster_op *o = arg;
    st_xml_unref(o->iq);
    st_free(o);
}

static void reply_error(struct st_server *srv, struct st_xml *iq, const char *type,
                        const char *cond)
{
    struct st_xml *e = st_stanza_error(iq, type, cond, NULL);
    st_send(srv, e);
    st_xml_unref(e);
}

static void roster_written(struct rs_user *u, int rc, void *arg)
{
    struct roster_op *o = arg;
    struct st_server *srv = rs_server(u->rs);
    if (rc) {
        reply_error(srv, o->iq, "wait", "internal-server-error");
    } else {
        struct st_xml *r = st_iq_result(o->iq);
        st_send(srv, r);
        st_xml_unref(r);
        struct st_xml *q = st_xml_child(o->iq, "query", RS_NS_ROSTER);
        for (struct st_xml *it = st_xml_first_element(q); it; it = st_xml_next_element(it)) {
            char *jid = st_jid_prep_string(st_xml_attr(it, "jid"));
            if (jid)
                rs_push(u, jid);
            st_free(jid);
        }
    }
    roster_op_free(o);
    rs_done(u);
}

/* Applies one <item/> of a privileged set: name, groups and the subscription state the
 * component gives (none/to/from/both), or removal. Returns false for a bad item. */
static bool apply_item(struct rs_user *u, struct rs_batch *b, struct st_xml *item)
{
    char *jid = st_jid_prep_string(st_xml_attr(item, "jid"));
    if (!jid)
        return false;
    const char *sub = st_xml_attr(item, "subscription");
    if (sub && strcmp(sub, "remove") == 0) {
        rs_item_del(u, jid);
        rs_batch_item(b, jid);
        st_free(jid);
        return true;
    }
    if (!rs_item_get(u, jid) && u->items.count >= rs_max_items(u->rs)) {
        st_free(jid);
        return false;
    }
    struct rs_item *it = rs_item_put(u, jid);
    char *groups[32];
    size_t ng = 0;
    for (struct st_xml *g = st_xml_first_element(item); g && ng < 32; g = st_xml_next_element(g))
        if (st_xml_is(g, "group", RS_NS_ROSTER))
            groups[ng++] = st_xml_text(g);
    rs_item_set_meta(it, st_xml_attr(item, "name"), groups, ng);
    for (size_t i = 0; i < ng; i++)
        st_free(groups[i]);
    if (sub) {
        it->to = strcmp(sub, "to") == 0 || strcmp(sub, "both") == 0;
        it->from = strcmp(sub, "from") == 0 || strcmp(sub, "both") == 0;
    }
    rs_batch_item(b, jid);
    st_free(jid);
    return true;
}

static void run_roster(struct rs_user *u, void *arg)
{
    struct roster_op *o = arg;
    struct st_server *srv = rs_server(u->rs);
    if (u->failed) {
        reply_error(srv, o->iq, "wait", "internal-server-error");
        roster_op_free(o);
        rs_done(u);
        return;
    }
    if (!o->set) {
        struct st_xml *r = st_iq_result(o->iq);
        struct st_xml *rq = st_xml_add_child(r, "query", RS_NS_ROSTER);
        for (struct st_map_entry *e = st_map_first(&u->items); e; e = st_map_next(&u->items, e))
            rs_item_xml(rq, e->value, NULL);
        st_send(srv, r);
        st_xml_unref(r);
        roster_op_free(o);
        rs_done(u);
        return;
    }
    struct rs_batch *b = rs_batch_new(u, roster_written, o);
    struct st_xml *q = st_xml_child(o->iq, "query", RS_NS_ROSTER);
    for (struct st_xml *it = st_xml_first_element(q); it; it = st_xml_next_element(it))
        if (st_xml_is(it, "item", RS_NS_ROSTER) && !apply_item(u, b, it))
            st_log_info("privilege", "ignoring an invalid roster item from %s",
                        st_xml_attr(o->iq, "from"));
    rs_batch_ver(b);
    rs_batch_commit(b);
}

static int on_roster(struct st_event *ev, void *ud)
{
    struct priv *ps = P(ud);
    const struct st_component_settings *cs = from_component(ev);
    if (!cs)
        return ST_EV_PASS; /* the user's own request: the roster module answers */
    bool set = strcmp(st_xml_attr(ev->stanza, "type"), "set") == 0;
    int need = set ? ST_PRIV_ROSTER_SET : ST_PRIV_ROSTER_GET;
    int have = cs->privileges.roster;
    if (!ps->rs || !ev->to->local || !st_host_is_local(ev->srv, ev->to->domain) ||
        !(have == need || have == ST_PRIV_ROSTER_BOTH))
        return st_reply_error(ev, "auth", "forbidden", NULL);
    struct roster_op *o = ST_NEW(struct roster_op);
    o->iq = st_xml_ref(ev->stanza);
    o->set = set;
    if (rs_enqueue(ps->rs, ev->to->domain, ev->to->local, run_roster, roster_op_free, o) != 0) {
        roster_op_free(o);
        return st_reply_error(ev, "wait", "internal-server-error", NULL);
    }
    return ST_EV_HANDLED;
}

/* ---- messages on behalf of users (§6) ---- */

static int on_message_host(struct st_event *ev, void *ud)
{
    (void)ud;
    struct st_xml *priv = st_xml_child(ev->stanza, "privilege", NS_PRIV);
    if (!priv)
        return ST_EV_PASS;
    const struct st_component_settings *cs = from_component(ev);
    if (!cs || cs->privileges.message != ST_PRIV_MESSAGE_OUTGOING)
        return st_reply_error(ev, "auth", "forbidden", NULL);
    struct st_xml *fwd = st_xml_child(priv, "forwarded", NS_FORWARD);
    struct st_xml *inner = fwd ? st_xml_child(fwd, "message", ST_NS_CLIENT) : NULL;
    struct st_jid from;
    if (!inner || !st_xml_attr(inner, "from") || st_jid_parse(st_xml_attr(inner, "from"), &from))
        return st_reply_error(ev, "modify", "bad-request", "no forwarded message with a 'from'");
    /* §6: only the server's own users can be impersonated, never other domains. */
    bool local = from.local && st_host_is_local(ev->srv, from.domain);
    st_jid_clear(&from);
    if (!local)
        return st_reply_error(ev, "auth", "forbidden", "'from' must be a local user");
    struct st_xml *m = st_xml_copy(inner);
    st_send(ev->srv, m);
    st_xml_unref(m);
    return ST_EV_HANDLED;
}

/* ---- namespace delegation (XEP-0355 §5) ---- */

struct deleg_ctx {
    struct st_xml *iq; /* the original request (a reference) */
};

static void on_delegated_reply(struct st_server *srv, const struct st_xml *reply, void *ud)
{
    struct deleg_ctx *d = ud;
    const struct st_xml *d1 = reply ? st_xml_child(reply, "delegation", NS_DELEG) : NULL;
    const struct st_xml *f = d1 ? st_xml_child(d1, "forwarded", NS_FORWARD) : NULL;
    const struct st_xml *inner = f ? st_xml_child(f, "iq", ST_NS_CLIENT) : NULL;
    const char *t = inner ? st_xml_attr(inner, "type") : NULL;
    if (t && (strcmp(t, "result") == 0 || strcmp(t, "error") == 0)) {
        /* The answer comes from the host the request was addressed to. */
        struct st_xml *r = st_xml_copy(inner);
        st_xml_set_attr(r, "from", st_xml_attr(d->iq, "to"));
        st_xml_set_attr(r, "to", st_xml_attr(d->iq, "from"));
        st_xml_set_attr(r, "id", st_xml_attr(d->iq, "id"));
        st_send(srv, r);
        st_xml_unref(r);
    } else {
        reply_error(srv, d->iq, "cancel", "service-unavailable");
    }
    st_xml_unref(d->iq);
    st_free(d);
}

static int on_iq_host(struct st_event *ev, void *ud)
{
    struct priv *ps = P(ud);
    const char *type = st_xml_attr(ev->stanza, "type");
    if (!type || (strcmp(type, "get") != 0 && strcmp(type, "set") != 0))
        return ST_EV_PASS;
    struct st_xml *payload = st_xml_first_element(ev->stanza);
    if (!payload || !ev->to || !st_host_is_local(ev->srv, ev->to->domain))
        return ST_EV_PASS;
    const char *target = NULL;
    for (struct st_map_entry *e = st_map_first(&ps->delegates); e && !target;
         e = st_map_next(&ps->delegates, e)) {
        const struct st_component_settings *cs = st_component_find(ev->srv, e->key);
        for (size_t i = 0; cs && i < cs->delegations.n && !target; i++)
            if (strcmp(cs->delegations.items[i], payload->ns) == 0)
                target = cs->domain;
    }
    if (!target || (ev->from && !ev->from->local && strcmp(ev->from->domain, target) == 0))
        return ST_EV_PASS; /* not delegated, or the delegate's own request */
    struct st_xml *iq = st_xml_new("iq", ST_NS_CLIENT);
    st_xml_set_attr(iq, "type", "set");
    st_xml_set_attr(iq, "from", ev->to->domain);
    st_xml_set_attr(iq, "to", target);
    struct st_xml *f = st_xml_add_child(st_xml_add_child(iq, "delegation", NS_DELEG),
                                        "forwarded", NS_FORWARD);
    st_xml_append(f, st_xml_copy(ev->stanza));
    struct deleg_ctx *d = ST_NEW(struct deleg_ctx);
    d->iq = st_xml_ref(ev->stanza);
    if (st_iq_send(ev->srv, iq, DELEG_TIMEOUT_MS, on_delegated_reply, d) != 0) {
        st_xml_unref(d->iq);
        st_free(d);
        st_xml_unref(iq);
        return st_reply_error(ev, "wait", "internal-server-error", NULL);
    }
    st_xml_unref(iq);
    return ST_EV_HANDLED;
}

static int privilege_load(struct st_module *m, const void *options)
{
    (void)options;
    struct priv *ps = ST_NEW(struct priv);
    ps->srv = st_module_server(m);
    struct st_module *roster = st_module_find(ps->srv, "roster");
    ps->rs = roster ? st_module_data(roster) : NULL;
    st_map_init(&ps->present);
    st_map_init(&ps->delegates);
    st_module_set_data(m, ps);
    st_module_hook(m, "component-connected", on_connected, m, 0);
    st_module_hook(m, "component-disconnected", on_disconnected, m, 0);
    st_module_hook(m, "presence/broadcast", on_broadcast, m, 100);
    st_module_hook(m, "session-closed", on_closed, m, 100);
    st_module_hook(m, "iq-get/bare/" RS_NS_ROSTER ":query", on_roster, m, 50);
    st_module_hook(m, "iq-set/bare/" RS_NS_ROSTER ":query", on_roster, m, 50);
    st_module_hook(m, "message/host", on_message_host, m, 50);
    st_module_hook(m, "iq/host", on_iq_host, m, 50);
    return 0;
}

static void privilege_unload(struct st_module *m)
{
    struct priv *ps = st_module_data(m);
    st_map_free(&ps->present);
    st_map_free(&ps->delegates);
    st_free(ps);
}

const struct st_module_def st_mod_privilege = {
    .name = "privilege",
    .description = "XEP-0356 Privileged Entity and XEP-0355 Namespace Delegation for external "
                   "components (granted under components.<domain>)",
    .default_on = true,
    .load = privilege_load,
    .unload = privilege_unload,
};
