/* A strict, bounded, incremental HTTP/1.1 request parser (RFC 9112): the
 * request line (origin-form targets only, HTTP/1.0 and HTTP/1.1), header
 * fields (count and total size bounded, no obsolete line folding, no
 * control characters, no whitespace before the colon), the message body
 * framed by Content-Length or by chunked transfer coding (RFC 9112 §7.1,
 * trailers read and dropped), keep-alive and Upgrade. Requests carrying both
 * Content-Length and Transfer-Encoding, several different Content-Lengths,
 * or a transfer coding other than chunked are refused (RFC 9112 §6.1,
 * §6.3: the classic request-smuggling shapes). Pure logic: no I/O, so the
 * unit tests and the fuzz target drive it directly. */
#ifndef ST_HTTP_PARSE_H
#define ST_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

struct st_http_limits {
    size_t max_header_size; /* request line + header fields, bytes */
    size_t max_headers;     /* header field count */
    size_t max_body_size;   /* decoded body bytes */
};

struct st_http_header {
    char *name;  /* lower-cased */
    char *value; /* leading/trailing whitespace removed */
};

/* One parsed request. Strings are owned by the request (st_http_req_clear frees them). */
struct st_http_req {
    char method[16];
    char *target; /* the request-target as sent ("/http-bind?x=1") */
    char *path;   /* target without the query */
    char *query;  /* after '?', or NULL */
    int minor;    /* HTTP/1.<minor> */
    struct st_http_header *headers;
    size_t nheaders;
    struct st_buf body;
    bool keep_alive; /* the connection may carry another request after this one */
    bool upgrade;    /* Connection: upgrade with an Upgrade header */
};

enum st_http_pstate { ST_HP_HEAD, ST_HP_BODY, ST_HP_CHUNK_SIZE, ST_HP_CHUNK_DATA,
                      ST_HP_CHUNK_CRLF, ST_HP_TRAILER, ST_HP_DONE };

struct st_http_parser {
    struct st_http_limits lim;
    enum st_http_pstate state;
    size_t pos;       /* input bytes consumed by this request so far */
    size_t scan;      /* header phase: where the search for the blank line resumes */
    uint64_t left;    /* body / chunk bytes still expected */
    size_t trailer;   /* trailer bytes seen */
    int status;       /* the HTTP status to answer with after an error */
    struct st_http_req req;
};

/* Prepares p for a new request with the given limits (copied). */
void st_http_parser_init(struct st_http_parser *p, const struct st_http_limits *lim);
/* Frees the request being built and resets p for the next request (limits kept). */
void st_http_parser_reset(struct st_http_parser *p);
/* Examines data[0..len): the connection's buffered input, of which p->pos bytes were
 * consumed by earlier calls for the same request (pass the same buffer, grown). Returns 1
 * when a request is complete (p->req holds it; p->pos is its length in data), 0 when more
 * input is needed, or ST_EINVAL with p->status set (400, 413, 414, 431, 501, 505) when the
 * request is malformed or over a limit; the connection must answer and close then. */
int st_http_parser_run(struct st_http_parser *p, const char *data, size_t len);

/* Frees what the request owns and zeroes it. */
void st_http_req_clear(struct st_http_req *r);
/* Returns the value of the first header named name (lower-case), or NULL. Borrowed. */
const char *st_http_req_header(const struct st_http_req *r, const char *name);
/* True when the comma-separated header name contains token (case-insensitive). */
bool st_http_req_header_has_token(const struct st_http_req *r, const char *name,
                                  const char *token);
/* The reason phrase for a status code (static string). */
const char *st_http_reason(int status);

#endif
