/* SCRAM (RFC 5802, RFC 7677) with SHA-1, SHA-256 and SHA-512, server side,
 * and the credential derivation shared by the CLI (set password) and PLAIN
 * verification. Pure logic on OpenSSL: no I/O, no mutable global state (the
 * OpenSSL algorithms are fetched once per process, then only read); safe on
 * any thread. Channel binding (the -PLUS variants) takes the binding data
 * from the caller (tls-exporter, RFC 9266; tls-server-end-point, RFC 5929). */
#ifndef ST_XMPP_SCRAM_H
#define ST_XMPP_SCRAM_H

#include <stdbool.h>
#include <stddef.h>

enum st_scram_hash { ST_SCRAM_SHA1 = 0, ST_SCRAM_SHA256 = 1, ST_SCRAM_SHA512 = 2 };
#define ST_SCRAM_NHASH 3
#define ST_SCRAM_MAX_DIGEST 64
#define ST_SCRAM_SALT_LEN 16
#define ST_SCRAM_MIN_ITERATIONS 4096

/* Stored credentials for one hash (RFC 5802 §3): never the password. */
struct st_scram_cred {
    unsigned char salt[ST_SCRAM_SALT_LEN];
    size_t salt_len;
    unsigned iterations;
    unsigned char stored_key[ST_SCRAM_MAX_DIGEST];
    unsigned char server_key[ST_SCRAM_MAX_DIGEST];
};

/* Returns the digest length in bytes for h. */
size_t st_scram_digest_len(enum st_scram_hash h);
/* Returns "SHA-1", "SHA-256" or "SHA-512" (the SCRAM mechanism suffix). */
const char *st_scram_hash_name(enum st_scram_hash h);

/* Derives credentials from a password (already SASLprep'd/OpaqueString-prepared by the caller)
 * with the given salt and iterations: SaltedPassword = PBKDF2, then StoredKey and ServerKey.
 * Borrows password and salt; fills *out. CPU-heavy: never on the loop thread. Returns 0,
 * ST_EINVAL (salt_len 0 or > ST_SCRAM_SALT_LEN, iterations 0 or > INT_MAX) or ST_EIO. */
int st_scram_derive(enum st_scram_hash h, const char *password, size_t pwlen,
                    const unsigned char *salt, size_t salt_len, unsigned iterations,
                    struct st_scram_cred *out);

/* Fills a dummy credential for an unknown user, deterministic in (secret, username), so
 * that a probing client sees a stable salt and the same flow as for a real user: salt =
 * HMAC-SHA-256(secret, "salt" || username) truncated to ST_SCRAM_SALT_LEN, iterations
 * ST_SCRAM_MIN_ITERATIONS, keys derived from the secret (no password derives to them).
 * Borrows secret and username. Cheap (no PBKDF2). Any thread. */
void st_scram_dummy_cred(enum st_scram_hash h, const unsigned char *secret, size_t secret_len,
                         const char *username, struct st_scram_cred *out);

/* Constant-time check that password derives to cred (PLAIN over SCRAM storage): re-derives
 * with cred's salt and iterations and compares StoredKey and ServerKey with CRYPTO_memcmp.
 * Borrows everything. Returns false on mismatch or error. CPU-heavy: not on the loop. */
bool st_scram_check_password(enum st_scram_hash h, const struct st_scram_cred *cred,
                             const char *password, size_t pwlen);

/* Server-side exchange state for one authentication attempt. */
struct st_scram_server;

/* Outcome of a step. */
enum st_scram_result {
    ST_SCRAM_CONTINUE = 0,      /* send *out as a challenge */
    ST_SCRAM_NEED_CRED,         /* call st_scram_server_set_cred for st_scram_server_user() */
    ST_SCRAM_SUCCESS,           /* authenticated; send *out as success additional data */
    ST_SCRAM_FAIL_MALFORMED,    /* <malformed-request/> */
    ST_SCRAM_FAIL_NOT_AUTHORIZED, /* <not-authorized/> (wrong proof, unknown user) */
    ST_SCRAM_FAIL_AUTHZID,      /* <invalid-authzid/> */
    ST_SCRAM_FAIL_CB,           /* channel binding mismatch or unsupported -> not-authorized */
};

