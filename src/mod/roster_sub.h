/* The presence subscription state machine of RFC 6121 Appendix A as a pure
 * function: from the current state of one roster relationship (the roster
 * item's to/from/ask/approved flags plus whether an inbound request is
 * pending) and one subscription stanza (subscribe, subscribed, unsubscribe,
 * unsubscribed) seen by the user's server either outbound (sent by the
 * user, RFC 6121 Appendix A.2) or inbound (addressed to the user, Appendix
 * A.3), compute the new state and what the server must do: route the
 * stanza on, deliver it, push the roster item, auto-reply, send presence.
 * Pre-approval (RFC 6121 §3.4) is part of the state. No I/O here, so the
 * tables can be unit-tested row by row (tests/unit/test_roster.c). */
#ifndef ST_MOD_ROSTER_SUB_H
#define ST_MOD_ROSTER_SUB_H

#include <stdbool.h>

/* One user's relationship with one contact. */
struct st_sub_state {
    bool exists;      /* there is a roster item for the contact */
    bool to;          /* the user receives the contact's presence */
    bool from;        /* the contact receives the user's presence */
    bool pending_out; /* the user asked to subscribe (ask='subscribe') */
    bool pending_in;  /* the contact asked to subscribe, unanswered (stored request) */
    bool approved;    /* the user pre-approved the contact (RFC 6121 §3.4) */
};

enum st_sub_event { ST_SUB_SUBSCRIBE, ST_SUB_SUBSCRIBED, ST_SUB_UNSUBSCRIBE, ST_SUB_UNSUBSCRIBED };
enum st_sub_dir {
    ST_SUB_OUT, /* the user sent it: the user's server acts as "sender's server" */
    ST_SUB_IN,  /* it is addressed to the user: the user's server acts as "recipient's server" */
};

/* Action bits returned by st_sub_apply. */
#define ST_SUB_ROUTE 0x01           /* OUT: route the stanza (from the user's bare JID) on */
#define ST_SUB_DELIVER 0x02         /* IN: deliver it to the user (subscribe: available
                                     * resources; the others: interested resources) */
#define ST_SUB_PUSH 0x04            /* push the (new or changed) roster item */
#define ST_SUB_WRITE 0x08           /* the roster item must be stored */
#define ST_SUB_REPLY_SUBSCRIBED 0x10 /* IN subscribe: answer 'subscribed' on the user's behalf */
#define ST_SUB_SEND_PRESENCE 0x20   /* send the user's current presence to the contact */
#define ST_SUB_SEND_UNAVAILABLE 0x40 /* send unavailable from the user's resources to the contact */
#define ST_SUB_STORE_PENDING 0x80   /* IN subscribe: store the request for redelivery */
#define ST_SUB_DROP_PENDING 0x100   /* the stored request is answered: delete it */

/* Applies event ev in direction dir to cur; writes the resulting state to *next (which may
 * alias cur) and returns the ST_SUB_* action bits. Pure; any thread. */
unsigned st_sub_apply(const struct st_sub_state *cur, enum st_sub_event ev, enum st_sub_dir dir,
                      struct st_sub_state *next);

/* The 'subscription' attribute value for a state: "none", "to", "from" or "both". */
const char *st_sub_name(const struct st_sub_state *s);

/* Parses a presence type into an event; returns false for non-subscription types. */
bool st_sub_event_parse(const char *type, enum st_sub_event *ev);

#endif
