/* Outgoing server-to-server streams (RFC 6120 §3.2, §4–§6 as the
 * initiating entity; XEP-0368; XEP-0220 as the originating and receiving
 * server). A stream is created for one (local domain, remote domain) pair
 * when the first stanza needs it: static route or DNS (SRV, then A/AAAA),
 * then each target and address in order with a connect timeout; stanzas
 * wait in a bounded queue meanwhile. After the stream header: STARTTLS
 * (§5, required unless s2s.require_encryption is off), the peer's
 * certificate judged per RFC 6125 (s2s.secure_auth: untrusted peers only
 * for s2s.insecure_domains), then SASL EXTERNAL (§6, XEP-0178) when the
 * peer offers it, else dialback (<db:result/> with our XEP-0185 key).
 * <db:verify/> requests for incoming streams ride on this stream once it is
 * past the trust check. A <db:result type=.../> is only believed for the
 * pair this stream asked about, in the dialback state. Towards a peer whose
 * certificate we trust and that offers XEP-0288, we ask for a bidirectional
 * stream; its stanzas to us then arrive on this stream, checked like those
 * of an incoming one. Another pair that needs a stream may ride on an
 * authenticated one by dialback piggybacking (XEP-0220 §2.5) where the
 * certificates show that the peer will accept it and is the right server.
 * On failure the
 * queue bounces with remote-server-not-found or remote-server-timeout.
 * A target that accepts TCP but fails before we are authenticated (TLS
 * failure, a stream error, garbage, a close) counts as a failed attempt of
 * RFC 6120 §3.2.1: the next address or SRV target is tried. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>

#include <openssl/evp.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/mem.h"
#include "xmpp/errors.h"
#include "net/conn.h"
#include "net/connect.h"
#include "starling/module.h"
#include "transport/s2s_dialback.h"
#include "transport/s2s_int.h"
#include "xml/parser.h"
#include "xmpp/server.h"

static void next_target(struct s2s *s);
static void try_addr(struct s2s *s);

static bool more_targets(const struct s2s *s)
{
    return s->ai + 1 < s->naddrs || s->ti + 1 < s->ntargets;
}

/* RFC 6120 §3.2.1: an attempt that got TCP up but failed before authentication (TLS, stream
 * error, not XMPP at all) is as failed as a refused connect; the next address or target gets
 * its chance. The connection is dropped here; on_close starts the next attempt once it is
 * gone (never from inside the parser callback that noticed the failure). Returns false when
 * there is nothing left to try (the caller fails the stream as before). */
static bool retry_elsewhere(struct s2s *s, const char *why)
{
    if (s->state == SS_READY || s->closing || s->retrying || !s->conn || s->m->stopping ||
        !more_targets(s))
        return false;
    st_log_info(s->name, "%s; trying the next server", why);
    s->retrying = true;
    s->last_err = ST_EIO;
    if (s->parser)
        st_xml_parser_stop(s->parser);
    st_conn_abort(s->conn);
    return true;
}

/* Forgets everything negotiated on the failed connection before the next attempt. */
static void reset_attempt(struct s2s *s)
{
    s->retrying = false;
    if (s->parser) {
        st_xml_parser_free(s->parser);
        s->parser = NULL;
    }
    s->tls = s->sasl_done = s->legacy = s->header_sent = false;
    s->can_verify = s->dialback_offered = s->bidi = s->peer_trusted = s->db_errors = false;
    s->id[0] = '\0';
    for (struct s2s_verify *v = s->verifies; v; v = v->next)
        v->sent = false;
    s->state = SS_RESOLVING;
}

static char *pair_key(const char *local, const char *remote)
{
    struct st_buf b;
    st_buf_init(&b, 1024);
    st_buf_printf(&b, "%s\x01%s", local, remote);
    return st_buf_take(&b);
}

struct s2s *st_s2s_out_find(struct st_s2s *m, const char *local, const char *remote)
{
    char *k = pair_key(local, remote);
    struct s2s *s = st_map_get(&m->out, k);
    st_free(k);
    return s;
}

