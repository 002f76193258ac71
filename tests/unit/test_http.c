/* Unit tests for the HTTP/1.1 request parser (src/http/http_parse.c,
 * RFC 9112) and trusted-proxy address resolution (src/http/http_proxy.c,
 * RFC 7239): request line and header rules, limits, Content-Length and
 * chunked bodies fed byte by byte, pipelining, keep-alive and Upgrade, and
 * Forwarded / X-Forwarded-For walked from the right over trusted hops. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http/http.h"

static const struct st_http_limits lim = {1024, 16, 256};

/* Parses s whole; returns the parser result; p must be cleared by the caller. */
static int parse(struct st_http_parser *p, const char *s)
{
    st_http_parser_init(p, &lim);
    return st_http_parser_run(p, s, strlen(s));
}

static int status_of(const char *s)
{
    struct st_http_parser p;
    int rc = parse(&p, s);
    int st = rc < 0 ? p.status : rc;
    st_http_parser_reset(&p);
    st_http_req_clear(&p.req);
    return st;
}

static void simple_get(void **state)
{
    (void)state;
    struct st_http_parser p;
    assert_int_equal(parse(&p, "GET /a/b?x=1&y HTTP/1.1\r\nHost: Example.ORG:80\r\n"
                               "X-Thing:  padded value \t\r\n\r\n"),
                     1);
    assert_string_equal(p.req.method, "GET");
    assert_string_equal(p.req.path, "/a/b");
    assert_string_equal(p.req.query, "x=1&y");
    assert_int_equal(p.req.minor, 1);
    assert_true(p.req.keep_alive);
    assert_false(p.req.upgrade);
    assert_string_equal(st_http_req_header(&p.req, "x-thing"), "padded value");
    assert_string_equal(st_http_req_header(&p.req, "host"), "Example.ORG:80");
    st_http_req_clear(&p.req);
}

