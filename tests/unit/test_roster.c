/* Unit tests for the RFC 6121 Appendix A subscription state machine
 * (src/mod/roster_sub.c): every row of the eight tables — outbound
 * subscribe/subscribed/unsubscribe/unsubscribed (A.2.1-A.2.4) and inbound
 * ones (A.3.1-A.3.4) over the nine states of A.1 — is one cmocka test
 * checking the new state and the actions (route, deliver, push, auto-reply,
 * presence), plus pre-approval (§3.4) and item-less rows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "mod/roster_sub.h"

/* States of RFC 6121 Appendix A.1 as flag strings: t f o(ut) i(n) a(pproved). */
struct row {
    const char *name;
    enum st_sub_dir dir;
    enum st_sub_event ev;
    const char *from_state;
    const char *to_state;
    unsigned must;    /* actions that must be present */
    unsigned mustnot; /* actions that must be absent */
};

static struct st_sub_state mk(const char *f)
{
    struct st_sub_state s = {.exists = true};
    if (strcmp(f, "-") == 0)
        return (struct st_sub_state){0};
    s.to = strchr(f, 't') != NULL;
    s.from = strchr(f, 'f') != NULL;
    s.pending_out = strchr(f, 'o') != NULL;
    s.pending_in = strchr(f, 'i') != NULL;
    s.approved = strchr(f, 'a') != NULL;
    return s;
}

#define R ST_SUB_ROUTE
#define D ST_SUB_DELIVER
#define PU ST_SUB_PUSH
#define RS ST_SUB_REPLY_SUBSCRIBED
#define SP ST_SUB_SEND_PRESENCE
#define SU ST_SUB_SEND_UNAVAILABLE
#define STP ST_SUB_STORE_PENDING
#define DP ST_SUB_DROP_PENDING

