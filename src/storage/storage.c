/* The storage front end (contract in storage.h; Prosody's keyval/map/archive shapes): argument
 * checks, one dedicated worker thread per open storage that runs every asynchronous operation
 * in submission order, and completion delivery on the loop through a uv_async_t. A single
 * worker (instead of uv_queue_work on the shared pool) keeps per-user write order without any
 * bookkeeping and never lets slow disk I/O starve DNS or password hashing of pool threads.
 * Driver calls, from the worker or from synchronous callers, are serialised by one mutex. */
#include "storage/storage.h"

#include <stdbool.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/rand.h"
#include "storage/driver.h"

/* Most operations one worker round runs (and commits together): bounds commit latency. */
#define BATCH_MAX 256

enum op_kind {
    OP_KV_GET,
    OP_KV_SET,
    OP_MAP_GET,
    OP_MAP_SET,
    OP_MAP_LIST,
    OP_DEL_USER,
    OP_AR_APPEND,
    OP_AR_QUERY,
    OP_AR_DELETE,
    OP_AR_COUNT,
    OP_RELEASE,
};

struct st_op {
    struct st_op *next;
    enum op_kind kind;
    char *host, *user, *store, *key, *with;
    void *data; /* request value (owned copy), NULL = delete for sets */
    size_t len;
    int64_t when;
    bool has_q;
    struct st_archive_query q; /* string fields point into the owned copies below */
    char *q_with, *q_before, *q_after;
    /* results, filled on the worker */
    int rc;
    void *rdata;
    size_t rlen;
    struct st_kvmap_row *rows;
    struct st_archive_item *items;
    size_t n;
    int complete;
    char id[33];
    union {
        st_storage_get_cb get;
        st_storage_done_cb done;
        st_kvmap_list_cb list;
        st_archive_append_cb append;
        st_archive_query_cb query;
    } cb;
    void *ud;
};

struct st_storage {
    const struct st__storage_driver *drv;
    void *db;
    uv_mutex_t dbmu; /* serialises driver calls */
    uv_loop_t *loop; /* NULL: synchronous use only, no worker */
    /* queue state, guarded by mu */
    uv_mutex_t mu;
    uv_cond_t cond;
    struct st_op *pend_head, *pend_tail;
    struct st_op *done_head, *done_tail;
    bool stop;
    uv_thread_t thread;
    uv_async_t *async; /* separately allocated: freed by its close callback */
    /* loop-thread state */
    size_t inflight;   /* submitted, callback not yet run */
    unsigned depth;    /* nesting of delivery (callbacks may re-enter) */
    bool closing;      /* no new submissions */
    bool close_deferred;
    bool close_started;
};

/* ---- result helpers shared with the drivers ---- */

void st__storage_free_rows(struct st_kvmap_row *rows, size_t n)
{
    if (!rows)
        return;
    for (size_t i = 0; i < n; i++) {
        st_free((char *)rows[i].key);
        st_free((void *)rows[i].data);
    }
    st_free(rows);
}

void st__storage_free_items(struct st_archive_item *items, size_t n)
{
    if (!items)
        return;
    for (size_t i = 0; i < n; i++) {
        st_free((char *)items[i].id);
        st_free((char *)items[i].with);
        st_free((void *)items[i].data);
    }
    st_free(items);
}

void st__storage_free_pairs(struct st__user_pair *pairs, size_t n)
{
    if (!pairs)
        return;
    for (size_t i = 0; i < n; i++) {
        st_free(pairs[i].host);
        st_free(pairs[i].user);
    }
    st_free(pairs);
}

/* ---- argument checks ---- */

static int check_name(const char *s)
{
    if (!s)
        return ST_EINVAL;
    if (strlen(s) > ST_STORAGE_NAME_MAX)
        return ST_ELIMIT;
    return 0;
}

static int check_hus(const char *h, const char *u, const char *s)
{
    int rc = check_name(h);
    if (!rc)
        rc = check_name(u);
    if (!rc && s)
        rc = check_name(s);
    return rc;
}

static int check_value(const void *data, size_t len)
{
    if (!data && len)
        return ST_EINVAL;
    return len > ST_STORAGE_VALUE_MAX ? ST_ELIMIT : 0;
}

