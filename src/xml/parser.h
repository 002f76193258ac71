/* XMPP stream parser on expat (RFC 6120 §4, §11). Reports the stream
 * header, each complete top-level stanza as a tree, and the stream close.
 * Enforces the bounds given at creation: stanza size in bytes, element
 * depth, attributes per element. Rejects restricted XML (RFC 6120 §11.1:
 * comments, processing instructions, DOCTYPE/DTD, entity declarations) from
 * expat's callbacks, before any expansion happens. A stream restart
 * (after STARTTLS or SASL) needs st_xml_parser_reset, which discards any
 * unparsed input. */
#ifndef ST_XML_PARSER_H
#define ST_XML_PARSER_H

#include <stdbool.h>
#include <stddef.h>

struct st_xml;

/* Why the parser stopped; the transport maps these to stream error conditions. */
enum st_xml_parse_error {
    ST_XML_ERR_NOT_WELL_FORMED = 1,  /* <not-well-formed/> */
    ST_XML_ERR_RESTRICTED,           /* <restricted-xml/> */
    ST_XML_ERR_POLICY,               /* <policy-violation/>: size, depth or attribute limits */
    ST_XML_ERR_UNSUPPORTED_ENCODING, /* <unsupported-encoding/>: XML declaration names other than
                                        UTF-8 */
    ST_XML_ERR_BAD_PREFIX,           /* <bad-namespace-prefix/>: undeclared prefix */
};

/* A limit of 0 means no limit. max_attrs counts namespace declarations too. */
struct st_xml_limits {
    size_t max_stanza_bytes; /* bytes of one top-level stanza as received */
    unsigned max_depth;      /* element nesting below the stream root */
    unsigned max_attrs;      /* attributes per element */
};

struct st_xml_parser_cb {
    /* The stream root opened. header is a childless element (borrowed, valid during the call)
     * with its namespace and attributes; declared namespaces appear as attributes named
     * "xmlns" (default) and "xmlns:PREFIX" so the transport can check them. */
    void (*stream_open)(void *ud, const struct st_xml *header);
    /* One complete top-level stanza; ownership passes to the callee (unref when done). */
    void (*stanza)(void *ud, struct st_xml *stanza);
    /* The stream root closed (</stream:stream>). */
    void (*stream_close)(void *ud);
    /* Parsing stopped with an error; no further callbacks follow until reset. text is a
     * short diagnostic for logs (never contains payload). */
    void (*error)(void *ud, enum st_xml_parse_error err, const char *text);
};

struct st_xml_parser;

/* Returns a new parser. cb is copied; ud is passed to every callback. */
struct st_xml_parser *st_xml_parser_new(const struct st_xml_parser_cb *cb, void *ud,
                                        const struct st_xml_limits *limits);
/* Frees the parser (any partial stanza is dropped). May not be called from inside a callback. */
void st_xml_parser_free(struct st_xml_parser *p);
/* Changes the limits (e.g. the larger stanza size after authentication). */
void st_xml_parser_set_limits(struct st_xml_parser *p, const struct st_xml_limits *limits);
/* Feeds bytes. Callbacks run synchronously from inside this call. Returns 0, or the negative
 * ST_E* value after an error (the error callback has been called), or ST_ECLOSED when a
 * callback asked for a stop or reset (the remaining input of this call is discarded).
 * Must not be called from inside one of this parser's callbacks. Between stanzas the parser
 * frees its expat state and rebuilds it on the next feed, invisibly (see parser.c). */
int st_xml_parser_feed(struct st_xml_parser *p, const char *data, size_t len);
/* Asks the parser to stop after the current callback; safe from inside callbacks. Remaining
 * input of the current feed is discarded; later feeds are ignored until reset. */
void st_xml_parser_stop(struct st_xml_parser *p);
/* Prepares the parser for a new stream (stream restart). Safe from inside callbacks: the
 * reset happens when the current feed returns and the rest of that feed's input is
 * discarded (RFC 6120 §5.4.3.3: no plaintext may survive STARTTLS). */
void st_xml_parser_reset(struct st_xml_parser *p);
/* Parses data as exactly one complete element, as if it were the only child of a stream whose
 * default namespace is ns (a constant such as ST_NS_CLIENT): for framed transports that carry
 * one stanza per message, and for stanzas read back from storage. A leading XML declaration is
 * skipped. Returns a new reference, or NULL with *err set (ST_XML_ERR_NOT_WELL_FORMED also
 * when the data is not exactly one element). Any thread. */
struct st_xml *st_xml_parse_one(const char *data, size_t len, const char *ns,
                                const struct st_xml_limits *limits,
                                enum st_xml_parse_error *err);
/* Between top-level stanzas the parser releases expat's state ("hibernation", ~0.3 KiB
 * instead of ~10 KiB; waking costs a few microseconds). Releasing it only after a stream has
 * been quiet for a while measured worse: freed late, parser states interleave with
 * long-lived allocations and ~2 KiB per idle session stays resident (docs/PERFORMANCE.md). */
/* Returns approximate bytes of memory held by the parser (for accounting): about 350 bytes
 * while idle between stanzas, ~10 KiB while expat is awake, plus any stanza being built. */
size_t st_xml_parser_memory(const struct st_xml_parser *p);
/* Frees the calling thread's pool of idle expat parsers (at shutdown of a loop thread). */
void st_xml_parser_pool_drain(void);

#endif
