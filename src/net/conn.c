/* Connections: a libuv TCP stream, an optional server-side TLS layer and a
 * bounded, coalescing output queue. TLS runs on OpenSSL through a small
 * in-memory BIO: reads hand OpenSSL the bytes just received (straight from
 * the listener's shared read buffer) and writes append records to the
 * connection's output queue, so all socket I/O stays on the loop thread and
 * an idle connection owns no buffers at all (SSL_MODE_RELEASE_BUFFERS frees
 * OpenSSL's own). STARTTLS (RFC 6120 §5.4.3.3): bytes queued before the
 * switch leave in plaintext, everything after is encrypted. Output is
 * gathered during a loop tick and written once per connection before the
 * loop polls again. Channel binding per RFC 9266 (tls-exporter, TLS 1.3) and
 * RFC 5929 §4 (tls-server-end-point). Close is deferred: on_close runs from
 * the uv_close callback, exactly once, and the connection is freed after it
 * returns. */
#include "net/conn_int.h"

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "net/tls.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* OpenSSL heap held by an idle server SSL after the handshake with SSL_MODE_RELEASE_BUFFERS
 * (SSL object, session, cipher contexts; measured by tests/unit/test_net.c with a counting
 * allocator on OpenSSL 3.0, rounded up). */
#define SSL_IDLE_ESTIMATE 14336
/* The same while the handshake is in progress (transcript, key shares, record buffers). */
#define SSL_HANDSHAKE_ESTIMATE 40960

static void hard_close(struct st_conn *c);
static void close_graceful(struct st_conn *c);

/* The output queue is freed once written, so idle connections hold none. A busy connection
 * gathers several stanzas per loop turn, and growing from the generic 256 bytes cost it
 * four reallocations per write: its queue starts at the size of its previous write instead.
 * (A fixed 4 KiB start did the same for messages but left login waves' transient buffers
 * scattered through the heap: +1 KiB per idle session at 1,000 sessions.) */
static int out_append(struct st_conn *c, const void *data, size_t len)
{
    if (!c->out.data && c->out_hint > len)
        (void)st_buf_space(&c->out, c->out_hint);
    return st_buf_append(&c->out, data, len);
}

/* ---- the in-memory BIO ---- */

static BIO_METHOD *g_bio_method; /* immutable after bio_method_init; shared by all loops */
static pthread_once_t g_bio_once = PTHREAD_ONCE_INIT;

static int bio_write(BIO *b, const char *data, int len)
{
    struct st_conn *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len < 0 || out_append(c, data, (size_t)len) != 0)
        return -1;
    return len;
}

static int bio_read(BIO *b, char *buf, int len)
{
    struct st_conn *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (c->in_len == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = (size_t)len < c->in_len ? (size_t)len : c->in_len;
    memcpy(buf, c->in_ptr, n);
    c->in_ptr += n;
    c->in_len -= n;
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    struct st_conn *c = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return (long)c->in_len;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "starling-conn");
    if (!m)
        return;
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    g_bio_method = m;
}

/* Logs the OpenSSL reason for a TLS failure; reasons are library text, never key material. */
static void log_tls_error(struct st_conn *c, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    st_log_info("net", "%s with %s failed: %s", what, c->peer, r ? r : "connection closed");
    ERR_clear_error();
}

/* ---- output ---- */

static size_t buf_max(size_t limit)
{
    /* Room for TLS record overhead on top of the cap, and for close_notify/alerts. */
    return limit + limit / 8 + 65536;
}

static void prepare_cb(uv_prepare_t *p)
{
    st_conn__flush_all(p->data);
}

void st_conn__mark_dirty(struct st_conn *c)
{
    struct st_listener *l = c->l;
    if (c->dirty || c->uv_closing)
        return;
    c->dirty = 1;
    c->dprev = NULL;
    c->dnext = l->dirty;
    if (l->dirty)
        l->dirty->dprev = c;
    l->dirty = c;
    if (!c->dnext)
        uv_prepare_start(&l->flush, prepare_cb);
}

static void unmark_dirty(struct st_conn *c)
{
    if (!c->dirty)
        return;
    if (c->dprev)
        c->dprev->dnext = c->dnext;
    else
        c->l->dirty = c->dnext;
    if (c->dnext)
        c->dnext->dprev = c->dprev;
    c->dnext = c->dprev = NULL;
    c->dirty = 0;
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    (void)status;
    struct st_conn *c = req->data;
    st_free(req);
    hard_close(c);
}