/* Relays the outcome of a <db:verify/> (unlinked by the caller) to the incoming stream that
 * asked, and frees it. */
static void verify_answered(struct s2s *s, struct s2s_verify *v, bool valid)
{
    st_s2s_in_verified(s->m, v->in_id, v->to, v->from, valid);
    st_free(v->from);
    st_free(v->to);
    st_free(v->id);
    st_free(v->key);
    st_free(v->in_id);
    st_free(v);
}

static void mux_unregister(struct s2s *s, struct s2s_mux *x)
{
    if (x->key && st_map_get(&s->m->out, x->key) == s)
        st_map_del(&s->m->out, x->key);
    st_free(x->key);
    x->key = NULL;
}

static void bounce_queue(struct s2s *s, struct s2s_qitem **head, struct s2s_qitem ***tail,
                         size_t *len, const char *cond)
{
    while (*head) {
        struct s2s_qitem *q = *head;
        *head = q->next;
        st_s2s__bounce(s->m, q->x, cond, NULL);
        st_xml_unref(q->x);
        st_free(q);
    }
    *tail = head;
    *len = 0;
}

static void mux_bounce(struct s2s *s, struct s2s_mux *x, const char *cond)
{
    bounce_queue(s, &x->qhead, &x->qtail, &x->qlen, cond);
}

static void mux_free(struct s2s *s, struct s2s_mux *x, const char *cond)
{
    mux_unregister(s, x);
    mux_bounce(s, x, cond);
    st_free(x->local);
    st_free(x->remote);
    st_free(x);
}

void st_s2s_out_free_mux(struct s2s *s)
{
    while (s->mux) {
        struct s2s_mux *x = s->mux;
        s->mux = x->next;
        mux_free(s, x, "remote-server-not-found");
    }
}

void st_s2s_out_unregister(struct s2s *s)
{
    for (struct s2s_mux *x = s->mux; x; x = x->next)
        mux_unregister(s, x);
    if (!s->key)
        return;
    if (st_map_get(&s->m->out, s->key) == s)
        st_map_del(&s->m->out, s->key);
    st_free(s->key);
    s->key = NULL;
}

void st_s2s_out_drain(struct s2s *s, const char *why, bool timeout)
{
    if (s->failed)
        return;
    s->failed = true;
    st_s2s_out_unregister(s);
    const char *cond = timeout || s->last_err == ST_EAGAIN ? "remote-server-timeout"
                                                            : "remote-server-not-found";
    if (s->qlen || s->verifies)
        st_log_info(s->name, "cannot reach %s (%s): bouncing %zu stanza%s with %s", s->remote,
                    why, s->qlen, s->qlen == 1 ? "" : "s", cond);
    else
        st_log_info(s->name, "stream failed: %s", why);
    bounce_queue(s, &s->qhead, &s->qtail, &s->qlen, cond);
    for (struct s2s_mux *x = s->mux; x; x = x->next)
        mux_bounce(s, x, cond);
    while (s->verifies) {
        struct s2s_verify *v = s->verifies;
        s->verifies = v->next;
        verify_answered(s, v, false);
    }
}

void st_s2s_out_fail(struct s2s *s, const char *cond, const char *why, bool timeout)
{
    st_s2s_out_drain(s, why, timeout);
    st_s2s__close(s, cond, NULL);
}

static void on_setup_timeout(uv_timer_t *t)
{
    struct s2s *s = t->data;
    st_s2s_out_fail(s, NULL, "timed out", true);
}

/* ---- ready: flush the queue ---- */

/* Sends the stanzas waiting in a queue (the stream's own, or a piggybacked pair's). */
static void flush_queue(struct s2s *s, struct s2s_qitem **head, struct s2s_qitem ***tail,
                        size_t *len)
{
    while (*head && !s->closing) {
        struct s2s_qitem *q = *head;
        *head = q->next;
        (*len)--;
        if (st_s2s__send_stanza(s, q->x) != 0)
            st_s2s__bounce(s->m, q->x, "policy-violation", "stanza too large for federation");
        st_xml_unref(q->x);
        st_free(q);
    }
    if (!*head)
        *tail = head;
}

