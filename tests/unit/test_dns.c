/* Unit tests for SRV target ordering (RFC 2782 "Usage rules"): ascending
 * priority; within a priority a weighted random order in which weight-0
 * records come first in the running sum; driven by a scripted random source.
 * Also the resolver's construction with explicit servers (dns.servers) and
 * the SRV-failure decision of RFC 6120 §3.2.1/§3.2.2 (st_dns_srv_decide). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <ares.h>
#include <cmocka.h>
#include <uv.h>

#include "base/err.h"
#include "base/mem.h"
#include "net/dns.h"

static struct st_dns_srv rec(const char *host, uint16_t prio, uint16_t weight)
{
    struct st_dns_srv r;
    memset(&r, 0, sizeof r);
    snprintf(r.host, sizeof r.host, "%s", host);
    r.port = 5269;
    r.priority = prio;
    r.weight = weight;
    return r;
}

struct script {
    const uint32_t *v;
    size_t n, i;
};

static uint32_t scripted(void *ud)
{
    struct script *s = ud;
    return s->i < s->n ? s->v[s->i++] : 0;
}

static void priority_ascending(void **state)
{
    (void)state;
    struct st_dns_srv r[4] = {rec("c", 30, 1), rec("a", 10, 1), rec("d", 40, 1), rec("b", 20, 1)};
    st_dns_srv_order(r, 4, NULL, NULL);
    assert_string_equal(r[0].host, "a");
    assert_string_equal(r[1].host, "b");
    assert_string_equal(r[2].host, "c");
    assert_string_equal(r[3].host, "d");
}

static void weighted_selection(void **state)
{
    (void)state;
    /* One priority, weights 10 (x), 30 (y), 60 (z): running sums 10, 40, 100. */
    struct st_dns_srv r[3] = {rec("x", 5, 10), rec("y", 5, 30), rec("z", 5, 60)};
    /* First pick 50 % 101 = 50 -> z (sum 100 >= 50); then total 40: 15 % 41 = 15 -> y. */
    uint32_t v[] = {50, 15, 0};
    struct script s = {v, 3, 0};
    st_dns_srv_order(r, 3, scripted, &s);
    assert_string_equal(r[0].host, "z");
    assert_string_equal(r[1].host, "y");
    assert_string_equal(r[2].host, "x");
}

static void zero_weight_first_in_sum(void **state)
{
    (void)state;
    /* A weight-0 record is taken when the random number is 0 (RFC 2782). */
    struct st_dns_srv r[2] = {rec("heavy", 1, 100), rec("zero", 1, 0)};
    uint32_t v[] = {0, 0};
    struct script s = {v, 2, 0};
    st_dns_srv_order(r, 2, scripted, &s);
    assert_string_equal(r[0].host, "zero");
    assert_string_equal(r[1].host, "heavy");
    /* ...and rarely otherwise. */
    struct st_dns_srv r2[2] = {rec("heavy", 1, 100), rec("zero", 1, 0)};
    uint32_t v2[] = {57, 0};
    struct script s2 = {v2, 2, 0};
    st_dns_srv_order(r2, 2, scripted, &s2);
    assert_string_equal(r2[0].host, "heavy");
}

static void priorities_not_mixed_by_weight(void **state)
{
    (void)state;
    struct st_dns_srv r[4] = {rec("lo-prio-heavy", 20, 1000), rec("hi1", 10, 1),
                              rec("hi2", 10, 1), rec("lo2", 20, 1)};
    for (int round = 0; round < 50; round++) {
        uint32_t v[] = {(uint32_t)round * 7919u, (uint32_t)round * 104729u, (uint32_t)round, 3};
        struct script s = {v, 4, 0};
        struct st_dns_srv c[4];
        memcpy(c, r, sizeof r);
        st_dns_srv_order(c, 4, scripted, &s);
        assert_int_equal(c[0].priority, 10);
        assert_int_equal(c[1].priority, 10);
        assert_int_equal(c[2].priority, 20);
        assert_int_equal(c[3].priority, 20);
    }
}

