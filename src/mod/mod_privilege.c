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
 * user. Roster pushes (§5, "get"/"both"): every roster push of a local
 * user also goes to the component, from the user's bare JID. Presence
 * permission (§7): with managed_entity the component receives the
 * available/unavailable presence of every local user's resources, as if it
 * had a subscription; with `roster` (which needs roster get/both, checked
 * at configuration load) it also receives the available/unavailable
 * presence that users receive from the contacts their roster subscribes to
 * (subscription to/both), whether or not the user is online, once per
 * change even when several users share the contact (§7 business rules).
 * Contacts that are local users are covered by managed_entity already.
 * Delegation (XEP-0355 §5, "admin" mode): IQ get/set to a virtual host
 * whose payload namespace is delegated, and (with `bare_delegations`) IQs
 * a user sends to their own bare JID in such a namespace, go to the
 * component wrapped in <delegation/><forwarded/>, and its wrapped reply
 * goes back to the requester from the address asked. The server's
 * disco#info lists urn:xmpp:delegation:2 and the features the component
 * gives for the node urn:xmpp:delegation:2::<namespace> (asked on connect,
 * XEP-0355 "disco nesting"); disco#info on that node answers with them. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "mod/roster_store.h"
#include "starling/module.h"

#define NS_PRIV "urn:xmpp:privilege:2"
#define NS_DELEG "urn:xmpp:delegation:2"
#define NS_FORWARD "urn:xmpp:forward:0"
#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define DELEG_TIMEOUT_MS 30000
#define PUSH_TIMEOUT_MS 30000
#define DISCO_TIMEOUT_MS 10000
#define MAX_CONTACT_MEMORY 50000

struct priv {
    struct st_server *srv;
    struct rs *rs;         /* the roster module's state, or NULL */
    struct st_map present; /* connected component domains with presence permission */
    struct st_map delegates; /* connected component domains with delegated namespaces */
    struct st_map rostered;  /* connected component domains with roster get/both */
    struct st_map contacts;  /* connected component domains with presence "roster" */
    struct st_map last_contact; /* contact full JID -> hash of the last presence forwarded */
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

/* ---- disco nesting (XEP-0355 "Discovering Support") ---- */

static bool in_list(const struct st_strlist *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i], s) == 0)
            return true;
    return false;
}

/* The connected component a namespace is delegated to (host-level delegation), or NULL. */
static const char *delegate_of(struct priv *ps, const char *ns, bool bare)
{
    for (struct st_map_entry *e = st_map_first(&ps->delegates); e;
         e = st_map_next(&ps->delegates, e)) {
        const struct st_component_settings *cs = st_component_find(ps->srv, e->key);
        const struct st_strlist *l = cs ? (bare ? &cs->bare_delegations : &cs->delegations)
                                        : NULL;
        if (l && in_list(l, ns))
            return cs->domain;
    }
    return NULL;
}

struct nested_ctx {
    struct priv *ps;
    char *domain;
    char *ns;
};

static void on_nested_info(struct st_server *srv, const struct st_xml *reply, void *ud)
{
    struct nested_ctx *n = ud;
    const struct st_xml *q = reply ? st_xml_child(reply, "query", NS_DISCO_INFO) : NULL;
    const char *t = reply ? st_xml_attr(reply, "type") : NULL;
    /* No reply: a timeout, or the server is shutting down (the module state may be gone).
     * The component may also have gone, or been replaced, while we waited. */
    if (q && t && strcmp(t, "result") == 0) {
        const char *owner = delegate_of(n->ps, n->ns, false);
        if (owner && strcmp(owner, n->domain) == 0)
            st_component_nested_set(srv, n->domain, n->ns, q);
    }
    st_free(n->domain);
    st_free(n->ns);
    st_free(n);
}

static void query_nested(struct priv *ps, const char *domain, const char *host, const char *ns)
{
    char node[512];
    if ((size_t)snprintf(node, sizeof node, "%s::%s", NS_DELEG, ns) >= sizeof node)
        return;
    struct st_xml *iq = st_xml_new("iq", ST_NS_CLIENT);
    st_xml_set_attr(iq, "type", "get");
    st_xml_set_attr(iq, "from", host);
    st_xml_set_attr(iq, "to", domain);
    st_xml_set_attr(st_xml_add_child(iq, "query", NS_DISCO_INFO), "node", node);
    struct nested_ctx *n = ST_NEW(struct nested_ctx);
    n->ps = ps;
    n->domain = st_strdup(domain);
    n->ns = st_strdup(ns);
    if (st_iq_send(ps->srv, iq, DISCO_TIMEOUT_MS, on_nested_info, n) != 0) {
        st_free(n->domain);
        st_free(n->ns);
        st_free(n);
    }
    st_xml_unref(iq);
}

