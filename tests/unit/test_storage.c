/* Storage conformance suite (src/storage/storage.h): the same cases run against every
 * driver ("memory" and "sqlite"), through the synchronous calls and through the asynchronous
 * calls on a real libuv loop (callbacks later, on the loop, in submission order). SQLite-only
 * cases cover persistence across close/open, idempotent migrations, WAL/synchronous settings
 * and a second connection on the same file (the CLI next to a running server). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>
#include <uv.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "storage/storage.h"

struct fx {
    const char *driver;
    char dir[64];  /* mkdtemp root */
    char data[96]; /* root/data: created by the driver */
    uv_loop_t loop;
    struct st_storage *st;
};

static int fx_setup(void **state)
{
    struct fx *f = ST_NEW(struct fx);
    f->driver = *state;
    snprintf(f->dir, sizeof f->dir, "/tmp/st-storage-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->data, sizeof f->data, "%s/data", f->dir);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    char *err = NULL;
    int rc = st_storage_open(&f->loop, f->driver, f->data, &f->st, &err);
    if (rc)
        fprintf(stderr, "open: %s\n", err ? err : "?");
    assert_int_equal(rc, 0);
    assert_null(err);
    *state = f;
    return 0;
}

static void rm_data(struct fx *f)
{
    static const char *const names[] = {"starling.db", "starling.db-wal", "starling.db-shm"};
    char p[160];
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", f->data, names[i]);
        unlink(p);
    }
    rmdir(f->data);
    rmdir(f->dir);
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    st_storage_close(f->st);
    uv_run(&f->loop, UV_RUN_DEFAULT); /* releases the completion handle */
    assert_int_equal(uv_loop_close(&f->loop), 0);
    rm_data(f);
    st_free(f);
    return 0;
}

/* Closes and reopens the storage on the same directory (persistence for sqlite). */
static void reopen(struct fx *f)
{
    st_storage_close(f->st);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    char *err = NULL;
    assert_int_equal(st_storage_open(&f->loop, f->driver, f->data, &f->st, &err), 0);
}

static void run(struct fx *f)
{
    uv_run(&f->loop, UV_RUN_DEFAULT);
}

/* ---- recorders for async results ---- */

struct rec {
    int calls;
    int rc;
    int seq[64];
    int nseq;
    char data[256];
    size_t len;
    char id[64];
    size_t n;
    int complete;
    char keys[16][32];
    char ids[32][64];
    int64_t whens[32];
};

static void on_done(void *ud, int rc)
{
    struct rec *r = ud;
    r->calls++;
    r->rc = rc;
}

static void on_get(void *ud, int rc, const void *data, size_t len)
{
    struct rec *r = ud;
    r->calls++;
    r->rc = rc;
    r->len = len;
    if (!rc) {
        assert_non_null(data);
        assert_true(len < sizeof r->data);
        memcpy(r->data, data, len);
        r->data[len] = 0;
    } else {
        assert_int_equal(len, 0);
    }
}

static void on_append(void *ud, int rc, const char *id)
{
    struct rec *r = ud;
    r->calls++;
    r->rc = rc;
    if (!rc) {
        assert_non_null(id);
        snprintf(r->id, sizeof r->id, "%s", id);
    }
}

static void on_list(void *ud, int rc, const struct st_kvmap_row *rows, size_t n)
{
    struct rec *r = ud;
    r->calls++;
    r->rc = rc;
    r->n = n;
    for (size_t i = 0; i < n && i < 16; i++)
        snprintf(r->keys[i], sizeof r->keys[i], "%s=%.*s", rows[i].key, (int)rows[i].len,
                 (const char *)rows[i].data);
}

static void on_query(void *ud, int rc, const struct st_archive_item *items, size_t n,
                     int complete)
{
    struct rec *r = ud;
    r->calls++;
    r->rc = rc;
    r->n = n;
    r->complete = complete;
    for (size_t i = 0; i < n && i < 32; i++) {
        snprintf(r->ids[i], sizeof r->ids[i], "%.*s", (int)items[i].len,
                 (const char *)items[i].data);
        r->whens[i] = items[i].when;
    }
}

/* ---- keyval ---- */

