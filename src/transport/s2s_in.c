/* Incoming server-to-server streams (RFC 6120 §4–§6 as the receiving
 * entity; XEP-0220 as receiving and authoritative server; XEP-0288;
 * XEP-0368 direct TLS). The header must name one of our hosts
 * (host-unknown) in a jabber:server stream (invalid-namespace). Features:
 * STARTTLS (required by default), then SASL EXTERNAL when the peer's
 * certificate is trusted for the domain in its header (XEP-0178), dialback
 * and bidi. Each authenticated (remote domain, local domain) pair is kept
 * on the stream: SASL EXTERNAL adds one, and so does each <db:result/>
 * whose key the authoritative server confirmed over our own outgoing stream
 * (or, with a certificate trusted for that domain, at once — XEP-0344
 * §2.4); several pairs on one stream are dialback piggybacking (XEP-0220
 * §2.5). Under s2s.secure_auth a peer without a trusted certificate gets
 * dialback only when allowlisted. A <db:result/> or <db:verify/> with a
 * 'type' on this stream is an answer nobody asked for and changes nothing.
 * Stanzas need 'from' and 'to' (improper-addressing), a 'to' we serve
 * (host-unknown) and an authenticated pair (invalid-from); they are then
 * turned into jabber:client trees and routed. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/mem.h"
#include "xmpp/errors.h"
#include "base/rand.h"
#include "net/conn.h"
#include "net/connect.h"
#include "starling/module.h"
#include "transport/s2s_dialback.h"
#include "transport/s2s_int.h"
#include "xml/parser.h"
#include "xmpp/router.h"
#include "xmpp/server.h"

bool st_s2s_in_authorized(const struct s2s *s, const char *from, const char *to)
{
    if (s->out) {
        if (!s->bidi || !s->peer_trusted || s->state != SS_READY)
            return false;
        if (strcasecmp(from, s->remote) == 0 && strcasecmp(to, s->local) == 0)
            return true;
        /* Pairs piggybacked on the stream count in the other direction too (XEP-0288 §4). */
        for (const struct s2s_mux *x = s->mux; x; x = x->next)
            if (x->ready && strcasecmp(from, x->remote) == 0 && strcasecmp(to, x->local) == 0)
                return true;
        return false;
    }
    for (size_t i = 0; i < s->npairs; i++)
        if (strcmp(s->pairs[i].from, from) == 0 && strcmp(s->pairs[i].to, to) == 0)
            return true;
    return false;
}

static void authorize(struct s2s *s, const char *from, const char *to, const char *how)
{
    if (st_s2s_in_authorized(s, from, to))
        return;
    s->pairs = st_realloc(s->pairs, (s->npairs + 1) * sizeof *s->pairs);
    s->pairs[s->npairs].from = st_strdup(from);
    s->pairs[s->npairs].to = st_strdup(to);
    s->npairs++;
    st_s2s__pause_timer(s);
    st_log_info(s->name, "%s authenticated to send to %s (%s%s)", from, to, how,
                s->tls ? ", TLS" : "");
}

static char *prep_domain(const char *d)
{
    if (!d)
        return NULL;
    char *p = st_jid_prep_string(d);
    if (p && strpbrk(p, "@/")) {
        st_free(p);
        return NULL;
    }
    return p;
}

/* ---- features ---- */

static bool tls_available(const struct s2s *s)
{
    return s->m->srv->tls != NULL;
}

static bool cert_ok(struct s2s *s, const char *domain)
{
    return s->tls && domain &&
           st_conn_verify_peer(s->conn, s->m->tlsc, domain, NULL, 0) == ST_PEER_CERT_OK;
}

static void send_features(struct s2s *s)
{
    const struct st_s2s_settings *ss = &s->m->srv->settings.s2s;
    struct st_buf b;
    st_buf_init(&b, 4096);
    st_buf_puts(&b, "<stream:features>");
    if (!s->tls && tls_available(s)) {
        st_buf_puts(&b, "<starttls xmlns='" ST_NS_TLS "'>");
        if (ss->require_encryption)
            st_buf_puts(&b, "<required/>");
        st_buf_puts(&b, "</starttls>");
    }
    bool usable = s->tls || !ss->require_encryption || !tls_available(s);
    if (usable && !s->sasl_done) {
        if (cert_ok(s, s->remote))
            st_buf_puts(&b, "<mechanisms xmlns='" ST_NS_SASL
                            "'><mechanism>EXTERNAL</mechanism></mechanisms>");
        st_buf_puts(&b, "<dialback xmlns='" ST_NS_DIALBACK_FEATURE "'><errors/></dialback>");
        st_buf_puts(&b, "<bidi xmlns='" ST_NS_BIDI_FEATURE "'/>");
    }
    st_buf_puts(&b, "</stream:features>");
    st_s2s__write(s, b.data, b.len);
    st_buf_free(&b);
}

