/* Dialback key derivation (XEP-0185 §3, XEP-0220 §2.1.2): HMAC-SHA-256 with
 * SHA-256(secret) as the key over a length-prefixed encoding of the receiving
 * domain, the originating domain and the stream id. XEP-0185 concatenates
 * the three with spaces; domains cannot contain spaces but stream ids are
 * chosen by the peer, so the length prefixes keep (a, "b c") and ("a b", c)
 * apart. Only this server ever checks its own keys, so the encoding is ours
 * to choose. */
#include "transport/s2s_dialback.h"

#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "base/err.h"
#include "base/mem.h"

static int put_field(EVP_MAC_CTX *ctx, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n > UINT32_MAX)
        return ST_EINVAL;
    unsigned char len[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                            (unsigned char)(n >> 8), (unsigned char)n};
    if (EVP_MAC_update(ctx, len, sizeof len) != 1)
        return ST_EIO;
    if (n && EVP_MAC_update(ctx, (const unsigned char *)s, n) != 1)
        return ST_EIO;
    return 0;
}

int st_dialback_key(const unsigned char *secret, size_t secret_len, const char *receiving,
                    const char *originating, const char *stream_id,
                    char out[ST_DIALBACK_KEY_HEX])
{
    out[0] = '\0';
    unsigned char k[SHA256_DIGEST_LENGTH];
    if (!SHA256(secret, secret_len, k))
        return ST_EIO;
    int rc = ST_EIO;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    char digest_name[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string("digest", digest_name, 0),
        OSSL_PARAM_construct_end(),
    };
    unsigned char md[EVP_MAX_MD_SIZE];
    size_t mdlen = 0;
    if (!ctx || EVP_MAC_init(ctx, k, sizeof k, params) != 1)
        goto out;
    if (put_field(ctx, receiving) || put_field(ctx, originating) || put_field(ctx, stream_id))
        goto out;
    if (EVP_MAC_final(ctx, md, &mdlen, sizeof md) != 1 || mdlen != 32)
        goto out;
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < mdlen; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[2 * mdlen] = '\0';
    rc = 0;
out:
    st_memzero(k, sizeof k);
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return rc;
}

bool st_dialback_check(const unsigned char *secret, size_t secret_len, const char *receiving,
                       const char *originating, const char *stream_id, const char *key)
{
    char want[ST_DIALBACK_KEY_HEX];
    if (!key || st_dialback_key(secret, secret_len, receiving, originating, stream_id, want))
        return false;
    size_t n = strlen(key);
    if (n != 64)
        return false;
    return CRYPTO_memcmp(want, key, 64) == 0;
}