/* "n" = None (flags ""), states written with their flags; "=" means unchanged. */
static const struct row rows[] = {
    /* A.2.1 outbound subscribe: always routed */
    {"A.2.1 None", ST_SUB_OUT, ST_SUB_SUBSCRIBE, "", "o", R | PU, 0},
    {"A.2.1 None+PendingOut", ST_SUB_OUT, ST_SUB_SUBSCRIBE, "o", "o", R, PU},
    {"A.2.1 None+PendingIn", ST_SUB_OUT, ST_SUB_SUBSCRIBE, "i", "oi", R | PU, 0},
    {"A.2.1 None+PendingOut+In", ST_SUB_OUT, ST_SUB_SUBSCRIBE, "oi", "oi", R, PU},
    {"A.2.1 To", ST_SUB_OUT, ST_SUB_SUBSCRIBE, "t", "t", R, PU},
    {"A.2.1 To+PendingIn", ST_SUB_OUT, ST_SUB_SUBSCRIBE, "ti", "ti", R, PU},
    {"A.2.1 From", ST_SUB_OUT, ST_SUB_SUBSCRIBE, "f", "fo", R | PU, 0},
    {"A.2.1 From+PendingOut", ST_SUB_OUT, ST_SUB_SUBSCRIBE, "fo", "fo", R, PU},
    {"A.2.1 Both", ST_SUB_OUT, ST_SUB_SUBSCRIBE, "tf", "tf", R, PU},
    {"A.2.1 no item", ST_SUB_OUT, ST_SUB_SUBSCRIBE, "-", "o", R | PU, 0},
    /* A.2.2 outbound subscribed (pre-approval where nothing is pending, §3.4) */
    {"A.2.2 None (pre-approve)", ST_SUB_OUT, ST_SUB_SUBSCRIBED, "", "a", PU, R},
    {"A.2.2 None+PendingOut (pre-approve)", ST_SUB_OUT, ST_SUB_SUBSCRIBED, "o", "oa", PU, R},
    {"A.2.2 None+PendingIn", ST_SUB_OUT, ST_SUB_SUBSCRIBED, "i", "f", R | PU | SP | DP, 0},
    {"A.2.2 None+PendingOut+In", ST_SUB_OUT, ST_SUB_SUBSCRIBED, "oi", "fo", R | PU | SP | DP, 0},
    {"A.2.2 To (pre-approve)", ST_SUB_OUT, ST_SUB_SUBSCRIBED, "t", "ta", PU, R},
    {"A.2.2 To+PendingIn", ST_SUB_OUT, ST_SUB_SUBSCRIBED, "ti", "tf", R | PU | SP | DP, 0},
    {"A.2.2 From", ST_SUB_OUT, ST_SUB_SUBSCRIBED, "f", "f", 0, R | PU},
    {"A.2.2 From+PendingOut", ST_SUB_OUT, ST_SUB_SUBSCRIBED, "fo", "fo", 0, R | PU},
    {"A.2.2 Both", ST_SUB_OUT, ST_SUB_SUBSCRIBED, "tf", "tf", 0, R | PU},
    {"A.2.2 no item, pending", ST_SUB_OUT, ST_SUB_SUBSCRIBED, "-i", "f", R | PU | SP | DP, 0},
    {"A.2.2 no item (pre-approve)", ST_SUB_OUT, ST_SUB_SUBSCRIBED, "-", "a", PU, R},
    /* A.2.3 outbound unsubscribe: always routed */
    {"A.2.3 None", ST_SUB_OUT, ST_SUB_UNSUBSCRIBE, "", "", R, PU},
    {"A.2.3 None+PendingOut", ST_SUB_OUT, ST_SUB_UNSUBSCRIBE, "o", "", R | PU, 0},
    {"A.2.3 None+PendingIn", ST_SUB_OUT, ST_SUB_UNSUBSCRIBE, "i", "i", R, PU},
    {"A.2.3 None+PendingOut+In", ST_SUB_OUT, ST_SUB_UNSUBSCRIBE, "oi", "i", R | PU, 0},
    {"A.2.3 To", ST_SUB_OUT, ST_SUB_UNSUBSCRIBE, "t", "", R | PU, 0},
    {"A.2.3 To+PendingIn", ST_SUB_OUT, ST_SUB_UNSUBSCRIBE, "ti", "i", R | PU, 0},
    {"A.2.3 From", ST_SUB_OUT, ST_SUB_UNSUBSCRIBE, "f", "f", R, PU},
    {"A.2.3 From+PendingOut", ST_SUB_OUT, ST_SUB_UNSUBSCRIBE, "fo", "f", R | PU, 0},
    {"A.2.3 Both", ST_SUB_OUT, ST_SUB_UNSUBSCRIBE, "tf", "f", R | PU, 0},
    /* A.2.4 outbound unsubscribed */
    {"A.2.4 None", ST_SUB_OUT, ST_SUB_UNSUBSCRIBED, "", "", 0, R | PU},
    {"A.2.4 None+PendingOut", ST_SUB_OUT, ST_SUB_UNSUBSCRIBED, "o", "o", 0, R | PU},
    {"A.2.4 None+PendingIn", ST_SUB_OUT, ST_SUB_UNSUBSCRIBED, "i", "", R | DP, PU | SU},
    {"A.2.4 None+PendingOut+In", ST_SUB_OUT, ST_SUB_UNSUBSCRIBED, "oi", "o", R | DP, PU},
    {"A.2.4 To", ST_SUB_OUT, ST_SUB_UNSUBSCRIBED, "t", "t", 0, R | PU},
    {"A.2.4 To+PendingIn", ST_SUB_OUT, ST_SUB_UNSUBSCRIBED, "ti", "t", R | DP, PU},
    {"A.2.4 From", ST_SUB_OUT, ST_SUB_UNSUBSCRIBED, "f", "", R | PU | SU, 0},
    {"A.2.4 From+PendingOut", ST_SUB_OUT, ST_SUB_UNSUBSCRIBED, "fo", "o", R | PU | SU, 0},
    {"A.2.4 Both", ST_SUB_OUT, ST_SUB_UNSUBSCRIBED, "tf", "t", R | PU | SU, 0},
    {"A.2.4 cancel pre-approval", ST_SUB_OUT, ST_SUB_UNSUBSCRIBED, "a", "", PU, R},
    /* A.3.1 inbound subscribe */
    {"A.3.1 None", ST_SUB_IN, ST_SUB_SUBSCRIBE, "", "i", D | STP, PU | RS},
    {"A.3.1 None+PendingOut", ST_SUB_IN, ST_SUB_SUBSCRIBE, "o", "oi", D | STP, PU | RS},
    {"A.3.1 None+PendingIn", ST_SUB_IN, ST_SUB_SUBSCRIBE, "i", "i", 0, D | STP | RS},
    {"A.3.1 None+PendingOut+In", ST_SUB_IN, ST_SUB_SUBSCRIBE, "oi", "oi", 0, D | STP | RS},
    {"A.3.1 To", ST_SUB_IN, ST_SUB_SUBSCRIBE, "t", "ti", D | STP, PU | RS},
    {"A.3.1 To+PendingIn", ST_SUB_IN, ST_SUB_SUBSCRIBE, "ti", "ti", 0, D | STP},
    {"A.3.1 From", ST_SUB_IN, ST_SUB_SUBSCRIBE, "f", "f", RS, D | PU},
    {"A.3.1 From+PendingOut", ST_SUB_IN, ST_SUB_SUBSCRIBE, "fo", "fo", RS, D | PU},
    {"A.3.1 Both", ST_SUB_IN, ST_SUB_SUBSCRIBE, "tf", "tf", RS, D | PU},
    {"A.3.1 no item", ST_SUB_IN, ST_SUB_SUBSCRIBE, "-", "-i", D | STP, PU},
    {"A.3.1 pre-approved None", ST_SUB_IN, ST_SUB_SUBSCRIBE, "a", "f", RS | SP | PU, D | STP},
    {"A.3.1 pre-approved To", ST_SUB_IN, ST_SUB_SUBSCRIBE, "ta", "tf", RS | SP | PU, D},
    {"A.3.1 pre-approved PendingOut", ST_SUB_IN, ST_SUB_SUBSCRIBE, "oa", "fo", RS | SP | PU, D},
    /* A.3.2 inbound subscribed */
    {"A.3.2 None", ST_SUB_IN, ST_SUB_SUBSCRIBED, "", "", 0, D | PU},
    {"A.3.2 None+PendingOut", ST_SUB_IN, ST_SUB_SUBSCRIBED, "o", "t", D | PU, 0},
    {"A.3.2 None+PendingIn", ST_SUB_IN, ST_SUB_SUBSCRIBED, "i", "i", 0, D | PU},
    {"A.3.2 None+PendingOut+In", ST_SUB_IN, ST_SUB_SUBSCRIBED, "oi", "ti", D | PU, 0},
    {"A.3.2 To", ST_SUB_IN, ST_SUB_SUBSCRIBED, "t", "t", 0, D | PU},
    {"A.3.2 To+PendingIn", ST_SUB_IN, ST_SUB_SUBSCRIBED, "ti", "ti", 0, D | PU},
    {"A.3.2 From", ST_SUB_IN, ST_SUB_SUBSCRIBED, "f", "f", 0, D | PU},
    {"A.3.2 From+PendingOut", ST_SUB_IN, ST_SUB_SUBSCRIBED, "fo", "tf", D | PU, 0},
    {"A.3.2 Both", ST_SUB_IN, ST_SUB_SUBSCRIBED, "tf", "tf", 0, D | PU},
    {"A.3.2 no item", ST_SUB_IN, ST_SUB_SUBSCRIBED, "-", "-", 0, D | PU},
    /* A.3.3 inbound unsubscribe */
    {"A.3.3 None", ST_SUB_IN, ST_SUB_UNSUBSCRIBE, "", "", 0, D | PU},
    {"A.3.3 None+PendingOut", ST_SUB_IN, ST_SUB_UNSUBSCRIBE, "o", "o", 0, D | PU},
    {"A.3.3 None+PendingIn", ST_SUB_IN, ST_SUB_UNSUBSCRIBE, "i", "", D | DP, PU | SU},
    {"A.3.3 None+PendingOut+In", ST_SUB_IN, ST_SUB_UNSUBSCRIBE, "oi", "o", D | DP, PU},
    {"A.3.3 To", ST_SUB_IN, ST_SUB_UNSUBSCRIBE, "t", "t", 0, D | PU},
    {"A.3.3 To+PendingIn", ST_SUB_IN, ST_SUB_UNSUBSCRIBE, "ti", "t", D | DP, PU},
    {"A.3.3 From", ST_SUB_IN, ST_SUB_UNSUBSCRIBE, "f", "", D | PU | SU, 0},
    {"A.3.3 From+PendingOut", ST_SUB_IN, ST_SUB_UNSUBSCRIBE, "fo", "o", D | PU | SU, 0},
    {"A.3.3 Both", ST_SUB_IN, ST_SUB_UNSUBSCRIBE, "tf", "t", D | PU | SU, 0},
    /* A.3.4 inbound unsubscribed */
    {"A.3.4 None", ST_SUB_IN, ST_SUB_UNSUBSCRIBED, "", "", 0, D | PU},
    {"A.3.4 None+PendingOut", ST_SUB_IN, ST_SUB_UNSUBSCRIBED, "o", "", D | PU, 0},
    {"A.3.4 None+PendingIn", ST_SUB_IN, ST_SUB_UNSUBSCRIBED, "i", "i", 0, D | PU},
    {"A.3.4 None+PendingOut+In", ST_SUB_IN, ST_SUB_UNSUBSCRIBED, "oi", "i", D | PU, 0},
    {"A.3.4 To", ST_SUB_IN, ST_SUB_UNSUBSCRIBED, "t", "", D | PU, 0},
    {"A.3.4 To+PendingIn", ST_SUB_IN, ST_SUB_UNSUBSCRIBED, "ti", "i", D | PU, 0},
    {"A.3.4 From", ST_SUB_IN, ST_SUB_UNSUBSCRIBED, "f", "f", 0, D | PU},
    {"A.3.4 From+PendingOut", ST_SUB_IN, ST_SUB_UNSUBSCRIBED, "fo", "f", D | PU, 0},
    {"A.3.4 Both", ST_SUB_IN, ST_SUB_UNSUBSCRIBED, "tf", "f", D | PU, 0},
};