static int check_query(const struct st_archive_query *q)
{
    if (!q)
        return 0;
    if ((q->with && strlen(q->with) > ST_STORAGE_NAME_MAX) ||
        (q->before && strlen(q->before) > ST_STORAGE_NAME_MAX) ||
        (q->after && strlen(q->after) > ST_STORAGE_NAME_MAX))
        return ST_ELIMIT;
    return 0;
}

/* ---- open / close ---- */

static void free_op(struct st_op *op)
{
    st_free(op->host);
    st_free(op->user);
    st_free(op->store);
    st_free(op->key);
    st_free(op->with);
    st_free(op->data);
    st_free(op->q_with);
    st_free(op->q_before);
    st_free(op->q_after);
    st_free(op->rdata);
    st__storage_free_rows(op->rows, op->kind == OP_MAP_LIST ? op->n : 0);
    st__storage_free_items(op->items, op->kind == OP_AR_QUERY ? op->n : 0);
    st_free(op);
}

/* Runs one operation on the driver; the caller holds dbmu. */
static void exec_op(struct st_storage *st, struct st_op *op)
{
    const struct st__storage_driver *d = st->drv;
    const struct st_archive_query *q = op->has_q ? &op->q : NULL;
    size_t count = 0;
    switch (op->kind) {
    case OP_KV_GET:
        op->rc = d->kv_get(st->db, op->host, op->user, op->store, &op->rdata, &op->rlen);
        break;
    case OP_KV_SET:
        op->rc = d->kv_set(st->db, op->host, op->user, op->store, op->data, op->len,
                           ST__KV_PUT);
        break;
    case OP_MAP_GET:
        op->rc = d->kvmap_get(st->db, op->host, op->user, op->store, op->key, &op->rdata,
                              &op->rlen);
        break;
    case OP_MAP_SET:
        op->rc = d->kvmap_set(st->db, op->host, op->user, op->store, op->key, op->data,
                              op->len);
        break;
    case OP_MAP_LIST:
        op->rc = d->kvmap_list(st->db, op->host, op->user, op->store, &op->rows, &op->n);
        break;
    case OP_DEL_USER:
        op->rc = d->delete_user(st->db, op->host, op->user);
        break;
    case OP_AR_APPEND:
        op->rc = st_rand_id(op->id, sizeof op->id, 128);
        if (!op->rc)
            op->rc = d->archive_append(st->db, op->host, op->user, op->store, op->with,
                                       op->when, op->data, op->len, op->id);
        break;
    case OP_AR_QUERY:
        op->rc = d->archive_select(st->db, op->host, op->user, op->store, q, 0, &op->items,
                                   &op->n, &op->complete);
        break;
    case OP_AR_DELETE:
        op->rc = d->archive_select(st->db, op->host, op->user, op->store, q, 1, NULL, NULL,
                                   NULL);
        break;
    case OP_AR_COUNT:
        op->rc = d->archive_count(st->db, op->host, op->user, op->store, &count);
        if (!op->rc)
            op->rc = count > INT32_MAX ? INT32_MAX : (int)count;
        break;
    case OP_RELEASE:
        if (d->release_memory)
            d->release_memory(st->db);
        op->rc = 0;
        break;
    }
}

static bool is_write(const struct st_op *op)
{
    return op->kind == OP_KV_SET || op->kind == OP_MAP_SET || op->kind == OP_DEL_USER ||
           op->kind == OP_AR_APPEND || op->kind == OP_AR_DELETE;
}

/* Runs a chain of operations. Several writes share one transaction (group commit: one
 * fsync for the lot instead of one each), which is what lets a durable store keep up with
 * a busy server. If that commit fails, every operation of the chain reports the error:
 * none of its writes happened, and its reads may have seen them. */
static void exec_chain(struct st_storage *st, struct st_op *ops)
{
    const struct st__storage_driver *d = st->drv;
    size_t writes = 0;
    for (struct st_op *op = ops; op; op = op->next)
        writes += is_write(op);
    uv_mutex_lock(&st->dbmu);
    bool batch = writes > 1 && d->batch_begin && d->batch_begin(st->db) == 0;
    for (struct st_op *op = ops; op; op = op->next)
        exec_op(st, op);
    if (batch) {
        int rc = d->batch_end(st->db);
        for (struct st_op *op = ops; rc && op; op = op->next)
            op->rc = rc;
    }
    uv_mutex_unlock(&st->dbmu);
}

