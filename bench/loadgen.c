/* The load generator of `make bench`: one non-blocking epoll process that
 * opens N XMPP client sessions (RFC 6120) from several loopback source
 * addresses, each with optional STARTTLS (RFC 6120 §5), SASL PLAIN
 * (RFC 4616) or SCRAM-SHA-1/-256 (RFC 5802, RFC 7677; salted password cached
 * per account), resource binding (RFC 6120 §7) and initial presence
 * (RFC 6121 §4.2), then either measures the login storm (mode login), holds
 * the sessions open (mode idle), or lets P pairs exchange one-to-one chat
 * messages (RFC 6121 §5.1) with a window of W in flight per direction for T
 * seconds (mode message). A delivered message counts only if it reaches the
 * session it was addressed to, recognised by the sender, recipient and
 * sequence number carried in its body. Mode message with --raw skips XMPP and
 * sends fixed-size frames through bench/relay, the byte-copying upper bound.
 * Server replies are recognised by a small substring scanner over the few
 * elements a client needs, not by an XML parser: it is cheaper, so the
 * generator is not what limits the measurement. Errors of any kind are
 * counted and make the exit status 1. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "base/buf.h"
#include "base/mem.h"
#include "lg_scram.h"
#include "lg_util.h"

#define IN_MAX (4u << 20)   /* unparsed input per session */
#define OUT_MAX (4u << 20)  /* unsent output per session */
#define READ_CHUNK 65536
#define FD_RESERVE 32       /* descriptors kept free for stdio, epoll, /proc */
#define JID_MAX 256

enum mode { MODE_LOGIN, MODE_IDLE, MODE_MESSAGE };

enum sstate {
    S_NEW, S_CONNECTING, S_FEAT1, S_PROCEED, S_TLSHS, S_FEAT2, S_SASL, S_FEAT3, S_BIND,
    S_RAW_HELLO, S_READY, S_DEAD
};

enum err_kind {
    E_CONNECT, E_CLOSED, E_STREAM, E_AUTH, E_BIND, E_TLS, E_TIMEOUT, E_PROTOCOL, E_OVERFLOW,
    E_MISDELIVERED, E_ERROR_STANZA, E_LOST, E_COUNT
};

static const char *const err_names[E_COUNT] = {
    "connect", "closed_by_server", "stream_error", "auth_failed", "bind_failed", "tls",
    "timeout", "protocol", "buffer_overflow", "misdelivered", "error_stanzas", "lost"};

struct sess {
    int fd;
    enum sstate st;
    SSL *ssl;
    struct st_buf in, out;
    uint64_t t_start;
    struct st_bench_scram *scram;
    char *jid;          /* full JID from the bind result; owned */
    int partner;        /* local index, -1 until known */
    uint32_t inflight;  /* messages this session sent that its partner has not got yet */
    uint64_t seq;       /* next sequence number to send */
    uint64_t next_rx;   /* next sequence expected from the partner */
    bool dirty;         /* queued on the flush list */
    bool epollout;      /* EPOLLOUT registered */
    bool tls_rd_wants_write;
};

struct opts {
    const char *host;
    int port;
    const char *domain;
    const char *user_prefix;
    const char *password;
    const char *scram_cache;
    unsigned accounts;
    unsigned first;     /* global index of this process's first session */
    unsigned sessions;
    unsigned sources;
    unsigned concurrency;
    bool tls;
    enum st_bench_mech mech;
    enum mode mode;
    bool raw;
    unsigned pairs;
    unsigned window;
    unsigned size;
    double duration;
    double warmup;
    double timeout;
    pid_t server_pid;
    bool json;
};

struct lg {
    struct opts o;
    int ep;
    SSL_CTX *ssl_ctx;
    struct sess *s;
    struct st_bench_salted *cache;  /* per account */
    int *dirty;
    size_t ndirty;
    unsigned started, ready, failed, active_negotiations;
    unsigned long errs[E_COUNT];
    char first_error[320];
    unsigned long pbkdf2_runs;
    struct st_bench_hist *login_hist, *msg_hist;
    uint64_t t_login_start, t_login_end;
    double cpu_login_start, cpu_login_end; /* this process's CPU seconds at both ends */
    bool sending;            /* message phase: refill windows */
    uint64_t m_start, m_end; /* measurement window (ns) */
    unsigned long delivered, delivered_total, sent_total;
    char tls_info[160];
};

static struct lg G;
static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* ---- helpers ---- */

static void note_error(struct sess *s, enum err_kind k, const char *detail, size_t dlen)
{
    G.errs[k]++;
    if (!G.first_error[0]) {
        int n = (int)(dlen > 200 ? 200 : dlen);
        static const char *const states[] = {
            [S_NEW] = "new", [S_CONNECTING] = "connecting", [S_FEAT1] = "features",
            [S_PROCEED] = "proceed", [S_TLSHS] = "tls-handshake",
            [S_FEAT2] = "features-after-tls", [S_SASL] = "sasl",
            [S_FEAT3] = "features-after-sasl", [S_BIND] = "bind",
            [S_RAW_HELLO] = "raw-hello", [S_READY] = "ready", [S_DEAD] = "dead"};
        /* Where the bytes stood, to tell a client that never sent from a server that
         * never answered. */
        struct sockaddr_in me = {0};
        socklen_t ml = sizeof me;
        if (!s || s->fd < 0 || getsockname(s->fd, (struct sockaddr *)&me, &ml) != 0)
            me.sin_port = 0;
        snprintf(G.first_error, sizeof G.first_error,
                 "%s (session %ld, in %s, port %u, unsent %zu, unread %zu): %.*s",
                 err_names[k], s ? (long)(s - G.s) + (long)G.o.first : -1L,
                 s ? states[s->st] : "-", (unsigned)ntohs(me.sin_port), s ? s->out.len : 0,
                 s ? s->in.len : 0, n, detail ? detail : "");
    }
}

static long find(const struct sess *s, size_t from, const char *needle)
{
    if (from >= s->in.len)
        return -1;
    const char *p = memmem(s->in.data + from, s->in.len - from, needle, strlen(needle));
    return p ? (long)(p - s->in.data) : -1;
}

