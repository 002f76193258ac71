/* Strict bounded HTTP/1.1 request parsing (RFC 9112 §2–§7, RFC 9110 §5):
 * see http_parse.h. The head is parsed once its terminating blank line is
 * in the buffer (searching resumes where it stopped, so a slow sender costs
 * linear time); the body is then consumed incrementally, by length or
 * chunk by chunk, into a buffer bounded by max_body_size. */
#include "http/http_parse.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"
#include "base/mem.h"

#define MAX_CHUNK_LINE 256
#define MAX_TRAILER 4096

void st_http_req_clear(struct st_http_req *r)
{
    st_free(r->target);
    st_free(r->path);
    st_free(r->query);
    for (size_t i = 0; i < r->nheaders; i++) {
        st_free(r->headers[i].name);
        st_free(r->headers[i].value);
    }
    st_free(r->headers);
    st_buf_free(&r->body);
    memset(r, 0, sizeof *r);
}

void st_http_parser_init(struct st_http_parser *p, const struct st_http_limits *lim)
{
    memset(p, 0, sizeof *p);
    p->lim = *lim;
    st_buf_init(&p->req.body, lim->max_body_size);
}

void st_http_parser_reset(struct st_http_parser *p)
{
    struct st_http_limits lim = p->lim;
    st_http_req_clear(&p->req);
    st_http_parser_init(p, &lim);
}

const char *st_http_req_header(const struct st_http_req *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

bool st_http_req_header_has_token(const struct st_http_req *r, const char *name,
                                  const char *token)
{
    size_t tl = strlen(token);
    for (size_t i = 0; i < r->nheaders; i++) {
        if (strcmp(r->headers[i].name, name) != 0)
            continue;
        const char *v = r->headers[i].value;
        while (*v) {
            while (*v == ' ' || *v == '\t' || *v == ',')
                v++;
            const char *e = v;
            while (*e && *e != ',')
                e++;
            const char *t = e;
            while (t > v && (t[-1] == ' ' || t[-1] == '\t'))
                t--;
            if ((size_t)(t - v) == tl && strncasecmp(v, token, tl) == 0)
                return true;
            v = e;
        }
    }
    return false;
}

const char *st_http_reason(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

static int fail(struct st_http_parser *p, int status)
{
    p->status = status;
    return ST_EINVAL;
}

/* RFC 9110 §5.6.2 tchar */
static bool is_tchar(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Visible ASCII allowed in an origin-form target (RFC 3986 characters, no spaces/CTLs). */
static bool is_target_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '#';
}

static int parse_request_line(struct st_http_parser *p, const char *s, size_t n)
{
    struct st_http_req *r = &p->req;
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)s[i]))
        i++;
    if (i == 0 || i >= sizeof r->method || i >= n || s[i] != ' ')
        return fail(p, i >= sizeof r->method ? 501 : 400);
    memcpy(r->method, s, i);
    r->method[i] = '\0';
    size_t t0 = ++i;
    while (i < n && s[i] != ' ')
        i++;
    if (i == t0 || i >= n)
        return fail(p, 400);
    for (size_t k = t0; k < i; k++)
        if (!is_target_char((unsigned char)s[k]))
            return fail(p, 400);
    /* Origin-form only (RFC 9112 §3.2.1), plus "*" for OPTIONS. */
    if (s[t0] != '/' && !(i - t0 == 1 && s[t0] == '*'))
        return fail(p, 400);
    r->target = st_strndup(s + t0, i - t0);
    char *q = strchr(r->target, '?');
    if (q) {
        r->path = st_strndup(r->target, (size_t)(q - r->target));
        r->query = st_strdup(q + 1);
    } else {
        r->path = st_strdup(r->target);
    }
    i++;
    if (n - i != 8 || memcmp(s + i, "HTTP/", 5) != 0 || !isdigit((unsigned char)s[i + 5]) ||
        s[i + 6] != '.' || !isdigit((unsigned char)s[i + 7]))
        return fail(p, 400);
    if (s[i + 5] != '1')
        return fail(p, 505);
    r->minor = s[i + 7] - '0';
    return 0;
}

