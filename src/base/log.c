/* Leveled stderr logging (see log.h). A line is formatted into a bounded
 * stack buffer and written with a single write(2) so lines from worker
 * threads never interleave. Control characters are escaped so a peer
 * cannot forge log lines. */
#include "base/log.h"
#include "base/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum st_log_level g_level = ST_LOG_INFO;

void st_log_set_level(enum st_log_level level)
{
    g_level = level;
}

int st_log_enabled(enum st_log_level level)
{
    return level <= g_level;
}

int st_log_level_parse(const char *name, enum st_log_level *out)
{
    static const struct { const char *n; enum st_log_level l; } names[] = {
        {"error", ST_LOG_ERROR}, {"warn", ST_LOG_WARN},
        {"info", ST_LOG_INFO}, {"debug", ST_LOG_DEBUG},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(name, names[i].n) == 0) {
            *out = names[i].l;
            return 0;
        }
    }
    return ST_EINVAL;
}

static const char *level_name(enum st_log_level l)
{
    switch (l) {
    case ST_LOG_ERROR: return "error";
    case ST_LOG_WARN: return "warn";
    case ST_LOG_INFO: return "info";
    default: return "debug";
    }
}

void st_log(enum st_log_level level, const char *ctx, const char *fmt, ...)
{
    if (level > g_level)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;

    char line[4096];
    size_t len = 0;
    int tty = isatty(2);
    if (!tty) {
        len += (size_t)snprintf(line, sizeof line, "<%d>", (int)level);
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        len += strftime(line, sizeof line, "%H:%M:%S ", &tm);
    }
    len += (size_t)snprintf(line + len, sizeof line - len, "%s %s: ", level_name(level),
                            ctx ? ctx : "starling");
    for (const char *p = msg; *p && len < sizeof line - 8; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f) {
            len += (size_t)snprintf(line + len, sizeof line - len, "\\x%02x", c);
        } else {
            line[len++] = (char)c;
        }
    }
    line[len++] = '\n';
    ssize_t w = write(2, line, len);
    (void)w;
}
