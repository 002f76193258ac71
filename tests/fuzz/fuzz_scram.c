/* libFuzzer target for the SCRAM server (src/xmpp/scram.c: RFC 5802, RFC
 * 7677, channel binding per RFC 5802 §6) and its strict base64 (RFC 4648
 * §4, as RFC 6120 §6.4.2 requires). The first input byte chooses the hash,
 * the -PLUS and channel-binding facts, a failing binding source and the
 * unknown-user path; the rest is client-first-message, a 0x00 byte, then
 * client-final-message. The server nonce is fixed and the credential is
 * derived once from the RFC 5802 §5 example ("pencil", salt
 * QSXCR+Q6sek8bf92, 4096 iterations), so seeds can hold whole successful
 * exchanges. Checked: every result is one the contract allows for that step;
 * outputs are present exactly on success; a success is confirmed by an
 * independent computation of ClientProof and ServerSignature (RFC 5802 §3)
 * and of the c= value; an unknown user never succeeds; a finished exchange
 * refuses further steps. The same bytes are base64-decoded and compared with
 * a reference validity check and a round trip through the encoder.
 *
 * Built with -fsanitize=fuzzer for libFuzzer; with -DST_FUZZ_STANDALONE it
 * becomes a plain program that runs the files (or directories of files)
 * named on its command line, for short regression runs in `make test`. */
#include "base/buf.h"
#include "base/err.h"
#include "base/mem.h"
#include "xmpp/scram.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "fuzz_scram: check failed: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

#define CTL_PLUS 0x04u
#define CTL_SERVER_CB 0x08u
#define CTL_UNKNOWN_USER 0x10u
#define CTL_ANY_TYPE 0x20u
#define CTL_CB_FAILS 0x40u
#define CTL_NO_TLS 0x80u

static const char server_nonce[] = "3rfcNHYJY1ZVvWVs7j"; /* RFC 5802 §5 */
static const char salt64[] = "QSXCR+Q6sek8bf92";
static const unsigned char dummy_secret[32] = "fuzz-scram-dummy-secret-0123456";
static const unsigned char cb_bytes[32] = "channel-binding-data-of-fuzzing";

/* Per hash: the credential under test and, for the reference check, ClientKey. */
static struct {
    struct st_scram_cred cred;
    unsigned char client_key[ST_SCRAM_MAX_DIGEST];
} keys[ST_SCRAM_NHASH];

static const EVP_MD *md_of(enum st_scram_hash h)
{
    return h == ST_SCRAM_SHA1 ? EVP_sha1() : h == ST_SCRAM_SHA256 ? EVP_sha256() : EVP_sha512();
}

static void init_once(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    unsigned char salt[16];
    CHECK(st_base64_decode(salt64, strlen(salt64), salt, sizeof salt) == 12);
    for (int h = 0; h < ST_SCRAM_NHASH; h++) {
        size_t dl = st_scram_digest_len((enum st_scram_hash)h);
        CHECK(st_scram_derive((enum st_scram_hash)h, "pencil", 6, salt, 12, 4096,
                              &keys[h].cred) == 0);
        unsigned char salted[ST_SCRAM_MAX_DIGEST];
        unsigned len = 0;
        CHECK(PKCS5_PBKDF2_HMAC("pencil", 6, salt, 12, 4096, md_of((enum st_scram_hash)h),
                                (int)dl, salted) == 1);
        CHECK(HMAC(md_of((enum st_scram_hash)h), salted, (int)dl,
                   (const unsigned char *)"Client Key", 10, keys[h].client_key, &len));
        CHECK(len == dl);
    }
}

struct cb_state {
    int calls;
    bool fails;
    const char *want_type;
};

static int get_data(void *ud, const char *type, unsigned char *out, size_t outlen)
{
    struct cb_state *st = ud;
    st->calls++;
    CHECK(type && strlen(type) > 0 && strlen(type) <= 64);
    CHECK(!st->want_type || strcmp(type, st->want_type) == 0);
    if (st->fails)
        return -1;
    CHECK(outlen >= sizeof cb_bytes);
    memcpy(out, cb_bytes, sizeof cb_bytes);
    return (int)sizeof cb_bytes;
}

/* ---- base64 against a reference ---- */

static int ref_b64_value(unsigned char c)
{
    const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = c ? strchr(alpha, c) : NULL;
    return p ? (int)(p - alpha) : -1;
}

