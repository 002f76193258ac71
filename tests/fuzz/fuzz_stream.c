/* libFuzzer target for the XMPP stream parser (src/xml/parser.c, RFC 6120 §4
 * and §11). The first input bytes choose the limits, a stanza number at which
 * a callback resets the parser (stream restart, RFC 6120 §5.4.3.3) and the
 * chunk sizes; the rest is the stream. Each input is parsed twice, in chunks
 * and in one piece, and the results must agree (chunk boundaries and the
 * parser's hibernation between stanzas must be invisible). Every stanza is
 * serialised, parsed again and serialised again, which must give the same
 * text; a stanza that kept its children as received is also serialised that
 * way (as the router forwards it), which parsed again must give the same tree.
 * No callback may follow an error.
 *
 * Built with -fsanitize=fuzzer for libFuzzer; with -DST_FUZZ_STANDALONE it
 * becomes a plain program that runs the files (or directories of files)
 * named on its command line, for short regression runs in `make test`. */
#include "base/buf.h"
#include "base/err.h"
#include "base/mem.h"
#include "xml/node.h"
#include "xml/parser.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "fuzz_stream: check failed: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

struct run {
    struct st_xml_parser *p;
    struct st_buf out; /* everything reported, as text */
    int errors;
    enum st_xml_parse_error err;
    int nstanzas;
    int reset_at;
};

static const char reparse_hdr[] = "<stream:stream xmlns='jabber:client' "
                                  "xmlns:stream='http://etherx.jabber.org/streams'>";

static void rp_stanza(void *ud, struct st_xml *s)
{
    struct st_xml **slot = ud;
    CHECK(!*slot);
    *slot = s;
}

/* Serialises the tree of s (a copy has no children as received) into b. */
static void canon(const struct st_xml *s, struct st_buf *b)
{
    struct st_xml *c = st_xml_copy(s);
    CHECK(st_xml_serialize(c, ST_NS_CLIENT, b) == 0);
    st_xml_unref(c);
}

/* Parses text (one stanza) and checks that its tree serialises to want. */
static void check_roundtrip(const char *text, const char *want)
{
    static const struct st_xml_parser_cb cb = {NULL, rp_stanza, NULL, NULL};
    struct st_xml_limits lim = {1 << 24, 1 << 16, 1 << 16};
    struct st_xml *again = NULL;
    struct st_xml_parser *p = st_xml_parser_new(&cb, &again, &lim);
    CHECK(st_xml_parser_feed(p, reparse_hdr, sizeof reparse_hdr - 1) == 0);
    CHECK(st_xml_parser_feed(p, text, strlen(text)) == 0);
    CHECK(again);
    struct st_buf b;
    st_buf_init(&b, 0);
    canon(again, &b);
    CHECK(strcmp(b.data, want) == 0);
    st_buf_free(&b);
    st_xml_unref(again);
    st_xml_parser_free(p);
}

static void on_open(void *ud, const struct st_xml *h)
{
    struct run *r = ud;
    CHECK(!r->errors);
    CHECK(h->type == ST_XML_ELEMENT && !h->first_child);
    st_buf_printf(&r->out, "open {%s}%s %u\n", h->ns, h->name, h->nattrs);
}

static void on_stanza(void *ud, struct st_xml *s)
{
    struct run *r = ud;
    CHECK(!r->errors);
    struct st_buf b;
    st_buf_init(&b, 0);
    canon(s, &b);
    st_buf_append(&r->out, b.data, b.len);
    st_buf_puts(&r->out, "\n");
    check_roundtrip(b.data, b.data);
    if (s->raw_inner) {
        struct st_buf fw;
        st_buf_init(&fw, 0);
        CHECK(st_xml_serialize(s, ST_NS_CLIENT, &fw) == 0);
        check_roundtrip(fw.data, b.data);
        st_buf_free(&fw);
    }
    st_buf_free(&b);
    struct st_xml *c = st_xml_copy(s);
    st_xml_unref(s);
    st_xml_unref(c);
    if (++r->nstanzas == r->reset_at)
        st_xml_parser_reset(r->p);
}

static void on_close(void *ud)
{
    struct run *r = ud;
    CHECK(!r->errors);
    st_buf_puts(&r->out, "close\n");
}

