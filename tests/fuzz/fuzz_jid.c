/* libFuzzer target for JIDs (src/xmpp/jid.c, RFC 7622) and the PRECIS
 * profiles under them (src/xmpp/precis.c, RFC 8264, RFC 8265 §3.3 and §4.2).
 * The input (at most 3 KiB) is taken as one string: it is parsed as a whole
 * JID (RFC 7622 §3.1) and prepared as each kind of part, through the public
 * functions (with the pure-ASCII fast path) and through the Unicode-only
 * path. Checked: both paths agree; every output is valid UTF-8, NFC, at most
 * 1023 octets (RFC 7622 §3.1) and a fixed point of its preparation (RFC 8264
 * §7 demands idempotence); a parsed JID's full and bare strings parse again
 * to the same JID, and its parts rebuild it through st_jid_make; a string
 * without '@' or '/' is a JID exactly when it is a valid domainpart.
 *
 * Built with -fsanitize=fuzzer for libFuzzer; with -DST_FUZZ_STANDALONE it
 * becomes a plain program that runs the files (or directories of files)
 * named on its command line, for short regression runs in `make test`. */
#include "base/buf.h"
#include "base/err.h"
#include "base/mem.h"
#include "xmpp/jid.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "fuzz_jid: check failed: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

#define INPUT_MAX 3072