static void write_cb(uv_write_t *req, int status)
{
    struct st_conn *c = req->data;
    c->writing = 0;
    st_buf_free(&c->inflight);
    if (status < 0) {
        if (status != UV_ECANCELED) {
            st_log_debug("net", "write to %s failed: %s", c->peer, uv_strerror(status));
            if (!c->close_err)
                c->close_err = ST_EIO;
            hard_close(c);
        }
        return;
    }
    if (c->out.len || c->closing)
        st_conn__mark_dirty(c);
}

static void flush(struct st_conn *c)
{
    if (c->uv_closing || c->writing)
        return;
    if (c->out.len == 0) {
        if (c->closing && !c->shutting) {
            c->shutting = 1;
            uv_shutdown_t *req = ST_NEW(uv_shutdown_t);
            req->data = c;
            if (uv_shutdown(req, (uv_stream_t *)&c->tcp, shutdown_cb) != 0) {
                st_free(req);
                hard_close(c);
            }
        }
        return;
    }
    /* The accumulated bytes move to the in-flight slot; new writes start a fresh buffer. */
    c->out_hint = c->out.len > UINT16_MAX ? UINT16_MAX : (uint16_t)c->out.len;
    c->inflight = c->out;
    st_buf_init(&c->out, c->inflight.max);
    uv_buf_t b = uv_buf_init(c->inflight.data, (unsigned)c->inflight.len);
    c->wreq.data = c;
    c->writing = 1;
    int r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
    if (r != 0) {
        c->writing = 0;
        st_buf_free(&c->inflight);
        if (!c->close_err)
            c->close_err = ST_EIO;
        hard_close(c);
    }
}

void st_conn__flush_all(struct st_listener *l)
{
    while (l->dirty) {
        struct st_conn *c = l->dirty;
        unmark_dirty(c);
        flush(c);
    }
    uv_prepare_stop(&l->flush);
}

/* ---- close ---- */

static void close_cb(uv_handle_t *h)
{
    struct st_conn *c = h->data;
    if (c->h && c->h->on_close)
        c->h->on_close(c, c->close_err);
    if (c->ssl)
        SSL_free(c->ssl);
    st_tls_unref(c->tls);
    st_buf_free(&c->out);
    st_buf_free(&c->inflight);
    st_buf_free(&c->hold);
    st_listener__conn_gone(c->l, c);
    st_free(c);
}

static void hard_close(struct st_conn *c)
{
    if (c->uv_closing)
        return;
    c->uv_closing = 1;
    c->reading = 0;
    unmark_dirty(c);
    uv_close((uv_handle_t *)&c->tcp, close_cb);
}

/* Flush what is queued (with close_notify when TLS is up), then shut down and close. */
static void close_graceful(struct st_conn *c)
{
    if (c->closing || c->uv_closing)
        return;
    c->closing = 1;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
    if (c->ssl && c->hs_done && !c->tls_failed) {
        ERR_clear_error();
        SSL_shutdown(c->ssl);
        ERR_clear_error();
    }
    st_buf_free(&c->hold); /* cannot be sent without a finished handshake */
    st_conn__mark_dirty(c);
}

void st_conn_close(struct st_conn *c)
{
    close_graceful(c);
}

void st_conn_abort(struct st_conn *c)
{
    st_buf_free(&c->out);
    st_buf_free(&c->hold);
    hard_close(c);
}

/* ---- input ---- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct st_conn *c = h->data;
    *buf = uv_buf_init(c->l->rbuf, sizeof c->l->rbuf);
}

static void tls_fail(struct st_conn *c, const char *what)
{
    log_tls_error(c, what);
    c->tls_failed = 1;
    if (!c->close_err)
        c->close_err = ST_EIO;
    close_graceful(c); /* sends the alert OpenSSL queued */
}

static void tls_feed(struct st_conn *c, const char *data, size_t len)
{
    c->in_ptr = data;
    c->in_len = len;
    ERR_clear_error();
    if (!c->hs_done) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                tls_fail(c, "TLS handshake");
            goto done;
        }
        c->hs_done = 1;
        st_log_debug("net", "TLS with %s: %s %s", c->peer, SSL_get_version(c->ssl),
                     SSL_get_cipher_name(c->ssl));
        if (c->hold.len) {
            struct st_buf hold = c->hold;
            st_buf_init(&c->hold, hold.max);
            int w = SSL_write(c->ssl, hold.data, (int)hold.len);
            st_buf_free(&hold);
            if (w <= 0) {
                tls_fail(c, "TLS write");
                goto done;
            }
        }
    }
    while (!c->closing && !c->uv_closing) {
        int r = SSL_read(c->ssl, c->l->pbuf, sizeof c->l->pbuf);
        if (r > 0) {
            c->rx_plain += (uint32_t)r;
            if (c->h && c->h->on_read)
                c->h->on_read(c, c->l->pbuf, (size_t)r);
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) /* close_notify */
            close_graceful(c);
        else
            tls_fail(c, "TLS read");
        break;
    }
