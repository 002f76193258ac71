/* Unit tests for src/net: a real libuv loop on 127.0.0.1 (port 0) serves
 * connections while a client thread drives them with blocking sockets and
 * an OpenSSL client. Covers plain echo, the output cap, STARTTLS ordering
 * (RFC 6120 §5.4.3.3), direct TLS with SNI (XEP-0368, RFC 6066 §3) and ALPN,
 * channel binding (RFC 9266, RFC 5929 §4.1), the TLS 1.2 floor (RFC 7590),
 * flushing on close, the per-IP limit, `starling check` findings
 * (RFC 6125 §6.4.3) and per-connection memory. Client threads never call
 * cmocka asserts: they record results the main thread checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "net/conn.h"
#include "net/tls.h"

/* ---- a counting allocator for OpenSSL, per thread, to measure the server's TLS memory ---- */

static _Thread_local long t_ossl_bytes;

static void *cnt_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    size_t *p = malloc(n + 16);
    if (!p)
        return NULL;
    p[0] = n;
    t_ossl_bytes += (long)n;
    return (char *)p + 16;
}

static void *cnt_realloc(void *q, size_t n, const char *file, int line)
{
    if (!q)
        return cnt_malloc(n, file, line);
    size_t *p = (size_t *)((char *)q - 16);
    size_t old = p[0];
    p = realloc(p, n + 16);
    if (!p)
        return NULL;
    p[0] = n;
    t_ossl_bytes += (long)n - (long)old;
    return (char *)p + 16;
}

static void cnt_free(void *q, const char *file, int line)
{
    (void)file;
    (void)line;
    if (!q)
        return;
    size_t *p = (size_t *)((char *)q - 16);
    t_ossl_bytes -= (long)p[0];
    free(p);
}

/* ---- fixture ---- */

static char g_dir[64];
static char a_crt[128], a_key[128], b_crt[128], b_key[128];

struct fx {
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t guard;
    bool timed_out;
    struct st_listener *l;
    struct st_tls *tls;
    int port;
    uv_thread_t thread;
    atomic_int client_done;
    atomic_int client_ready;
    uv_sem_t release;
    /* server-side behaviour and observations */
    void (*on_accept)(struct st_conn *c);
    void (*on_read)(struct st_conn *c, const char *d, size_t n);
    int accepted, closed, last_err, read_calls;
    struct st_conn *conns[64];
    char got[4096];
    size_t got_len;
    int wr_rc[4];
    char sni[64], alpn[32];
    int tls_version;
    unsigned char cb_exp[64], cb_tsep[64];
    int cb_exp_len, cb_tsep_len;
    bool stls_done;
    /* client-side results */
    int c_ok;
    char c_got[4096];
    size_t c_len;
    unsigned char c_cb_exp[64], c_cb_tsep[64];
    int c_cb_exp_len, c_cb_tsep_len;
    char c_san[256];
    int c_results[8];
    size_t c_total;
};

static struct fx F;

static void on_close(struct st_conn *c, int err)
{
    (void)c;
    F.closed++;
    F.last_err = err;
    for (int i = 0; i < F.accepted && i < 64; i++) {
        if (F.conns[i] == c)
            F.conns[i] = NULL;
    }
}

static void on_read(struct st_conn *c, const char *d, size_t n)
{
    F.read_calls++;
    if (F.on_read)
        F.on_read(c, d, n);
}

static const struct st_conn_handler handler = {.on_read = on_read, .on_close = on_close};

static void accept_cb(void *ud, struct st_conn *c)
{
    (void)ud;
    if (F.accepted < 64)
        F.conns[F.accepted] = c;
    F.accepted++;
    st_conn_set_handler(c, &handler, NULL);
    if (F.on_accept)
        F.on_accept(c);
}

static void wake_cb(uv_async_t *a)
{
    (void)a;
}

static void guard_cb(uv_timer_t *t)
{
    (void)t;
    F.timed_out = true;
}

static void fx_start(struct st_tls *direct_tls, unsigned max_per_ip)
{
    memset(&F, 0, sizeof F);
    assert_int_equal(uv_loop_init(&F.loop), 0);
    uv_async_init(&F.loop, &F.wake, wake_cb);
    uv_timer_init(&F.loop, &F.guard);
    uv_sem_init(&F.release, 0);
    char *err = NULL;
    assert_int_equal(st_listener_open(&F.loop, "127.0.0.1", 0, direct_tls, max_per_ip, accept_cb,
                                      NULL, &F.l, &err),
                     0);
    F.port = st_listener_port(F.l);
    assert_true(F.port > 0);
}

