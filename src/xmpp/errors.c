/* Stream and stanza error builders (RFC 6120 §4.9, §8.3). Conditions are
 * checked against the RFC's lists so a typo cannot put an undefined
 * condition on the wire. */
#include "xmpp/errors.h"

#include <assert.h>
#include <string.h>

#include "base/buf.h"
#include "xml/parser.h"
#include "starling/module.h"

static const char *const stream_conds[] = {
    "bad-format", "bad-namespace-prefix", "conflict", "connection-timeout", "host-gone",
    "host-unknown", "improper-addressing", "internal-server-error", "invalid-from",
    "invalid-namespace", "invalid-xml", "not-authorized", "not-well-formed", "policy-violation",
    "remote-connection-failed", "reset", "resource-constraint", "restricted-xml", "see-other-host",
    "system-shutdown", "undefined-condition", "unsupported-encoding", "unsupported-feature",
    "unsupported-stanza-type", "unsupported-version", NULL,
};

static const char *const stanza_conds[] = {
    "bad-request", "conflict", "feature-not-implemented", "forbidden", "gone",
    "internal-server-error", "item-not-found", "jid-malformed", "not-acceptable", "not-allowed",
    "not-authorized", "policy-violation", "recipient-unavailable", "redirect",
    "registration-required", "remote-server-not-found", "remote-server-timeout",
    "resource-constraint", "service-unavailable", "subscription-required", "undefined-condition",
    "unexpected-request", NULL,
};

static bool in_list(const char *const *list, const char *c)
{
    for (; *list; list++)
        if (strcmp(*list, c) == 0)
            return true;
    return false;
}

const char *st_stream_error_for_parse(enum st_xml_parse_error err)
{
    switch (err) {
    case ST_XML_ERR_RESTRICTED: return "restricted-xml";
    case ST_XML_ERR_POLICY: return "policy-violation";
    case ST_XML_ERR_UNSUPPORTED_ENCODING: return "unsupported-encoding";
    case ST_XML_ERR_BAD_PREFIX: return "bad-namespace-prefix";
    case ST_XML_ERR_NOT_WELL_FORMED: break;
    }
    return "not-well-formed";
}

bool st_stream_error_valid(const char *condition)
{
    return condition && in_list(stream_conds, condition);
}

bool st_stanza_error_valid(const char *condition)
{
    return condition && in_list(stanza_conds, condition);
}

int st_stream_error_write(struct st_buf *out, const char *condition, const char *text)
{
    assert(st_stream_error_valid(condition));
    int rc = st_buf_printf(out, "<stream:error><%s xmlns='" ST_NS_STREAM_ERRORS "'/>", condition);
    if (!rc && text) {
        rc = st_buf_puts(out, "<text xmlns='" ST_NS_STREAM_ERRORS "' xml:lang='en'>");
        if (!rc)
            rc = st_buf_put_xml_escaped(out, text, strlen(text));
        if (!rc)
            rc = st_buf_puts(out, "</text>");
    }
    if (!rc)
        rc = st_buf_puts(out, "</stream:error>");
    return rc;
}

static struct st_xml *reply_skeleton(const struct st_xml *stanza, const char *type)
{
    struct st_xml *r = st_xml_new(stanza->name, stanza->ns);
    const char *from = st_xml_attr(stanza, "from");
    const char *to = st_xml_attr(stanza, "to");
    const char *id = st_xml_attr(stanza, "id");
    if (from)
        st_xml_set_attr(r, "to", from);
    if (to)
        st_xml_set_attr(r, "from", to);
    if (id)
        st_xml_set_attr(r, "id", id);
    st_xml_set_attr(r, "type", type);
    return r;
}

struct st_xml *st_iq_result(const struct st_xml *iq)
{
    return reply_skeleton(iq, "result");
}

struct st_xml *st_stanza_error(const struct st_xml *stanza, const char *type, const char *condition,
                               const char *text)
{
    assert(st_stanza_error_valid(condition));
    struct st_xml *r = reply_skeleton(stanza, "error");
    /* RFC 6120 §8.3.1: the original payload MAY be included; we include the IQ's
     * child so clients can match the failed request, and nothing for messages. */
    if (strcmp(stanza->name, "iq") == 0) {
        struct st_xml *child = st_xml_first_element(stanza);
        if (child)
            st_xml_append(r, st_xml_copy(child));
    }
    struct st_xml *e = st_xml_add_child(r, "error", stanza->ns);
    st_xml_set_attr(e, "type", type);
    st_xml_add_child(e, condition, ST_NS_STANZA_ERRORS);
    if (text) {
        struct st_xml *t = st_xml_add_child(e, "text", ST_NS_STANZA_ERRORS);
        st_xml_set_attr_ns(t, ST_NS_XML, "lang", "en");
        st_xml_add_text(t, text);
    }
    return r;
}