static void worker_main(void *arg)
{
    struct st_storage *st = arg;
    uv_mutex_lock(&st->mu);
    for (;;) {
        while (!st->pend_head && !st->stop)
            uv_cond_wait(&st->cond, &st->mu);
        struct st_op *head = st->pend_head, *tail = head;
        if (!head)
            break; /* stopping and drained */
        /* take up to BATCH_MAX queued operations, in order */
        for (size_t n = 1; n < BATCH_MAX && tail->next; n++)
            tail = tail->next;
        st->pend_head = tail->next;
        if (!st->pend_head)
            st->pend_tail = NULL;
        tail->next = NULL;
        uv_mutex_unlock(&st->mu);

        exec_chain(st, head);

        uv_mutex_lock(&st->mu);
        if (st->done_tail)
            st->done_tail->next = head;
        else
            st->done_head = head;
        st->done_tail = tail;
        uv_async_send(st->async);
    }
    uv_mutex_unlock(&st->mu);
}

static void run_callback(struct st_op *op)
{
    static const char empty[1] = "";
    switch (op->kind) {
    case OP_KV_GET:
    case OP_MAP_GET:
        if (op->cb.get)
            op->cb.get(op->ud, op->rc, op->rc ? NULL : (op->rdata ? op->rdata : empty),
                       op->rc ? 0 : op->rlen);
        break;
    case OP_MAP_LIST:
        if (op->cb.list)
            op->cb.list(op->ud, op->rc, op->rows, op->rc ? 0 : op->n);
        break;
    case OP_AR_APPEND:
        if (op->cb.append)
            op->cb.append(op->ud, op->rc, op->rc ? NULL : op->id);
        break;
    case OP_AR_QUERY:
        if (op->cb.query)
            op->cb.query(op->ud, op->rc, op->items, op->rc ? 0 : op->n,
                         op->rc ? 0 : op->complete);
        break;
    default:
        if (op->cb.done)
            op->cb.done(op->ud, op->rc);
        break;
    }
}

/* Runs completed callbacks one at a time (so a callback may submit or close). Loop thread. */
static void deliver(struct st_storage *st)
{
    st->depth++;
    for (;;) {
        uv_mutex_lock(&st->mu);
        struct st_op *op = st->done_head;
        if (op) {
            st->done_head = op->next;
            if (!st->done_head)
                st->done_tail = NULL;
        }
        uv_mutex_unlock(&st->mu);
        if (!op)
            break;
        run_callback(op);
        free_op(op);
        st->inflight--;
        if (st->inflight == 0 && !st->close_started)
            uv_unref((uv_handle_t *)st->async);
    }
    st->depth--;
}

static void do_close(struct st_storage *st);

static void on_async(uv_async_t *h)
{
    struct st_storage *st = h->data;
    deliver(st);
    if (st->close_deferred && !st->close_started && st->depth == 0)
        do_close(st);
}

static void on_async_closed(uv_handle_t *h)
{
    st_free(h);
}

static void do_close(struct st_storage *st)
{
    st->close_started = true;
    st->closing = true;
    if (st->loop) {
        uv_mutex_lock(&st->mu);
        st->stop = true;
        uv_cond_signal(&st->cond);
        uv_mutex_unlock(&st->mu);
        uv_thread_join(&st->thread);
        deliver(st); /* everything the worker finished, in order */
        st->async->data = NULL;
        uv_close((uv_handle_t *)st->async, on_async_closed);
        uv_cond_destroy(&st->cond);
    }
    uv_mutex_destroy(&st->mu);
    st->drv->close(st->db);
    uv_mutex_destroy(&st->dbmu);
    st_free(st);
}

void st_storage_close(struct st_storage *st)
{
    if (!st || st->close_started)
        return;
    st->closing = true;
    if (st->depth > 0) {
        st->close_deferred = true; /* finish after the running callback returns */
        return;
    }
    do_close(st);
}