/* fx_start plus the server-side callbacks; takes over the caller's reference on
 * direct_tls (the listener holds its own; NULL: plain). */
static void fx_serve(struct st_tls *direct_tls, unsigned max_per_ip,
                     void (*on_accept)(struct st_conn *c),
                     void (*on_read)(struct st_conn *c, const char *d, size_t n))
{
    fx_start(direct_tls, max_per_ip);
    st_tls_unref(direct_tls);
    F.on_accept = on_accept;
    F.on_read = on_read;
}

static void fx_client(void (*fn)(void *), void *arg)
{
    assert_int_equal(uv_thread_create(&F.thread, fn, arg), 0);
}

static void client_finish(void)
{
    atomic_store(&F.client_done, 1);
    uv_async_send(&F.wake);
}

/* Runs the loop until pred() holds (15 s guard). */
static void run_until(bool (*pred)(void))
{
    F.timed_out = false;
    uv_timer_start(&F.guard, guard_cb, 15000, 0);
    while (!pred() && !F.timed_out)
        uv_run(&F.loop, UV_RUN_ONCE);
    uv_timer_stop(&F.guard);
    assert_false(F.timed_out);
}

static bool client_done(void)
{
    return atomic_load(&F.client_done) != 0;
}

static bool all_closed(void)
{
    return client_done() && F.closed == F.accepted;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void fx_stop(void);

/* One client thread against a fresh listener; returns once the client finished and every
 * server connection closed, with the fixture torn down and F left for the asserts. */
static void fx_run(struct st_tls *direct_tls, unsigned max_per_ip,
                   void (*on_accept)(struct st_conn *c),
                   void (*on_read)(struct st_conn *c, const char *d, size_t n),
                   void (*client)(void *))
{
    fx_serve(direct_tls, max_per_ip, on_accept, on_read);
    fx_client(client, NULL);
    fx_stop();
}

static void fx_stop(void)
{
    run_until(all_closed);
    uv_thread_join(&F.thread);
    st_listener_close(F.l);
    uv_close((uv_handle_t *)&F.wake, NULL);
    uv_close((uv_handle_t *)&F.guard, NULL);
    uv_run(&F.loop, UV_RUN_DEFAULT);
    uv_walk(&F.loop, close_walk, NULL); /* none expected */
    uv_run(&F.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&F.loop), 0);
    uv_sem_destroy(&F.release);
}

/* ---- client helpers (client thread) ---- */

static int cl_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Client-thread teardown (any of fd < 0, ctx, ssl may be absent): frees, closes and
 * tells the loop the client is done. */
static void cl_finish(int fd, SSL_CTX *ctx, SSL *ssl, bool shutdown)
{
    if (ssl && shutdown)
        SSL_shutdown(ssl);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    if (fd >= 0)
        close(fd);
    client_finish();
}

static int cl_send(int fd, const char *s)
{
    size_t n = strlen(s);
    return send(fd, s, n, MSG_NOSIGNAL) == (ssize_t)n ? 0 : -1;
}

/* Reads until `want` appears in the stream (plain); returns 0 when found. */
static int cl_expect(int fd, const char *want, char *buf, size_t cap)
{
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t r = recv(fd, buf + len, cap - 1 - len, 0);
        if (r <= 0)
            return -1;
        len += (size_t)r;
        buf[len] = '\0';
        if (strstr(buf, want))
            return 0;
    }
    return -1;
}

static SSL_CTX *cl_ctx(int minv, int maxv)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (minv < TLS1_2_VERSION) {
        SSL_CTX_set_security_level(ctx, 0);
        SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0");
    }
    SSL_CTX_set_min_proto_version(ctx, minv);
    SSL_CTX_set_max_proto_version(ctx, maxv);
    return ctx;
}

