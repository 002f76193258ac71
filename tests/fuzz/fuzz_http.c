/* libFuzzer target for the HTTP/1.1 request parser (src/http/http_parse.c,
 * RFC 9112) and the trusted-proxy header walk (src/http/http_proxy.c,
 * RFC 7239). The input is fed to the parser in chunks whose sizes come from
 * the first input byte (so chunk boundaries vary as on a socket), and
 * requests are parsed one after another as on a keep-alive connection.
 * Checked: the parser never reads past the data it was given (ASan), never
 * consumes more than it has, a complete request's body is within the limit,
 * chunked and whole-buffer parsing agree on the outcome, and every parsed
 * request can be run through the proxy resolution.
 *
 * Built with -fsanitize=fuzzer for libFuzzer; with -DST_FUZZ_STANDALONE it
 * becomes a plain program that runs the files (or directories of files)
 * named on its command line, for short regression runs in `make test`. */
#include "base/buf.h"
#include "base/err.h"
#include "base/mem.h"
#include "http/http.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "fuzz_http: check failed: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

static const struct st_http_limits lim = {2048, 32, 4096};

/* Parses all requests in data with the given chunking; returns how many completed and sets
 * *status to the final error status (0 when none). */
static int run(const uint8_t *data, size_t size, size_t step, int *status)
{
    struct st_http_parser p;
    st_http_parser_init(&p, &lim);
    struct st_buf in;
    st_buf_init(&in, 1 << 20);
    size_t fed = 0;
    int done = 0;
    *status = 0;
    while (fed < size || in.len) {
        size_t n = size - fed < step ? size - fed : step;
        st_buf_append(&in, data + fed, n);
        fed += n;
        int rc = st_http_parser_run(&p, in.data ? in.data : "", in.len);
        if (rc < 0) {
            *status = p.status;
            CHECK(p.status >= 400 && p.status < 600);
            break;
        }
        if (rc == 0) {
            CHECK(p.pos <= in.len);
            if (fed == size)
                break;
            continue;
        }
        CHECK(p.pos <= in.len);
        CHECK(p.req.body.len <= lim.max_body_size);
        CHECK(p.req.path && p.req.path[0]);
        char client[64];
        bool https;
        static char *tp[] = {"127.0.0.0/8", "::1", "10.0.0.0/8"};
        struct st_strlist trusted = {tp, 3};
        st_http_resolve_client(&trusted, "127.0.0.1", &p.req, client, sizeof client, &https);
        CHECK(strlen(client) < sizeof client);
        done++;
        st_buf_consume(&in, p.pos);
        st_http_parser_reset(&p);
    }
    st_http_req_clear(&p.req);
    st_buf_free(&in);
    return done;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return 0;
    size_t step = (size_t)(data[0] % 64) + 1;
    int s1, s2;
    int a = run(data + 1, size - 1, step, &s1);
    int b = run(data + 1, size - 1, size, &s2);
    CHECK(a == b);
    CHECK(s1 == s2);
    return 0;
}

#define ST_FUZZ_NAME "fuzz_http"
#include "standalone.h"
