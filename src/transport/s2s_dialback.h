/* Server Dialback keys (XEP-0220 §2.1.2, XEP-0185): what the originating
 * server sends in <db:result/> and what it, as the authoritative server,
 * recomputes to answer <db:verify/>. Pure functions, no server state. */
#ifndef ST_TRANSPORT_S2S_DIALBACK_H
#define ST_TRANSPORT_S2S_DIALBACK_H

#include <stdbool.h>
#include <stddef.h>

#define ST_DIALBACK_KEY_HEX 65 /* 64 hex digits + NUL */

/* Writes the dialback key for (receiving domain, originating domain, stream id) under
 * secret as 64 lowercase hex digits into out (ST_DIALBACK_KEY_HEX bytes). XEP-0185 §3 uses
 * HMAC-SHA-256 keyed with SHA-256(secret); its message here is the unambiguous encoding
 * len(receiving) || receiving || len(originating) || originating || len(id) || id with each
 * length a 4-byte big-endian integer, so no two different triples produce the same input.
 * Borrows everything. Returns 0 or ST_EIO. Any thread. */
int st_dialback_key(const unsigned char *secret, size_t secret_len, const char *receiving,
                    const char *originating, const char *stream_id,
                    char out[ST_DIALBACK_KEY_HEX]);
/* True when key equals the key for the triple (constant-time comparison of the hex text). */
bool st_dialback_check(const unsigned char *secret, size_t secret_len, const char *receiving,
                       const char *originating, const char *stream_id, const char *key);

#endif
