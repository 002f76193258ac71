/* Unit tests for JIDs (RFC 7622) and PRECIS (RFC 8264, RFC 8265): the
 * examples of RFC 7622 §3.5 (with erratum 4560), RFC 8265 §3.5 and §4.3,
 * contextual rules (RFC 5892 Appendix A), the Bidi Rule (RFC 5893 §2),
 * IDNA domains, part-length boundaries, and property tests: preparation is
 * idempotent, and the pure-ASCII fast path agrees with the Unicode path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/mem.h"
#include "xmpp/jid.h"
#include "xmpp/precis.h"

static void expect_jid(const char *in, const char *full)
{
    char *got = st_jid_prep_string(in);
    if (!got)
        fail_msg("JID <%s> rejected, expected <%s>", in, full);
    if (strcmp(got, full) != 0)
        fail_msg("JID <%s> gave <%s>, expected <%s>", in, got, full);
    st_free(got);
}

static void expect_bad_jid(const char *in)
{
    char *got = st_jid_prep_string(in);
    if (got)
        fail_msg("JID <%s> accepted as <%s>", in, got);
}

typedef int (*prep_fn)(const char *, size_t, char **);

static void expect_part(prep_fn f, const char *in, const char *want)
{
    char *got = (char *)0x1;
    int rc = f(in, strlen(in), &got);
    if (!want) {
        if (rc == 0)
            fail_msg("part <%s> accepted as <%s>", in, got);
        assert_int_equal(rc, ST_EINVAL);
        assert_null(got);
        return;
    }
    if (rc != 0)
        fail_msg("part <%s> rejected, expected <%s>", in, want);
    if (strcmp(got, want) != 0)
        fail_msg("part <%s> gave <%s>, expected <%s>", in, got, want);
    st_free(got);
}

static void expect_precis(enum st_precis_profile p, const char *in, const char *want)
{
    char *got = NULL;
    int rc = st_precis_enforce(p, in, strlen(in), 0, 0, &got);
    if (!want) {
        if (rc == 0)
            fail_msg("PRECIS <%s> accepted as <%s>", in, got);
        return;
    }
    if (rc != 0)
        fail_msg("PRECIS <%s> rejected, expected <%s>", in, want);
    if (strcmp(got, want) != 0)
        fail_msg("PRECIS <%s> gave <%s>, expected <%s>", in, got, want);
    st_free(got);
}

/* RFC 7622 §3.5.1: valid JIDs, and their canonical forms. */
static void rfc7622_valid(void **state)
{
    (void)state;
    expect_jid("juliet@example.com", "juliet@example.com");
    expect_jid("juliet@example.com/foo", "juliet@example.com/foo");
    expect_jid("juliet@example.com/foo bar", "juliet@example.com/foo bar");
    expect_jid("juliet@example.com/foo@bar", "juliet@example.com/foo@bar");
    expect_jid("foo\\20bar@example.com", "foo\\20bar@example.com");
    expect_jid("fussball@example.com", "fussball@example.com");
    expect_jid("fu\xc3\x9f" "ball@example.com", "fu\xc3\x9f" "ball@example.com");
    expect_jid("π@example.com", "π@example.com");
    expect_jid("Σ@example.com/foo", "σ@example.com/foo");
    expect_jid("σ@example.com/foo", "σ@example.com/foo");
    expect_jid("ς@example.com/foo", "ς@example.com/foo");
    expect_jid("king@example.com/♚", "king@example.com/♚");
    expect_jid("example.com", "example.com");
    expect_jid("example.com/foobar", "example.com/foobar");
    expect_jid("a.example.com/b@example.net", "a.example.com/b@example.net");
    /* Example 18 was wrong (erratum 4560): OpaqueString allows a leading space. */
    expect_jid("juliet@example.com/ foo", "juliet@example.com/ foo");
}