/* Sends x now when its pair is ready, else queues it (bounded by s2s.queue_limit). */
static void send_or_queue(struct s2s *s, bool ready, struct s2s_qitem ***tail, size_t *len,
                          struct st_xml *x)
{
    if (ready && s->conn && !s->closing) {
        if (st_s2s__send_stanza(s, x) != 0)
            st_s2s__bounce(s->m, x, "policy-violation", "stanza too large for federation");
        return;
    }
    if ((int64_t)*len >= s->m->srv->settings.s2s.queue_limit) {
        st_s2s__bounce(s->m, x, "resource-constraint", "too many stanzas waiting for the peer");
        return;
    }
    struct s2s_qitem *q = ST_NEW(struct s2s_qitem);
    q->x = st_xml_ref(x);
    **tail = q;
    *tail = &q->next;
    (*len)++;
}

static void ready(struct s2s *s, const char *how)
{
    s->state = SS_READY;
    st_s2s__pause_timer(s);
    st_log_info(s->name, "authenticated (%s)%s; %zu stanza%s queued", how,
                s->tls ? " over TLS" : "", s->qlen, s->qlen == 1 ? "" : "s");
    flush_queue(s, &s->qhead, &s->qtail, &s->qlen);
}

void st_s2s_out_send(struct s2s *s, struct st_xml *x)
{
    send_or_queue(s, s->state == SS_READY, &s->qtail, &s->qlen, x);
}

/* ---- dialback ---- */

static void send_verifies(struct s2s *s)
{
    if (!s->can_verify || !s->conn || s->closing)
        return;
    for (struct s2s_verify *v = s->verifies; v; v = v->next) {
        if (v->sent)
            continue;
        v->sent = true;
        st_s2s__write_db(s, "verify", v->from, v->to, v->id, NULL, v->key);
    }
}

void st_s2s_out_verify(struct st_s2s *m, const char *local, const char *remote, const char *id,
                       const char *key, const char *in_id)
{
    struct s2s *s = st_s2s_out_get(m, local, remote);
    if (!s) {
        st_s2s_in_verified(m, in_id, remote, local, false);
        return;
    }
    struct s2s_verify *v = ST_NEW(struct s2s_verify);
    v->from = st_strdup(local);
    v->to = st_strdup(remote);
    v->id = st_strdup(id);
    v->key = st_strdup(key);
    v->in_id = st_strdup(in_id);
    v->next = s->verifies;
    s->verifies = v;
    send_verifies(s);
}

static void on_verify_answer(struct s2s *s, struct st_xml *x, const char *type)
{
    const char *from = st_xml_attr(x, "from"), *to = st_xml_attr(x, "to");
    const char *id = st_xml_attr(x, "id");
    for (struct s2s_verify **pv = &s->verifies; *pv; pv = &(*pv)->next) {
        struct s2s_verify *v = *pv;
        if (!v->sent || !from || !to || !id || strcmp(from, v->to) != 0 ||
            strcmp(to, v->from) != 0 || strcmp(id, v->id) != 0)
            continue;
        *pv = v->next;
        verify_answered(s, v, strcmp(type, "valid") == 0);
        return;
    }
    st_log_info(s->name, "ignoring an unrequested <db:verify type='%s'/>", type);
}

static void start_dialback(struct s2s *s)
{
    char key[ST_DIALBACK_KEY_HEX];
    if (st_dialback_key(s->m->secret, sizeof s->m->secret, s->remote, s->local, s->id, key)) {
        st_s2s_out_fail(s, "internal-server-error", "cannot compute a dialback key", false);
        return;
    }
    st_s2s__write_db(s, "result", s->local, s->remote, NULL, NULL, key);
    st_memzero(key, sizeof key);
    s->state = SS_DIALBACK;
}

static bool mux_answer(struct s2s *s, const char *from, const char *to, const char *type);

