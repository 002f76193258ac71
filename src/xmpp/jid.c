/* JIDs (RFC 7622): splitting (RFC 7622 §3.1), localparts through the PRECIS
 * UsernameCaseMapped profile plus the eight characters RFC 7622 §3.3.1
 * forbids, resourceparts through OpaqueString (RFC 7622 §3.4), and
 * domainparts (RFC 7622 §3.2) as IP literals or IDNA2008 names (RFC 5891,
 * UTS-46 non-transitional mapping via libidn2), stored as lowercase U-labels.
 * Domains are prepared label by label so that the XMPP limit of 1023 octets
 * applies rather than DNS's 253 (each label still has DNS's 63). Pure-ASCII
 * labels take a fast path: lowercase plus LDH rules (letters, digits,
 * hyphen; no hyphen first or last; no "--" in positions 3-4 outside
 * "xn--", as RFC 5891 §4.2.3.1 and libidn2 require), which is exactly what
 * the libidn2 path accepts for them. ASCII characters outside LDH are
 * refused before libidn2 sees them, because without STD3 rules it lets them
 * through and with them it silently drops some. The Bidi Rule is checked
 * per label (libidn2), not across the labels of a whole domain name. */
#include "xmpp/jid.h"

#include <arpa/inet.h>
#include <idn2.h>
#include <stdint.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/mem.h"
#include "xmpp/precis.h"

#define LABEL_MAX 63
#define IDN_FLAGS (IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL)
/* UTS-46 width mapping shrinks fullwidth forms to a third; longer input cannot fit. */
#define DOMAIN_INPUT_MAX (4 * ST_JID_PART_MAX + 16)

/* --- Localpart and resourcepart --------------------------------------------------------- */

static int prep_local(const char *in, size_t len, unsigned flags, char **out)
{
    *out = NULL;
    if (!in)
        return ST_EINVAL;
    char *s = NULL;
    if (st_precis_enforce(ST_PRECIS_USERNAME_CASEMAPPED, in, len, ST_JID_PART_MAX, flags, &s))
        return ST_EINVAL;
    if (strpbrk(s, "\"&'/:<>@")) { /* RFC 7622 §3.3.1 */
        st_free(s);
        return ST_EINVAL;
    }
    *out = s;
    return 0;
}

static int prep_resource(const char *in, size_t len, unsigned flags, char **out)
{
    *out = NULL;
    if (!in)
        return ST_EINVAL;
    if (st_precis_enforce(ST_PRECIS_OPAQUE_STRING, in, len, ST_JID_PART_MAX, flags, out))
        return ST_EINVAL;
    return 0;
}

/* --- Domainpart -------------------------------------------------------------------------- */

static bool is_ldh(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-';
}

static char ascii_lower(char c)
{
    return (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
}

static bool is_xn(const char *s, size_t n)
{
    return n >= 4 && ascii_lower(s[0]) == 'x' && ascii_lower(s[1]) == 'n' && s[2] == '-' &&
           s[3] == '-';
}

/* LDH rules on a lowercase ASCII label. */
static bool ldh_label_ok(const char *s, size_t n)
{
    if (n == 0 || n > LABEL_MAX || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_ldh((unsigned char)s[i]) || (s[i] >= 'A' && s[i] <= 'Z'))
            return false;
    if (n >= 4 && s[2] == '-' && s[3] == '-' && !is_xn(s, n))
        return false;
    return true;
}

static int ascii_label(const char *in, size_t n, struct st_buf *out)
{
    char tmp[LABEL_MAX];
    if (n == 0 || n > LABEL_MAX)
        return ST_EINVAL;
    for (size_t i = 0; i < n; i++)
        tmp[i] = ascii_lower(in[i]);
    if (!ldh_label_ok(tmp, n))
        return ST_EINVAL;
    return st_buf_append(out, tmp, n) ? ST_EINVAL : 0;
}

/* A label that is non-ASCII or an A-label (or any label, on the slow path): libidn2 lookup
 * to an A-label, and for IDNs back to the U-label, which must map to the same A-label. */
static int idna_label(const char *in, size_t n, struct st_buf *out)
{
    int rc = ST_EINVAL;
    uint8_t *a = NULL, *a2 = NULL;
    char *u = NULL;
    char *lbl = st_strndup(in, n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)lbl[i];
        if (c < 0x80 && !is_ldh(c))
            goto done;
        lbl[i] = ascii_lower(lbl[i]);
    }
    if (idn2_lookup_u8((const uint8_t *)lbl, &a, IDN_FLAGS) != IDN2_OK)
        goto done;
    size_t an = strlen((const char *)a);
    if (!ldh_label_ok((const char *)a, an))
        goto done;
    if (!is_xn((const char *)a, an)) {
        rc = st_buf_append(out, a, an) ? ST_EINVAL : 0;
        goto done;
    }
    if (idn2_to_unicode_8z8z((const char *)a, &u, 0) != IDN2_OK)
        goto done;
    if (idn2_lookup_u8((const uint8_t *)u, &a2, IDN_FLAGS) != IDN2_OK ||
        strcmp((const char *)a, (const char *)a2) != 0)
        goto done;
    for (const char *p = u; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x80 && (!is_ldh(c) || (c >= 'A' && c <= 'Z')))
            goto done;
    }
    rc = st_buf_puts(out, u) ? ST_EINVAL : 0;