/* RFC 7622 §3.5.2: invalid JIDs. */
static void rfc7622_invalid(void **state)
{
    (void)state;
    expect_bad_jid("\"juliet\"@example.com");
    expect_bad_jid("foo bar@example.com");
    expect_bad_jid("@example.com/");
    expect_bad_jid("henry\xe2\x85\xa3@example.com"); /* U+2163 ROMAN NUMERAL FOUR */
    expect_bad_jid("♚@example.com");
    expect_bad_jid("juliet@");
    expect_bad_jid("/foobar");
    /* Each character RFC 7622 §3.3.1 forbids in localparts. */
    const char *forbidden[] = {"a\"b@x", "a&b@x", "a'b@x", "a:b@x", "a<b@x", "a>b@x"};
    for (size_t i = 0; i < sizeof forbidden / sizeof *forbidden; i++)
        expect_bad_jid(forbidden[i]);
    /* ...also when width mapping produces them (FULLWIDTH COMMERCIAL AT, SOLIDUS). */
    expect_part(st_jid_prep_local, "a\xef\xbc\xa0" "b", NULL);
    expect_part(st_jid_prep_local, "a\xef\xbc\x8f" "b", NULL);
}

/* RFC 7622 §3.1: splitting order and empty parts. */
static void parse_structure(void **state)
{
    (void)state;
    struct st_jid j;
    assert_int_equal(st_jid_parse("Juliet@Example.com/Balcony/Left@x", &j), 0);
    assert_string_equal(j.local, "juliet");
    assert_string_equal(j.domain, "example.com");
    assert_string_equal(j.resource, "Balcony/Left@x");
    assert_string_equal(j.bare, "juliet@example.com");
    assert_string_equal(j.full, "juliet@example.com/Balcony/Left@x");
    struct st_jid k;
    st_jid_copy(&k, &j);
    assert_true(st_jid_equal(&j, &k));
    st_jid_clear(&k);
    assert_null(k.full);
    struct st_jid m;
    assert_int_equal(st_jid_make("JULIET", "EXAMPLE.COM", "Balcony/Left@x", &m), 0);
    assert_true(st_jid_equal(&j, &m));
    st_jid_clear(&m);
    assert_int_equal(st_jid_parse("juliet@example.com/balcony/Left@x", &m), 0);
    assert_false(st_jid_equal(&j, &m)); /* resourceparts are case-sensitive */
    st_jid_clear(&m);
    st_jid_clear(&j);

    assert_int_equal(st_jid_parse("example.com", &j), 0);
    assert_null(j.local);
    assert_null(j.resource);
    assert_string_equal(j.bare, "example.com");
    assert_string_equal(j.full, "example.com");
    st_jid_clear(&j);

    assert_int_equal(st_jid_make(NULL, "Example.COM.", NULL, &j), 0);
    assert_string_equal(j.full, "example.com");
    st_jid_clear(&j);

    assert_int_equal(st_jid_parse("a@b@c", &j), ST_EINVAL);
    assert_null(j.full);
    assert_null(j.domain);
    assert_int_equal(st_jid_parse("d/", &j), ST_EINVAL);
    assert_int_equal(st_jid_parse("@d", &j), ST_EINVAL);
    assert_int_equal(st_jid_parse("", &j), ST_EINVAL);
    assert_int_equal(st_jid_parse("@", &j), ST_EINVAL);
    assert_int_equal(st_jid_parse("/", &j), ST_EINVAL);
    assert_int_equal(st_jid_parse(NULL, &j), ST_EINVAL);
    assert_int_equal(st_jid_make("", "example.com", NULL, &j), ST_EINVAL);
    assert_int_equal(st_jid_make(NULL, "example.com", "", &j), ST_EINVAL);
    assert_int_equal(st_jid_make("a", NULL, NULL, &j), ST_EINVAL);
    assert_int_equal(st_jid_make("a", "", NULL, &j), ST_EINVAL);

    expect_jid("JULIET@EXAMPLE.COM/Foo", "juliet@example.com/Foo");
    expect_jid("a@d/r@x", "a@d/r@x");
    assert_null(st_jid_prep_string(NULL));
}