static bool is_negotiating(const struct sess *s)
{
    return s->st != S_NEW && s->st != S_READY && s->st != S_DEAD;
}

static void kill_sess(struct sess *s, enum err_kind k, const char *detail, size_t dlen)
{
    if (s->st == S_DEAD)
        return;
    if (is_negotiating(s)) {
        G.active_negotiations--;
        G.failed++;
    }
    note_error(s, k, detail, dlen);
    s->st = S_DEAD;
    if (s->ssl) {
        SSL_free(s->ssl);
        s->ssl = NULL;
    }
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
    st_buf_free(&s->in);
    st_buf_free(&s->out);
    st_free(s->scram);
    s->scram = NULL;
}

static void set_epollout(struct sess *s, bool on)
{
    if (s->epollout == on || s->fd < 0)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0u),
                             .data.u32 = (uint32_t)(s - G.s)};
    epoll_ctl(G.ep, EPOLL_CTL_MOD, s->fd, &ev);
    s->epollout = on;
}

static void queue(struct sess *s, const char *data, size_t n)
{
    if (s->st == S_DEAD)
        return;
    if (st_buf_append(&s->out, data, n) != 0) {
        kill_sess(s, E_OVERFLOW, "output queue full", 17);
        return;
    }
    if (!s->dirty) {
        s->dirty = true;
        G.dirty[G.ndirty++] = (int)(s - G.s);
    }
}

static void queue_str(struct sess *s, const char *str)
{
    queue(s, str, strlen(str));
}

/* Writes as much queued output as the socket takes. */
static void flush(struct sess *s)
{
    while (s->st != S_DEAD && s->out.len > 0 && s->st != S_TLSHS) {
        ssize_t n;
        if (s->ssl) {
            int r = SSL_write(s->ssl, s->out.data, (int)(s->out.len > 1u << 30 ? 1u << 30
                                                                               : s->out.len));
            if (r <= 0) {
                int e = SSL_get_error(s->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                    set_epollout(s, true);
                    return;
                }
                kill_sess(s, E_TLS, "SSL_write failed", 16);
                return;
            }
            n = r;
        } else {
            n = write(s->fd, s->out.data, s->out.len);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) {
                    set_epollout(s, true);
                    return;
                }
                kill_sess(s, E_CLOSED, strerror(errno), strlen(strerror(errno)));
                return;
            }
        }
        st_buf_consume(&s->out, (size_t)n);
    }
    if (s->st != S_DEAD && s->out.len == 0 && s->st != S_CONNECTING && s->st != S_TLSHS)
        set_epollout(s, false);
}

static void flush_dirty(void)
{
    for (size_t i = 0; i < G.ndirty; i++) {
        struct sess *s = &G.s[G.dirty[i]];
        s->dirty = false;
        flush(s);
    }
    G.ndirty = 0;
}

static const char *account_name(unsigned gidx, char *buf, size_t n)
{
    snprintf(buf, n, "%s%u", G.o.user_prefix, gidx % G.o.accounts);
    return buf;
}

static void send_header(struct sess *s)
{
    char h[512];
    snprintf(h, sizeof h,
             "<?xml version='1.0'?><stream:stream to='%s' version='1.0' xmlns='jabber:client' "
             "xmlns:stream='http://etherx.jabber.org/streams'>",
             G.o.domain);
    queue_str(s, h);
}

/* ---- message payloads ---- */

/* Body text: "M <to> <from> <seq> <t_ns> " then padding to `pad` bytes. */
static size_t make_body(char *out, size_t cap, unsigned to, unsigned from, uint64_t seq,
                        uint64_t t, size_t pad)
{
    int n = snprintf(out, cap, "M %u %u %llu %llu ", to, from, (unsigned long long)seq,
                     (unsigned long long)t);
    size_t len = n < 0 ? 0 : (size_t)n;
    while (len < pad && len + 1 < cap)
        out[len++] = 'x';
    out[len] = '\0';
    return len;
}

static void send_one(struct sess *s)
{
    struct sess *p = &G.s[s->partner];
    unsigned me = (unsigned)(s - G.s) + G.o.first, to = (unsigned)s->partner + G.o.first;
    char buf[1024];
    uint64_t now = st_bench_now_ns();
    if (G.o.raw) {
        size_t n = make_body(buf, sizeof buf, to, me, s->seq, now, G.o.size - 1);
        buf[n++] = '\n';
        queue(s, buf, n);
    } else {
        char body[800];
        int head = snprintf(buf, sizeof buf, "<message to='%s' type='chat' id='m%llu'><body>",
                            p->jid ? p->jid : "", (unsigned long long)s->seq);
        size_t tail = strlen("</body></message>");
        size_t pad = G.o.size > (size_t)head + tail ? G.o.size - (size_t)head - tail : 0;
        make_body(body, sizeof body, to, me, s->seq, now, pad);
        snprintf(buf + head, sizeof buf - (size_t)head, "%s</body></message>", body);
        queue_str(s, buf);
    }
    s->seq++;
    s->inflight++;
    G.sent_total++;
}

static void fill_window(struct sess *s)
{
    while (G.sending && s->st == S_READY && s->partner >= 0 &&
           G.s[s->partner].st == S_READY && s->inflight < G.o.window)
        send_one(s);
}

