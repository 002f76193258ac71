/* XMPP stream parser on expat (RFC 6120 §4.2–§4.4 stream open/close, §4.9.3
 * stream errors, §11 XML usage). Expat runs with namespace processing; the
 * root element is reported as the stream header (with its namespace
 * declarations as xmlns attributes, RFC 6120 §4.8), each depth-1 element as
 * a whole tree, then the root's close. Restricted XML (RFC 6120 §11.1:
 * comments, processing instructions, DTDs, entity declarations and
 * references) is refused from expat's handlers before anything is expanded;
 * an XML declaration naming an encoding other than UTF-8 is refused too
 * (RFC 6120 §11.6). Limits (stanza bytes as received, depth, attributes)
 * give <policy-violation/>; the byte limit is also checked between input
 * slices so expat's own buffer stays bounded for an endless tag or text.
 *
 * Idle memory: an expat parser holds several KiB even between stanzas, and a
 * server keeps one per connection. When a feed ends exactly between
 * top-level stanzas the expat parser is freed ("hibernation"); the next feed
 * creates a new one and first parses a synthetic copy of the stream header
 * (the root name plus its namespace declarations, kept as a short string),
 * with the duplicate stream_open suppressed and byte offsets rebased so the
 * limits see the real stream. Callers cannot tell the difference. Freed
 * parsers are reset and kept in a small per-thread pool, so waking costs a
 * reset instead of expat's ~30 allocations.
 *
 * Forwarding: a stanza that arrived within one read and uses no namespace
 * prefix keeps a copy of its children as received (st_xml.raw_inner), so the
 * router's usual work (stamp 'from', deliver) re-serialises only the root's
 * tag. Expat reports names as triplets (uri, local name, prefix) for that.
 *
 * While hibernating, whole stanzas of the common simple shape at the start
 * of a feed are read by fastpath.c without waking expat; the first byte it
 * declines (incomplete or unusual input) goes to expat as before. */
#include "xml/parser.h"

#include "base/buf.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/rand.h"
#include "st_config.h"
#include "xml/fastpath.h"
#include "xml/node.h"

#include <assert.h>
#include <expat.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Separates namespace URI and local name in expat's names. U+0001 is not
 * allowed anywhere in an XML 1.0 document, not even as a character reference,
 * so it can never occur inside a URI or a name. */
#define NS_SEP '\x01'

/* Input is given to expat in slices of at most this many bytes so the
 * stanza-size limit is checked (and expat's buffer bounded) within a slice. */
#define FEED_SLICE 16384

/* An expat parser and the byte counter its blocks are charged to: both travel together
 * through the idle pool, so a block's counter outlives whichever stream used the parser. */
struct expat {
    XML_Parser xp;
    size_t mem;
    struct expat *next; /* in the pool */
};

struct st_xml_parser {
    XML_Parser xp; /* ex->xp, or NULL after reset, before the first feed, or while hibernating */
    struct expat *ex;
    struct st_xml_parser_cb cb;
    void *ud;
    struct st_xml_limits lim;
    unsigned long salt; /* expat hash salt, stable across hibernation */
    bool pooled;        /* returns its expat to the thread's pool (stream parsers) */

    /* Byte offsets into the stream since the last reset ("absolute"). */
    unsigned long long fed;  /* bytes handed to expat so far */
    unsigned long long mark; /* where the current top-level unit (header or stanza) began */
    long long base;          /* absolute offset of expat's byte index 0 */

    unsigned depth;        /* open elements including the root */
    unsigned ndecl;        /* namespace declarations seen for the next start tag */
    struct st_buf decls;   /* root only: " xmlns:p='uri'" text, building the synthetic header */
    struct st_xml *decl_attrs; /* root only: declarations as "xmlns"/"xmlns:p" attributes */
    struct st_xml *stanza; /* stanza under construction */
    struct st_xml *cur;    /* its innermost open element */
    size_t tree_bytes;     /* approximate size of the stanza under construction */
    struct st_buf text;    /* character data not yet attached to cur */
    char *stream_ns;       /* default namespace declared on the stream root, or NULL */
    char *synth;           /* synthetic stream header for rehydration */
    size_t synth_len;

    /* The input slice expat is parsing (NULL while rehydrating), for raw_inner. */
    const char *slice;
    unsigned long long slice_abs; /* absolute offset of slice[0] */
    size_t slice_len;
    unsigned long long raw_from;  /* absolute offset just past the stanza's start tag */
    bool raw_ok;                  /* the stanza so far can be forwarded as received */