/* RFC 8265 §3.5: UsernameCaseMapped examples (the bare profile, without JID rules). */
static void rfc8265_username(void **state)
{
    (void)state;
    enum st_precis_profile u = ST_PRECIS_USERNAME_CASEMAPPED;
    expect_precis(u, "juliet@example.com", "juliet@example.com");
    expect_precis(u, "fussball", "fussball");
    expect_precis(u, "fu\xc3\x9f" "ball", "fu\xc3\x9f" "ball");
    expect_precis(u, "π", "π");
    expect_precis(u, "Σ", "σ");
    expect_precis(u, "σ", "σ");
    expect_precis(u, "ς", "ς");
    expect_precis(u, "foo bar", NULL);
    expect_precis(u, "", NULL);
    expect_precis(u, "henry\xe2\x85\xa3", NULL);
    expect_precis(u, "♚", NULL);
    /* U+1F9B (titlecase, Lt) lowercases to U+1F93, which is valid; the decomposed
     * capital (U+0397 U+0314 U+0300 U+0345) reaches the same string. */
    expect_precis(u, "\xe1\xbe\x9b", "\xe1\xbe\x93");
    expect_precis(u, "\xce\x97\xcc\x94\xcc\x80\xcd\x85", "\xe1\xbe\x93");
    /* Width mapping: fullwidth Latin to ASCII, halfwidth katakana + voiced mark composed. */
    expect_precis(u, "ＪＵＬＩＥＴ", "juliet");
    expect_precis(u, "\xef\xbd\xb6\xef\xbe\x9e", "ガ");
    /* U+0130 has the one unconditional special lowercase mapping. */
    expect_precis(u, "\xc4\xb0", "i\xcc\x87");
    /* NFC and case mapping together. */
    expect_precis(u, "E\xcc\x81", "\xc3\xa9");
    /* Controls and default-ignorables are disallowed, not removed. */
    expect_precis(u, "a\tb", NULL);
    expect_precis(u, "a\xc2\xad" "b", NULL);
    expect_precis(u, "a\xe2\x80\x8b" "b", NULL);
}

/* RFC 8265 §4.3: OpaqueString examples. */
static void rfc8265_opaque(void **state)
{
    (void)state;
    enum st_precis_profile o = ST_PRECIS_OPAQUE_STRING;
    expect_precis(o, "correct horse battery staple", "correct horse battery staple");
    expect_precis(o, "Correct Horse Battery Staple", "Correct Horse Battery Staple");
    expect_precis(o, "πßå", "πßå");
    expect_precis(o, "Jack of ♦s", "Jack of ♦s");
    expect_precis(o, "foo\xe1\x9a\x80" "bar", "foo bar"); /* OGHAM SPACE MARK */
    expect_precis(o, "", NULL);
    expect_precis(o, "my cat is a \x09" "by", NULL);
    /* Other non-ASCII spaces, NFC, and no width mapping. */
    expect_precis(o, "\xe3\x80\x80" "foo\xc2\xa0" "bar", " foo bar");
    expect_precis(o, "e\xcc\x81", "\xc3\xa9");
    expect_precis(o, "ＡＢ", "ＡＢ");
    expect_precis(o, "henry\xe2\x85\xa3", "henry\xe2\x85\xa3");
    expect_part(st_jid_prep_resource, "Foo", "Foo");
    expect_part(st_jid_prep_resource, "a\x7f", NULL);
}