static void kv_sync_roundtrip(void **state)
{
    struct fx *f = *state;
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(st_kv_get_sync(f->st, "h", "u", "s", &data, &len), ST_ENOTFOUND);
    assert_null(data);
    assert_int_equal(st_kv_set_sync(f->st, "h", "u", "s", "one", 3), 0);
    assert_int_equal(st_kv_set_sync(f->st, "h", "u", "s", "two!", 4), 0);
    assert_int_equal(st_kv_get_sync(f->st, "h", "u", "s", &data, &len), 0);
    assert_int_equal(len, 4);
    assert_string_equal(data, "two!"); /* NUL-terminated copy */
    st_free(data);
    /* binary with NULs and an empty value */
    assert_int_equal(st_kv_set_sync(f->st, "h", "u", "bin", "a\0b", 3), 0);
    assert_int_equal(st_kv_get_sync(f->st, "h", "u", "bin", &data, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(data, "a\0b", 3);
    st_free(data);
    assert_int_equal(st_kv_set_sync(f->st, "h", "u", "empty", "", 0), 0);
    assert_int_equal(st_kv_get_sync(f->st, "h", "u", "empty", &data, &len), 0);
    assert_int_equal(len, 0);
    st_free(data);
    /* add only when absent */
    assert_int_equal(st_kv_add_sync(f->st, "h", "u", "s", "x", 1), ST_EEXIST);
    assert_int_equal(st_kv_add_sync(f->st, "h", "u2", "s", "x", 1), 0);
    /* delete, also of something missing */
    assert_int_equal(st_kv_set_sync(f->st, "h", "u", "s", NULL, 0), 0);
    assert_int_equal(st_kv_set_sync(f->st, "h", "u", "s", NULL, 0), 0);
    assert_int_equal(st_kv_get_sync(f->st, "h", "u", "s", &data, &len), ST_ENOTFOUND);
    /* argument checks */
    assert_int_equal(st_kv_set_sync(f->st, NULL, "u", "s", "x", 1), ST_EINVAL);
    assert_int_equal(st_kv_set_sync(f->st, "h", "u", NULL, "x", 1), ST_EINVAL);
}

static void kv_async_ordered(void **state)
{
    struct fx *f = *state;
    struct rec set1 = {0}, get1 = {0}, set2 = {0}, get2 = {0}, del = {0}, get3 = {0};
    assert_int_equal(st_kv_set(f->st, "h", "u", "s", "v1", 2, on_done, &set1), 0);
    assert_int_equal(st_kv_get(f->st, "h", "u", "s", on_get, &get1), 0);
    assert_int_equal(st_kv_set(f->st, "h", "u", "s", "v22", 3, on_done, &set2), 0);
    assert_int_equal(st_kv_get(f->st, "h", "u", "s", on_get, &get2), 0);
    assert_int_equal(st_kv_set(f->st, "h", "u", "s", NULL, 0, on_done, &del), 0);
    assert_int_equal(st_kv_get(f->st, "h", "u", "s", on_get, &get3), 0);
    /* never called from inside the submitting call */
    assert_int_equal(set1.calls + get1.calls + get3.calls, 0);
    run(f);
    assert_int_equal(set1.calls, 1);
    assert_int_equal(set1.rc, 0);
    assert_int_equal(get1.rc, 0);
    assert_string_equal(get1.data, "v1");
    assert_string_equal(get2.data, "v22");
    assert_int_equal(del.rc, 0);
    assert_int_equal(get3.calls, 1);
    assert_int_equal(get3.rc, ST_ENOTFOUND);
}

struct order {
    int next;
    int bad;
};
struct order_ud {
    struct order *o;
    int idx;
};

static void on_ordered(void *ud, int rc)
{
    struct order_ud *u = ud;
    if (rc < 0 || u->idx != u->o->next)
        u->o->bad++;
    u->o->next++;
}

static void async_callbacks_in_submission_order(void **state)
{
    struct fx *f = *state;
    enum { N = 500 };
    struct order o = {0};
    struct order_ud *u = st_calloc(N, sizeof *u);
    for (int i = 0; i < N; i++) {
        u[i].o = &o;
        u[i].idx = i;
        char key[16];
        snprintf(key, sizeof key, "k%d", i % 7);
        int rc = (i % 3 == 0) ? st_kvmap_set(f->st, "h", "u", "m", key, "v", 1, on_ordered, &u[i])
                 : (i % 3 == 1) ? st_kv_set(f->st, "h", "u", "s", "v", 1, on_ordered, &u[i])
                                : st_archive_count(f->st, "h", "u", "a", on_ordered, &u[i]);
        assert_int_equal(rc, 0);
    }
    run(f);
    assert_int_equal(o.next, N);
    assert_int_equal(o.bad, 0);
    st_free(u);
}

static void async_needs_loop(void **state)
{
    struct fx *f = *state;
    struct st_storage *st = NULL;
    char *err = NULL;
    assert_int_equal(st_storage_open(NULL, f->driver, f->data, &st, &err), 0);
    struct rec r = {0};
    assert_int_equal(st_kv_get(st, "h", "u", "s", on_get, &r), ST_EINVAL);
    assert_int_equal(st_kv_set_sync(st, "h", "u", "s", "x", 1), 0);
    st_storage_close(st);
    assert_int_equal(r.calls, 0);
}

static void open_rejects_unknown_driver(void **state)
{
    (void)state;
    struct st_storage *st = (void *)1;
    char *err = NULL;
    assert_int_equal(st_storage_open(NULL, "nosuch", "/tmp", &st, &err), ST_EINVAL);
    assert_null(st);
    assert_non_null(err);
    st_free(err);
}

/* ---- map ---- */

static void kvmap_set_get_list(void **state)
{
    struct fx *f = *state;
    struct rec s1 = {0}, s2 = {0}, s3 = {0}, other = {0}, g = {0}, miss = {0}, l1 = {0},
               d = {0}, l2 = {0}, empty = {0};
    assert_int_equal(st_kvmap_set(f->st, "h", "u", "roster", "zed@x", "Z", 1, on_done, &s1), 0);
    assert_int_equal(st_kvmap_set(f->st, "h", "u", "roster", "amy@x", "A", 1, on_done, &s2), 0);
    assert_int_equal(st_kvmap_set(f->st, "h", "u", "roster", "bob@x", "B", 1, on_done, &s3), 0);
    assert_int_equal(st_kvmap_set(f->st, "h", "u2", "roster", "c@x", "C", 1, on_done, &other),
                     0);
    assert_int_equal(st_kvmap_get(f->st, "h", "u", "roster", "bob@x", on_get, &g), 0);
    assert_int_equal(st_kvmap_get(f->st, "h", "u", "roster", "nobody", on_get, &miss), 0);
    assert_int_equal(st_kvmap_list(f->st, "h", "u", "roster", on_list, &l1), 0);
    assert_int_equal(st_kvmap_set(f->st, "h", "u", "roster", "amy@x", NULL, 0, on_done, &d), 0);
    assert_int_equal(st_kvmap_list(f->st, "h", "u", "roster", on_list, &l2), 0);
    assert_int_equal(st_kvmap_list(f->st, "h", "nobody", "roster", on_list, &empty), 0);
    run(f);
    assert_int_equal(s1.rc + s2.rc + s3.rc + other.rc, 0);
    assert_string_equal(g.data, "B");
    assert_int_equal(miss.rc, ST_ENOTFOUND);
    assert_int_equal(l1.n, 3);
    assert_string_equal(l1.keys[0], "amy@x=A");
    assert_string_equal(l1.keys[1], "bob@x=B");
    assert_string_equal(l1.keys[2], "zed@x=Z");
    assert_int_equal(d.rc, 0);
    assert_int_equal(l2.n, 2);
    assert_string_equal(l2.keys[0], "bob@x=B");
    assert_int_equal(empty.calls, 1);
    assert_int_equal(empty.rc, 0);
    assert_int_equal(empty.n, 0);
}

/* ---- users and deletion ---- */

struct users {
    char list[16][64];
    int n;
};

static void on_user(void *ud, const char *host, const char *user)
{
    struct users *u = ud;
    if (u->n < 16)
        snprintf(u->list[u->n++], 64, "%s@%s", user, host);
}

static void users_sorted(void **state)
{
    struct fx *f = *state;
    const char *names[][2] = {{"b.org", "zoe"}, {"a.org", "mia"}, {"b.org", "al"},
                              {"a.org", "bo"},  {"a.org", "ann"}};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(st_kv_set_sync(f->st, names[i][0], names[i][1], "accounts", "x", 1), 0);
    assert_int_equal(st_kv_set_sync(f->st, "a.org", "nouser", "vcard", "x", 1), 0);
    struct users all = {0}, b = {0}, none = {0};
    assert_int_equal(st_kv_users_sync(f->st, NULL, "accounts", on_user, &all), 0);
    assert_int_equal(all.n, 5);
    assert_string_equal(all.list[0], "ann@a.org");
    assert_string_equal(all.list[1], "bo@a.org");
    assert_string_equal(all.list[2], "mia@a.org");
    assert_string_equal(all.list[3], "al@b.org");
    assert_string_equal(all.list[4], "zoe@b.org");
    assert_int_equal(st_kv_users_sync(f->st, "b.org", "accounts", on_user, &b), 0);
    assert_int_equal(b.n, 2);
    assert_string_equal(b.list[0], "al@b.org");
    assert_int_equal(st_kv_users_sync(f->st, "c.org", "accounts", on_user, &none), 0);
    assert_int_equal(none.n, 0);
}

static void delete_user_removes_everything(void **state)
{
    struct fx *f = *state;
    struct rec a = {0}, a2 = {0}, d = {0}, cnt = {0}, cnt2 = {0}, l = {0}, l2 = {0};
    assert_int_equal(st_kv_set_sync(f->st, "h", "u", "accounts", "x", 1), 0);
    assert_int_equal(st_kv_set_sync(f->st, "h", "u", "vcard", "x", 1), 0);
    assert_int_equal(st_kv_set_sync(f->st, "h", "uu", "accounts", "keep", 4), 0);
    assert_int_equal(st_kv_set_sync(f->st, "h2", "u", "accounts", "keep", 4), 0);
    assert_int_equal(st_kvmap_set(f->st, "h", "u", "roster", "k", "v", 1, on_done, &d), 0);
    assert_int_equal(st_kvmap_set(f->st, "h", "uu", "roster", "k", "v", 1, on_done, &d), 0);
    assert_int_equal(st_archive_append(f->st, "h", "u", "mam", NULL, 1, "m", 1, on_append, &a),
                     0);
    assert_int_equal(st_archive_append(f->st, "h", "uu", "mam", NULL, 1, "m", 1, on_append, &a2),
                     0);
    assert_int_equal(st_kv_delete_user(f->st, "h", "u", on_done, &d), 0);
    assert_int_equal(st_archive_count(f->st, "h", "u", "mam", on_done, &cnt), 0);
    assert_int_equal(st_archive_count(f->st, "h", "uu", "mam", on_done, &cnt2), 0);
    assert_int_equal(st_kvmap_list(f->st, "h", "u", "roster", on_list, &l), 0);
    assert_int_equal(st_kvmap_list(f->st, "h", "uu", "roster", on_list, &l2), 0);
    run(f);
    assert_int_equal(d.rc, 0);
    assert_int_equal(cnt.rc, 0);
    assert_int_equal(cnt2.rc, 1);
    assert_int_equal(l.n, 0);
    assert_int_equal(l2.n, 1);
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(st_kv_get_sync(f->st, "h", "u", "accounts", &data, &len), ST_ENOTFOUND);
    assert_int_equal(st_kv_get_sync(f->st, "h", "u", "vcard", &data, &len), ST_ENOTFOUND);
    assert_int_equal(st_kv_get_sync(f->st, "h", "uu", "accounts", &data, &len), 0);
    st_free(data);
    assert_int_equal(st_kv_get_sync(f->st, "h2", "u", "accounts", &data, &len), 0);
    st_free(data);
    assert_int_equal(st_kv_delete_user_sync(f->st, "h2", "u"), 0);
    assert_int_equal(st_kv_get_sync(f->st, "h2", "u", "accounts", &data, &len), ST_ENOTFOUND);
}

/* ---- archive ---- */

/* Appends items "m0".."m9" with when = 100 + i/2 (pairs share a second) and with alternating
 * between two partners; ids land in ids[]. */
static void fill_archive(struct fx *f, char ids[10][64])
{
    struct rec r[10];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 10; i++) {
        char body[8];
        snprintf(body, sizeof body, "m%d", i);
        assert_int_equal(st_archive_append(f->st, "h", "u", "mam", i % 2 ? "b@x" : "a@x",
                                           100 + i / 2, body, strlen(body), on_append, &r[i]),
                         0);
    }
    run(f);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(r[i].rc, 0);
        assert_true(strlen(r[i].id) >= 16);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(r[i].id, r[j].id);
        snprintf(ids[i], 64, "%s", r[i].id);
    }
}