    bool header_seen;
    bool closed;      /* root element closed */
    bool in_cdata;
    bool rehydrating; /* parsing synth: stream_open suppressed */
    bool in_feed;
    bool in_expat;    /* inside XML_Parse: XML_StopParser allowed */
    bool halted;      /* handlers must do nothing more */
    bool stop_req;
    bool reset_req;
    enum st_xml_parse_error perr; /* 0 or the error to report */
    const char *perr_text;
    bool perr_reported;
};

/* ---- counting allocator ------------------------------------------------ */

/* Expat's allocator hooks carry no user pointer, so the parser whose expat call is
 * running is published in a thread-local for mm_malloc; every block records the counter
 * it was charged to so realloc and free need no context. Only this file touches it and
 * it is valid only around expat calls on this thread. */
static _Thread_local size_t *tl_counter;

struct mm_hdr {
    alignas(max_align_t) size_t size;
    size_t *counter;
};

static void *mm_malloc(size_t n)
{
    struct mm_hdr *h = st_malloc(sizeof *h + n);
    h->size = n;
    h->counter = tl_counter;
    if (h->counter)
        *h->counter += sizeof *h + n;
    return h + 1;
}

static void *mm_realloc(void *ptr, size_t n)
{
    if (!ptr)
        return mm_malloc(n);
    struct mm_hdr *h = (struct mm_hdr *)ptr - 1;
    size_t old = h->size;
    h = st_realloc(h, sizeof *h + n);
    if (h->counter)
        *h->counter = *h->counter - old + n;
    h->size = n;
    return h + 1;
}

static void mm_free(void *ptr)
{
    if (!ptr)
        return;
    struct mm_hdr *h = (struct mm_hdr *)ptr - 1;
    if (h->counter)
        *h->counter -= sizeof *h + h->size;
    st_free(h);
}

static const XML_Memory_Handling_Suite mm_suite = {mm_malloc, mm_realloc, mm_free};

/* ---- helpers ------------------------------------------------------------ */

static void fail(struct st_xml_parser *p, enum st_xml_parse_error err, const char *text)
{
    if (p->perr)
        return;
    p->perr = err;
    p->perr_text = text;
    p->halted = true;
    if (p->in_expat)
        XML_StopParser(p->xp, XML_FALSE);
}

/* Called after every user callback: a stop or reset requested from inside it halts
 * expat at once. */
static void after_callback(struct st_xml_parser *p)
{
    if ((p->stop_req || p->reset_req) && !p->halted) {
        p->halted = true;
        if (p->in_expat)
            XML_StopParser(p->xp, XML_FALSE);
    }
}

/* Absolute offset just past the event being reported. */
static unsigned long long event_end(struct st_xml_parser *p)
{
    long long idx = (long long)XML_GetCurrentByteIndex(p->xp);
    long long cnt = XML_GetCurrentByteCount(p->xp);
    if (idx < 0)
        return p->fed;
    return (unsigned long long)(p->base + idx + (cnt > 0 ? cnt : 0));
}

static bool over_size(struct st_xml_parser *p, unsigned long long end)
{
    return p->lim.max_stanza_bytes && end > p->mark && end - p->mark > p->lim.max_stanza_bytes;
}

/* An expat name "uri<SEP>local<SEP>prefix", "uri<SEP>local" or "local", split in place. */
struct qname {
    const char *ns; /* NULL if none */
    size_t ns_len;
    const char *local;
    size_t local_len;
    bool prefixed; /* written with a prefix other than the predefined xml: */
};

static void split_qname(const char *s, struct qname *q)
{
    const char *a = strchr(s, NS_SEP);
    if (!a) {
        *q = (struct qname){.local = s, .local_len = strlen(s)};
        return;
    }
    q->ns = s;
    q->ns_len = (size_t)(a - s);
    q->local = a + 1;
    const char *b = strchr(q->local, NS_SEP);
    q->local_len = b ? (size_t)(b - q->local) : strlen(q->local);
    q->prefixed = b && strcmp(b + 1, "xml") != 0;
}

/* Makes a NUL-terminated copy of the qname's namespace and local name for the root, which
 * st_xml_new needs; the two strings share one allocation owned by the caller (free ns_out or,
 * when there is no namespace, local_out). */
static char *qname_dup(const struct qname *q, const char **ns_out)
{
    char *b = st_malloc(q->ns_len + 1 + q->local_len + 1);
    memcpy(b, q->ns ? q->ns : "", q->ns_len);
    b[q->ns_len] = '\0';
    memcpy(b + q->ns_len + 1, q->local, q->local_len);
    b[q->ns_len + 1 + q->local_len] = '\0';
    *ns_out = q->ns ? b : NULL;
    return b;
}

static void flush_text(struct st_xml_parser *p)
{
    if (!p->text.len || !p->cur)
        return;
    st_xml_append(p->cur, st_xml_new_text(p->text.data, p->text.len));
    p->tree_bytes += sizeof(struct st_xml) + p->text.len + 1;
    st_buf_reset(&p->text);
}

