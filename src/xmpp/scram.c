/* SCRAM server side (RFC 5802) for SHA-1, SHA-256 (RFC 7677) and SHA-512, on OpenSSL:
 * credential derivation (RFC 5802 §3: PBKDF2 SaltedPassword, ClientKey, StoredKey,
 * ServerKey), dummy credentials for unknown users, the strict parser of the client's
 * messages (RFC 5802 §7 grammar, GS2 header per RFC 5801), channel binding for the -PLUS
 * mechanisms (RFC 5802 §6, data from the transport: tls-exporter RFC 9266,
 * tls-server-end-point RFC 5929) and the proof check; plus strict base64 (RFC 4648 §4) as
 * RFC 6120 §6.4.2 requires. No I/O; no global state but the OpenSSL algorithms, fetched
 * once and then read-only. The SASL layer (RFC 6120 §6) maps results onto <failure/>
 * conditions. Secrets are wiped when an exchange is freed. */
#include "xmpp/scram.h"

#include <limits.h>
#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/mem.h"
#include "base/rand.h"
#include "base/utf8.h"

/* RFC 5802 §5.1 leaves the server nonce length open; 18 bytes = 144 bits, 24 base64 chars. */
#define SERVER_NONCE_BYTES 18
#define MAX_CB_NAME 64
#define MAX_AUTH_MESSAGE (3 * ST_SCRAM_MAX_MSG + 256)

/* OpenSSL 3 looks an algorithm up in its provider store each time one is named through
 * EVP_sha1() or HMAC() (~15k instructions per HMAC() call, about as much as the HMAC of a
 * SCRAM message itself). So the digests, and one keyless HMAC context per hash, are fetched
 * once per process and afterwards only read (EVP_MAC_CTX_dup takes a const source), which any
 * thread may do. This is the module's only global state; it never changes once set. */
static const char *const md_names[ST_SCRAM_NHASH] = {"SHA1", "SHA2-256", "SHA2-512"};
static struct {
    EVP_MD *md[ST_SCRAM_NHASH];
    EVP_MAC_CTX *hmac[ST_SCRAM_NHASH]; /* digest set, no key: copied for each HMAC */
} algs;
static pthread_once_t algs_once = PTHREAD_ONCE_INIT;

static void fetch_algs(void)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
    for (int h = 0; h < ST_SCRAM_NHASH; h++) {
        algs.md[h] = EVP_MD_fetch(NULL, md_names[h], NULL);
        EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
        OSSL_PARAM p[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                           (char *)md_names[h], 0),
                          OSSL_PARAM_construct_end()};
        if (ctx && EVP_MAC_CTX_set_params(ctx, p) != 1) {
            EVP_MAC_CTX_free(ctx);
            ctx = NULL;
        }
        algs.hmac[h] = ctx;
    }
    EVP_MAC_free(mac); /* each context holds its own reference */
    ERR_clear_error(); /* a failed fetch falls back to the by-name calls below */
}

static const EVP_MD *md_of(enum st_scram_hash h)
{
    if ((unsigned)h >= ST_SCRAM_NHASH)
        return NULL;
    pthread_once(&algs_once, fetch_algs);
    if (algs.md[h])
        return algs.md[h];
    switch (h) {
    case ST_SCRAM_SHA1:
        return EVP_sha1();
    case ST_SCRAM_SHA256:
        return EVP_sha256();
    case ST_SCRAM_SHA512:
        return EVP_sha512();
    }
    return NULL;
}

size_t st_scram_digest_len(enum st_scram_hash h)
{
    switch (h) {
    case ST_SCRAM_SHA1:
        return 20;
    case ST_SCRAM_SHA256:
        return 32;
    case ST_SCRAM_SHA512:
        return 64;
    }
    return 0;
}

const char *st_scram_hash_name(enum st_scram_hash h)
{
    switch (h) {
    case ST_SCRAM_SHA1:
        return "SHA-1";
    case ST_SCRAM_SHA256:
        return "SHA-256";
    case ST_SCRAM_SHA512:
        return "SHA-512";
    }
    return "?";
}