static void on_db_result(struct s2s *s, struct st_xml *x, const char *type)
{
    const char *from = st_xml_attr(x, "from"), *to = st_xml_attr(x, "to");
    if (s->state == SS_READY && from && to && mux_answer(s, from, to, type))
        return;
    /* XEP-0220 §2.1.3: only the answer to what we asked, on the stream we asked it on. */
    if (s->state != SS_DIALBACK || !from || !to || strcasecmp(from, s->remote) != 0 ||
        strcasecmp(to, s->local) != 0) {
        st_log_info(s->name, "ignoring an unrequested <db:result type='%s'/>", type);
        return;
    }
    if (strcmp(type, "valid") == 0)
        ready(s, "dialback");
    else
        st_s2s_out_fail(s, NULL, "the peer refused our dialback key", false);
}

/* ---- dialback piggybacking (XEP-0220 §2.5) ---- */

/* The answer to a piggybacked <db:result/> we sent (and only that: a pair we never asked
 * about, or asked about and already settled, is unsolicited and changes nothing). */
static bool mux_answer(struct s2s *s, const char *from, const char *to, const char *type)
{
    for (struct s2s_mux **px = &s->mux; *px; px = &(*px)->next) {
        struct s2s_mux *x = *px;
        if (x->ready || strcasecmp(from, x->remote) != 0 || strcasecmp(to, x->local) != 0)
            continue;
        if (strcmp(type, "valid") != 0) {
            st_log_info(s->name, "the peer refused %s->%s on this stream (%s)", x->local,
                        x->remote, type);
            *px = x->next;
            mux_free(s, x, "remote-server-not-found");
            return true;
        }
        x->ready = true;
        st_log_info(s->name, "authenticated %s->%s on this stream (dialback piggybacking); "
                    "%zu stanza%s queued", x->local, x->remote, x->qlen,
                    x->qlen == 1 ? "" : "s");
        flush_queue(s, &x->qhead, &x->qtail, &x->qlen);
        return true;
    }
    return false;
}

/* May the pair (local, remote) ride on stream s instead of a connection of its own? Only on
 * a stream that is authenticated, encrypted and whose peer offered dialback errors (so a
 * refusal does not cost the stream, XEP-0220 §2.5), and only where the peer can accept it
 * and we know we talk to the right server: another local domain towards the same peer when
 * our certificate on that stream also names it (a peer under secure_auth would refuse it
 * otherwise); another remote domain of the same peer when the certificate the peer showed
 * us is trusted for that domain too (RFC 6125 — the same test a fresh connection would
 * have to pass). */
static bool mux_allowed(const struct s2s *s, const char *local, const char *remote)
{
    struct st_s2s *m = s->m;
    if (!s->out || s->state != SS_READY || s->closing || !s->conn || !s->tls || !s->db_errors)
        return false;
    bool same_local = strcasecmp(s->local, local) == 0;
    bool same_remote = strcasecmp(s->remote, remote) == 0;
    if (same_local == same_remote)
        return false; /* that is the stream's own pair, or nothing in common */
    if (same_remote)
        return st_tls_client_cert_names(m->tlsc, s->local, local);
    return s->peer_trusted &&
           st_conn_verify_peer(s->conn, m->tlsc, remote, NULL, 0) == ST_PEER_CERT_OK;
}

/* Starts piggybacking (local, remote) on an existing stream if one allows it; returns it. */
static struct s2s *mux_start(struct st_s2s *m, const char *local, const char *remote)
{
    struct s2s *s = m->all;
    while (s && !mux_allowed(s, local, remote))
        s = s->next;
    if (!s)
        return NULL;
    char key[ST_DIALBACK_KEY_HEX];
    if (st_dialback_key(m->secret, sizeof m->secret, remote, local, s->id, key))
        return NULL;
    struct s2s_mux *x = ST_NEW(struct s2s_mux);
    x->local = st_strdup(local);
    x->remote = st_strdup(remote);
    x->key = pair_key(local, remote);
    x->qtail = &x->qhead;
    x->next = s->mux;
    s->mux = x;
    st_map_set(&m->out, x->key, s);
    st_s2s__write_db(s, "result", local, remote, NULL, NULL, key);
    st_memzero(key, sizeof key);
    st_log_info(s->name, "piggybacking %s->%s on this stream (XEP-0220 §2.5)", local, remote);
    return s;
}

