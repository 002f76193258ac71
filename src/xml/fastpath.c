/* The fast reader for stanzas (fastpath.h). Expat costs about half of the
 * CPU a server spends on a one-to-one message (tokenising, namespace
 * bookkeeping, hashing every name), yet nearly every stanza has the same
 * simple shape. This reader accepts only a strict subset of XML 1.0 with
 * namespaces and builds the same tree expat's callbacks would:
 *
 *   - element and attribute names: ASCII letters, digits, '_', '-', '.'
 *     (no prefixes; the one prefixed attribute allowed is xml:NAME);
 *   - a default namespace declaration (xmlns='...') on any element;
 *   - attribute values and text: UTF-8 checked byte for byte (no overlong
 *     forms, surrogates, U+FFFE/U+FFFF), the five predefined entities and
 *     character references to XML characters; text may hold TAB and LF;
 *   - no CR, other control characters or DEL anywhere in content, no TAB or
 *     LF in attribute values (those need normalisation), no ']' (so never
 *     "]]>"), no comments, CDATA, processing instructions or DTD;
 *   - at most 16 attributes per element and 32 levels, and the stream's own
 *     limits (stanza bytes, depth, attributes).
 *
 * Whatever falls outside, including input that ends before the stanza does,
 * is declined (returns 0) and expat reads it instead, so errors are always
 * reported by expat. The stream parser's tests feed the same input whole
 * (this reader) and byte by byte (expat) and require the same trees. */
#include "xml/fastpath.h"

#include "base/buf.h"
#include "base/utf8.h"
#include "xml/node.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define FAST_MAX_DEPTH 32
#define FAST_MAX_ATTRS 16
#define NS_XMLNS "http://www.w3.org/2000/xmlns/"

struct rd {
    const char *s;
    size_t n; /* bytes that may belong to the stanza */
    size_t i; /* next byte to read */
    struct st_buf scratch; /* decoded attribute values and text with references */
};

static bool is_name_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_name_char(unsigned char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void skip_space(struct rd *r)
{
    while (r->i < r->n && is_space((unsigned char)r->s[r->i]))
        r->i++;
}

/* Reads a name in the subset at r->i; returns its length, 0 if there is none. */
static size_t read_name(struct rd *r)
{
    size_t st = r->i;
    if (st >= r->n || !is_name_start((unsigned char)r->s[st]))
        return 0;
    size_t i = st + 1;
    while (i < r->n && is_name_char((unsigned char)r->s[i]))
        i++;
    r->i = i;
    return i - st;
}

static bool is_xml_char(uint32_t v)
{
    return v == 0x9 || v == 0xA || v == 0xD || (v >= 0x20 && v <= 0xD7FF) ||
           (v >= 0xE000 && v <= 0xFFFD) || (v >= 0x10000 && v <= 0x10FFFF);
}

/* Reads the reference starting at s[i] == '&' (within s[0..n)); returns its length with the
 * character in *cp, or 0 when it is not a predefined entity or a reference to an XML
 * character. */
static size_t read_ref(const char *s, size_t n, size_t i, uint32_t *cp)
{
    static const struct {
        const char *text;
        size_t len;
        char c;
    } named[] = {{"amp;", 4, '&'}, {"lt;", 3, '<'}, {"gt;", 3, '>'},
                 {"apos;", 5, '\''}, {"quot;", 5, '"'}};
    const char *p = s + i + 1;
    size_t left = n - i - 1;
    if (left && *p != '#') {
        for (size_t k = 0; k < sizeof named / sizeof named[0]; k++) {
            if (left >= named[k].len && memcmp(p, named[k].text, named[k].len) == 0) {
                *cp = (uint32_t)(unsigned char)named[k].c;
                return 1 + named[k].len;
            }
        }
        return 0;
    }
    bool hex = left > 1 && p[1] == 'x';
    size_t j = hex ? 2 : 1;
    uint32_t v = 0;
    unsigned digits = 0;
    for (; j < left && digits < 8; j++, digits++) {
        char c = p[j];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (hex && c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (hex && c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            break;
        v = v * (hex ? 16 : 10) + d;
    }
    if (!digits || digits >= 8 || j >= left || p[j] != ';' || !is_xml_char(v))
        return 0;
    *cp = v;
    return 1 + j + 1;
}

/* Checks text (term '<') or an attribute value (term its quote) from r->i up to the
 * terminator and leaves r->i on it. Returns false when the input ends first or holds anything
 * outside the subset; *refs says whether there are references to expand. */
static bool scan_chars(struct rd *r, char term, bool attr, bool *refs)
{
    const unsigned char *s = (const unsigned char *)r->s;
    size_t n = r->n, i = r->i;
    *refs = false;
    for (;;) {
#ifdef __SSE2__
        /* Skip blocks of plain printable ASCII 16 bytes at a time: bytes below 0x20 and from
         * 0x80 on are both "less than 0x20" as signed bytes. */
        const __m128i lt = _mm_set1_epi8('<'), amp = _mm_set1_epi8('&'),
                      rb = _mm_set1_epi8(']'), q = _mm_set1_epi8(term),
                      sp = _mm_set1_epi8(0x20), del = _mm_set1_epi8(0x7f);
        while (i + 16 <= n) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
            __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, lt), _mm_cmpeq_epi8(v, amp)),
                                     _mm_or_si128(_mm_cmpeq_epi8(v, rb), _mm_cmpeq_epi8(v, q)));
            m = _mm_or_si128(m, _mm_or_si128(_mm_cmplt_epi8(v, sp), _mm_cmpeq_epi8(v, del)));
            unsigned bits = (unsigned)_mm_movemask_epi8(m);
            if (bits) {
                i += (size_t)__builtin_ctz(bits);
                break;
            }
            i += 16;
        }
#endif
        if (i >= n)
            return false;
        unsigned char c = s[i];
        if (c == (unsigned char)term) {
            r->i = i;
            return true;
        }
        if (c >= 0x20 && c < 0x7f) {
            if (c == '<' || c == ']')
                return false;
            if (c == '&') {
                uint32_t cp;
                size_t k = read_ref(r->s, n, i, &cp);
                if (!k)
                    return false;
                *refs = true;
                i += k;
                continue;
            }
            i++;
            continue;
        }
        if (c == '\t' || c == '\n') {
            if (attr)
                return false; /* attribute-value normalisation: left to expat */
            i++;
            continue;
        }
        if (c >= 0x80) {
            uint32_t cp;
            size_t k = st_utf8_next(s + i, n - i, &cp);
            if (!k || !is_xml_char(cp))
                return false;
            i += k;
            continue;
        }
        return false; /* CR (line-end normalisation), other controls, DEL */
    }
}