static SSL *cl_tls(SSL_CTX *ctx, int fd, const char *sni, const char *alpn)
{
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (sni)
        SSL_set_tlsext_host_name(ssl, sni);
    if (alpn) {
        unsigned char p[64];
        size_t n = strlen(alpn);
        p[0] = (unsigned char)n;
        memcpy(p + 1, alpn, n);
        SSL_set_alpn_protos(ssl, p, (unsigned)n + 1);
    }
    if (SSL_connect(ssl) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    return ssl;
}

static int ssl_expect(SSL *ssl, const char *want, char *buf, size_t cap)
{
    size_t len = 0;
    while (len + 1 < cap) {
        int r = SSL_read(ssl, buf + len, (int)(cap - 1 - len));
        if (r <= 0)
            return -1;
        len += (size_t)r;
        buf[len] = '\0';
        if (strstr(buf, want))
            return 0;
    }
    return -1;
}

static void first_san(X509 *x, char *out, size_t cap)
{
    out[0] = '\0';
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    if (gens && sk_GENERAL_NAME_num(gens) > 0) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, 0);
        if (g->type == GEN_DNS)
            snprintf(out, cap, "%.*s", ASN1_STRING_length(g->d.dNSName),
                     (const char *)ASN1_STRING_get0_data(g->d.dNSName));
    }
    GENERAL_NAMES_free(gens);
}

/* ---- plain echo ---- */

static void echo_read(struct st_conn *c, const char *d, size_t n)
{
    st_conn_write(c, d, n);
}

static void client_echo(void *arg)
{
    (void)arg;
    int fd = cl_connect(F.port);
    F.c_ok = fd >= 0 && cl_send(fd, "hello") == 0 && cl_send(fd, " world") == 0 &&
             cl_expect(fd, "hello world", F.c_got, sizeof F.c_got) == 0;
    cl_finish(fd, NULL, NULL, false);
}

static void plain_echo(void **state)
{
    (void)state;
    fx_run(NULL, 0, NULL, echo_read, client_echo);
    assert_true(F.c_ok);
    assert_int_equal(F.accepted, 1);
    assert_int_equal(F.closed, 1);
    assert_int_equal(F.last_err, 0);
}

/* ---- output limit ---- */

static void limit_accept(struct st_conn *c)
{
    static char blob[600];
    memset(blob, 'x', sizeof blob);
    st_conn_set_output_limit(c, 1000);
    F.wr_rc[0] = st_conn_write(c, blob, sizeof blob);
    F.wr_rc[1] = (int)st_conn_output_pending(c);
    F.wr_rc[2] = st_conn_write(c, blob, sizeof blob);
    st_conn_close(c);
    F.wr_rc[3] = st_conn_write(c, "y", 1);
}

static void client_drain(void *arg)
{
    (void)arg;
    int fd = cl_connect(F.port);
    char buf[65536];
    size_t total = 0;
    ssize_t r;
    while (fd >= 0 && (r = recv(fd, buf, sizeof buf, 0)) > 0)
        total += (size_t)r;
    F.c_total = total;
    cl_finish(fd, NULL, NULL, false);
}

static void output_limit(void **state)
{
    (void)state;
    fx_run(NULL, 0, limit_accept, NULL, client_drain);
    assert_int_equal(F.wr_rc[0], 0);
    assert_int_equal(F.wr_rc[1], 600);
    assert_int_equal(F.wr_rc[2], ST_ELIMIT);
    assert_int_equal(F.wr_rc[3], ST_ECLOSED);
    assert_int_equal(F.c_total, 600);
    assert_int_equal(F.closed, 1);
}

/* ---- close flushes pending output ---- */

#define BIG (512 * 1024)

static void big_accept(struct st_conn *c)
{
    char *blob = st_malloc(BIG);
    memset(blob, 'z', BIG);
    F.wr_rc[0] = st_conn_write(c, blob, BIG / 2);
    F.wr_rc[1] = st_conn_write(c, blob, BIG / 2);
    st_free(blob);
    st_conn_close(c);
    st_conn_close(c); /* idempotent */
}

static void close_flushes(void **state)
{
    (void)state;
    fx_run(NULL, 0, big_accept, NULL, client_drain);
    assert_int_equal(F.wr_rc[0], 0);
    assert_int_equal(F.wr_rc[1], 0);
    assert_int_equal(F.c_total, BIG);
    assert_int_equal(F.closed, 1);
    assert_int_equal(F.last_err, 0);
}

/* ---- STARTTLS ---- */

static void stls_read(struct st_conn *c, const char *d, size_t n)
{
    if (!F.stls_done) {
        if (F.got_len + n >= sizeof F.got)
            return;
        memcpy(F.got + F.got_len, d, n);
        F.got_len += n;
        F.got[F.got_len] = '\0';
        if (strstr(F.got, "<starttls/>")) {
            F.stls_done = true;
            F.wr_rc[0] = st_conn_write(c, "<proceed/>", 10);
            F.wr_rc[1] = st_conn_starttls(c, F.tls);
            /* Written during the handshake: must arrive encrypted, after it. */
            F.wr_rc[2] = st_conn_write(c, "<after/>", 8);
        }
        return;
    }
    F.tls_version = st_conn_tls_version(c);
    st_conn_write(c, d, n);
}