/* Handles one received body/frame text "M to from seq t". */
static void on_payload(struct sess *r, const char *p, size_t n)
{
    char tmp[96];
    size_t l = n < sizeof tmp - 1 ? n : sizeof tmp - 1;
    memcpy(tmp, p, l);
    tmp[l] = '\0';
    if (tmp[0] != 'M' || tmp[1] != ' ') {
        kill_sess(r, E_PROTOCOL, tmp, l);
        return;
    }
    char *e = NULL;
    unsigned long to = strtoul(tmp + 2, &e, 10);
    unsigned long from = strtoul(e, &e, 10);
    unsigned long long seq = strtoull(e, &e, 10);
    unsigned long long t = strtoull(e, &e, 10);
    unsigned me = (unsigned)(r - G.s) + G.o.first;
    if (to != me || r->partner < 0 || from != (unsigned)r->partner + G.o.first ||
        seq != r->next_rx) {
        note_error(r, E_MISDELIVERED, tmp, l);
        return;
    }
    r->next_rx++;
    uint64_t now = st_bench_now_ns();
    G.delivered_total++;
    if (t >= G.m_start && now <= G.m_end && G.m_start) {
        G.delivered++;
        st_bench_hist_add(G.msg_hist, (now - t) / 1000);
    }
    struct sess *snd = &G.s[r->partner];
    if (snd->inflight > 0)
        snd->inflight--;
    fill_window(snd);
}

/* ---- negotiation ---- */

/* CPU seconds this process has used: a login storm that keeps the generator's own core busy
 * measures the generator, not the server, and the report should say so. */
static double own_cpu_s(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void become_ready(struct sess *s)
{
    s->st = S_READY;
    G.active_negotiations--;
    G.ready++;
    st_bench_hist_add(G.login_hist, (st_bench_now_ns() - s->t_start) / 1000);
    st_free(s->scram);
    s->scram = NULL;
    if (G.ready + G.failed == G.o.sessions) {
        G.t_login_end = st_bench_now_ns();
        G.cpu_login_end = own_cpu_s();
    }
}

static void start_auth(struct sess *s, long feat_end)
{
    const char *mn = st_bench_mech_name(G.o.mech);
    char want[64];
    snprintf(want, sizeof want, ">%s<", mn);
    const char *hit = memmem(s->in.data, (size_t)feat_end, want, strlen(want));
    if (!hit) {
        char d[96];
        int k = snprintf(d, sizeof d, "mechanism %s not offered%s", mn,
                         G.o.tls ? "" : " (without TLS)");
        kill_sess(s, E_AUTH, d, (size_t)k);
        return;
    }
    char user[128], b64[ST_BENCH_SASL_MAX], msg[ST_BENCH_SASL_MAX + 128];
    unsigned g = (unsigned)(s - G.s) + G.o.first;
    account_name(g, user, sizeof user);
    int n;
    if (G.o.mech == ST_BENCH_PLAIN) {
        n = st_bench_plain_initial(user, G.o.password, b64, sizeof b64);
    } else {
        s->scram = ST_NEW(struct st_bench_scram);
        n = st_bench_scram_first(s->scram, G.o.mech, user, b64, sizeof b64);
    }
    if (n < 0) {
        kill_sess(s, E_AUTH, "cannot build SASL message", 25);
        return;
    }
    snprintf(msg, sizeof msg, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='%s'>%s"
             "</auth>", mn, b64);
    st_buf_consume(&s->in, (size_t)feat_end);
    queue_str(s, msg);
    s->st = S_SASL;
}

static void record_tls_info(struct sess *s)
{
    if (G.tls_info[0])
        return;
    X509 *cert = SSL_get1_peer_certificate(s->ssl);
    const char *kt = "?";
    char curve[64] = "";
    if (cert) {
        EVP_PKEY *pk = X509_get0_pubkey(cert);
        if (pk) {
            kt = EVP_PKEY_get0_type_name(pk);
            size_t cl = 0;
            if (EVP_PKEY_get_utf8_string_param(pk, "group", curve, sizeof curve, &cl) != 1)
                curve[0] = '\0';
        }
    }
    snprintf(G.tls_info, sizeof G.tls_info, "%s %s cert=%s%s%s", SSL_get_version(s->ssl),
             SSL_get_cipher_name(s->ssl), kt ? kt : "?", curve[0] ? "/" : "", curve);
    X509_free(cert);
}

static void tls_step(struct sess *s)
{
    int r = SSL_connect(s->ssl);
    if (r == 1) {
        record_tls_info(s);
        s->st = S_FEAT2;
        set_epollout(s, false);
        send_header(s);
        return;
    }
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        set_epollout(s, false);
    } else if (e == SSL_ERROR_WANT_WRITE) {
        set_epollout(s, true);
    } else {
        char eb[200];
        ERR_error_string_n(ERR_get_error(), eb, sizeof eb);
        kill_sess(s, E_TLS, eb, strlen(eb));
    }
}

static bool stream_trouble(struct sess *s)
{
    long e = find(s, 0, "<stream:error");
    if (e >= 0) {
        kill_sess(s, E_STREAM, s->in.data + e, s->in.len - (size_t)e);
        return true;
    }
    if (find(s, 0, "</stream:stream>") >= 0) {
        kill_sess(s, E_CLOSED, "server closed the stream", 24);
        return true;
    }
    return false;
}

static long features_end(struct sess *s)
{
    long e = find(s, 0, "</stream:features>");
    if (e < 0)
        e = find(s, 0, "<stream:features/>");
    return e < 0 ? -1 : e + 18;
}

/* Extracts the character data of element `name` starting at or after `from`;
 * returns the end offset (after the end tag) or -1 if incomplete, 0 if
 * self-closing (then *data is NULL). */
static long element_text(struct sess *s, long at, const char *name, const char **data,
                         size_t *dlen)
{
    long gt = find(s, (size_t)at, ">");
    if (gt < 0)
        return -1;
    if (s->in.data[gt - 1] == '/') {
        *data = NULL;
        *dlen = 0;
        return gt + 1;
    }
    char endtag[40];
    snprintf(endtag, sizeof endtag, "</%s>", name);
    long e = find(s, (size_t)gt, endtag);
    if (e < 0)
        return -1;
    *data = s->in.data + gt + 1;
    *dlen = (size_t)(e - gt - 1);
    return e + (long)strlen(endtag);
}

