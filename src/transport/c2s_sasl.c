/* SASL authentication (RFC 6120 §6, RFC 4422) and resource binding
 * (RFC 6120 §7) on c2s streams. Mechanisms: SCRAM-SHA-1/-256/-512
 * (RFC 5802, RFC 7677) and their -PLUS variants with tls-exporter
 * (RFC 9266) or tls-server-end-point (RFC 5929) channel binding
 * advertised per XEP-0440, and PLAIN (RFC 4616) over TLS only.
 * Credentials are fetched asynchronously from storage; PLAIN's PBKDF2
 * runs on the worker pool. Unknown users go through the same steps as
 * wrong passwords (a dummy SCRAM salt, a dummy PBKDF2) so the replies and
 * their timing do not reveal which accounts exist. */
#include "transport/c2s_sasl.h"

#include <stdio.h>
#include <string.h>

#include <openssl/tls1.h>

#include "base/log.h"
#include "base/mem.h"
#include "base/rand.h"
#include "event/worker.h"
#include "net/conn.h"
#include "starling/module.h"
#include "transport/c2s.h"
#include "xml/parser.h"
#include "xmpp/accounts.h"
#include "xmpp/server.h"

#define SASL_MAX_DATA 8192

static const struct {
    const char *name;
    enum st_scram_hash hash;
    bool plus;
} scram_mechs[] = {
    {"SCRAM-SHA-512-PLUS", ST_SCRAM_SHA512, true}, {"SCRAM-SHA-256-PLUS", ST_SCRAM_SHA256, true},
    {"SCRAM-SHA-1-PLUS", ST_SCRAM_SHA1, true},     {"SCRAM-SHA-512", ST_SCRAM_SHA512, false},
    {"SCRAM-SHA-256", ST_SCRAM_SHA256, false},     {"SCRAM-SHA-1", ST_SCRAM_SHA1, false},
};

/* Channel-binding types this stream can produce, as CB_* bits. This runs for every stream
 * features and <auth/>, so it must stay cheap: producing tls-exporter data runs the TLS
 * exporter (an HKDF expansion, ~65k instructions in OpenSSL 3.0), so that type is judged by
 * the rule st_conn_channel_binding applies to it (RFC 9266 §2: TLS 1.3 only) and its data is
 * computed only for a -PLUS exchange (get_cb_data). tls-server-end-point is a hash of our
 * certificate (RFC 5929 §4.1, ~25k): computed when all types are wanted (the XEP-0440 list)
 * or when the exporter is not there. */
enum { CB_EXPORTER = 1u, CB_END_POINT = 2u };

static unsigned cb_types(struct c2s *c, bool all)
{
    int version = c->conn ? st_conn_tls_version(c->conn) : 0;
    if (version == 0)
        return 0;
    unsigned m = version == TLS1_3_VERSION ? CB_EXPORTER : 0;
    unsigned char buf[ST_SCRAM_MAX_CB_DATA];
    if ((all || !m) &&
        st_conn_channel_binding(c->conn, "tls-server-end-point", buf, sizeof buf) > 0)
        m |= CB_END_POINT;
    return m;
}

/* Whether this stream may carry PLAIN's cleartext password: encrypted, or the operator chose
 * c2s.allow_plain_unencrypted. */
static bool plain_transport_ok(const struct c2s *c)
{
    return c->sess.secure || c->srv->settings.c2s.allow_plain_unencrypted;
}

static bool plain_allowed(struct c2s *c)
{
    return c->srv->settings.c2s.allow_plain && plain_transport_ok(c);
}

void st_c2s_sasl_features(struct c2s *c, struct st_xml *f)
{
    struct st_xml *m = st_xml_add_child(f, "mechanisms", ST_NS_SASL);
    unsigned cb = cb_types(c, true);
    bool plus = cb != 0;
    for (size_t i = 0; i < sizeof scram_mechs / sizeof scram_mechs[0]; i++)
        if (!scram_mechs[i].plus || plus)
            st_xml_add_text_child(m, "mechanism", scram_mechs[i].name);
    if (plain_allowed(c))
        st_xml_add_text_child(m, "mechanism", "PLAIN");
    if (plus) {
        /* XEP-0440: tell the client which channel-binding types we can produce. */
        struct st_xml *cbs = st_xml_add_child(f, "sasl-channel-binding", "urn:xmpp:sasl-cb:0");
        static const struct {
            unsigned bit;
            const char *name;
        } types[] = {{CB_EXPORTER, "tls-exporter"}, {CB_END_POINT, "tls-server-end-point"}};
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
            if (cb & types[i].bit) {
                struct st_xml *t = st_xml_add_child(cbs, "channel-binding", NULL);
                st_xml_set_attr(t, "type", types[i].name);
            }
        }
    }
}

