/* Stanza routing (RFC 6120 §10, RFC 6121 §8.5). A stanza is classified by
 * its 'to' into host / bare / full / component / remote, the event "<kind>/<class>"
 * fires so modules can claim it, and otherwise the default rules of RFC
 * 6121 §8.5 apply: full-JID delivery (§8.5.3), bare-JID delivery of
 * normal/chat to the highest-priority non-negative available resource(s)
 * and of headline to all of them (§8.5.2.1.1; `delivery.bare_messages`
 * chooses all equal-highest resources or the most recently active one),
 * "message/offline" when none is available (§8.5.2.2, XEP-0160), the
 * server answering IQs on the account's behalf (§8.5.2.1.3, dispatched by
 * payload as "iq-<type>/<class>/<ns>:<name>"), and service-unavailable where
 * nothing can take a stanza. For a local account with no bound session the
 * account's existence is checked asynchronously (§8.5.1: no such user →
 * service-unavailable for normal/chat messages and IQ requests; online
 * delivery never waits). While a check for an account is in flight, every
 * later message and IQ for it waits in a FIFO behind it, so stanzas reach
 * an account in the order they were routed. */
#include "xmpp/router.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "starling/module.h"
#include "xml/parser.h"
#include "xmpp/server.h"
#include "xmpp/session.h"

enum kind { K_MESSAGE, K_PRESENCE, K_IQ };

static const char *kind_name[] = {"message", "presence", "iq"};

/* Concatenates the NULL-terminated list of strings into out (size n). Returns false when it
 * does not fit. Event names are built per stanza: this is cheaper than snprintf. */
static bool join_name(char *out, size_t n, ...)
{
    va_list ap;
    size_t len = 0;
    bool ok = true;
    va_start(ap, n);
    for (const char *p = va_arg(ap, const char *); p; p = va_arg(ap, const char *)) {
        size_t l = strlen(p);
        if (len + l >= n) {
            ok = false;
            break;
        }
        memcpy(out + len, p, l);
        len += l;
    }
    va_end(ap);
    out[ok ? len : 0] = '\0';
    return ok;
}

static int send_error(struct st_server *srv, const struct st_xml *stanza, const char *type,
                      const char *cond, const char *text)
{
    const char *t = st_xml_attr(stanza, "type");
    if (t && strcmp(t, "error") == 0)
        return 0; /* RFC 6120 §8.3.1: never answer an error with an error */
    if (strcmp(stanza->name, "iq") == 0 && t && strcmp(t, "result") == 0)
        return 0;
    if (!st_xml_attr(stanza, "from"))
        return 0;
    struct st_xml *err = st_stanza_error(stanza, type, cond, text);
    const char *efrom = st_xml_attr(err, "from");
    char *prepped = efrom ? st_jid_prep_string(efrom) : NULL;
    if (!prepped) {
        /* No 'to' means the sender's own account; an unparsable 'to' cannot be the error's
         * sender, so the sender's server answers instead. */
        struct st_jid f;
        if (st_jid_parse(st_xml_attr(stanza, "from"), &f) == 0) {
            st_xml_set_attr(err, "from", efrom ? f.domain : f.bare);
            st_jid_clear(&f);
        }
    }
    st_free(prepped);
    st_route(srv, NULL, err);
    st_xml_unref(err);
    return 0;
}

int st_reply_error(struct st_event *ev, const char *type, const char *condition, const char *text)
{
    send_error(ev->srv, ev->stanza, type, condition, text);
    return ST_EV_HANDLED;
}

int st_reply(struct st_event *ev, struct st_xml *reply)
{
    st_route(ev->srv, NULL, reply);
    st_xml_unref(reply);
    return ST_EV_HANDLED;
}

int st_send(struct st_server *srv, struct st_xml *stanza)
{
    return st_route(srv, NULL, stanza);
}

const char *st_message_type(const struct st_xml *message)
{
    const char *t = st_xml_attr(message, "type");
    /* RFC 6121 §5.2.2: absent or unknown types are "normal". */
    if (t && (strcmp(t, "chat") == 0 || strcmp(t, "groupchat") == 0 ||
              strcmp(t, "headline") == 0 || strcmp(t, "error") == 0))
        return t;
    return "normal";
}

static bool is_type(const struct st_xml *x, const char *type)
{
    return strcmp(st_message_type(x), type) == 0;
}