done:
    idn2_free(a);
    idn2_free(a2);
    idn2_free(u);
    st_free(lbl);
    return rc;
}

/* RFC 7622 §3.2 IP-literal: "[" IPv6address "]", stored in RFC 5952 text form. */
static int ip6_literal(const char *in, size_t len, char **out)
{
    char tmp[INET6_ADDRSTRLEN], txt[INET6_ADDRSTRLEN];
    struct in6_addr a;
    if (len < 3 || in[len - 1] != ']' || len - 2 >= sizeof tmp)
        return ST_EINVAL;
    memcpy(tmp, in + 1, len - 2);
    tmp[len - 2] = '\0';
    if (inet_pton(AF_INET6, tmp, &a) != 1 || !inet_ntop(AF_INET6, &a, txt, sizeof txt))
        return ST_EINVAL;
    struct st_buf b;
    st_buf_init(&b, ST_JID_PART_MAX);
    (void)st_buf_printf(&b, "[%s]", txt);
    *out = st_buf_take(&b);
    return 0;
}

static int ip4_literal(const char *in, size_t len, char **out)
{
    char tmp[INET_ADDRSTRLEN], txt[INET_ADDRSTRLEN];
    struct in_addr a;
    if (len >= sizeof tmp)
        return ST_ENOTFOUND;
    memcpy(tmp, in, len);
    tmp[len] = '\0';
    if (inet_pton(AF_INET, tmp, &a) != 1 || !inet_ntop(AF_INET, &a, txt, sizeof txt))
        return ST_ENOTFOUND;
    *out = st_strdup(txt);
    return 0;
}

/* Length of the label separator at s[0..n) (RFC 5890 §2.3.2.1 / UTS-46: FULL STOP,
 * IDEOGRAPHIC FULL STOP, FULLWIDTH FULL STOP, HALFWIDTH IDEOGRAPHIC FULL STOP), or 0. */
static size_t separator_len(const unsigned char *s, size_t n)
{
    if (n >= 1 && s[0] == '.')
        return 1;
    if (n >= 3 && ((s[0] == 0xE3 && s[1] == 0x80 && s[2] == 0x82) ||
                   (s[0] == 0xEF && s[1] == 0xBC && s[2] == 0x8E) ||
                   (s[0] == 0xEF && s[1] == 0xBD && s[2] == 0xA1)))
        return 3;
    return 0;
}

