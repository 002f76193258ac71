/* Error codes shared by every layer: functions return 0 on success or a
 * negative ST_E* value, so callers can propagate without translating. */
#ifndef ST_BASE_ERR_H
#define ST_BASE_ERR_H

enum {
    ST_OK = 0,
    ST_ENOMEM = -1,    /* allocation failed */
    ST_EINVAL = -2,    /* malformed input or argument */
    ST_ELIMIT = -3,    /* a configured bound was exceeded */
    ST_EIO = -4,       /* I/O or library failure */
    ST_ENOTFOUND = -5, /* the thing asked for does not exist */
    ST_EEXIST = -6,    /* the thing to create already exists */
    ST_EAGAIN = -7,    /* try again later (busy, not ready) */
    ST_ECLOSED = -8,   /* the connection or object is closing */
    ST_EPERM = -9,     /* not permitted */
};

/* Returns a static, human-readable name for an ST_E* code. */
const char *st_strerror(int err);

#endif
