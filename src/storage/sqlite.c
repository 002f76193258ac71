/* The "sqlite" storage driver: the storage contract (storage.h) on one SQLite database file,
 * DATA_DIR/starling.db. WAL journal (readers never block the writer, so the CLI can work while
 * the server runs), synchronous=FULL (a committed transaction survives kill -9 and power
 * loss: the WAL is fsynced at every commit), a busy timeout for the moments two processes
 * write at once, foreign keys on. The schema comes from the numbered migrations in
 * sql/sqlite/ (embedded at build time), applied at open in one IMMEDIATE transaction so two
 * processes opening a new database at once cannot both migrate it. Fixed statements are
 * prepared once and cached; archive queries are built per call. The worker's group commit
 * (storage.c) wraps a run of operations in one IMMEDIATE transaction; an operation's own
 * transaction then becomes a savepoint, so its failure undoes only itself. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sqlite3.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "storage/driver.h"
#include "storage/migrations.h"

#define LOGCTX "storage"
#define BUSY_TIMEOUT_MS 10000
#define ST_SQLITE_CACHE_KIB "512"

enum stmt_id {
    S_KV_GET,
    S_KV_PUT,
    S_KV_ADD,
    S_KV_DEL,
    S_MAP_GET,
    S_MAP_PUT,
    S_MAP_DEL,
    S_MAP_LIST,
    S_DEL_KV,
    S_DEL_MAP,
    S_DEL_AR,
    S_USERS_ALL,
    S_USERS_HOST,
    S_AR_APPEND,
    S_AR_FIND,
    S_AR_COUNT,
    S_BEGIN,
    S_BEGIN_IMM,
    S_COMMIT,
    S_ROLLBACK,
    S_SAVEPOINT,
    S_RELEASE,
    S_ROLLBACK_TO,
    S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
    [S_KV_GET] = "SELECT value FROM keyval WHERE host=?1 AND user=?2 AND store=?3",
    [S_KV_PUT] = "INSERT OR REPLACE INTO keyval(host,user,store,value) VALUES(?1,?2,?3,?4)",
    [S_KV_ADD] = "INSERT INTO keyval(host,user,store,value) VALUES(?1,?2,?3,?4) "
                 "ON CONFLICT DO NOTHING",
    [S_KV_DEL] = "DELETE FROM keyval WHERE host=?1 AND user=?2 AND store=?3",
    [S_MAP_GET] = "SELECT value FROM kvmap WHERE host=?1 AND user=?2 AND store=?3 AND key=?4",
    [S_MAP_PUT] = "INSERT OR REPLACE INTO kvmap(host,user,store,key,value) "
                  "VALUES(?1,?2,?3,?4,?5)",
    [S_MAP_DEL] = "DELETE FROM kvmap WHERE host=?1 AND user=?2 AND store=?3 AND key=?4",
    [S_MAP_LIST] = "SELECT key,value FROM kvmap WHERE host=?1 AND user=?2 AND store=?3 "
                   "ORDER BY key",
    [S_DEL_KV] = "DELETE FROM keyval WHERE host=?1 AND user=?2",
    [S_DEL_MAP] = "DELETE FROM kvmap WHERE host=?1 AND user=?2",
    [S_DEL_AR] = "DELETE FROM archive WHERE host=?1 AND user=?2",
    [S_USERS_ALL] = "SELECT host,user FROM keyval WHERE store=?1 ORDER BY host,user",
    [S_USERS_HOST] = "SELECT host,user FROM keyval WHERE store=?1 AND host=?2 ORDER BY user",
    [S_AR_APPEND] = "INSERT INTO archive(host,user,store,uid,\"when\",\"with\",value) "
                    "VALUES(?1,?2,?3,?4,?5,?6,?7)",
    [S_AR_FIND] = "SELECT id,\"when\" FROM archive WHERE uid=?4 AND host=?1 AND user=?2 "
                  "AND store=?3",
    [S_AR_COUNT] = "SELECT count(*) FROM archive WHERE host=?1 AND user=?2 AND store=?3",
    [S_BEGIN] = "BEGIN",
    [S_BEGIN_IMM] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SAVEPOINT] = "SAVEPOINT op",
    [S_RELEASE] = "RELEASE op",
    [S_ROLLBACK_TO] = "ROLLBACK TO op",
};

/* Archive queries are built from which filters are present: one cached statement per shape
 * (bit per filter, see archive_shape). Offline delivery runs one on every login. */