static int add_header(struct st_http_parser *p, const char *s, size_t n)
{
    struct st_http_req *r = &p->req;
    if (r->nheaders >= p->lim.max_headers)
        return fail(p, 431);
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)s[i]))
        i++;
    /* No whitespace between name and colon (RFC 9112 §5.1); an empty name is invalid. */
    if (i == 0 || i >= n || s[i] != ':')
        return fail(p, 400);
    size_t vs = i + 1, ve = n;
    while (vs < ve && (s[vs] == ' ' || s[vs] == '\t'))
        vs++;
    while (ve > vs && (s[ve - 1] == ' ' || s[ve - 1] == '\t'))
        ve--;
    for (size_t k = vs; k < ve; k++) {
        unsigned char c = (unsigned char)s[k];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return fail(p, 400);
    }
    if (r->nheaders % 8 == 0)
        r->headers = st_realloc(r->headers, (r->nheaders + 8) * sizeof *r->headers);
    char *name = st_strndup(s, i);
    for (char *c = name; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    r->headers[r->nheaders].name = name;
    r->headers[r->nheaders].value = st_strndup(s + vs, ve - vs);
    r->nheaders++;
    return 0;
}

/* Checks framing and connection headers once the head is parsed; sets the next state. */
static int finish_head(struct st_http_parser *p)
{
    struct st_http_req *r = &p->req;
    const char *cl = NULL;
    bool te = false;
    unsigned hosts = 0;
    for (size_t i = 0; i < r->nheaders; i++) {
        const char *n = r->headers[i].name, *v = r->headers[i].value;
        if (strcmp(n, "host") == 0) {
            hosts++;
        } else if (strcmp(n, "content-length") == 0) {
            if (!*v || strspn(v, "0123456789") != strlen(v) || strlen(v) > 15)
                return fail(p, 400);
            if (cl && strcmp(cl, v) != 0)
                return fail(p, 400);
            cl = v;
        } else if (strcmp(n, "transfer-encoding") == 0) {
            /* Only exactly "chunked" (RFC 9112 §6.1); anything else is not implemented. */
            if (te || strcasecmp(v, "chunked") != 0)
                return fail(p, 501);
            te = true;
        }
    }
    /* RFC 9112 §3.2: exactly one Host in HTTP/1.1. */
    if (hosts > 1 || (r->minor >= 1 && hosts == 0))
        return fail(p, 400);
    if (te && cl)
        return fail(p, 400);
    if (te && r->minor == 0)
        return fail(p, 400);
    bool close = st_http_req_header_has_token(r, "connection", "close");
    bool ka = st_http_req_header_has_token(r, "connection", "keep-alive");
    r->keep_alive = r->minor >= 1 ? !close : ka;
    r->upgrade = st_http_req_header_has_token(r, "connection", "upgrade") &&
                 st_http_req_header(r, "upgrade") != NULL;
    if (te) {
        p->state = ST_HP_CHUNK_SIZE;
    } else if (cl) {
        uint64_t v = strtoull(cl, NULL, 10);
        if (v > p->lim.max_body_size)
            return fail(p, 413);
        p->left = v;
        p->state = v ? ST_HP_BODY : ST_HP_DONE;
    } else {
        p->state = ST_HP_DONE;
    }
    return 0;
}

static int parse_head(struct st_http_parser *p, const char *data, size_t len)
{
    size_t lim = p->lim.max_header_size;
    size_t avail = len < lim + 4 ? len : lim + 4;
    const char *end = NULL;
    size_t from = p->scan > 3 ? p->scan - 3 : 0;
    for (size_t i = from; i + 4 <= avail; i++) {
        if (data[i] == '\r' && memcmp(data + i, "\r\n\r\n", 4) == 0) {
            end = data + i;
            break;
        }
    }
    if (!end) {
        p->scan = avail;
        /* A long first line is 414, long headers 431. */
        if (len >= lim + 4) {
            const void *nl = memchr(data, '\n', lim);
            return fail(p, nl ? 431 : 414);
        }
        return 0;
    }
    size_t head = (size_t)(end - data);
    if (head > lim) {
        const void *nl = memchr(data, '\n', lim);
        return fail(p, nl ? 431 : 414);
    }
    /* Lines must end in CRLF; a bare CR or LF inside the head is malformed. */
    const char *line = data;
    bool first = true;
    while (line <= end) {
        const char *cr = memchr(line, '\r', (size_t)(end + 2 - line));
        const char *lf = memchr(line, '\n', (size_t)(end + 2 - line));
        if (!cr || !lf || lf != cr + 1)
            return fail(p, 400);
        size_t n = (size_t)(cr - line);
        if (first) {
            if (parse_request_line(p, line, n) != 0)
                return ST_EINVAL;
            first = false;
        } else {
            if (n == 0)
                break;
            /* Obsolete line folding is rejected (RFC 9112 §5.2). */
            if (line[0] == ' ' || line[0] == '\t')
                return fail(p, 400);
            if (add_header(p, line, n) != 0)
                return ST_EINVAL;
        }
        if (cr == end)
            break;
        line = cr + 2;
    }
    p->pos = head + 4;
    return finish_head(p);
}