static void client_stls(void *arg)
{
    (void)arg;
    char buf[256];
    int fd = cl_connect(F.port);
    SSL_CTX *ctx = cl_ctx(TLS1_2_VERSION, 0);
    SSL *ssl = NULL;
    F.c_ok = fd >= 0 && cl_send(fd, "<starttls/>") == 0 &&
             cl_expect(fd, "<proceed/>", buf, sizeof buf) == 0 && strcmp(buf, "<proceed/>") == 0;
    if (F.c_ok) {
        ssl = cl_tls(ctx, fd, "a.example", NULL);
        F.c_ok = ssl && ssl_expect(ssl, "<after/>", buf, sizeof buf) == 0 &&
                 SSL_write(ssl, "encrypted", 9) == 9 &&
                 ssl_expect(ssl, "encrypted", F.c_got, sizeof F.c_got) == 0;
    }
    cl_finish(fd, ctx, ssl, true);
}

static void starttls_upgrade(void **state)
{
    (void)state;
    struct st_tls_cert_spec spec[] = {{"a.example", a_crt, a_key}};
    struct st_tls *tls;
    char *err = NULL;
    assert_int_equal(st_tls_new(spec, 1, &tls, &err), 0);
    fx_serve(NULL, 0, NULL, stls_read);
    F.tls = tls;
    fx_client(client_stls, NULL);
    fx_stop();
    st_tls_unref(tls);
    assert_true(F.stls_done);
    assert_int_equal(F.wr_rc[0], 0);
    assert_int_equal(F.wr_rc[1], 0);
    assert_int_equal(F.wr_rc[2], 0);
    assert_true(F.c_ok);
    assert_int_equal(F.tls_version, TLS1_3_VERSION);
    assert_int_equal(F.closed, 1);
}

/* ---- direct TLS, SNI, ALPN, channel binding ---- */

static void record_tls(struct st_conn *c, const char *d, size_t n)
{
    (void)d;
    (void)n;
    const char *s = st_conn_sni(c), *a = st_conn_alpn(c);
    snprintf(F.sni, sizeof F.sni, "%s", s ? s : "");
    snprintf(F.alpn, sizeof F.alpn, "%s", a ? a : "");
    F.tls_version = st_conn_tls_version(c);
    F.cb_exp_len = st_conn_channel_binding(c, "tls-exporter", F.cb_exp, sizeof F.cb_exp);
    F.cb_tsep_len = st_conn_channel_binding(c, "tls-server-end-point", F.cb_tsep, sizeof F.cb_tsep);
    st_conn_write(c, "ok", 2);
}

static int g_cl_maxv;
static const char *g_cl_sni;

static void client_direct(void *arg)
{
    (void)arg;
    char buf[64];
    int fd = cl_connect(F.port);
    SSL_CTX *ctx = cl_ctx(TLS1_2_VERSION, g_cl_maxv);
    SSL *ssl = fd >= 0 ? cl_tls(ctx, fd, g_cl_sni, "xmpp-client") : NULL;
    if (ssl) {
        X509 *peer = SSL_get0_peer_certificate(ssl);
        if (peer) {
            first_san(peer, F.c_san, sizeof F.c_san);
            unsigned int n = 0;
            X509_digest(peer, EVP_sha256(), F.c_cb_tsep, &n);
            F.c_cb_tsep_len = (int)n;
        }
        if (SSL_version(ssl) == TLS1_3_VERSION &&
            SSL_export_keying_material(ssl, F.c_cb_exp, 32, "EXPORTER-Channel-Binding", 24, NULL,
                                       0, 0) == 1)
            F.c_cb_exp_len = 32;
        F.c_ok = SSL_write(ssl, "x", 1) == 1 && ssl_expect(ssl, "ok", buf, sizeof buf) == 0;
    }
    cl_finish(fd, ctx, ssl, true);
}

static struct st_tls *two_host_tls(void)
{
    struct st_tls_cert_spec spec[] = {{"a.example", a_crt, a_key}, {"b.example", b_crt, b_key}};
    struct st_tls *tls = NULL;
    char *err = NULL;
    assert_int_equal(st_tls_new(spec, 2, &tls, &err), 0);
    return tls;
}