static struct rec query(struct fx *f, const struct st_archive_query *q)
{
    struct rec r = {0};
    assert_int_equal(st_archive_query(f->st, "h", "u", "mam", q, on_query, &r), 0);
    run(f);
    assert_int_equal(r.calls, 1);
    return r;
}

static void archive_query_semantics(void **state)
{
    struct fx *f = *state;
    char ids[10][64];
    fill_archive(f, ids);

    struct rec r = query(f, &(struct st_archive_query){0});
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.n, 10);
    assert_int_equal(r.complete, 1);
    for (int i = 0; i < 10; i++) {
        char body[8];
        snprintf(body, sizeof body, "m%d", i);
        assert_string_equal(r.ids[i], body);
        assert_int_equal(r.whens[i], 100 + i / 2);
    }
    /* first page forward */
    r = query(f, &(struct st_archive_query){.max = 3});
    assert_int_equal(r.n, 3);
    assert_int_equal(r.complete, 0);
    assert_string_equal(r.ids[0], "m0");
    assert_string_equal(r.ids[2], "m2");
    /* exactly max left: complete */
    r = query(f, &(struct st_archive_query){.max = 10});
    assert_int_equal(r.n, 10);
    assert_int_equal(r.complete, 1);
    /* next page after m2 (same second as m3: order within a second is append order) */
    r = query(f, &(struct st_archive_query){.max = 3, .after = ids[2]});
    assert_int_equal(r.n, 3);
    assert_string_equal(r.ids[0], "m3");
    assert_string_equal(r.ids[2], "m5");
    assert_int_equal(r.complete, 0);
    r = query(f, &(struct st_archive_query){.max = 5, .after = ids[4]});
    assert_int_equal(r.n, 5);
    assert_string_equal(r.ids[4], "m9");
    assert_int_equal(r.complete, 1);
    /* last page: reverse, newest first */
    r = query(f, &(struct st_archive_query){.max = 4, .reverse = 1});
    assert_int_equal(r.n, 4);
    assert_string_equal(r.ids[0], "m9");
    assert_string_equal(r.ids[3], "m6");
    assert_int_equal(r.complete, 0);
    /* page before m6, going back */
    r = query(f, &(struct st_archive_query){.max = 4, .reverse = 1, .before = ids[6]});
    assert_int_equal(r.n, 4);
    assert_string_equal(r.ids[0], "m5");
    assert_string_equal(r.ids[3], "m2");
    assert_int_equal(r.complete, 0);
    r = query(f, &(struct st_archive_query){.max = 4, .reverse = 1, .before = ids[2]});
    assert_int_equal(r.n, 2);
    assert_string_equal(r.ids[0], "m1");
    assert_int_equal(r.complete, 1);
    /* between two ids */
    r = query(f, &(struct st_archive_query){.after = ids[1], .before = ids[5]});
    assert_int_equal(r.n, 3);
    assert_string_equal(r.ids[0], "m2");
    assert_string_equal(r.ids[2], "m4");
    /* with filter */
    r = query(f, &(struct st_archive_query){.with = "b@x"});
    assert_int_equal(r.n, 5);
    assert_string_equal(r.ids[0], "m1");
    assert_string_equal(r.ids[4], "m9");
    r = query(f, &(struct st_archive_query){.with = "b@x", .max = 2, .after = ids[3]});
    assert_int_equal(r.n, 2);
    assert_string_equal(r.ids[0], "m5");
    assert_string_equal(r.ids[1], "m7");
    assert_int_equal(r.complete, 0);
    /* time range, inclusive */
    r = query(f, &(struct st_archive_query){.start = 101, .end = 102});
    assert_int_equal(r.n, 4);
    assert_string_equal(r.ids[0], "m2");
    assert_string_equal(r.ids[3], "m5");
    r = query(f, &(struct st_archive_query){.start = 104});
    assert_int_equal(r.n, 2);
    r = query(f, &(struct st_archive_query){.end = 100});
    assert_int_equal(r.n, 2);
    r = query(f, &(struct st_archive_query){.start = 200});
    assert_int_equal(r.n, 0);
    assert_int_equal(r.complete, 1);
    /* unknown ids */
    r = query(f, &(struct st_archive_query){.after = "nope"});
    assert_int_equal(r.rc, ST_ENOTFOUND);
    assert_int_equal(r.n, 0);
    /* ids of another user's archive are unknown here */
    struct rec other = {0}, oq = {0};
    assert_int_equal(st_archive_append(f->st, "h", "v", "mam", NULL, 1, "x", 1, on_append,
                                       &other), 0);
    run(f);
    assert_int_equal(st_archive_query(f->st, "h", "v", "mam",
                                      &(struct st_archive_query){.after = ids[0]}, on_query,
                                      &oq), 0);
    run(f);
    assert_int_equal(oq.rc, ST_ENOTFOUND);
    /* NULL query = everything */
    r = query(f, NULL);
    assert_int_equal(r.n, 10);
}