static int prep_domain(const char *in, size_t len, bool fast, char **out)
{
    *out = NULL;
    if (!in || len == 0 || len > DOMAIN_INPUT_MAX || memchr(in, '\0', len))
        return ST_EINVAL;
    if (in[0] == '[')
        return ip6_literal(in, len, out);
    if (ip4_literal(in, len, out) == 0)
        return 0;

    const unsigned char *s = (const unsigned char *)in;
    /* One trailing dot marks a fully qualified name and is not part of the domainpart. */
    if (len >= 1 && s[len - 1] == '.')
        len -= 1;
    else if (len >= 3 && separator_len(s + len - 3, 3) == 3)
        len -= 3;
    if (len == 0)
        return ST_EINVAL;

    struct st_buf b;
    st_buf_init(&b, ST_JID_PART_MAX);
    size_t start = 0, i = 0;
    bool ascii = true;
    for (;;) {
        size_t sep = i < len ? separator_len(s + i, len - i) : 0;
        if (i < len && sep == 0) {
            ascii = ascii && s[i] < 0x80;
            i++;
            continue;
        }
        /* s[start..i) is a label */
        const char *lbl = in + start;
        size_t n = i - start;
        int rc;
        if (n == 0)
            rc = ST_EINVAL;
        else if (fast && ascii && !is_xn(lbl, n))
            rc = ascii_label(lbl, n, &b);
        else
            rc = idna_label(lbl, n, &b);
        if (rc == 0 && i < len)
            rc = st_buf_append(&b, ".", 1) ? ST_EINVAL : 0;
        if (rc) {
            st_buf_free(&b);
            return ST_EINVAL;
        }
        if (i >= len)
            break;
        i += sep;
        start = i;
        ascii = true;
    }
    *out = st_buf_take(&b);
    return 0;
}

/* --- Public API -------------------------------------------------------------------------- */

int st_jid_prep_local(const char *in, size_t len, char **out)
{
    return prep_local(in, len, 0, out);
}

int st_jid_prep_domain(const char *in, size_t len, char **out)
{
    return prep_domain(in, len, true, out);
}

int st_jid_prep_resource(const char *in, size_t len, char **out)
{
    return prep_resource(in, len, 0, out);
}

int st_jid_prep_part_unicode(enum st_jid_part part, const char *in, size_t len, char **out)
{
    switch (part) {
    case ST_JID_PART_LOCAL:
        return prep_local(in, len, ST_PRECIS_NO_FASTPATH, out);
    case ST_JID_PART_DOMAIN:
        return prep_domain(in, len, false, out);
    case ST_JID_PART_RESOURCE:
        return prep_resource(in, len, ST_PRECIS_NO_FASTPATH, out);
    }
    *out = NULL;
    return ST_EINVAL;
}

/* Whether d[0..n) is already a canonical domainpart made of LDH labels (lowercase, no
 * trailing dot, no A-labels, not an IP literal): prep_domain would return it unchanged. JIDs
 * in routed stanzas nearly always are, and this check is far cheaper than preparing. */
static bool canonical_ascii_domain(const char *d, size_t n)
{
    if (n == 0 || n > ST_JID_PART_MAX)
        return false;
    size_t start = 0;
    bool last_has_alpha = false;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && d[i] != '.') {
            if (d[i] >= 'a' && d[i] <= 'z')
                last_has_alpha = true;
            continue;
        }
        if (!ldh_label_ok(d + start, i - start) || is_xn(d + start, i - start))
            return false;
        if (i < n)
            last_has_alpha = false;
        start = i + 1;
    }
    return last_has_alpha; /* all-digit last label: could be an IPv4 literal */
}

/* Copies s[0..n) NUL-terminated to *at and advances it; returns where the copy starts. */
static char *put_part(char **at, const char *s, size_t n)
{
    char *r = *at;
    memcpy(r, s, n);
    r[n] = '\0';
    *at += n + 1;
    return r;
}

/* Fills out with the five strings in one allocation, out->full first (st_jid_clear frees
 * that). local and resource may be NULL. */
static void assemble(struct st_jid *out, const char *l, size_t nl, const char *d, size_t nd,
                     const char *r, size_t nr)
{
    size_t nbare = (l ? nl + 1 : 0) + nd;
    size_t nfull = nbare + (r ? nr + 1 : 0);
    char *b = st_malloc(nfull + 1 + nbare + 1 + (l ? nl + 1 : 0) + nd + 1 + (r ? nr + 1 : 0));
    char *p = b;
    if (l) {
        memcpy(p, l, nl);
        p[nl] = '@';
        p += nl + 1;
    }
    memcpy(p, d, nd);
    p += nd;
    if (r) {
        *p++ = '/';
        memcpy(p, r, nr);
        p += nr;
    }
    *p++ = '\0';
    out->full = b;
    out->bare = put_part(&p, b, nbare);
    out->local = l ? put_part(&p, l, nl) : NULL;
    out->domain = put_part(&p, d, nd);
    out->resource = r ? put_part(&p, r, nr) : NULL;
}

