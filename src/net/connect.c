/* Outgoing connections and client-side TLS (RFC 6120 §5.4.3.3 STARTTLS as
 * the initiating entity, XEP-0368 direct TLS with ALPN "xmpp-server"), plus
 * the certificate judgement s2s needs on both sides (RFC 6125 §6: the peer's
 * chain against the system store and configured CAs, then the domain as a
 * DNS-ID or, per RFC 6120 §13.7.1.4, as an XmppAddr otherName SAN). An
 * outgoing connection is an ordinary struct st_conn: it gets a private,
 * server-less struct st_listener of its own (read buffers, flush list),
 * which is freed with the connection through the usual listener reference
 * count, so conn.c's I/O, TLS record handling and deferred close apply
 * unchanged, including its in-memory TLS BIO (st_conn__ssl_new). */
#include "net/connect.h"

#include "base/err.h"
#include "base/log.h"
#include "base/map.h"
#include "base/mem.h"
#include "net/conn_int.h"
#include "net/tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define TLS12_CIPHERS                                                                          \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                               \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                               \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

struct client_cert {
    X509 *cert;
    EVP_PKEY *key;
    STACK_OF(X509) *chain;
};

struct st_tls_client {
    unsigned refs;
    SSL_CTX *ctx;
    X509_STORE *store;
    struct st_map certs; /* local domain -> struct client_cert* */
};

struct st_connect_req {
    uv_connect_t creq;
    uv_timer_t timer;
    struct st_conn *c;
    struct st_tls_client *tls;
    char *sni, *local_domain;
    st_connect_cb cb;
    void *ud;
    bool cancelled, timed_out, done;
    bool failed_now; /* uv_tcp_connect itself failed: no connect_cb will come */
};

/* ---- client TLS configuration ---- */

static char *errf2(const char *what, const char *path)
{
    char msg[512];
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(msg, sizeof msg, "%s %s: %s", what, path, r ? r : "cannot load");
    ERR_clear_error();
    return st_strdup(msg);
}