static void drop_stanza(struct st_xml_parser *p)
{
    st_xml_free(p->stanza);
    p->stanza = p->cur = NULL;
    p->tree_bytes = 0;
    st_buf_free(&p->text);
}

static void add_attrs(struct st_xml *x, const XML_Char **atts)
{
    for (unsigned i = 0; atts[i]; i += 2) {
        struct qname q;
        split_qname(atts[i], &q);
        const char *ns;
        char *b = qname_dup(&q, &ns);
        st_xml_append_attr(x, ns, b + q.ns_len + 1, atts[i + 1]);
        st_free(b);
    }
}

static unsigned count_attrs(const XML_Char **atts)
{
    unsigned n = 0;
    while (atts[2 * n])
        n++;
    return n;
}

/* ---- expat handlers ------------------------------------------------------ */

static void XMLCALL on_ns_start(void *ud, const XML_Char *prefix, const XML_Char *uri)
{
    struct st_xml_parser *p = ud;
    if (p->halted)
        return;
    p->ndecl++;
    if (p->depth != 0 || p->rehydrating)
        return; /* below the root, namespaces are resolved into the tree */
    if (!uri)
        uri = "";
    if (!p->decl_attrs)
        p->decl_attrs = st_xml_new("decls", NULL);
    char aname[300];
    if (prefix && strlen(prefix) > sizeof aname - 7) {
        fail(p, ST_XML_ERR_POLICY, "namespace prefix too long");
        return;
    }
    if (prefix)
        snprintf(aname, sizeof aname, "xmlns:%s", prefix);
    else
        snprintf(aname, sizeof aname, "xmlns");
    st_xml_append_attr(p->decl_attrs, NULL, aname, uri);
    int rc = st_buf_printf(&p->decls, " %s='", aname);
    if (!rc)
        rc = st_xml_put_escaped(&p->decls, uri, strlen(uri), true);
    if (!rc)
        rc = st_buf_puts(&p->decls, "'");
    if (rc)
        fail(p, ST_XML_ERR_POLICY, "stream header too large");
}

/* Builds the synthetic header "<[prefix:]name decls>" from the root's declarations. */
static void build_synth(struct st_xml_parser *p, const char *ns, const char *local)
{
    const char *prefix = NULL;
    for (unsigned i = 0; ns && p->decl_attrs && i < p->decl_attrs->nattrs; i++) {
        const struct st_xml_attr *a = &p->decl_attrs->attrs[i];
        if (strcmp(a->value, ns) != 0)
            continue;
        if (strcmp(a->name, "xmlns") == 0) {
            prefix = NULL;
            break;
        }
        prefix = a->name + 6;
    }
    struct st_buf b;
    st_buf_init(&b, 0);
    if (prefix)
        st_buf_printf(&b, "<%s:%s", prefix, local);
    else
        st_buf_printf(&b, "<%s", local);
    if (p->decls.len)
        st_buf_append(&b, p->decls.data, p->decls.len);
    st_buf_puts(&b, ">");
    p->synth_len = b.len;
    p->synth = st_buf_take(&b);
}

