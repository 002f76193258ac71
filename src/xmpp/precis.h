/* PRECIS (RFC 8264) string classes and the two RFC 8265 profiles XMPP
 * needs: UsernameCaseMapped (RFC 8265 §3.3, JID localparts per RFC 7622
 * §3.3) and OpaqueString (RFC 8265 §4.2, JID resourceparts per RFC 7622
 * §3.4, and passwords). Code point properties are derived at run time from
 * the Unicode data in utf8proc following RFC 8264 §8 and §9, with the
 * CONTEXTJ/CONTEXTO rules of RFC 5892 Appendix A and the Bidi Rule of
 * RFC 5893 §2. Pure-ASCII input takes a fast path that gives the same
 * result without any normalisation work. */
#ifndef ST_XMPP_PRECIS_H
#define ST_XMPP_PRECIS_H

#include <stddef.h>
#include <stdint.h>

/* The derived property of a code point in a string class (RFC 8264 §8). */
enum st_precis_prop {
    ST_PRECIS_PVALID = 0,
    ST_PRECIS_CONTEXTJ,    /* valid only where RFC 5892 §A.1/§A.2 allow */
    ST_PRECIS_CONTEXTO,    /* valid only where RFC 5892 §A.3–§A.9 allow */
    ST_PRECIS_DISALLOWED,
    ST_PRECIS_UNASSIGNED,
};

/* The two PRECIS string classes (RFC 8264 §4.2, §4.3). */
enum st_precis_class {
    ST_PRECIS_IDENTIFIER,
    ST_PRECIS_FREEFORM,
};

enum st_precis_profile {
    ST_PRECIS_USERNAME_CASEMAPPED, /* RFC 8265 §3.3 */
    ST_PRECIS_OPAQUE_STRING,       /* RFC 8265 §4.2 */
};

/* Flags for st_precis_enforce. */
#define ST_PRECIS_NO_FASTPATH 1u /* always take the Unicode path (tests, fuzzing) */

/* Returns the derived property of code point cp in class cls (RFC 8264 §8). Pure; any thread. */
enum st_precis_prop st_precis_property(int32_t cp, enum st_precis_class cls);

/* Applies the enforcement rules of profile to the UTF-8 string in[0..len) (RFC 8264 §7:
 * width, additional and case mapping, NFC, directionality, then the class check), repeated
 * until the result is stable so that enforcing an output again returns it unchanged.
 * Borrows in (need not be NUL-terminated). On success stores a new NUL-terminated string in
 * *out (caller frees with st_free) and returns 0. Returns ST_EINVAL for invalid UTF-8, an
 * empty result, any code point the class does not allow in its context, a Bidi Rule
 * violation (UsernameCaseMapped), or a result longer than max_out octets (0 = no limit);
 * *out is NULL then. flags: 0 or ST_PRECIS_NO_FASTPATH. Any thread. */
int st_precis_enforce(enum st_precis_profile profile, const char *in, size_t len, size_t max_out,
                      unsigned flags, char **out);

#endif