#define ARCHIVE_SHAPES 256

struct sq_db {
    sqlite3 *db;
    sqlite3_stmt *stmts[S_COUNT];
    sqlite3_stmt *archive_stmts[ARCHIVE_SHAPES];
    bool in_batch; /* inside the front end's group-commit transaction */
};

static int sq_error(struct sq_db *d, int src, const char *what)
{
    int code = src & 0xff;
    st_log_error(LOGCTX, "sqlite %s: %s", what, sqlite3_errmsg(d->db));
    if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
        return ST_EAGAIN;
    if (code == SQLITE_FULL || code == SQLITE_TOOBIG)
        return ST_ELIMIT;
    return ST_EIO;
}

/* Returns the cached statement, reset and unbound, or NULL (logged). */
static sqlite3_stmt *stmt(struct sq_db *d, enum stmt_id id)
{
    /* An I/O error or the like rolls back the whole batch; running on in autocommit mode
     * would commit what the batch is about to report as failed. */
    if (d->in_batch && sqlite3_get_autocommit(d->db)) {
        st_log_error(LOGCTX, "sqlite: batch transaction was rolled back");
        return NULL;
    }
    sqlite3_stmt *s = d->stmts[id];
    if (!s) {
        int rc = sqlite3_prepare_v3(d->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &s,
                                    NULL);
        if (rc != SQLITE_OK) {
            sq_error(d, rc, "prepare");
            return NULL;
        }
        d->stmts[id] = s;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

static void bind_hus(sqlite3_stmt *s, const char *h, const char *u, const char *st)
{
    sqlite3_bind_text(s, 1, h, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, u, -1, SQLITE_STATIC);
    if (st)
        sqlite3_bind_text(s, 3, st, -1, SQLITE_STATIC);
}

/* Runs a statement that returns no rows; returns 0 or an ST_E*. */
static int run_done(struct sq_db *d, sqlite3_stmt *s, const char *what)
{
    if (!s)
        return ST_EIO;
    int rc = sqlite3_step(s);
    int ret = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : sq_error(d, rc, what);
    sqlite3_reset(s);
    return ret;
}

static int tx(struct sq_db *d, enum stmt_id id)
{
    return run_done(d, stmt(d, id), stmt_sql[id]);
}

static void rollback(struct sq_db *d)
{
    if (!sqlite3_get_autocommit(d->db))
        tx(d, S_ROLLBACK);
}

/* Transactions of single operations become savepoints inside a batch. */
static int op_begin(struct sq_db *d, bool write)
{
    if (d->in_batch)
        return tx(d, S_SAVEPOINT);
    return tx(d, write ? S_BEGIN_IMM : S_BEGIN);
}

static int op_commit(struct sq_db *d)
{
    return tx(d, d->in_batch ? S_RELEASE : S_COMMIT);
}

static void op_rollback(struct sq_db *d)
{
    if (sqlite3_get_autocommit(d->db))
        return;
    if (d->in_batch) {
        tx(d, S_ROLLBACK_TO);
        tx(d, S_RELEASE);
    } else {
        tx(d, S_ROLLBACK);
    }
}

static int sq_batch_begin(void *db)
{
    struct sq_db *d = db;
    int rc = tx(d, S_BEGIN_IMM);
    d->in_batch = rc == 0;
    return rc;
}

static int sq_batch_end(void *db)
{
    struct sq_db *d = db;
    d->in_batch = false;
    if (sqlite3_get_autocommit(d->db))
        return ST_EIO; /* rolled back by an error on the way (logged) */
    int rc = tx(d, S_COMMIT);
    if (rc)
        rollback(d);
    return rc;
}

/* A new NUL-terminated copy of a blob column. */
static void *column_copy(sqlite3_stmt *s, int col, size_t *len)
{
    const void *p = sqlite3_column_blob(s, col);
    size_t n = (size_t)sqlite3_column_bytes(s, col);
    void *out = st_malloc(n + 1);
    if (n)
        memcpy(out, p, n);
    ((char *)out)[n] = 0;
    if (len)
        *len = n;
    return out;
}

static char *column_str(sqlite3_stmt *s, int col)
{
    if (sqlite3_column_type(s, col) == SQLITE_NULL)
        return NULL;
    return column_copy(s, col, NULL);
}

/* Returns arr with room for element k (growing *cap by doubling from 16), for row lists. */
static void *grow(void *arr, size_t *cap, size_t k, size_t size)
{
    if (k < *cap)
        return arr;
    *cap = *cap ? *cap * 2 : 16;
    return st_realloc(arr, *cap * size);
}

/* ---- open, migrations, close ---- */

static int mkdirs(const char *path)
{
    char *p = st_strdup(path);
    int rc = 0;
    for (char *c = p + 1; *c; c++) {
        if (*c != '/')
            continue;
        *c = 0;
        if (mkdir(p, 0700) && errno != EEXIST)
            rc = -1;
        *c = '/';
    }
    if (mkdir(p, 0700) && errno != EEXIST)
        rc = -1;
    else
        rc = 0;
    st_free(p);
    return rc;
}

static void err_printf(char **err, const char *fmt, const char *a, const char *b)
{
    struct st_buf msg;
    st_buf_init(&msg, 4096);
    st_buf_printf(&msg, fmt, a, b);
    *err = st_buf_take(&msg);
}

static int migrate(struct sq_db *d, char **err)
{
    char *emsg = NULL;
    int rc = tx(d, S_BEGIN_IMM);
    if (rc) {
        err_printf(err, "%s: %s", "cannot lock the database to migrate it",
                   sqlite3_errmsg(d->db));
        return rc;
    }
    if (sqlite3_exec(d->db,
                     "CREATE TABLE IF NOT EXISTS schema_version ("
                     "version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
                     NULL, NULL, &emsg) != SQLITE_OK)
        goto sqlfail;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(d->db, "SELECT coalesce(max(version),0) FROM schema_version", -1, &s,
                           NULL) != SQLITE_OK ||
        sqlite3_step(s) != SQLITE_ROW) {
        sqlite3_finalize(s);
        goto sqlfail;
    }
    int64_t cur = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    if (cur > (int64_t)st_sqlite_migrations_count) {
        rollback(d);
        char v[32];
        snprintf(v, sizeof v, "%lld", (long long)cur);
        err_printf(err, "database schema version %s is newer than this Starling%s", v,
                   " (downgrade is not supported)");
        return ST_EINVAL;
    }
    for (size_t i = 0; i < st_sqlite_migrations_count; i++) {
        const struct st_sql_migration *m = &st_sqlite_migrations[i];
        if (m->version <= cur)
            continue;
        if (sqlite3_exec(d->db, m->sql, NULL, NULL, &emsg) != SQLITE_OK)
            goto sqlfail;
        char ins[128];
        snprintf(ins, sizeof ins,
                 "INSERT INTO schema_version(version, applied_at) "
                 "VALUES(%d, CAST(strftime('%%s','now') AS INTEGER))",
                 m->version);
        if (sqlite3_exec(d->db, ins, NULL, NULL, &emsg) != SQLITE_OK)
            goto sqlfail;
        st_log_info(LOGCTX, "applied schema migration %03d_%s", m->version, m->name);
    }
    rc = tx(d, S_COMMIT);
    if (rc) {
        rollback(d);
        err_printf(err, "%s: %s", "cannot commit the schema migration", sqlite3_errmsg(d->db));
    }
    return rc;
sqlfail:
    err_printf(err, "%s: %s", "schema migration failed", emsg ? emsg : sqlite3_errmsg(d->db));
    sqlite3_free(emsg);
    rollback(d);
    return ST_EIO;
}

static void sq_close(void *db)
{
    struct sq_db *d = db;
    if (!d)
        return;
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(d->stmts[i]);
    for (int i = 0; i < ARCHIVE_SHAPES; i++)
        sqlite3_finalize(d->archive_stmts[i]);
    if (d->db && sqlite3_close(d->db) != SQLITE_OK)
        st_log_error(LOGCTX, "sqlite close: %s", sqlite3_errmsg(d->db));
    st_free(d);
}

/* Runs a PRAGMA and returns its first result column (new string) or NULL. */
static char *pragma(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s = NULL;
    char *out = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK) {
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
            out = st_strdup((const char *)sqlite3_column_text(s, 0));
        else if (rc == SQLITE_DONE)
            out = st_strdup("");
    }
    sqlite3_finalize(s);
    return out;
}