static void archive_out_of_order_when(void **state)
{
    struct fx *f = *state;
    static const int64_t whens[] = {50, 10, 50, 30, 10};
    struct rec a[5];
    memset(a, 0, sizeof a);
    for (int i = 0; i < 5; i++) {
        char body[8];
        snprintf(body, sizeof body, "w%d", i);
        assert_int_equal(st_archive_append(f->st, "h", "u", "mam", NULL, whens[i], body, 2,
                                           on_append, &a[i]),
                         0);
    }
    run(f);
    struct rec r = query(f, &(struct st_archive_query){0});
    assert_int_equal(r.n, 5);
    static const char *const order[] = {"w1", "w4", "w3", "w0", "w2"};
    for (int i = 0; i < 5; i++)
        assert_string_equal(r.ids[i], order[i]);
    r = query(f, &(struct st_archive_query){.after = a[4].id, .max = 2});
    assert_string_equal(r.ids[0], "w3");
    assert_string_equal(r.ids[1], "w0");
    assert_int_equal(r.complete, 0);
}

static void archive_delete_and_count(void **state)
{
    struct fx *f = *state;
    char ids[10][64];
    fill_archive(f, ids);
    struct rec c0 = {0}, d1 = {0}, c1 = {0}, d2 = {0}, c2 = {0}, d3 = {0}, c3 = {0}, bad = {0};
    assert_int_equal(st_archive_count(f->st, "h", "u", "mam", on_done, &c0), 0);
    /* the two oldest */
    assert_int_equal(st_archive_delete(f->st, "h", "u", "mam",
                                       &(struct st_archive_query){.max = 2}, on_done, &d1),
                     0);
    assert_int_equal(st_archive_count(f->st, "h", "u", "mam", on_done, &c1), 0);
    /* everything with b@x */
    assert_int_equal(st_archive_delete(f->st, "h", "u", "mam",
                                       &(struct st_archive_query){.with = "b@x"}, on_done, &d2),
                     0);
    assert_int_equal(st_archive_count(f->st, "h", "u", "mam", on_done, &c2), 0);
    assert_int_equal(st_archive_delete(f->st, "h", "u", "mam",
                                       &(struct st_archive_query){.before = "nope"}, on_done,
                                       &bad),
                     0);
    assert_int_equal(st_archive_delete(f->st, "h", "u", "mam", NULL, on_done, &d3), 0);
    assert_int_equal(st_archive_count(f->st, "h", "u", "mam", on_done, &c3), 0);
    run(f);
    assert_int_equal(c0.rc, 10);
    assert_int_equal(d1.rc, 0);
    assert_int_equal(c1.rc, 8);
    assert_int_equal(d2.rc, 0);
    assert_int_equal(c2.rc, 4); /* m2 m4 m6 m8 */
    assert_int_equal(bad.rc, ST_ENOTFOUND);
    assert_int_equal(d3.rc, 0);
    assert_int_equal(c3.rc, 0);
}

