/* RFC 6121 Appendix A subscription state machine (see roster_sub.h). The
 * nine states of Appendix A.1 are the combinations of to/from/pending_out/
 * pending_in; 'approved' adds pre-approval (RFC 6121 §3.4). Rows:
 * A.2.1 outbound subscribe, A.2.2 outbound subscribed, A.2.3 outbound
 * unsubscribe, A.2.4 outbound unsubscribed, A.3.1-A.3.4 the inbound ones. */
#include "mod/roster_sub.h"

#include <string.h>

static bool visible_equal(const struct st_sub_state *a, const struct st_sub_state *b)
{
    return a->exists == b->exists && a->to == b->to && a->from == b->from &&
           a->pending_out == b->pending_out && a->approved == b->approved;
}

static unsigned outbound(struct st_sub_state *s, enum st_sub_event ev)
{
    unsigned act = 0;
    switch (ev) {
    case ST_SUB_SUBSCRIBE:
        /* A.2.1 / §3.1.2: the request is always routed (the contact's server answers a
         * repeated request itself); ask is set unless the subscription already exists. */
        s->exists = true;
        if (!s->to)
            s->pending_out = true;
        act |= ST_SUB_ROUTE;
        break;
    case ST_SUB_SUBSCRIBED:
        if (s->from)
            break; /* A.2.2: From, From + Pending Out, Both: no change, not routed */
        if (s->pending_in) {
            /* A.2.2: None + Pending In -> From, None + Pending Out+In -> From + Pending Out,
             * To + Pending In -> Both; §3.1.5: route and send current presence. */
            s->exists = true;
            s->from = true;
            s->pending_in = false;
            s->approved = false;
            act |= ST_SUB_ROUTE | ST_SUB_SEND_PRESENCE;
        } else {
            /* §3.4.1: None, None + Pending Out, To: pre-approval, not routed. */
            s->exists = true;
            s->approved = true;
        }
        break;
    case ST_SUB_UNSUBSCRIBE:
        /* A.2.3 / §3.3.2: To -> None, To + Pending In -> None + Pending In,
         * None + Pending Out -> None, Both -> From, From + Pending Out -> From; the stanza is
         * routed in every state so a contact out of sync cleans up too. */
        s->to = false;
        s->pending_out = false;
        act |= ST_SUB_ROUTE;
        break;
    case ST_SUB_UNSUBSCRIBED:
        /* A.2.4 / §3.2.2: From -> None, Both -> To, From + Pending Out -> None + Pending Out;
         * a pending request is denied; a pre-approval is cancelled (§3.4.2, not routed). */
        if (s->from) {
            s->from = false;
            s->pending_in = false;
            act |= ST_SUB_ROUTE | ST_SUB_SEND_UNAVAILABLE;
        } else if (s->pending_in) {
            s->pending_in = false;
            act |= ST_SUB_ROUTE;
        }
        s->approved = false;
        break;
    }
    return act;
}

static unsigned inbound(struct st_sub_state *s, enum st_sub_event ev)
{
    unsigned act = 0;
    switch (ev) {
    case ST_SUB_SUBSCRIBE:
        if (s->from) {
            /* A.3.1 / §3.1.3: already subscribed: auto-reply on the user's behalf. */
            act |= ST_SUB_REPLY_SUBSCRIBED;
        } else if (s->approved) {
            /* §3.4: pre-approved: approve automatically, send presence. */
            s->from = true;
            s->approved = false;
            s->pending_in = false;
            act |= ST_SUB_REPLY_SUBSCRIBED | ST_SUB_SEND_PRESENCE;
        } else if (!s->pending_in) {
            /* A.3.1: None -> None + Pending In, None + Pending Out -> None + Pending Out+In,
             * To -> To + Pending In; delivered and kept until answered. */
            s->pending_in = true;
            act |= ST_SUB_DELIVER | ST_SUB_STORE_PENDING;
        }
        break;
    case ST_SUB_SUBSCRIBED:
        /* A.3.2 / §3.1.6: only an outstanding request can be approved. */
        if (s->pending_out && !s->to) {
            s->to = true;
            s->pending_out = false;
            act |= ST_SUB_DELIVER;
        }
        break;
    case ST_SUB_UNSUBSCRIBE:
        /* A.3.3 / §3.3.3: From -> None, Both -> To, From + Pending Out -> None + Pending Out,
         * None + Pending In -> None (the request is withdrawn). */
        if (s->from || s->pending_in) {
            if (s->from)
                act |= ST_SUB_SEND_UNAVAILABLE;
            s->from = false;
            s->pending_in = false;
            act |= ST_SUB_DELIVER;
        }
        break;
    case ST_SUB_UNSUBSCRIBED:
        /* A.3.4 / §3.2.3: To -> None, Both -> From, None + Pending Out -> None,
         * To + Pending In -> None + Pending In, ... */
        if (s->to || s->pending_out) {
            s->to = false;
            s->pending_out = false;
            act |= ST_SUB_DELIVER;
        }
        break;
    }
    return act;
}

unsigned st_sub_apply(const struct st_sub_state *cur, enum st_sub_event ev, enum st_sub_dir dir,
                      struct st_sub_state *next)
{
    struct st_sub_state before = *cur, s = *cur;
    if (!s.exists) {
        /* Without an item only a pending request can exist. */
        s.to = s.from = s.pending_out = s.approved = false;
        before = s;
    }
    unsigned act = dir == ST_SUB_OUT ? outbound(&s, ev) : inbound(&s, ev);
    if (s.exists && !visible_equal(&before, &s))
        act |= ST_SUB_PUSH | ST_SUB_WRITE;
    if (before.pending_in && !s.pending_in)
        act |= ST_SUB_DROP_PENDING;
    *next = s;
    return act;
}

const char *st_sub_name(const struct st_sub_state *s)
{
    if (s->to && s->from)
        return "both";
    if (s->to)
        return "to";
    if (s->from)
        return "from";
    return "none";
}

bool st_sub_event_parse(const char *type, enum st_sub_event *ev)
{
    if (!type)
        return false;
    if (strcmp(type, "subscribe") == 0)
        *ev = ST_SUB_SUBSCRIBE;
    else if (strcmp(type, "subscribed") == 0)
        *ev = ST_SUB_SUBSCRIBED;
    else if (strcmp(type, "unsubscribe") == 0)
        *ev = ST_SUB_UNSUBSCRIBE;
    else if (strcmp(type, "unsubscribed") == 0)
        *ev = ST_SUB_UNSUBSCRIBED;
    else
        return false;
    return true;
}