static int sq_open(const char *path, void **out, char **err)
{
    if (!path || !*path) {
        *err = st_strdup("sqlite storage needs a data directory");
        return ST_EINVAL;
    }
    if (mkdirs(path)) {
        err_printf(err, "cannot create data directory %s: %s", path, strerror(errno));
        return ST_EIO;
    }
    struct st_buf file;
    st_buf_init(&file, 8192);
    if (st_buf_printf(&file, "%s/starling.db", path)) {
        st_buf_free(&file);
        *err = st_strdup("data directory path too long");
        return ST_ELIMIT;
    }
    struct sq_db *d = ST_NEW(struct sq_db);
    int rc = sqlite3_open_v2(file.data, &d->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (rc != SQLITE_OK) {
        err_printf(err, "cannot open %s: %s", file.data,
                   d->db ? sqlite3_errmsg(d->db) : "out of memory");
        st_buf_free(&file);
        sq_close(d);
        return ST_EIO;
    }
    (void)chmod(file.data, 0600);
    sqlite3_busy_timeout(d->db, BUSY_TIMEOUT_MS);
    sqlite3_extended_result_codes(d->db, 1);
    /* Switching a new database to WAL needs an exclusive lock and does not wait in the busy
     * handler, so two processes opening a fresh file at once (the CLI next to the server)
     * would fail here: retry for as long as the busy timeout allows. */
    bool wal = false;
    for (int waited = 0; !wal && waited <= BUSY_TIMEOUT_MS; waited += 10) {
        char *mode = pragma(d->db, "PRAGMA journal_mode=WAL");
        wal = mode && strcmp(mode, "wal") == 0;
        st_free(mode);
        if (!wal)
            sqlite3_sleep(10);
    }
    char *sync = NULL, *fk = NULL;
    if (wal) {
        st_free(pragma(d->db, "PRAGMA synchronous=FULL"));
        st_free(pragma(d->db, "PRAGMA foreign_keys=ON"));
        /* Why 512 KiB, not SQLite's 2 MiB: the hot interior B-tree pages fit, per-user rows are
         * read about once per login, and the kernel's page cache holds the file anyway. */
        st_free(pragma(d->db, "PRAGMA cache_size=-" ST_SQLITE_CACHE_KIB));
        sync = pragma(d->db, "PRAGMA synchronous");
        fk = pragma(d->db, "PRAGMA foreign_keys");
    }
    if (!wal || !sync || strcmp(sync, "2") != 0 || !fk || strcmp(fk, "1") != 0) {
        err_printf(err, "cannot configure %s (WAL, synchronous=FULL): %s", file.data,
                   sqlite3_errmsg(d->db));
        st_free(sync);
        st_free(fk);
        st_buf_free(&file);
        sq_close(d);
        return ST_EIO;
    }
    st_free(sync);
    st_free(fk);
    rc = migrate(d, err);
    if (rc) {
        st_buf_free(&file);
        sq_close(d);
        return rc;
    }
    st_log_debug(LOGCTX, "opened %s", file.data);
    st_buf_free(&file);
    *out = d;
    return 0;
}

/* ---- keyval and map ---- */

static int get_value(struct sq_db *d, sqlite3_stmt *s, void **data, size_t *len)
{
    if (!s)
        return ST_EIO;
    int rc = sqlite3_step(s);
    int ret = 0;
    if (rc == SQLITE_ROW)
        *data = column_copy(s, 0, len);
    else if (rc == SQLITE_DONE)
        ret = ST_ENOTFOUND;
    else
        ret = sq_error(d, rc, "get");
    sqlite3_reset(s);
    return ret;
}

static int sq_kv_get(void *db, const char *h, const char *u, const char *st, void **data,
                     size_t *len)
{
    struct sq_db *d = db;
    sqlite3_stmt *s = stmt(d, S_KV_GET);
    if (s)
        bind_hus(s, h, u, st);
    return get_value(d, s, data, len);
}

static int sq_kv_set(void *db, const char *h, const char *u, const char *st, const void *data,
                     size_t len, enum st__kv_mode mode)
{
    struct sq_db *d = db;
    enum stmt_id id = !data ? S_KV_DEL : mode == ST__KV_ADD ? S_KV_ADD : S_KV_PUT;
    sqlite3_stmt *s = stmt(d, id);
    if (!s)
        return ST_EIO;
    bind_hus(s, h, u, st);
    if (data)
        sqlite3_bind_blob64(s, 4, data, len, SQLITE_STATIC);
    int rc = run_done(d, s, "keyval set");
    if (!rc && id == S_KV_ADD && sqlite3_changes(d->db) == 0)
        rc = ST_EEXIST;
    return rc;
}

static int sq_kvmap_get(void *db, const char *h, const char *u, const char *st, const char *k,
                        void **data, size_t *len)
{
    struct sq_db *d = db;
    sqlite3_stmt *s = stmt(d, S_MAP_GET);
    if (s) {
        bind_hus(s, h, u, st);
        sqlite3_bind_text(s, 4, k, -1, SQLITE_STATIC);
    }
    return get_value(d, s, data, len);
}

static int sq_kvmap_set(void *db, const char *h, const char *u, const char *st, const char *k,
                        const void *data, size_t len)
{
    struct sq_db *d = db;
    sqlite3_stmt *s = stmt(d, data ? S_MAP_PUT : S_MAP_DEL);
    if (!s)
        return ST_EIO;
    bind_hus(s, h, u, st);
    sqlite3_bind_text(s, 4, k, -1, SQLITE_STATIC);
    if (data)
        sqlite3_bind_blob64(s, 5, data, len, SQLITE_STATIC);
    return run_done(d, s, "map set");
}

static int sq_kvmap_list(void *db, const char *h, const char *u, const char *st,
                         struct st_kvmap_row **rows, size_t *n)
{
    struct sq_db *d = db;
    sqlite3_stmt *s = stmt(d, S_MAP_LIST);
    *rows = NULL;
    *n = 0;
    if (!s)
        return ST_EIO;
    bind_hus(s, h, u, st);
    size_t cap = 0, k = 0;
    struct st_kvmap_row *r = NULL;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        r = grow(r, &cap, k, sizeof *r);
        r[k].key = column_copy(s, 0, NULL);
        r[k].data = column_copy(s, 1, &r[k].len);
        k++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        st__storage_free_rows(r, k);
        return sq_error(d, rc, "map list");
    }
    *rows = r;
    *n = k;
    return 0;
}