void st_s2s_out_send_pair(struct s2s *s, const char *local, const char *remote,
                          struct st_xml *x)
{
    struct s2s_mux *mx = NULL;
    if (s->local && s->remote &&
        (strcasecmp(s->local, local) != 0 || strcasecmp(s->remote, remote) != 0)) {
        for (mx = s->mux; mx; mx = mx->next)
            if (strcasecmp(mx->local, local) == 0 && strcasecmp(mx->remote, remote) == 0)
                break;
    }
    if (!mx) {
        st_s2s_out_send(s, x);
        return;
    }
    send_or_queue(s, mx->ready, &mx->qtail, &mx->qlen, x);
}

/* ---- features ---- */

static bool offers_external(const struct st_xml *f)
{
    struct st_xml *mechs = f ? st_xml_child(f, "mechanisms", ST_NS_SASL) : NULL;
    for (struct st_xml *c = mechs ? st_xml_first_element(mechs) : NULL; c;
         c = st_xml_next_element(c)) {
        char *t = st_xml_text(c);
        bool ext = t && strcmp(t, "EXTERNAL") == 0;
        st_free(t);
        if (ext)
            return true;
    }
    return false;
}

static void on_features(struct s2s *s, const struct st_xml *f)
{
    struct st_s2s *m = s->m;
    const struct st_s2s_settings *ss = &m->srv->settings.s2s;
    if (!s->tls) {
        if (f && st_xml_child(f, "starttls", ST_NS_TLS) && m->tlsc) {
            st_s2s__write_str(s, "<starttls xmlns='" ST_NS_TLS "'/>");
            s->state = SS_STARTTLS;
            return;
        }
        if (ss->require_encryption) {
            st_s2s_out_fail(s, "policy-violation", "the peer does not offer STARTTLS", false);
            return;
        }
    }
    if (s->sasl_done) {
        ready(s, "SASL EXTERNAL");
        return;
    }
    char why[160];
    enum st_peer_cert pc = s->tls ? st_conn_verify_peer(s->conn, m->tlsc, s->remote, why,
                                                        sizeof why)
                                  : ST_PEER_CERT_NONE;
    if (!s->tls)
        snprintf(why, sizeof why, "no TLS");
    if (pc != ST_PEER_CERT_OK) {
        if (ss->secure_auth && !st_s2s__insecure_ok(m, s->remote)) {
            char msg[256];
            snprintf(msg, sizeof msg, "certificate of %s not accepted: %s", s->remote, why);
            st_s2s_out_fail(s, "policy-violation", msg, false);
            return;
        }
        st_log_info(s->name, "peer certificate: %s; allowed for %s by s2s.insecure_domains",
                    why, s->remote);
    }
    s->can_verify = true;
    s->peer_trusted = pc == ST_PEER_CERT_OK;
    /* XEP-0288 §2: ask for a bidirectional stream before authenticating, so the peer answers
     * over this connection instead of opening one back. Only towards a peer whose certificate
     * we trust: stanzas coming back are believed on that basis alone. */
    if (!s->bidi && s->peer_trusted && f && st_xml_child(f, "bidi", ST_NS_BIDI_FEATURE)) {
        st_s2s__write_str(s, "<bidi xmlns='" ST_NS_BIDI "'/>");
        s->bidi = true;
        st_log_debug(s->name, "requested a bidirectional stream (XEP-0288)");
    }
    struct st_xml *db = f ? st_xml_child(f, "dialback", ST_NS_DIALBACK_FEATURE) : NULL;
    s->dialback_offered = !f || db != NULL;
    s->db_errors = db && st_xml_child(db, "errors", ST_NS_DIALBACK_FEATURE) != NULL;
    send_verifies(s);
    if (s->tls && offers_external(f)) {
        unsigned char b64[1024];
        int n = EVP_EncodeBlock(b64, (const unsigned char *)s->local, (int)strlen(s->local));
        struct st_buf b;
        st_buf_init(&b, 2048);
        st_buf_puts(&b, "<auth xmlns='" ST_NS_SASL "' mechanism='EXTERNAL'>");
        st_buf_append(&b, b64, n > 0 ? (size_t)n : 0);
        st_buf_puts(&b, "</auth>");
        st_s2s__write(s, b.data, b.len);
        st_buf_free(&b);
        s->state = SS_SASL;
        return;
    }
    if (s->dialback_offered) {
        start_dialback(s);
        return;
    }
    st_s2s_out_fail(s, "unsupported-feature", "no authentication method in common", false);
}

