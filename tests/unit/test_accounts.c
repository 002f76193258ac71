/* Unit tests for src/xmpp/accounts.c: SCRAM credentials for SHA-1/256/512 derived at create
 * time (RFC 5802 §3, RFC 7677) and checked with st_scram_check_password, localpart and
 * password preparation (RFC 8265 §3.3, §4.2), replace/passwd, delete, sorted listing, the
 * asynchronous credential fetch for SASL and strict decoding of stored records. Every case
 * runs on both storage drivers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <uv.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "storage/storage.h"
#include "xmpp/accounts.h"
#include "xmpp/scram.h"

#define IT ST_SCRAM_MIN_ITERATIONS

struct fx {
    const char *driver;
    char dir[64];
    uv_loop_t loop;
    struct st_storage *st;
};

static int fx_setup(void **state)
{
    struct fx *f = ST_NEW(struct fx);
    f->driver = *state;
    snprintf(f->dir, sizeof f->dir, "/tmp/st-accounts-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    char *err = NULL;
    assert_int_equal(st_storage_open(&f->loop, f->driver, f->dir, &f->st, &err), 0);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    st_storage_close(f->st);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    static const char *const names[] = {"starling.db", "starling.db-wal", "starling.db-shm"};
    char p[128];
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", f->dir, names[i]);
        unlink(p);
    }
    rmdir(f->dir);
    st_free(f);
    return 0;
}

static bool check(struct fx *f, const char *host, const char *local, const char *pw)
{
    bool ok = true;
    for (int h = 0; h < ST_SCRAM_NHASH; h++) {
        struct st_scram_cred c;
        if (st_account_get_cred_sync(f->st, host, local, (enum st_scram_hash)h, &c))
            return false;
        ok = ok && st_scram_check_password((enum st_scram_hash)h, &c, pw, strlen(pw));
    }
    return ok;
}

static void create_and_verify(void **state)
{
    struct fx *f = *state;
    assert_int_equal(st_account_exists_sync(f->st, "example.org", "alice"), 0);
    assert_int_equal(st_account_create_sync(f->st, "example.org", "alice", "s3cret!", IT, false),
                     0);
    assert_int_equal(st_account_exists_sync(f->st, "example.org", "alice"), 1);
    assert_true(check(f, "example.org", "alice", "s3cret!"));
    assert_false(check(f, "example.org", "alice", "s3cret"));
    assert_false(check(f, "example.org", "alice", "S3cret!")); /* passwords keep case */
    struct st_scram_cred c1, c256;
    assert_int_equal(st_account_get_cred_sync(f->st, "example.org", "alice", ST_SCRAM_SHA1, &c1),
                     0);
    assert_int_equal(
        st_account_get_cred_sync(f->st, "example.org", "alice", ST_SCRAM_SHA256, &c256), 0);
    assert_int_equal(c1.iterations, IT);
    assert_int_equal(c1.salt_len, ST_SCRAM_SALT_LEN);
    assert_memory_not_equal(c1.salt, c256.salt, ST_SCRAM_SALT_LEN); /* a salt per hash */
    /* the stored record never contains the password */
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(
        st_kv_get_sync(f->st, "example.org", "alice", ST_ACCOUNT_STORE, &data, &len), 0);
    assert_null(strstr(data, "s3cret"));
    assert_non_null(strstr(data, "starling-account 1\n"));
    st_free(data);
    /* unknown user */
    struct st_scram_cred c;
    assert_int_equal(st_account_get_cred_sync(f->st, "example.org", "bob", ST_SCRAM_SHA1, &c),
                     ST_ENOTFOUND);
    assert_int_equal(st_account_get_cred_sync(f->st, "other.org", "alice", ST_SCRAM_SHA1, &c),
                     ST_ENOTFOUND);
}

static void localpart_and_password_prepared(void **state)
{
    struct fx *f = *state;
    /* UsernameCaseMapped: case-folded */
    assert_int_equal(st_account_create_sync(f->st, "Example.ORG", "Alice", "pw", IT, false), 0);
    assert_int_equal(st_account_exists_sync(f->st, "example.org", "alice"), 1);
    assert_int_equal(st_account_exists_sync(f->st, "example.org", "ALICE"), 1);
    assert_int_equal(st_account_create_sync(f->st, "example.org", "aLiCe", "x", IT, false),
                     ST_EEXIST);
    /* OpaqueString: NFC, so decomposed and composed forms are one password */
    assert_int_equal(
        st_account_create_sync(f->st, "example.org", "carol", "caf\x65\xcc\x81", IT, false), 0);
    assert_true(check(f, "example.org", "carol", "caf\xc3\xa9"));
}