void st_c2s_sasl_clear(struct c2s *c)
{
    st_scram_server_free(c->scram);
    c->scram = NULL;
    st_free(c->sasl_mech);
    c->sasl_mech = NULL;
}

static void send_sasl(struct c2s *c, const char *elem, const unsigned char *data, size_t len,
                      bool empty_marker)
{
    struct st_buf b;
    st_buf_init(&b, SASL_MAX_DATA * 2);
    st_buf_puts(&b, "<");
    st_buf_puts(&b, elem);
    st_buf_puts(&b, " xmlns='" ST_NS_SASL "'>");
    if (data && len) {
        char *enc = st_base64_encode(data, len);
        st_buf_puts(&b, enc);
        st_free(enc);
    } else if (empty_marker) {
        st_buf_puts(&b, "=");
    }
    st_buf_puts(&b, "</");
    st_buf_puts(&b, elem);
    st_buf_puts(&b, ">");
    st_c2s_write_str(c, b.data);
    st_buf_free(&b);
}

static void sasl_failure(struct c2s *c, const char *condition, const char *text, bool count)
{
    st_c2s_sasl_clear(c);
    struct st_buf b;
    st_buf_init(&b, 2048);
    st_buf_printf(&b, "<failure xmlns='" ST_NS_SASL "'><%s/>", condition);
    if (text) {
        st_buf_puts(&b, "<text xml:lang='en'>");
        st_buf_put_xml_escaped(&b, text, strlen(text));
        st_buf_puts(&b, "</text>");
    }
    st_buf_puts(&b, "</failure>");
    st_c2s_write_str(c, b.data);
    st_buf_free(&b);
    if (!count)
        return;
    c->sasl_failures++;
    if (c->sasl_failures >= (unsigned)c->srv->settings.c2s.sasl_attempts) {
        /* RFC 6120 §6.4.5: a bounded number of retries, then the stream ends. */
        st_c2s_stream_error(c, "policy-violation", "too many failed authentication attempts");
    }
}

void st_c2s_sasl_failure(struct c2s *c, const char *condition, const char *text)
{
    sasl_failure(c, condition, text, strcmp(condition, "aborted") != 0);
}

static void auth_failed(struct c2s *c, const char *user)
{
    st_log_info(c->sess.id, "authentication failed for %s@%s from %s (%s)", user ? user : "?",
                c->sess.host->name, c->peer,
                c->sasl_mech ? c->sasl_mech : "?");
    st_c2s_sasl_failure(c, "not-authorized", NULL);
}

static void auth_succeeded(struct c2s *c, const char *user, const unsigned char *extra,
                           size_t extra_len)
{
    st_free(c->sess.username);
    c->sess.username = st_strdup(user);
    c->sess.authenticated = true;
    st_log_info(c->sess.id, "authenticated %s@%s with %s", user, c->sess.host->name,
                c->sasl_mech ? c->sasl_mech : "?");
    send_sasl(c, "success", extra, extra_len, false);
    st_c2s_sasl_clear(c);
    /* RFC 6120 §6.4.6: a new stream follows, with the post-authentication limits. Framed
     * transports parse each message or body on its own and need no reset. */
    c->header_sent = false;
    c->stream_open = false;
    if (c->parser)
        st_xml_parser_reset(c->parser);
    st_c2s_apply_limits(c);
}

/* authzid must be absent or the authenticated account's bare JID (RFC 6120 §6.4.6). */
static bool authzid_ok(struct c2s *c, const char *user, const char *authzid)
{
    if (!authzid || !*authzid)
        return true;
    struct st_jid j;
    if (st_jid_parse(authzid, &j) != 0)
        return false;
    bool ok = j.local && !j.resource && strcmp(j.local, user) == 0 &&
              strcmp(j.domain, c->sess.host->name) == 0;
    st_jid_clear(&j);
    return ok;
}

/* ---- PLAIN ---- */

struct plain_job {
    struct c2s *c;
    char *user;     /* prepared, or NULL when the name was invalid */
    char *authzid;
    char *password; /* wiped after use */
    size_t pwlen;
    struct st_scram_cred cred;
    bool have_cred;
    bool ok;
};

static void plain_free(struct plain_job *j)
{
    if (j->password) {
        st_memzero(j->password, j->pwlen);
        st_free(j->password);
    }
    st_memzero(&j->cred, sizeof j->cred);
    st_free(j->user);
    st_free(j->authzid);
    st_free(j);
}