/* ---- base64 (RFC 4648 §4) ---- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *st_base64_encode(const unsigned char *in, size_t len)
{
    size_t olen = 4 * ((len + 2) / 3);
    char *out = st_malloc(olen + 1);
    size_t o = 0;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (len - i == 1) {
        unsigned v = (unsigned)in[i] << 16;
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (len - i == 2) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
    return out;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long st_base64_decode(const char *in, size_t len, unsigned char *out, size_t outmax)
{
    if (len % 4 != 0 || len / 4 * 3 > (size_t)LONG_MAX)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        bool last = i + 4 == len;
        int v[4];
        size_t pad = 0;
        for (size_t k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)in[i + k];
            if (c == '=' && last && k >= 2) {
                pad++;
                v[k] = 0;
                continue;
            }
            if (pad) /* data after padding */
                return -1;
            v[k] = b64_value(c);
            if (v[k] < 0)
                return -1;
        }
        /* RFC 4648 §3.5: reject non-canonical encodings (pad bits set). */
        if (pad == 1 && (v[2] & 3))
            return -1;
        if (pad == 2 && (v[1] & 15))
            return -1;
        unsigned w = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 |
                     (unsigned)v[3];
        size_t n = 3 - pad;
        if (o + n > outmax)
            return -1;
        out[o++] = (unsigned char)(w >> 16);
        if (n > 1)
            out[o++] = (unsigned char)(w >> 8);
        if (n > 2)
            out[o++] = (unsigned char)w;
    }
    return (long)o;
}

/* ---- credentials ---- */

static int hmac(enum st_scram_hash h, const void *key, size_t klen, const void *data, size_t dlen,
                unsigned char *out)
{
    size_t dl = st_scram_digest_len(h);
    const EVP_MD *md = md_of(h); /* also runs fetch_algs */
    if (!md)
        return ST_EIO;
    EVP_MAC_CTX *ctx = algs.hmac[h] ? EVP_MAC_CTX_dup(algs.hmac[h]) : NULL;
    if (!ctx) {
        unsigned olen = 0;
        if (!HMAC(md, key, (int)klen, data, dlen, out, &olen))
            return ST_EIO;
        return olen == dl ? 0 : ST_EIO;
    }
    size_t olen = 0;
    /* A NULL key would mean "keep the previous key" to EVP_MAC_init; SCRAM keys never are. */
    int ok = EVP_MAC_init(ctx, key ? key : "", klen, NULL) == 1 &&
             EVP_MAC_update(ctx, data, dlen) == 1 && EVP_MAC_final(ctx, out, &olen, dl) == 1;
    EVP_MAC_CTX_free(ctx); /* cleanses the key schedule */
    if (!ok)
        ERR_clear_error();
    return ok && olen == dl ? 0 : ST_EIO;
}

static int digest(enum st_scram_hash h, const void *data, size_t len, unsigned char *out)
{
    unsigned olen = 0;
    if (EVP_Digest(data, len, out, &olen, md_of(h), NULL) != 1)
        return ST_EIO;
    return olen == st_scram_digest_len(h) ? 0 : ST_EIO;
}

int st_scram_derive(enum st_scram_hash h, const char *password, size_t pwlen,
                    const unsigned char *salt, size_t salt_len, unsigned iterations,
                    struct st_scram_cred *out)
{
    if (!md_of(h) || salt_len == 0 || salt_len > ST_SCRAM_SALT_LEN || iterations == 0 ||
        iterations > INT_MAX || pwlen > INT_MAX)
        return ST_EINVAL;
    size_t dl = st_scram_digest_len(h);
    unsigned char salted[ST_SCRAM_MAX_DIGEST];
    unsigned char client_key[ST_SCRAM_MAX_DIGEST];
    int rc = ST_EIO;
    memset(out, 0, sizeof *out);
    if (PKCS5_PBKDF2_HMAC(password, (int)pwlen, salt, (int)salt_len, (int)iterations, md_of(h),
                          (int)dl, salted) != 1)
        goto done;
    if (hmac(h, salted, dl, "Client Key", 10, client_key) ||
        digest(h, client_key, dl, out->stored_key) ||
        hmac(h, salted, dl, "Server Key", 10, out->server_key))
        goto done;
    memcpy(out->salt, salt, salt_len);
    out->salt_len = salt_len;
    out->iterations = iterations;
    rc = 0;
done:
    st_memzero(salted, sizeof salted);
    st_memzero(client_key, sizeof client_key);
    if (rc)
        st_memzero(out, sizeof *out);
    return rc;
}

