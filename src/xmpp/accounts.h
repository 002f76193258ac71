/* Local accounts: per (host, localpart) the SCRAM credentials for SHA-1, SHA-256 and
 * SHA-512 (RFC 5802 §3, RFC 7677), never the password, kept in the keyval store "accounts"
 * of the storage layer. Localparts are prepared with the UsernameCaseMapped profile
 * (RFC 8265 §3.3, via st_jid_prep_local), passwords with OpaqueString (RFC 8265 §4.2, via
 * st_jid_prep_resource), hosts as domains (RFC 7622 §3.2). The record format is described
 * in accounts.c. */
#ifndef ST_XMPP_ACCOUNTS_H
#define ST_XMPP_ACCOUNTS_H

#include <stdbool.h>

#include "storage/storage.h"
#include "xmpp/scram.h"

/* The keyval store holding account records. */
#define ST_ACCOUNT_STORE "accounts"
/* Upper bound on SCRAM iterations accepted for new credentials. */
#define ST_ACCOUNT_MAX_ITERATIONS 10000000u

/* Creates (replace false) or sets (replace true: creates or overwrites) the account
 * localpart@host with fresh random salts and the given iteration count (>=
 * ST_SCRAM_MIN_ITERATIONS) for all three hashes. Borrows everything; the prepared password
 * copy is wiped. Returns 0; ST_EINVAL for a localpart, host or password that fails its
 * profile (empty password included) or bad iterations; ST_EEXIST when replace is false and
 * the account exists (checked atomically by the store); or a storage error.
 * Blocking and CPU-heavy (three PBKDF2 runs plus a durable write): any thread but the loop's
 * -- the server must run it on a worker (in-band registration, password change). */
int st_account_create_sync(struct st_storage *st, const char *host, const char *localpart,
                           const char *password, unsigned iterations, bool replace);

/* Deletes the account and every other stored item of that user (keyval, map and archive
 * data). Returns 0, ST_ENOTFOUND when there is no such account, ST_EINVAL for a bad
 * localpart/host, or a storage error. Blocking: not on the loop thread. */
int st_account_delete_sync(struct st_storage *st, const char *host, const char *localpart);

/* Returns 1 when the account exists, 0 when not (also for a localpart that fails its
 * profile), or a negative storage error. Blocking: not on the loop thread. */
int st_account_exists_sync(struct st_storage *st, const char *host, const char *localpart);

/* Calls fn(ud, host, localpart) for every account of host (NULL = every host), sorted by
 * host then localpart (bytewise). The strings are borrowed for the call. fn may call the
 * storage. Returns 0 or an error. Blocking: not on the loop thread. */
int st_account_list_sync(struct st_storage *st, const char *host,
                         void (*fn)(void *ud, const char *host, const char *localpart),
                         void *ud);

/* Callback of st_account_get_cred: rc 0 with cred (borrowed, valid during the call only),
 * ST_ENOTFOUND for no such account (cred NULL), ST_EIO for an undecodable record (logged),
 * or a storage error. Loop thread. */
typedef void (*st_account_cred_cb)(void *ud, int rc, const struct st_scram_cred *cred);

/* Fetches the stored credentials of localpart@host for hash h, for SASL (SCRAM, or PLAIN via
 * st_scram_check_password on a worker). localpart is prepared here (raw SASL usernames are
 * fine). Loop thread of a storage opened with a loop. Returns 0 (cb will run later, on the
 * loop) or an error with no callback: ST_EINVAL for a localpart/host that fails its profile
 * or a bad h (treat as an unknown user), or the storage's submission errors. */
int st_account_get_cred(struct st_storage *st, const char *host, const char *localpart,
                        enum st_scram_hash h, st_account_cred_cb cb, void *ud);

/* Synchronous st_account_get_cred: fills *out. Same return values as the callback's rc, plus
 * ST_EINVAL as above. Blocking: not on the loop thread (tools and tests). */
int st_account_get_cred_sync(struct st_storage *st, const char *host, const char *localpart,
                             enum st_scram_hash h, struct st_scram_cred *out);

#endif
