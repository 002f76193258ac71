/* SCRAM (RFC 5802, RFC 7677) with SHA-1, SHA-256 and SHA-512, server side,
 * and the credential derivation shared by the CLI (set password) and PLAIN
 * verification. Pure logic on OpenSSL: no I/O, no global state; safe on
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
 * CPU-heavy: never on the loop thread. Returns 0 or ST_EIO. */
int st_scram_derive(enum st_scram_hash h, const char *password, size_t pwlen,
                    const unsigned char *salt, size_t salt_len, unsigned iterations,
                    struct st_scram_cred *out);

/* Fills a dummy credential for an unknown user, deterministic in (secret, username), so
 * that a probing client sees a stable salt and the same flow as for a real user. Cheap. */
void st_scram_dummy_cred(enum st_scram_hash h, const unsigned char *secret, size_t secret_len,
                         const char *username, struct st_scram_cred *out);

/* Constant-time check that password derives to cred (PLAIN over SCRAM storage). CPU-heavy. */
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
    /* Called to fetch binding data for the client's requested type; returns length or -1. */
    int (*get_data)(void *ud, const char *type, unsigned char *out, size_t outlen);
    void *ud;
};

/* Returns a new exchange for hash h. cb is copied (may be NULL for no TLS). */
struct st_scram_server *st_scram_server_new(enum st_scram_hash h, const struct st_scram_cb *cb);
/* Frees the exchange and wipes its secrets. */
void st_scram_server_free(struct st_scram_server *s);
/* Processes client-first-message. On ST_SCRAM_NEED_CRED the caller fetches credentials for
 * st_scram_server_user() and calls st_scram_server_set_cred, which produces server-first. */
enum st_scram_result st_scram_server_first(struct st_scram_server *s, const char *msg, size_t len);
/* Returns the SASLprep'd username from client-first (borrowed), or NULL. */
const char *st_scram_server_user(const struct st_scram_server *s);
/* Returns the authzid from the GS2 header (borrowed), or NULL. */
const char *st_scram_server_authzid(const struct st_scram_server *s);
/* Provides credentials (cred NULL = unknown user: a dummy is used and the exchange will fail
 * at the proof like a wrong password). On return *out (new string, caller frees) is
 * server-first-message. Returns ST_SCRAM_CONTINUE. */
enum st_scram_result st_scram_server_set_cred(struct st_scram_server *s,
                                              const struct st_scram_cred *cred,
                                              const unsigned char *dummy_secret, size_t secret_len,
                                              char **out);
/* Processes client-final-message; on ST_SCRAM_SUCCESS *out is server-final ("v=..."). */
enum st_scram_result st_scram_server_final(struct st_scram_server *s, const char *msg, size_t len,
                                           char **out);

/* Base64 helpers (standard alphabet, padded). Decode returns length or -1 when invalid. */
char *st_base64_encode(const unsigned char *in, size_t len);
long st_base64_decode(const char *in, size_t len, unsigned char *out, size_t outmax);

#endif