/* ---- close, limits ---- */

static void close_drains_queue(void **state)
{
    struct fx *f = *state;
    enum { N = 200 };
    struct rec r[N];
    memset(r, 0, sizeof r);
    for (int i = 0; i < N; i++)
        assert_int_equal(st_kv_set(f->st, "h", "u", "s", "v", 1, on_done, &r[i]), 0);
    st_storage_close(f->st); /* loop not run: callbacks happen inside close */
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].rc, 0);
    }
    run(f);
    char *err = NULL;
    assert_int_equal(st_storage_open(&f->loop, f->driver, f->data, &f->st, &err), 0);
}

struct closer {
    struct st_storage *st;
    int calls;
    int late_rc;
};

static void on_close_from_cb(void *ud, int rc)
{
    struct closer *c = ud;
    (void)rc;
    c->calls++;
    if (c->calls == 1) {
        st_storage_close(c->st);
        c->late_rc = st_kv_set(c->st, "h", "u", "s", "v", 1, NULL, NULL);
    }
}

static void close_from_callback(void **state)
{
    struct fx *f = *state;
    struct closer c = {.st = f->st};
    for (int i = 0; i < 5; i++)
        assert_int_equal(st_kv_set(f->st, "h", "u", "s", "v", 1, on_close_from_cb, &c), 0);
    run(f);
    assert_int_equal(c.calls, 5); /* the rest still ran */
    assert_int_equal(c.late_rc, ST_ECLOSED);
    char *err = NULL;
    assert_int_equal(st_storage_open(&f->loop, f->driver, f->data, &f->st, &err), 0);
}