/* Channel-binding facts the transport provides. */
struct st_scram_cb {
    bool plus;               /* the -PLUS mechanism was selected */
    bool server_supports_cb; /* the server advertised some -PLUS mechanism on this stream */
    const char *type;        /* binding type the server can produce for plus ("tls-exporter"
                                or "tls-server-end-point"), checked against the client's */
    /* Called (once, from st_scram_server_first) to fetch binding data for the client's
     * requested type; returns length or -1. At most ST_SCRAM_MAX_CB_DATA bytes are used.
     * If type is NULL any type get_data can produce is accepted. */
    int (*get_data)(void *ud, const char *type, unsigned char *out, size_t outlen);
    void *ud;
};

#define ST_SCRAM_MAX_CB_DATA 128
/* Client messages longer than this are rejected as malformed. */
#define ST_SCRAM_MAX_MSG 4096

/* Returns a new exchange for hash h (never NULL). cb is copied, type included; get_data and
 * ud are borrowed until the exchange is freed. cb may be NULL (no TLS: no channel binding).
 * An exchange is used by one thread at a time. */
struct st_scram_server *st_scram_server_new(enum st_scram_hash h, const struct st_scram_cb *cb);
/* Frees the exchange and wipes its secrets. */
void st_scram_server_free(struct st_scram_server *s);
/* Processes client-first-message (the SASL payload already base64-decoded; borrowed).
 * On ST_SCRAM_NEED_CRED the caller fetches credentials for st_scram_server_user() and calls
 * st_scram_server_set_cred, which produces server-first. Fails with FAIL_MALFORMED (syntax,
 * m= extension, empty username, bad =XX escape, > ST_SCRAM_MAX_MSG, -PLUS without 'p=')
 * or FAIL_CB ('p=' on a non-PLUS mechanism or with an unsupported type; 'y' while the
 * server advertised -PLUS: RFC 5802 §6 downgrade). Any failure ends the exchange. */
enum st_scram_result st_scram_server_first(struct st_scram_server *s, const char *msg, size_t len);
/* Returns the username from client-first, =2C/=3D decoded but otherwise raw (the caller
 * applies the JID localpart profile); borrowed, valid until free; or NULL before first. */
const char *st_scram_server_user(const struct st_scram_server *s);
/* Returns the decoded authzid from the GS2 header (borrowed), or NULL if none. Deciding
 * whether it is allowed is the caller's job (ST_SCRAM_FAIL_AUTHZID is for its use). */
const char *st_scram_server_authzid(const struct st_scram_server *s);
/* Provides credentials (cred NULL = unknown user: a dummy is used and the exchange will fail
 * at the proof like a wrong password). On return *out (new string, caller frees) is
 * server-first-message. Returns ST_SCRAM_CONTINUE. */
enum st_scram_result st_scram_server_set_cred(struct st_scram_server *s,
                                              const struct st_scram_cred *cred,
                                              const unsigned char *dummy_secret, size_t secret_len,
                                              char **out);
/* Processes client-final-message (borrowed); on ST_SCRAM_SUCCESS *out is server-final
 * ("v=...", new string, caller frees), otherwise *out is NULL. c= must equal
 * base64(gs2-header [+ cb data]) exactly (else FAIL_CB), r= the combined nonce (else
 * FAIL_NOT_AUTHORIZED), p= last and digest-sized (else FAIL_MALFORMED); a wrong proof or a
 * dummy credential gives FAIL_NOT_AUTHORIZED. The exchange is finished afterwards. */
enum st_scram_result st_scram_server_final(struct st_scram_server *s, const char *msg, size_t len,
                                           char **out);

/* TEST ONLY: fixes the server nonce part (printable, no ',') instead of a random one, so the
 * RFC 5802/7677 example exchanges can be reproduced. Call between st_scram_server_first and
 * st_scram_server_set_cred. Never use outside tests. Returns 0 or ST_EINVAL. */
int st_scram_server_set_nonce_for_test(struct st_scram_server *s, const char *nonce);

/* Base64 helpers (RFC 4648 §4: standard alphabet, padded). Encode returns a new
 * NUL-terminated string (caller frees with st_free). Decode is strict: length a multiple
 * of 4, no whitespace or characters outside the alphabet, '=' only as final padding, unused
 * bits zero; returns the decoded length, or -1 when invalid or longer than outmax. */
char *st_base64_encode(const unsigned char *in, size_t len);
long st_base64_decode(const char *in, size_t len, unsigned char *out, size_t outmax);

#endif