/* HMAC-SHA-512(secret, label || username), the source of every dummy field. */
static void dummy_field(const unsigned char *secret, size_t secret_len, const char *label,
                        const char *username, unsigned char out[64])
{
    struct st_buf b;
    st_buf_init(&b, 0);
    st_buf_puts(&b, label);
    st_buf_puts(&b, username ? username : "");
    unsigned olen = 0;
    /* HMAC() accepts an empty key; a failure leaves zeros, which still never verifies. */
    memset(out, 0, 64);
    if (!HMAC(EVP_sha512(), secret ? secret : (const unsigned char *)"", (int)secret_len,
              (const unsigned char *)b.data, b.len, out, &olen))
        memset(out, 0, 64);
    st_buf_free(&b);
}

void st_scram_dummy_cred(enum st_scram_hash h, const unsigned char *secret, size_t secret_len,
                         const char *username, struct st_scram_cred *out)
{
    unsigned char tmp[64];
    size_t dl = st_scram_digest_len(h);
    unsigned olen = 0;
    struct st_buf b;

    memset(out, 0, sizeof *out);
    st_buf_init(&b, 0);
    st_buf_puts(&b, "salt");
    st_buf_puts(&b, username ? username : "");
    if (!HMAC(EVP_sha256(), secret ? secret : (const unsigned char *)"", (int)secret_len,
              (const unsigned char *)b.data, b.len, tmp, &olen))
        memset(tmp, 0, sizeof tmp);
    st_buf_free(&b);
    memcpy(out->salt, tmp, ST_SCRAM_SALT_LEN);
    out->salt_len = ST_SCRAM_SALT_LEN;
    out->iterations = ST_SCRAM_MIN_ITERATIONS;
    dummy_field(secret, secret_len, "stored-key", username, tmp);
    memcpy(out->stored_key, tmp, dl);
    dummy_field(secret, secret_len, "server-key", username, tmp);
    memcpy(out->server_key, tmp, dl);
    st_memzero(tmp, sizeof tmp);
}

bool st_scram_check_password(enum st_scram_hash h, const struct st_scram_cred *cred,
                             const char *password, size_t pwlen)
{
    struct st_scram_cred d;
    size_t dl = st_scram_digest_len(h);
    if (!cred || st_scram_derive(h, password, pwlen, cred->salt, cred->salt_len,
                                 cred->iterations, &d))
        return false;
    int diff = CRYPTO_memcmp(d.stored_key, cred->stored_key, dl);
    diff |= CRYPTO_memcmp(d.server_key, cred->server_key, dl);
    st_memzero(&d, sizeof d);
    return diff == 0;
}

/* ---- server exchange ---- */

enum state { S_FIRST = 0, S_NEED_CRED, S_FINAL, S_DONE };

struct st_scram_server {
    enum st_scram_hash h;
    enum state state;
    /* channel binding, from the transport */
    bool plus;
    bool server_supports_cb;
    bool any_cb_type;
    char cb_type[MAX_CB_NAME + 1];
    int (*get_data)(void *ud, const char *type, unsigned char *out, size_t outlen);
    void *ud;
    /* from client-first */
    char cbflag;           /* 'n', 'y' or 'p' */
    char *gs2_header;      /* raw, including the trailing ',' */
    char *client_first_bare;
    char *username;
    char *authzid;
    char *cnonce;
    unsigned char cb_data[ST_SCRAM_MAX_CB_DATA];
    size_t cb_len;
    /* server side */
    char *snonce;          /* test override or random, set at set_cred */
    char *nonce;           /* cnonce || snonce */
    char *server_first;
    struct st_scram_cred cred;
    bool dummy;
};

struct st_scram_server *st_scram_server_new(enum st_scram_hash h, const struct st_scram_cb *cb)
{
    struct st_scram_server *s = ST_NEW(struct st_scram_server);
    s->h = h;
    if (cb) {
        s->plus = cb->plus;
        s->server_supports_cb = cb->server_supports_cb || cb->plus;
        s->get_data = cb->get_data;
        s->ud = cb->ud;
        if (cb->type) {
            size_t n = strnlen(cb->type, MAX_CB_NAME + 1);
            if (n <= MAX_CB_NAME)
                memcpy(s->cb_type, cb->type, n);
            /* an over-long type matches nothing: cb_type stays "" and any_cb_type false */
        } else {
            s->any_cb_type = true;
        }
    }
    return s;
}

