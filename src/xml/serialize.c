/* Serialisation of element trees to XML text for the wire (RFC 6120 §4.8,
 * §11). Elements are always written unprefixed in the default namespace, with
 * an xmlns declaration only where the namespace changes, which keeps stanzas
 * in jabber:client/jabber:server byte-compatible with what clients expect.
 * Attribute values escape tab, CR and LF as character references so that
 * attribute-value normalisation at the receiver (XML 1.0 §3.3.3) gives back
 * the same value; text escapes CR for the same reason (XML 1.0 §2.11). The
 * walk is iterative: no input depth can exhaust the stack. */
#include "xml/node.h"

#include "base/buf.h"
#include "base/err.h"

#include <stdio.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Characters that need a reference: 1 in text and attributes, 2 in attributes only. */
static const unsigned char escape_class[256] = {
    ['&'] = 1, ['<'] = 1, ['>'] = 1, ['\r'] = 1, ['\''] = 2, ['"'] = 2, ['\n'] = 2, ['\t'] = 2,
};

/* Returns the index of the first byte from i on that needs a reference, or n. Message bodies
 * are the bulk of what a server writes, so 16 bytes are checked at a time where SSE2 exists
 * (every x86-64). */
static size_t next_special(const char *s, size_t i, size_t n, unsigned char mask)
{
#ifdef __SSE2__
    const __m128i amp = _mm_set1_epi8('&'), lt = _mm_set1_epi8('<'), gt = _mm_set1_epi8('>'),
                  cr = _mm_set1_epi8('\r'), apos = _mm_set1_epi8('\''),
                  quot = _mm_set1_epi8('"'), lf = _mm_set1_epi8('\n'),
                  tab = _mm_set1_epi8('\t');
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, amp), _mm_cmpeq_epi8(v, lt)),
                                 _mm_or_si128(_mm_cmpeq_epi8(v, gt), _mm_cmpeq_epi8(v, cr)));
        if (mask & 2)
            m = _mm_or_si128(m, _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, apos),
                                                          _mm_cmpeq_epi8(v, quot)),
                                             _mm_or_si128(_mm_cmpeq_epi8(v, lf),
                                                          _mm_cmpeq_epi8(v, tab))));
        unsigned bits = (unsigned)_mm_movemask_epi8(m);
        if (bits)
            return i + (size_t)__builtin_ctz(bits);
    }
#endif
    for (; i < n; i++)
        if (escape_class[(unsigned char)s[i]] & mask)
            return i;
    return n;
}

static const char *reference(char c)
{
    switch (c) {
    case '&': return "&amp;";
    case '<': return "&lt;";
    case '>': return "&gt;";
    case '\'': return "&apos;";
    case '"': return "&quot;";
    case '\r': return "&#13;";
    case '\n': return "&#10;";
    default: return "&#9;";
    }
}

/* Returns how many bytes s[0..n) takes once escaped. */
static size_t escaped_len(const char *s, size_t n, unsigned char mask)
{
    size_t len = n;
    for (size_t i = next_special(s, 0, n, mask); i < n; i = next_special(s, i + 1, n, mask))
        len += strlen(reference(s[i])) - 1;
    return len;
}

/* Writes s[0..n) escaped at w, which has room for escaped_len bytes; returns the end. */
static char *escape_into(char *w, const char *s, size_t n, unsigned char mask)
{
    size_t i = 0;
    for (;;) {
        size_t j = next_special(s, i, n, mask);
        memcpy(w, s + i, j - i);
        w += j - i;
        if (j >= n)
            return w;
        const char *rep = reference(s[j]);
        size_t rl = strlen(rep);
        memcpy(w, rep, rl);
        w += rl;
        i = j + 1;
    }
}

int st_xml_put_escaped(struct st_buf *out, const char *s, size_t n, bool in_attr)
{
    unsigned char mask = in_attr ? 3 : 1;
    char *w = st_buf_space(out, escaped_len(s, n, mask));
    if (!w)
        return ST_ELIMIT;
    st_buf_commit(out, (size_t)(escape_into(w, s, n, mask) - w));
    return 0;
}

static bool is_xmlns_attr(const struct st_xml_attr *a)
{
    return !a->ns && a->name[0] == 'x' &&
           (strcmp(a->name, "xmlns") == 0 || strncmp(a->name, "xmlns:", 6) == 0);
}

static bool is_foreign(const struct st_xml_attr *a)
{
    return a->ns && strcmp(a->ns, ST_NS_XML) != 0;
}

/* Returns N for the generated prefix "nsN" of attribute i (a foreign namespace): the
 * namespaces are numbered by first appearance. *first says whether i is that first
 * appearance, where the prefix must be declared. */
