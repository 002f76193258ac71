/* PRECIS framework (RFC 8264) and the UsernameCaseMapped / OpaqueString
 * profiles (RFC 8265 §3.3, §4.2). Derived properties follow the RFC 8264
 * §8 algorithm over the categories of RFC 8264 §9, computed from utf8proc's
 * Unicode data (so the tables track the installed Unicode version, as RFC
 * 8264 §11 intends). CONTEXTJ/CONTEXTO rules are RFC 5892 Appendix A and the
 * directionality rule is the Bidi Rule of RFC 5893 §2.
 *
 * Approximations, because utf8proc carries neither Script nor Joining_Type:
 * the Script tests of RFC 5892 §A.4 (Greek), §A.5/§A.6 (Hebrew) and §A.7
 * (Hiragana/Katakana/Han) use block ranges; the ZWNJ regular-expression rule
 * of RFC 5892 §A.1 treats Mn/Me/Cf as Transparent (as Unicode derives it),
 * a short list of Arabic and Syriac letters as Right_Joining, and every other
 * letter of the cursive-joining scripts as Dual_Joining. The width mapping of
 * RFC 8265 §3.3.2 uses the full compatibility decomposition of a
 * <wide>/<narrow> code point, which equals its decomposition mapping except
 * for a handful of symbols that the IdentifierClass disallows either way. */
#include "xmpp/precis.h"

#include <stdbool.h>
#include <string.h>
#include <utf8proc.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/mem.h"

#define NFC_OPTS (UTF8PROC_STABLE | UTF8PROC_COMPOSE)

struct cpv {
    int32_t *v;
    size_t n, cap;
};

static void cpv_push(struct cpv *c, int32_t cp)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->v = st_realloc(c->v, c->cap * sizeof *c->v);
    }
    c->v[c->n++] = cp;
}

struct range {
    int32_t lo, hi;
};

static bool in_ranges(int32_t cp, const struct range *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (cp >= r[i].lo && cp <= r[i].hi)
            return true;
    return false;
}

#define IN(cp, tbl) in_ranges((cp), (tbl), sizeof(tbl) / sizeof((tbl)[0]))

/* RFC 5892 §2.6, used by RFC 8264 §9.6 for both classes. Returns -1 when cp is no exception. */
static int exception_prop(int32_t cp)
{
    switch (cp) {
    case 0x00DF: case 0x03C2: case 0x06FD: case 0x06FE: case 0x0F0B: case 0x3007:
        return ST_PRECIS_PVALID;
    case 0x00B7: case 0x0375: case 0x05F3: case 0x05F4: case 0x30FB:
        return ST_PRECIS_CONTEXTO;
    case 0x0640: case 0x07FA: case 0x302E: case 0x302F: case 0x303B:
        return ST_PRECIS_DISALLOWED;
    default:
        break;
    }
    if ((cp >= 0x0660 && cp <= 0x0669) || (cp >= 0x06F0 && cp <= 0x06F9))
        return ST_PRECIS_CONTEXTO;
    if (cp >= 0x3031 && cp <= 0x3035)
        return ST_PRECIS_DISALLOWED;
    return -1;
}