static void free_str(char **p)
{
    if (*p) {
        st_memzero(*p, strlen(*p));
        st_free(*p);
        *p = NULL;
    }
}

void st_scram_server_free(struct st_scram_server *s)
{
    if (!s)
        return;
    free_str(&s->gs2_header);
    free_str(&s->client_first_bare);
    free_str(&s->username);
    free_str(&s->authzid);
    free_str(&s->cnonce);
    free_str(&s->snonce);
    free_str(&s->nonce);
    free_str(&s->server_first);
    st_memzero(s, sizeof *s);
    st_free(s);
}

const char *st_scram_server_user(const struct st_scram_server *s)
{
    return s ? s->username : NULL;
}

const char *st_scram_server_authzid(const struct st_scram_server *s)
{
    return s ? s->authzid : NULL;
}

/* Cursor over one message: attributes are "x=value" separated by ','. */
struct cur {
    const char *p;
    const char *end;
};

/* Reads "<name>=" then a value up to ',' or the end; the ',' (if any) is not consumed. */
static bool take_attr(struct cur *c, char name, const char **val, size_t *vlen)
{
    if (c->end - c->p < 2 || c->p[0] != name || c->p[1] != '=')
        return false;
    const char *v = c->p + 2;
    const char *e = memchr(v, ',', (size_t)(c->end - v));
    if (!e)
        e = c->end;
    *val = v;
    *vlen = (size_t)(e - v);
    c->p = e;
    return true;
}

static bool take_comma(struct cur *c)
{
    if (c->p < c->end && *c->p == ',') {
        c->p++;
        return true;
    }
    return false;
}

static bool utf8_valid(const unsigned char *s, size_t n)
{
    for (size_t i = 0, k; i < n; i += k) {
        uint32_t cp;
        k = st_utf8_next(s + i, n - i, &cp);
        if (!k)
            return false;
    }
    return true;
}

/* RFC 5802 §7 saslname: 1*(value-safe-char / "=2C" / "=3D"), UTF-8. Returns a new
 * decoded string or NULL when empty or invalid. */
static char *saslname_decode(const char *v, size_t n)
{
    if (n == 0 || !utf8_valid((const unsigned char *)v, n))
        return NULL;
    char *out = st_malloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '=') {
            if (n - i >= 3 && v[i + 1] == '2' && (v[i + 2] == 'C' || v[i + 2] == 'c')) {
                out[o++] = ',';
            } else if (n - i >= 3 && v[i + 1] == '3' && (v[i + 2] == 'D' || v[i + 2] == 'd')) {
                out[o++] = '=';
            } else {
                st_free(out);
                return NULL;
            }
            i += 2;
        } else {
            out[o++] = v[i];
        }
    }
    out[o] = '\0';
    return out;
}

/* RFC 5802 §7 printable (%x21-2B / %x2D-7E), 1 or more. */
static bool printable(const char *v, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x21 || c > 0x7E || c == ',')
            return false;
    }
    return true;
}

/* RFC 5802 §7 extensions: attr-val with attr = ALPHA, value = 1*value-char. Only the
 * shape is checked; unknown optional extensions are ignored (RFC 5802 §5.1). */
static bool ext_ok(struct cur *c)
{
    if (c->end - c->p < 3)
        return false;
    unsigned char a = (unsigned char)c->p[0];
    if (!((a >= 'a' && a <= 'z') || (a >= 'A' && a <= 'Z')) || c->p[1] != '=')
        return false;
    const char *v;
    size_t n;
    if (!take_attr(c, (char)a, &v, &n) || n == 0)
        return false;
    return true;
}

/* RFC 5929 §7 cb-name: 1*(ALPHA / DIGIT / "." / "-"). */
static bool cb_name_ok(const char *v, size_t n)
{
    if (n == 0 || n > MAX_CB_NAME)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-'))
            return false;
    }
    return true;
}