/* ---- parser callbacks ---- */

static void on_stream_open(void *ud, const struct st_xml *h)
{
    struct s2s *s = ud;
    const char *defns = st_xml_attr(h, "xmlns");
    if (strcmp(h->name, "stream") != 0 || strcmp(h->ns, ST_NS_STREAMS) != 0 || !defns ||
        strcmp(defns, ST_NS_SERVER) != 0) {
        if (!retry_elsewhere(s, "not a jabber:server stream"))
            st_s2s_out_fail(s, "invalid-namespace", "not a jabber:server stream", false);
        return;
    }
    const char *id = st_xml_attr(h, "id");
    snprintf(s->id, sizeof s->id, "%s", id ? id : "");
    const char *version = st_xml_attr(h, "version");
    s->legacy = !version || strncmp(version, "1.", 2) != 0;
    if (s->legacy)
        on_features(s, NULL); /* pre-1.0 peers send no features: dialback straight away */
}

static void restart(struct s2s *s)
{
    s->state = SS_OPENING;
    s->header_sent = false;
    st_xml_parser_reset(s->parser);
    st_s2s__send_header(s, s->local, s->remote, NULL);
}

static void on_stanza(void *ud, struct st_xml *x)
{
    struct s2s *s = ud;
    if (s->closing || s->retrying) {
        st_xml_unref(x);
        return;
    }
    s->last_active = uv_now(s->m->srv->loop);
    const char *type = st_xml_attr(x, "type");
    if (st_s2s__is_ns(x, "features", ST_NS_STREAMS)) {
        if (s->state == SS_OPENING)
            on_features(s, x);
    } else if (st_s2s__is_ns(x, "error", ST_NS_STREAMS)) {
        struct st_xml *c = st_xml_first_element(x);
        char why[128];
        snprintf(why, sizeof why, "stream error from the peer: %s", c ? c->name : "?");
        if (!retry_elsewhere(s, why))
            st_s2s_out_fail(s, NULL, why, false);
    } else if (st_s2s__is_ns(x, "proceed", ST_NS_TLS) && s->state == SS_STARTTLS) {
        if (st_conn_starttls_client(s->conn, s->m->tlsc, s->remote, s->local) != 0) {
            if (!retry_elsewhere(s, "TLS could not start"))
                st_s2s_out_fail(s, NULL, "TLS could not start", false);
        } else {
            s->tls = true;
            restart(s);
        }
    } else if (st_s2s__is_ns(x, "failure", ST_NS_TLS)) {
        st_s2s_out_fail(s, NULL, "the peer refused STARTTLS", false);
    } else if (st_s2s__is_ns(x, "success", ST_NS_SASL) && s->state == SS_SASL) {
        s->sasl_done = true;
        restart(s);
    } else if (st_s2s__is_ns(x, "failure", ST_NS_SASL) && s->state == SS_SASL) {
        if (s->dialback_offered)
            start_dialback(s);
        else
            st_s2s_out_fail(s, NULL, "SASL EXTERNAL refused and no dialback offered", false);
    } else if (st_s2s__is_ns(x, "result", ST_NS_DIALBACK) && type) {
        on_db_result(s, x, type);
    } else if (st_s2s__is_ns(x, "verify", ST_NS_DIALBACK) && type) {
        on_verify_answer(s, x, type);
    } else if (s->bidi && s->state == SS_READY && st_s2s__is_stanza(x)) {
        st_s2s_in_deliver(s, x); /* XEP-0288: the peer answers over our stream */
    } else if (strcmp(x->ns, ST_NS_SERVER) == 0) {
        /* Without bidi (XEP-0288) stanzas must not come back on the initiating stream. */
        st_s2s__close(s, "unsupported-stanza-type", "stanzas on the initiating stream");
    } else {
        st_log_debug(s->name, "ignoring <%s xmlns='%s'/>", x->name, x->ns);
    }
    st_xml_unref(x);
}