static void open_root(struct st_xml_parser *p, const XML_Char *name, const XML_Char **atts)
{
    struct qname q;
    split_qname(name, &q);
    const char *ns;
    char *en = qname_dup(&q, &ns);
    const char *local = en + q.ns_len + 1;
    if (p->rehydrating) {
        /* The real header was reported long ago; this is our own copy. */
    } else if (p->lim.max_attrs && count_attrs(atts) + p->ndecl > p->lim.max_attrs) {
        fail(p, ST_XML_ERR_POLICY, "too many attributes");
    } else {
        build_synth(p, ns, local);
        const char *dns = p->decl_attrs ? st_xml_attr(p->decl_attrs, "xmlns") : NULL;
        st_free(p->stream_ns);
        p->stream_ns = dns && *dns ? st_strdup(dns) : NULL;
        struct st_xml *h = st_xml_new(local, ns);
        add_attrs(h, atts);
        for (unsigned i = 0; p->decl_attrs && i < p->decl_attrs->nattrs; i++)
            st_xml_append_attr(h, NULL, p->decl_attrs->attrs[i].name,
                               p->decl_attrs->attrs[i].value);
        p->header_seen = true;
        p->depth = 1;
        p->mark = event_end(p);
        if (p->cb.stream_open)
            p->cb.stream_open(p->ud, h);
        st_xml_free(h);
        after_callback(p);
    }
    if (p->rehydrating) {
        p->depth = 1;
        p->mark = event_end(p);
    }
    st_free(en);
    st_xml_free(p->decl_attrs);
    p->decl_attrs = NULL;
    st_buf_free(&p->decls);
}

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
    struct st_xml_parser *p = ud;
    unsigned ndecl = p->ndecl;
    p->ndecl = 0;
    if (p->halted)
        return;
    if (p->depth == 0) {
        p->ndecl = ndecl;
        open_root(p, name, atts);
        p->ndecl = 0;
        return;
    }
    if (over_size(p, event_end(p))) {
        fail(p, ST_XML_ERR_POLICY, "stanza too large");
        return;
    }
    if (p->lim.max_depth && p->depth > p->lim.max_depth) {
        fail(p, ST_XML_ERR_POLICY, "elements nested too deeply");
        return;
    }
    if (p->lim.max_attrs && count_attrs(atts) + ndecl > p->lim.max_attrs) {
        fail(p, ST_XML_ERR_POLICY, "too many attributes");
        return;
    }
    flush_text(p);
    if (p->depth == 1) {
        p->raw_ok = p->slice != NULL;
        p->raw_from = event_end(p);
    }
    struct qname q;
    split_qname(name, &q);
    unsigned na = count_attrs(atts);
    struct st_xml_attr_in small[16];
    struct st_xml_attr_in *in = na <= 16 ? small : st_malloc(na * sizeof *in);
    bool prefixed = q.prefixed;
    for (unsigned i = 0; i < na; i++) {
        struct qname aq;
        split_qname(atts[2 * i], &aq);
        prefixed |= aq.prefixed;
        in[i] = (struct st_xml_attr_in){aq.ns, aq.ns_len, aq.local, aq.local_len,
                                        atts[2 * i + 1], strlen(atts[2 * i + 1])};
    }
    if (prefixed)
        p->raw_ok = false; /* the prefix may be declared outside the stanza */
    struct st_xml *x = st_xml_new_packed(q.local, q.local_len, q.ns, q.ns_len, in, na);
    if (in != small)
        st_free(in);
    p->tree_bytes += x->alloc_size;
    if (p->cur)
        st_xml_append(p->cur, x);
    else
        p->stanza = x;
    p->cur = x;
    p->depth++;
}

/* Gives the finished stanza s its children as received when they all lie in the slice being
 * parsed (the usual case: a stanza arrives within one read). */
static void keep_raw(struct st_xml_parser *p, struct st_xml *s)
{
    long long idx = (long long)XML_GetCurrentByteIndex(p->xp);
    if (!p->raw_ok || idx < 0)
        return;
    unsigned long long end_tag = (unsigned long long)(p->base + idx);
    if (end_tag <= p->raw_from || p->raw_from < p->slice_abs ||
        end_tag > p->slice_abs + p->slice_len)
        return;
    st_xml_keep_raw_inner(s, p->slice + (p->raw_from - p->slice_abs),
                          (size_t)(end_tag - p->raw_from));
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
    struct st_xml_parser *p = ud;
    (void)name;
    if (p->halted)
        return;
    if (p->depth == 1) {
        p->depth = 0;
        p->closed = true;
        p->mark = event_end(p);
        if (p->cb.stream_close)
            p->cb.stream_close(p->ud);
        after_callback(p);
        return;
    }
    unsigned long long end = event_end(p);
    if (over_size(p, end)) {
        fail(p, ST_XML_ERR_POLICY, "stanza too large");
        return;
    }
    flush_text(p);
    p->depth--;
    if (p->cur->parent) {
        p->cur = p->cur->parent;
        return;
    }
    struct st_xml *s = p->stanza;
    p->stanza = p->cur = NULL;
    p->tree_bytes = 0;
    st_buf_reset(&p->text); /* kept for the next stanza; freed when the parser hibernates */
    keep_raw(p, s);
    p->mark = end;
    if (p->cb.stanza)
        p->cb.stanza(p->ud, s);
    else
        st_xml_unref(s);
    after_callback(p);
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
    struct st_xml_parser *p = ud;
    if (p->halted || p->depth == 0)
        return;
    if (p->depth == 1) {
        /* RFC 6120 §4.6.1: whitespace between stanzas is a keepalive. */
        for (int i = 0; i < len; i++) {
            if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') {
                fail(p, ST_XML_ERR_NOT_WELL_FORMED, "text at stream level");
                return;
            }
        }
        p->mark = event_end(p);
        return;
    }
    if (over_size(p, event_end(p))) {
        fail(p, ST_XML_ERR_POLICY, "stanza too large");
        return;
    }
    if (st_buf_append(&p->text, s, (size_t)len))
        fail(p, ST_XML_ERR_POLICY, "stanza too large");
}

static void XMLCALL on_cdata_start(void *ud)
{
    ((struct st_xml_parser *)ud)->in_cdata = true;
}

static void XMLCALL on_cdata_end(void *ud)
{
    ((struct st_xml_parser *)ud)->in_cdata = false;
}