/* ---- dialback ---- */

void st_s2s_in_verified(struct st_s2s *m, const char *in_id, const char *from, const char *to,
                        bool valid)
{
    struct s2s *s = st_s2s__find_in(m, in_id);
    if (!s || s->closing)
        return;
    for (struct s2s_pending **pp = &s->pending; *pp; pp = &(*pp)->next) {
        struct s2s_pending *p = *pp;
        if (strcmp(p->from, from) != 0 || strcmp(p->to, to) != 0)
            continue;
        *pp = p->next;
        st_free(p->from);
        st_free(p->to);
        st_free(p);
        if (valid)
            authorize(s, from, to, "dialback");
        else
            st_log_info(s->name, "dialback for %s failed", from);
        st_s2s__write_db(s, "result", to, from, NULL, valid ? "valid" : "invalid", NULL);
        return;
    }
}

/* XEP-0220 §2.1.2: the originating server asks us (receiving) to accept its domain. */
static void on_db_request(struct s2s *s, struct st_xml *x)
{
    struct st_s2s *m = s->m;
    char *from = prep_domain(st_xml_attr(x, "from"));
    char *to = prep_domain(st_xml_attr(x, "to"));
    char *key = st_xml_text(x);
    if (!from || !to || !key || !key[0]) {
        st_s2s__close(s, "improper-addressing", "<db:result/> needs from, to and a key");
        goto out;
    }
    if (!st_domain_served(m->srv, to)) {
        st_s2s__close(s, "host-unknown", "this server does not serve that domain");
        goto out;
    }
    if (st_s2s_in_authorized(s, from, to) || cert_ok(s, from)) {
        authorize(s, from, to, "dialback with a trusted certificate");
        st_s2s__write_db(s, "result", to, from, NULL, "valid", NULL);
        goto out;
    }
    if (m->srv->settings.s2s.secure_auth && !st_s2s__insecure_ok(m, from)) {
        st_log_info(s->name, "refusing dialback from %s: no trusted certificate and not in "
                    "s2s.insecure_domains", from);
        st_s2s__write_db(s, "result", to, from, NULL, "invalid", NULL);
        goto out;
    }
    for (struct s2s_pending *p = s->pending; p; p = p->next)
        if (strcmp(p->from, from) == 0 && strcmp(p->to, to) == 0)
            goto out; /* already asked */
    struct s2s_pending *p = ST_NEW(struct s2s_pending);
    p->from = st_strdup(from);
    p->to = st_strdup(to);
    p->next = s->pending;
    s->pending = p;
    /* The authoritative server for 'from' is reached over our own stream to it. */
    st_s2s_out_verify(m, to, from, s->id, key, s->id);
out:
    st_free(from);
    st_free(to);
    st_free(key);
}

/* XEP-0220 §2.3: we are the authoritative server: was this key ours? */
static void on_db_verify(struct s2s *s, struct st_xml *x)
{
    struct st_s2s *m = s->m;
    char *from = prep_domain(st_xml_attr(x, "from")); /* the receiving server */
    char *to = prep_domain(st_xml_attr(x, "to"));     /* us, the originating domain */
    const char *id = st_xml_attr(x, "id");
    char *key = st_xml_text(x);
    if (!from || !to || !id || !key) {
        st_s2s__close(s, "improper-addressing", "<db:verify/> needs from, to, id and a key");
        goto out;
    }
    if (!st_domain_served(m->srv, to)) {
        st_s2s__close(s, "host-unknown", "this server does not serve that domain");
        goto out;
    }
    bool valid = st_dialback_check(m->secret, sizeof m->secret, from, to, id, key);
    st_log_info(s->name, "dialback verify from %s for %s: %s", from, to,
                valid ? "valid" : "invalid");
    st_s2s__write_db(s, "verify", to, from, id, valid ? "valid" : "invalid", NULL);
out:
    st_free(from);
    st_free(to);
    st_free(key);
}

/* ---- SASL EXTERNAL (RFC 6120 §6, XEP-0178) ---- */

static void sasl_failure(struct s2s *s, const char *cond)
{
    struct st_buf b;
    st_buf_init(&b, 512);
    st_buf_printf(&b, "<failure xmlns='" ST_NS_SASL "'><%s/></failure>", cond);
    st_s2s__write(s, b.data, b.len);
    st_buf_free(&b);
}