static void on_parse_error(void *ud, enum st_xml_parse_error err, const char *text)
{
    struct s2s *s = ud;
    if (s->retrying || retry_elsewhere(s, "the peer does not speak XMPP"))
        return;
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
    if (s->closing || s->retrying)
        return;
    st_xml_parser_feed(s->parser, data, len);
}

static void on_close(struct st_conn *conn, int err)
{
    struct s2s *s = st_conn_data(conn);
    st_log_info(s->name, "disconnected%s%s", err ? ": " : "", err ? st_strerror(err) : "");
    s->conn = NULL;
    if (!s->closing && !s->m->stopping && s->state != SS_READY &&
        (s->retrying || more_targets(s))) {
        if (!s->retrying)
            st_log_info(s->name, "connection lost before authentication; trying the next server");
        reset_attempt(s);
        s->last_err = err ? err : ST_EIO;
        s->ai++;
        try_addr(s);
        return;
    }
    s->retrying = false;
    if (!s->closing) {
        if (s->state != SS_READY)
            st_s2s_out_drain(s, err ? "connection failed" : "connection closed", false);
        s->closing = true;
        st_s2s_out_unregister(s);
    }
    st_s2s__stop_timer(s);
    st_s2s__maybe_free(s);
}

static const struct st_conn_handler conn_handler = {
    .on_read = on_read,
    .on_close = on_close,
};

static void on_connected(void *ud, struct st_conn *c, int status)
{
    struct s2s *s = ud;
    s->creq = NULL;
    if (s->closing) {
        st_s2s__maybe_free(s); /* c (if any) is rejected: no handler set */
        return;
    }
    if (status) {
        s->last_err = status;
        s->ai++;
        try_addr(s);
        return;
    }
    const struct st_server *srv = s->m->srv;
    s->conn = c;
    st_s2s__attach(s, &conn_handler, &parser_cb);
    s->tls = s->targets[s->ti].direct_tls;
    s->state = SS_OPENING;
    st_log_info(s->name, "connected to %s port %u%s", s->addrs[s->ai], s->targets[s->ti].port,
                s->tls ? " (direct TLS)" : "");
    st_s2s__arm_timer(s, srv->settings.s2s.connect_timeout, on_setup_timeout);
    st_s2s__send_header(s, s->local, s->remote, NULL);
}

static void try_addr(struct s2s *s)
{
    struct st_s2s *m = s->m;
    while (s->ai < s->naddrs) {
        const struct st_dns_srv *t = &s->targets[s->ti];
        if (t->direct_tls && !m->tlsc) {
            s->ai++;
            continue;
        }
        int rc = st_conn_connect(m->srv->loop, s->addrs[s->ai], t->port,
                                 t->direct_tls ? m->tlsc : NULL, s->remote, s->local,
                                 on_connected, s, m->srv->settings.s2s.connect_timeout,
                                 &s->creq);
        if (rc == 0)
            return;
        s->ai++;
    }
    s->ti++;
    next_target(s);
}

static void on_addrs(void *ud, int status, const char *const *addrs, size_t n)
{
    struct s2s *s = ud;
    s->dreq = NULL;
    if (status || n == 0) {
        s->last_err = status ? status : ST_ENOTFOUND;
        st_log_debug(s->name, "no address for %s: %s", s->targets[s->ti].host,
                     st_strerror(s->last_err));
        s->ti++;
        next_target(s);
        return;
    }
    st_free(s->addrs);
    s->addrs = st_calloc(n, sizeof *s->addrs);
    for (size_t i = 0; i < n; i++)
        snprintf(s->addrs[i], sizeof s->addrs[i], "%s", addrs[i]);
    s->naddrs = n;
    s->ai = 0;
    try_addr(s);
}