static void XMLCALL on_xmldecl(void *ud, const XML_Char *version, const XML_Char *encoding,
                               int standalone)
{
    struct st_xml_parser *p = ud;
    (void)version;
    (void)standalone;
    if (p->halted)
        return;
    if (encoding && strcasecmp(encoding, "UTF-8") != 0)
        fail(p, ST_XML_ERR_UNSUPPORTED_ENCODING, "encoding other than UTF-8");
}

static void restricted(void *ud, const char *what)
{
    fail(ud, ST_XML_ERR_RESTRICTED, what);
}

static void XMLCALL on_comment(void *ud, const XML_Char *data)
{
    (void)data;
    restricted(ud, "comment");
}

static void XMLCALL on_pi(void *ud, const XML_Char *target, const XML_Char *data)
{
    (void)target;
    (void)data;
    restricted(ud, "processing instruction");
}

static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int has_internal_subset)
{
    (void)name;
    (void)sysid;
    (void)pubid;
    (void)has_internal_subset;
    restricted(ud, "DOCTYPE");
}

static void XMLCALL on_entity_decl(void *ud, const XML_Char *name, int is_param,
                                   const XML_Char *value, int value_len, const XML_Char *base,
                                   const XML_Char *sysid, const XML_Char *pubid,
                                   const XML_Char *notation)
{
    (void)name;
    (void)is_param;
    (void)value;
    (void)value_len;
    (void)base;
    (void)sysid;
    (void)pubid;
    (void)notation;
    restricted(ud, "entity declaration");
}

static void XMLCALL on_element_decl(void *ud, const XML_Char *name, XML_Content *model)
{
    struct st_xml_parser *p = ud;
    (void)name;
    XML_FreeContentModel(p->xp, model);
    restricted(ud, "element declaration");
}

static void XMLCALL on_attlist_decl(void *ud, const XML_Char *el, const XML_Char *att,
                                    const XML_Char *type, const XML_Char *dflt, int required)
{
    (void)el;
    (void)att;
    (void)type;
    (void)dflt;
    (void)required;
    restricted(ud, "attribute list declaration");
}

static void XMLCALL on_notation_decl(void *ud, const XML_Char *name, const XML_Char *base,
                                     const XML_Char *sysid, const XML_Char *pubid)
{
    (void)name;
    (void)base;
    (void)sysid;
    (void)pubid;
    restricted(ud, "notation declaration");
}

static void XMLCALL on_skipped_entity(void *ud, const XML_Char *name, int is_param)
{
    (void)name;
    (void)is_param;
    restricted(ud, "entity reference");
}

static int XMLCALL on_external_entity(XML_Parser xp, const XML_Char *context,
                                      const XML_Char *base, const XML_Char *sysid,
                                      const XML_Char *pubid)
{
    (void)context;
    (void)base;
    (void)sysid;
    (void)pubid;
    restricted(XML_GetUserData(xp), "external entity reference");
    return XML_STATUS_ERROR;
}

/* ---- parser lifecycle ---------------------------------------------------- */

/* Reset parsers kept per thread. A reset parser keeps its buffers (a few KiB); one that grew
 * past POOL_PARSER_MAX on a big stanza is freed instead. */
#define POOL_MAX 32
#define POOL_PARSER_MAX (24 * 1024)

static _Thread_local struct {
    struct expat *head;
    unsigned n;
} tl_pool;

/* Returns an expat parser from the pool or a new one; the caller owns it. */
static struct expat *expat_take(void)
{
    struct expat *e = tl_pool.head;
    if (e) {
        tl_pool.head = e->next;
        tl_pool.n--;
        return e;
    }
    e = ST_NEW(struct expat);
    const XML_Char sep[2] = {NS_SEP, '\0'};
    size_t *saved = tl_counter; /* a parser may be used from another's callback */
    tl_counter = &e->mem;
    /* Forcing UTF-8 makes expat ignore a BOM or declared encoding; a declared
     * non-UTF-8 encoding is still seen (and refused) in on_xmldecl. */
    e->xp = XML_ParserCreate_MM("UTF-8", &mm_suite, sep);
    tl_counter = saved;
    if (!e->xp) {
        /* Only allocation can fail here; like every failed allocation, that aborts. */
        st_log_error("xml", "cannot create an expat parser");
        abort();
    }
    return e;
}

static void expat_destroy(struct expat *e)
{
    size_t *saved = tl_counter;
    tl_counter = &e->mem;
    XML_ParserFree(e->xp);
    tl_counter = saved;
    st_free(e);
}