static void add_feature_once(struct st_xml *q, const char *var)
{
    for (struct st_xml *f = st_xml_first_element(q); f; f = st_xml_next_element(f))
        if (strcmp(f->name, "feature") == 0 && st_xml_attr(f, "var") &&
            strcmp(st_xml_attr(f, "var"), var) == 0)
            return;
    st_xml_set_attr(st_xml_add_child(q, "feature", NULL), "var", var);
}

/* Copies the <feature/> children of src into dst (no duplicates). */
static void merge_features(struct st_xml *dst, const struct st_xml *src)
{
    for (const struct st_xml *f = st_xml_first_element(src); f; f = st_xml_next_element(f))
        if (strcmp(f->name, "feature") == 0 && st_xml_attr(f, "var"))
            add_feature_once(dst, st_xml_attr(f, "var"));
}

/* disco#info on a delegation node of the server: the delegated namespace and the features the
 * delegate gave for it (the plain server disco#info nests them through
 * st_disco_info_components, called by the disco module). */
static int on_host_info_node(struct st_event *ev, void *ud)
{
    struct priv *ps = P(ud);
    struct st_xml *q = st_xml_child(ev->stanza, "query", NS_DISCO_INFO);
    const char *node = q ? st_xml_attr(q, "node") : NULL;
    size_t pl = strlen(NS_DELEG "::");
    if (!node || strncmp(node, NS_DELEG "::", pl) != 0)
        return ST_EV_PASS;
    const char *ns = node + pl;
    if (!delegate_of(ps, ns, false))
        return st_reply_error(ev, "cancel", "item-not-found", NULL);
    struct st_xml *r = st_iq_result(ev->stanza);
    struct st_xml *rq = st_xml_add_child(r, "query", NS_DISCO_INFO);
    st_xml_set_attr(rq, "node", node);
    add_feature_once(rq, ns);
    const struct st_xml *cached = st_component_nested_get(ev->srv, ns);
    if (cached)
        merge_features(rq, cached);
    return st_reply(ev, r);
}

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
    if (cs->delegations.n || cs->bare_delegations.n) {
        st_map_set(&ps->delegates, cs->domain, (void *)1);
        struct st_xml *m = st_xml_new("message", ST_NS_CLIENT);
        st_xml_set_attr(m, "from", host);
        st_xml_set_attr(m, "to", cs->domain);
        struct st_xml *d = st_xml_add_child(m, "delegation", NS_DELEG);
        for (size_t i = 0; i < cs->delegations.n; i++) {
            struct st_xml *x = st_xml_add_child(d, "delegated", NULL);
            st_xml_set_attr(x, "namespace", cs->delegations.items[i]);
        }
        for (size_t i = 0; i < cs->bare_delegations.n; i++)
            if (!in_list(&cs->delegations, cs->bare_delegations.items[i])) {
                struct st_xml *x = st_xml_add_child(d, "delegated", NULL);
                st_xml_set_attr(x, "namespace", cs->bare_delegations.items[i]);
            }
        st_send(ev->srv, m);
        st_xml_unref(m);
        for (size_t i = 0; i < cs->delegations.n; i++)
            query_nested(ps, cs->domain, host, cs->delegations.items[i]);
    }
    if (pv->roster == ST_PRIV_ROSTER_GET || pv->roster == ST_PRIV_ROSTER_BOTH)
        st_map_set(&ps->rostered, cs->domain, (void *)1);
    if (pv->presence == ST_PRIV_PRESENCE_ROSTER)
        st_map_set(&ps->contacts, cs->domain, (void *)1);
    if (pv->presence) {
        st_map_set(&ps->present, cs->domain, (void *)1);
        /* §7: the component starts with the current presence of every user. */
        st_sessions_foreach(ev->srv, presence_cb, ev);
    }
    return ST_EV_PASS;
}

