/* A fast reader for the common shape of a stanza, used by the stream parser
 * between stanzas instead of expat (see fastpath.c for the subset of XML it
 * accepts). Anything outside that subset is left to expat, which then sees
 * exactly the bytes it would have seen: the fast reader never reports an
 * error and never accepts what expat would refuse. */
#ifndef ST_XML_FASTPATH_H
#define ST_XML_FASTPATH_H

#include <stddef.h>

struct st_xml;

struct st_xml_fast_limits {
    const char *default_ns;  /* default namespace declared on the stream root, or NULL */
    size_t max_stanza_bytes; /* 0 = none; a longer stanza is left to expat */
    unsigned max_depth;      /* 0 = none; elements nested below the stream root */
    unsigned max_attrs;      /* 0 = none; attributes plus namespace declarations */
};

/* Reads one complete stanza at the start of s[0..n) (no leading whitespace). Returns the bytes
 * it spans with *out a new tree (refcount 1, raw_inner set when it has children), or 0 with
 * *out NULL when the input is incomplete or outside the subset: the caller gives it to expat. */
size_t st_xml_fast_stanza(const char *s, size_t n, const struct st_xml_fast_limits *lim,
                          struct st_xml **out);

#endif