done:
    c->in_ptr = NULL;
    c->in_len = 0;
    if (c->out.len)
        st_conn__mark_dirty(c);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct st_conn *c = s->data;
    if (nread == 0 || c->uv_closing)
        return;
    if (nread < 0) {
        if (nread != UV_EOF) {
            st_log_debug("net", "read from %s failed: %s", c->peer, uv_strerror((int)nread));
            if (!c->close_err)
                c->close_err = ST_EIO;
            hard_close(c);
            return;
        }
        if (c->ssl && !c->hs_done) {
            st_log_info("net", "TLS handshake with %s failed: connection closed", c->peer);
            c->tls_failed = 1;
            if (!c->close_err)
                c->close_err = ST_EIO;
        }
        close_graceful(c); /* the peer may still read what we owe it */
        return;
    }
    if (c->closing)
        return;
    c->rx_bytes += (uint32_t)nread;
    if (c->ssl)
        tls_feed(c, buf->base, (size_t)nread);
    else if (c->h && c->h->on_read)
        c->h->on_read(c, buf->base, (size_t)nread);
}

/* ---- setup and accessors ---- */

void st_conn__init(struct st_conn *c, struct st_listener *l)
{
    c->l = l;
    c->tcp.data = c;
    c->out_limit = ST_NET_DEFAULT_OUTPUT_LIMIT;
    st_buf_init(&c->out, buf_max(c->out_limit));
    st_buf_init(&c->inflight, buf_max(c->out_limit));
    st_buf_init(&c->hold, buf_max(c->out_limit));
}

void st_conn__start(struct st_conn *c)
{
    if (c->paused || c->closing || c->uv_closing || c->reading)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0)
        c->reading = 1;
    else
        st_conn_abort(c);
}

void st_conn__reject(struct st_conn *c)
{
    c->h = NULL;
    hard_close(c);
}

void st_conn_set_handler(struct st_conn *c, const struct st_conn_handler *h, void *ud)
{
    c->h = h;
    c->ud = ud;
}

void *st_conn_data(const struct st_conn *c)
{
    return c->ud;
}

size_t st_conn_output_pending(const struct st_conn *c)
{
    return c->out.len + c->inflight.len + c->hold.len;
}

void st_conn_set_output_limit(struct st_conn *c, size_t max)
{
    c->out_limit = max;
    c->out.max = c->inflight.max = c->hold.max = buf_max(max);
}

int st_conn_write(struct st_conn *c, const void *data, size_t len)
{
    if (c->closing || c->uv_closing)
        return ST_ECLOSED;
    if (len > c->out_limit || st_conn_output_pending(c) > c->out_limit - len)
        return ST_ELIMIT;
    if (len == 0)
        return 0;
    if (c->ssl && !c->hs_done)
        return st_buf_append(&c->hold, data, len);
    if (c->ssl) {
        ERR_clear_error();
        const char *p = data;
        while (len > 0) {
            int chunk = len > INT_MAX / 2 ? INT_MAX / 2 : (int)len;
            int w = SSL_write(c->ssl, p, chunk);
            if (w <= 0) {
                tls_fail(c, "TLS write");
                return ST_EIO;
            }
            p += w;
            len -= (size_t)w;
        }
    } else {
        int rc = out_append(c, data, len);
        if (rc)
            return rc;
    }
    st_conn__mark_dirty(c);
    return 0;
}

struct ssl_st *st_conn__ssl_new(struct st_conn *c, struct ssl_ctx_st *ctx)
{
    pthread_once(&g_bio_once, bio_method_init);
    if (!g_bio_method || !ctx)
        return NULL;
    ERR_clear_error();
    SSL *ssl = SSL_new(ctx);
    BIO *bio = ssl ? BIO_new(g_bio_method) : NULL;
    if (!bio) {
        SSL_free(ssl);
        log_tls_error(c, "TLS setup");
        return NULL;
    }
    BIO_set_data(bio, c);
    SSL_set_bio(ssl, bio, bio);
    return ssl;
}

