/* A tiny libstrophe client the integration suite drives to check that a real
 * C client library interoperates with Starling: it connects with TLS (RFC 6120
 * §5, any certificate trusted), authenticates with SASL (RFC 6120 §6),
 * binds a resource (RFC 6120 §7), sends initial presence, sends one message
 * with BODY to TO_JID (RFC 6120 §8.2.1) and waits up to 10 s for one
 * incoming message with a body.
 *
 * Usage: strophe_client JID PASSWORD HOST PORT TO_JID BODY
 * Output: "BOUND <full jid>" once the session is established, then
 *         "RECV <from> <body>" for the first message received.
 * Exit:   0 on success; 1 on connection/authentication failure or timeout;
 *         2 on usage errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <strophe.h>

struct client_state {
    const char *to;
    const char *body;
    int done;     /* set when the run loop should stop */
    int status;   /* exit status */
    int received; /* a message with a body arrived */
};

static int on_message(xmpp_conn_t *conn, xmpp_stanza_t *stanza, void *userdata)
{
    struct client_state *st = userdata;
    (void)conn;
    const char *type = xmpp_stanza_get_type(stanza);
    if (type != NULL && strcmp(type, "error") == 0)
        return 1;
    char *body = xmpp_message_get_body(stanza);
    if (body == NULL)
        return 1;
    const char *from = xmpp_stanza_get_from(stanza);
    printf("RECV %s %s\n", from != NULL ? from : "(none)", body);
    fflush(stdout);
    xmpp_free(xmpp_conn_get_context(conn), body);
    st->received = 1;
    st->status = 0;
    st->done = 1;
    return 0;
}

static void on_conn(xmpp_conn_t *conn, xmpp_conn_event_t event, int error,
                    xmpp_stream_error_t *stream_error, void *userdata)
{
    struct client_state *st = userdata;
    xmpp_ctx_t *ctx = xmpp_conn_get_context(conn);
    (void)stream_error;

    if (event != XMPP_CONN_CONNECT) {
        fprintf(stderr, "strophe_client: disconnected (error %d)\n", error);
        if (!st->received)
            st->status = 1;
        st->done = 1;
        return;
    }
    if (!xmpp_conn_is_secured(conn)) {
        fprintf(stderr, "strophe_client: connection is not encrypted\n");
        st->status = 1;
        st->done = 1;
        return;
    }
    printf("BOUND %s\n", xmpp_conn_get_bound_jid(conn));
    fflush(stdout);

    xmpp_handler_add(conn, on_message, NULL, "message", NULL, st);

    xmpp_stanza_t *pres = xmpp_presence_new(ctx);
    xmpp_send(conn, pres);
    xmpp_stanza_release(pres);

    xmpp_stanza_t *msg = xmpp_message_new(ctx, "chat", st->to, "strophe-1");
    xmpp_message_set_body(msg, st->body);
    xmpp_send(conn, msg);
    xmpp_stanza_release(msg);
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: strophe_client JID PASSWORD HOST PORT TO_JID BODY\n");
        return 2;
    }
    char *end = NULL;
    long port = strtol(argv[4], &end, 10);
    if (end == argv[4] || *end != '\0' || port <= 0 || port > 65535) {
        fprintf(stderr, "strophe_client: bad port\n");
        return 2;
    }

    struct client_state st = {.to = argv[5], .body = argv[6], .status = 1};

    xmpp_initialize();
    xmpp_log_t *log = getenv("STROPHE_DEBUG") ? xmpp_get_default_logger(XMPP_LEVEL_DEBUG) : NULL;
    xmpp_ctx_t *ctx = xmpp_ctx_new(NULL, log);
    xmpp_conn_t *conn = xmpp_conn_new(ctx);
    xmpp_conn_set_flags(conn, XMPP_CONN_FLAG_MANDATORY_TLS | XMPP_CONN_FLAG_TRUST_TLS);
    xmpp_conn_set_jid(conn, argv[1]);
    xmpp_conn_set_pass(conn, argv[2]);

    if (xmpp_connect_client(conn, argv[3], (unsigned short)port, on_conn, &st) != XMPP_EOK) {
        fprintf(stderr, "strophe_client: connect failed\n");
        st.status = 1;
        st.done = 1;
    }

    time_t deadline = time(NULL) + 10;
    while (!st.done && time(NULL) < deadline)
        xmpp_run_once(ctx, 100);
    if (!st.done)
        fprintf(stderr, "strophe_client: timed out\n");

    if (xmpp_conn_is_connected(conn)) {
        xmpp_disconnect(conn);
        for (int i = 0; i < 20 && xmpp_conn_is_connected(conn); i++)
            xmpp_run_once(ctx, 50);
    }
    xmpp_conn_release(conn);
    xmpp_ctx_free(ctx);
    xmpp_shutdown();
    return st.status;
}