static void sasl_step(struct sess *s)
{
    long f = find(s, 0, "<failure");
    if (f >= 0) {
        kill_sess(s, E_AUTH, s->in.data + f, s->in.len - (size_t)f);
        return;
    }
    const char *d;
    size_t dl;
    long c = find(s, 0, "<challenge");
    if (c >= 0) {
        long end = element_text(s, c, "challenge", &d, &dl);
        if (end < 0)
            return;
        char user[128], b64[ST_BENCH_SASL_MAX], msg[ST_BENCH_SASL_MAX + 128];
        unsigned g = (unsigned)(s - G.s) + G.o.first;
        struct st_bench_salted *cache = &G.cache[g % G.o.accounts];
        bool ran = false;
        account_name(g, user, sizeof user);
        int n = -1;
        if (s->scram && d)
            n = st_bench_scram_final(s->scram, d, dl, G.o.password, cache, &ran, b64,
                                     sizeof b64);
        if (n < 0) {
            kill_sess(s, E_AUTH, "bad SCRAM challenge", 19);
            return;
        }
        if (ran)
            G.pbkdf2_runs++;
        snprintf(msg, sizeof msg, "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%s"
                 "</response>", b64);
        st_buf_consume(&s->in, (size_t)end);
        queue_str(s, msg);
        return;
    }
    long ok = find(s, 0, "<success");
    if (ok < 0)
        return;
    long end = element_text(s, ok, "success", &d, &dl);
    if (end < 0)
        return;
    if (s->scram && d && dl > 0 && st_bench_scram_verify(s->scram, d, dl) != 0) {
        kill_sess(s, E_AUTH, "server signature mismatch", 25);
        return;
    }
    if (s->scram && !(d && dl > 0)) {
        kill_sess(s, E_AUTH, "SCRAM success without server signature", 38);
        return;
    }
    st_buf_consume(&s->in, (size_t)end);
    s->st = S_FEAT3;
    send_header(s);
}

static void bind_step(struct sess *s)
{
    long iq = find(s, 0, "<iq");
    if (iq < 0)
        return;
    long end = find(s, (size_t)iq, "</iq>");
    long sc = find(s, (size_t)iq, "/>");
    long gt = find(s, (size_t)iq, ">");
    if (end < 0 && !(sc >= 0 && sc + 1 == gt))
        return;
    long stop = end >= 0 ? end + 5 : gt + 1;
    long j = find(s, (size_t)iq, "<jid>"), je = find(s, (size_t)iq, "</jid>");
    if (j < 0 || je < 0 || je > stop || je - j - 5 >= JID_MAX) {
        kill_sess(s, E_BIND, s->in.data + iq, (size_t)(stop - iq));
        return;
    }
    s->jid = st_strndup(s->in.data + j + 5, (size_t)(je - j - 5));
    st_buf_consume(&s->in, (size_t)stop);
    queue_str(s, "<presence/>");
    s->partner = G.o.mode == MODE_MESSAGE ? (int)((s - G.s) ^ 1) : -1;
    become_ready(s);
}

static void ready_step(struct sess *s)
{
    size_t keep = 32;
    while (s->st == S_READY) {
        if (G.o.raw) {
            if (s->in.len < G.o.size)
                return;
            on_payload(s, s->in.data, G.o.size);
            st_buf_consume(&s->in, G.o.size);
            continue;
        }
        long b = find(s, 0, "<body>");
        long scan_to = b >= 0 ? b : (long)s->in.len;
        const char *err1 = memmem(s->in.data, (size_t)scan_to, "type='error'", 12);
        const char *err2 = memmem(s->in.data, (size_t)scan_to, "type=\"error\"", 12);
        if (err1 || err2) {
            const char *e = err1 ? err1 : err2;
            note_error(s, E_ERROR_STANZA, e, s->in.len - (size_t)(e - s->in.data));
        }
        if (b < 0) {
            if (stream_trouble(s))
                return;
            if (s->in.len > keep)
                st_buf_consume(&s->in, s->in.len - keep);
            return;
        }
        long e = find(s, (size_t)b, "</body>");
        if (e < 0) {
            st_buf_consume(&s->in, (size_t)b);
            return;
        }
        char tmp[96];
        size_t l = (size_t)(e - b - 6) < sizeof tmp ? (size_t)(e - b - 6) : sizeof tmp;
        memcpy(tmp, s->in.data + b + 6, l);
        st_buf_consume(&s->in, (size_t)e + 7);
        on_payload(s, tmp, l);
    }
}

static void raw_hello_step(struct sess *s)
{
    if (s->in.len < G.o.size)
        return;
    char tmp[64];
    memcpy(tmp, s->in.data, sizeof tmp - 1);
    tmp[sizeof tmp - 1] = '\0';
    unsigned long from = tmp[0] == 'H' ? strtoul(tmp + 2, NULL, 10) : 0;
    if (tmp[0] != 'H' || from < G.o.first || from >= G.o.first + G.o.sessions) {
        kill_sess(s, E_PROTOCOL, tmp, strlen(tmp));
        return;
    }
    st_buf_consume(&s->in, G.o.size);
    s->partner = (int)(from - G.o.first);
    become_ready(s);
}

