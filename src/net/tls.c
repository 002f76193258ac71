/* TLS configuration on OpenSSL 3: one SSL_CTX per virtual host, the first
 * being the default, with the host's certificate picked from the client's
 * SNI (RFC 6066 §3) in the servername callback. Policy follows RFC 7590 and
 * RFC 9325 §4: TLS 1.2 minimum, TLS 1.3 preferred, TLS 1.2 suites limited to
 * ECDHE with AES-GCM or ChaCha20-Poly1305, no compression (RFC 9325 §3.3),
 * no renegotiation, no session resumption state on the server (no tickets,
 * cache off) so nothing long-lived needs key rotation. ALPN accepts
 * "xmpp-client" (XEP-0368 §3) and "http/1.1". Also the certificate tools for
 * the CLI: a self-signed EC P-256 certificate for first start and the
 * `starling check` report, with host matching per RFC 6125 §6.4 (SAN
 * dNSName, one whole left-most wildcard label, CN only without SANs). */
#include "net/tls.h"

#include "base/buf.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define TLS12_CIPHERS                                                                          \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                               \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                               \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS_GROUPS "X25519:P-256:P-384"

struct st_tls {
    unsigned refs;
    size_t n;
    SSL_CTX **ctx; /* one per host; ctx[0] is the default and the one SSL objects start with */
    char **hosts;
};

/* Formats the most recent OpenSSL error reason (no secrets: reasons are library text). */
static const char *ssl_reason(char *out, size_t outlen)
{
    unsigned long e = ERR_peek_last_error();
    if (!e) {
        snprintf(out, outlen, "unknown error");
        return out;
    }
    const char *r = ERR_reason_error_string(e);
    if (r)
        snprintf(out, outlen, "%s", r);
    else
        ERR_error_string_n(e, out, outlen);
    return out;
}

static char *errf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *errf(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return st_strdup(msg);
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    static const unsigned char ours[] = "\x0bxmpp-client\x08http/1.1";
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof ours - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* proceed without ALPN rather than fail */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static int servername_cb(SSL *ssl, int *al, void *arg)
{
    (void)al;
    struct st_tls *t = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name || t->n < 2)
        return SSL_TLSEXT_ERR_OK;
    size_t pick = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (strcasecmp(t->hosts[i], name) == 0) {
            pick = i;
            goto found;
        }
    }
    /* A subdomain (conference.example.org) may be served by a wildcard certificate. */
    for (size_t i = 0; i < t->n; i++) {
        X509 *x = SSL_CTX_get0_certificate(t->ctx[i]);
        if (x && X509_check_host(x, name, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1) {
            pick = i;
            goto found;
        }
    }
    return SSL_TLSEXT_ERR_OK; /* unknown name: the default certificate */
found:
    if (pick != 0)
        SSL_set_SSL_CTX(ssl, t->ctx[pick]);
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *make_ctx(struct st_tls *t)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* Idle connections give their 16 KiB record buffers back. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 0);
    if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 ||
        SSL_CTX_set1_groups_list(ctx, TLS_GROUPS) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* SSL_set_SSL_CTX switches these too, so every host's context carries them. */
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, t);
    return ctx;
}

static void tls_free(struct st_tls *t)
{
    for (size_t i = 0; i < t->n; i++) {
        SSL_CTX_free(t->ctx[i]);
        st_free(t->hosts[i]);
    }
    st_free(t->ctx);
    st_free(t->hosts);
    st_free(t);
}

int st_tls_new(const struct st_tls_cert_spec *certs, size_t n, struct st_tls **out, char **err)
{
    *out = NULL;
    if (err)
        *err = NULL;
    if (n == 0) {
        if (err)
            *err = st_strdup("TLS: no certificates configured");
        return ST_EINVAL;
    }
    struct st_tls *t = ST_NEW(struct st_tls);
    t->refs = 1;
    t->ctx = st_calloc(n, sizeof *t->ctx);
    t->hosts = st_calloc(n, sizeof *t->hosts);
    char reason[256];
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        const struct st_tls_cert_spec *s = &certs[i];
        ERR_clear_error();
        SSL_CTX *ctx = make_ctx(t);
        if (!ctx) {
            rc = ST_EIO;
            if (err)
                *err = errf("TLS: cannot create context: %s", ssl_reason(reason, sizeof reason));
            goto fail;
        }
        t->ctx[i] = ctx;
        t->hosts[i] = st_strdup(s->host);
        t->n = i + 1;
        if (access(s->cert_path, R_OK) != 0) {
            rc = ST_EINVAL;
            if (err)
                *err = errf("TLS: certificate %s: %s", s->cert_path, strerror(errno));
            goto fail;
        }
        if (SSL_CTX_use_certificate_chain_file(ctx, s->cert_path) != 1) {
            rc = ST_EINVAL;
            if (err)
                *err = errf("TLS: certificate %s: %s", s->cert_path,
                            ssl_reason(reason, sizeof reason));
            goto fail;
        }
        if (access(s->key_path, R_OK) != 0) {
            rc = ST_EINVAL;
            if (err)
                *err = errf("TLS: key %s: %s", s->key_path, strerror(errno));
            goto fail;
        }
        FILE *kf = fopen(s->key_path, "r");
        EVP_PKEY *key = kf ? PEM_read_PrivateKey(kf, NULL, NULL, NULL) : NULL;
        if (kf)
            fclose(kf);
        if (!key) {
            rc = ST_EINVAL;
            if (err)
                *err = errf("TLS: key %s: not a PEM private key: %s", s->key_path,
                            ssl_reason(reason, sizeof reason));
            goto fail;
        }
        /* Checked before use so the message says which files disagree. */
        int match = X509_check_private_key(SSL_CTX_get0_certificate(ctx), key) == 1 &&
                    SSL_CTX_use_PrivateKey(ctx, key) == 1;
        EVP_PKEY_free(key);
        if (!match || SSL_CTX_check_private_key(ctx) != 1) {
            rc = ST_EINVAL;
            if (err)
                *err = errf("TLS: key %s does not match certificate %s", s->key_path, s->cert_path);
            goto fail;
        }
    }
    ERR_clear_error();
    *out = t;
    return 0;