/* RFC 3629 well-formedness, written independently of the code under test. */
static bool utf8_ok(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        unsigned c = *s, cp, k;
        if (c < 0x80) {
            s++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            k = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        for (unsigned j = 1; j <= k; j++) {
            if ((s[j] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[j] & 0x3Fu);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        s += k + 1;
    }
    return true;
}

static bool nfc_stable(const char *s)
{
    utf8proc_uint8_t *n = utf8proc_NFC((const utf8proc_uint8_t *)s);
    bool ok = n && strcmp((const char *)n, s) == 0;
    free(n);
    return ok;
}

typedef int (*prep_fn)(const char *, size_t, char **);

static const prep_fn preps[3] = {st_jid_prep_local, st_jid_prep_domain, st_jid_prep_resource};

static void check_part_output(enum st_jid_part part, const char *out)
{
    size_t n = strlen(out);
    CHECK(n > 0 && n <= ST_JID_PART_MAX);
    CHECK(utf8_ok(out));
    CHECK(nfc_stable(out));
    if (part == ST_JID_PART_LOCAL)
        CHECK(!strpbrk(out, "\"&'/:<>@")); /* RFC 7622 §3.3.1 */
    if (part == ST_JID_PART_DOMAIN)
        CHECK(!strpbrk(out, "@/"));
    /* Idempotence, through both paths. */
    char *again = NULL, *again_u = NULL;
    CHECK(preps[part](out, n, &again) == 0);
    CHECK(strcmp(again, out) == 0);
    CHECK(st_jid_prep_part_unicode(part, out, n, &again_u) == 0);
    CHECK(strcmp(again_u, out) == 0);
    st_free(again);
    st_free(again_u);
}

/* Prepares in[0..len) as one kind of part, both ways; returns the result (or NULL). */
static char *check_part(enum st_jid_part part, const char *in, size_t len)
{
    char *fast = (char *)0x1, *uni = (char *)0x1;
    int rf = preps[part](in, len, &fast);
    int ru = st_jid_prep_part_unicode(part, in, len, &uni);
    CHECK(rf == 0 || rf == ST_EINVAL);
    CHECK(ru == 0 || ru == ST_EINVAL);
    CHECK((rf == 0) == (fast != NULL));
    CHECK((ru == 0) == (uni != NULL));
    if (rf != ru || (rf == 0 && strcmp(fast, uni) != 0)) {
        fprintf(stderr, "fuzz_jid: part %d: fast path %d <%s>, unicode path %d <%s>\n",
                (int)part, rf, fast ? fast : "", ru, uni ? uni : "");
        abort();
    }
    st_free(uni);
    if (rf == 0)
        check_part_output(part, fast);
    return fast;
}

static void check_same(const struct st_jid *a, const struct st_jid *b)
{
    CHECK((a->local == NULL) == (b->local == NULL));
    CHECK(!a->local || strcmp(a->local, b->local) == 0);
    CHECK(strcmp(a->domain, b->domain) == 0);
    CHECK((a->resource == NULL) == (b->resource == NULL));
    CHECK(!a->resource || strcmp(a->resource, b->resource) == 0);
    CHECK(strcmp(a->full, b->full) == 0);
    CHECK(strcmp(a->bare, b->bare) == 0);
    CHECK(st_jid_equal(a, b));
}

/* Splits s by RFC 7622 §3.1 independently of jid.c, prepares the parts one by one and
 * compares that with the parse: it must succeed exactly when every part does, with the
 * same parts. */
static void check_split(const char *s, int rc, const struct st_jid *j)
{
    size_t len = strlen(s);
    const char *slash = memchr(s, '/', len);
    size_t barelen = slash ? (size_t)(slash - s) : len;
    const char *at = memchr(s, '@', barelen);
    char *local = NULL, *domain = NULL, *resource = NULL;
    bool ok = true;
    if (at)
        ok = st_jid_prep_local(s, (size_t)(at - s), &local) == 0;
    const char *d = at ? at + 1 : s;
    ok = st_jid_prep_domain(d, barelen - (size_t)(d - s), &domain) == 0 && ok;
    if (slash)
        ok = st_jid_prep_resource(slash + 1, len - barelen - 1, &resource) == 0 && ok;
    CHECK(ok == (rc == 0));
    if (ok) {
        CHECK((local == NULL) == (j->local == NULL) && (!local || !strcmp(local, j->local)));
        CHECK(strcmp(domain, j->domain) == 0);
        CHECK((resource == NULL) == (j->resource == NULL) &&
              (!resource || !strcmp(resource, j->resource)));
    }
    st_free(local);
    st_free(domain);
    st_free(resource);
}

static void check_jid(const char *s)
{
    struct st_jid j;
    memset(&j, 0x5A, sizeof j);
    int rc = st_jid_parse(s, &j);
    char *str = st_jid_prep_string(s);
    CHECK(rc == 0 || rc == ST_EINVAL);
    CHECK((rc == 0) == (str != NULL));
    check_split(s, rc, &j);
    if (rc) {
        CHECK(!j.local && !j.domain && !j.resource && !j.full && !j.bare);
        return;
    }
    CHECK(j.domain && j.full && j.bare);
    CHECK(strcmp(str, j.full) == 0);
    st_free(str);
    if (j.local)
        check_part_output(ST_JID_PART_LOCAL, j.local);
    check_part_output(ST_JID_PART_DOMAIN, j.domain);
    if (j.resource)
        check_part_output(ST_JID_PART_RESOURCE, j.resource);

    /* full and bare are exactly the parts joined (RFC 7622 §3.1). */
    struct st_buf b;
    st_buf_init(&b, 0);
    if (j.local)
        st_buf_printf(&b, "%s@", j.local);
    st_buf_puts(&b, j.domain);
    CHECK(strcmp(b.data, j.bare) == 0);
    if (j.resource)
        st_buf_printf(&b, "/%s", j.resource);
    CHECK(strcmp(b.data, j.full) == 0);
    st_buf_free(&b);

    struct st_jid k;
    CHECK(st_jid_parse(j.full, &k) == 0);
    check_same(&j, &k);
    st_jid_clear(&k);

    CHECK(st_jid_make(j.local, j.domain, j.resource, &k) == 0);
    check_same(&j, &k);
    st_jid_clear(&k);

    CHECK(st_jid_parse(j.bare, &k) == 0);
    CHECK(!k.resource && strcmp(k.full, j.bare) == 0 && strcmp(k.bare, j.bare) == 0);
    st_jid_clear(&k);

    st_jid_copy(&k, &j);
    check_same(&j, &k);
    st_jid_clear(&k);
    st_jid_clear(&j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > INPUT_MAX)
        return 0;
    /* An exact-size copy, so that a read past len is an ASan error even here. */
    char *in = st_malloc(size ? size : 1);
    memcpy(in, data, size);
    char *parts[3];
    for (int p = 0; p < 3; p++)
        parts[p] = check_part((enum st_jid_part)p, in, size);
    st_free(in);

    char *s = st_strndup((const char *)data, size); /* stops at an embedded NUL */
    check_jid(s);
    /* Without separators the whole string is the domainpart. */
    if (strlen(s) == size && !memchr(s, '@', size) && !memchr(s, '/', size)) {
        char *full = st_jid_prep_string(s);
        CHECK((full != NULL) == (parts[ST_JID_PART_DOMAIN] != NULL));
        CHECK(!full || strcmp(full, parts[ST_JID_PART_DOMAIN]) == 0);
        st_free(full);
    }
    st_free(s);
    for (int p = 0; p < 3; p++)
        st_free(parts[p]);
    return 0;
}

#define ST_FUZZ_NAME "fuzz_jid"
#include "standalone.h"