static void set_err(char **err, const char *msg)
{
    if (err)
        *err = st_strdup(msg);
}

int st_storage_open(uv_loop_t *loop, const char *driver, const char *path,
                    struct st_storage **out, char **err)
{
    const struct st__storage_driver *drv = NULL;
    if (err)
        *err = NULL;
    *out = NULL;
    if (driver && strcmp(driver, "sqlite") == 0)
        drv = &st__sqlite_driver;
    else if (driver && strcmp(driver, "memory") == 0)
        drv = &st__memory_driver;
    if (!drv) {
        set_err(err, "unknown storage driver (expected sqlite or memory)");
        return ST_EINVAL;
    }
    struct st_storage *st = ST_NEW(struct st_storage);
    st->drv = drv;
    st->loop = loop;
    char *derr = NULL;
    int rc = drv->open(path, &st->db, &derr);
    if (rc) {
        if (err)
            *err = derr;
        else
            st_free(derr);
        st_free(st);
        return rc;
    }
    if (uv_mutex_init(&st->dbmu) || uv_mutex_init(&st->mu)) {
        set_err(err, "cannot create mutex");
        drv->close(st->db);
        st_free(st);
        return ST_EIO;
    }
    if (loop) {
        st->async = ST_NEW(uv_async_t);
        if (uv_cond_init(&st->cond) || uv_async_init(loop, st->async, on_async)) {
            set_err(err, "cannot create the storage completion handle");
            goto fail;
        }
        st->async->data = st;
        uv_unref((uv_handle_t *)st->async);
        if (uv_thread_create(&st->thread, worker_main, st)) {
            uv_close((uv_handle_t *)st->async, on_async_closed);
            st->async = NULL;
            uv_cond_destroy(&st->cond);
            set_err(err, "cannot start the storage thread");
            goto fail;
        }
    }
    *out = st;
    return 0;
fail:
    st_free(st->async); /* only reached before uv_async_init succeeded or after handing off */
    uv_mutex_destroy(&st->mu);
    uv_mutex_destroy(&st->dbmu);
    drv->close(st->db);
    st_free(st);
    return ST_EIO;
}

/* ---- asynchronous submission ---- */

static int submit_check(struct st_storage *st)
{
    if (!st || !st->loop)
        return ST_EINVAL;
    if (st->closing)
        return ST_ECLOSED;
    if (st->inflight >= ST_STORAGE_QUEUE_MAX)
        return ST_ELIMIT;
    return 0;
}

static struct st_op *op_new(enum op_kind kind, const char *h, const char *u, const char *s,
                            void *ud)
{
    struct st_op *op = ST_NEW(struct st_op);
    op->kind = kind;
    op->host = st_strdup(h);
    op->user = st_strdup(u);
    op->store = st_strdup(s);
    op->ud = ud;
    return op;
}

static void op_set_data(struct st_op *op, const void *data, size_t len)
{
    if (!data)
        return;
    op->data = st_malloc(len ? len : 1);
    if (len)
        memcpy(op->data, data, len);
    op->len = len;
}

static void op_set_query(struct st_op *op, const struct st_archive_query *q)
{
    if (!q)
        return;
    op->has_q = true;
    op->q = *q;
    op->q_with = st_strdup(q->with);
    op->q_before = st_strdup(q->before);
    op->q_after = st_strdup(q->after);
    op->q.with = op->q_with;
    op->q.before = op->q_before;
    op->q.after = op->q_after;
}

static void submit(struct st_storage *st, struct st_op *op)
{
    if (st->inflight++ == 0)
        uv_ref((uv_handle_t *)st->async);
    uv_mutex_lock(&st->mu);
    if (st->pend_tail)
        st->pend_tail->next = op;
    else
        st->pend_head = op;
    st->pend_tail = op;
    uv_cond_signal(&st->cond);
    uv_mutex_unlock(&st->mu);
}

/* Checks an asynchronous call on (host, user, store), store required: 0, or the error the
 * call returns (nothing is queued then). */
static int check_op(struct st_storage *st, const char *host, const char *user, const char *store)
{
    int rc = submit_check(st);
    if (!rc && !store)
        rc = ST_EINVAL;
    if (!rc)
        rc = check_hus(host, user, store);
    return rc;
}