static void direct_tls_run(const char *sni, int maxv)
{
    g_cl_sni = sni;
    g_cl_maxv = maxv;
    fx_run(two_host_tls(), 0, NULL, record_tls, client_direct);
    assert_true(F.c_ok);
    assert_int_equal(F.closed, 1);
}

static void direct_tls_sni(void **state)
{
    (void)state;
    direct_tls_run("b.example", 0);
    assert_string_equal(F.c_san, "b.example");
    assert_string_equal(F.sni, "b.example");
    assert_string_equal(F.alpn, "xmpp-client");
    /* a subdomain covered by b's wildcard */
    direct_tls_run("conference.b.example", 0);
    assert_string_equal(F.c_san, "b.example");
    /* no SNI and unknown SNI: the first host is the default */
    direct_tls_run(NULL, 0);
    assert_string_equal(F.c_san, "a.example");
    assert_string_equal(F.sni, "");
    direct_tls_run("other.example", 0);
    assert_string_equal(F.c_san, "a.example");
}

static void channel_binding(void **state)
{
    (void)state;
    direct_tls_run("a.example", 0);
    assert_int_equal(F.tls_version, TLS1_3_VERSION);
    assert_int_equal(F.cb_exp_len, 32);
    assert_int_equal(F.c_cb_exp_len, 32);
    assert_memory_equal(F.cb_exp, F.c_cb_exp, 32);
    assert_int_equal(F.cb_tsep_len, 32);
    assert_int_equal(F.c_cb_tsep_len, 32);
    assert_memory_equal(F.cb_tsep, F.c_cb_tsep, 32);

    /* TLS 1.2: no tls-exporter (RFC 9266 §2), tls-server-end-point still works */
    direct_tls_run("b.example", TLS1_2_VERSION);
    assert_int_equal(F.tls_version, TLS1_2_VERSION);
    assert_int_equal(F.cb_exp_len, -1);
    assert_int_equal(F.cb_tsep_len, 32);
    assert_memory_equal(F.cb_tsep, F.c_cb_tsep, 32);
}

static void client_tls11(void *arg)
{
    (void)arg;
    int fd = cl_connect(F.port);
    SSL_CTX *ctx = cl_ctx(TLS1_VERSION, TLS1_1_VERSION);
    SSL *ssl = fd >= 0 ? cl_tls(ctx, fd, "a.example", NULL) : NULL;
    F.c_ok = ssl == NULL;
    cl_finish(fd, ctx, ssl, false);
}

static void tls11_refused(void **state)
{
    (void)state;
    fx_run(two_host_tls(), 0, NULL, record_tls, client_tls11);
    assert_true(F.c_ok);
    assert_int_equal(F.read_calls, 0);
    assert_int_equal(F.closed, 1);
    assert_int_equal(F.last_err, ST_EIO);
}

/* ---- per-IP limit ---- */

static void client_per_ip(void *arg)
{
    (void)arg;
    int fds[3];
    char buf[16];
    for (int i = 0; i < 3; i++) {
        fds[i] = cl_connect(F.port);
        usleep(20000); /* keep accept order = connect order */
    }
    for (int i = 0; i < 3; i++) {
        memset(buf, 0, sizeof buf);
        F.c_results[i] = fds[i] >= 0 && cl_send(fds[i], "p") == 0 &&
                         recv(fds[i], buf, sizeof buf, 0) == 1 && buf[0] == 'p';
    }
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    client_finish();
}

static void per_ip_limit(void **state)
{
    (void)state;
    fx_run(NULL, 2, NULL, echo_read, client_per_ip);
    assert_int_equal(F.accepted, 2);
    assert_true(F.c_results[0]);
    assert_true(F.c_results[1]);
    assert_false(F.c_results[2]);
    assert_int_equal(F.closed, 2);
}

/* ---- memory per idle connection ---- */

#define NMEM 20