static int on_disconnected(struct st_event *ev, void *ud)
{
    struct priv *ps = P(ud);
    st_map_del(&ps->present, ev->host);
    st_map_del(&ps->rostered, ev->host);
    st_map_del(&ps->contacts, ev->host);
    st_map_del(&ps->delegates, ev->host); /* the registry drops its nested disco features */
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

/* ---- roster presence (§7 "roster" type) ---- */

struct contact_op {
    struct priv *ps;
    struct st_xml *pres; /* a reference */
    char *contact;       /* the sender's bare JID */
};

static void contact_op_free(void *arg)
{
    struct contact_op *o = arg;
    st_xml_unref(o->pres);
    st_free(o->contact);
    st_free(o);
}

/* FNV-1a over the serialized presence minus its 'to': equal presences, equal hashes. */
static uintptr_t presence_hash(const struct st_xml *pres)
{
    struct st_xml *c = st_xml_copy(pres);
    st_xml_set_attr(c, "to", NULL);
    st_xml_set_attr(c, "id", NULL);
    struct st_buf b;
    st_buf_init(&b, 65536);
    st_xml_serialize(c, ST_NS_CLIENT, &b);
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < b.len; i++)
        h = (h ^ (unsigned char)b.data[i]) * 1099511628211ULL;
    st_buf_free(&b);
    st_xml_unref(c);
    return (uintptr_t)(h | 1); /* never NULL as a map value */
}

static void clear_map(struct st_map *m)
{
    struct st_map_entry *e;
    while ((e = st_map_first(m)) != NULL)
        st_map_del(m, e->key);
}

static void run_contact(struct rs_user *u, void *arg)
{
    struct contact_op *o = arg;
    struct rs_item *it = u->failed ? NULL : rs_item_get(u, o->contact);
    const char *from = st_xml_attr(o->pres, "from");
    if (it && it->to && from) {
        /* §7 business rules: once per change although several users have the contact. */
        uintptr_t h = presence_hash(o->pres);
        if ((uintptr_t)st_map_get(&o->ps->last_contact, from) != h) {
            /* An unavailable presence hashes differently, so the next available goes out.
             * Bounded: forgetting only costs a duplicate, which the XEP tolerates. */
            if (o->ps->last_contact.count >= MAX_CONTACT_MEMORY)
                clear_map(&o->ps->last_contact);
            st_map_set(&o->ps->last_contact, from, (void *)h);
            for (struct st_map_entry *e = st_map_first(&o->ps->contacts); e;
                 e = st_map_next(&o->ps->contacts, e)) {
                struct st_xml *p = st_xml_copy(o->pres);
                st_xml_set_attr(p, "to", e->key);
                st_send(o->ps->srv, p);
                st_xml_unref(p);
            }
        }
    }
    contact_op_free(o);
    rs_done(u);
}

static int on_contact_presence(struct st_event *ev, void *ud)
{
    struct priv *ps = P(ud);
    if (!ps->contacts.count || !ps->rs || !ev->from || !ev->to || !ev->to->local)
        return ST_EV_PASS;
    const char *type = st_xml_attr(ev->stanza, "type");
    if (type && strcmp(type, "unavailable") != 0)
        return ST_EV_PASS;
    /* Local users' presence reaches the component as managed_entity already. */
    if (ev->from->local && st_host_is_local(ev->srv, ev->from->domain))
        return ST_EV_PASS;
    struct contact_op *o = ST_NEW(struct contact_op);
    o->ps = ps;
    o->pres = st_xml_ref(ev->stanza);
    o->contact = st_strdup(ev->from->bare ? ev->from->bare : ev->from->domain);
    if (rs_enqueue(ps->rs, ev->to->domain, ev->to->local, run_contact, contact_op_free, o) != 0)
        contact_op_free(o);
    return ST_EV_PASS;
}

/* ---- roster pushes to the component (§5) ---- */

static void on_push_reply(struct st_server *srv, const struct st_xml *reply, void *ud)
{
    (void)srv;
    (void)reply;
    (void)ud; /* §5: the component acknowledges; nothing depends on it */
}