/* RFC 4648 §4 with §3.5 canonical padding bits, by a different route than the decoder. */
static bool ref_b64_valid(const unsigned char *s, size_t n)
{
    if (n % 4)
        return false;
    size_t pad = 0;
    if (n >= 4 && s[n - 1] == '=')
        pad = s[n - 2] == '=' ? 2 : 1;
    for (size_t i = 0; i < n - pad; i++)
        if (ref_b64_value(s[i]) < 0)
            return false;
    if (pad == 2 && (ref_b64_value(s[n - 3]) & 15))
        return false;
    if (pad == 1 && (ref_b64_value(s[n - 2]) & 3))
        return false;
    return true;
}

static void check_base64(const unsigned char *in, size_t n)
{
    unsigned char *copy = st_malloc(n ? n : 1);
    memcpy(copy, in, n);
    unsigned char *out = st_malloc(n + 1);
    long got = st_base64_decode((const char *)copy, n, out, n);
    CHECK(got >= -1);
    CHECK((got >= 0) == ref_b64_valid(copy, n));
    if (got >= 0) {
        CHECK((size_t)got == n / 4 * 3 - (n && copy[n - 1] == '=') - (n > 1 && copy[n - 2] == '='));
        char *enc = st_base64_encode(out, (size_t)got);
        CHECK(strlen(enc) == n && memcmp(enc, copy, n) == 0);
        st_free(enc);
        CHECK(st_base64_decode((const char *)copy, n, out, (size_t)got) == got);
        if (got > 0)
            CHECK(st_base64_decode((const char *)copy, n, out, (size_t)got - 1) == -1);
    }
    st_free(out);

    /* The other way round: any bytes encode to text that decodes back to them. */
    char *enc = st_base64_encode(copy, n);
    size_t el = strlen(enc);
    CHECK(el == 4 * ((n + 2) / 3));
    unsigned char *dec = st_malloc(n + 1);
    CHECK(st_base64_decode(enc, el, dec, n) == (long)n);
    CHECK(memcmp(dec, copy, n) == 0);
    st_free(dec);
    st_free(enc);
    st_free(copy);
}

/* ---- SCRAM exchange ---- */

static bool valid_result(enum st_scram_result r)
{
    switch (r) {
    case ST_SCRAM_CONTINUE: case ST_SCRAM_NEED_CRED: case ST_SCRAM_SUCCESS:
    case ST_SCRAM_FAIL_MALFORMED: case ST_SCRAM_FAIL_NOT_AUTHORIZED: case ST_SCRAM_FAIL_AUTHZID:
    case ST_SCRAM_FAIL_CB:
        return true;
    }
    return false;
}

/* RFC 5802 §7 saslname decoding of v[0..n) ("=2C", "=3D" to ',' and '='), by a different
 * route than the parser; the text was already validated by the server. Returns new. */
static char *ref_saslname(const char *v, size_t n)
{
    struct st_buf b;
    st_buf_init(&b, 0);
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '=' && i + 2 < n && (v[i + 1] == '2' || v[i + 1] == '3')) {
            st_buf_append(&b, v[i + 1] == '2' ? "," : "=", 1);
            i += 2;
        } else {
            st_buf_append(&b, v + i, 1);
        }
    }
    st_buf_append(&b, "", 1);
    return st_buf_take(&b);
}

/* Locates attribute 'name=' at the start of a ','-separated field from p; returns its
 * value and length, or NULL. */
static const char *field(const char *p, const char *end, char name, size_t *len)
{
    if (end - p < 2 || p[0] != name || p[1] != '=')
        return NULL;
    const char *e = memchr(p + 2, ',', (size_t)(end - p - 2));
    *len = (size_t)((e ? e : end) - p - 2);
    return p + 2;
}

/* Checks what server_first accepted against the message: the username, the authzid and
 * the client nonce (repeated at the start of server-first's r=) come from where RFC 5802 §7
 * puts them. */