static void put_utf8(struct st_buf *b, uint32_t cp)
{
    char u[4];
    size_t len;
    if (cp < 0x80) {
        u[0] = (char)cp;
        len = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        len = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        len = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        len = 4;
    }
    (void)st_buf_append(b, u, len); /* scratch has no maximum: cannot fail */
}

/* Appends s[from..to) with its references (checked by scan_chars) expanded. */
static void decode_chars(const char *s, size_t from, size_t to, struct st_buf *out)
{
    size_t i = from, run = from;
    while (i < to) {
        if (s[i] != '&') {
            i++;
            continue;
        }
        (void)st_buf_append(out, s + run, i - run);
        uint32_t cp = 0;
        size_t k = read_ref(s, to, i, &cp);
        put_utf8(out, cp);
        i += k;
        run = i;
    }
    (void)st_buf_append(out, s + run, to - run);
}

struct open_el {
    struct st_xml *x;
    const char *name;
    size_t name_len;
};

/* Reads a start tag at r->i ('<' then a name) into a new element with namespace ns (the
 * parent's, or the stream's default) unless it declares its own. *empty tells "<x/>". */
static struct st_xml *read_start_tag(struct rd *r, const char *ns, unsigned max_attrs,
                                     bool *empty)
{
    const char *s = r->s;
    if (r->i >= r->n || s[r->i] != '<')
        return NULL;
    r->i++;
    const char *name = s + r->i;
    size_t name_len = read_name(r);
    if (!name_len)
        return NULL;
    struct st_xml_attr_in at[FAST_MAX_ATTRS];
    size_t off[FAST_MAX_ATTRS];
    bool decoded[FAST_MAX_ATTRS];
    unsigned na = 0, ndecl = 0;
    size_t ns_len = ns ? strlen(ns) : 0;
    size_t xmlns_off = 0;
    bool xmlns_decoded = false;
    st_buf_reset(&r->scratch);
    for (;;) {
        size_t before = r->i;
        skip_space(r);
        if (r->i >= r->n)
            return NULL;
        if (s[r->i] == '>') {
            r->i++;
            *empty = false;
            break;
        }
        if (s[r->i] == '/') {
            if (r->i + 1 >= r->n || s[r->i + 1] != '>')
                return NULL;
            r->i += 2;
            *empty = true;
            break;
        }
        if (r->i == before)
            return NULL; /* attributes must be separated by white space */
        const char *an = s + r->i;
        size_t al = read_name(r);
        const char *ans = NULL;
        size_t ans_len = 0;
        if (!al)
            return NULL;
        if (r->i < r->n && s[r->i] == ':') {
            if (al != 3 || memcmp(an, "xml", 3) != 0)
                return NULL; /* a prefix that may be declared elsewhere */
            r->i++;
            an = s + r->i;
            al = read_name(r);
            if (!al)
                return NULL;
            ans = ST_NS_XML;
            ans_len = sizeof ST_NS_XML - 1;
        }
        skip_space(r);
        if (r->i >= r->n || s[r->i] != '=')
            return NULL;
        r->i++;
        skip_space(r);
        if (r->i >= r->n || (s[r->i] != '\'' && s[r->i] != '"'))
            return NULL;
        char q = s[r->i++];
        size_t vst = r->i;
        bool refs;
        if (!scan_chars(r, q, true, &refs))
            return NULL;
        size_t vend = r->i++;
        if (!ans && al == 5 && memcmp(an, "xmlns", 5) == 0) {
            if (ndecl++)
                return NULL; /* declared twice: expat's error */
            if (refs) {
                xmlns_off = r->scratch.len;
                decode_chars(s, vst, vend, &r->scratch);
                ns_len = r->scratch.len - xmlns_off;
                xmlns_decoded = true;
            } else {
                ns = s + vst;
                ns_len = vend - vst;
            }
            continue;
        }
        if (na == FAST_MAX_ATTRS)
            return NULL;
        for (unsigned k = 0; k < na; k++)
            if (at[k].ns == ans && at[k].name_len == al && memcmp(at[k].name, an, al) == 0)
                return NULL; /* duplicate: expat's error */
        at[na] = (struct st_xml_attr_in){ans, ans_len, an, al, s + vst, vend - vst};
        decoded[na] = refs;
        if (refs) {
            off[na] = r->scratch.len;
            decode_chars(s, vst, vend, &r->scratch);
            at[na].value_len = r->scratch.len - off[na];
        }
        na++;
    }
    if (max_attrs && na + ndecl > max_attrs)
        return NULL;
    /* The scratch buffer no longer moves: point at the decoded values. */
    for (unsigned k = 0; k < na; k++)
        if (decoded[k])
            at[k].value = r->scratch.data + off[k];
    if (xmlns_decoded)
        ns = r->scratch.data + xmlns_off;
    if (ndecl && ((ns_len == sizeof ST_NS_XML - 1 && memcmp(ns, ST_NS_XML, ns_len) == 0) ||
                  (ns_len == sizeof NS_XMLNS - 1 && memcmp(ns, NS_XMLNS, ns_len) == 0)))
        return NULL; /* reserved namespace names may not be the default: expat's error */
    return st_xml_new_packed(name, name_len, ns, ns_len, at, na);
}