fail:
    ERR_clear_error();
    tls_free(t);
    return rc;
}

struct st_tls *st_tls_ref(struct st_tls *t)
{
    if (t)
        t->refs++;
    return t;
}

void st_tls_unref(struct st_tls *t)
{
    if (t && --t->refs == 0)
        tls_free(t);
}

struct ssl_ctx_st *st_tls_ssl_ctx(struct st_tls *t)
{
    return t->ctx[0];
}

/* ---- self-signed generation ---- */

static int mkdir_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path)
        return 0;
    char dir[4096];
    size_t len = (size_t)(slash - path);
    if (len >= sizeof dir)
        return -1;
    memcpy(dir, path, len);
    dir[len] = '\0';
    /* Create each missing component, so a fresh data dir works. */
    for (size_t i = 1; i <= len; i++) {
        if (dir[i] == '/' || dir[i] == '\0') {
            char c = dir[i];
            dir[i] = '\0';
            if (mkdir(dir, 0700) != 0 && errno != EEXIST)
                return -1;
            dir[i] = c;
        }
    }
    return 0;
}

static int write_pem(const char *path, mode_t mode, X509 *x, EVP_PKEY *k)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    if (fchmod(fd, mode) != 0) {
        close(fd);
        return -1;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return -1;
    }
    int ok = x ? PEM_write_X509(f, x) : PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    if (fclose(f) != 0)
        ok = 0;
    if (!ok)
        errno = EIO;
    return ok ? 0 : -1;
}

static int add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

int st_tls_generate_selfsigned(const char *const *names, size_t n, const char *cert_path,
                               const char *key_path, char **err)
{
    if (err)
        *err = NULL;
    if (n == 0 || !names[0] || !*names[0]) {
        if (err)
            *err = st_strdup("TLS: self-signed certificate needs at least one name");
        return ST_EINVAL;
    }
    ERR_clear_error();
    int rc = ST_EIO;
    char reason[256];
    X509 *x = NULL;
    BIGNUM *bn = NULL;
    struct st_buf san;
    st_buf_init(&san, 65536);
    EVP_PKEY *k = EVP_EC_gen("P-256");
    if (!k)
        goto ssl_fail;
    x = X509_new();
    if (!x || !X509_set_version(x, 2))
        goto ssl_fail;
    bn = BN_new();
    /* 127 random bits: positive and within RFC 5280's 20 octets. */
    if (!bn || !BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
        !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
        goto ssl_fail;
    if (!X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), 3650, 0, NULL))
        goto ssl_fail;
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)names[0],
                                    -1, -1, 0) ||
        !X509_set_issuer_name(x, name) || !X509_set_pubkey(x, k))
        goto ssl_fail;
    for (size_t i = 0; i < n; i++) {
        if (strchr(names[i], ',')) {
            rc = ST_EINVAL;
            if (err)
                *err = errf("TLS: invalid certificate name %s", names[i]);
            goto out;
        }
        if (st_buf_printf(&san, "%sDNS:%s", i ? "," : "", names[i]) != 0) {
            rc = ST_ELIMIT;
            goto out;
        }
    }
    if (add_ext(x, NID_subject_alt_name, san.data) ||
        add_ext(x, NID_basic_constraints, "CA:FALSE") ||
        add_ext(x, NID_key_usage, "critical,digitalSignature,keyAgreement") ||
        add_ext(x, NID_ext_key_usage, "serverAuth,clientAuth") ||
        add_ext(x, NID_subject_key_identifier, "hash"))
        goto ssl_fail;
    if (!X509_sign(x, k, EVP_sha256()))
        goto ssl_fail;
    if (mkdir_parent(cert_path) != 0 || mkdir_parent(key_path) != 0) {
        if (err)
            *err = errf("TLS: cannot create directory for %s: %s", cert_path, strerror(errno));
        goto out;
    }
    if (write_pem(key_path, 0600, NULL, k) != 0) {
        if (err)
            *err = errf("TLS: cannot write key %s: %s", key_path, strerror(errno));
        goto out;
    }
    if (write_pem(cert_path, 0644, x, NULL) != 0) {
        if (err)
            *err = errf("TLS: cannot write certificate %s: %s", cert_path, strerror(errno));
        goto out;
    }
    rc = 0;
    goto out;