static struct st_sub_state parse_state(const char *f)
{
    /* "-" and "-i": no roster item (with or without a pending request). */
    if (f[0] == '-') {
        struct st_sub_state s = {0};
        s.pending_in = strchr(f, 'i') != NULL;
        return s;
    }
    return mk(f);
}

static void check_row(void **st)
{
    const struct row *r = *st;
    struct st_sub_state cur = parse_state(r->from_state), want = parse_state(r->to_state), got;
    unsigned act = st_sub_apply(&cur, r->ev, r->dir, &got);
    if (got.exists != want.exists || got.to != want.to || got.from != want.from ||
        got.pending_out != want.pending_out || got.pending_in != want.pending_in ||
        got.approved != want.approved)
        fail_msg("%s: state %s -> got e%d t%d f%d o%d i%d a%d, want %s", r->name, r->from_state,
                 got.exists, got.to, got.from, got.pending_out, got.pending_in, got.approved,
                 r->to_state);
    if ((act & r->must) != r->must)
        fail_msg("%s: actions 0x%x lack 0x%x", r->name, act, r->must & ~act);
    if (act & r->mustnot)
        fail_msg("%s: actions 0x%x must not include 0x%x", r->name, act, act & r->mustnot);
    /* A push always comes with a write, and only for an existing item. */
    if (act & ST_SUB_PUSH)
        assert_true((act & ST_SUB_WRITE) && got.exists);
    /* Outbound stanzas are never delivered locally; inbound never routed. */
    if (r->dir == ST_SUB_OUT)
        assert_false(act & (ST_SUB_DELIVER | ST_SUB_REPLY_SUBSCRIBED | ST_SUB_STORE_PENDING));
    else
        assert_false(act & ST_SUB_ROUTE);
    /* The next state may alias the current one. */
    struct st_sub_state alias = cur;
    assert_int_equal(st_sub_apply(&alias, r->ev, r->dir, &alias), act);
    assert_memory_equal(&alias, &got, sizeof got);
}

static void test_names(void **st)
{
    (void)st;
    struct st_sub_state s = mk("tf");
    assert_string_equal(st_sub_name(&s), "both");
    s = mk("t");
    assert_string_equal(st_sub_name(&s), "to");
    s = mk("fo");
    assert_string_equal(st_sub_name(&s), "from");
    s = mk("oi");
    assert_string_equal(st_sub_name(&s), "none");
    enum st_sub_event ev;
    assert_true(st_sub_event_parse("unsubscribed", &ev));
    assert_int_equal(ev, ST_SUB_UNSUBSCRIBED);
    assert_false(st_sub_event_parse("probe", &ev));
    assert_false(st_sub_event_parse(NULL, &ev));
}

int main(void)
{
    enum { N = sizeof rows / sizeof rows[0] };
    struct CMUnitTest tests[N + 1];
    for (size_t i = 0; i < N; i++) {
        struct CMUnitTest t = {rows[i].name, check_row, NULL, NULL, (void *)&rows[i]};
        tests[i] = t;
    }
    struct CMUnitTest names = cmocka_unit_test(test_names);
    tests[N] = names;
    return _cmocka_run_group_tests("roster", tests, N + 1, NULL, NULL);
}