int st_storage_release_memory(struct st_storage *st, st_storage_done_cb cb, void *ud)
{
    int rc = submit_check(st);
    if (rc)
        return rc;
    /* On the worker, in order: the driver's cache belongs to the worker's connection. */
    struct st_op *op = op_new(OP_RELEASE, NULL, NULL, NULL, ud);
    op->cb.done = cb;
    submit(st, op);
    return 0;
}

int st_kv_get(struct st_storage *st, const char *host, const char *user, const char *store,
              st_storage_get_cb cb, void *ud)
{
    int rc = check_op(st, host, user, store);
    if (rc)
        return rc;
    struct st_op *op = op_new(OP_KV_GET, host, user, store, ud);
    op->cb.get = cb;
    submit(st, op);
    return 0;
}

int st_kv_set(struct st_storage *st, const char *host, const char *user, const char *store,
              const void *data, size_t len, st_storage_done_cb cb, void *ud)
{
    int rc = check_op(st, host, user, store);
    if (!rc)
        rc = check_value(data, data ? len : 0);
    if (rc)
        return rc;
    struct st_op *op = op_new(OP_KV_SET, host, user, store, ud);
    op_set_data(op, data, len);
    op->cb.done = cb;
    submit(st, op);
    return 0;
}

int st_kvmap_get(struct st_storage *st, const char *host, const char *user, const char *store,
                 const char *key, st_storage_get_cb cb, void *ud)
{
    int rc = check_op(st, host, user, store);
    if (!rc)
        rc = check_name(key);
    if (rc)
        return rc;
    struct st_op *op = op_new(OP_MAP_GET, host, user, store, ud);
    op->key = st_strdup(key);
    op->cb.get = cb;
    submit(st, op);
    return 0;
}

int st_kvmap_set(struct st_storage *st, const char *host, const char *user, const char *store,
                 const char *key, const void *data, size_t len, st_storage_done_cb cb, void *ud)
{
    int rc = check_op(st, host, user, store);
    if (!rc)
        rc = check_name(key);
    if (!rc)
        rc = check_value(data, data ? len : 0);
    if (rc)
        return rc;
    struct st_op *op = op_new(OP_MAP_SET, host, user, store, ud);
    op->key = st_strdup(key);
    op_set_data(op, data, len);
    op->cb.done = cb;
    submit(st, op);
    return 0;
}

int st_kvmap_list(struct st_storage *st, const char *host, const char *user, const char *store,
                  st_kvmap_list_cb cb, void *ud)
{
    int rc = check_op(st, host, user, store);
    if (rc)
        return rc;
    struct st_op *op = op_new(OP_MAP_LIST, host, user, store, ud);
    op->cb.list = cb;
    submit(st, op);
    return 0;
}

int st_kv_delete_user(struct st_storage *st, const char *host, const char *user,
                      st_storage_done_cb cb, void *ud)
{
    int rc = submit_check(st);
    if (!rc)
        rc = check_hus(host, user, NULL);
    if (rc)
        return rc;
    struct st_op *op = op_new(OP_DEL_USER, host, user, NULL, ud);
    op->cb.done = cb;
    submit(st, op);
    return 0;
}

int st_archive_append(struct st_storage *st, const char *host, const char *user, const char *store,
                      const char *with, int64_t when, const void *data, size_t len,
                      st_archive_append_cb cb, void *ud)
{
    /* data NULL is refused like a NULL store, before the name checks */
    int rc = check_op(st, host, user, data ? store : NULL);
    if (!rc && with)
        rc = check_name(with);
    if (!rc)
        rc = check_value(data, len);
    if (rc)
        return rc;
    struct st_op *op = op_new(OP_AR_APPEND, host, user, store, ud);
    op->with = st_strdup(with);
    op->when = when;
    op_set_data(op, data, len);
    op->cb.append = cb;
    submit(st, op);
    return 0;
}

/* Checks an archive call with query q (may be NULL) and returns its new operation. */
static int archive_op(struct st_storage *st, enum op_kind kind, const char *host,
                      const char *user, const char *store, const struct st_archive_query *q,
                      struct st_op **out, void *ud)
{
    int rc = check_op(st, host, user, store);
    if (!rc)
        rc = check_query(q);
    if (rc)
        return rc;
    struct st_op *op = op_new(kind, host, user, store, ud);
    op_set_query(op, q);
    *out = op;
    return 0;
}