/* RFC 8264 §8 derived properties for a sample of each category. */
static void precis_properties(void **state)
{
    (void)state;
    const enum st_precis_class I = ST_PRECIS_IDENTIFIER, F = ST_PRECIS_FREEFORM;
    struct {
        int32_t cp;
        enum st_precis_prop id, ff;
    } t[] = {
        {0x0041, ST_PRECIS_PVALID, ST_PRECIS_PVALID},         /* ASCII7 */
        {0x0020, ST_PRECIS_DISALLOWED, ST_PRECIS_PVALID},     /* Spaces */
        {0x0009, ST_PRECIS_DISALLOWED, ST_PRECIS_DISALLOWED}, /* Controls */
        {0x00DF, ST_PRECIS_PVALID, ST_PRECIS_PVALID},         /* Exceptions PVALID */
        {0x0640, ST_PRECIS_DISALLOWED, ST_PRECIS_DISALLOWED}, /* Exceptions DISALLOWED */
        {0x00B7, ST_PRECIS_CONTEXTO, ST_PRECIS_CONTEXTO},
        {0x0661, ST_PRECIS_CONTEXTO, ST_PRECIS_CONTEXTO},
        {0x200C, ST_PRECIS_CONTEXTJ, ST_PRECIS_CONTEXTJ},
        {0x0378, ST_PRECIS_UNASSIGNED, ST_PRECIS_UNASSIGNED},
        {0xFDD0, ST_PRECIS_DISALLOWED, ST_PRECIS_DISALLOWED}, /* noncharacter */
        {0x10FFFF, ST_PRECIS_DISALLOWED, ST_PRECIS_DISALLOWED},
        {0x00AD, ST_PRECIS_DISALLOWED, ST_PRECIS_DISALLOWED}, /* default ignorable */
        {0x1100, ST_PRECIS_DISALLOWED, ST_PRECIS_DISALLOWED}, /* OldHangulJamo */
        {0x2163, ST_PRECIS_DISALLOWED, ST_PRECIS_PVALID},     /* HasCompat */
        {0xFF21, ST_PRECIS_DISALLOWED, ST_PRECIS_PVALID},     /* HasCompat */
        {0x212B, ST_PRECIS_DISALLOWED, ST_PRECIS_PVALID},     /* singleton: NFKC != cp */
        {0x265A, ST_PRECIS_DISALLOWED, ST_PRECIS_PVALID},     /* Symbols */
        {0x00A1, ST_PRECIS_DISALLOWED, ST_PRECIS_PVALID},     /* Punctuation */
        {0x01C5, ST_PRECIS_DISALLOWED, ST_PRECIS_PVALID},     /* Lt (and compat) */
        {0x03C0, ST_PRECIS_PVALID, ST_PRECIS_PVALID},         /* Ll */
        {0x4E2D, ST_PRECIS_PVALID, ST_PRECIS_PVALID},         /* Lo */
        {0x0301, ST_PRECIS_PVALID, ST_PRECIS_PVALID},         /* Mn */
        {0xE000, ST_PRECIS_DISALLOWED, ST_PRECIS_DISALLOWED}, /* private use */
        {0x2028, ST_PRECIS_DISALLOWED, ST_PRECIS_DISALLOWED}, /* Zl */
        {0xD800, ST_PRECIS_DISALLOWED, ST_PRECIS_DISALLOWED}, /* surrogate */
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        if (st_precis_property(t[i].cp, I) != t[i].id ||
            st_precis_property(t[i].cp, F) != t[i].ff)
            fail_msg("U+%04X: got %d/%d, want %d/%d", (unsigned)t[i].cp,
                     st_precis_property(t[i].cp, I), st_precis_property(t[i].cp, F), t[i].id,
                     t[i].ff);
    }
}

/* RFC 5892 Appendix A contextual rules, enforced in both classes. */
static void context_rules(void **state)
{
    (void)state;
    prep_fn L = st_jid_prep_local, R = st_jid_prep_resource;
    expect_part(L, "\xe0\xa4\x95\xe0\xa5\x8d\xe2\x80\x8d\xe0\xa4\xb7", /* क्‍ष: ZWJ after virama */
                "\xe0\xa4\x95\xe0\xa5\x8d\xe2\x80\x8d\xe0\xa4\xb7");
    expect_part(L, "a\xe2\x80\x8d" "b", NULL);
    expect_part(L, "a\xe2\x80\x8c" "b", NULL);
    /* ZWNJ between dual-joining Arabic letters (Persian "mi-xaham"), not after alef (R). */
    expect_part(L, "\xd9\x85\xdb\x8c\xe2\x80\x8c\xd8\xae\xd9\x88\xd8\xa7\xd9\x87\xd9\x85",
                "\xd9\x85\xdb\x8c\xe2\x80\x8c\xd8\xae\xd9\x88\xd8\xa7\xd9\x87\xd9\x85");
    expect_part(L, "\xd8\xa7\xe2\x80\x8c\xd8\xa8", NULL);
    expect_part(L, "col\xc2\xb7lecci\xc3\xb3", "col\xc2\xb7lecci\xc3\xb3"); /* l·l */
    expect_part(L, "a\xc2\xb7" "b", NULL);
    expect_part(R, "a\xc2\xb7" "b", NULL);
    expect_part(L, "\xcd\xb5\xce\xb1", "\xcd\xb5\xce\xb1"); /* keraia before Greek */
    expect_part(L, "\xcd\xb5" "a", NULL);
    expect_part(L, "\xd7\x90\xd7\xb3", "\xd7\x90\xd7\xb3"); /* geresh after Hebrew */
    expect_part(R, "a\xd7\xb3", NULL);
    expect_part(L, "\xe3\x82\xa2\xe3\x83\xbb\xe3\x82\xa4", "\xe3\x82\xa2\xe3\x83\xbb\xe3\x82\xa4");
    expect_part(R, "a\xe3\x83\xbb" "b", NULL); /* katakana middle dot without kana/Han */
    expect_part(R, "\xd9\xa1\xd9\xa2", "\xd9\xa1\xd9\xa2");
    expect_part(R, "\xd9\xa1\xdb\xb1", NULL); /* Arabic-Indic mixed with extended digits */
}

