/* Leveled logging to stderr, one line per event, journald-friendly: each
 * line starts with a syslog priority prefix "<N>" when stderr is not a
 * terminal, so journald keeps the level. Never pass secrets (passwords,
 * SASL payloads, keys) to these functions. */
#ifndef ST_BASE_LOG_H
#define ST_BASE_LOG_H

enum st_log_level {
    ST_LOG_ERROR = 3,
    ST_LOG_WARN = 4,
    ST_LOG_INFO = 6,
    ST_LOG_DEBUG = 7,
};

/* Sets the most verbose level printed (default ST_LOG_INFO). Loop thread or before start. */
void st_log_set_level(enum st_log_level level);
/* Parses "error", "warn", "info", "debug"; returns 0 and sets *out, or ST_EINVAL. */
int st_log_level_parse(const char *name, enum st_log_level *out);
/* Returns nonzero when messages at level would be printed. */
int st_log_enabled(enum st_log_level level);
/* Logs one line. ctx names where it happened ("c2s", a host, a session id);
 * may be NULL. Any thread (lines are written with one write(2)). */
void st_log(enum st_log_level level, const char *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define st_log_error(ctx, ...) st_log(ST_LOG_ERROR, ctx, __VA_ARGS__)
#define st_log_warn(ctx, ...) st_log(ST_LOG_WARN, ctx, __VA_ARGS__)
#define st_log_info(ctx, ...) st_log(ST_LOG_INFO, ctx, __VA_ARGS__)
#define st_log_debug(ctx, ...)                                                 \
    do {                                                                       \
        if (st_log_enabled(ST_LOG_DEBUG))                                      \
            st_log(ST_LOG_DEBUG, ctx, __VA_ARGS__);                            \
    } while (0)

#endif
