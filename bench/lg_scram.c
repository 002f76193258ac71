/* SASL PLAIN (RFC 4616) and SCRAM-SHA-1/-256 client steps (RFC 5802 §3,
 * RFC 7677) for the load generator, on OpenSSL 3's PBKDF2, HMAC and digest
 * primitives, with base64 per RFC 4648 §4. Channel binding is not used
 * ("n,," GS2 header): the benchmark compares servers on the mechanisms all
 * three offer. */
#include "lg_scram.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

const char *st_bench_mech_name(enum st_bench_mech m)
{
    switch (m) {
    case ST_BENCH_PLAIN:
        return "PLAIN";
    case ST_BENCH_SCRAM_SHA1:
        return "SCRAM-SHA-1";
    case ST_BENCH_SCRAM_SHA256:
        return "SCRAM-SHA-256";
    }
    return "?";
}

int st_bench_b64_encode(const void *in, size_t n, char *out, size_t outsz)
{
    const unsigned char *p = in;
    size_t need = (n + 2) / 3 * 4 + 1;
    if (need > outsz)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        out[o++] = B64[(v >> 18) & 63];
        out[o++] = B64[(v >> 12) & 63];
        out[o++] = i + 1 < n ? B64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? B64[v & 63] : '=';
    }
    out[o] = '\0';
    return (int)o;
}

static int b64_val(char c)
{
    const char *p = c ? strchr(B64, c) : NULL;
    return p ? (int)(p - B64) : -1;
}

int st_bench_b64_decode(const char *in, size_t n, unsigned char *out, size_t outsz)
{
    if (n % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            if (in[i + k] == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
            } else if (pad) {
                return -1;
            } else {
                v[k] = b64_val(in[i + k]);
                if (v[k] < 0)
                    return -1;
            }
        }
        unsigned w = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 |
                     (unsigned)v[3];
        unsigned char b[3] = {(unsigned char)(w >> 16), (unsigned char)(w >> 8),
                              (unsigned char)w};
        for (int k = 0; k < 3 - pad; k++) {
            if (o >= outsz)
                return -1;
            out[o++] = b[k];
        }
    }
    return (int)o;
}

int st_bench_plain_initial(const char *user, const char *password, char *out, size_t outsz)
{
    char raw[512];
    size_t ul = strlen(user), pl = strlen(password);
    if (2 + ul + pl > sizeof raw)
        return -1;
    raw[0] = '\0';
    memcpy(raw + 1, user, ul);
    raw[1 + ul] = '\0';
    memcpy(raw + 2 + ul, password, pl);
    return st_bench_b64_encode(raw, 2 + ul + pl, out, outsz);
}

static const EVP_MD *md_of(enum st_bench_mech m)
{
    return m == ST_BENCH_SCRAM_SHA256 ? EVP_sha256() : EVP_sha1();
}

int st_bench_scram_first(struct st_bench_scram *s, enum st_bench_mech mech, const char *user,
                         char *out, size_t outsz)
{
    unsigned char rnd[18];
    memset(s, 0, sizeof *s);
    s->mech = mech;
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return -1;
    if (st_bench_b64_encode(rnd, sizeof rnd, s->cnonce, sizeof s->cnonce) < 0)
        return -1;
    /* Our user names are plain ASCII without ',' or '=', so no SASLname escaping. */
    int n = snprintf(s->client_first_bare, sizeof s->client_first_bare, "n=%s,r=%s", user,
                     s->cnonce);
    if (n < 0 || (size_t)n >= sizeof s->client_first_bare)
        return -1;
    char msg[300];
    int m = snprintf(msg, sizeof msg, "n,,%s", s->client_first_bare);
    if (m < 0 || (size_t)m >= sizeof msg)
        return -1;
    return st_bench_b64_encode(msg, (size_t)m, out, outsz);
}

/* Finds attribute "k=" in a comma-separated SCRAM message; returns its value
 * (pointer into msg) and length, or NULL. */
static const char *scram_attr(const char *msg, char k, size_t *len)
{
    const char *p = msg;
    while (*p) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        if (p[0] == k && p[1] == '=') {
            *len = (size_t)(end - p - 2);
            return p + 2;
        }
        p = *end ? end + 1 : end;
    }
    return NULL;
}

static int hmac(const EVP_MD *md, const unsigned char *key, size_t klen, const void *data,
                size_t dlen, unsigned char *out)
{
    unsigned int ol = 0;
    return HMAC(md, key, (int)klen, data, dlen, out, &ol) ? (int)ol : -1;
}

