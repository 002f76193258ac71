/* Stream and stanza error builders (RFC 6120 §4.9, §8.3). */
#ifndef ST_XMPP_ERRORS_H
#define ST_XMPP_ERRORS_H

#include <stdbool.h>

struct st_buf;

/* Appends <stream:error><COND xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>[<text>]</stream:error>
 * to out. Returns 0 or ST_ELIMIT. */
int st_stream_error_write(struct st_buf *out, const char *condition, const char *text);
/* The stream error condition for a stream parser error (RFC 6120 §4.9.3, §11). */
enum st_xml_parse_error;
const char *st_stream_error_for_parse(enum st_xml_parse_error err);
/* True when condition is a defined stream error condition (RFC 6120 §4.9.3). */
bool st_stream_error_valid(const char *condition);
/* True when condition is a defined stanza error condition (RFC 6120 §8.3.3). */
bool st_stanza_error_valid(const char *condition);

#endif