static void on_auth(struct s2s *s, struct st_xml *x)
{
    const char *mech = st_xml_attr(x, "mechanism");
    if (s->sasl_done || !mech || strcmp(mech, "EXTERNAL") != 0) {
        sasl_failure(s, "invalid-mechanism");
        return;
    }
    char *text = st_xml_text(x);
    char authz[1024] = "";
    if (text && text[0] && strcmp(text, "=") != 0) {
        size_t n = strlen(text);
        unsigned char dec[1024];
        int dl = n < 1300 ? EVP_DecodeBlock(dec, (const unsigned char *)text, (int)n) : -1;
        if (dl < 0) {
            st_free(text);
            sasl_failure(s, "incorrect-encoding");
            return;
        }
        while (dl > 0 && n > 0 && text[n - 1] == '=') { /* EVP_DecodeBlock keeps padding */
            dl--;
            n--;
        }
        if ((size_t)dl >= sizeof authz) {
            st_free(text);
            sasl_failure(s, "invalid-authzid");
            return;
        }
        memcpy(authz, dec, (size_t)dl);
        authz[dl] = '\0';
    }
    st_free(text);
    char *domain = prep_domain(authz[0] ? authz : s->remote);
    if (!domain || (s->remote && strcmp(domain, s->remote) != 0)) {
        st_free(domain);
        sasl_failure(s, "invalid-authzid");
        return;
    }
    if (!cert_ok(s, domain)) {
        st_log_info(s->name, "SASL EXTERNAL for %s refused: certificate not trusted", domain);
        st_free(domain);
        sasl_failure(s, "not-authorized");
        return;
    }
    st_s2s__write_str(s, "<success xmlns='" ST_NS_SASL "'/>");
    s->sasl_done = true;
    authorize(s, domain, s->local, "SASL EXTERNAL");
    st_free(domain);
    s->header_sent = false;
    st_xml_parser_reset(s->parser);
}

/* ---- stanzas ---- */

void st_s2s_in_deliver(struct s2s *s, struct st_xml *x)
{
    const char *from_s = st_xml_attr(x, "from"), *to_s = st_xml_attr(x, "to");
    if (!from_s || !to_s) {
        st_s2s__close(s, "improper-addressing", "stanzas between servers need 'from' and 'to'");
        return;
    }
    struct st_jid from = {0}, to = {0};
    if (st_jid_parse(from_s, &from) != 0 || st_jid_parse(to_s, &to) != 0) {
        st_jid_clear(&from);
        st_s2s__close(s, "improper-addressing", "malformed 'from' or 'to'");
        return;
    }
    if (!st_domain_served(s->m->srv, to.domain)) {
        st_s2s__close(s, "host-unknown", "this server does not serve that domain");
    } else if (!st_s2s_in_authorized(s, from.domain, to.domain)) {
        st_s2s__close(s, "invalid-from", "the 'from' domain is not authenticated on this stream");
    } else {
        struct st_xml *c = st_s2s__to_client_ns(x);
        st_route(s->m->srv, NULL, c);
        st_xml_unref(c);
    }
    st_jid_clear(&from);
    st_jid_clear(&to);
}

/* ---- parser callbacks ---- */

static void on_stream_open(void *ud, const struct st_xml *h)
{
    struct s2s *s = ud;
    struct st_s2s *m = s->m;
    const char *defns = st_xml_attr(h, "xmlns");
    char *to = prep_domain(st_xml_attr(h, "to"));
    char *from = prep_domain(st_xml_attr(h, "from"));
    /* The answer's 'from' is the host asked for, when we serve it. */
    if (to && st_domain_served(m->srv, to) && (!s->local || strcmp(s->local, to) == 0)) {
        st_free(s->local);
        s->local = st_strdup(to);
    }
    if (from && (!s->remote || !s->sasl_done)) {
        st_free(s->remote);
        s->remote = st_strdup(from);
    }
    if (s->id[0])
        st_map_del(&m->in_by_id, s->id);
    st_rand_id(s->id, sizeof s->id, 128);
    st_map_set(&m->in_by_id, s->id, s);
    const char *version = st_xml_attr(h, "version");
    s->legacy = !version;
    st_s2s__send_header(s, s->local ? s->local : m->srv->settings.hosts[0].name, s->remote,
                        s->id);
    if (strcmp(h->name, "stream") != 0 || strcmp(h->ns, ST_NS_STREAMS) != 0 || !defns ||
        strcmp(defns, ST_NS_SERVER) != 0) {
        st_s2s__close(s, "invalid-namespace", "expected a jabber:server stream");
    } else if (!to || !s->local || strcmp(s->local, to) != 0) {
        st_s2s__close(s, "host-unknown", to ? "this server does not serve that host"
                                            : "the stream header has no 'to'");
    } else if (version && strncmp(version, "1.", 2) != 0) {
        st_s2s__close(s, "unsupported-version", "only XMPP 1.0 streams are supported");
    } else if (!s->legacy) {
        send_features(s);
    }
    st_free(to);
    st_free(from);
}

