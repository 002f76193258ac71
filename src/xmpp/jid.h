/* JIDs (RFC 7622): parsing, PRECIS preparation and comparison.
 * Localparts use the UsernameCaseMapped profile (RFC 8265 §3.3),
 * resourceparts the OpaqueString profile (RFC 8265 §4.2), domainparts
 * IDNA2008 via libidn2 with UTS-46 mapping, lowercased, trailing dot
 * stripped (RFC 7622 §3.2). Each part is at most 1023 octets. A prepared
 * JID is canonical: equal JIDs have equal strings.
 * The canonical domainpart is the Unicode form: every IDN label is stored
 * as its lowercase U-label ("xn--bcher-kva.example" and "Bücher.example"
 * both become "bücher.example"), since RFC 7622 §3.2 compares U-labels;
 * convert to A-labels only where DNS or TLS name matching needs them. IP
 * literals are kept as IPv4 dotted quads and bracketed IPv6 text in RFC 5952
 * form ("[::1]"). */
#ifndef ST_XMPP_JID_H
#define ST_XMPP_JID_H

#include <stdbool.h>
#include <stddef.h>

#define ST_JID_PART_MAX 1023

/* The five strings share one allocation owned by the struct: never free or reassign a field;
 * st_jid_clear frees them all. */
struct st_jid {
    char *local;    /* NULL when absent */
    char *domain;   /* never NULL in a valid JID */
    char *resource; /* NULL when absent */
    char *full;     /* canonical string "local@domain/resource" */
    char *bare;     /* canonical "local@domain" or "domain" */
};

/* Parses and prepares s into out (newly allocated, see struct st_jid). Returns 0, or ST_EINVAL
 * for a malformed JID (the caller answers jid-malformed). out is zeroed on failure.
 * Splitting follows RFC 7622 §3.1: the resourcepart is everything after the first '/', the
 * localpart everything before the first '@' that precedes it; a separator with an empty part
 * ("@d", "d/") is malformed. Borrows s. Any thread. */
int st_jid_parse(const char *s, struct st_jid *out);
/* Builds and prepares a JID from parts (local and resource may be NULL for absent; an empty
 * string is an empty part and so malformed). Borrows the strings; same results as
 * st_jid_parse. */
int st_jid_make(const char *local, const char *domain, const char *resource, struct st_jid *out);
/* Frees the strings in j and zeroes it. */
void st_jid_clear(struct st_jid *j);
/* Deep-copies src into dst. */
void st_jid_copy(struct st_jid *dst, const struct st_jid *src);
/* Returns true when both are the same canonical JID (full comparison). */
bool st_jid_equal(const struct st_jid *a, const struct st_jid *b);

/* Part preparation of in[0..len) (need not be NUL-terminated; borrowed). Each returns 0 with
 * a new NUL-terminated string in *out (caller frees with st_free), or ST_EINVAL with *out
 * NULL. Pure-ASCII input takes a fast path that skips Unicode normalisation. Any thread. */
int st_jid_prep_local(const char *in, size_t len, char **out);
int st_jid_prep_domain(const char *in, size_t len, char **out);
int st_jid_prep_resource(const char *in, size_t len, char **out);

/* Returns a new string with s prepared as a JID (canonical form), or NULL when invalid. */
char *st_jid_prep_string(const char *s);

enum st_jid_part { ST_JID_PART_LOCAL, ST_JID_PART_DOMAIN, ST_JID_PART_RESOURCE };
/* Prepares one part like st_jid_prep_local/_domain/_resource, but always through the full
 * Unicode path, never the pure-ASCII fast path. For tests and fuzzers, which check that both
 * paths agree; production code has no reason to call it. Borrows in; returns 0 with a new
 * string in *out (st_free), or ST_EINVAL with *out NULL. Any thread. */
int st_jid_prep_part_unicode(enum st_jid_part part, const char *in, size_t len, char **out);

#endif