int st_tls_client_new(const char *const *ca_files, size_t n, struct st_tls_client **out,
                      char **err)
{
    *out = NULL;
    if (err)
        *err = NULL;
    ERR_clear_error();
    struct st_tls_client *t = ST_NEW(struct st_tls_client);
    t->refs = 1;
    st_map_init(&t->certs);
    t->store = X509_STORE_new();
    t->ctx = SSL_CTX_new(TLS_client_method());
    if (!t->store || !t->ctx) {
        if (err)
            *err = st_strdup("TLS: cannot create client context");
        st_tls_client_unref(t);
        return ST_EIO;
    }
    /* The system store by hashed directory (looked up per issuer when a peer needs it),
     * not the bundle file: parsing ~150 certificates at start cost ~70 ms and ~1 MiB kept
     * resident whether federation is used or not. A missing store is not fatal: configured
     * CAs may be all a private federation needs. */
    const char *dir = getenv(X509_get_default_cert_dir_env());
    X509_STORE_load_path(t->store, dir && *dir ? dir : X509_get_default_cert_dir());
    ERR_clear_error();
    for (size_t i = 0; i < n; i++) {
        if (X509_STORE_load_file(t->store, ca_files[i]) != 1) {
            if (err)
                *err = errf2("s2s.ca_files:", ca_files[i]);
            st_tls_client_unref(t);
            return ST_EINVAL;
        }
    }
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(t->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(t->ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_cipher_list(t->ctx, TLS12_CIPHERS);
    /* The s2s layer judges the certificate after the handshake (st_conn_verify_peer): an
     * untrusted peer may still be acceptable through dialback for allowlisted domains. */
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_NONE, NULL);
    *out = t;
    return 0;
}

static void free_cert(struct client_cert *cc)
{
    if (!cc)
        return;
    X509_free(cc->cert);
    EVP_PKEY_free(cc->key);
    sk_X509_pop_free(cc->chain, X509_free);
    st_free(cc);
}

int st_tls_client_add_cert(struct st_tls_client *t, const char *domain, const char *cert_path,
                           const char *key_path, char **err)
{
    if (err)
        *err = NULL;
    ERR_clear_error();
    struct client_cert *cc = ST_NEW(struct client_cert);
    cc->chain = sk_X509_new_null();
    FILE *f = fopen(cert_path, "r");
    if (f) {
        cc->cert = PEM_read_X509(f, NULL, NULL, NULL);
        X509 *x;
        while (cc->cert && (x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL)
            sk_X509_push(cc->chain, x);
        fclose(f);
    }
    ERR_clear_error();
    f = fopen(key_path, "r");
    if (f) {
        cc->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
    }
    if (!cc->cert || !cc->key || X509_check_private_key(cc->cert, cc->key) != 1) {
        if (err)
            *err = errf2("TLS client certificate", cert_path);
        free_cert(cc);
        return ST_EINVAL;
    }
    free_cert(st_map_set(&t->certs, domain, cc));
    return 0;
}

bool st_tls_client_cert_names(struct st_tls_client *t, const char *cert_domain,
                              const char *name)
{
    struct client_cert *cc = t && cert_domain ? st_map_get(&t->certs, cert_domain) : NULL;
    return cc && st_cert_names_domain(cc->cert, name);
}

struct st_tls_client *st_tls_client_ref(struct st_tls_client *t)
{
    if (t)
        t->refs++;
    return t;
}

void st_tls_client_unref(struct st_tls_client *t)
{
    if (!t || --t->refs > 0)
        return;
    for (struct st_map_entry *e = st_map_first(&t->certs); e; e = st_map_next(&t->certs, e))
        free_cert(e->value);
    st_map_free(&t->certs);
    SSL_CTX_free(t->ctx);
    X509_STORE_free(t->store);
    st_free(t);
}

static int start_client_tls(struct st_conn *c, struct st_tls_client *t, const char *sni,
                            const char *local_domain, bool direct)
{
    if (c->closing || c->uv_closing)
        return ST_ECLOSED;
    if (c->ssl || !t)
        return ST_EIO;
    SSL *ssl = st_conn__ssl_new(c, t->ctx);
    if (!ssl)
        return ST_EIO;
    if (sni)
        SSL_set_tlsext_host_name(ssl, sni);
    if (direct) {
        static const unsigned char alpn[] = "\x0bxmpp-server";
        SSL_set_alpn_protos(ssl, alpn, sizeof alpn - 1);
    }
    struct client_cert *cc = local_domain ? st_map_get(&t->certs, local_domain) : NULL;
    if (cc && SSL_use_cert_and_key(ssl, cc->cert, cc->key, cc->chain, 1) != 1)
        st_log_warn("net", "cannot offer the certificate of %s to %s", local_domain, c->peer);
    SSL_set_connect_state(ssl);
    c->ssl = ssl;
    /* The ClientHello goes out now; the server's answer drives the rest from tls_feed. */
    int r = SSL_do_handshake(ssl);
    if (r != 1) {
        int e = SSL_get_error(ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            ERR_clear_error();
            return ST_EIO;
        }
    }
    ERR_clear_error();
    if (c->out.len)
        st_conn__mark_dirty(c);
    return 0;
}

int st_conn_starttls_client(struct st_conn *c, struct st_tls_client *tls, const char *sni,
                            const char *local_domain)
{
    return start_client_tls(c, tls, sni, local_domain, false);
}

static int accept_any(int ok, X509_STORE_CTX *ctx)
{
    (void)ok;
    (void)ctx;
    return 1; /* judged after the handshake by st_conn_verify_peer */
}

int st_conn_request_peer_cert(struct st_conn *c)
{
    if (!c->ssl || c->hs_done)
        return ST_EIO;
    SSL_set_verify(c->ssl, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, accept_any);
    return 0;
}

/* ---- connect ---- */

static void req_timer_closed(uv_handle_t *h)
{
    struct st_connect_req *r = h->data;
    st_tls_client_unref(r->tls);
    st_free(r->sni);
    st_free(r->local_domain);
    st_free(r);
}

static void req_finish(struct st_connect_req *r)
{
    r->done = true;
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, req_timer_closed);
}

static void connect_cb(uv_connect_t *creq, int status)
{
    struct st_connect_req *r = creq->data;
    struct st_conn *c = r->c;
    if (status == 0 && !r->cancelled) {
        uv_tcp_nodelay(&c->tcp, 1);
        struct sockaddr_storage ss;
        int len = sizeof ss;
        if (uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
            c->local_port = ntohs(ss.ss_family == AF_INET6
                                      ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                      : ((struct sockaddr_in *)&ss)->sin_port);
        if (r->tls && start_client_tls(c, r->tls, r->sni, r->local_domain, true) != 0) {
            st_log_info("net", "TLS setup towards %s failed", c->peer);
            st_conn__reject(c);
            r->cb(r->ud, NULL, ST_EIO);
            req_finish(r);
            return;
        }
        r->cb(r->ud, c, 0);
        if (!c->h && !c->closing && !c->uv_closing)
            st_conn__reject(c);
        else
            st_conn__start(c);
        req_finish(r);
        return;
    }
    if (!c->uv_closing)
        st_conn__reject(c);
    if (!r->cancelled) {
        int err = r->timed_out ? ST_EAGAIN : ST_EIO;
        st_log_debug("net", "connect to %s failed: %s", c->peer,
                     r->timed_out ? "timed out" : uv_strerror(status));
        r->cb(r->ud, NULL, err);
    }
    req_finish(r);
}

static void timeout_cb(uv_timer_t *t)
{
    struct st_connect_req *r = t->data;
    if (r->failed_now) {
        st_conn__reject(r->c);
        if (!r->cancelled)
            r->cb(r->ud, NULL, ST_EIO);
        req_finish(r);
        return;
    }
    r->timed_out = true;
    /* Closing the handle cancels the connect request: connect_cb reports. */
    st_conn__reject(r->c);
}

int st_conn_connect(uv_loop_t *loop, const char *addr, int port, struct st_tls_client *tls,
                    const char *sni, const char *local_domain, st_connect_cb cb, void *ud,
                    uint64_t timeout_ms, struct st_connect_req **req)
{
    if (req)
        *req = NULL;
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } sa;
    bool v6 = strchr(addr, ':') != NULL;
    if ((v6 ? uv_ip6_addr(addr, port, &sa.in6) : uv_ip4_addr(addr, port, &sa.in4)) != 0 ||
        port < 1 || port > 65535)
        return ST_EINVAL;
    /* A listener without a server socket: the connection's shared buffers and flush list.
     * Its one reference belongs to the connection; listener.c frees it with the last. */
    struct st_listener *l = ST_NEW(struct st_listener);
    l->loop = loop;
    l->refs = 1;
    st_map_init(&l->per_ip);
    uv_prepare_init(loop, &l->flush);
    l->flush.data = l;
    l->port = 0;
    struct st_conn *c = ST_NEW(struct st_conn);
    st_conn__init(c, l);
    snprintf(c->peer, sizeof c->peer, "%s", addr);
    uv_tcp_init(loop, &c->tcp);
    struct st_connect_req *r = ST_NEW(struct st_connect_req);
    r->c = c;
    r->tls = st_tls_client_ref(tls);
    r->sni = st_strdup(sni);
    r->local_domain = st_strdup(local_domain);
    r->cb = cb;
    r->ud = ud;
    r->creq.data = r;
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    int rc = uv_tcp_connect(&r->creq, &c->tcp, &sa.sa, connect_cb);
    if (rc != 0) {
        /* Reported asynchronously like any other failure. */
        st_log_debug("net", "connect to %s: %s", addr, uv_strerror(rc));
        r->failed_now = true;
        uv_timer_start(&r->timer, timeout_cb, 0, 0);
    } else {
        uv_timer_start(&r->timer, timeout_cb, timeout_ms ? timeout_ms : 10000, 0);
    }
    if (req)
        *req = r;
    return 0;
}

void st_connect_cancel(struct st_connect_req *req)
{
    if (!req || req->done)
        return;
    req->cancelled = true;
    if (!req->failed_now && !req->c->uv_closing)
        st_conn__reject(req->c);
}

/* ---- certificate judgement ---- */

const char *st_peer_cert_str(enum st_peer_cert r)
{
    switch (r) {
    case ST_PEER_CERT_OK: return "trusted";
    case ST_PEER_CERT_NONE: return "no certificate";
    case ST_PEER_CERT_UNTRUSTED: return "untrusted certificate";
    case ST_PEER_CERT_NAME_MISMATCH: return "certificate for another name";
    }
    return "?";
}

/* RFC 6120 §13.7.1.4: id-on-xmppAddr (1.3.6.1.5.5.7.8.5), an otherName SAN holding a
 * UTF8String JID. For a server only a bare domain JID identifies it; domains compare
 * case-insensitively (our domains are already in their A-label/lowercase form). */
static bool xmppaddr_matches(X509 *cert, const char *domain)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    if (!gens)
        return false;
    ASN1_OBJECT *xmpp = OBJ_txt2obj("1.3.6.1.5.5.7.8.5", 1);
    bool found = false;
    size_t dl = strlen(domain);
    for (int i = 0; xmpp && !found && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_OTHERNAME || OBJ_cmp(g->d.otherName->type_id, xmpp) != 0)
            continue;
        const ASN1_TYPE *v = g->d.otherName->value;
        if (!v || v->type != V_ASN1_UTF8STRING)
            continue;
        const unsigned char *p = ASN1_STRING_get0_data(v->value.utf8string);
        int n = ASN1_STRING_length(v->value.utf8string);
        /* An embedded NUL would let "a.test\0.evil" pass a C-string compare: exact length. */
        found = n >= 0 && (size_t)n == dl && memchr(p, '\0', (size_t)n) == NULL &&
                strncasecmp((const char *)p, domain, dl) == 0;
    }
    ASN1_OBJECT_free(xmpp);
    GENERAL_NAMES_free(gens);
    return found;
}