static void on_stanza(void *ud, struct st_xml *x)
{
    struct s2s *s = ud;
    if (s->closing) {
        st_xml_unref(x);
        return;
    }
    const struct st_s2s_settings *ss = &s->m->srv->settings.s2s;
    const char *type = st_xml_attr(x, "type");
    if (st_s2s__is_ns(x, "starttls", ST_NS_TLS)) {
        if (s->tls || !tls_available(s) || s->sasl_done) {
            st_s2s__write_str(s, "<failure xmlns='" ST_NS_TLS "'/>");
            st_s2s__close(s, NULL, NULL);
        } else {
            st_s2s__write_str(s, "<proceed xmlns='" ST_NS_TLS "'/>");
            if (st_conn_starttls(s->conn, s->m->srv->tls) != 0 ||
                st_conn_request_peer_cert(s->conn) != 0) {
                st_s2s__close(s, "internal-server-error", "TLS could not start");
            } else {
                s->tls = true;
                s->header_sent = false;
                st_xml_parser_reset(s->parser);
            }
        }
    } else if (!s->tls && ss->require_encryption && tls_available(s)) {
        st_s2s__close(s, "policy-violation", "STARTTLS is required first");
    } else if (st_s2s__is_ns(x, "auth", ST_NS_SASL)) {
        on_auth(s, x);
    } else if (st_s2s__is_ns(x, "bidi", ST_NS_BIDI)) {
        s->bidi = true; /* XEP-0288 §3: we may answer over this stream once it is trusted */
    } else if (st_s2s__is_ns(x, "result", ST_NS_DIALBACK)) {
        if (type)
            st_log_info(s->name, "ignoring <db:result type='%s'/> sent to the receiving side "
                        "(unrequested; never marks a domain verified)", type);
        else
            on_db_request(s, x);
    } else if (st_s2s__is_ns(x, "verify", ST_NS_DIALBACK)) {
        if (type)
            st_log_info(s->name, "ignoring an unrequested <db:verify type='%s'/>", type);
        else
            on_db_verify(s, x);
    } else if (st_s2s__is_stanza(x)) {
        s->last_active = uv_now(s->m->srv->loop);
        st_s2s_in_deliver(s, x);
    } else {
        st_s2s__close(s, "unsupported-stanza-type", NULL);
    }
    st_xml_unref(x);
}

static void on_parse_error(void *ud, enum st_xml_parse_error err, const char *text)
{
    struct s2s *s = ud;
    st_s2s__close(s, st_stream_error_for_parse(err), text);
}

static const struct st_xml_parser_cb parser_cb = {
    .stream_open = on_stream_open,
    .stanza = on_stanza,
    .stream_close = st_s2s__on_stream_close,
    .error = on_parse_error,
};

/* ---- connection ---- */

static void on_read(struct st_conn *conn, const char *data, size_t len)
{
    struct s2s *s = st_conn_data(conn);
    if (s->closing)
        return;
    st_xml_parser_feed(s->parser, data, len);
}

static void on_close(struct st_conn *conn, int err)
{
    struct s2s *s = st_conn_data(conn);
    st_log_info(s->name, "disconnected%s%s", err ? ": " : "", err ? st_strerror(err) : "");
    s->conn = NULL;
    s->closing = true;
    st_s2s__stop_timer(s);
    st_s2s__maybe_free(s);
}

static const struct st_conn_handler conn_handler = {
    .on_read = on_read,
    .on_close = on_close,
};

static void on_negotiation_timeout(uv_timer_t *t)
{
    struct s2s *s = t->data;
    st_s2s__close(s, "connection-timeout", "no authenticated domain in time");
}

void st_s2s_in_accept(void *ud, struct st_conn *conn)
{
    struct st_s2s *m = ud;
    struct st_server *srv = m->srv;
    if (m->stopping || srv->shutting_down) {
        st_conn_abort(conn);
        return;
    }
    struct s2s *s = st_s2s__new_stream(m, false);
    s->conn = conn;
    snprintf(s->name, sizeof s->name, "s2s-in-%u", ++m->seq);
    s->tls = st_conn_is_tls(conn);
    if (s->tls)
        st_conn_request_peer_cert(conn);
    st_s2s__attach(s, &conn_handler, &parser_cb);
    uint64_t deadline = srv->settings.s2s.connect_timeout * 3;
    st_s2s__arm_timer(s, deadline < 30000 ? 30000 : deadline, on_negotiation_timeout);
    st_log_info(s->name, "connection from %s%s", st_conn_peer(conn),
                s->tls ? " (direct TLS)" : "");
}