static void plain_work(void *ud)
{
    struct plain_job *j = ud;
    /* Always run PBKDF2 so unknown users cost the same time as real ones. */
    char *prepped = NULL;
    const char *pw = j->password;
    size_t pwlen = j->pwlen;
    if (st_jid_prep_resource(j->password, j->pwlen, &prepped) == 0) {
        pw = prepped;
        pwlen = strlen(prepped);
    }
    bool ok = st_scram_check_password(ST_SCRAM_SHA256, &j->cred, pw, pwlen);
    j->ok = ok && j->have_cred;
    if (prepped) {
        st_memzero(prepped, strlen(prepped));
        st_free(prepped);
    }
}

static void plain_done(void *ud)
{
    struct plain_job *j = ud;
    struct c2s *c = j->c;
    if (st_c2s_live(c) && !c->sess.closing) {
        st_c2s_resume(c);
        if (!j->ok)
            auth_failed(c, j->user);
        else if (!authzid_ok(c, j->user, j->authzid))
            st_c2s_sasl_failure(c, "invalid-authzid", NULL);
        else
            auth_succeeded(c, j->user, NULL, 0);
    }
    plain_free(j);
    st_c2s_async_done(c);
}

static void plain_got_cred(void *ud, int rc, const struct st_scram_cred *cred)
{
    struct plain_job *j = ud;
    if (rc == 0 && cred) {
        j->cred = *cred;
        j->have_cred = true;
    } else {
        st_scram_dummy_cred(ST_SCRAM_SHA256, j->c->srv->dummy_secret,
                            sizeof j->c->srv->dummy_secret, j->user ? j->user : "", &j->cred);
    }
    if (st_worker_submit(j->c->srv->loop, plain_work, plain_done, j) != 0) {
        j->ok = false;
        plain_done(j);
    }
}

static void start_plain(struct c2s *c, const unsigned char *data, long len)
{
    /* RFC 4616: [authzid] NUL authcid NUL passwd */
    const unsigned char *nul1 = memchr(data, 0, (size_t)len);
    const unsigned char *nul2 = nul1 ? memchr(nul1 + 1, 0, (size_t)(data + len - nul1 - 1)) : NULL;
    if (!nul1 || !nul2 || nul2 == nul1 + 1 || nul2 == data + len - 1 ||
        memchr(nul2 + 1, 0, (size_t)(data + len - nul2 - 1))) {
        st_c2s_sasl_failure(c, "malformed-request", NULL);
        return;
    }
    struct plain_job *j = ST_NEW(struct plain_job);
    j->c = c;
    if (nul1 != data)
        j->authzid = st_strndup((const char *)data, (size_t)(nul1 - data));
    char *raw_user = st_strndup((const char *)nul1 + 1, (size_t)(nul2 - nul1 - 1));
    if (st_jid_prep_local(raw_user, strlen(raw_user), &j->user) != 0)
        j->user = NULL;
    st_free(raw_user);
    j->pwlen = (size_t)(data + len - nul2 - 1);
    j->password = st_strndup((const char *)nul2 + 1, j->pwlen);
    c->pending++;
    st_c2s_pause(c);
    if (!j->user || st_account_get_cred(c->srv->storage, c->sess.host->name, j->user,
                                        ST_SCRAM_SHA256, plain_got_cred, j) != 0)
        plain_got_cred(j, ST_ENOTFOUND, NULL);
}

/* ---- SCRAM ---- */

static int get_cb_data(void *ud, const char *type, unsigned char *out, size_t outlen)
{
    struct c2s *c = ud;
    return c->conn ? st_conn_channel_binding(c->conn, type, out, outlen) : -1;
}

static void scram_fail(struct c2s *c, enum st_scram_result r)
{
    const char *user = c->scram ? st_scram_server_user(c->scram) : NULL;
    switch (r) {
    case ST_SCRAM_FAIL_MALFORMED:
        st_c2s_sasl_failure(c, "malformed-request", NULL);
        break;
    case ST_SCRAM_FAIL_AUTHZID:
        st_c2s_sasl_failure(c, "invalid-authzid", NULL);
        break;
    case ST_SCRAM_FAIL_CB:
        /* A channel-binding type we cannot produce, or the 'y' downgrade flag: a negotiation
         * failure, not a password guess, so it does not use up an attempt. Clients such as
         * those that only know tls-unique then move on to another mechanism. */
        st_log_info(c->sess.id, "channel binding refused for %s (%s)", user ? user : "?",
                    c->sasl_mech ? c->sasl_mech : "?");
        sasl_failure(c, "not-authorized", NULL, false);
        break;
    default: {
        char *u = user ? st_strdup(user) : NULL;
        auth_failed(c, u);
        st_free(u);
        break;
    }
    }
}