/* Whether s[0..n) is already what the pure-ASCII path of the part's PRECIS profile gives:
 * resourceparts (OpaqueString) 0x20-0x7E unchanged; localparts (UsernameCaseMapped)
 * 0x21-0x7E without uppercase (which it lowercases) and RFC 7622 §3.3.1's eight. */
static bool canonical_ascii(const char *s, size_t n, bool local)
{
    if (n == 0 || n > ST_JID_PART_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7E)
            return false;
        if (!local)
            continue;
        if (c >= 'A' && c <= 'Z')
            return false;
        switch (c) {
        case ' ': case '"': case '&': case '\'': case '/': case ':': case '<': case '>': case '@':
            return false;
        default:
            break;
        }
    }
    return true;
}

static int build(const char *l, size_t ll, const char *d, size_t dl, const char *r, size_t rl,
                 struct st_jid *out)
{
    memset(out, 0, sizeof *out);
    char *lp = NULL, *dp = NULL, *rp = NULL;
    int rc = ST_EINVAL;
    /* JIDs in routed stanzas are nearly always canonical already: then no preparation (and no
     * allocation) is needed, as preparing would return them unchanged. */
    if (l && !canonical_ascii(l, ll, true)) {
        if (prep_local(l, ll, 0, &lp))
            goto done;
        l = lp;
        ll = strlen(lp);
    }
    if (!canonical_ascii_domain(d, dl)) {
        if (prep_domain(d, dl, true, &dp))
            goto done;
        d = dp;
        dl = strlen(dp);
    }
    if (r && !canonical_ascii(r, rl, false)) {
        if (prep_resource(r, rl, 0, &rp))
            goto done;
        r = rp;
        rl = strlen(rp);
    }
    /* One allocation: JIDs are built for every routed stanza. */
    assemble(out, l, ll, d, dl, r, rl);
    rc = 0;
done:
    st_free(lp);
    st_free(dp);
    st_free(rp);
    return rc;
}

int st_jid_parse(const char *s, struct st_jid *out)
{
    if (!s) {
        memset(out, 0, sizeof *out);
        return ST_EINVAL;
    }
    size_t len = strlen(s);
    const char *slash = memchr(s, '/', len);
    size_t barelen = slash ? (size_t)(slash - s) : len;
    const char *at = memchr(s, '@', barelen);
    const char *dom = at ? at + 1 : s;
    size_t domlen = barelen - (size_t)(dom - s);
    return build(at ? s : NULL, at ? (size_t)(at - s) : 0, dom, domlen, slash ? slash + 1 : NULL,
                 slash ? len - barelen - 1 : 0, out);
}

int st_jid_make(const char *local, const char *domain, const char *resource, struct st_jid *out)
{
    if (!domain) {
        memset(out, 0, sizeof *out);
        return ST_EINVAL;
    }
    return build(local, local ? strlen(local) : 0, domain, strlen(domain), resource,
                 resource ? strlen(resource) : 0, out);
}

void st_jid_clear(struct st_jid *j)
{
    st_free(j->full); /* the one allocation (assemble) */
    memset(j, 0, sizeof *j);
}

void st_jid_copy(struct st_jid *dst, const struct st_jid *src)
{
    memset(dst, 0, sizeof *dst);
    if (!src->full)
        return;
    assemble(dst, src->local, src->local ? strlen(src->local) : 0, src->domain,
             strlen(src->domain), src->resource, src->resource ? strlen(src->resource) : 0);
}

bool st_jid_equal(const struct st_jid *a, const struct st_jid *b)
{
    if (!a->full || !b->full)
        return a->full == b->full;
    return strcmp(a->full, b->full) == 0;
}

char *st_jid_prep_string(const char *s)
{
    struct st_jid j;
    if (st_jid_parse(s, &j))
        return NULL;
    char *full = st_strdup(j.full);
    st_jid_clear(&j);
    return full;
}