static void queue_is_bounded(void **state)
{
    struct fx *f = *state;
    struct rec r = {0};
    for (int i = 0; i < ST_STORAGE_QUEUE_MAX; i++)
        assert_int_equal(st_archive_count(f->st, "h", "u", "a", on_done, &r), 0);
    assert_int_equal(st_archive_count(f->st, "h", "u", "a", on_done, &r), ST_ELIMIT);
    run(f);
    assert_int_equal(r.calls, ST_STORAGE_QUEUE_MAX);
    /* accepted again once drained */
    assert_int_equal(st_archive_count(f->st, "h", "u", "a", on_done, &r), 0);
    run(f);
}

static void limits_enforced(void **state)
{
    struct fx *f = *state;
    char *big = st_malloc(ST_STORAGE_NAME_MAX + 2);
    memset(big, 'a', ST_STORAGE_NAME_MAX + 1);
    big[ST_STORAGE_NAME_MAX + 1] = 0;
    assert_int_equal(st_kv_set_sync(f->st, "h", big, "s", "x", 1), ST_ELIMIT);
    assert_int_equal(st_kv_set(f->st, "h", "u", big, "x", 1, NULL, NULL), ST_ELIMIT);
    assert_int_equal(st_kv_set_sync(f->st, "h", "u", "s", "x", (size_t)ST_STORAGE_VALUE_MAX + 1),
                     ST_ELIMIT);
    st_free(big);
}