static void connection_tokens(void **state)
{
    (void)state;
    struct st_http_parser p;
    assert_int_equal(parse(&p, "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
                               "Upgrade: websocket\r\n\r\n"),
                     1);
    assert_true(p.req.upgrade);
    assert_true(p.req.keep_alive);
    st_http_req_clear(&p.req);
    assert_int_equal(parse(&p, "GET / HTTP/1.0\r\n\r\n"), 1);
    assert_false(p.req.keep_alive); /* HTTP/1.0 closes unless asked */
    st_http_req_clear(&p.req);
    assert_int_equal(parse(&p, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"), 1);
    assert_false(p.req.keep_alive);
    st_http_req_clear(&p.req);
}

static void malformed(void **state)
{
    (void)state;
    assert_int_equal(status_of("GET / HTTP/1.1\r\n\r\n"), 400);            /* no Host */
    assert_int_equal(status_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
    assert_int_equal(status_of("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400);
    assert_int_equal(status_of("GET / HTTP/1.1\r\nHost: a\r\n x\r\n\r\n"), 400);
    assert_int_equal(status_of("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n"), 400);
    assert_int_equal(status_of("GET / HTTP/1.1\nHost: a\r\n\r\n"), 400);   /* bare LF */
    assert_int_equal(status_of("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(status_of("GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(status_of("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
    assert_int_equal(status_of("GET / FTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(status_of("VERYLONGMETHODNAME / HTTP/1.1\r\nHost: a\r\n\r\n"), 501);
    assert_int_equal(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n"),
                     400);
    assert_int_equal(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                               "Content-Length: 2\r\n\r\n"),
                     400);
    assert_int_equal(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"), 400);
    assert_int_equal(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"),
                     501);
    assert_int_equal(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 257\r\n\r\n"), 413);
}

static void limits(void **state)
{
    (void)state;
    char big[2048];
    memset(big, 'a', sizeof big);
    big[sizeof big - 1] = '\0';
    char req[4096];
    snprintf(req, sizeof req, "GET /%s HTTP/1.1\r\nHost: a\r\n\r\n", big);
    assert_int_equal(status_of(req), 414);
    snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: a\r\nX: %s\r\n\r\n", big);
    assert_int_equal(status_of(req), 431);
    char many[1024] = "GET / HTTP/1.1\r\nHost: a\r\n";
    for (int i = 0; i < 20; i++)
        strncat(many, "X: y\r\n", sizeof many - strlen(many) - 1);
    strncat(many, "\r\n", sizeof many - strlen(many) - 1);
    assert_int_equal(status_of(many), 431);
}

static void body_byte_by_byte(void **state)
{
    (void)state;
    const char *reqs[] = {
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "2;ext=\"v\"\r\nhe\r\n3\r\nllo\r\n0\r\nT: x\r\n\r\n",
    };
    for (size_t k = 0; k < 2; k++) {
        struct st_http_parser p;
        st_http_parser_init(&p, &lim);
        size_t n = strlen(reqs[k]);
        int rc = 0;
        for (size_t i = 1; i <= n; i++) {
            rc = st_http_parser_run(&p, reqs[k], i);
            if (i < n)
                assert_int_equal(rc, 0);
        }
        assert_int_equal(rc, 1);
        assert_int_equal(p.pos, n);
        assert_int_equal(p.req.body.len, 5);
        assert_memory_equal(p.req.body.data, "hello", 5);
        st_http_req_clear(&p.req);
    }
}

static void chunked_errors(void **state)
{
    (void)state;
    const char *head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    const char *bodies[] = {"zz\r\n", "5\r\nhelloXX", "\r\n", "5x\r\n",
                            "1ffffffffffffffffff\r\n", "200\r\n"};
    int want[] = {400, 400, 400, 400, 413, 413};
    for (size_t i = 0; i < 6; i++) {
        char req[512];
        snprintf(req, sizeof req, "%s%s", head, bodies[i]);
        assert_int_equal(status_of(req), want[i]);
    }
}

static void pipelined(void **state)
{
    (void)state;
    const char *two = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    struct st_http_parser p;
    st_http_parser_init(&p, &lim);
    assert_int_equal(st_http_parser_run(&p, two, strlen(two)), 1);
    assert_string_equal(p.req.path, "/1");
    size_t used = p.pos;
    st_http_parser_reset(&p);
    assert_int_equal(st_http_parser_run(&p, two + used, strlen(two) - used), 1);
    assert_string_equal(p.req.path, "/2");
    st_http_req_clear(&p.req);
}

static void addr_match(void **state)
{
    (void)state;
    assert_true(st_http_addr_match("10.0.0.0/8", "10.1.2.3"));
    assert_false(st_http_addr_match("10.0.0.0/8", "11.1.2.3"));
    assert_true(st_http_addr_match("192.168.1.1", "192.168.1.1"));
    assert_false(st_http_addr_match("192.168.1.1", "192.168.1.2"));
    assert_true(st_http_addr_match("172.16.0.0/12", "172.31.255.255"));
    assert_false(st_http_addr_match("172.16.0.0/12", "172.32.0.0"));
    assert_true(st_http_addr_match("::1", "::1"));
    assert_true(st_http_addr_match("2001:db8::/32", "2001:db8:1::5"));
    assert_false(st_http_addr_match("2001:db8::/32", "10.0.0.1"));
    assert_false(st_http_addr_match("10.0.0.0/33", "10.0.0.1"));
    assert_false(st_http_addr_match("junk", "10.0.0.1"));
}

static void resolve(void **state)
{
    (void)state;
    static char *tp[] = {"127.0.0.1", "10.0.0.0/8"};
    struct st_strlist trusted = {tp, 2};
    char out[64];
    bool https;
    struct st_http_parser p;

    /* untrusted peer: headers ignored */
    parse(&p, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n");
    assert_false(st_http_resolve_client(&trusted, "8.8.8.8", &p.req, out, sizeof out, &https));
    assert_string_equal(out, "8.8.8.8");
    /* trusted: rightmost untrusted entry wins; a forged leftmost one does not */
    assert_true(st_http_resolve_client(&trusted, "127.0.0.1", &p.req, out, sizeof out, &https));
    assert_string_equal(out, "1.2.3.4");
    assert_false(https);
    st_http_req_clear(&p.req);

    parse(&p, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6, 1.2.3.4, 10.0.0.7\r\n"
              "X-Forwarded-Proto: https\r\n\r\n");
    st_http_resolve_client(&trusted, "127.0.0.1", &p.req, out, sizeof out, &https);
    assert_string_equal(out, "1.2.3.4");
    assert_true(https);
    st_http_req_clear(&p.req);

    parse(&p, "GET / HTTP/1.1\r\nHost: a\r\nForwarded: for=6.6.6.6\r\n"
              "Forwarded: for=\"[2001:db8::1]:4711\";proto=https;by=x, for=10.1.1.1\r\n\r\n");
    st_http_resolve_client(&trusted, "127.0.0.1", &p.req, out, sizeof out, &https);
    assert_string_equal(out, "2001:db8::1");
    st_http_req_clear(&p.req);

    parse(&p, "GET / HTTP/1.1\r\nHost: a\r\nForwarded: for=1.2.3.4:80;proto=https\r\n\r\n");
    st_http_resolve_client(&trusted, "127.0.0.1", &p.req, out, sizeof out, &https);
    assert_string_equal(out, "1.2.3.4");
    assert_true(https);
    st_http_req_clear(&p.req);

    /* obfuscated identifiers stop the walk at the proxy itself */
    parse(&p, "GET / HTTP/1.1\r\nHost: a\r\nForwarded: for=_hidden\r\n\r\n");
    st_http_resolve_client(&trusted, "127.0.0.1", &p.req, out, sizeof out, &https);
    assert_string_equal(out, "127.0.0.1");
    st_http_req_clear(&p.req);
}

static void header_tokens(void **state)
{
    (void)state;
    struct st_http_parser p;
    parse(&p, "GET / HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Protocol: chat , XMPP\r\n\r\n");
    assert_true(st_http_req_header_has_token(&p.req, "sec-websocket-protocol", "xmpp"));
    assert_false(st_http_req_header_has_token(&p.req, "sec-websocket-protocol", "xmp"));
    st_http_req_clear(&p.req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(simple_get),      cmocka_unit_test(connection_tokens),
        cmocka_unit_test(malformed),       cmocka_unit_test(limits),
        cmocka_unit_test(body_byte_by_byte), cmocka_unit_test(chunked_errors),
        cmocka_unit_test(pipelined),       cmocka_unit_test(addr_match),
        cmocka_unit_test(resolve),         cmocka_unit_test(header_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
