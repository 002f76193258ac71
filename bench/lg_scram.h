/* Client side of SASL for the load generator: PLAIN (RFC 4616) and
 * SCRAM-SHA-1 / SCRAM-SHA-256 without channel binding (RFC 5802 §3,
 * RFC 7677), plus the base64 coding both need (RFC 4648 §4). The salted
 * password is cached per account as mobile clients do (RFC 5802 §5.1 allows
 * a client to store SaltedPassword), so PBKDF2 runs once per account, not
 * once per login. */
#ifndef ST_BENCH_LG_SCRAM_H
#define ST_BENCH_LG_SCRAM_H

#include <stdbool.h>
#include <stddef.h>

enum st_bench_mech { ST_BENCH_PLAIN, ST_BENCH_SCRAM_SHA1, ST_BENCH_SCRAM_SHA256 };

#define ST_BENCH_SCRAM_MAX_KEY 32  /* SHA-256 output */
#define ST_BENCH_SASL_MAX 1024     /* largest SASL message we build or accept */

/* The salted password of one account, valid for one (salt, iterations) pair. */
struct st_bench_salted {
    char salt_b64[64];
    unsigned iterations;
    unsigned char key[ST_BENCH_SCRAM_MAX_KEY];
    bool valid;
};

/* One SCRAM exchange in progress. */
struct st_bench_scram {
    enum st_bench_mech mech;
    char client_first_bare[256];
    char auth_message[3 * ST_BENCH_SASL_MAX];
    unsigned char server_sig[ST_BENCH_SCRAM_MAX_KEY];
    char cnonce[32];
};

/* Returns the SASL mechanism name (static string). */
const char *st_bench_mech_name(enum st_bench_mech m);

/* Encodes n bytes of in as base64 into out (NUL-terminated). Returns the
 * length or -1 if out (size outsz) is too small. */
int st_bench_b64_encode(const void *in, size_t n, char *out, size_t outsz);

/* Decodes base64 text in (len n, whitespace not allowed) into out. Returns
 * the decoded length or -1 on bad input or if out (size outsz) is too small. */
int st_bench_b64_decode(const char *in, size_t n, unsigned char *out, size_t outsz);

/* Builds the base64 PLAIN initial response for user/password into out.
 * Returns its length or -1 if out is too small. Borrows all strings. */
int st_bench_plain_initial(const char *user, const char *password, char *out, size_t outsz);

/* Starts a SCRAM exchange: fills s and writes the base64 client-first
 * message into out. Returns its length or -1. Borrows user. */
int st_bench_scram_first(struct st_bench_scram *s, enum st_bench_mech mech, const char *user,
                         char *out, size_t outsz);

/* Answers the server-first message (base64 text b64, length n) with the
 * base64 client-final message in out. cache is the account's salted-password
 * cache: reused when salt and iteration count match, recomputed (PBKDF2)
 * otherwise; *pbkdf2_done is set when PBKDF2 ran. Returns its length or -1 on
 * a malformed challenge or a nonce that does not extend ours. */
int st_bench_scram_final(struct st_bench_scram *s, const char *b64, size_t n,
                         const char *password, struct st_bench_salted *cache, bool *pbkdf2_done,
                         char *out, size_t outsz);

/* Checks the server-final message (base64 b64, length n; "v=..."). Returns 0
 * if the server signature matches, -1 otherwise. */
int st_bench_scram_verify(const struct st_bench_scram *s, const char *b64, size_t n);

#endif
