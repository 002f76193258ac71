/* Stream and stanza error builders (RFC 6120 §4.9, §8.3). */
#ifndef ST_XMPP_ERRORS_H
#define ST_XMPP_ERRORS_H

#include <stdbool.h>

struct st_buf;

/* Appends <stream:error><COND xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>[<text>]</stream:error>
 * to out. Returns 0 or ST_ELIMIT. */
int st_stream_error_write(struct st_buf *out, const char *condition, const char *text);
/* True when condition is a defined stream error condition (RFC 6120 §4.9.3). */
bool st_stream_error_valid(const char *condition);
/* True when condition is a defined stanza error condition (RFC 6120 §8.3.3). */
bool st_stanza_error_valid(const char *condition);

#endif
