/* Local accounts (accounts.h): SCRAM credentials (RFC 5802 §3; SHA-256 and SHA-512 per
 * RFC 7677) for all three hashes, derived once when the password is set, so SASL never needs
 * the password and any mechanism we offer can be served from the same record. The record is
 * the keyval value (host, localpart, "accounts"), a small versioned text format:
 *
 *     starling-account 1
 *     SHA-1 <iterations> <salt hex> <StoredKey hex> <ServerKey hex>
 *     SHA-256 ...
 *     SHA-512 ...
 *
 * Text keeps it inspectable with the sqlite3 shell and lets a later version add lines; the
 * decoder of version 1 is strict and reports anything else as ST_EIO. Each hash has its own
 * random salt (ST_SCRAM_SALT_LEN bytes). */
#include "xmpp/accounts.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/rand.h"
#include "xmpp/jid.h"

#define LOGCTX "accounts"
#define RECORD_MAGIC "starling-account 1"
#define RECORD_MAX 2048

/* ---- encoding ---- */

static void put_hex(struct st_buf *b, const unsigned char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        char c[2] = {hex[p[i] >> 4], hex[p[i] & 15]};
        st_buf_append(b, c, 2);
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes lowercase hex tok into out; returns the byte count or -1. */
static long get_hex(const char *tok, unsigned char *out, size_t outmax)
{
    size_t n = strlen(tok);
    if (n == 0 || n % 2 || n / 2 > outmax)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval(tok[2 * i]), lo = hexval(tok[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return (long)(n / 2);
}

static int encode_record(const struct st_scram_cred creds[ST_SCRAM_NHASH], struct st_buf *b)
{
    int rc = st_buf_puts(b, RECORD_MAGIC "\n");
    for (int h = 0; !rc && h < ST_SCRAM_NHASH; h++) {
        const struct st_scram_cred *c = &creds[h];
        size_t dl = st_scram_digest_len((enum st_scram_hash)h);
        rc = st_buf_printf(b, "%s %u ", st_scram_hash_name((enum st_scram_hash)h),
                           c->iterations);
        put_hex(b, c->salt, c->salt_len);
        st_buf_puts(b, " ");
        put_hex(b, c->stored_key, dl);
        st_buf_puts(b, " ");
        put_hex(b, c->server_key, dl);
        if (!rc)
            rc = st_buf_puts(b, "\n");
    }
    return rc;
}

/* Splits the next space-separated token off *p (modifies the text); NULL at the end. */
static char *next_tok(char **p)
{
    char *s = *p;
    if (!s || !*s)
        return NULL;
    char *sp = strchr(s, ' ');
    if (sp) {
        *sp = 0;
        *p = sp + 1;
    } else {
        *p = s + strlen(s);
    }
    return s;
}

static int parse_line(char *line, enum st_scram_hash *hash, struct st_scram_cred *c,
                      const char **why)
{
    char *p = line;
    char *name = next_tok(&p), *iter = next_tok(&p), *salt = next_tok(&p);
    char *sk = next_tok(&p), *vk = next_tok(&p);
    if (!vk || *p) {
        *why = "wrong number of fields";
        return ST_EIO;
    }
    int h = -1;
    for (int i = 0; i < ST_SCRAM_NHASH; i++)
        if (strcmp(name, st_scram_hash_name((enum st_scram_hash)i)) == 0)
            h = i;
    if (h < 0) {
        *why = "unknown hash";
        return ST_EIO;
    }
    char *end = NULL;
    unsigned long it = strtoul(iter, &end, 10);
    if (end == iter || *end || iter[0] == '-' || it == 0 || it > ST_ACCOUNT_MAX_ITERATIONS) {
        *why = "bad iteration count";
        return ST_EIO;
    }
    size_t dl = st_scram_digest_len((enum st_scram_hash)h);
    long sl = get_hex(salt, c->salt, sizeof c->salt);
    if (sl <= 0 || get_hex(sk, c->stored_key, sizeof c->stored_key) != (long)dl ||
        get_hex(vk, c->server_key, sizeof c->server_key) != (long)dl) {
        *why = "bad salt or key";
        return ST_EIO;
    }
    c->salt_len = (size_t)sl;
    c->iterations = (unsigned)it;
    *hash = (enum st_scram_hash)h;
    return 0;
}

/* Decodes a record and returns the credentials for want in *out. */
static int decode_record(const void *data, size_t len, enum st_scram_hash want,
                         struct st_scram_cred *out, const char **why)
{
    struct st_scram_cred creds[ST_SCRAM_NHASH];
    bool seen[ST_SCRAM_NHASH] = {false};
    char text[RECORD_MAX];
    int rc = 0;
    *why = NULL;
    if (len >= sizeof text || memchr(data, 0, len)) {
        *why = "bad size or NUL byte";
        return ST_EIO;
    }
    memcpy(text, data, len);
    text[len] = 0;
    char *line = text;
    char *nl = strchr(line, '\n');
    if (!nl || (size_t)(nl - line) != strlen(RECORD_MAGIC) ||
        memcmp(line, RECORD_MAGIC, strlen(RECORD_MAGIC)) != 0) {
        *why = "unknown format or version";
        rc = ST_EIO;
        goto out;
    }
    for (line = nl + 1; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        if (!nl) {
            *why = "unterminated line";
            rc = ST_EIO;
            goto out;
        }
        *nl = 0;
        enum st_scram_hash h;
        struct st_scram_cred c = {0};
        rc = parse_line(line, &h, &c, why);
        if (!rc && seen[h]) {
            *why = "duplicate hash";
            rc = ST_EIO;
        }
        if (rc)
            goto out;
        seen[h] = true;
        creds[h] = c;
        st_memzero(&c, sizeof c);
    }
    for (int h = 0; h < ST_SCRAM_NHASH; h++) {
        if (!seen[h]) {
            *why = "missing hash";
            rc = ST_EIO;
            goto out;
        }
    }
    *out = creds[want];
out:
    st_memzero(text, sizeof text);
    st_memzero(creds, sizeof creds);
    return rc;
}

/* ---- preparation ---- */

struct prepped {
    char *host;
    char *local;
};

static void prepped_free(struct prepped *p)
{
    st_free(p->host);
    st_free(p->local);
}

static int prep_names(const char *host, const char *localpart, struct prepped *p)
{
    p->host = p->local = NULL;
    if (!host || !localpart)
        return ST_EINVAL;
    if (st_jid_prep_domain(host, strlen(host), &p->host) ||
        st_jid_prep_local(localpart, strlen(localpart), &p->local)) {
        prepped_free(p);
        p->host = p->local = NULL;
        return ST_EINVAL;
    }
    return 0;
}

static void free_secret(char *s)
{
    if (s) {
        st_memzero(s, strlen(s));
        st_free(s);
    }
}

/* ---- API ---- */

int st_account_create_sync(struct st_storage *st, const char *host, const char *localpart,
                           const char *password, unsigned iterations, bool replace)
{
    struct prepped n;
    char *pw = NULL;
    struct st_scram_cred creds[ST_SCRAM_NHASH];
    struct st_buf rec;
    if (!st || !password || iterations < ST_SCRAM_MIN_ITERATIONS ||
        iterations > ST_ACCOUNT_MAX_ITERATIONS)
        return ST_EINVAL;
    int rc = prep_names(host, localpart, &n);
    if (rc)
        return rc;
    memset(creds, 0, sizeof creds);
    st_buf_init(&rec, RECORD_MAX);
    if (st_jid_prep_resource(password, strlen(password), &pw)) {
        rc = ST_EINVAL;
        goto out;
    }
    for (int h = 0; h < ST_SCRAM_NHASH; h++) {
        unsigned char salt[ST_SCRAM_SALT_LEN];
        rc = st_rand_bytes(salt, sizeof salt);
        if (!rc)
            rc = st_scram_derive((enum st_scram_hash)h, pw, strlen(pw), salt, sizeof salt,
                                 iterations, &creds[h]);
        if (rc)
            goto out;
    }
    rc = encode_record(creds, &rec);
    if (rc)
        goto out;
    if (replace)
        rc = st_kv_set_sync(st, n.host, n.local, ST_ACCOUNT_STORE, rec.data, rec.len);
    else
        rc = st_kv_add_sync(st, n.host, n.local, ST_ACCOUNT_STORE, rec.data, rec.len);
    if (!rc)
        st_log_debug(LOGCTX, "%s account %s@%s", replace ? "set password of" : "created",
                    n.local, n.host);
out:
    free_secret(pw);
    st_memzero(creds, sizeof creds);
    if (rec.data)
        st_memzero(rec.data, rec.len);
    st_buf_free(&rec);
    prepped_free(&n);
    return rc;
}

int st_account_exists_sync(struct st_storage *st, const char *host, const char *localpart)
{
    struct prepped n;
    if (prep_names(host, localpart, &n))
        return 0;
    void *data = NULL;
    size_t len = 0;
    int rc = st_kv_get_sync(st, n.host, n.local, ST_ACCOUNT_STORE, &data, &len);
    if (data) {
        st_memzero(data, len);
        st_free(data);
    }
    prepped_free(&n);
    if (rc == ST_ENOTFOUND)
        return 0;
    return rc ? rc : 1;
}

int st_account_delete_sync(struct st_storage *st, const char *host, const char *localpart)
{
    struct prepped n;
    int rc = prep_names(host, localpart, &n);
    if (rc)
        return rc;
    rc = st_account_exists_sync(st, n.host, n.local);
    if (rc == 0)
        rc = ST_ENOTFOUND;
    else if (rc == 1)
        rc = st_kv_delete_user_sync(st, n.host, n.local);
    if (!rc)
        st_log_debug(LOGCTX, "deleted account %s@%s", n.local, n.host);
    prepped_free(&n);
    return rc;
}

int st_account_list_sync(struct st_storage *st, const char *host,
                         void (*fn)(void *ud, const char *host, const char *localpart),
                         void *ud)
{
    char *h = NULL;
    if (host && st_jid_prep_domain(host, strlen(host), &h))
        return ST_EINVAL;
    int rc = st_kv_users_sync(st, h, ST_ACCOUNT_STORE, fn, ud);
    st_free(h);
    return rc;
}

static int decode_logged(const struct prepped *n, const void *data, size_t len,
                         enum st_scram_hash h, struct st_scram_cred *out)
{
    const char *why = NULL;
    int rc = decode_record(data, len, h, out, &why);
    if (rc)
        st_log_error(LOGCTX, "account %s@%s: undecodable record (%s)", n->local, n->host,
                     why ? why : "?");
    return rc;
}

int st_account_get_cred_sync(struct st_storage *st, const char *host, const char *localpart,
                             enum st_scram_hash h, struct st_scram_cred *out)
{
    struct prepped n;
    if ((unsigned)h >= ST_SCRAM_NHASH)
        return ST_EINVAL;
    int rc = prep_names(host, localpart, &n);
    if (rc)
        return rc;
    void *data = NULL;
    size_t len = 0;
    rc = st_kv_get_sync(st, n.host, n.local, ST_ACCOUNT_STORE, &data, &len);
    if (!rc)
        rc = decode_logged(&n, data, len, h, out);
    if (data) {
        st_memzero(data, len);
        st_free(data);
    }
    prepped_free(&n);
    return rc;
}

struct cred_req {
    struct prepped n;
    enum st_scram_hash h;
    st_account_cred_cb cb;
    void *ud;
};

static void on_record(void *ud, int rc, const void *data, size_t len)
{
    struct cred_req *r = ud;
    struct st_scram_cred cred;
    memset(&cred, 0, sizeof cred);
    if (!rc)
        rc = decode_logged(&r->n, data, len, r->h, &cred);
    r->cb(r->ud, rc, rc ? NULL : &cred);
    st_memzero(&cred, sizeof cred);
    prepped_free(&r->n);
    st_free(r);
}

int st_account_get_cred(struct st_storage *st, const char *host, const char *localpart,
                        enum st_scram_hash h, st_account_cred_cb cb, void *ud)
{
    if (!cb || (unsigned)h >= ST_SCRAM_NHASH)
        return ST_EINVAL;
    struct cred_req *r = ST_NEW(struct cred_req);
    int rc = prep_names(host, localpart, &r->n);
    if (!rc) {
        r->h = h;
        r->cb = cb;
        r->ud = ud;
        rc = st_kv_get(st, r->n.host, r->n.local, ST_ACCOUNT_STORE, on_record, r);
    }
    if (rc) {
        prepped_free(&r->n);
        st_free(r);
    }
    return rc;
}