/* ---- sqlite only ---- */

static void sqlite_persists_across_reopen(void **state)
{
    struct fx *f = *state;
    struct rec s = {0}, m = {0}, a = {0};
    assert_int_equal(st_kv_set(f->st, "h", "u", "s", "durable", 7, on_done, &s), 0);
    assert_int_equal(st_kvmap_set(f->st, "h", "u", "m", "k", "mv", 2, on_done, &m), 0);
    assert_int_equal(st_archive_append(f->st, "h", "u", "mam", "w@x", 5, "ar", 2, on_append, &a),
                     0);
    run(f);
    assert_int_equal(s.rc + m.rc + a.rc, 0);
    reopen(f);
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(st_kv_get_sync(f->st, "h", "u", "s", &data, &len), 0);
    assert_string_equal(data, "durable");
    st_free(data);
    struct rec g = {0};
    assert_int_equal(st_kvmap_get(f->st, "h", "u", "m", "k", on_get, &g), 0);
    struct rec q = {0};
    assert_int_equal(st_archive_query(f->st, "h", "u", "mam", NULL, on_query, &q), 0);
    run(f);
    assert_string_equal(g.data, "mv");
    assert_int_equal(q.n, 1);
    assert_string_equal(q.ids[0], "ar");
    /* the data directory is private */
    struct stat sb;
    assert_int_equal(stat(f->data, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
}

static void sqlite_migrations_idempotent(void **state)
{
    struct fx *f = *state;
    reopen(f);
    reopen(f);
    char path[160];
    snprintf(path, sizeof path, "%s/starling.db", f->data);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT count(*), min(version), max(version) "
                                        "FROM schema_version",
                                        -1, &s, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int n = sqlite3_column_int(s, 0);
    assert_true(n >= 1);
    assert_int_equal(sqlite3_column_int(s, 1), 1);
    assert_int_equal(sqlite3_column_int(s, 2), n);
    sqlite3_finalize(s);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    sqlite3_close(db);
}

static void sqlite_rejects_newer_schema(void **state)
{
    struct fx *f = *state;
    char path[160];
    snprintf(path, sizeof path, "%s/starling.db", f->data);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO schema_version(version, applied_at) "
                                  "VALUES(9999, 0)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    struct st_storage *st = NULL;
    char *err = NULL;
    assert_int_equal(st_storage_open(NULL, "sqlite", f->data, &st, &err), ST_EINVAL);
    assert_non_null(err);
    assert_non_null(strstr(err, "newer"));
    st_free(err);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_exec(db, "DELETE FROM schema_version WHERE version = 9999", NULL, NULL, NULL);
    sqlite3_close(db);
}

static void sqlite_second_connection(void **state)
{
    struct fx *f = *state;
    struct st_storage *cli = NULL;
    char *err = NULL;
    /* a second process-like connection without a loop (the CLI) */
    assert_int_equal(st_storage_open(NULL, "sqlite", f->data, &cli, &err), 0);
    struct rec s = {0}, g = {0};
    assert_int_equal(st_kv_set(f->st, "h", "server", "s", "from-server", 11, on_done, &s), 0);
    assert_int_equal(st_kv_add_sync(cli, "h", "cli", "accounts", "from-cli", 8), 0);
    run(f);
    assert_int_equal(s.rc, 0);
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(st_kv_get_sync(cli, "h", "server", "s", &data, &len), 0);
    assert_string_equal(data, "from-server");
    st_free(data);
    assert_int_equal(st_kv_get(f->st, "h", "cli", "accounts", on_get, &g), 0);
    /* interleaved writers */
    struct rec w[50];
    memset(w, 0, sizeof w);
    for (int i = 0; i < 50; i++) {
        char k[16];
        snprintf(k, sizeof k, "s%d", i);
        assert_int_equal(st_kvmap_set(f->st, "h", "u", "m", k, "x", 1, on_done, &w[i]), 0);
        snprintf(k, sizeof k, "c%d", i);
        assert_int_equal(st_kv_set_sync(cli, "h", "u", k, "y", 1), 0);
    }
    run(f);
    assert_string_equal(g.data, "from-cli");
    for (int i = 0; i < 50; i++)
        assert_int_equal(w[i].rc, 0);
    assert_int_equal(st_kv_add_sync(cli, "h", "server", "s", "again", 5), ST_EEXIST);
    st_storage_close(cli);
}

static void group_commit_isolates_failures(void **state)
{
    /* one worker round commits many operations together; a failing one (unknown archive id)
     * must not take the others down, and all must be durable once reported */
    struct fx *f = *state;
    enum { N = 300 };
    struct rec *r = st_calloc(N, sizeof *r);
    struct rec bad = {0}, app = {0};
    for (int i = 0; i < N; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%03d", i);
        assert_int_equal(st_kvmap_set(f->st, "h", "u", "gc", k, k, strlen(k), on_done, &r[i]),
                         0);
        if (i == N / 2) {
            assert_int_equal(st_archive_delete(f->st, "h", "u", "mam",
                                               &(struct st_archive_query){.after = "nope"},
                                               on_done, &bad),
                             0);
            assert_int_equal(st_archive_append(f->st, "h", "u", "mam", NULL, 1, "a", 1,
                                               on_append, &app),
                             0);
        }
    }
    run(f);
    for (int i = 0; i < N; i++)
        assert_int_equal(r[i].rc, 0);
    assert_int_equal(bad.rc, ST_ENOTFOUND);
    assert_int_equal(app.rc, 0);
    if (strcmp(f->driver, "sqlite") == 0)
        reopen(f);
    struct rec l = {0}, q = {0};
    assert_int_equal(st_kvmap_list(f->st, "h", "u", "gc", on_list, &l), 0);
    assert_int_equal(st_archive_query(f->st, "h", "u", "mam", NULL, on_query, &q), 0);
    run(f);
    assert_int_equal(l.n, N);
    assert_string_equal(l.keys[0], "k000=k000");
    assert_int_equal(q.n, 1);
    st_free(r);
}

#define CONF(fn, drv)                                                                        \
    {.name = drv ":" #fn, .test_func = fn, .setup_func = fx_setup,                           \
     .teardown_func = fx_teardown, .initial_state = (void *)drv}
#define BOTH(fn) CONF(fn, "memory"), CONF(fn, "sqlite")

int main(void)
{
    st_log_set_level(ST_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(open_rejects_unknown_driver),
        BOTH(kv_sync_roundtrip),
        BOTH(kv_async_ordered),
        BOTH(async_callbacks_in_submission_order),
        BOTH(async_needs_loop),
        BOTH(kvmap_set_get_list),
        BOTH(users_sorted),
        BOTH(delete_user_removes_everything),
        BOTH(archive_query_semantics),
        BOTH(archive_out_of_order_when),
        BOTH(archive_delete_and_count),
        BOTH(close_drains_queue),
        BOTH(close_from_callback),
        BOTH(queue_is_bounded),
        BOTH(limits_enforced),
        BOTH(group_commit_isolates_failures),
        CONF(sqlite_persists_across_reopen, "sqlite"),
        CONF(sqlite_migrations_idempotent, "sqlite"),
        CONF(sqlite_rejects_newer_schema, "sqlite"),
        CONF(sqlite_second_connection, "sqlite"),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