static bool is_normal_or_chat(const struct st_xml *x)
{
    return is_type(x, "normal") || is_type(x, "chat");
}

/* RFC 6121 §8.5.2.1.1: only available resources with non-negative priority are candidates
 * for bare-JID delivery. */
static bool candidate(const struct st_session *s)
{
    return s->available && s->priority >= 0 && !s->closing;
}

/* Delivers a message addressed to the bare JID per RFC 6121 §8.5.2.1.1 (headline: every
 * candidate; normal/chat: the highest-priority candidate(s) as delivery.bare_messages says).
 * Returns the number of sessions it was queued to. */
static int deliver_bare_message(struct st_server *srv, struct st_session *first,
                                struct st_xml *st)
{
    int best = -1, n = 0;
    for (struct st_session *s = first; s; s = s->next_resource)
        if (candidate(s) && s->priority > best)
            best = s->priority;
    if (best < 0)
        return 0;
    if (is_type(st, "headline")) {
        for (struct st_session *s = first; s; s = s->next_resource)
            if (candidate(s) && st_session_send(s, st) == 0)
                n++;
        return n;
    }
    if (srv->settings.delivery.bare_messages == ST_BARE_ONE_HIGHEST) {
        /* The most recently active of the equal-highest resources; on a tie the newest
         * binding (the list is newest first). */
        struct st_session *pick = NULL;
        for (struct st_session *s = first; s; s = s->next_resource)
            if (candidate(s) && s->priority == best &&
                (!pick || s->last_active_ms > pick->last_active_ms))
                pick = s;
        return pick && st_session_send(pick, st) == 0 ? 1 : 0;
    }
    for (struct st_session *s = first; s; s = s->next_resource)
        if (candidate(s) && s->priority == best && st_session_send(s, st) == 0)
            n++;
    return n;
}

static void fire_offline(struct st_server *srv, struct st_session *origin, struct st_xml *st,
                         const struct st_jid *from, const struct st_jid *to)
{
    struct st_event ev = {.srv = srv, .name = "message/offline", .origin = origin, .stanza = st,
                          .from = from, .to = to, .host = to->domain};
    if (st_events_fire(&srv->events, &ev) == ST_EV_HANDLED)
        return;
    /* RFC 6121 §8.5.2.2.1: no offline storage → service-unavailable. */
    send_error(srv, st, "cancel", "service-unavailable", NULL);
}

/* The default rules for a message to a local account (bare or full class) that is known to
 * exist. */
static void message_to_account(struct st_server *srv, struct st_session *origin,
                               struct st_xml *st, const struct st_jid *from,
                               const struct st_jid *to, bool full, struct st_session *first)
{
    if (full) {
        for (struct st_session *s = first; s; s = s->next_resource) {
            if (strcmp(s->jid.full, to->full) == 0) {
                st_session_send(s, st); /* RFC 6121 §8.5.3.1 */
                return;
            }
        }
        /* RFC 6121 §8.5.3.2.1: no such resource. normal/chat are treated as if addressed
         * to the bare JID; groupchat gets an error; headline and error are ignored. */
        if (is_type(st, "groupchat"))
            send_error(srv, st, "cancel", "service-unavailable", NULL);
        if (!is_normal_or_chat(st))
            return;
    }
    if (is_type(st, "error"))
        return; /* RFC 6121 §8.5.2.1.1, §8.5.2.2.1: silently ignored */
    if (is_type(st, "groupchat")) {
        send_error(srv, st, "cancel", "service-unavailable", NULL);
        return;
    }
    int n = deliver_bare_message(srv, first, st);
    /* A headline that reaches nobody is ignored (§8.5.2.2.1); normal/chat go to offline
     * handling, also when the only available resources have negative priority. */
    if (n == 0 && is_normal_or_chat(st))
        fire_offline(srv, origin, st, from, to);
}

static void dispatch_iq(struct st_server *srv, struct st_session *origin, struct st_xml *st,
                        const struct st_jid *from, const struct st_jid *to, const char *cls)
{
    const char *type = st_xml_attr(st, "type");
    struct st_xml *payload = st_xml_first_element(st);
    if (!payload) {
        send_error(srv, st, "modify", "bad-request", NULL);
        return;
    }
    char name[512];
    if (join_name(name, sizeof name, "iq-", type, "/", cls, "/", payload->ns, ":", payload->name,
                  NULL)) {
        struct st_event ev = {.srv = srv, .name = name, .origin = origin, .stanza = st,
                              .from = from, .to = to, .host = to->domain};
        if (st_events_fire(&srv->events, &ev) == ST_EV_HANDLED)
            return;
    }
    send_error(srv, st, "cancel", "service-unavailable", NULL);
}