/* RFC 5893 §2, required for localparts by RFC 8265 §3.3.2. */
static void bidi_rule(void **state)
{
    (void)state;
    prep_fn L = st_jid_prep_local;
    expect_part(L, "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d", "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d");
    expect_part(L, "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d" "1", "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d" "1");
    expect_part(L, "1\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d", NULL); /* rule 1 */
    expect_part(L, "a\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d", NULL); /* rule 5 */
    expect_part(L, "\xd7\xa9" "a", NULL);                       /* rule 2 */
    expect_part(L, "\xd7\xa9\xd9\xa1" "1", NULL);               /* rule 4: EN with AN */
    expect_part(L, "\xd7\xa9-", NULL);                          /* rule 3 */
    /* OpaqueString has no directionality rule. */
    expect_part(st_jid_prep_resource, "a\xd7\xa9", "a\xd7\xa9");
}

/* RFC 7622 §3.2: IDNA2008 domainparts, stored as lowercase U-labels, and IP literals. */
static void domains(void **state)
{
    (void)state;
    prep_fn D = st_jid_prep_domain;
    expect_part(D, "Bücher.example", "bücher.example");
    expect_part(D, "xn--bcher-kva.example", "bücher.example");
    expect_part(D, "XN--BCHER-KVA.EXAMPLE", "bücher.example");
    expect_part(D, "BÜCHER.example", "bücher.example");
    expect_part(D, "fu\xc3\x9f" "ball.example", "fu\xc3\x9f" "ball.example"); /* nontransitional */
    expect_part(D, "ＥＸＡＭＰＬＥ．ｃｏｍ", "example.com");
    expect_part(D, "example\xe3\x80\x82" "com", "example.com");
    expect_part(D, "EXAMPLE.COM", "example.com");
    expect_part(D, "example.com.", "example.com");
    expect_part(D, "example.com\xe3\x80\x82", "example.com");
    expect_part(D, "localhost", "localhost");
    expect_part(D, "3com.com", "3com.com");
    expect_part(D, "xn--d1acufc.xn--p1ai", "домен.рф");
    expect_part(D, "example.com..", NULL);
    expect_part(D, ".example.com", NULL);
    expect_part(D, "a..b", NULL);
    expect_part(D, ".", NULL);
    expect_part(D, "", NULL);
    expect_part(D, "-a.com", NULL);
    expect_part(D, "a-.com", NULL);
    expect_part(D, "ab--cd.com", NULL);
    expect_part(D, "a_b.com", NULL);
    expect_part(D, "a b.com", NULL);
    expect_part(D, "a@b.com", NULL);
    expect_part(D, "a/b.com", NULL);
    expect_part(D, "ex\xef\xbc\xa0" "ample.com", NULL); /* maps to '@' */
    expect_part(D, "xn--a.com", NULL);
    expect_part(D, "\xe2\x99\x9a.example", NULL); /* symbols are not IDNA2008 PVALID */
    expect_part(D, "a\xff.com", NULL);
    char l63[80], l64[80];
    memset(l63, 'a', 63);
    memcpy(l63 + 63, ".com", 5);
    memset(l64, 'a', 64);
    memcpy(l64 + 64, ".com", 5);
    expect_part(D, l63, l63);
    expect_part(D, l64, NULL);
    /* IP literals. */
    expect_part(D, "127.0.0.1", "127.0.0.1");
    expect_part(D, "[::1]", "[::1]");
    expect_part(D, "[0:0:0:0:0:0:0:1]", "[::1]");
    expect_part(D, "[2001:DB8::1]", "[2001:db8::1]");
    expect_part(D, "[::1", NULL);
    expect_part(D, "[1.2.3.4]", NULL);
    expect_part(D, "[fe80::1%eth0]", NULL);
    expect_part(D, "[]", NULL);
    expect_jid("juliet@[::1]/r", "juliet@[::1]/r");
    expect_jid("Juliet@Bücher.Example/Balkon", "juliet@bücher.example/Balkon");
    char *a = st_jid_prep_string("x@xn--bcher-kva.example");
    char *b = st_jid_prep_string("X@BÜCHER.EXAMPLE.");
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(a, b);
    st_free(a);
    st_free(b);
}