bool st_cert_names_domain(struct x509_st *cert, const char *domain)
{
    if (!cert || !domain || !domain[0])
        return false;
    unsigned flags = X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS;
    /* RFC 6125 §6.4.4: no CN-ID match once any SAN identifier we support is presented; OpenSSL
     * only skips the CN for dNSName SANs, so say so for an XmppAddr-only certificate too. */
    if (X509_get_ext_by_NID(cert, NID_subject_alt_name, -1) >= 0)
        flags |= X509_CHECK_FLAG_NEVER_CHECK_SUBJECT;
    if (X509_check_host(cert, domain, 0, flags, NULL) == 1)
        return true;
    return xmppaddr_matches(cert, domain);
}

enum st_peer_cert st_conn_verify_peer(struct st_conn *c, struct st_tls_client *t,
                                      const char *domain, char *why, size_t whylen)
{
    if (why && whylen)
        why[0] = '\0';
    if (!c || !c->ssl || !c->hs_done || !t || !domain)
        return ST_PEER_CERT_NONE;
    X509 *leaf = SSL_get0_peer_certificate(c->ssl);
    if (!leaf)
        return ST_PEER_CERT_NONE;
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(c->ssl);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    enum st_peer_cert res = ST_PEER_CERT_UNTRUSTED;
    ERR_clear_error();
    if (ctx && X509_STORE_CTX_init(ctx, t->store, leaf, chain) == 1) {
        /* No purpose check: many server certificates carry serverAuth only and are used
         * as client certificates by every federating server. */
        if (X509_verify_cert(ctx) == 1) {
            if (st_cert_names_domain(leaf, domain))
                res = ST_PEER_CERT_OK;
            else
                res = ST_PEER_CERT_NAME_MISMATCH;
        } else if (why && whylen) {
            snprintf(why, whylen, "%s",
                     X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
        }
    }
    X509_STORE_CTX_free(ctx);
    ERR_clear_error();
    if (why && whylen && !why[0])
        snprintf(why, whylen, "%s", st_peer_cert_str(res));
    return res;
}