static enum st_scram_result fail(struct st_scram_server *s, enum st_scram_result r)
{
    s->state = S_DONE;
    return r;
}

/* Applies the RFC 5802 §6 channel binding rules to the GS2 flag; fetches binding data. */
static enum st_scram_result check_cb(struct st_scram_server *s, const char *name, size_t nlen)
{
    if (s->cbflag == 'n' || s->cbflag == 'y') {
        if (s->plus) /* -PLUS requires 'p' (RFC 5802 §6) */
            return ST_SCRAM_FAIL_MALFORMED;
        if (s->cbflag == 'y' && s->server_supports_cb) /* downgrade attack */
            return ST_SCRAM_FAIL_CB;
        return ST_SCRAM_CONTINUE;
    }
    if (!s->plus || !s->get_data)
        return ST_SCRAM_FAIL_CB;
    char type[MAX_CB_NAME + 1];
    memcpy(type, name, nlen);
    type[nlen] = '\0';
    if (!s->any_cb_type && strcmp(type, s->cb_type) != 0)
        return ST_SCRAM_FAIL_CB;
    int n = s->get_data(s->ud, type, s->cb_data, sizeof s->cb_data);
    if (n < 0 || (size_t)n > sizeof s->cb_data)
        return ST_SCRAM_FAIL_CB;
    s->cb_len = (size_t)n;
    return ST_SCRAM_CONTINUE;
}

enum st_scram_result st_scram_server_first(struct st_scram_server *s, const char *msg, size_t len)
{
    if (!s || s->state != S_FIRST)
        return s ? fail(s, ST_SCRAM_FAIL_MALFORMED) : ST_SCRAM_FAIL_MALFORMED;
    if (!msg || len == 0 || len > ST_SCRAM_MAX_MSG || memchr(msg, '\0', len))
        return fail(s, ST_SCRAM_FAIL_MALFORMED);

    struct cur c = {msg, msg + len};
    const char *v;
    size_t n;
    const char *cbname = NULL;
    size_t cbname_len = 0;

    /* gs2-header = gs2-cbind-flag "," [ authzid ] "," (RFC 5802 §7) */
    if (take_attr(&c, 'p', &v, &n)) {
        if (!cb_name_ok(v, n))
            return fail(s, ST_SCRAM_FAIL_MALFORMED);
        s->cbflag = 'p';
        cbname = v;
        cbname_len = n;
    } else if (c.p < c.end && (*c.p == 'n' || *c.p == 'y')) {
        s->cbflag = *c.p++;
    } else {
        return fail(s, ST_SCRAM_FAIL_MALFORMED);
    }
    if (!take_comma(&c))
        return fail(s, ST_SCRAM_FAIL_MALFORMED);
    if (take_attr(&c, 'a', &v, &n)) {
        s->authzid = saslname_decode(v, n);
        if (!s->authzid)
            return fail(s, ST_SCRAM_FAIL_MALFORMED);
    }
    if (!take_comma(&c))
        return fail(s, ST_SCRAM_FAIL_MALFORMED);
    s->gs2_header = st_strndup(msg, (size_t)(c.p - msg));

    /* client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions];
     * we support no mandatory extension, so m= is refused (RFC 5802 §5.1). */
    const char *bare = c.p;
    if (!take_attr(&c, 'n', &v, &n))
        return fail(s, ST_SCRAM_FAIL_MALFORMED);
    s->username = saslname_decode(v, n);
    if (!s->username)
        return fail(s, ST_SCRAM_FAIL_MALFORMED);
    if (!take_comma(&c) || !take_attr(&c, 'r', &v, &n) || !printable(v, n))
        return fail(s, ST_SCRAM_FAIL_MALFORMED);
    s->cnonce = st_strndup(v, n);
    while (c.p < c.end) {
        if (!take_comma(&c) || (c.p < c.end && *c.p == 'm') || !ext_ok(&c))
            return fail(s, ST_SCRAM_FAIL_MALFORMED);
    }
    s->client_first_bare = st_strndup(bare, (size_t)(c.end - bare));

    enum st_scram_result r = check_cb(s, cbname, cbname_len);
    if (r != ST_SCRAM_CONTINUE)
        return fail(s, r);
    s->state = S_NEED_CRED;
    return ST_SCRAM_NEED_CRED;
}