static void on_roster_push(struct rs_user *u, const struct st_xml *query, void *ud)
{
    struct priv *ps = ud;
    for (struct st_map_entry *e = st_map_first(&ps->rostered); e;
         e = st_map_next(&ps->rostered, e)) {
        struct st_xml *iq = st_xml_new("iq", ST_NS_CLIENT);
        st_xml_set_attr(iq, "type", "set");
        st_xml_set_attr(iq, "from", u->bare);
        st_xml_set_attr(iq, "to", e->key);
        st_xml_append(iq, st_xml_copy(query));
        st_iq_send(ps->srv, iq, PUSH_TIMEOUT_MS, on_push_reply, NULL);
        st_xml_unref(iq);
    }
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

static int delegate(struct st_event *ev, const char *target, const char *from);

static int on_iq_host(struct st_event *ev, void *ud)
{
    struct priv *ps = P(ud);
    const char *type = st_xml_attr(ev->stanza, "type");
    if (!type || (strcmp(type, "get") != 0 && strcmp(type, "set") != 0))
        return ST_EV_PASS;
    struct st_xml *payload = st_xml_first_element(ev->stanza);
    if (!payload || !ev->to || !st_host_is_local(ev->srv, ev->to->domain))
        return ST_EV_PASS;
    const char *target = payload->ns ? delegate_of(ps, payload->ns, false) : NULL;
    if (!target || (ev->from && !ev->from->local && strcmp(ev->from->domain, target) == 0))
        return ST_EV_PASS; /* not delegated, or the delegate's own request */
    return delegate(ev, target, ev->to->domain);
}

/* Forwards ev's IQ to the delegate target wrapped in <delegation/><forwarded/> (XEP-0355 §5);
 * the reply goes back from the address the request was sent to. */
static int delegate(struct st_event *ev, const char *target, const char *from)
{
    struct st_xml *iq = st_xml_new("iq", ST_NS_CLIENT);
    st_xml_set_attr(iq, "type", "set");
    st_xml_set_attr(iq, "from", from);
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

/* XEP-0355: an IQ a user sends to their own bare JID in a namespace delegated for bare JIDs. */
static int on_iq_bare(struct st_event *ev, void *ud)
{
    struct priv *ps = P(ud);
    const char *type = st_xml_attr(ev->stanza, "type");
    if (!ps->delegates.count || !type || (strcmp(type, "get") != 0 && strcmp(type, "set") != 0))
        return ST_EV_PASS;
    struct st_xml *payload = st_xml_first_element(ev->stanza);
    if (!payload || !payload->ns || !ev->from || !ev->to || !ev->from->bare || !ev->to->bare ||
        strcmp(ev->from->bare, ev->to->bare) != 0 || !st_host_is_local(ev->srv, ev->to->domain))
        return ST_EV_PASS;
    const char *target = delegate_of(ps, payload->ns, true);
    if (!target)
        return ST_EV_PASS;
    return delegate(ev, target, ev->to->bare);
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
    st_map_init(&ps->rostered);
    st_map_init(&ps->contacts);
    st_map_init(&ps->last_contact);
    st_module_set_data(m, ps);
    if (ps->rs)
        rs_set_push_observer(ps->rs, on_roster_push, ps);
    st_module_feature(m, NS_DELEG, false);
    st_module_hook(m, "component-connected", on_connected, m, 0);
    st_module_hook(m, "component-disconnected", on_disconnected, m, 0);
    st_module_hook(m, "presence/broadcast", on_broadcast, m, 100);
    st_module_hook(m, "session-closed", on_closed, m, 100);
    st_module_hook(m, "iq-get/bare/" RS_NS_ROSTER ":query", on_roster, m, 50);
    st_module_hook(m, "iq-set/bare/" RS_NS_ROSTER ":query", on_roster, m, 50);
    st_module_hook(m, "message/host", on_message_host, m, 50);
    st_module_hook(m, "iq/host", on_iq_host, m, 50);
    st_module_hook(m, "iq/bare", on_iq_bare, m, 50);
    st_module_hook(m, "presence/bare", on_contact_presence, m, 100);
    st_module_hook(m, "presence/full", on_contact_presence, m, 100);
    st_module_hook(m, "iq-get/host/" NS_DISCO_INFO ":query", on_host_info_node, m, 50);
    return 0;
}

static void privilege_unload(struct st_module *m)
{
    struct priv *ps = st_module_data(m);
    st_map_free(&ps->present);
    st_map_free(&ps->delegates);
    st_map_free(&ps->rostered);
    st_map_free(&ps->contacts);
    st_map_free(&ps->last_contact);
    if (ps->rs)
        rs_set_push_observer(ps->rs, NULL, NULL);
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