static void client_idle(void *arg)
{
    bool tls = arg != NULL;
    int fds[NMEM];
    SSL *ssls[NMEM] = {0};
    char buf[16];
    SSL_CTX *ctx = cl_ctx(TLS1_2_VERSION, 0);
    int ok = 1;
    for (int i = 0; i < NMEM; i++) {
        fds[i] = cl_connect(F.port);
        if (tls) {
            ssls[i] = cl_tls(ctx, fds[i], "a.example", "xmpp-client");
            ok = ok && ssls[i] && SSL_write(ssls[i], "m", 1) == 1 &&
                 ssl_expect(ssls[i], "m", buf, sizeof buf) == 0;
        } else {
            ok = ok && cl_send(fds[i], "m") == 0 && cl_expect(fds[i], "m", buf, sizeof buf) == 0;
        }
    }
    F.c_ok = ok;
    atomic_store(&F.client_ready, 1);
    uv_async_send(&F.wake);
    uv_sem_wait(&F.release);
    for (int i = 0; i < NMEM; i++) {
        if (ssls[i])
            SSL_free(ssls[i]);
        close(fds[i]);
    }
    SSL_CTX_free(ctx);
    client_finish();
}

static bool client_ready(void)
{
    return atomic_load(&F.client_ready) != 0;
}

static void run_idle(bool tls, size_t *conn_mem, long *ossl_per_conn)
{
    fx_serve(tls ? two_host_tls() : NULL, 0, NULL, echo_read);
    /* earlier tests initialised OpenSSL's lazy state on this thread */
    long base = t_ossl_bytes;
    fx_client(client_idle, tls ? (void *)1 : NULL);
    run_until(client_ready);
    /* let the last echo's write complete and its buffers go */
    for (int i = 0; i < 10; i++)
        uv_run(&F.loop, UV_RUN_NOWAIT);
    assert_true(F.c_ok);
    assert_int_equal(F.accepted, NMEM);
    size_t total = 0;
    for (int i = 0; i < NMEM; i++) {
        assert_non_null(F.conns[i]);
        assert_int_equal(st_conn_output_pending(F.conns[i]), 0);
        total += st_conn_memory(F.conns[i]);
    }
    *conn_mem = total / NMEM;
    *ossl_per_conn = (t_ossl_bytes - base) / NMEM;
    uv_sem_post(&F.release);
    fx_stop();
}

static void idle_memory(void **state)
{
    (void)state;
    size_t plain_mem, tls_mem;
    long plain_ossl, tls_ossl;
    run_idle(false, &plain_mem, &plain_ossl);
    run_idle(true, &tls_mem, &tls_ossl);
    printf("# idle plain connection: st_conn_memory %zu bytes (OpenSSL heap %ld)\n", plain_mem,
           plain_ossl);
    printf("# idle TLS connection after handshake: st_conn_memory %zu bytes, OpenSSL heap "
           "measured %ld bytes per connection\n", tls_mem, tls_ossl);
    assert_true(plain_mem < 2048);
    assert_int_equal(plain_ossl, 0);
    assert_true(tls_ossl < 16 * 1024);
    assert_true(tls_mem < 16 * 1024);
}

/* ---- TLS close: output flushed, then close_notify ---- */

static void big_tls_read(struct st_conn *c, const char *d, size_t n)
{
    (void)d;
    (void)n;
    big_accept(c);
}

static void client_tls_drain(void *arg)
{
    (void)arg;
    int fd = cl_connect(F.port);
    SSL_CTX *ctx = cl_ctx(TLS1_2_VERSION, 0);
    SSL *ssl = fd >= 0 ? cl_tls(ctx, fd, "a.example", NULL) : NULL;
    if (ssl && SSL_write(ssl, "go", 2) == 2) {
        char buf[16384];
        size_t total = 0;
        int r;
        while ((r = SSL_read(ssl, buf, sizeof buf)) > 0)
            total += (size_t)r;
        F.c_total = total;
        F.c_ok = SSL_get_error(ssl, r) == SSL_ERROR_ZERO_RETURN; /* close_notify arrived */
    }
    cl_finish(fd, ctx, ssl, false);
}

static void tls_close_flushes(void **state)
{
    (void)state;
    fx_run(two_host_tls(), 0, NULL, big_tls_read, client_tls_drain);
    assert_true(F.c_ok);
    assert_int_equal(F.c_total, BIG);
    assert_int_equal(F.closed, 1);
    assert_int_equal(F.last_err, 0);
}

/* ---- a client that disconnects during the handshake ---- */

static void client_hs_eof(void *arg)
{
    (void)arg;
    int fd = cl_connect(F.port);
    cl_send(fd, "\x16\x03\x01"); /* the start of a ClientHello record, then nothing */
    cl_finish(fd, NULL, NULL, false);
}

/* The client may be gone before the listener even accepted it: wait for the server side. */
static bool one_accepted_and_closed(void)
{
    return client_done() && F.accepted == 1 && F.closed == 1;
}