static void process(struct sess *s)
{
    for (;;) {
        enum sstate before = s->st;
        size_t len_before = s->in.len;
        switch (s->st) {
        case S_FEAT1:
        case S_FEAT2:
        case S_FEAT3: {
            long fe = features_end(s);
            if (fe < 0) {
                stream_trouble(s);
                return;
            }
            if (s->st == S_FEAT3) {
                char iq[256];
                snprintf(iq, sizeof iq, "<iq type='set' id='bind1'><bind "
                         "xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r%u</resource>"
                         "</bind></iq>", (unsigned)(s - G.s) + G.o.first);
                st_buf_consume(&s->in, (size_t)fe);
                queue_str(s, iq);
                s->st = S_BIND;
            } else if (s->st == S_FEAT1 && G.o.tls) {
                if (!memmem(s->in.data, (size_t)fe, "<starttls", 9)) {
                    kill_sess(s, E_TLS, "no STARTTLS offered", 19);
                    return;
                }
                st_buf_consume(&s->in, (size_t)fe);
                queue_str(s, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
                s->st = S_PROCEED;
            } else {
                start_auth(s, fe);
            }
            break;
        }
        case S_PROCEED: {
            if (find(s, 0, "<failure") >= 0) {
                kill_sess(s, E_TLS, "STARTTLS failure", 16);
                return;
            }
            if (find(s, 0, "<proceed") < 0)
                return;
            st_buf_reset(&s->in);
            flush(s);
            s->ssl = SSL_new(G.ssl_ctx);
            SSL_set_fd(s->ssl, s->fd);
            SSL_set_tlsext_host_name(s->ssl, G.o.domain);
            s->st = S_TLSHS;
            tls_step(s);
            return;
        }
        case S_SASL:
            sasl_step(s);
            break;
        case S_BIND:
            bind_step(s);
            break;
        case S_RAW_HELLO:
            raw_hello_step(s);
            break;
        case S_READY:
            ready_step(s);
            return;
        default:
            return;
        }
        if (s->st == S_DEAD || (s->st == before && s->in.len == len_before))
            return;
    }
}

/* ---- I/O ---- */

static void on_readable(struct sess *s)
{
    static char chunk[READ_CHUNK];
    for (int rounds = 0; rounds < 16 && s->st != S_DEAD; rounds++) {
        ssize_t n;
        if (s->ssl) {
            int r = SSL_read(s->ssl, chunk, sizeof chunk);
            if (r <= 0) {
                int e = SSL_get_error(s->ssl, r);
                if (e == SSL_ERROR_WANT_READ)
                    break;
                if (e == SSL_ERROR_WANT_WRITE) {
                    set_epollout(s, true);
                    break;
                }
                if (e == SSL_ERROR_ZERO_RETURN)
                    kill_sess(s, E_CLOSED, "TLS closed by server", 20);
                else
                    kill_sess(s, E_TLS, "SSL_read failed", 15);
                return;
            }
            n = r;
        } else {
            n = read(s->fd, chunk, sizeof chunk);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    break;
                kill_sess(s, E_CLOSED, strerror(errno), strlen(strerror(errno)));
                return;
            }
            if (n == 0) {
                kill_sess(s, E_CLOSED, s->in.data ? s->in.data : "EOF", s->in.data ? s->in.len
                                                                                    : 3);
                return;
            }
        }
        if (st_buf_append(&s->in, chunk, (size_t)n) != 0) {
            kill_sess(s, E_OVERFLOW, "input buffer full", 17);
            return;
        }
        process(s);
        /* <proceed/> just started the handshake: an SSL_read here would finish it behind
         * tls_step's back and the stream header would never be queued; the next event
         * drives it. */
        if (s->st == S_TLSHS)
            break;
        if ((size_t)n < sizeof chunk && !s->ssl)
            break;
    }
}

static void on_connected(struct sess *s)
{
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        kill_sess(s, E_CONNECT, strerror(err), strlen(strerror(err)));
        return;
    }
    if (G.o.raw) {
        char buf[1024];
        int n = snprintf(buf, sizeof buf, "H %u ", (unsigned)(s - G.s) + G.o.first);
        size_t len = (size_t)n;
        while (len < G.o.size - 1)
            buf[len++] = 'h';
        buf[len++] = '\n';
        s->st = S_RAW_HELLO;
        queue(s, buf, len);
    } else {
        s->st = S_FEAT1;
        send_header(s);
    }
    set_epollout(s, false);
}

static void start_session(unsigned i)
{
    struct sess *s = &G.s[i];
    unsigned g = i + G.o.first;
    G.started++;
    G.active_negotiations++;
    s->t_start = st_bench_now_ns();
    s->st = S_CONNECTING;
    st_buf_init(&s->in, IN_MAX);
    st_buf_init(&s->out, OUT_MAX);
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        kill_sess(s, E_CONNECT, strerror(errno), strlen(strerror(errno)));
        return;
    }
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(s->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000001u + g % G.o.sources);
    if (bind(s->fd, (struct sockaddr *)&src, sizeof src) != 0) {
        kill_sess(s, E_CONNECT, "bind", 4);
        return;
    }
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)G.o.port)};
    inet_pton(AF_INET, G.o.host, &dst.sin_addr);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = i};
    s->epollout = true;
    epoll_ctl(G.ep, EPOLL_CTL_ADD, s->fd, &ev);
    if (connect(s->fd, (struct sockaddr *)&dst, sizeof dst) != 0 && errno != EINPROGRESS)
        kill_sess(s, E_CONNECT, strerror(errno), strlen(strerror(errno)));
}

static void on_event(uint32_t i, uint32_t events)
{
    struct sess *s = &G.s[i];
    if (s->st == S_DEAD)
        return;
    if (s->st == S_CONNECTING) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            on_connected(s);
        return;
    }
    if (s->st == S_TLSHS) {
        tls_step(s);
        if (s->st != S_TLSHS && s->st != S_DEAD)
            on_readable(s);
        return;
    }
    if (events & EPOLLOUT)
        flush(s);
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(s);
}

/* Runs the loop for up to `secs` seconds or until done() returns true. */
static void run_loop(double secs, bool (*done)(void))
{
    static struct epoll_event evs[1024];
    uint64_t deadline = st_bench_now_ns() + (uint64_t)(secs * 1e9);
    uint64_t tmo_ns = (uint64_t)(G.o.timeout * 1e9);
    uint64_t last_check = 0;
    while ((!done || !done()) && st_bench_now_ns() < deadline && !stop_requested) {
        while (G.started < G.o.sessions && G.active_negotiations < G.o.concurrency)
            start_session(G.started);
        flush_dirty();
        int n = epoll_wait(G.ep, evs, 1024, 20);
        for (int k = 0; k < n; k++)
            on_event(evs[k].data.u32, evs[k].events);
        flush_dirty();
        uint64_t now = st_bench_now_ns();
        if (now - last_check > 500000000u) {
            last_check = now;
            for (unsigned i = 0; i < G.started; i++)
                if (is_negotiating(&G.s[i]) && now - G.s[i].t_start > tmo_ns) {
                    char d[64];
                    int k = snprintf(d, sizeof d, "login timed out in state %d",
                                     (int)G.s[i].st);
                    kill_sess(&G.s[i], E_TIMEOUT, d, (size_t)k);
                }
        }
    }
}