static void bad_input_rejected(void **state)
{
    struct fx *f = *state;
    static const char *const bad_locals[] = {"", "a@b", "a/b", "a b", "a\"b", "a:b", "\x01"};
    for (size_t i = 0; i < sizeof bad_locals / sizeof bad_locals[0]; i++)
        assert_int_equal(
            st_account_create_sync(f->st, "example.org", bad_locals[i], "pw", IT, false),
            ST_EINVAL);
    assert_int_equal(st_account_create_sync(f->st, "example.org", "dave", "", IT, false),
                     ST_EINVAL);
    assert_int_equal(st_account_create_sync(f->st, "example.org", "dave", "pw\x01", IT, false),
                     ST_EINVAL);
    assert_int_equal(st_account_create_sync(f->st, "example.org", "dave", "pw", 100, false),
                     ST_EINVAL);
    assert_int_equal(st_account_create_sync(f->st, "example.org", "dave", NULL, IT, false),
                     ST_EINVAL);
    assert_int_equal(st_account_create_sync(f->st, "bad host", "dave", "pw", IT, false),
                     ST_EINVAL);
    assert_int_equal(st_account_exists_sync(f->st, "example.org", "a@b"), 0);
    assert_int_equal(st_account_exists_sync(f->st, "example.org", "dave"), 0);
}

static void replace_changes_password(void **state)
{
    struct fx *f = *state;
    assert_int_equal(st_account_create_sync(f->st, "example.org", "erin", "old", IT, false), 0);
    assert_int_equal(st_account_create_sync(f->st, "example.org", "erin", "new", IT, false),
                     ST_EEXIST);
    assert_true(check(f, "example.org", "erin", "old"));
    assert_int_equal(st_account_create_sync(f->st, "example.org", "erin", "new", IT + 1, true),
                     0);
    assert_false(check(f, "example.org", "erin", "old"));
    assert_true(check(f, "example.org", "erin", "new"));
    struct st_scram_cred c;
    assert_int_equal(st_account_get_cred_sync(f->st, "example.org", "erin", ST_SCRAM_SHA512, &c),
                     0);
    assert_int_equal(c.iterations, IT + 1);
    /* replace also creates */
    assert_int_equal(st_account_create_sync(f->st, "example.org", "frank", "pw", IT, true), 0);
    assert_true(check(f, "example.org", "frank", "pw"));
}

static void delete_account(void **state)
{
    struct fx *f = *state;
    assert_int_equal(st_account_create_sync(f->st, "example.org", "gina", "pw", IT, false), 0);
    assert_int_equal(st_account_create_sync(f->st, "example.org", "hank", "pw", IT, false), 0);
    assert_int_equal(st_kv_set_sync(f->st, "example.org", "gina", "vcard", "v", 1), 0);
    assert_int_equal(st_account_delete_sync(f->st, "example.org", "Gina"), 0);
    assert_int_equal(st_account_exists_sync(f->st, "example.org", "gina"), 0);
    assert_int_equal(st_account_exists_sync(f->st, "example.org", "hank"), 1);
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(st_kv_get_sync(f->st, "example.org", "gina", "vcard", &data, &len),
                     ST_ENOTFOUND);
    assert_int_equal(st_account_delete_sync(f->st, "example.org", "gina"), ST_ENOTFOUND);
    assert_int_equal(st_account_delete_sync(f->st, "example.org", "a@b"), ST_EINVAL);
    /* can be created again */
    assert_int_equal(st_account_create_sync(f->st, "example.org", "gina", "pw2", IT, false), 0);
    assert_true(check(f, "example.org", "gina", "pw2"));
}

struct users {
    char list[16][64];
    int n;
};

static void on_user(void *ud, const char *host, const char *local)
{
    struct users *u = ud;
    if (u->n < 16)
        snprintf(u->list[u->n++], 64, "%s@%s", local, host);
}

static void list_sorted(void **state)
{
    struct fx *f = *state;
    static const char *const names[][2] = {
        {"b.org", "zed"}, {"a.org", "mike"}, {"b.org", "amy"}, {"a.org", "bob"}};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(st_account_create_sync(f->st, names[i][0], names[i][1], "pw", IT, false),
                         0);
    /* other stores are not accounts */
    assert_int_equal(st_kv_set_sync(f->st, "a.org", "ghost", "vcard", "v", 1), 0);
    struct users all = {0}, a = {0};
    assert_int_equal(st_account_list_sync(f->st, NULL, on_user, &all), 0);
    assert_int_equal(all.n, 4);
    assert_string_equal(all.list[0], "bob@a.org");
    assert_string_equal(all.list[1], "mike@a.org");
    assert_string_equal(all.list[2], "amy@b.org");
    assert_string_equal(all.list[3], "zed@b.org");
    assert_int_equal(st_account_list_sync(f->st, "A.org", on_user, &a), 0);
    assert_int_equal(a.n, 2);
    assert_string_equal(a.list[0], "bob@a.org");
}