static bool is_ip(const char *h)
{
    unsigned char tmp[16];
    return inet_pton(AF_INET, h, tmp) == 1 || inet_pton(AF_INET6, h, tmp) == 1;
}

static void next_target(struct s2s *s)
{
    while (s->ti < s->ntargets) {
        const char *host = s->targets[s->ti].host;
        if (is_ip(host)) {
            st_free(s->addrs);
            s->addrs = st_calloc(1, sizeof *s->addrs);
            size_t hl = strnlen(host, sizeof s->addrs[0] - 1);
            memcpy(s->addrs[0], host, hl);
            s->addrs[0][hl] = '\0';
            s->naddrs = 1;
            s->ai = 0;
            try_addr(s);
            return;
        }
        if (s->m->dns && st_dns_resolve_addr(s->m->dns, host, on_addrs, s, &s->dreq) == 0)
            return;
        s->ti++;
    }
    st_s2s_out_fail(s, NULL, s->last_err == ST_EAGAIN ? "connection timed out"
                                                      : "no reachable server",
                    s->last_err == ST_EAGAIN);
}

static void on_srv(void *ud, int status, const struct st_dns_srv *targets, size_t n)
{
    struct s2s *s = ud;
    s->dreq = NULL;
    if (status || n == 0) {
        s->last_err = status;
        st_s2s_out_fail(s, NULL, status == ST_EAGAIN ? "DNS timed out" : "no such domain in DNS",
                        status == ST_EAGAIN);
        return;
    }
    s->targets = st_calloc(n, sizeof *s->targets);
    memcpy(s->targets, targets, n * sizeof *targets);
    s->ntargets = n;
    s->ti = 0;
    next_target(s);
}

/* "host:port" or "[v6]:port" from s2s.routes (validated when the settings loaded). */
static bool parse_route(const char *route, struct st_dns_srv *t)
{
    memset(t, 0, sizeof *t);
    const char *colon = strrchr(route, ':');
    if (!colon)
        return false;
    const char *h = route;
    size_t hl = (size_t)(colon - route);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof t->host)
        return false;
    memcpy(t->host, h, hl);
    t->host[hl] = '\0';
    long port = strtol(colon + 1, NULL, 10);
    if (port < 1 || port > 65535)
        return false;
    t->port = (uint16_t)port;
    return true;
}

struct s2s *st_s2s_out_get(struct st_s2s *m, const char *local, const char *remote)
{
    struct s2s *s = st_s2s_out_find(m, local, remote);
    if (s || m->stopping)
        return s;
    s = mux_start(m, local, remote);
    if (s)
        return s;
    s = st_s2s__new_stream(m, true);
    s->local = st_strdup(local);
    s->remote = st_strdup(remote);
    s->key = pair_key(local, remote);
    st_map_set(&m->out, s->key, s);
    snprintf(s->name, sizeof s->name, "s2s-out %s->%s", local, remote);
    s->state = SS_RESOLVING;
    st_s2s__arm_timer(s, m->srv->settings.s2s.connect_timeout, on_setup_timeout);
    const char *route = st_map_get(&m->routes, remote);
    if (route) {
        s->targets = st_calloc(1, sizeof *s->targets);
        if (!parse_route(route, s->targets)) {
            st_s2s__close(s, NULL, "bad static route");
            return NULL;
        }
        s->ntargets = 1;
        st_log_debug(s->name, "static route %s", route);
        next_target(s);
        return s->failed ? NULL : s;
    }
    if (!m->dns || st_dns_resolve_server(m->dns, remote, on_srv, s, &s->dreq) != 0) {
        s->failed = true;
        st_s2s_out_unregister(s);
        st_s2s__close(s, NULL, NULL);
        return NULL;
    }
    return s;
}