static bool all_logged_in(void)
{
    return G.started == G.o.sessions && G.active_negotiations == 0;
}

/* ---- salted-password cache file: "ACCOUNT SALT_B64 ITERATIONS HEXKEY" per line ---- */

/* only_missing: fill only accounts this process has no key for (the merge on save). */
static void cache_load(const char *path, bool only_missing)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char salt[64], hex[2 * ST_BENCH_SCRAM_MAX_KEY + 2];
        unsigned acct, iters;
        if (sscanf(line, "%u %63s %u %66s", &acct, salt, &iters, hex) != 4 ||
            acct >= G.o.accounts)
            continue;
        struct st_bench_salted *c = &G.cache[acct];
        if (only_missing && c->valid)
            continue;
        size_t hl = strlen(hex);
        if (hl % 2 || hl / 2 > sizeof c->key)
            continue;
        for (size_t i = 0; i < hl / 2; i++) {
            unsigned v;
            if (sscanf(hex + 2 * i, "%2x", &v) != 1)
                break;
            c->key[i] = (unsigned char)v;
        }
        snprintf(c->salt_b64, sizeof c->salt_b64, "%s", salt);
        c->iterations = iters;
        c->valid = true;
    }
    fclose(f);
}

/* Several load generators (the idle scenario splits its sessions over processes) save the
 * same file: under a lock, each merges what the others wrote since it loaded and writes
 * its own temporary file, so no line is ever interleaved with another process's. */
static void cache_save(const char *path)
{
    char tmp[4096], lock[4096];
    snprintf(lock, sizeof lock, "%s.lock", path);
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lfd < 0 || flock(lfd, LOCK_EX) != 0) {
        if (lfd >= 0)
            close(lfd);
        return;
    }
    cache_load(path, true);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        close(lfd);
        return;
    }
    size_t kl = G.o.mech == ST_BENCH_SCRAM_SHA256 ? 32 : 20;
    for (unsigned a = 0; a < G.o.accounts; a++) {
        const struct st_bench_salted *c = &G.cache[a];
        if (!c->valid)
            continue;
        fprintf(f, "%u %s %u ", a, c->salt_b64, c->iterations);
        for (size_t i = 0; i < kl; i++)
            fprintf(f, "%02x", c->key[i]);
        fputc('\n', f);
    }
    if (fclose(f) == 0)
        rename(tmp, path);
    else
        unlink(tmp);
    close(lfd); /* releases the lock */
}

/* ---- command line and report ---- */

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen --mode login|idle|message [options]\n"
            "  --host IP (127.0.0.1) --port N (5222) --domain D (localhost)\n"
            "  --users PREFIX/PASSWORD/COUNT   accounts PREFIX0..PREFIX<COUNT-1>\n"
            "  --first K       global index of this process's first session (split runs)\n"
            "  --sessions N    sessions (message mode: 2*pairs)\n"
            "  --sources K     loopback source addresses 127.0.0.1..127.0.0.K\n"
            "  --concurrency C logins in flight at once (200)\n"
            "  --tls           STARTTLS   --mech PLAIN|SCRAM-SHA-1|SCRAM-SHA-256\n"
            "  --pairs P --window W --size BYTES (200) --duration T --warmup S (1)\n"
            "  --raw           message mode through bench/relay, no XMPP\n"
            "  --timeout S     per-login timeout (60)  --server-pid PID  --json\n"
            "  --scram-cache FILE  keep salted passwords across runs, as clients do\n"
            "SIGTERM/SIGINT end an idle hold early (the report is still printed).\n");
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.host = "127.0.0.1", .port = 5222, .domain = "localhost",
                       .user_prefix = "u", .password = "secret", .accounts = 1,
                       .sessions = 0, .sources = 1, .concurrency = 200,
                       .mech = ST_BENCH_SCRAM_SHA1, .mode = MODE_LOGIN, .pairs = 0,
                       .window = 10, .size = 200, .duration = 10, .warmup = 1, .timeout = 60};
    static char users[512];
    static const struct option lo[] = {
        {"host", 1, 0, 'h'},   {"port", 1, 0, 'p'},        {"domain", 1, 0, 'd'},
        {"users", 1, 0, 'u'},  {"sessions", 1, 0, 'n'},    {"tls", 0, 0, 't'},
        {"mech", 1, 0, 'm'},   {"pairs", 1, 0, 'P'},       {"window", 1, 0, 'W'},
        {"duration", 1, 0, 'T'}, {"server-pid", 1, 0, 'S'}, {"sources", 1, 0, 'K'},
        {"json", 0, 0, 'j'},   {"mode", 1, 0, 'M'},        {"raw", 0, 0, 'r'},
        {"size", 1, 0, 'z'},   {"first", 1, 0, 'f'},       {"concurrency", 1, 0, 'c'},
        {"warmup", 1, 0, 'w'}, {"timeout", 1, 0, 'o'},     {"help", 0, 0, '?'},
        {"scram-cache", 1, 0, 'C'},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'h': o->host = optarg; break;
        case 'p': o->port = (int)strtol(optarg, &end, 10); break;
        case 'd': o->domain = optarg; break;
        case 'u': {
            snprintf(users, sizeof users, "%s", optarg);
            char *a = strchr(users, '/');
            char *b = a ? strchr(a + 1, '/') : NULL;
            if (!a || !b)
                return -1;
            *a = *b = '\0';
            o->user_prefix = users;
            o->password = a + 1;
            o->accounts = (unsigned)strtoul(b + 1, &end, 10);
            break;
        }
        case 'n': o->sessions = (unsigned)strtoul(optarg, &end, 10); break;
        case 't': o->tls = true; break;
        case 'm':
            if (strcmp(optarg, "PLAIN") == 0)
                o->mech = ST_BENCH_PLAIN;
            else if (strcmp(optarg, "SCRAM-SHA-1") == 0)
                o->mech = ST_BENCH_SCRAM_SHA1;
            else if (strcmp(optarg, "SCRAM-SHA-256") == 0)
                o->mech = ST_BENCH_SCRAM_SHA256;
            else
                return -1;
            break;
        case 'P': o->pairs = (unsigned)strtoul(optarg, &end, 10); break;
        case 'W': o->window = (unsigned)strtoul(optarg, &end, 10); break;
        case 'T': o->duration = strtod(optarg, &end); break;
        case 'S': o->server_pid = (pid_t)strtol(optarg, &end, 10); break;
        case 'K': o->sources = (unsigned)strtoul(optarg, &end, 10); break;
        case 'j': o->json = true; break;
        case 'M':
            if (strcmp(optarg, "login") == 0)
                o->mode = MODE_LOGIN;
            else if (strcmp(optarg, "idle") == 0)
                o->mode = MODE_IDLE;
            else if (strcmp(optarg, "message") == 0)
                o->mode = MODE_MESSAGE;
            else
                return -1;
            break;
        case 'r': o->raw = true; break;
        case 'C': o->scram_cache = optarg; break;
        case 'z': o->size = (unsigned)strtoul(optarg, &end, 10); break;
        case 'f': o->first = (unsigned)strtoul(optarg, &end, 10); break;
        case 'c': o->concurrency = (unsigned)strtoul(optarg, &end, 10); break;
        case 'w': o->warmup = strtod(optarg, &end); break;
        case 'o': o->timeout = strtod(optarg, &end); break;
        default: return -1;
        }
        if (end && *end)
            return -1;
    }
    if (o->mode == MODE_MESSAGE) {
        if (o->pairs == 0)
            o->pairs = o->sessions ? o->sessions / 2 : 1;
        o->sessions = 2 * o->pairs;
        if (o->window == 0)
            return -1;
    }
    if (o->raw && o->mode != MODE_MESSAGE)
        return -1;
    if (o->sessions == 0 || o->accounts == 0 || o->sources == 0 || o->sources > 254 ||
        o->concurrency == 0 || o->size < 64 || o->size > 900 || o->port <= 0)
        return -1;
    return 0;
}