ssl_fail:
    if (err)
        *err = errf("TLS: generating certificate failed: %s", ssl_reason(reason, sizeof reason));
out:
    ERR_clear_error();
    st_buf_free(&san);
    BN_free(bn);
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}

/* ---- `starling check` ---- */

static void fmt_date(const ASN1_TIME *t, char *out, size_t outlen)
{
    struct tm tm;
    if (!t || !ASN1_TIME_to_tm(t, &tm) || strftime(out, outlen, "%Y-%m-%d", &tm) == 0)
        snprintf(out, outlen, "?");
}

/* Lists the dNSNames (or the CN when there are none) for the report. */
static void list_names(X509 *x, struct st_buf *b)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int count = 0;
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_DNS)
            continue;
        const ASN1_STRING *s = g->d.dNSName;
        st_buf_printf(b, "%s%.*s", count++ ? ", " : "", ASN1_STRING_length(s),
                      (const char *)ASN1_STRING_get0_data(s));
    }
    GENERAL_NAMES_free(gens);
    if (count == 0) {
        char cn[256];
        if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn) > 0)
            st_buf_printf(b, "CN %s", cn);
        else
            st_buf_puts(b, "none");
    }
}

/* Reads the first PEM certificate (key false) or private key (key true) of path for
 * st_tls_check_cert. Returns a new X509 * or EVP_PKEY * respectively; NULL after appending
 * the reason, "HOST: certificate|key PATH: ...", to r. */
static void *read_pem(struct st_buf *r, const char *host, bool key, const char *path)
{
    const char *what = key ? "key" : "certificate";
    FILE *f = fopen(path, "r");
    if (!f) {
        st_buf_printf(r, "%s: %s %s: cannot read: %s\n", host, what, path, strerror(errno));
        return NULL;
    }
    void *obj = key ? (void *)PEM_read_PrivateKey(f, NULL, NULL, NULL)
                    : (void *)PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!obj) {
        char reason[256];
        st_buf_printf(r, "%s: %s %s: not a PEM %s: %s\n", host, what, path,
                      key ? "private key" : "certificate", ssl_reason(reason, sizeof reason));
    }
    return obj;
}

int st_tls_check_cert(const char *host, const char *cert_path, const char *key_path,
                      char **report)
{
    struct st_buf r;
    st_buf_init(&r, 65536);
    int rc = ST_EINVAL;
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    ERR_clear_error();

    x = read_pem(&r, host, false, cert_path);
    if (!x)
        goto out;
    k = read_pem(&r, host, true, key_path);
    if (!k)
        goto out;
    if (X509_check_private_key(x, k) != 1) {
        st_buf_printf(&r, "%s: key %s does not match certificate %s\n", host, key_path, cert_path);
        goto out;
    }
    char nb[32], na[32];
    fmt_date(X509_get0_notBefore(x), nb, sizeof nb);
    fmt_date(X509_get0_notAfter(x), na, sizeof na);
    if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0) {
        st_buf_printf(&r, "%s: certificate %s: expired on %s\n", host, cert_path, na);
        goto out;
    }
    if (X509_cmp_current_time(X509_get0_notBefore(x)) >= 0) {
        st_buf_printf(&r, "%s: certificate %s: not valid before %s\n", host, cert_path, nb);
        goto out;
    }
    /* RFC 6125 §6.4.3: only a whole left-most wildcard label; CN only without dNSName SANs. */
    if (X509_check_host(x, host, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) != 1) {
        st_buf_printf(&r, "%s: certificate %s: does not cover %s (names: ", host, cert_path, host);
        list_names(x, &r);
        st_buf_puts(&r, ")\n");
        goto out;
    }
    int days = 0, secs = 0;
    if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)) && days < 30)
        st_buf_printf(&r, "%s: certificate %s: warning: expires in %d days (%s)\n", host, cert_path,
                      days, na);
    st_buf_printf(&r, "%s: certificate %s: OK (expires %s, covers %s)\n", host, cert_path, na,
                  host);
    rc = 0;
out:
    ERR_clear_error();
    X509_free(x);
    EVP_PKEY_free(k);
    *report = st_buf_take(&r);
    return rc;
}
