/* Random identifiers from OpenSSL's CSPRNG (see rand.h). */
#include "base/rand.h"
#include "base/err.h"

#include <openssl/rand.h>

int st_rand_bytes(void *buf, size_t n)
{
    return RAND_bytes(buf, (int)n) == 1 ? 0 : ST_EIO;
}

int st_rand_id(char *out, size_t outlen, unsigned bits)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[64];
    size_t n = (bits + 7) / 8;
    if (n > sizeof raw || n * 2 + 1 > outlen)
        return ST_ELIMIT;
    if (st_rand_bytes(raw, n))
        return ST_EIO;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * n] = '\0';
    return 0;
}
