/* Measurement helpers for the load generator and the relay: a fixed-size
 * latency histogram (1 µs steps below 10 ms, 100 µs steps up to 100 s) that
 * answers percentiles without keeping samples, a monotonic clock, and a
 * reader for a server process's CPU time and resident memory from
 * /proc/PID/stat and /proc/PID/status (proc(5)). */
#ifndef ST_BENCH_LG_UTIL_H
#define ST_BENCH_LG_UTIL_H

#include <stdint.h>
#include <sys/types.h>

#define ST_BENCH_HIST_FINE 10000   /* 1 µs buckets: 0 .. 10 ms */
#define ST_BENCH_HIST_COARSE 1000000 /* 100 µs buckets: 10 ms .. 100 s */

struct st_bench_hist {
    uint32_t fine[ST_BENCH_HIST_FINE];
    uint32_t coarse[ST_BENCH_HIST_COARSE];
    uint64_t count;
    uint64_t max_us;
    double sum_us;
};

/* What a server process has used so far. */
struct st_bench_proc {
    double cpu_s;  /* user + system time */
    long rss_kib;  /* VmRSS */
    int ok;        /* 1 if /proc could be read */
};

/* Returns CLOCK_MONOTONIC in nanoseconds. */
uint64_t st_bench_now_ns(void);

/* Returns a new zeroed histogram (caller frees with st_free). */
struct st_bench_hist *st_bench_hist_new(void);

/* Records one latency in microseconds. */
void st_bench_hist_add(struct st_bench_hist *h, uint64_t us);

/* Returns the latency (µs) below which fraction q (0..1) of samples lie; 0
 * when empty. */
double st_bench_hist_pct(const struct st_bench_hist *h, double q);

/* Reads pid's CPU time and RSS; out->ok is 0 if pid is 0 or unreadable. */
void st_bench_proc_sample(pid_t pid, struct st_bench_proc *out);

#endif