static void handshake_eof(void **state)
{
    (void)state;
    fx_serve(two_host_tls(), 0, NULL, NULL);
    fx_client(client_hs_eof, NULL);
    run_until(one_accepted_and_closed);
    fx_stop();
    assert_int_equal(F.closed, 1);
    assert_int_equal(F.last_err, ST_EIO);
}

/* ---- reload: st_listener_set_tls applies to later accepts ---- */

static void tls_reload(void **state)
{
    (void)state;
    struct st_tls_cert_spec only_b[] = {{"b.example", b_crt, b_key}};
    struct st_tls *tls = NULL;
    char *err = NULL;
    assert_int_equal(st_tls_new(only_b, 1, &tls, &err), 0);
    fx_serve(tls, 0, NULL, record_tls);
    struct st_tls *two = two_host_tls();
    st_listener_set_tls(F.l, two);
    st_tls_unref(two);
    g_cl_sni = NULL;
    g_cl_maxv = 0;
    fx_client(client_direct, NULL);
    fx_stop();
    assert_true(F.c_ok);
    assert_string_equal(F.c_san, "a.example");
}

/* ---- "0.0.0.0" and "::" share a port ---- */

static void dual_stack_bind(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct st_listener *l4 = NULL, *l6 = NULL;
    char *err = NULL;
    assert_int_equal(st_listener_open(&loop, "0.0.0.0", 0, NULL, 0, accept_cb, NULL, &l4, &err), 0);
    int rc =
        st_listener_open(&loop, "::", st_listener_port(l4), NULL, 0, accept_cb, NULL, &l6, &err);
    if (rc != 0) {
        /* no IPv6 on this machine is acceptable; address-in-use is not */
        assert_null(strstr(err, "in use"));
        printf("# IPv6 unavailable: %s\n", err);
        st_free(err);
    }
    assert_int_equal(st_listener_open(&loop, "127.0.0.1", st_listener_port(l4), NULL, 0,
                                      accept_cb, NULL, &(struct st_listener *){NULL}, &err),
                     ST_EIO);
    assert_non_null(strstr(err, "in use"));
    st_free(err);
    assert_int_equal(st_listener_open(&loop, "not-an-ip", 1, NULL, 0, accept_cb, NULL,
                                      &(struct st_listener *){NULL}, &err),
                     ST_EINVAL);
    st_free(err);
    st_listener_close(l4);
    st_listener_close(l6);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- pause / resume ---- */

static uv_timer_t g_resume_timer;

static void resume_cb(uv_timer_t *t)
{
    struct st_conn *c = t->data;
    F.wr_rc[0] = F.read_calls; /* nothing read while paused */
    st_conn_resume(c);
    uv_close((uv_handle_t *)t, NULL);
}

static void pause_read(struct st_conn *c, const char *d, size_t n)
{
    st_conn_write(c, d, n);
    if (F.read_calls == 1) {
        st_conn_pause(c);
        uv_timer_init(&F.loop, &g_resume_timer);
        g_resume_timer.data = c;
        uv_timer_start(&g_resume_timer, resume_cb, 200, 0);
    }
}

static void client_pause(void *arg)
{
    (void)arg;
    char buf[64];
    int fd = cl_connect(F.port);
    F.c_ok = cl_send(fd, "a") == 0 && cl_expect(fd, "a", buf, sizeof buf) == 0 &&
             cl_send(fd, "b") == 0 && cl_expect(fd, "b", buf, sizeof buf) == 0;
    cl_finish(fd, NULL, NULL, false);
}

static void pause_resume(void **state)
{
    (void)state;
    fx_run(NULL, 0, NULL, pause_read, client_pause);
    assert_true(F.c_ok);
    assert_int_equal(F.wr_rc[0], 1);
    assert_true(F.read_calls >= 2);
}

/* ---- certificate tools ---- */

static void write_expired(const char *crt_in, const char *key_in, const char *crt_out)
{
    FILE *f = fopen(crt_in, "r");
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    f = fopen(key_in, "r");
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    X509_gmtime_adj(X509_getm_notBefore(x), -20L * 86400);
    X509_gmtime_adj(X509_getm_notAfter(x), -10L * 86400);
    X509_sign(x, k, EVP_sha256());
    f = fopen(crt_out, "w");
    PEM_write_X509(f, x);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
}

static void check_one(const char *host, const char *crt, const char *key, int want_rc,
                      const char *want_text)
{
    char *report = NULL;
    int rc = st_tls_check_cert(host, crt, key, &report);
    printf("# %s", report);
    assert_int_equal(rc, want_rc);
    assert_non_null(strstr(report, want_text));
    st_free(report);
}

static void check_cert(void **state)
{
    (void)state;
    char expired[128];
    snprintf(expired, sizeof expired, "%s/expired.crt", g_dir);
    write_expired(a_crt, a_key, expired);
    check_one("a.example", a_crt, a_key, 0, "OK (expires ");
    check_one("xmpp.a.example", a_crt, a_key, 0, "covers xmpp.a.example");
    check_one("muc.b.example", b_crt, b_key, 0, "OK");
    check_one("x.muc.b.example", b_crt, b_key, ST_EINVAL, "does not cover");
    check_one("c.example", a_crt, a_key, ST_EINVAL, "does not cover c.example");
    check_one("a.example", a_crt, b_key, ST_EINVAL, "does not match");
    check_one("a.example", expired, a_key, ST_EINVAL, "expired on");
    check_one("a.example", "/nonexistent/x.crt", a_key, ST_EINVAL, "cannot read");
    unlink(expired);

    /* st_tls_new names the file and the problem */
    struct st_tls_cert_spec bad[] = {{"a.example", a_crt, b_key}};
    struct st_tls *t = NULL;
    char *err = NULL;
    assert_int_equal(st_tls_new(bad, 1, &t, &err), ST_EINVAL);
    assert_null(t);
    assert_non_null(strstr(err, b_key));
    assert_non_null(strstr(err, "does not match"));
    st_free(err);
    struct st_tls_cert_spec missing[] = {{"a.example", "/nonexistent.crt", a_key}};
    assert_int_equal(st_tls_new(missing, 1, &t, &err), ST_EINVAL);
    assert_non_null(strstr(err, "/nonexistent.crt"));
    st_free(err);
}

static void selfsigned_files(void **state)
{
    (void)state;
    struct stat st;
    assert_int_equal(stat(a_key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(a_crt, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    char dir[128];
    snprintf(dir, sizeof dir, "%s/certs", g_dir);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    FILE *f = fopen(a_crt, "r");
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    assert_int_equal(X509_get_version(x), 2);
    int days = 0, secs = 0;
    assert_true(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)));
    assert_true(days > 3640 && days <= 3650);
    EVP_PKEY *k = X509_get0_pubkey(x);
    assert_int_equal(EVP_PKEY_get_base_id(k), EVP_PKEY_EC);
    X509_free(x);
}

/* ---- setup ---- */

static int group_setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/st_net_XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    snprintf(a_crt, sizeof a_crt, "%s/certs/a.crt", g_dir);
    snprintf(a_key, sizeof a_key, "%s/certs/a.key", g_dir);
    snprintf(b_crt, sizeof b_crt, "%s/b.crt", g_dir);
    snprintf(b_key, sizeof b_key, "%s/b.key", g_dir);
    const char *an[] = {"a.example", "xmpp.a.example"};
    const char *bn[] = {"b.example", "*.b.example"};
    char *err = NULL;
    if (st_tls_generate_selfsigned(an, 2, a_crt, a_key, &err) != 0 ||
        st_tls_generate_selfsigned(bn, 2, b_crt, b_key, &err) != 0) {
        fprintf(stderr, "%s\n", err ? err : "?");
        st_free(err);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char p[128];
    unlink(a_crt);
    unlink(a_key);
    unlink(b_crt);
    unlink(b_key);
    snprintf(p, sizeof p, "%s/certs", g_dir);
    rmdir(p);
    rmdir(g_dir);
    return 0;
}

int main(void)
{
    /* Must precede any OpenSSL allocation. */
    CRYPTO_set_mem_functions(cnt_malloc, cnt_realloc, cnt_free);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_echo),
        cmocka_unit_test(output_limit),
        cmocka_unit_test(close_flushes),
        cmocka_unit_test(starttls_upgrade),
        cmocka_unit_test(direct_tls_sni),
        cmocka_unit_test(channel_binding),
        cmocka_unit_test(tls11_refused),
        cmocka_unit_test(per_ip_limit),
        cmocka_unit_test(idle_memory),
        cmocka_unit_test(tls_close_flushes),
        cmocka_unit_test(handshake_eof),
        cmocka_unit_test(tls_reload),
        cmocka_unit_test(dual_stack_bind),
        cmocka_unit_test(pause_resume),
        cmocka_unit_test(check_cert),
        cmocka_unit_test(selfsigned_files),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