static bool iq_request(const struct st_xml *st)
{
    const char *type = st_xml_attr(st, "type");
    return type && (strcmp(type, "get") == 0 || strcmp(type, "set") == 0);
}

/* The default rules for an IQ to a local account known to exist (or the server). */
static void iq_default(struct st_server *srv, struct st_session *origin, struct st_xml *st,
                       const struct st_jid *from, const struct st_jid *to, const char *cls)
{
    bool request = iq_request(st);
    if (strcmp(cls, "full") == 0) {
        struct st_session *s = st_session_find_full(srv, to);
        if (s)
            st_session_send(s, st);
        else if (request)
            send_error(srv, st, "cancel", "service-unavailable", NULL); /* §8.5.3.2.3 */
        return;
    }
    if (!request) {
        /* A result or error to the server or an account: it may answer an IQ we sent. */
        st_iq_pending_resolve(srv, st, from ? from->full : NULL);
        return;
    }
    dispatch_iq(srv, origin, st, from, to, cls); /* §8.5.2.1.3: on the account's behalf */
}

/* RFC 6121 §8.5.1: the account does not exist. */
static void to_no_such_user(struct st_server *srv, enum kind k, struct st_xml *st)
{
    if (k == K_IQ) {
        if (iq_request(st))
            send_error(srv, st, "cancel", "service-unavailable", NULL);
        return;
    }
    /* Messages: service-unavailable for normal/chat (and groupchat, which no account takes);
     * headline and error are dropped. */
    if (is_normal_or_chat(st) || is_type(st, "groupchat"))
        send_error(srv, st, "cancel", "service-unavailable", NULL);
}

/* sessions: the recipient account's bound sessions (st_session_first), looked up once by the
 * caller because per message the account table is the router's main cost; read only when
 * exists > 0. */
static void local_default(struct st_server *srv, struct st_session *origin, enum kind k,
                          struct st_xml *st, const struct st_jid *from, const struct st_jid *to,
                          const char *cls, int exists, struct st_session *sessions)
{
    if (exists == 0) {
        to_no_such_user(srv, k, st);
        return;
    }
    if (exists < 0) {
        /* The account store failed: nothing was delivered or stored; tell the sender to
         * retry rather than claiming the account does not exist. */
        if ((k == K_IQ && iq_request(st)) || (k == K_MESSAGE && is_normal_or_chat(st)))
            send_error(srv, st, "wait", "internal-server-error", NULL);
        return;
    }
    if (k == K_MESSAGE)
        message_to_account(srv, origin, st, from, to, strcmp(cls, "full") == 0,
                           sessions);
    else
        iq_default(srv, origin, st, from, to, cls);
}

/* ---- account existence checks (RFC 6121 §8.5.1) ----
 * Pending checks live in a map keyed by bare JID, kept in the server context
 * (srv->router_state), created with the first check and freed when the last one completes. */

struct held {
    struct held *next;
    struct st_xml *stanza; /* a reference */
    char *origin;          /* full JID of the origin session, or NULL */
    enum kind kind;
    char cls[8];
};

struct check {
    struct st_server *srv;
    char *bare;
    struct held *first, **tail;
    unsigned nheld;
    bool warned;
};

/* Stanzas waiting behind one account check. Storage answers in milliseconds; a sender that
 * piles up more than this meanwhile is flooding an address that may not exist. */
#define MAX_HELD_PER_CHECK 1000

struct router_state {
    struct st_map checks; /* bare JID -> struct check* */
};

static struct router_state *state(struct st_server *srv, bool create)
{
    if (srv->router_state || !create)
        return srv->router_state;
    struct router_state *rs = ST_NEW(struct router_state);
    st_map_init(&rs->checks);
    srv->router_state = rs;
    return rs;
}

static void state_release_if_idle(struct st_server *srv, struct router_state *rs)
{
    if (rs->checks.count)
        return;
    srv->router_state = NULL;
    st_map_free(&rs->checks);
    st_free(rs);
}