static int sq_delete_user(void *db, const char *h, const char *u)
{
    struct sq_db *d = db;
    static const enum stmt_id dels[] = {S_DEL_KV, S_DEL_MAP, S_DEL_AR};
    int rc = op_begin(d, true);
    for (size_t i = 0; !rc && i < sizeof dels / sizeof dels[0]; i++) {
        sqlite3_stmt *s = stmt(d, dels[i]);
        if (s)
            bind_hus(s, h, u, NULL);
        rc = run_done(d, s, "delete user");
    }
    if (!rc)
        rc = op_commit(d);
    if (rc)
        op_rollback(d);
    return rc;
}

static int sq_users(void *db, const char *h, const char *st, struct st__user_pair **out,
                    size_t *n)
{
    struct sq_db *d = db;
    sqlite3_stmt *s = stmt(d, h ? S_USERS_HOST : S_USERS_ALL);
    *out = NULL;
    *n = 0;
    if (!s)
        return ST_EIO;
    sqlite3_bind_text(s, 1, st, -1, SQLITE_STATIC);
    if (h)
        sqlite3_bind_text(s, 2, h, -1, SQLITE_STATIC);
    size_t cap = 0, k = 0;
    struct st__user_pair *p = NULL;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        p = grow(p, &cap, k, sizeof *p);
        p[k].host = column_copy(s, 0, NULL);
        p[k].user = column_copy(s, 1, NULL);
        k++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        st__storage_free_pairs(p, k);
        return sq_error(d, rc, "list users");
    }
    *out = p;
    *n = k;
    return 0;
}