int st_scram_server_set_nonce_for_test(struct st_scram_server *s, const char *nonce)
{
    if (!s || s->state != S_NEED_CRED || !nonce || !printable(nonce, strlen(nonce)) ||
        strlen(nonce) > 256)
        return ST_EINVAL;
    free_str(&s->snonce);
    s->snonce = st_strdup(nonce);
    return 0;
}

enum st_scram_result st_scram_server_set_cred(struct st_scram_server *s,
                                              const struct st_scram_cred *cred,
                                              const unsigned char *dummy_secret, size_t secret_len,
                                              char **out)
{
    if (out)
        *out = NULL;
    if (!s || !out)
        return ST_SCRAM_FAIL_MALFORMED;
    if (s->state != S_NEED_CRED)
        return fail(s, ST_SCRAM_FAIL_MALFORMED);

    if (cred && cred->salt_len > 0 && cred->salt_len <= ST_SCRAM_SALT_LEN &&
        cred->iterations > 0) {
        s->cred = *cred;
    } else {
        unsigned char rnd[32];
        if (!dummy_secret || secret_len == 0) {
            /* no configured secret: still hide the user, at the cost of a changing salt */
            if (st_rand_bytes(rnd, sizeof rnd))
                return fail(s, ST_SCRAM_FAIL_NOT_AUTHORIZED);
            dummy_secret = rnd;
            secret_len = sizeof rnd;
        }
        st_scram_dummy_cred(s->h, dummy_secret, secret_len, s->username, &s->cred);
        st_memzero(rnd, sizeof rnd);
        s->dummy = true;
    }

    if (!s->snonce) {
        unsigned char raw[SERVER_NONCE_BYTES];
        if (st_rand_bytes(raw, sizeof raw))
            return fail(s, ST_SCRAM_FAIL_NOT_AUTHORIZED);
        s->snonce = st_base64_encode(raw, sizeof raw); /* no ',' in the alphabet */
    }
    struct st_buf b;
    st_buf_init(&b, MAX_AUTH_MESSAGE);
    if (st_buf_puts(&b, s->cnonce) || st_buf_puts(&b, s->snonce)) {
        st_buf_free(&b);
        return fail(s, ST_SCRAM_FAIL_MALFORMED);
    }
    s->nonce = st_buf_take(&b);

    char *salt64 = st_base64_encode(s->cred.salt, s->cred.salt_len);
    st_buf_init(&b, MAX_AUTH_MESSAGE);
    int rc = st_buf_printf(&b, "r=%s,s=%s,i=%u", s->nonce, salt64, s->cred.iterations);
    st_free(salt64);
    if (rc) {
        st_buf_free(&b);
        return fail(s, ST_SCRAM_FAIL_MALFORMED);
    }
    s->server_first = st_buf_take(&b);
    *out = st_strdup(s->server_first);
    s->state = S_FINAL;
    return ST_SCRAM_CONTINUE;
}

/* Returns base64(gs2-header || cb-data), the value c= must carry (RFC 5802 §7). */
static char *expected_cbind(const struct st_scram_server *s)
{
    size_t hl = strlen(s->gs2_header);
    size_t cl = s->cbflag == 'p' ? s->cb_len : 0;
    unsigned char *raw = st_malloc(hl + cl + 1);
    memcpy(raw, s->gs2_header, hl);
    if (cl)
        memcpy(raw + hl, s->cb_data, cl);
    char *e = st_base64_encode(raw, hl + cl);
    st_memzero(raw, hl + cl);
    st_free(raw);
    return e;
}