struct got {
    int calls;
    int rc;
    struct st_scram_cred cred;
};

static void on_cred(void *ud, int rc, const struct st_scram_cred *cred)
{
    struct got *g = ud;
    g->calls++;
    g->rc = rc;
    if (!rc) {
        assert_non_null(cred);
        g->cred = *cred;
    } else {
        assert_null(cred);
    }
}

static void async_get_cred(void **state)
{
    struct fx *f = *state;
    assert_int_equal(st_account_create_sync(f->st, "example.org", "ivy", "pw", IT, false), 0);
    struct got g[ST_SCRAM_NHASH] = {{0}}, missing = {0}, raw = {0};
    for (int h = 0; h < ST_SCRAM_NHASH; h++)
        assert_int_equal(
            st_account_get_cred(f->st, "example.org", "ivy", (enum st_scram_hash)h, on_cred, &g[h]),
            0);
    assert_int_equal(st_account_get_cred(f->st, "example.org", "nobody", ST_SCRAM_SHA1, on_cred,
                                         &missing),
                     0);
    /* a raw SASL username is prepared before the lookup */
    assert_int_equal(st_account_get_cred(f->st, "example.org", "IVY", ST_SCRAM_SHA256, on_cred,
                                         &raw),
                     0);
    assert_int_equal(st_account_get_cred(f->st, "example.org", "a@b", ST_SCRAM_SHA1, on_cred,
                                         &missing),
                     ST_EINVAL);
    assert_int_equal(st_account_get_cred(f->st, "example.org", "ivy", (enum st_scram_hash)7,
                                         on_cred, &missing),
                     ST_EINVAL);
    assert_int_equal(g[0].calls, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    for (int h = 0; h < ST_SCRAM_NHASH; h++) {
        assert_int_equal(g[h].calls, 1);
        assert_int_equal(g[h].rc, 0);
        assert_true(st_scram_check_password((enum st_scram_hash)h, &g[h].cred, "pw", 2));
    }
    assert_int_equal(missing.calls, 1);
    assert_int_equal(missing.rc, ST_ENOTFOUND);
    assert_int_equal(raw.rc, 0);
}

static void corrupt_record_is_eio(void **state)
{
    struct fx *f = *state;
    static const char *const bad[] = {
        "garbage",
        "starling-account 2\n",
        "starling-account 1\n", /* no hashes */
        "starling-account 1\nSHA-1 4096 00 11\n",
        "starling-account 1\nMD5 4096 00 11 22\n",
        "starling-account 1\nSHA-1 0 00 0000000000000000000000000000000000000000 "
        "0000000000000000000000000000000000000000\n",
        "starling-account 1\nSHA-1 4096 zz 0000000000000000000000000000000000000000 "
        "0000000000000000000000000000000000000000\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(st_kv_set_sync(f->st, "example.org", "jay", ST_ACCOUNT_STORE, bad[i],
                                        strlen(bad[i])),
                         0);
        struct st_scram_cred c;
        assert_int_equal(st_account_get_cred_sync(f->st, "example.org", "jay", ST_SCRAM_SHA1, &c),
                         ST_EIO);
    }
    /* a valid record with a line dropped */
    assert_int_equal(st_account_create_sync(f->st, "example.org", "kim", "pw", IT, false), 0);
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(st_kv_get_sync(f->st, "example.org", "kim", ST_ACCOUNT_STORE, &data, &len),
                     0);
    char *last = strstr(data, "SHA-512 ");
    assert_non_null(last);
    size_t cut = (size_t)(last - (char *)data);
    assert_int_equal(st_kv_set_sync(f->st, "example.org", "kim", ST_ACCOUNT_STORE, data, cut), 0);
    st_free(data);
    struct got g = {0};
    assert_int_equal(st_account_get_cred(f->st, "example.org", "kim", ST_SCRAM_SHA1, on_cred, &g),
                     0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(g.rc, ST_EIO);
}

#define CONF(fn, drv)                                                                        \
    {.name = drv ":" #fn, .test_func = fn, .setup_func = fx_setup,                           \
     .teardown_func = fx_teardown, .initial_state = (void *)drv}
#define BOTH(fn) CONF(fn, "memory"), CONF(fn, "sqlite")

int main(void)
{
    st_log_set_level(ST_LOG_WARN);
    const struct CMUnitTest tests[] = {
        BOTH(create_and_verify),   BOTH(localpart_and_password_prepared),
        BOTH(bad_input_rejected),  BOTH(replace_changes_password),
        BOTH(delete_account),      BOTH(list_sorted),
        BOTH(async_get_cred),      BOTH(corrupt_record_is_eio),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