/* ---- archive ---- */

static int sq_archive_append(void *db, const char *h, const char *u, const char *st,
                             const char *with, int64_t when, const void *data, size_t len,
                             const char *id)
{
    struct sq_db *d = db;
    sqlite3_stmt *s = stmt(d, S_AR_APPEND);
    if (!s)
        return ST_EIO;
    bind_hus(s, h, u, st);
    sqlite3_bind_text(s, 4, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, when);
    if (with)
        sqlite3_bind_text(s, 6, with, -1, SQLITE_STATIC);
    sqlite3_bind_blob64(s, 7, data, len, SQLITE_STATIC);
    return run_done(d, s, "archive append");
}

/* Looks up the position (when, rowid) of item uid within (h, u, st). */
static int find_pos(struct sq_db *d, const char *h, const char *u, const char *st,
                    const char *uid, int64_t *rowid, int64_t *when)
{
    sqlite3_stmt *s = stmt(d, S_AR_FIND);
    if (!s)
        return ST_EIO;
    bind_hus(s, h, u, st);
    sqlite3_bind_text(s, 4, uid, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int ret = 0;
    if (rc == SQLITE_ROW) {
        *rowid = sqlite3_column_int64(s, 0);
        *when = sqlite3_column_int64(s, 1);
    } else if (rc == SQLITE_DONE) {
        ret = ST_ENOTFOUND;
    } else {
        ret = sq_error(d, rc, "archive find");
    }
    sqlite3_reset(s);
    return ret;
}

static unsigned archive_shape(const struct st_archive_query *q, int del)
{
    return (q->with ? 1u : 0u) | (q->start ? 2u : 0u) | (q->end ? 4u : 0u) |
           (q->after ? 8u : 0u) | (q->before ? 16u : 0u) | (q->max ? 32u : 0u) |
           (del ? 64u : 0u) | (q->reverse ? 128u : 0u);
}

/* *out: the cached statement for the query's shape, reset and unbound (prepared on first
 * use). Parameters are numbered the same in every shape (?4 'with' ... ?11 the limit). */
static int archive_stmt(struct sq_db *d, const struct st_archive_query *q, int del,
                        sqlite3_stmt **out)
{
    unsigned shape = archive_shape(q, del);
    sqlite3_stmt *s = d->archive_stmts[shape];
    if (s) {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
        *out = s;
        return 0;
    }
    struct st_buf sql;
    st_buf_init(&sql, 2048);
    const char *dir = q->reverse ? "DESC" : "ASC";
    if (del)
        st_buf_puts(&sql, "DELETE FROM archive WHERE id IN (SELECT id");
    else
        st_buf_puts(&sql, "SELECT uid,\"when\",\"with\",value");
    st_buf_puts(&sql, " FROM archive WHERE host=?1 AND user=?2 AND store=?3");
    if (q->with)
        st_buf_puts(&sql, " AND \"with\"=?4");
    if (q->start)
        st_buf_puts(&sql, " AND \"when\">=?5");
    if (q->end)
        st_buf_puts(&sql, " AND \"when\"<=?6");
    if (q->after)
        st_buf_puts(&sql, " AND (\"when\">?7 OR (\"when\"=?7 AND id>?8))");
    if (q->before)
        st_buf_puts(&sql, " AND (\"when\"<?9 OR (\"when\"=?9 AND id<?10))");
    st_buf_printf(&sql, " ORDER BY \"when\" %s, id %s", dir, dir);
    if (q->max)
        st_buf_puts(&sql, " LIMIT ?11");
    if (del)
        st_buf_puts(&sql, ")");
    int rc = sqlite3_prepare_v3(d->db, sql.data, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL);
    st_buf_free(&sql);
    if (rc != SQLITE_OK)
        return sq_error(d, rc, "archive prepare");
    d->archive_stmts[shape] = s;
    *out = s;
    return 0;
}

static int select_rows(struct sq_db *d, const char *h, const char *u, const char *st,
                       const struct st_archive_query *q, int del,
                       struct st_archive_item **items, size_t *n, int *complete)
{
    int64_t a_id = 0, a_when = 0, b_id = 0, b_when = 0;
    int rc = 0;
    if (q->after)
        rc = find_pos(d, h, u, st, q->after, &a_id, &a_when);
    if (!rc && q->before)
        rc = find_pos(d, h, u, st, q->before, &b_id, &b_when);
    if (rc)
        return rc;

    sqlite3_stmt *s = NULL;
    rc = archive_stmt(d, q, del, &s);
    if (rc)
        return rc;
    bind_hus(s, h, u, st);
    if (q->with)
        sqlite3_bind_text(s, 4, q->with, -1, SQLITE_STATIC);
    if (q->start)
        sqlite3_bind_int64(s, 5, q->start);
    if (q->end)
        sqlite3_bind_int64(s, 6, q->end);
    if (q->after) {
        sqlite3_bind_int64(s, 7, a_when);
        sqlite3_bind_int64(s, 8, a_id);
    }
    if (q->before) {
        sqlite3_bind_int64(s, 9, b_when);
        sqlite3_bind_int64(s, 10, b_id);
    }
    if (q->max) {
        /* one extra row tells whether the page is complete */
        uint64_t lim = del ? q->max : (uint64_t)q->max + 1;
        sqlite3_bind_int64(s, 11, lim > INT64_MAX ? INT64_MAX : (int64_t)lim);
    }
    if (del) {
        rc = sqlite3_step(s);
        rc = rc == SQLITE_DONE ? 0 : sq_error(d, rc, "archive delete");
        sqlite3_reset(s);
        return rc;
    }
    size_t cap = 0, k = 0;
    struct st_archive_item *it = NULL;
    bool more = false;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (q->max && k == q->max) {
            more = true;
            break;
        }
        it = grow(it, &cap, k, sizeof *it);
        it[k].id = column_copy(s, 0, NULL);
        it[k].when = sqlite3_column_int64(s, 1);
        it[k].with = column_str(s, 2);
        it[k].data = column_copy(s, 3, &it[k].len);
        k++;
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        st__storage_free_items(it, k);
        rc = sq_error(d, rc, "archive query");
        sqlite3_reset(s);
        return rc;
    }
    sqlite3_reset(s);
    *items = it;
    *n = k;
    *complete = !more;
    return 0;
}