static double ms(double us)
{
    return us / 1000.0;
}

static void report(const struct st_bench_proc *p0, const struct st_bench_proc *p_ready,
                   const struct st_bench_proc *pm0, const struct st_bench_proc *pm1,
                   double msg_secs)
{
    unsigned long errors = 0;
    for (int k = 0; k < E_COUNT; k++)
        errors += G.errs[k];
    double login_s = (double)(G.t_login_end - G.t_login_start) / 1e9;
    double login_rate = login_s > 0 ? G.ready / login_s : 0;
    double login_cpu = p_ready->ok && p0->ok ? p_ready->cpu_s - p0->cpu_s : -1;
    double rate = msg_secs > 0 ? (double)G.delivered / msg_secs : 0;
    double mcpu = pm1->ok && pm0->ok ? pm1->cpu_s - pm0->cpu_s : -1;
    double per100k = G.delivered && mcpu >= 0 ? mcpu / (double)G.delivered * 1e5 : -1;
    const char *mode = G.o.mode == MODE_LOGIN ? "login" : G.o.mode == MODE_IDLE ? "idle"
                                                                                : "message";
    if (G.o.json) {
        printf("{\"mode\":\"%s\",\"raw\":%s,\"tls\":%s,\"mech\":\"%s\",\"sessions\":%u,"
               "\"ready\":%u,\"errors\":%lu,\"error_kinds\":{",
               mode, G.o.raw ? "true" : "false", G.o.tls ? "true" : "false",
               st_bench_mech_name(G.o.mech), G.o.sessions, G.ready, errors);
        for (int k = 0; k < E_COUNT; k++)
            printf("%s\"%s\":%lu", k ? "," : "", err_names[k], G.errs[k]);
        printf("},\"first_error\":\"");
        for (const char *c = G.first_error; *c; c++)
            if (*c >= 0x20 && *c != '"' && *c != '\\')
                putchar(*c);
        printf("\",\"tls_info\":\"%s\",\"login\":{\"seconds\":%.3f,\"rate\":%.1f,"
               "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"pbkdf2_runs\":%lu,"
               "\"server_cpu_s\":%.3f,\"client_cpu_s\":%.3f},",
               G.tls_info, login_s, login_rate, ms(st_bench_hist_pct(G.login_hist, 0.5)),
               ms(st_bench_hist_pct(G.login_hist, 0.99)), ms((double)G.login_hist->max_us),
               G.pbkdf2_runs, login_cpu, G.cpu_login_end - G.cpu_login_start);
        printf("\"server\":{\"rss_start_kib\":%ld,\"rss_ready_kib\":%ld,\"rss_end_kib\":%ld},",
               p0->rss_kib, p_ready->rss_kib, pm1->rss_kib);
        printf("\"messages\":{\"pairs\":%u,\"window\":%u,\"size\":%u,\"seconds\":%.3f,"
               "\"delivered\":%lu,\"delivered_total\":%lu,\"sent_total\":%lu,\"rate\":%.1f,"
               "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"server_cpu_s\":%.3f,"
               "\"cpu_s_per_100k\":%.3f}}\n",
               G.o.mode == MODE_MESSAGE ? G.o.pairs : 0, G.o.window, G.o.size, msg_secs,
               G.delivered, G.delivered_total, G.sent_total, rate,
               ms(st_bench_hist_pct(G.msg_hist, 0.5)), ms(st_bench_hist_pct(G.msg_hist, 0.99)),
               ms((double)G.msg_hist->max_us), mcpu, per100k);
    } else {
        printf("%s: %u/%u sessions ready, %lu errors%s%s\n", mode, G.ready, G.o.sessions, errors,
               G.first_error[0] ? "; first: " : "", G.first_error);
        printf("login: %.0f/s over %.2f s; latency p50 %.2f p99 %.2f max %.2f ms; "
               "%lu PBKDF2 runs; server CPU %.3f s%s%s\n",
               login_rate, login_s, ms(st_bench_hist_pct(G.login_hist, 0.5)),
               ms(st_bench_hist_pct(G.login_hist, 0.99)), ms((double)G.login_hist->max_us),
               G.pbkdf2_runs, login_cpu, G.tls_info[0] ? "; " : "", G.tls_info);
        if (p0->ok)
            printf("server RSS: start %ld KiB, ready %ld KiB, end %ld KiB\n", p0->rss_kib,
                   p_ready->rss_kib, pm1->rss_kib);
        if (G.o.mode == MODE_MESSAGE)
            printf("messages: %lu delivered in %.2f s = %.0f/s; latency p50 %.2f p99 %.2f "
                   "max %.2f ms; server CPU %.3f s = %.3f s per 100k\n",
                   G.delivered, msg_secs, rate, ms(st_bench_hist_pct(G.msg_hist, 0.5)),
                   ms(st_bench_hist_pct(G.msg_hist, 0.99)), ms((double)G.msg_hist->max_us),
                   mcpu, per100k);
    }
    fflush(stdout);
}

