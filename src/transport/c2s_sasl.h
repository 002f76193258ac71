/* SASL (RFC 6120 §6) and resource binding (RFC 6120 §7) for c2s streams. */
#ifndef ST_TRANSPORT_C2S_SASL_H
#define ST_TRANSPORT_C2S_SASL_H

struct c2s;
struct st_xml;

/* Appends <mechanisms/> (and XEP-0440 channel-binding types) to the features element. */
void st_c2s_sasl_features(struct c2s *c, struct st_xml *features);
/* Handles an element in the SASL namespace (auth, response, abort). Borrows x. */
void st_c2s_sasl_handle(struct c2s *c, struct st_xml *x);
/* Sends <failure><COND/></failure>, counting the attempt. */
void st_c2s_sasl_failure(struct c2s *c, const char *condition, const char *text);
/* Frees any exchange in progress. */
void st_c2s_sasl_clear(struct c2s *c);
/* Handles the bind IQ (borrows it). */
void st_c2s_bind(struct c2s *c, struct st_xml *iq);

#endif