static void hold(struct check *c, struct st_session *origin, enum kind k, struct st_xml *st,
                 const char *cls)
{
    struct held *h = ST_NEW(struct held);
    h->stanza = st_xml_ref(st);
    h->origin = origin && origin->bound ? st_strdup(origin->jid.full) : NULL;
    h->kind = k;
    snprintf(h->cls, sizeof h->cls, "%s", cls);
    *c->tail = h;
    c->tail = &h->next;
    c->nheld++;
}

static void replay(struct st_server *srv, struct held *h, int exists)
{
    struct st_jid from = {0}, to = {0}, oj = {0};
    struct st_session *origin = NULL;
    if (h->origin && st_jid_parse(h->origin, &oj) == 0)
        origin = st_session_find_full(srv, &oj);
    /* Both addresses parsed when the stanza was first routed. */
    if (st_jid_parse(st_xml_attr(h->stanza, "from"), &from) == 0 &&
        st_jid_parse(st_xml_attr(h->stanza, "to"), &to) == 0)
        local_default(srv, origin, h->kind, h->stanza, &from, &to, h->cls, exists,
                      st_session_first(srv, to.domain, to.bare));
    st_jid_clear(&from);
    st_jid_clear(&to);
    st_jid_clear(&oj);
}

static void check_done(void *ud, int exists)
{
    struct check *c = ud;
    struct st_server *srv = c->srv;
    struct router_state *rs = state(srv, false);
    /* Unregister first: stanzas routed while replaying start fresh. */
    if (rs)
        st_map_del(&rs->checks, c->bare);
    if (exists < 0)
        st_log_warn("router", "account check for %s failed: %s", c->bare, st_strerror(exists));
    while (c->first) {
        struct held *h = c->first;
        c->first = h->next;
        replay(srv, h, exists);
        st_xml_unref(h->stanza);
        st_free(h->origin);
        st_free(h);
    }
    st_free(c->bare);
    st_free(c);
    if (rs)
        state_release_if_idle(srv, rs);
}

/* Decides whether a stanza to a local account must wait for (or join) an existence check.
 * sessions: the account's bound sessions. Returns true when it was taken (held); false to
 * apply the rules now. */
static bool maybe_check(struct st_server *srv, struct st_session *origin, enum kind k,
                        struct st_xml *st, const struct st_jid *from, const struct st_jid *to,
                        const char *cls, struct st_session *sessions)
{
    if (!st_xml_attr(st, "to"))
        return false; /* the account's own stanza (RFC 6120 §10.3) */
    struct router_state *rs = state(srv, false);
    struct check *c = rs ? st_map_get(&rs->checks, to->bare) : NULL;
    if (c) {
        if (c->nheld >= MAX_HELD_PER_CHECK) {
            if (!c->warned)
                st_log_warn("router", "%s: too many stanzas waiting for its account check; "
                                      "refusing more", to->bare);
            c->warned = true;
            send_error(srv, st, "wait", "resource-constraint", NULL);
            return true;
        }
        hold(c, origin, k, st, cls); /* keep the order behind the pending check */
        return true;
    }
    if (sessions)
        return false; /* a bound session proves the account exists */
    if (from->local && from->bare && strcmp(from->bare, to->bare) == 0)
        return false; /* the account's own stanza */
    /* Only stanzas whose treatment depends on existence need the check. */
    bool full = strcmp(cls, "full") == 0;
    if (k == K_MESSAGE && !is_normal_or_chat(st))
        return false;
    if (k == K_IQ && (full || !iq_request(st)))
        return false;
    rs = state(srv, true);
    c = ST_NEW(struct check);
    c->srv = srv;
    c->bare = st_strdup(to->bare);
    c->tail = &c->first;
    int rc = st_account_exists(srv, to->domain, to->local, check_done, c);
    if (rc) {
        st_log_warn("router", "cannot check account %s: %s", to->bare, st_strerror(rc));
        st_free(c->bare);
        st_free(c);
        state_release_if_idle(srv, rs);
        local_default(srv, origin, k, st, from, to, cls, rc, NULL);
        return true;
    }
    st_map_set(&rs->checks, c->bare, c);
    hold(c, origin, k, st, cls);
    return true;
}

static void default_message_host(struct st_server *srv, struct st_xml *st)
{
    /* To the server itself: nothing handles it. */
    if (is_normal_or_chat(st))
        send_error(srv, st, "cancel", "service-unavailable", NULL);
}