static bool all_drained(void)
{
    return G.delivered_total >= G.sent_total;
}

static bool never(void)
{
    return false;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv, &G.o) != 0) {
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_stop_signal);
    signal(SIGINT, on_stop_signal);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if ((rlim_t)G.o.sessions + FD_RESERVE > rl.rlim_cur) {
        fprintf(stderr,
                "loadgen: %u sessions need more than the %lu descriptors this process may "
                "open; split the run across processes with --first/--sessions\n",
                G.o.sessions, (unsigned long)rl.rlim_cur);
        return 2;
    }
    G.ep = epoll_create1(EPOLL_CLOEXEC);
    G.s = st_calloc(G.o.sessions, sizeof *G.s);
    G.dirty = st_calloc(G.o.sessions, sizeof *G.dirty);
    G.cache = st_calloc(G.o.accounts, sizeof *G.cache);
    G.login_hist = st_bench_hist_new();
    G.msg_hist = st_bench_hist_new();
    for (unsigned i = 0; i < G.o.sessions; i++) {
        G.s[i].fd = -1;
        G.s[i].partner = -1;
    }
    if (G.o.tls) {
        G.ssl_ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_verify(G.ssl_ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_mode(G.ssl_ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                                        SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_CTX_set_session_cache_mode(G.ssl_ctx, SSL_SESS_CACHE_OFF);
    }

    if (G.o.scram_cache && G.o.mech != ST_BENCH_PLAIN)
        cache_load(G.o.scram_cache, false);
    struct st_bench_proc p0, p_ready, pm0 = {0}, pm1;
    st_bench_proc_sample(G.o.server_pid, &p0);
    G.t_login_start = st_bench_now_ns();
    G.cpu_login_start = own_cpu_s();
    run_loop(G.o.timeout * 2 + (double)G.o.sessions, all_logged_in);
    if (!G.t_login_end) {
        G.t_login_end = st_bench_now_ns();
        G.cpu_login_end = own_cpu_s();
    }
    st_bench_proc_sample(G.o.server_pid, &p_ready);
    double msg_secs = 0;

    if (G.o.mode == MODE_IDLE) {
        fprintf(stderr, "READY %u\n", G.ready);
        fflush(stderr);
        run_loop(G.o.duration, never);
    } else if (G.o.mode == MODE_MESSAGE && G.ready == G.o.sessions) {
        G.sending = true;
        for (unsigned i = 0; i < G.o.sessions; i++)
            fill_window(&G.s[i]);
        run_loop(G.o.warmup, never);
        G.m_start = st_bench_now_ns();
        G.m_end = G.m_start + (uint64_t)(G.o.duration * 1e9);
        st_bench_proc_sample(G.o.server_pid, &pm0);
        run_loop(G.o.duration, never);
        st_bench_proc_sample(G.o.server_pid, &pm1);
        msg_secs = (double)(st_bench_now_ns() - G.m_start) / 1e9;
        G.sending = false;
        /* Everything sent must arrive: what is still missing after a drain was lost. */
        run_loop(G.o.timeout, all_drained);
        if (G.sent_total > G.delivered_total) {
            char d[64];
            int n = snprintf(d, sizeof d, "%lu messages never delivered",
                             G.sent_total - G.delivered_total);
            note_error(NULL, E_LOST, d, (size_t)n);
        }
    }
    st_bench_proc_sample(G.o.server_pid, &pm1);
    if (G.o.mode != MODE_MESSAGE) {
        pm0 = pm1;
    }
    report(&p0, &p_ready, &pm0, &pm1, msg_secs);
    if (G.o.scram_cache && G.o.mech != ST_BENCH_PLAIN && G.pbkdf2_runs > 0)
        cache_save(G.o.scram_cache);

    unsigned long errors = 0;
    for (int k = 0; k < E_COUNT; k++)
        errors += G.errs[k];
    for (unsigned i = 0; i < G.o.sessions; i++) {
        struct sess *s = &G.s[i];
        if (s->st == S_READY && !G.o.raw) {
            s->out.len = 0;
            if (s->ssl)
                SSL_write(s->ssl, "</stream:stream>", 16);
            else if (write(s->fd, "</stream:stream>", 16) < 0)
                errors += 0;
        }
        if (s->ssl)
            SSL_free(s->ssl);
        if (s->fd >= 0)
            close(s->fd);
        st_buf_free(&s->in);
        st_buf_free(&s->out);
        st_free(s->scram);
        st_free(s->jid);
    }
    if (G.ssl_ctx)
        SSL_CTX_free(G.ssl_ctx);
    st_free(G.s);
    st_free(G.dirty);
    st_free(G.cache);
    st_free(G.login_hist);
    st_free(G.msg_hist);
    close(G.ep);
    if (G.ready < G.o.sessions || errors > 0 ||
        (G.o.mode == MODE_MESSAGE && G.delivered == 0)) {
        fprintf(stderr, "loadgen: FAILED: %u/%u sessions ready, %lu errors%s%s\n", G.ready,
                G.o.sessions, errors, G.first_error[0] ? "; first: " : "", G.first_error);
        return 1;
    }
    return 0;
}