static unsigned foreign_prefix(const struct st_xml *x, unsigned i, bool *first)
{
    unsigned n = 0;
    for (unsigned j = 0; j <= i; j++) {
        const struct st_xml_attr *b = &x->attrs[j];
        if (!is_foreign(b))
            continue;
        bool seen = false;
        for (unsigned k = 0; k < j && !seen; k++)
            seen = is_foreign(&x->attrs[k]) && strcmp(x->attrs[k].ns, b->ns) == 0;
        if (seen)
            continue;
        n++;
        if (strcmp(b->ns, x->attrs[i].ns) == 0) {
            *first = j == i;
            return n;
        }
    }
    *first = true; /* not reached: attribute i itself is foreign */
    return n;
}

/* Appends the three pieces a + b + c; printf would cost more than the rest of serialising. */
static int put3(struct st_buf *out, const char *a, const char *b, const char *c)
{
    int rc = st_buf_puts(out, a);
    if (!rc)
        rc = st_buf_puts(out, b);
    if (!rc && c)
        rc = st_buf_puts(out, c);
    return rc;
}

static int put_open_tag(struct st_buf *out, const struct st_xml *x, const char *scope_ns,
                        bool empty)
{
    int rc = put3(out, "<", x->name, NULL);
    if (!rc && strcmp(x->ns, scope_ns) != 0) {
        rc = st_buf_puts(out, " xmlns='");
        if (!rc)
            rc = st_xml_put_escaped(out, x->ns, strlen(x->ns), true);
        if (!rc)
            rc = st_buf_puts(out, "'");
    }
    for (unsigned i = 0; i < x->nattrs && !rc; i++) {
        const struct st_xml_attr *a = &x->attrs[i];
        if (is_xmlns_attr(a))
            continue;
        if (!a->ns || strcmp(a->ns, ST_NS_XML) == 0) {
            /* The common case written in one go: one bound check instead of one per piece. */
            const char *pre = a->ns ? " xml:" : " ";
            size_t pl = a->ns ? 5 : 1, nl = strlen(a->name), vl = strlen(a->value);
            char *w = st_buf_space(out, pl + nl + 3 + escaped_len(a->value, vl, 3));
            if (!w)
                return ST_ELIMIT;
            char *e = w;
            memcpy(e, pre, pl);
            e += pl;
            memcpy(e, a->name, nl);
            e += nl;
            *e++ = '=';
            *e++ = '\'';
            e = escape_into(e, a->value, vl, 3);
            *e++ = '\'';
            st_buf_commit(out, (size_t)(e - w));
            continue;
        } else {
            bool first;
            unsigned k = foreign_prefix(x, i, &first);
            if (first) {
                /* First attribute in this namespace: declare its prefix here. */
                rc = st_buf_printf(out, " xmlns:ns%u='", k);
                if (!rc)
                    rc = st_xml_put_escaped(out, a->ns, strlen(a->ns), true);
                if (!rc)
                    rc = st_buf_puts(out, "'");
            }
            if (!rc)
                rc = st_buf_printf(out, " ns%u:%s='", k, a->name);
        }
        if (!rc)
            rc = st_xml_put_escaped(out, a->value, strlen(a->value), true);
        if (!rc)
            rc = st_buf_puts(out, "'");
    }
    if (!rc)
        rc = st_buf_puts(out, empty ? "/>" : ">");
    return rc;
}

int st_xml_serialize(const struct st_xml *x, const char *parent_ns, struct st_buf *out)
{
    const struct st_xml *n = x;
    int rc = 0;
    if (!parent_ns)
        parent_ns = "";
    if (x->type == ST_XML_ELEMENT && x->raw_inner) {
        /* The children as received: only the root's tag is written (node.h). */
        rc = put_open_tag(out, x, parent_ns, false);
        if (!rc)
            rc = st_buf_append(out, x->raw_inner, x->raw_inner_len);
        if (!rc)
            rc = put3(out, "</", x->name, ">");
        return rc;
    }
    while (!rc) {
        const char *scope = n == x ? parent_ns : n->parent->ns;
        if (n->type == ST_XML_TEXT) {
            rc = st_xml_put_escaped(out, n->text, n->text_len, false);
        } else if (n->first_child) {
            rc = put_open_tag(out, n, scope, false);
            n = n->first_child;
            continue;
        } else {
            rc = put_open_tag(out, n, scope, true);
        }
        /* n is finished: close ancestors until one has a next sibling. */
        for (;;) {
            if (rc || n == x)
                return rc;
            if (n->next) {
                n = n->next;
                break;
            }
            n = n->parent;
            rc = put3(out, "</", n->name, ">");
        }
    }
    return rc;
}