int st_bench_scram_final(struct st_bench_scram *s, const char *b64, size_t n,
                         const char *password, struct st_bench_salted *cache, bool *pbkdf2_done,
                         char *out, size_t outsz)
{
    char first[ST_BENCH_SASL_MAX];
    int fl = st_bench_b64_decode(b64, n, (unsigned char *)first, sizeof first - 1);
    if (fl <= 0)
        return -1;
    first[fl] = '\0';
    size_t rl = 0, sl = 0, il = 0;
    const char *r = scram_attr(first, 'r', &rl);
    const char *salt = scram_attr(first, 's', &sl);
    const char *it = scram_attr(first, 'i', &il);
    size_t cl = strlen(s->cnonce);
    if (!r || !salt || !it || rl <= cl || memcmp(r, s->cnonce, cl) != 0 || sl == 0 ||
        sl >= sizeof cache->salt_b64 || il == 0 || il > 9)
        return -1;
    char ibuf[12];
    memcpy(ibuf, it, il);
    ibuf[il] = '\0';
    char *endp = NULL;
    unsigned long iters = strtoul(ibuf, &endp, 10);
    if (*endp || iters == 0)
        return -1;

    const EVP_MD *md = md_of(s->mech);
    size_t klen = (size_t)EVP_MD_get_size(md);
    *pbkdf2_done = false;
    if (!cache->valid || cache->iterations != iters || strlen(cache->salt_b64) != sl ||
        memcmp(cache->salt_b64, salt, sl) != 0) {
        unsigned char rawsalt[128];
        int rs = st_bench_b64_decode(salt, sl, rawsalt, sizeof rawsalt);
        if (rs <= 0)
            return -1;
        if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), rawsalt, rs, (int)iters, md,
                              (int)klen, cache->key) != 1)
            return -1;
        memcpy(cache->salt_b64, salt, sl);
        cache->salt_b64[sl] = '\0';
        cache->iterations = (unsigned)iters;
        cache->valid = true;
        *pbkdf2_done = true;
    }

    char without_proof[ST_BENCH_SASL_MAX];
    int wl = snprintf(without_proof, sizeof without_proof, "c=biws,r=%.*s", (int)rl, r);
    if (wl < 0 || (size_t)wl >= sizeof without_proof)
        return -1;
    int al = snprintf(s->auth_message, sizeof s->auth_message, "%s,%s,%s", s->client_first_bare,
                      first, without_proof);
    if (al < 0 || (size_t)al >= sizeof s->auth_message)
        return -1;

    unsigned char client_key[ST_BENCH_SCRAM_MAX_KEY], stored[ST_BENCH_SCRAM_MAX_KEY];
    unsigned char sig[ST_BENCH_SCRAM_MAX_KEY], server_key[ST_BENCH_SCRAM_MAX_KEY];
    unsigned char proof[ST_BENCH_SCRAM_MAX_KEY];
    if (hmac(md, cache->key, klen, "Client Key", 10, client_key) < 0)
        return -1;
    if (EVP_Digest(client_key, klen, stored, NULL, md, NULL) != 1)
        return -1;
    if (hmac(md, stored, klen, s->auth_message, (size_t)al, sig) < 0)
        return -1;
    for (size_t i = 0; i < klen; i++)
        proof[i] = client_key[i] ^ sig[i];
    if (hmac(md, cache->key, klen, "Server Key", 10, server_key) < 0)
        return -1;
    if (hmac(md, server_key, klen, s->auth_message, (size_t)al, s->server_sig) < 0)
        return -1;

    char proof_b64[64];
    if (st_bench_b64_encode(proof, klen, proof_b64, sizeof proof_b64) < 0)
        return -1;
    char final[ST_BENCH_SASL_MAX];
    int fn = snprintf(final, sizeof final, "%s,p=%s", without_proof, proof_b64);
    if (fn < 0 || (size_t)fn >= sizeof final)
        return -1;
    return st_bench_b64_encode(final, (size_t)fn, out, outsz);
}

int st_bench_scram_verify(const struct st_bench_scram *s, const char *b64, size_t n)
{
    char msg[256];
    int ml = st_bench_b64_decode(b64, n, (unsigned char *)msg, sizeof msg - 1);
    if (ml <= 0)
        return -1;
    msg[ml] = '\0';
    size_t vl = 0;
    const char *v = scram_attr(msg, 'v', &vl);
    if (!v)
        return -1;
    unsigned char sig[64];
    int sl = st_bench_b64_decode(v, vl, sig, sizeof sig);
    size_t klen = (size_t)EVP_MD_get_size(md_of(s->mech));
    if (sl != (int)klen || CRYPTO_memcmp(sig, s->server_sig, klen) != 0)
        return -1;
    return 0;
}
