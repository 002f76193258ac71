/* The XEP-0114 §3 handshake digest: hex(SHA-1(stream id || secret)),
 * compared in constant time. Kept apart from the stream code so it can be
 * unit tested with OpenSSL alone. */
#include <ctype.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "transport/component.h"

void st_component_digest(const char *stream_id, const char *secret, char out[41])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    out[0] = '\0';
    if (!ctx)
        return;
    if (EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
        EVP_DigestUpdate(ctx, stream_id, strlen(stream_id)) == 1 &&
        EVP_DigestUpdate(ctx, secret, strlen(secret)) == 1 &&
        EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 20) {
        for (unsigned i = 0; i < 20; i++) {
            out[2 * i] = hex[md[i] >> 4];
            out[2 * i + 1] = hex[md[i] & 15];
        }
        out[40] = '\0';
    }
    EVP_MD_CTX_free(ctx);
}

bool st_component_digest_ok(const char *stream_id, const char *secret, const char *given)
{
    char want[41], got[41];
    st_component_digest(stream_id, secret, want);
    if (!given || strlen(want) != 40)
        return false;
    /* Surrounding whitespace is tolerated: some components pretty-print. */
    while (*given && isspace((unsigned char)*given))
        given++;
    size_t n = strlen(given);
    while (n && isspace((unsigned char)given[n - 1]))
        n--;
    if (n != 40)
        return false;
    for (size_t i = 0; i < 40; i++)
        got[i] = (char)tolower((unsigned char)given[i]);
    got[40] = '\0';
    return CRYPTO_memcmp(want, got, 40) == 0;
}