int st_conn_starttls(struct st_conn *c, struct st_tls *tls)
{
    if (c->closing || c->uv_closing)
        return ST_ECLOSED;
    if (c->ssl || !tls)
        return ST_EIO;
    SSL *ssl = st_conn__ssl_new(c, st_tls_ssl_ctx(tls));
    if (!ssl)
        return ST_EIO;
    SSL_set_accept_state(ssl);
    c->ssl = ssl;
    c->tls = st_tls_ref(tls);
    return 0;
}

bool st_conn_is_tls(const struct st_conn *c)
{
    return c->ssl != NULL;
}

const char *st_conn_sni(const struct st_conn *c)
{
    return c->ssl ? SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name) : NULL;
}

const char *st_conn_alpn(const struct st_conn *c)
{
    static const char *const known[] = {"xmpp-client", "http/1.1"};
    if (!c->ssl)
        return NULL;
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(c->ssl, &p, &n);
    for (size_t i = 0; p && i < sizeof known / sizeof known[0]; i++) {
        if (strlen(known[i]) == n && memcmp(known[i], p, n) == 0)
            return known[i];
    }
    return NULL;
}

int st_conn_tls_version(const struct st_conn *c)
{
    return c->ssl && c->hs_done ? SSL_version(c->ssl) : 0;
}

int st_conn_channel_binding(struct st_conn *c, const char *type, unsigned char *out, size_t outlen)
{
    if (!c->ssl || !c->hs_done || c->tls_failed)
        return -1;
    if (strcmp(type, "tls-exporter") == 0) {
        /* RFC 9266 §2: defined for TLS 1.3 only (TLS 1.2 exporters lack the extended
         * master secret guarantee without extra checks). */
        static const char label[] = "EXPORTER-Channel-Binding";
        if (SSL_version(c->ssl) != TLS1_3_VERSION || outlen < 32)
            return -1;
        if (SSL_export_keying_material(c->ssl, out, 32, label, sizeof label - 1, NULL, 0, 0) != 1) {
            ERR_clear_error();
            return -1;
        }
        return 32;
    }
    if (strcmp(type, "tls-server-end-point") == 0) {
        /* RFC 5929 §4.1: our certificate hashed with its signature's hash, SHA-256 in place of
         * MD5 or SHA-1; undefined for signatures without a separate hash (Ed25519). */
        X509 *x = SSL_get_certificate(c->ssl);
        int md_nid = NID_undef, pk_nid = NID_undef;
        if (!x || !OBJ_find_sigid_algs(X509_get_signature_nid(x), &md_nid, &pk_nid))
            return -1;
        if (md_nid == NID_md5 || md_nid == NID_sha1)
            md_nid = NID_sha256;
        const EVP_MD *md = md_nid == NID_undef ? NULL : EVP_get_digestbynid(md_nid);
        unsigned int n = 0;
        if (!md || (size_t)EVP_MD_get_size(md) > outlen || !X509_digest(x, md, out, &n)) {
            ERR_clear_error();
            return -1;
        }
        return (int)n;
    }
    return -1;
}

void st_conn_pause(struct st_conn *c)
{
    c->paused = 1;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

void st_conn_resume(struct st_conn *c)
{
    c->paused = 0;
    st_conn__start(c);
}

void st_conn_describe(const struct st_conn *c, char *out, size_t n)
{
    snprintf(out, n,
             "tls=%s reading=%u paused=%u writing=%u out=%zu inflight=%zu hold=%zu read=%" PRIu32
             " tls_plaintext=%" PRIu32 " tls_buffered=%d",
             !c->ssl ? "none" : c->hs_done ? "up" : "handshaking", (unsigned)c->reading,
             (unsigned)c->paused, (unsigned)c->writing, c->out.len, c->inflight.len,
             c->hold.len, c->rx_bytes, c->rx_plain, c->ssl ? SSL_has_pending(c->ssl) : 0);
}

const char *st_conn_peer(const struct st_conn *c)
{
    return c->peer;
}

unsigned st_conn_peer_port(const struct st_conn *c)
{
    return c->peer_port;
}

int st_conn_local_port(const struct st_conn *c)
{
    return c->local_port;
}

size_t st_conn_memory(const struct st_conn *c)
{
    size_t n = sizeof *c + c->out.cap + c->inflight.cap + c->hold.cap;
    if (c->shutting)
        n += sizeof(uv_shutdown_t);
    if (c->ssl)
        n += c->hs_done ? SSL_IDLE_ESTIMATE : SSL_HANDSHAKE_ESTIMATE;
    return n;
}