static void check_len(prep_fn f, const char *s, size_t len, bool ok)
{
    char *out = NULL;
    int rc = f(s, len, &out);
    if (ok != (rc == 0))
        fail_msg("length %zu: rc %d", len, rc);
    if (ok)
        assert_true(strlen(out) <= ST_JID_PART_MAX);
    st_free(out);
}

/* Build a domain of exactly n octets from 62-octet labels. */
static void make_domain(char *buf, size_t n, char fill)
{
    size_t i = 0;
    while (n - i > 63) {
        memset(buf + i, fill, 62);
        buf[i + 62] = '.';
        i += 63;
    }
    memset(buf + i, fill, n - i);
    buf[n] = '\0';
}

/* RFC 7622 §3.2-§3.4: each part is 1 to 1023 octets after preparation. */
static void length_boundaries(void **state)
{
    (void)state;
    static char s[8192], d[2048];
    memset(s, 'A', 1024);
    check_len(st_jid_prep_local, s, 1023, true);
    check_len(st_jid_prep_local, s, 1024, false);
    check_len(st_jid_prep_resource, s, 1023, true);
    check_len(st_jid_prep_resource, s, 1024, false);
    /* Multibyte: 511 x é + 'a' is 1023 octets, 512 x é is 1024. */
    for (int i = 0; i < 512; i++)
        memcpy(s + 2 * i, "\xc3\xa9", 2);
    s[1022] = 'a';
    check_len(st_jid_prep_local, s, 1023, true);
    check_len(st_jid_prep_resource, s, 1023, true);
    for (int i = 0; i < 512; i++)
        memcpy(s + 2 * i, "\xc3\x89", 2); /* É lowercases to é */
    check_len(st_jid_prep_local, s, 1024, false);
    check_len(st_jid_prep_local, s, 1022, true);
    /* The limit applies after preparation: 1023 fullwidth letters (3069 octets) fit. */
    for (int i = 0; i < 1024; i++)
        memcpy(s + 3 * i, "\xef\xbc\xa1", 3);
    check_len(st_jid_prep_local, s, 3 * 1023, true);
    check_len(st_jid_prep_local, s, 3 * 1024, false);
    check_len(st_jid_prep_resource, s, 3 * 1023, false); /* no width mapping there */

    make_domain(d, 1023, 'a');
    check_len(st_jid_prep_domain, d, 1023, true);
    char *u = NULL;
    assert_int_equal(st_jid_prep_part_unicode(ST_JID_PART_DOMAIN, d, 1023, &u), 0);
    st_free(u);
    d[1023] = '.';
    check_len(st_jid_prep_domain, d, 1024, true); /* the trailing dot is not counted */
    make_domain(d, 1024, 'B');
    check_len(st_jid_prep_domain, d, 1024, false);

    /* Whole JIDs at the limits: 1023 + 1 + 1023 + 1 + 1023 octets. */
    struct st_buf b;
    st_buf_init(&b, 0);
    memset(s, 'x', 1023);
    st_buf_append(&b, s, 1023);
    st_buf_append(&b, "@", 1);
    make_domain(d, 1023, 'y');
    st_buf_puts(&b, d);
    st_buf_append(&b, "/", 1);
    st_buf_append(&b, s, 1023);
    struct st_jid j;
    assert_int_equal(st_jid_parse(b.data, &j), 0);
    assert_int_equal(strlen(j.full), 3071);
    st_jid_clear(&j);
    st_buf_append(&b, "z", 1);
    assert_int_equal(st_jid_parse(b.data, &j), ST_EINVAL);
    st_buf_free(&b);
}