static void default_presence(struct st_server *srv, struct st_xml *st, const struct st_jid *to,
                             const char *cls)
{
    /* Presence semantics (subscriptions, probes; §8.5.1 silence for unknown users) belong to
     * the presence module: this only delivers what nobody claimed. */
    if (strcmp(cls, "full") == 0) {
        struct st_session *s = st_session_find_full(srv, to);
        if (s)
            st_session_send(s, st);
        return;
    }
    if (strcmp(cls, "bare") == 0) {
        for (struct st_session *s = st_session_first(srv, to->domain, to->bare); s;
             s = s->next_resource)
            if (s->available)
                st_session_send(s, st);
    }
}

int st_route(struct st_server *srv, struct st_session *origin, struct st_xml *st)
{
    enum kind k;
    if (strcmp(st->name, "message") == 0)
        k = K_MESSAGE;
    else if (strcmp(st->name, "presence") == 0)
        k = K_PRESENCE;
    else if (strcmp(st->name, "iq") == 0)
        k = K_IQ;
    else
        return ST_EINVAL;

    struct st_jid from = {0}, to = {0};
    const char *from_s = st_xml_attr(st, "from");
    /* The transport stamped the session's own full JID: reuse its prepared parts instead of
     * preparing them again for every stanza (sessions are freed only after routing). */
    bool from_borrowed = from_s && origin && origin->bound && origin->jid.full &&
                         strcmp(from_s, origin->jid.full) == 0;
    if (from_borrowed) {
        from = origin->jid;
    } else if (!from_s || st_jid_parse(from_s, &from) != 0) {
        st_log_warn("router", "dropping %s with missing or invalid from", st->name);
        return ST_EINVAL;
    }
    const char *to_s = st_xml_attr(st, "to");
    const char *cls;
    if (!to_s) {
        if (k == K_PRESENCE && origin) {
            struct st_event ev = {.srv = srv, .name = "presence/broadcast", .origin = origin,
                                  .stanza = st, .from = &from, .host = from.domain};
            if (st_events_fire(&srv->events, &ev) != ST_EV_HANDLED)
                st_session_set_presence(origin, st);
            if (!from_borrowed)
                st_jid_clear(&from);
            return 0;
        }
        /* RFC 6120 §10.3: no 'to' means the sender's own account. Make it explicit so that
         * replies built from this stanza carry a 'from'. */
        st_jid_make(from.local, from.domain, NULL, &to);
        if (to.bare)
            st_xml_set_attr(st, "to", to.bare);
    } else if (st_jid_parse(to_s, &to) != 0) {
        send_error(srv, st, "modify", "jid-malformed", NULL);
        if (!from_borrowed)
            st_jid_clear(&from);
        return 0;
    }

    if (st_settings_component(&srv->settings, to.domain)) {
        cls = "component"; /* XEP-0114: its domain and subdomains (transport/component.c) */
    } else if (!st_host_is_local(srv, to.domain)) {
        cls = "remote";
    } else if (!to.local) {
        cls = "host";
    } else if (to.resource) {
        cls = "full";
    } else {
        cls = "bare";
    }

    char name[64];
    join_name(name, sizeof name, kind_name[k], "/", cls, NULL);
    struct st_event ev = {.srv = srv, .name = name, .origin = origin, .stanza = st,
                          .from = &from, .to = &to, .host = to.domain};
    if (st_events_fire(&srv->events, &ev) != ST_EV_HANDLED) {
        bool account = strcmp(cls, "full") == 0 || strcmp(cls, "bare") == 0;
        if (strcmp(cls, "component") == 0) {
            if (k != K_PRESENCE)
                send_error(srv, st, "cancel", "service-unavailable", NULL);
        } else if (strcmp(cls, "remote") == 0) {
            if (k != K_PRESENCE)
                send_error(srv, st, "cancel", "remote-server-not-found", NULL);
        } else if (k == K_PRESENCE) {
            default_presence(srv, st, &to, cls);
        } else if (account) {
            struct st_session *sessions = st_session_first(srv, to.domain, to.bare);
            if (!maybe_check(srv, origin, k, st, &from, &to, cls, sessions))
                local_default(srv, origin, k, st, &from, &to, cls, 1, sessions);
        } else if (k == K_MESSAGE) {
            default_message_host(srv, st);
        } else {
            iq_default(srv, origin, st, &from, &to, cls);
        }
    }
    if (!from_borrowed)
        st_jid_clear(&from);
    st_jid_clear(&to);
    return 0;
}
