/* Cryptographically secure random identifiers (OpenSSL RAND_bytes). */
#ifndef ST_BASE_RAND_H
#define ST_BASE_RAND_H

#include <stddef.h>

/* Fills buf with n random bytes; returns 0 or ST_EIO. Any thread. */
int st_rand_bytes(void *buf, size_t n);
/* Writes a random identifier of `bits` bits of entropy (rounded up to a whole byte) as
 * lowercase hex into out (size outlen, NUL-terminated); returns 0, ST_ELIMIT if it does
 * not fit, or ST_EIO. */
int st_rand_id(char *out, size_t outlen, unsigned bits);

#endif