int st_archive_query(struct st_storage *st, const char *host, const char *user, const char *store,
                     const struct st_archive_query *q, st_archive_query_cb cb, void *ud)
{
    struct st_op *op = NULL;
    int rc = archive_op(st, OP_AR_QUERY, host, user, store, q, &op, ud);
    if (rc)
        return rc;
    op->cb.query = cb;
    submit(st, op);
    return 0;
}

int st_archive_delete(struct st_storage *st, const char *host, const char *user, const char *store,
                      const struct st_archive_query *q, st_storage_done_cb cb, void *ud)
{
    struct st_op *op = NULL;
    int rc = archive_op(st, OP_AR_DELETE, host, user, store, q, &op, ud);
    if (rc)
        return rc;
    op->cb.done = cb;
    submit(st, op);
    return 0;
}

int st_archive_count(struct st_storage *st, const char *host, const char *user, const char *store,
                     st_storage_done_cb cb, void *ud)
{
    struct st_op *op = NULL;
    int rc = archive_op(st, OP_AR_COUNT, host, user, store, NULL, &op, ud);
    if (rc)
        return rc;
    op->cb.done = cb;
    submit(st, op);
    return 0;
}

/* ---- synchronous calls ---- */

int st_kv_get_sync(struct st_storage *st, const char *host, const char *user, const char *store,
                   void **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    if (!st || !store)
        return ST_EINVAL;
    int rc = check_hus(host, user, store);
    if (rc)
        return rc;
    uv_mutex_lock(&st->dbmu);
    rc = st->drv->kv_get(st->db, host, user, store, data, len);
    uv_mutex_unlock(&st->dbmu);
    return rc;
}

static int kv_set_sync(struct st_storage *st, const char *host, const char *user,
                       const char *store, const void *data, size_t len, enum st__kv_mode mode)
{
    if (!st || !store)
        return ST_EINVAL;
    int rc = check_hus(host, user, store);
    if (!rc)
        rc = check_value(data, data ? len : 0);
    if (rc)
        return rc;
    uv_mutex_lock(&st->dbmu);
    rc = st->drv->kv_set(st->db, host, user, store, data, data ? len : 0, mode);
    uv_mutex_unlock(&st->dbmu);
    return rc;
}

int st_kv_set_sync(struct st_storage *st, const char *host, const char *user, const char *store,
                   const void *data, size_t len)
{
    return kv_set_sync(st, host, user, store, data, len, ST__KV_PUT);
}

int st_kv_add_sync(struct st_storage *st, const char *host, const char *user, const char *store,
                   const void *data, size_t len)
{
    if (!data)
        return ST_EINVAL;
    return kv_set_sync(st, host, user, store, data, len, ST__KV_ADD);
}

int st_kv_users_sync(struct st_storage *st, const char *host, const char *store,
                     void (*fn)(void *ud, const char *host, const char *user), void *ud)
{
    if (!st || !store || !fn)
        return ST_EINVAL;
    int rc = check_name(store);
    if (!rc && host)
        rc = check_name(host);
    if (rc)
        return rc;
    struct st__user_pair *pairs = NULL;
    size_t n = 0;
    uv_mutex_lock(&st->dbmu);
    rc = st->drv->users(st->db, host, store, &pairs, &n);
    uv_mutex_unlock(&st->dbmu);
    /* fn runs without the lock so it may call back into the storage */
    for (size_t i = 0; !rc && i < n; i++)
        fn(ud, pairs[i].host, pairs[i].user);
    st__storage_free_pairs(pairs, n);
    return rc;
}

int st_kv_delete_user_sync(struct st_storage *st, const char *host, const char *user)
{
    if (!st)
        return ST_EINVAL;
    int rc = check_hus(host, user, NULL);
    if (rc)
        return rc;
    uv_mutex_lock(&st->dbmu);
    rc = st->drv->delete_user(st->db, host, user);
    uv_mutex_unlock(&st->dbmu);
    return rc;
}