struct scram_lookup {
    struct c2s *c;
};

static void scram_got_cred(void *ud, int rc, const struct st_scram_cred *cred)
{
    struct scram_lookup *l = ud;
    struct c2s *c = l->c;
    st_free(l);
    if (st_c2s_live(c) && !c->sess.closing && c->scram) {
        st_c2s_resume(c);
        char *out = NULL;
        enum st_scram_result r = st_scram_server_set_cred(
            c->scram, rc == 0 ? cred : NULL, c->srv->dummy_secret, sizeof c->srv->dummy_secret,
            &out);
        if (r == ST_SCRAM_CONTINUE && out)
            send_sasl(c, "challenge", (const unsigned char *)out, strlen(out), false);
        else
            scram_fail(c, r);
        st_free(out);
    }
    st_c2s_async_done(c);
}

static void scram_step(struct c2s *c, const unsigned char *data, long len)
{
    if (!c->scram)
        return;
    char *out = NULL;
    enum st_scram_result r;
    if (!c->sess.username && !st_scram_server_user(c->scram)) {
        r = st_scram_server_first(c->scram, (const char *)data, (size_t)len);
        if (r == ST_SCRAM_NEED_CRED) {
            const char *raw = st_scram_server_user(c->scram);
            char *user = NULL;
            const char *authzid = st_scram_server_authzid(c->scram);
            if (st_jid_prep_local(raw, strlen(raw), &user) != 0)
                user = NULL;
            if (user && !authzid_ok(c, user, authzid)) {
                st_free(user);
                st_c2s_sasl_failure(c, "invalid-authzid", NULL);
                return;
            }
            struct scram_lookup *l = ST_NEW(struct scram_lookup);
            l->c = c;
            c->pending++;
            st_c2s_pause(c);
            if (!user || st_account_get_cred(c->srv->storage, c->sess.host->name, user,
                                             c->scram_hash, scram_got_cred, l) != 0)
                scram_got_cred(l, ST_ENOTFOUND, NULL);
            st_free(user);
            return;
        }
        scram_fail(c, r);
        return;
    }
    r = st_scram_server_final(c->scram, (const char *)data, (size_t)len, &out);
    if (r == ST_SCRAM_SUCCESS) {
        const char *raw = st_scram_server_user(c->scram);
        char *user = NULL;
        if (st_jid_prep_local(raw, strlen(raw), &user) == 0) {
            auth_succeeded(c, user, (const unsigned char *)out, strlen(out));
        } else {
            auth_failed(c, NULL);
        }
        st_free(user);
    } else {
        scram_fail(c, r);
    }
    st_free(out);
}

/* Decodes the base64 payload of x into out ("=" is an empty response, RFC 6120 §6.4.2).
 * Returns its length, or -1 after answering the client with a SASL failure
 * (incorrect-encoding, or malformed-request when too long). */
static long decode_payload(struct c2s *c, const struct st_xml *x, unsigned char *out,
                           size_t max, bool *empty)
{
    char *t = st_xml_text(x);
    size_t n = strlen(t);
    long r;
    *empty = false;
    if (n == 0) {
        *empty = true;
        r = 0;
    } else if (n == 1 && t[0] == '=') {
        r = 0;
    } else if (n > max * 4 / 3 + 4) {
        r = -2;
    } else {
        r = st_base64_decode(t, n, out, max);
    }
    st_free(t);
    if (r == -1) {
        st_c2s_sasl_failure(c, "incorrect-encoding", NULL);
        return -1;
    }
    if (r < 0) {
        st_c2s_sasl_failure(c, "malformed-request", NULL);
        return -1;
    }
    return r;
}