/* Takes e back: reset into the pool, or freed. */
static void expat_give(struct expat *e, bool pool)
{
    if (pool && tl_pool.n < POOL_MAX && e->mem <= POOL_PARSER_MAX) {
        size_t *saved = tl_counter;
        tl_counter = &e->mem;
        XML_Bool ok = XML_ParserReset(e->xp, "UTF-8");
        tl_counter = saved;
        if (ok) {
            e->next = tl_pool.head;
            tl_pool.head = e;
            tl_pool.n++;
            return;
        }
    }
    expat_destroy(e);
}

void st_xml_parser_pool_drain(void)
{
    while (tl_pool.head) {
        struct expat *e = tl_pool.head;
        tl_pool.head = e->next;
        expat_destroy(e);
    }
    tl_pool.n = 0;
}

static void create_expat(struct st_xml_parser *p)
{
    p->ex = expat_take();
    p->xp = p->ex->xp;
    /* A reset parser has no handlers, user data, salt or options left: set them all. */
    XML_SetReturnNSTriplet(p->xp, XML_TRUE);
    XML_SetUserData(p->xp, p);
    XML_SetHashSalt(p->xp, p->salt);
    XML_SetElementHandler(p->xp, on_start, on_end);
    XML_SetCharacterDataHandler(p->xp, on_text);
    XML_SetStartNamespaceDeclHandler(p->xp, on_ns_start);
    XML_SetCdataSectionHandler(p->xp, on_cdata_start, on_cdata_end);
    XML_SetXmlDeclHandler(p->xp, on_xmldecl);
    XML_SetCommentHandler(p->xp, on_comment);
    XML_SetProcessingInstructionHandler(p->xp, on_pi);
    XML_SetStartDoctypeDeclHandler(p->xp, on_doctype);
    XML_SetEntityDeclHandler(p->xp, on_entity_decl);
    XML_SetElementDeclHandler(p->xp, on_element_decl);
    XML_SetAttlistDeclHandler(p->xp, on_attlist_decl);
    XML_SetNotationDeclHandler(p->xp, on_notation_decl);
    XML_SetSkippedEntityHandler(p->xp, on_skipped_entity);
    XML_SetExternalEntityRefHandler(p->xp, on_external_entity);
    XML_SetParamEntityParsing(p->xp, XML_PARAM_ENTITY_PARSING_NEVER);
#if HAVE_XML_SETREPARSEDEFERRALENABLED
    /* Stanzas must be delivered as soon as their last byte arrives. */
    XML_SetReparseDeferralEnabled(p->xp, XML_FALSE);
#endif
}

static void free_expat(struct st_xml_parser *p)
{
    if (p->ex)
        expat_give(p->ex, p->pooled);
    p->ex = NULL;
    p->xp = NULL;
}

static void do_reset(struct st_xml_parser *p)
{
    free_expat(p);
    drop_stanza(p);
    st_xml_free(p->decl_attrs);
    p->decl_attrs = NULL;
    st_buf_free(&p->decls);
    st_free(p->synth);
    p->synth = NULL;
    p->synth_len = 0;
    st_free(p->stream_ns);
    p->stream_ns = NULL;
    p->fed = p->mark = 0;
    p->base = 0;
    p->depth = p->ndecl = 0;
    p->header_seen = p->closed = p->in_cdata = p->rehydrating = false;
    p->halted = p->stop_req = p->reset_req = false;
    p->perr = 0;
    p->perr_text = NULL;
    p->perr_reported = false;
}

struct st_xml_parser *st_xml_parser_new(const struct st_xml_parser_cb *cb, void *ud,
                                        const struct st_xml_limits *limits)
{
    struct st_xml_parser *p = ST_NEW(struct st_xml_parser);
    p->cb = *cb;
    p->ud = ud;
    p->lim = *limits;
    if (st_rand_bytes(&p->salt, sizeof p->salt))
        p->salt = (unsigned long)(uintptr_t)p;
    st_buf_init(&p->text, 0);
    st_buf_init(&p->decls, 0);
    p->pooled = true;
    return p;
}

void st_xml_parser_free(struct st_xml_parser *p)
{
    if (!p)
        return;
    assert(!p->in_feed);
    do_reset(p);
    st_free(p);
}

void st_xml_parser_set_limits(struct st_xml_parser *p, const struct st_xml_limits *limits)
{
    p->lim = *limits;
}

static int err_rc(enum st_xml_parse_error e)
{
    return e == ST_XML_ERR_POLICY ? ST_ELIMIT : ST_EINVAL;
}