/* --- Property tests ------------------------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static const int32_t pool[] = {
    /* ASCII, including the JID separators and specials */
    'a', 'b', 'c', 'x', 'y', 'z', 'A', 'B', 'Z', '0', '7', '-', '.', '_', '@', '/', '"', '&',
    '\\', ' ', '~', '!', 0x7F, 0x09,
    /* Latin-1 */
    0xC0, 0xC9, 0xDF, 0xE9, 0xFF, 0xA0, 0xB7, 0xAA, 0xBD,
    /* Greek */
    0x391, 0x3A3, 0x3C3, 0x3C2, 0x3B1, 0x390, 0x1F9B, 0x375, 0x345,
    /* CJK, kana */
    0x4E2D, 0x6587, 0x3042, 0x30A2, 0x30FB, 0x3007,
    /* fullwidth and halfwidth forms */
    0xFF21, 0xFF41, 0xFF10, 0xFF20, 0xFF0E, 0xFF76, 0xFF9E, 0xFFE3,
    /* combining marks */
    0x300, 0x301, 0x308, 0x327, 0x94D, 0x93C,
    /* spaces and friends */
    0x20, 0x3000, 0x1680, 0x2002, 0x200C, 0x200D, 0x3002,
    /* Hangul jamo and syllables, Devanagari, special casing, Hebrew, Arabic */
    0x1100, 0x1161, 0x11A8, 0xAC00, 0x915, 0x130, 0x5D0, 0x627, 0x628, 0x661, 0x6F1,
};

static size_t random_string(char *buf, size_t cap, const int32_t *p, size_t np, size_t maxlen)
{
    size_t n = 1 + rnd((uint32_t)maxlen), len = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t cp = p[rnd((uint32_t)np)];
        char u8[4];
        size_t k;
        if (cp < 0x80) {
            u8[0] = (char)cp;
            k = 1;
        } else if (cp < 0x800) {
            u8[0] = (char)(0xC0 | (cp >> 6));
            u8[1] = (char)(0x80 | (cp & 0x3F));
            k = 2;
        } else {
            u8[0] = (char)(0xE0 | (cp >> 12));
            u8[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
            u8[2] = (char)(0x80 | (cp & 0x3F));
            k = 3;
        }
        if (len + k >= cap)
            break;
        memcpy(buf + len, u8, k);
        len += k;
    }
    buf[len] = '\0';
    return len;
}

static int prep_unicode_local(const char *s, size_t n, char **o)
{
    return st_jid_prep_part_unicode(ST_JID_PART_LOCAL, s, n, o);
}
static int prep_unicode_domain(const char *s, size_t n, char **o)
{
    return st_jid_prep_part_unicode(ST_JID_PART_DOMAIN, s, n, o);
}
static int prep_unicode_resource(const char *s, size_t n, char **o)
{
    return st_jid_prep_part_unicode(ST_JID_PART_RESOURCE, s, n, o);
}

/* prep(prep(x)) == prep(x) whenever prep(x) succeeds; and the Unicode path agrees. */
static size_t check_idempotent(prep_fn f, prep_fn slow, const char *s, size_t n)
{
    char *a = NULL, *b = NULL, *c = NULL;
    int ra = f(s, n, &a);
    int rc = slow(s, n, &c);
    if ((ra == 0) != (rc == 0) || (ra == 0 && strcmp(a, c) != 0))
        fail_msg("fast/slow disagree on <%s>: %d <%s> vs %d <%s>", s, ra, a ? a : "",
                 rc, c ? c : "");
    st_free(c);
    if (ra != 0)
        return 0;
    int rb = f(a, strlen(a), &b);
    if (rb != 0 || strcmp(a, b) != 0)
        fail_msg("not idempotent: <%s> -> <%s> -> %d <%s>", s, a, rb, b ? b : "");
    st_free(a);
    st_free(b);
    return 1;
}