void st_c2s_sasl_handle(struct c2s *c, struct st_xml *x)
{
    unsigned char *data = st_malloc(SASL_MAX_DATA);
    bool empty = false;
    if (strcmp(x->name, "abort") == 0) {
        st_c2s_sasl_failure(c, "aborted", NULL);
        goto out;
    }
    if (strcmp(x->name, "auth") == 0) {
        st_c2s_sasl_clear(c);
        const char *mech = st_xml_attr(x, "mechanism");
        bool plus_ok = cb_types(c, false) != 0;
        if (!mech) {
            st_c2s_sasl_failure(c, "invalid-mechanism", NULL);
            goto out;
        }
        long len = decode_payload(c, x, data, SASL_MAX_DATA, &empty);
        if (len < 0)
            goto out;
        if (strcmp(mech, "PLAIN") == 0) {
            if (!plain_transport_ok(c)) {
                st_c2s_sasl_failure(c, "encryption-required", NULL);
                goto out;
            }
            if (!plain_allowed(c)) {
                st_c2s_sasl_failure(c, "invalid-mechanism", NULL);
                goto out;
            }
            c->sasl_mech = st_strdup(mech);
            if (empty) {
                send_sasl(c, "challenge", NULL, 0, false);
                goto out;
            }
            start_plain(c, data, len);
            goto out;
        }
        for (size_t i = 0; i < sizeof scram_mechs / sizeof scram_mechs[0]; i++) {
            if (strcmp(mech, scram_mechs[i].name) != 0)
                continue;
            if (scram_mechs[i].plus && !plus_ok)
                break;
            struct st_scram_cb cb = {
                .plus = scram_mechs[i].plus,
                .server_supports_cb = plus_ok,
                .type = NULL,
                .get_data = get_cb_data,
                .ud = c,
            };
            c->scram = st_scram_server_new(scram_mechs[i].hash, &cb);
            c->scram_hash = scram_mechs[i].hash;
            c->sasl_plus = scram_mechs[i].plus;
            c->sasl_mech = st_strdup(mech);
            if (empty)
                send_sasl(c, "challenge", NULL, 0, false);
            else
                scram_step(c, data, len);
            goto out;
        }
        st_c2s_sasl_failure(c, "invalid-mechanism", NULL);
        goto out;
    }
    if (strcmp(x->name, "response") == 0) {
        if (!c->sasl_mech) {
            st_c2s_sasl_failure(c, "malformed-request", "no authentication in progress");
            goto out;
        }
        long len = decode_payload(c, x, data, SASL_MAX_DATA, &empty);
        if (len < 0)
            goto out;
        if (strcmp(c->sasl_mech, "PLAIN") == 0)
            start_plain(c, data, len);
        else
            scram_step(c, data, len);
        goto out;
    }
    st_c2s_stream_error(c, "unsupported-stanza-type", NULL);
out:
    st_memzero(data, SASL_MAX_DATA);
    st_free(data);
}

/* ---- resource binding ---- */

static void bind_error(struct c2s *c, struct st_xml *iq, const char *type, const char *cond)
{
    struct st_xml *e = st_stanza_error(iq, type, cond, NULL);
    st_xml_set_attr(e, "from", NULL);
    st_c2s_send_xml(c, e);
    st_xml_unref(e);
}

void st_c2s_bind(struct c2s *c, struct st_xml *iq)
{
    const char *type = st_xml_attr(iq, "type");
    if (!type || strcmp(type, "set") != 0 || !st_xml_attr(iq, "id") ||
        st_xml_element_count(iq) != 1) {
        bind_error(c, iq, "modify", "bad-request");
        return;
    }
    struct st_xml *b = st_xml_first_element(iq);
    struct st_xml *r = st_xml_child(b, "resource", ST_NS_BIND);
    char *res = NULL;
    if (r) {
        char *raw = st_xml_text(r);
        int rc = *raw ? st_jid_prep_resource(raw, strlen(raw), &res) : ST_EINVAL;
        st_free(raw);
        if (rc != 0) {
            /* RFC 6120 §7.7.2.1 */
            bind_error(c, iq, "modify", "bad-request");
            return;
        }
    } else {
        char id[24];
        st_rand_id(id, sizeof id, 64);
        res = st_strdup(id);
    }
    int rc = st_session_bind(&c->sess, res);
    if (rc == ST_EEXIST) {
        /* RFC 6120 §7.7.2.2: we let the new session win; the old one gets <conflict/>. */
        struct st_jid j;
        if (st_jid_make(c->sess.username, c->sess.host->name, res, &j) == 0) {
            struct st_session *old = st_session_find_full(c->srv, &j);
            if (old)
                st_session_close(old, "conflict", "replaced by a new session");
            st_jid_clear(&j);
        }
        rc = st_session_bind(&c->sess, res);
    }
    st_free(res);
    if (rc == ST_ELIMIT) {
        bind_error(c, iq, "cancel", "resource-constraint");
        return;
    }
    if (rc != 0) {
        bind_error(c, iq, "modify", "bad-request");
        return;
    }
    st_c2s_stop_timer(c);
    struct st_xml *res_iq = st_iq_result(iq);
    st_xml_set_attr(res_iq, "from", NULL);
    struct st_xml *bb = st_xml_add_child(res_iq, "bind", ST_NS_BIND);
    st_xml_add_text_child(bb, "jid", c->sess.jid.full);
    st_c2s_send_xml(c, res_iq);
    st_xml_unref(res_iq);
}