static void map_expat_error(struct st_xml_parser *p)
{
    enum XML_Error code = XML_GetErrorCode(p->xp);
    switch (code) {
    case XML_ERROR_UNBOUND_PREFIX:
        fail(p, ST_XML_ERR_BAD_PREFIX, "undeclared namespace prefix");
        break;
    case XML_ERROR_UNDEFINED_ENTITY:
    case XML_ERROR_EXTERNAL_ENTITY_HANDLING:
    case XML_ERROR_ENTITY_DECLARED_IN_PE:
        fail(p, ST_XML_ERR_RESTRICTED, "entity reference");
        break;
    case XML_ERROR_UNKNOWN_ENCODING:
    case XML_ERROR_INCORRECT_ENCODING:
        fail(p, ST_XML_ERR_UNSUPPORTED_ENCODING, "unsupported encoding");
        break;
    default: {
        /* A DTD construct inside the root element ("<!DOCTYPE", "<!ENTITY", ...) is a syntax
         * error to expat, but RFC 6120 §11.1 names it: <restricted-xml/>. Find the "<!" at or
         * just before where expat stopped; anything after it that cannot begin a comment or a
         * CDATA section is such a declaration. Deciding on what can no longer become valid
         * keeps the answer the same however the input was split into reads. */
        int offset = 0, size = 0;
        const char *ctx = XML_GetInputContext(p->xp, &offset, &size);
        if (ctx && offset >= 0 && offset <= size) {
            int from = offset > 10 ? offset - 10 : 0;
            int bang = -1;
            for (int i = offset - 1; i >= from; i--) {
                if (i + 1 < size && ctx[i] == '<' && ctx[i + 1] == '!') {
                    bang = i;
                    break;
                }
            }
            if (bang >= 0 && bang + 2 < size) {
                const char *rest = ctx + bang + 2;
                size_t left = (size_t)(size - bang - 2);
                static const char *const ok[] = {"--", "[CDATA["};
                bool maybe_ok = false;
                for (size_t i = 0; i < 2; i++) {
                    size_t n = strlen(ok[i]);
                    if (memcmp(rest, ok[i], left < n ? left : n) == 0)
                        maybe_ok = true;
                }
                if (!maybe_ok) {
                    fail(p, ST_XML_ERR_RESTRICTED, "markup declaration");
                    return;
                }
            }
        }
        fail(p, ST_XML_ERR_NOT_WELL_FORMED, XML_ErrorString(code));
        break;
    }
    }
}

/* Runs expat over data; returns false once the parser halted. */
static bool run_expat(struct st_xml_parser *p, const char *data, size_t len)
{
    size_t *saved = tl_counter;
    tl_counter = &p->ex->mem;
    p->in_expat = true;
    enum XML_Status st = XML_Parse(p->xp, data, (int)len, XML_FALSE);
    p->in_expat = false;
    tl_counter = saved;
    if (st == XML_STATUS_ERROR && !p->halted)
        map_expat_error(p);
    return !p->halted;
}

/* Brings back an expat parser after a reset (fresh stream) or hibernation (replays the
 * synthetic header). */
static void wake(struct st_xml_parser *p)
{
    create_expat(p);
    if (!p->header_seen)
        return;
    p->depth = 0;
    p->base = (long long)p->fed - (long long)p->synth_len;
    p->mark = p->fed;
    p->rehydrating = true;
    bool ok = run_expat(p, p->synth, p->synth_len);
    p->rehydrating = false;
    assert(!ok || p->depth == 1);
    (void)ok;
}

static void maybe_hibernate(struct st_xml_parser *p)
{
    if (p->xp && p->header_seen && !p->closed && p->depth == 1 && !p->stanza && !p->halted &&
        !p->in_cdata && p->mark == p->fed && !p->text.len) {
        free_expat(p);
        st_buf_free(&p->text);
    }
}

/* Reads the stanzas at the start of data with fastpath.c while the parser hibernates
 * between stanzas; returns the bytes consumed (white space between stanzas included). Stops
 * at the first byte the fast reader declines, or when a callback stops or resets. */
static size_t fast_feed(struct st_xml_parser *p, const char *data, size_t len)
{
    size_t used = 0;
    unsigned long long base = p->fed; /* == p->mark while hibernating */
    while (used < len && !p->halted) {
        size_t ws = used;
        while (ws < len && (data[ws] == ' ' || data[ws] == '\t' || data[ws] == '\n' ||
                            data[ws] == '\r'))
            ws++;
        if (ws == len) {
            used = len; /* a keepalive (RFC 6120 §4.6.1) */
            p->fed = p->mark = base + used;
            break;
        }
        const struct st_xml_fast_limits fl = {p->stream_ns, p->lim.max_stanza_bytes,
                                              p->lim.max_depth, p->lim.max_attrs};
        struct st_xml *x = NULL;
        size_t n = st_xml_fast_stanza(data + ws, len - ws, &fl, &x);
        if (!n)
            break;
        used = ws + n;
        p->fed = p->mark = base + used;
        if (p->cb.stanza)
            p->cb.stanza(p->ud, x);
        else
            st_xml_unref(x);
        after_callback(p);
    }
    return used;
}

