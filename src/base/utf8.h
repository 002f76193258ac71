/* UTF-8 well-formedness (RFC 3629): the one decoder the protocol code shares. */
#ifndef ST_BASE_UTF8_H
#define ST_BASE_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Returns the length (1-4) of the well-formed UTF-8 sequence at s[0..n) with its code point
 * in *cp, or 0 when it is ill-formed or cut short: overlong forms, surrogates and anything
 * above U+10FFFF are ill-formed. n > 0. */
size_t st_utf8_next(const unsigned char *s, size_t n, uint32_t *cp);

#endif