static bool noncharacter(int32_t cp)
{
    return (cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE;
}

/* RFC 8264 §9.9: Hangul_Syllable_Type L, V or T. */
static bool old_hangul_jamo(int32_t cp)
{
    return (cp >= 0x1100 && cp <= 0x11FF) || (cp >= 0xA960 && cp <= 0xA97C) ||
           (cp >= 0xD7B0 && cp <= 0xD7C6) || (cp >= 0xD7CB && cp <= 0xD7FB);
}

/* RFC 8264 §9.17: toNFKC(cp) != cp. Done on the UTF-8 form so utf8proc applies canonical
 * ordering between decomposition and recomposition, exactly as for a whole string. */
static bool has_compat(int32_t cp)
{
    utf8proc_uint8_t u8[4];
    int32_t buf[32]; /* the longest compatibility decomposition (U+FDFA) has 18 */
    utf8proc_ssize_t k = utf8proc_encode_char(cp, u8);
    utf8proc_ssize_t n = utf8proc_decompose(u8, k, buf, 32, NFC_OPTS | UTF8PROC_COMPAT);
    if (n < 0 || n > 32)
        return true;
    n = utf8proc_normalize_utf32(buf, n, NFC_OPTS | UTF8PROC_COMPAT);
    return !(n == 1 && buf[0] == cp);
}

enum st_precis_prop st_precis_property(int32_t cp, enum st_precis_class cls)
{
    if (cp < 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return ST_PRECIS_DISALLOWED;
    int ex = exception_prop(cp);
    if (ex >= 0)
        return (enum st_precis_prop)ex;
    /* BackwardCompatible (RFC 8264 §9.7) is empty. */
    const utf8proc_property_t *p = utf8proc_get_property(cp);
    if (p->category == UTF8PROC_CATEGORY_CN && !noncharacter(cp))
        return ST_PRECIS_UNASSIGNED;
    if (cp >= 0x21 && cp <= 0x7E)
        return ST_PRECIS_PVALID;
    if (cp == 0x200C || cp == 0x200D)
        return ST_PRECIS_CONTEXTJ;
    if (old_hangul_jamo(cp))
        return ST_PRECIS_DISALLOWED;
    if (p->ignorable || noncharacter(cp)) /* PrecisIgnorableProperties, §9.13 */
        return ST_PRECIS_DISALLOWED;
    if (p->category == UTF8PROC_CATEGORY_CC)
        return ST_PRECIS_DISALLOWED;
    /* From here on the rule is "ID_DIS or FREE_PVAL" unless LetterDigits. */
    enum st_precis_prop id_dis =
        cls == ST_PRECIS_FREEFORM ? ST_PRECIS_PVALID : ST_PRECIS_DISALLOWED;
    if (has_compat(cp))
        return id_dis;
    switch (p->category) {
    case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
        return ST_PRECIS_PVALID; /* LetterDigits, §9.1 */
    case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
    case UTF8PROC_CATEGORY_ME:  /* OtherLetterDigits, §9.18 */
    case UTF8PROC_CATEGORY_ZS:  /* Spaces, §9.14 */
    case UTF8PROC_CATEGORY_SM: case UTF8PROC_CATEGORY_SC: case UTF8PROC_CATEGORY_SK:
    case UTF8PROC_CATEGORY_SO:  /* Symbols, §9.15 */
    case UTF8PROC_CATEGORY_PC: case UTF8PROC_CATEGORY_PD: case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE: case UTF8PROC_CATEGORY_PI: case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:  /* Punctuation, §9.16 */
        return id_dis;
    default:
        return ST_PRECIS_DISALLOWED;
    }
}

/* --- Contextual rules (RFC 5892 Appendix A) ------------------------------------------ */

static const struct range greek[] = {
    {0x0370, 0x0373}, {0x0375, 0x0377}, {0x037A, 0x037D}, {0x037F, 0x037F},
    {0x0384, 0x0384}, {0x0386, 0x0386}, {0x0388, 0x03E1}, {0x03F0, 0x03FF},
    {0x1D26, 0x1D2A}, {0x1D5D, 0x1D61}, {0x1D66, 0x1D6A}, {0x1DBF, 0x1DBF},
    {0x1F00, 0x1FFE}, {0x2126, 0x2126}, {0xAB65, 0xAB65}, {0x10140, 0x1018E},
    {0x101A0, 0x101A0}, {0x1D200, 0x1D245},
};
static const struct range hebrew[] = {{0x0591, 0x05C7}, {0x05D0, 0x05EA}, {0x05EF, 0x05F4},
                                      {0xFB1D, 0xFB4F}};
static const struct range hira_kata_han[] = {
    {0x2E80, 0x2E99}, {0x2E9B, 0x2EF3}, {0x2F00, 0x2FD5}, {0x3005, 0x3005},
    {0x3007, 0x3007}, {0x3021, 0x3029}, {0x3038, 0x303B}, {0x3041, 0x3096},
    {0x309D, 0x309F}, {0x30A1, 0x30FA}, {0x30FD, 0x30FF}, {0x31F0, 0x31FF},
    {0x32D0, 0x32FE}, {0x3300, 0x3357}, {0x3400, 0x4DBF}, {0x4E00, 0x9FFF},
    {0xF900, 0xFA6D}, {0xFA70, 0xFAD9}, {0xFF66, 0xFF6F}, {0xFF71, 0xFF9D},
    {0x16FE2, 0x16FE3}, {0x1AFF0, 0x1B122}, {0x1B150, 0x1B152}, {0x1B164, 0x1B167},
    {0x1F200, 0x1F200}, {0x20000, 0x3FFFF},
};
/* Blocks of the cursive-joining scripts (Arabic, Syriac, NKo, Mandaic, Mongolian,
 * Phags-pa, Manichaean, Psalter Pahlavi, Hanifi Rohingya, Sogdian, Old Uyghur,
 * Chorasmian, Adlam). */
static const struct range joining_blocks[] = {
    {0x0620, 0x077F}, {0x07C0, 0x07FF}, {0x0840, 0x08FF}, {0x1800, 0x18AF},
    {0xA840, 0xA87F}, {0x10AC0, 0x10AFF}, {0x10B80, 0x10BAF}, {0x10D00, 0x10D3F},
    {0x10F30, 0x10FDF}, {0x1E900, 0x1E95F},
};
static const struct range right_joining[] = {
    {0x0622, 0x0625}, {0x0627, 0x0627}, {0x0629, 0x0629}, {0x062F, 0x0632},
    {0x0648, 0x0648}, {0x0671, 0x0673}, {0x0675, 0x0677}, {0x0688, 0x0699},
    {0x06C0, 0x06C0}, {0x06C3, 0x06CB}, {0x06CD, 0x06CD}, {0x06CF, 0x06CF},
    {0x06D2, 0x06D3}, {0x06D5, 0x06D5}, {0x06EE, 0x06EF}, {0x0710, 0x0710},
    {0x0715, 0x0719}, {0x071E, 0x071E}, {0x0728, 0x0728}, {0x072A, 0x072A},
    {0x072C, 0x072C}, {0x072F, 0x072F}, {0x074D, 0x074D}, {0x0759, 0x075B},
    {0x076B, 0x076C}, {0x0771, 0x0771}, {0x0773, 0x0774}, {0x0778, 0x0779},
};

enum joining { JT_U, JT_T, JT_D, JT_R };

static enum joining joining_type(int32_t cp)
{
    if (cp == 0x200C || cp == 0x200D)
        return JT_U;
    utf8proc_category_t c = utf8proc_category(cp);
    if (c == UTF8PROC_CATEGORY_MN || c == UTF8PROC_CATEGORY_ME || c == UTF8PROC_CATEGORY_CF)
        return JT_T;
    if (IN(cp, right_joining))
        return JT_R;
    if (cp == 0x0621 || cp == 0x0674)
        return JT_U;
    bool letter = c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO;
    if (letter && IN(cp, joining_blocks))
        return JT_D;
    return JT_U;
}

static bool before_is_virama(const int32_t *s, size_t i)
{
    return i > 0 && utf8proc_get_property(s[i - 1])->combining_class == 9;
}

static bool context_ok(const int32_t *s, size_t n, size_t i)
{
    int32_t cp = s[i];
    switch (cp) {
    case 0x200D: /* §A.2 */
        return before_is_virama(s, i);
    case 0x200C: { /* §A.1 */
        if (before_is_virama(s, i))
            return true;
        size_t j = i;
        enum joining jt = JT_U;
        while (j > 0 && (jt = joining_type(s[j - 1])) == JT_T)
            j--;
        if (j == 0 || jt != JT_D) /* (L|D); no code point here is approximated as L */
            return false;
        for (j = i + 1; j < n; j++) {
            jt = joining_type(s[j]);
            if (jt != JT_T)
                return jt == JT_R || jt == JT_D;
        }
        return false;
    }
    case 0x00B7: /* §A.3 */
        return i > 0 && i + 1 < n && s[i - 1] == 0x6C && s[i + 1] == 0x6C;
    case 0x0375: /* §A.4 */
        return i + 1 < n && IN(s[i + 1], greek);
    case 0x05F3: case 0x05F4: /* §A.5, §A.6 */
        return i > 0 && IN(s[i - 1], hebrew);
    case 0x30FB: /* §A.7 */
        for (size_t j = 0; j < n; j++)
            if (IN(s[j], hira_kata_han))
                return true;
        return false;
    default:
        break;
    }
    if (cp >= 0x0660 && cp <= 0x0669) { /* §A.8 */
        for (size_t j = 0; j < n; j++)
            if (s[j] >= 0x06F0 && s[j] <= 0x06F9)
                return false;
        return true;
    }
    if (cp >= 0x06F0 && cp <= 0x06F9) { /* §A.9 */
        for (size_t j = 0; j < n; j++)
            if (s[j] >= 0x0660 && s[j] <= 0x0669)
                return false;
        return true;
    }
    return false; /* a CONTEXT code point without a rule is not allowed */
}

/* RFC 5893 §2, applied (RFC 8265 §3.3.2 step 5) when the string holds R, AL or AN. */
static bool bidi_ok(const int32_t *s, size_t n)
{
    bool rtl = false;
    for (size_t i = 0; i < n && !rtl; i++) {
        int bc = utf8proc_get_property(s[i])->bidi_class;
        rtl = bc == UTF8PROC_BIDI_CLASS_R || bc == UTF8PROC_BIDI_CLASS_AL ||
              bc == UTF8PROC_BIDI_CLASS_AN;
    }
    if (!rtl)
        return true;
    int first = utf8proc_get_property(s[0])->bidi_class;
    if (first != UTF8PROC_BIDI_CLASS_R && first != UTF8PROC_BIDI_CLASS_AL)
        return false; /* rule 1; an LTR string must not contain R/AL/AN (rule 5) either */
    bool en = false, an = false;
    int last = -1;
    for (size_t i = 0; i < n; i++) {
        int bc = utf8proc_get_property(s[i])->bidi_class;
        switch (bc) {
        case UTF8PROC_BIDI_CLASS_EN: en = true; break;
        case UTF8PROC_BIDI_CLASS_AN: an = true; break;
        case UTF8PROC_BIDI_CLASS_R: case UTF8PROC_BIDI_CLASS_AL: case UTF8PROC_BIDI_CLASS_ES:
        case UTF8PROC_BIDI_CLASS_CS: case UTF8PROC_BIDI_CLASS_ET: case UTF8PROC_BIDI_CLASS_ON:
        case UTF8PROC_BIDI_CLASS_BN: case UTF8PROC_BIDI_CLASS_NSM:
            break;
        default:
            return false; /* rule 2 */
        }
        if (bc != UTF8PROC_BIDI_CLASS_NSM)
            last = bc;
    }
    if (en && an)
        return false; /* rule 4 */
    return last == UTF8PROC_BIDI_CLASS_R || last == UTF8PROC_BIDI_CLASS_AL ||
           last == UTF8PROC_BIDI_CLASS_EN || last == UTF8PROC_BIDI_CLASS_AN; /* rule 3 */
}

/* --- Profiles -------------------------------------------------------------------------- */

/* Width mapping and case mapping (UsernameCaseMapped) or space mapping (OpaqueString). */
static void map_cp(enum st_precis_profile profile, int32_t cp, struct cpv *out)
{
    const utf8proc_property_t *p = utf8proc_get_property(cp);
    if (profile == ST_PRECIS_OPAQUE_STRING) {
        cpv_push(out, cp != 0x20 && p->category == UTF8PROC_CATEGORY_ZS ? 0x20 : cp);
        return;
    }
    int32_t dec[32];
    utf8proc_ssize_t n = 1;
    dec[0] = cp;
    if (p->decomp_type == UTF8PROC_DECOMP_TYPE_WIDE ||
        p->decomp_type == UTF8PROC_DECOMP_TYPE_NARROW) {
        int lbc = 0;
        n = utf8proc_decompose_char(cp, dec, 32, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, &lbc);
        if (n < 1 || n > 32) {
            n = 1;
            dec[0] = cp;
        }
    }
    for (utf8proc_ssize_t i = 0; i < n; i++) {
        if (dec[i] == 0x0130) { /* the one unconditional SpecialCasing lowercase mapping */
            cpv_push(out, 0x0069);
            cpv_push(out, 0x0307);
        } else {
            cpv_push(out, utf8proc_tolower(dec[i]));
        }
    }
}

static void put_cp(struct st_buf *b, int32_t cp)
{
    utf8proc_uint8_t u8[4];
    utf8proc_ssize_t k = utf8proc_encode_char(cp, u8);
    (void)st_buf_append(b, u8, (size_t)k); /* scratch buffers are unbounded */
}

/* One application of the profile's rules: in[0..len) to out (reset first). */
static int enforce_once(enum st_precis_profile profile, const char *in, size_t len,
                        struct st_buf *out)
{
    struct cpv m = {0};
    struct st_buf tmp;
    int32_t *nfc = NULL;
    int rc = ST_EINVAL;
    st_buf_init(&tmp, 0);
    st_buf_reset(out);

    const utf8proc_uint8_t *u = (const utf8proc_uint8_t *)in;
    for (size_t i = 0; i < len;) {
        int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(u + i, (utf8proc_ssize_t)(len - i), &cp);
        if (k <= 0 || cp == 0)
            goto done;
        i += (size_t)k;
        map_cp(profile, cp, &m);
    }
    if (m.n == 0)
        goto done;
    for (size_t i = 0; i < m.n; i++)
        put_cp(&tmp, m.v[i]);

    /* NFC: canonical decomposition and ordering, then composition. A canonical
     * decomposition is at most 4 code points long, so one pass normally suffices. */
    size_t cap = m.n * 4 + 4;
    utf8proc_ssize_t n;
    for (;;) {
        nfc = st_realloc(nfc, cap * sizeof *nfc);
        n = utf8proc_decompose((const utf8proc_uint8_t *)tmp.data, (utf8proc_ssize_t)tmp.len,
                               nfc, (utf8proc_ssize_t)cap, NFC_OPTS);
        if (n < 0)
            goto done;
        if ((size_t)n <= cap)
            break;
        cap = (size_t)n;
    }
    n = utf8proc_normalize_utf32(nfc, n, NFC_OPTS);
    if (n <= 0)
        goto done;

    enum st_precis_class cls =
        profile == ST_PRECIS_USERNAME_CASEMAPPED ? ST_PRECIS_IDENTIFIER : ST_PRECIS_FREEFORM;
    for (size_t i = 0; i < (size_t)n; i++) {
        enum st_precis_prop pr = st_precis_property(nfc[i], cls);
        if (pr == ST_PRECIS_PVALID)
            continue;
        if ((pr == ST_PRECIS_CONTEXTJ || pr == ST_PRECIS_CONTEXTO) &&
            context_ok(nfc, (size_t)n, i))
            continue;
        goto done;
    }
    if (profile == ST_PRECIS_USERNAME_CASEMAPPED && !bidi_ok(nfc, (size_t)n))
        goto done;
    for (size_t i = 0; i < (size_t)n; i++)
        put_cp(out, nfc[i]);
    rc = 0;
done:
    st_free(m.v);
    st_free(nfc);
    st_buf_free(&tmp);
    return rc;
}

static int fast_ascii(enum st_precis_profile profile, const char *in, size_t len,
                      size_t max_out, char **out)
{
    if (len == 0 || (max_out && len > max_out))
        return ST_EINVAL;
    char *s = st_malloc(len + 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (profile == ST_PRECIS_USERNAME_CASEMAPPED) {
            if (c < 0x21 || c > 0x7E) /* space is Spaces, the rest Controls */
                goto bad;
            s[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
        } else {
            if (c < 0x20 || c > 0x7E)
                goto bad;
            s[i] = (char)c;
        }
    }
    s[len] = '\0';
    *out = s;
    return 0;
bad:
    st_free(s);
    return ST_EINVAL;
}

/* Mapping can shrink a string to about a third (width mapping, Hangul composition), so
 * longer input cannot fit max_out and is refused before any Unicode work. */
#define SHRINK_BOUND 4

int st_precis_enforce(enum st_precis_profile profile, const char *in, size_t len, size_t max_out,
                      unsigned flags, char **out)
{
    *out = NULL;
    if (max_out && len / SHRINK_BOUND > max_out)
        return ST_EINVAL;
    if (!(flags & ST_PRECIS_NO_FASTPATH)) {
        bool ascii = true;
        for (size_t i = 0; i < len && ascii; i++)
            ascii = (unsigned char)in[i] < 0x80;
        if (ascii)
            return fast_ascii(profile, in, len, max_out, out);
    }
    struct st_buf a, b;
    st_buf_init(&a, 0);
    st_buf_init(&b, 0);
    int rc = enforce_once(profile, in, len, &a);
    /* RFC 8264 §7 rules need not be idempotent in one pass; re-apply until stable. */
    bool stable = false;
    for (int round = 0; rc == 0 && !stable && round < 4; round++) {
        rc = enforce_once(profile, a.data, a.len, &b);
        if (rc == 0) {
            stable = b.len == a.len && memcmp(a.data, b.data, a.len) == 0;
            struct st_buf t = a;
            a = b;
            b = t;
        }
    }
    if (rc == 0 && (!stable || (max_out && a.len > max_out)))
        rc = ST_EINVAL;
    if (rc == 0)
        *out = st_buf_take(&a);
    st_buf_free(&a);
    st_buf_free(&b);
    return rc;
}