int st_xml_parser_feed(struct st_xml_parser *p, const char *data, size_t len)
{
    assert(!p->in_feed);
    if (p->perr)
        return err_rc(p->perr);
    if (p->stop_req || p->halted)
        return ST_ECLOSED;
    if (!len)
        return 0;
    p->in_feed = true;
    if (!p->xp && p->header_seen && !p->closed) {
        size_t used = fast_feed(p, data, len);
        data += used;
        len -= used;
    }
    if (len && !p->halted && !p->xp)
        wake(p);
    while (len && !p->halted) {
        size_t n = len < FEED_SLICE ? len : FEED_SLICE;
        p->slice = data;
        p->slice_abs = p->fed;
        p->slice_len = n;
        p->fed += n;
        bool ok = run_expat(p, data, n);
        p->slice = NULL;
        if (!ok)
            break;
        data += n;
        len -= n;
        if (p->closed)
            p->mark = p->fed;
        else if (p->fed - p->mark > p->lim.max_stanza_bytes && p->lim.max_stanza_bytes)
            fail(p, ST_XML_ERR_POLICY, "stanza too large");
    }
    int rc = 0;
    if (p->perr && !p->perr_reported) {
        p->perr_reported = true;
        drop_stanza(p);
        free_expat(p); /* nothing more will be parsed until reset */
        if (p->cb.error)
            p->cb.error(p->ud, p->perr, p->perr_text ? p->perr_text : "error");
    }
    p->in_feed = false;
    if (p->perr)
        rc = err_rc(p->perr);
    if (p->reset_req) {
        do_reset(p);
        return rc ? rc : ST_ECLOSED;
    }
    if (rc)
        return rc;
    if (p->stop_req)
        return ST_ECLOSED;
    maybe_hibernate(p);
    return 0;
}

void st_xml_parser_stop(struct st_xml_parser *p)
{
    p->stop_req = true;
    if (p->in_feed)
        after_callback(p);
}

void st_xml_parser_reset(struct st_xml_parser *p)
{
    if (p->in_feed) {
        p->reset_req = true;
        after_callback(p);
        return;
    }
    do_reset(p);
}

size_t st_xml_parser_memory(const struct st_xml_parser *p)
{
    return sizeof *p + (p->ex ? p->ex->mem : 0) + p->text.cap + p->decls.cap + p->tree_bytes +
           (p->synth ? p->synth_len + 1 : 0);
}

/* ---- one element on its own ---- */

struct one {
    struct st_xml *got;
    unsigned count;
    enum st_xml_parse_error err;
    bool closed;
};

static void one_stanza(void *ud, struct st_xml *x)
{
    struct one *o = ud;
    if (o->count++ == 0)
        o->got = x;
    else
        st_xml_unref(x);
}

static void one_error(void *ud, enum st_xml_parse_error err, const char *text)
{
    (void)text;
    ((struct one *)ud)->err = err;
}

static void one_close(void *ud)
{
    ((struct one *)ud)->closed = true;
}

struct st_xml *st_xml_parse_one(const char *data, size_t len, const char *ns,
                                const struct st_xml_limits *limits,
                                enum st_xml_parse_error *err)
{
    static const char close_tag[] = "</stream:stream>";
    char open_tag[256];
    int n = snprintf(open_tag, sizeof open_tag,
                     "<stream:stream xmlns='%s' xmlns:stream='" ST_NS_STREAMS "'>", ns);
    assert(n > 0 && (size_t)n < sizeof open_tag);
    /* An XML declaration may only start a document; clients send one anyway. */
    if (len > 5 && memcmp(data, "<?xml", 5) == 0) {
        const char *e = memchr(data, '>', len);
        if (e) {
            len -= (size_t)(e + 1 - data);
            data = e + 1;
        }
    }
    struct one o = {0};
    struct st_xml_parser_cb cb = {.stanza = one_stanza, .error = one_error,
                                  .stream_close = one_close};
    struct st_xml_parser *p = st_xml_parser_new(&cb, &o, limits);
    p->pooled = false; /* any thread: the pools are per thread and only loops drain theirs */
    int rc = st_xml_parser_feed(p, open_tag, (size_t)n);
    if (rc == 0)
        rc = st_xml_parser_feed(p, data, len);
    if (rc == 0 && !o.err)
        rc = st_xml_parser_feed(p, close_tag, sizeof close_tag - 1);
    st_xml_parser_free(p);
    if (o.err || rc != 0 || o.count != 1 || !o.closed) {
        st_xml_unref(o.got);
        *err = o.err ? o.err : ST_XML_ERR_NOT_WELL_FORMED;
        return NULL;
    }
    return o.got;
}