static void distribution_follows_weight(void **state)
{
    (void)state;
    /* With a real random source the heavier record comes first most of the time. */
    int first_heavy = 0;
    uint32_t x = 12345;
    for (int i = 0; i < 1000; i++) {
        struct st_dns_srv r[2] = {rec("light", 0, 10), rec("heavy", 0, 90)};
        x = x * 1103515245u + 12345u;
        uint32_t v[] = {x >> 8, 0};
        struct script s = {v, 2, 0};
        st_dns_srv_order(r, 2, scripted, &s);
        first_heavy += strcmp(r[0].host, "heavy") == 0;
    }
    assert_in_range(first_heavy, 820, 980);
}

static void resolver_servers_option(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct st_dns *d = NULL;
    char *err = NULL;
    const char *good[] = {"10.99.0.254", "10.99.0.253:5353", "[::1]:53"};
    assert_int_equal(st_dns_new(&loop, good, 3, 1000, &d, &err), 0);
    assert_non_null(d);
    st_dns_free(d);
    const char *bad[] = {"not-an-ip"};
    assert_int_equal(st_dns_new(&loop, bad, 1, 1000, &d, &err), ST_EINVAL);
    assert_non_null(err);
    assert_non_null(strstr(err, "not-an-ip"));
    st_free(err);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* RFC 6120 §3.2.2: no SRV records (NXDOMAIN, NODATA) → the domain itself on 5269; our
 * documented choice extends that to SERVFAIL/REFUSED; timeouts and "." targets fail. */
static void srv_decision(void **state)
{
    (void)state;
    int err = 1;
    const int nx[2] = {ARES_ENOTFOUND, ARES_ENOTFOUND};
    assert_int_equal(st_dns_srv_decide(nx, 0, false, &err), ST_DNS_SRV_FALLBACK);
    assert_int_equal(err, 0);
    const int nodata[2] = {ARES_ENODATA, ARES_ENODATA};
    assert_int_equal(st_dns_srv_decide(nodata, 0, false, &err), ST_DNS_SRV_FALLBACK);
    const int servfail[2] = {ARES_ESERVFAIL, ARES_ESERVFAIL};
    assert_int_equal(st_dns_srv_decide(servfail, 0, false, &err), ST_DNS_SRV_FALLBACK);
    const int refused[2] = {ARES_EREFUSED, ARES_EREFUSED};
    assert_int_equal(st_dns_srv_decide(refused, 0, false, &err), ST_DNS_SRV_FALLBACK);
    assert_int_equal(err, 0);
    /* One set answered with records: those win whatever the other query did. */
    const int mixed[2] = {ARES_ESERVFAIL, ARES_SUCCESS};
    assert_int_equal(st_dns_srv_decide(mixed, 2, false, &err), ST_DNS_SRV_USE);
    /* An empty successful answer to either name is NODATA in effect. */
    const int empty[2] = {ARES_SUCCESS, ARES_ETIMEOUT};
    assert_int_equal(st_dns_srv_decide(empty, 0, false, &err), ST_DNS_SRV_FALLBACK);
    /* Timeouts: the A query would wait on the same silent resolver. */
    const int slow[2] = {ARES_ETIMEOUT, ARES_ETIMEOUT};
    assert_int_equal(st_dns_srv_decide(slow, 0, false, &err), ST_DNS_SRV_FAIL);
    assert_int_equal(err, ST_EAGAIN);
    const int unreachable[2] = {ARES_ECONNREFUSED, ARES_ECONNREFUSED};
    assert_int_equal(st_dns_srv_decide(unreachable, 0, false, &err), ST_DNS_SRV_FAIL);
    assert_int_equal(err, ST_EIO);
    /* RFC 2782: a single "." target — the service is decidedly not available. */
    assert_int_equal(st_dns_srv_decide(nx, 0, true, &err), ST_DNS_SRV_FAIL);
    assert_int_equal(err, ST_ENOTFOUND);
    assert_int_equal(st_dns_srv_decide(servfail, 0, true, NULL), ST_DNS_SRV_FAIL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(priority_ascending),
        cmocka_unit_test(weighted_selection),
        cmocka_unit_test(zero_weight_first_in_sum),
        cmocka_unit_test(priorities_not_mixed_by_weight),
        cmocka_unit_test(distribution_follows_weight),
        cmocka_unit_test(resolver_servers_option),
        cmocka_unit_test(srv_decision),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
