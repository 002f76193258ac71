/* Latency histogram, monotonic clock and /proc sampling (proc(5): fields 14
 * and 15 of /proc/PID/stat are utime and stime in clock ticks; VmRSS in
 * /proc/PID/status is the resident set in KiB) for the load generator. */
#include "lg_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/mem.h"

uint64_t st_bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct st_bench_hist *st_bench_hist_new(void)
{
    return st_calloc(1, sizeof(struct st_bench_hist));
}

void st_bench_hist_add(struct st_bench_hist *h, uint64_t us)
{
    if (us < ST_BENCH_HIST_FINE) {
        h->fine[us]++;
    } else {
        uint64_t b = (us - ST_BENCH_HIST_FINE) / 100;
        h->coarse[b < ST_BENCH_HIST_COARSE ? b : ST_BENCH_HIST_COARSE - 1]++;
    }
    h->count++;
    h->sum_us += (double)us;
    if (us > h->max_us)
        h->max_us = us;
}

double st_bench_hist_pct(const struct st_bench_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t want = (uint64_t)(q * (double)h->count);
    if (want >= h->count)
        want = h->count - 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < ST_BENCH_HIST_FINE; i++) {
        seen += h->fine[i];
        if (seen > want)
            return (double)i;
    }
    for (size_t i = 0; i < ST_BENCH_HIST_COARSE; i++) {
        seen += h->coarse[i];
        if (seen > want)
            return (double)(ST_BENCH_HIST_FINE + i * 100 + 50);
    }
    return (double)h->max_us;
}

void st_bench_proc_sample(pid_t pid, struct st_bench_proc *out)
{
    memset(out, 0, sizeof *out);
    if (pid <= 0)
        return;
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    /* The command name (field 2) may contain spaces; count fields after ')'. */
    char *p = strrchr(line, ')');
    if (!p)
        return;
    p++;
    unsigned long ut = 0, st = 0;
    for (int field = 3; field <= 15 && *p; field++) {
        while (*p == ' ')
            p++;
        char *end = NULL;
        unsigned long v = strtoul(p, &end, 10);
        if (field == 14)
            ut = v;
        if (field == 15)
            st = v;
        p = end && end != p ? end : p + strcspn(p, " ");
    }
    out->cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            out->rss_kib = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    out->ok = 1;
}