enum st_scram_result st_scram_server_final(struct st_scram_server *s, const char *msg, size_t len,
                                           char **out)
{
    if (out)
        *out = NULL;
    if (!s || !out)
        return ST_SCRAM_FAIL_MALFORMED;
    if (s->state != S_FINAL)
        return fail(s, ST_SCRAM_FAIL_MALFORMED);
    if (!msg || len == 0 || len > ST_SCRAM_MAX_MSG || memchr(msg, '\0', len))
        return fail(s, ST_SCRAM_FAIL_MALFORMED);

    /* client-final-message = channel-binding "," nonce ["," extensions] "," proof */
    struct cur c = {msg, msg + len};
    const char *cbv, *rv, *pv = NULL;
    size_t cbn, rn, pn = 0;
    const char *without_proof_end = NULL;
    if (!take_attr(&c, 'c', &cbv, &cbn) || !take_comma(&c) || !take_attr(&c, 'r', &rv, &rn))
        return fail(s, ST_SCRAM_FAIL_MALFORMED);
    while (c.p < c.end) {
        const char *comma = c.p;
        if (!take_comma(&c))
            return fail(s, ST_SCRAM_FAIL_MALFORMED);
        if (c.end - c.p >= 2 && c.p[0] == 'p' && c.p[1] == '=') {
            take_attr(&c, 'p', &pv, &pn);
            if (c.p != c.end) /* proof must be last */
                return fail(s, ST_SCRAM_FAIL_MALFORMED);
            without_proof_end = comma;
        } else if ((c.p < c.end && *c.p == 'm') || !ext_ok(&c)) {
            return fail(s, ST_SCRAM_FAIL_MALFORMED);
        }
    }
    if (!pv)
        return fail(s, ST_SCRAM_FAIL_MALFORMED);

    size_t dl = st_scram_digest_len(s->h);
    unsigned char proof[ST_SCRAM_MAX_DIGEST];
    unsigned char cbtmp[ST_SCRAM_MAX_MSG];
    if (st_base64_decode(pv, pn, proof, sizeof proof) != (long)dl ||
        st_base64_decode(cbv, cbn, cbtmp, sizeof cbtmp) < 0)
        return fail(s, ST_SCRAM_FAIL_MALFORMED);

    char *want = expected_cbind(s);
    bool cb_ok = strlen(want) == cbn && CRYPTO_memcmp(want, cbv, cbn) == 0;
    st_free(want);
    if (!cb_ok)
        return fail(s, ST_SCRAM_FAIL_CB);
    if (strlen(s->nonce) != rn || memcmp(s->nonce, rv, rn) != 0)
        return fail(s, ST_SCRAM_FAIL_NOT_AUTHORIZED);

    /* AuthMessage = client-first-message-bare "," server-first-message ","
     *               client-final-message-without-proof (RFC 5802 §3) */
    struct st_buf am;
    st_buf_init(&am, MAX_AUTH_MESSAGE);
    if (st_buf_puts(&am, s->client_first_bare) || st_buf_puts(&am, ",") ||
        st_buf_puts(&am, s->server_first) || st_buf_puts(&am, ",") ||
        st_buf_append(&am, msg, (size_t)(without_proof_end - msg))) {
        st_buf_free(&am);
        return fail(s, ST_SCRAM_FAIL_MALFORMED);
    }

    unsigned char sig[ST_SCRAM_MAX_DIGEST], key[ST_SCRAM_MAX_DIGEST], hkey[ST_SCRAM_MAX_DIGEST];
    enum st_scram_result r = ST_SCRAM_FAIL_NOT_AUTHORIZED;
    char *v64 = NULL;
    size_t vlen;
    if (hmac(s->h, s->cred.stored_key, dl, am.data, am.len, sig))
        goto done;
    for (size_t i = 0; i < dl; i++)
        key[i] = proof[i] ^ sig[i];
    if (digest(s->h, key, dl, hkey))
        goto done;
    /* The dummy path runs the same computation and fails here like a wrong password. */
    if (CRYPTO_memcmp(hkey, s->cred.stored_key, dl) != 0 || s->dummy)
        goto done;
    if (hmac(s->h, s->cred.server_key, dl, am.data, am.len, sig))
        goto done;
    v64 = st_base64_encode(sig, dl);
    vlen = strlen(v64);
    *out = st_malloc(vlen + 3);
    memcpy(*out, "v=", 2);
    memcpy(*out + 2, v64, vlen + 1);
    st_free(v64);
    r = ST_SCRAM_SUCCESS;
done:
    st_memzero(sig, sizeof sig);
    st_memzero(key, sizeof key);
    st_memzero(hkey, sizeof hkey);
    st_memzero(proof, sizeof proof);
    st_buf_free(&am);
    s->state = S_DONE;
    return r;
}