static void on_error(void *ud, enum st_xml_parse_error err, const char *text)
{
    struct run *r = ud;
    CHECK(!r->errors && text);
    r->errors++;
    r->err = err;
    st_buf_printf(&r->out, "error %d\n", (int)err);
}

static const struct st_xml_parser_cb callbacks = {on_open, on_stanza, on_close, on_error};

/* Parses data in chunks of the sizes given (cycled; NULL = one piece, or two pieces when
 * first > 0: first bytes, then the rest, which puts everything after a header that ends the
 * first piece through the fast reader, src/xml/fastpath.c). After a reset
 * requested from a callback the rest of that chunk is dropped, as the contract says;
 * to keep both runs comparable the chunked run only resets when chunks are disabled. */
static void run_once(struct run *r, const struct st_xml_limits *lim, const uint8_t *sizes,
                     size_t nsizes, size_t first, const uint8_t *data, size_t len, int reset_at)
{
    memset(r, 0, sizeof *r);
    st_buf_init(&r->out, 0);
    r->reset_at = reset_at;
    r->p = st_xml_parser_new(&callbacks, r, lim);
    size_t off = 0, k = 0;
    while (off < len) {
        size_t n = len - off;
        if (off == 0 && first && first < n)
            n = first;
        if (nsizes) {
            size_t want = (size_t)sizes[k++ % nsizes] + 1;
            if (want < n)
                n = want;
        }
        int rc = st_xml_parser_feed(r->p, (const char *)data + off, n);
        CHECK(rc == 0 || rc == ST_ECLOSED || r->errors);
        CHECK(!r->errors || (rc < 0 && rc != ST_ECLOSED));
        if (rc == ST_ECLOSED)
            st_buf_puts(&r->out, "restart\n");
        if (r->errors) {
            CHECK(st_xml_parser_feed(r->p, "<x/>", 4) < 0);
            break;
        }
        off += n;
    }
}

static void run_free(struct run *r)
{
    st_xml_parser_free(r->p);
    st_buf_free(&r->out);
}

/* POLICY may fire at different points (limits are checked per event and per slice);
 * when only one run failed, the other may just be waiting for more input, so its
 * output must be a prefix of the failed run's. */
static void same_output(const struct run *whole, const struct run *other, const char *how)
{
    if ((whole->errors && whole->err == ST_XML_ERR_POLICY) ||
        (other->errors && other->err == ST_XML_ERR_POLICY))
        return;
    const char *a = whole->out.data ? whole->out.data : "";
    const char *b = other->out.data ? other->out.data : "";
    bool ok;
    if (whole->errors == other->errors)
        ok = strcmp(a, b) == 0;
    else if (whole->errors)
        ok = strncmp(a, b, strlen(b)) == 0;
    else
        ok = strncmp(a, b, strlen(a)) == 0;
    if (!ok) {
        fprintf(stderr, "--- whole\n%s--- %s\n%s", a, how, b);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t ctl = data[0];
    size_t nsizes = data[1] & 7;
    if (size < 2 + nsizes)
        return 0;
    const uint8_t *sizes = data + 2;
    const uint8_t *body = data + 2 + nsizes;
    size_t len = size - 2 - nsizes;

    struct st_xml_limits lim = {1 << 20, 64, 64};
    if (ctl & 1)
        lim = (struct st_xml_limits){256, 3, 3};
    int reset_at = (ctl >> 1) & 3; /* 0: never */

    /* Whole input in one feed, then in chunks (hibernation happens between them), then the
     * header alone and the rest in one piece (the fast reader). */
    const uint8_t *gt = memchr(body, '>', len);
    size_t first = gt ? (size_t)(gt - body) + 1 : 0;
    struct run whole, chunked, split;
    run_once(&whole, &lim, NULL, 0, 0, body, len, reset_at);
    run_once(&chunked, &lim, sizes, nsizes ? nsizes : 1, 0, body, len, 0);
    run_once(&split, &lim, NULL, 0, first, body, len, 0);
    if (!reset_at) {
        same_output(&whole, &chunked, "chunked");
        same_output(&whole, &split, "split");
    }
    run_free(&whole);
    run_free(&chunked);
    run_free(&split);
    return 0;
}

#define ST_FUZZ_NAME "fuzz_stream"
#include "standalone.h"