static void idempotence(void **state)
{
    (void)state;
    char s[256];
    size_t np = sizeof pool / sizeof *pool;
    size_t ok_l = 0, ok_d = 0, ok_r = 0, ok_j = 0;
    /* Domains need mostly letters to have a chance; bias their pool. */
    static const int32_t dpool[] = {'a', 'b', 'e', 'k', 'z', 'Q', '1', '-', '.', '.', 0xE9,
                                    0xDF, 0xC9, 0x3C3, 0x3A3, 0x4E2D, 0x3042, 0xFF21, 0xFF41,
                                    0x3002, 0x301, 0x5D0, 0x627, 0x200D, '_', 0x3000};
    for (int i = 0; i < 3000; i++) {
        size_t n = random_string(s, sizeof s, pool, np, 12);
        ok_l += check_idempotent(st_jid_prep_local, prep_unicode_local, s, n);
        ok_r += check_idempotent(st_jid_prep_resource, prep_unicode_resource, s, n);
        n = random_string(s, sizeof s, dpool, sizeof dpool / sizeof *dpool, 16);
        ok_d += check_idempotent(st_jid_prep_domain, prep_unicode_domain, s, n);
    }
    /* Whole JIDs: random parts joined with separators. */
    for (int i = 0; i < 3000; i++) {
        char l[64], d[64], r[64], jid[256];
        random_string(l, sizeof l, pool, np, 6);
        random_string(d, sizeof d, dpool, sizeof dpool / sizeof *dpool, 8);
        random_string(r, sizeof r, pool, np, 8);
        int shape = (int)rnd(4);
        snprintf(jid, sizeof jid, "%s%s%s%s%s", shape & 1 ? l : "", shape & 1 ? "@" : "", d,
                 shape & 2 ? "/" : "", shape & 2 ? r : "");
        char *a = st_jid_prep_string(jid);
        if (!a)
            continue;
        ok_j++;
        char *b = st_jid_prep_string(a);
        if (!b || strcmp(a, b) != 0)
            fail_msg("JID not idempotent: <%s> -> <%s> -> <%s>", jid, a, b ? b : "(null)");
        st_free(a);
        st_free(b);
    }
    print_message("ok: local %zu resource %zu domain %zu jid %zu\n", ok_l, ok_r, ok_d, ok_j);
    /* The generator must actually exercise the success paths. */
    assert_true(ok_l > 100);
    assert_true(ok_r > 300);
    assert_true(ok_d > 100);
    assert_true(ok_j > 100);
}

/* The pure-ASCII fast path gives exactly the Unicode path's answers. */
static void fast_path_matches(void **state)
{
    (void)state;
    int32_t ascii[128];
    size_t np = 0;
    for (int32_t c = 0x01; c < 0x80; c++)
        ascii[np++] = c;
    static const int32_t hostish[] = {'a', 'b', 'x', 'n', 'Z', '0', '9', '-', '-', '.', '_',
                                      ' ', '@', '/', '[', ']', ':'};
    char s[128];
    size_t okd = 0;
    for (int i = 0; i < 4000; i++) {
        size_t n = random_string(s, sizeof s, ascii, np, 10);
        check_idempotent(st_jid_prep_local, prep_unicode_local, s, n);
        check_idempotent(st_jid_prep_resource, prep_unicode_resource, s, n);
        check_idempotent(st_jid_prep_domain, prep_unicode_domain, s, n);
        n = random_string(s, sizeof s, hostish, sizeof hostish / sizeof *hostish, 12);
        okd += check_idempotent(st_jid_prep_domain, prep_unicode_domain, s, n);
    }
    assert_true(okd > 100);
    const char *fixed[] = {"ab--cd", "xn--bcher-kva", "a-b", "-", "1.2.3.4", "1.2.3.4.",
                           "LOCALHOST", "Juliet", "foo\\20bar"};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
        check_idempotent(st_jid_prep_local, prep_unicode_local, fixed[i], strlen(fixed[i]));
        check_idempotent(st_jid_prep_domain, prep_unicode_domain, fixed[i], strlen(fixed[i]));
    }
}

/* Malformed UTF-8 is rejected in every part. */
static void bad_utf8(void **state)
{
    (void)state;
    const char *bad[] = {"\xff", "a\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        expect_part(st_jid_prep_local, bad[i], NULL);
        expect_part(st_jid_prep_resource, bad[i], NULL);
        expect_part(st_jid_prep_domain, bad[i], NULL);
    }
    char *out = NULL;
    assert_int_equal(st_jid_prep_resource("a\0b", 3, &out), ST_EINVAL);
    assert_int_equal(st_jid_prep_local("a\0b", 3, &out), ST_EINVAL);
    assert_int_equal(st_jid_prep_domain("a\0b", 3, &out), ST_EINVAL);
    assert_null(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc7622_valid),     cmocka_unit_test(rfc7622_invalid),
        cmocka_unit_test(parse_structure),   cmocka_unit_test(rfc8265_username),
        cmocka_unit_test(rfc8265_opaque),    cmocka_unit_test(precis_properties),
        cmocka_unit_test(context_rules),     cmocka_unit_test(bidi_rule),
        cmocka_unit_test(domains),           cmocka_unit_test(length_boundaries),
        cmocka_unit_test(idempotence),       cmocka_unit_test(fast_path_matches),
        cmocka_unit_test(bad_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
