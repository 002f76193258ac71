/* JIDs (RFC 7622): parsing, PRECIS preparation and comparison.
 * Localparts use the UsernameCaseMapped profile (RFC 8265 §3.3),
 * resourceparts the OpaqueString profile (RFC 8265 §4.2), domainparts
 * IDNA2008 via libidn2 with UTS-46 mapping, lowercased, trailing dot
 * stripped (RFC 7622 §3.2). Each part is at most 1023 octets. A prepared
 * JID is canonical: equal JIDs have equal strings. */
#ifndef ST_XMPP_JID_H
#define ST_XMPP_JID_H

#include <stdbool.h>
#include <stddef.h>

#define ST_JID_PART_MAX 1023

struct st_jid {
    char *local;    /* NULL when absent */
    char *domain;   /* never NULL in a valid JID */
    char *resource; /* NULL when absent */
    char *full;     /* canonical string "local@domain/resource" */
    char *bare;     /* canonical "local@domain" or "domain" */
};

/* Parses and prepares s into out (all fields newly allocated). Returns 0, or ST_EINVAL for a
 * malformed JID (the caller answers jid-malformed). out is zeroed on failure. */
int st_jid_parse(const char *s, struct st_jid *out);
/* Builds and prepares a JID from parts (local and resource may be NULL). */
int st_jid_make(const char *local, const char *domain, const char *resource, struct st_jid *out);
/* Frees the strings in j and zeroes it. */
void st_jid_clear(struct st_jid *j);
/* Deep-copies src into dst. */
void st_jid_copy(struct st_jid *dst, const struct st_jid *src);
/* Returns true when both are the same canonical JID (full comparison). */
bool st_jid_equal(const struct st_jid *a, const struct st_jid *b);

/* Part preparation; each returns a new string in *out or ST_EINVAL. */
int st_jid_prep_local(const char *in, size_t len, char **out);
int st_jid_prep_domain(const char *in, size_t len, char **out);
int st_jid_prep_resource(const char *in, size_t len, char **out);

/* Returns a new string with s prepared as a JID (canonical form), or NULL when invalid. */
char *st_jid_prep_string(const char *s);

#endif