static int sq_archive_select(void *db, const char *h, const char *u, const char *st,
                             const struct st_archive_query *q, int del,
                             struct st_archive_item **items, size_t *n, int *complete)
{
    struct sq_db *d = db;
    static const struct st_archive_query all = {0};
    if (!q)
        q = &all;
    if (!del) {
        *items = NULL;
        *n = 0;
        *complete = 1;
    }
    /* the id lookups and the select must see one snapshot */
    int rc = op_begin(d, del);
    if (!rc)
        rc = select_rows(d, h, u, st, q, del, items, n, complete);
    if (!rc) {
        rc = op_commit(d);
        if (rc && !del) {
            st__storage_free_items(*items, *n);
            *items = NULL;
            *n = 0;
        }
    }
    if (rc)
        op_rollback(d);
    return rc;
}

static int sq_archive_count(void *db, const char *h, const char *u, const char *st,
                            size_t *count)
{
    struct sq_db *d = db;
    sqlite3_stmt *s = stmt(d, S_AR_COUNT);
    if (!s)
        return ST_EIO;
    bind_hus(s, h, u, st);
    int rc = sqlite3_step(s);
    int ret = 0;
    if (rc == SQLITE_ROW)
        *count = (size_t)sqlite3_column_int64(s, 0);
    else
        ret = sq_error(d, rc, "archive count");
    sqlite3_reset(s);
    return ret;
}

static void sq_release_memory(void *db)
{
    struct sq_db *d = db;
    sqlite3_db_release_memory(d->db);
}

const struct st__storage_driver st__sqlite_driver = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .kv_get = sq_kv_get,
    .kv_set = sq_kv_set,
    .kvmap_get = sq_kvmap_get,
    .kvmap_set = sq_kvmap_set,
    .kvmap_list = sq_kvmap_list,
    .delete_user = sq_delete_user,
    .users = sq_users,
    .archive_append = sq_archive_append,
    .archive_select = sq_archive_select,
    .archive_count = sq_archive_count,
    .batch_begin = sq_batch_begin,
    .batch_end = sq_batch_end,
    .release_memory = sq_release_memory,
};