static void check_first_fields(const struct st_scram_server *s, const char *cf, size_t cflen,
                               const char *sf)
{
    const char *end = cf + cflen;
    const char *c1 = memchr(cf, ',', cflen);
    CHECK(c1);
    size_t n;
    const char *a = field(c1 + 1, end, 'a', &n);
    const char *authzid = st_scram_server_authzid(s);
    CHECK((a != NULL) == (authzid != NULL));
    if (a) {
        char *want = ref_saslname(a, n);
        CHECK(strcmp(want, authzid) == 0);
        st_free(want);
    }
    const char *c2 = memchr(c1 + 1, ',', (size_t)(end - c1 - 1));
    CHECK(c2);
    const char *u = field(c2 + 1, end, 'n', &n);
    CHECK(u);
    char *want = ref_saslname(u, n);
    CHECK(strcmp(want, st_scram_server_user(s)) == 0);
    st_free(want);
    const char *r = field(u + n + 1, end, 'r', &n);
    CHECK(r && strncmp(sf + 2, r, n) == 0 && strncmp(sf + 2 + n, server_nonce,
                                                     strlen(server_nonce)) == 0);
}

/* Recomputes what a successful exchange must have seen (RFC 5802 §3, §7). */
static void confirm_success(enum st_scram_hash h, const char *cf, size_t cflen, const char *sf,
                            const char *fin, size_t finlen, const char *v, bool cbound)
{
    size_t dl = st_scram_digest_len(h);
    /* gs2-header ends at the second ','; the authzid cannot hold a raw ',' (RFC 5802 §7). */
    const char *c1 = memchr(cf, ',', cflen);
    CHECK(c1);
    const char *c2 = memchr(c1 + 1, ',', cflen - (size_t)(c1 + 1 - cf));
    CHECK(c2);
    size_t gs2len = (size_t)(c2 + 1 - cf);
    /* The proof is the last attribute. */
    const char *pp = NULL;
    for (size_t i = finlen; i-- > 0;) {
        if (fin[i] == ',' && i + 2 < finlen && fin[i + 1] == 'p' && fin[i + 2] == '=') {
            pp = fin + i;
            break;
        }
    }
    CHECK(pp);

    /* c= is base64(gs2-header || cb-data). */
    struct st_buf raw;
    st_buf_init(&raw, 0);
    st_buf_append(&raw, cf, gs2len);
    if (cbound)
        st_buf_append(&raw, cb_bytes, sizeof cb_bytes);
    char *cwant = st_base64_encode((const unsigned char *)raw.data, raw.len);
    CHECK(finlen > 2 && fin[0] == 'c' && fin[1] == '=');
    CHECK(strncmp(fin + 2, cwant, strlen(cwant)) == 0 && fin[2 + strlen(cwant)] == ',');
    st_free(cwant);
    st_buf_free(&raw);

    struct st_buf am;
    st_buf_init(&am, 0);
    st_buf_append(&am, cf + gs2len, cflen - gs2len);
    st_buf_puts(&am, ",");
    st_buf_puts(&am, sf);
    st_buf_puts(&am, ",");
    st_buf_append(&am, fin, (size_t)(pp - fin));
    unsigned char sig[ST_SCRAM_MAX_DIGEST], proof[ST_SCRAM_MAX_DIGEST];
    unsigned len = 0;
    CHECK(HMAC(md_of(h), keys[h].cred.stored_key, (int)dl, (const unsigned char *)am.data,
               am.len, sig, &len));
    for (size_t i = 0; i < dl; i++)
        proof[i] = keys[h].client_key[i] ^ sig[i];
    char *p64 = st_base64_encode(proof, dl);
    CHECK(strlen(p64) == finlen - (size_t)(pp + 3 - fin) && memcmp(p64, pp + 3, strlen(p64)) == 0);
    st_free(p64);
    CHECK(HMAC(md_of(h), keys[h].cred.server_key, (int)dl, (const unsigned char *)am.data,
               am.len, sig, &len));
    char *v64 = st_base64_encode(sig, dl);
    CHECK(v[0] == 'v' && v[1] == '=' && strcmp(v + 2, v64) == 0);
    st_free(v64);
    st_buf_free(&am);
}