/* Finds a CRLF-terminated line at data[pos..len). Returns its length (without CRLF), -1 when
 * incomplete, -2 when malformed or too long. */
static long find_line(const char *data, size_t pos, size_t len, size_t max)
{
    size_t avail = len - pos < max + 2 ? len - pos : max + 2;
    const char *lf = memchr(data + pos, '\n', avail);
    if (!lf)
        return avail >= max + 2 ? -2 : -1;
    size_t n = (size_t)(lf - (data + pos));
    if (n == 0 || data[pos + n - 1] != '\r')
        return -2;
    return (long)(n - 1);
}

/* Moves up to p->left bytes of body (all of a Content-Length body, or one chunk's data) from
 * data[p->pos..len) into the request body, then enters state next once none are left.
 * Returns 1 when it made progress, 0 when more input is needed, ST_EINVAL (status 413) when the
 * body would exceed max_body_size. */
static int take_body(struct st_http_parser *p, const char *data, size_t len,
                     enum st_http_pstate next)
{
    size_t avail = len - p->pos;
    size_t take = avail < p->left ? avail : (size_t)p->left;
    if (take == 0)
        return 0;
    if (st_buf_append(&p->req.body, data + p->pos, take) != 0)
        return fail(p, 413);
    p->pos += take;
    p->left -= take;
    if (p->left == 0)
        p->state = next;
    return 1;
}

int st_http_parser_run(struct st_http_parser *p, const char *data, size_t len)
{
    if (p->status)
        return ST_EINVAL;
    for (;;) {
        switch (p->state) {
        case ST_HP_HEAD: {
            int rc = parse_head(p, data, len);
            if (rc)
                return rc;
            if (p->state == ST_HP_HEAD)
                return 0;
            break;
        }
        case ST_HP_BODY: {
            int rc = take_body(p, data, len, ST_HP_DONE);
            if (rc <= 0)
                return rc;
            break;
        }
        case ST_HP_CHUNK_SIZE: {
            long n = find_line(data, p->pos, len, MAX_CHUNK_LINE);
            if (n == -1)
                return 0;
            if (n < 0)
                return fail(p, 400);
            const char *s = data + p->pos;
            uint64_t v = 0;
            long i = 0;
            while (i < n && isxdigit((unsigned char)s[i])) {
                if (v > (UINT64_MAX >> 4))
                    return fail(p, 413);
                int d = isdigit((unsigned char)s[i]) ? s[i] - '0'
                                                     : (tolower((unsigned char)s[i]) - 'a' + 10);
                v = (v << 4) | (uint64_t)d;
                i++;
            }
            /* chunk-size [ chunk-ext ]: extensions are skipped, but must start with ';' */
            while (i < n && (s[i] == ' ' || s[i] == '\t'))
                i++;
            if (i == 0 || (i < n && s[i] != ';'))
                return fail(p, 400);
            for (long k = i; k < n; k++)
                if ((unsigned char)s[k] < 0x20 && s[k] != '\t')
                    return fail(p, 400);
            p->pos += (size_t)n + 2;
            if (v > p->lim.max_body_size - p->req.body.len)
                return fail(p, 413);
            p->left = v;
            p->state = v ? ST_HP_CHUNK_DATA : ST_HP_TRAILER;
            break;
        }
        case ST_HP_CHUNK_DATA: {
            int rc = take_body(p, data, len, ST_HP_CHUNK_CRLF);
            if (rc <= 0)
                return rc;
            break;
        }
        case ST_HP_CHUNK_CRLF:
            if (len - p->pos < 2)
                return 0;
            if (data[p->pos] != '\r' || data[p->pos + 1] != '\n')
                return fail(p, 400);
            p->pos += 2;
            p->state = ST_HP_CHUNK_SIZE;
            break;
        case ST_HP_TRAILER: {
            long n = find_line(data, p->pos, len, MAX_TRAILER);
            if (n == -1)
                return 0;
            if (n < 0)
                return fail(p, 400);
            p->pos += (size_t)n + 2;
            p->trailer += (size_t)n + 2;
            if (p->trailer > MAX_TRAILER)
                return fail(p, 431);
            if (n == 0)
                p->state = ST_HP_DONE;
            break;
        }
        case ST_HP_DONE:
            return 1;
        }
    }
}