size_t st_xml_fast_stanza(const char *s, size_t n, const struct st_xml_fast_limits *lim,
                          struct st_xml **out)
{
    *out = NULL;
    struct rd r = {.s = s, .n = n};
    if (lim->max_stanza_bytes && r.n > lim->max_stanza_bytes)
        r.n = lim->max_stanza_bytes; /* a longer stanza never completes here */
    unsigned max_depth = lim->max_depth && lim->max_depth < FAST_MAX_DEPTH ? lim->max_depth
                                                                            : FAST_MAX_DEPTH;
    st_buf_init(&r.scratch, 0);
    struct open_el stack[FAST_MAX_DEPTH];
    unsigned depth = 0;
    struct st_xml *root = NULL;
    size_t raw_from = 0;
    for (;;) {
        if (depth >= max_depth)
            goto decline;
        bool empty = false;
        const char *ns = depth ? stack[depth - 1].x->ns : lim->default_ns;
        size_t tag = r.i;
        struct st_xml *x = read_start_tag(&r, ns, lim->max_attrs, &empty);
        if (!x)
            goto decline;
        if (depth)
            st_xml_append(stack[depth - 1].x, x);
        else
            root = x;
        if (empty && !depth)
            goto done;
        if (!empty) {
            stack[depth++] = (struct open_el){x, s + tag + 1, x->name ? strlen(x->name) : 0};
            if (depth == 1)
                raw_from = r.i;
        }
        /* Content of the innermost open element, up to a child's start tag. */
        for (;;) {
            size_t t0 = r.i;
            bool refs;
            if (!scan_chars(&r, '<', false, &refs))
                goto decline;
            if (r.i > t0) {
                struct st_xml *t;
                if (refs) {
                    st_buf_reset(&r.scratch);
                    decode_chars(s, t0, r.i, &r.scratch);
                    t = st_xml_new_text(r.scratch.data, r.scratch.len);
                } else {
                    t = st_xml_new_text(s + t0, r.i - t0);
                }
                st_xml_append(stack[depth - 1].x, t);
            }
            if (r.i + 1 >= r.n)
                goto decline;
            if (s[r.i + 1] != '/')
                break;
            size_t end_tag = r.i;
            r.i += 2;
            const struct open_el *top = &stack[depth - 1];
            size_t el = read_name(&r);
            if (el != top->name_len || memcmp(s + end_tag + 2, top->name, el) != 0)
                goto decline;
            skip_space(&r);
            if (r.i >= r.n || s[r.i] != '>')
                goto decline;
            r.i++;
            if (--depth == 0) {
                if (end_tag > raw_from)
                    st_xml_keep_raw_inner(root, s + raw_from, end_tag - raw_from);
                goto done;
            }
        }
    }
done:
    st_buf_free(&r.scratch);
    *out = root;
    return r.i;
decline:
    st_buf_free(&r.scratch);
    st_xml_free(root);
    return 0;
}