static void run_exchange(uint8_t ctl, const char *cf, size_t cflen, const char *fin,
                         size_t finlen, bool have_final)
{
    enum st_scram_hash h = (enum st_scram_hash)((ctl & 3) % ST_SCRAM_NHASH);
    bool unknown = ctl & CTL_UNKNOWN_USER;
    struct cb_state cbs = {0, (ctl & CTL_CB_FAILS) != 0,
                           (ctl & CTL_ANY_TYPE) ? NULL : "tls-exporter"};
    struct st_scram_cb cb = {
        .plus = (ctl & CTL_PLUS) != 0,
        .server_supports_cb = (ctl & CTL_SERVER_CB) != 0,
        .type = cbs.want_type,
        .get_data = get_data,
        .ud = &cbs,
    };
    bool tls = !(ctl & CTL_NO_TLS);
    struct st_scram_server *s = st_scram_server_new(h, tls ? &cb : NULL);
    CHECK(s);
    CHECK(!st_scram_server_user(s));

    enum st_scram_result r = st_scram_server_first(s, cf, cflen);
    CHECK(valid_result(r));
    CHECK(r == ST_SCRAM_NEED_CRED || r == ST_SCRAM_FAIL_MALFORMED || r == ST_SCRAM_FAIL_CB);
    CHECK(cbs.calls <= 1);
    char *out = (char *)0x1;
    if (r != ST_SCRAM_NEED_CRED) {
        CHECK(st_scram_server_set_cred(s, &keys[h].cred, dummy_secret, sizeof dummy_secret,
                                       &out) == ST_SCRAM_FAIL_MALFORMED);
        CHECK(!out);
        st_scram_server_free(s);
        return;
    }
    /* Only a -PLUS exchange with 'p=' fetches binding data, and then it succeeded. */
    bool cbound = cbs.calls == 1;
    CHECK(!cbound || (tls && cb.plus && !cbs.fails && cflen > 0 && cf[0] == 'p'));
    CHECK(!(tls && cb.plus) || cbound);
    const char *user = st_scram_server_user(s);
    CHECK(user && *user);
    const char *authzid = st_scram_server_authzid(s);
    CHECK(!authzid || *authzid);

    CHECK(st_scram_server_set_nonce_for_test(s, server_nonce) == 0);
    char *sf = NULL;
    r = st_scram_server_set_cred(s, unknown ? NULL : &keys[h].cred, dummy_secret,
                                 sizeof dummy_secret, &sf);
    CHECK(r == ST_SCRAM_CONTINUE && sf);
    /* server-first-message = "r=" c-nonce s-nonce ",s=" salt ",i=" iterations */
    CHECK(strncmp(sf, "r=", 2) == 0);
    const char *sep = strstr(sf, ",s=");
    CHECK(sep && (size_t)(sep - sf) > 2 + strlen(server_nonce));
    CHECK(memcmp(sep - strlen(server_nonce), server_nonce, strlen(server_nonce)) == 0);
    if (!unknown)
        CHECK(strncmp(sep + 3, salt64, strlen(salt64)) == 0 &&
              strcmp(sep + 3 + strlen(salt64), ",i=4096") == 0);
    else
        CHECK(strstr(sep, ",i=4096") != NULL);
    check_first_fields(s, cf, cflen, sf);

    if (have_final) {
        r = st_scram_server_final(s, fin, finlen, &out);
        CHECK(valid_result(r));
        CHECK(r == ST_SCRAM_SUCCESS || r == ST_SCRAM_FAIL_MALFORMED ||
              r == ST_SCRAM_FAIL_NOT_AUTHORIZED || r == ST_SCRAM_FAIL_CB);
        CHECK((r == ST_SCRAM_SUCCESS) == (out != NULL));
        if (r == ST_SCRAM_SUCCESS) {
            CHECK(!unknown);
            confirm_success(h, cf, cflen, sf, fin, finlen, out, cbound);
            st_free(out);
        }
        /* The exchange is finished. */
        out = (char *)0x1;
        CHECK(st_scram_server_final(s, fin, finlen, &out) == ST_SCRAM_FAIL_MALFORMED);
        CHECK(!out);
    }
    CHECK(cbs.calls <= 1);
    st_free(sf);
    st_scram_server_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 3 * ST_SCRAM_MAX_MSG)
        return 0;
    init_once();
    uint8_t ctl = data[0];
    const uint8_t *rest = data + 1;
    size_t n = size - 1;
    check_base64(rest, n);

    /* Exact-size copies of both messages, so a read past either end is an ASan error. */
    const uint8_t *zero = memchr(rest, 0, n);
    size_t cflen = zero ? (size_t)(zero - rest) : n;
    size_t finlen = zero ? n - cflen - 1 : 0;
    char *cf = st_malloc(cflen ? cflen : 1);
    char *fin = st_malloc(finlen ? finlen : 1);
    memcpy(cf, rest, cflen);
    if (finlen)
        memcpy(fin, zero + 1, finlen);
    run_exchange(ctl, cf, cflen, fin, finlen, zero != NULL);
    st_free(cf);
    st_free(fin);
    return 0;
}

#define ST_FUZZ_NAME "fuzz_scram"
#include "standalone.h"
