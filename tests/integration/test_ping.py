"""Server-to-client pings (XEP-0199 §4.1 and §6 "connection liveness"): with
modules.ping interval 1s / timeout 1s, an idle client that answers stays
connected and one that never answers is disconnected."""
import time

from xmpp_raw import NS_CLIENT, NS_PING, StreamClosed, q, tostr

SERVER_CONFIG = {"modules": {"ping": {"interval": "1s", "timeout": "1s"}}}


def is_server_ping(e):
    return (e.tag == q(NS_CLIENT, "iq") and e.get("type") == "get"
            and e.find(q(NS_PING, "ping")) is not None)


def test_answering_client_stays_connected(server, clients):
    """XEP-0199 §4.1: the server pings an idle client (from its domain, to the
    full JID); a client that replies with a result keeps its session."""
    c = clients.login(server, "alice@localhost", resource="pong")
    answered = 0
    deadline = time.monotonic() + 6
    while answered < 2 and time.monotonic() < deadline:
        ping = c.wait_for(is_server_ping, timeout=deadline - time.monotonic(), what="server ping")
        assert ping.get("from") in ("localhost", None), tostr(ping)
        assert ping.get("to") in (c.jid, None), tostr(ping)
        assert ping.get("id"), tostr(ping)
        c.send(f"<iq type='result' id='{ping.get('id')}' to='localhost'/>")
        answered += 1
    assert answered == 2
    c.assert_alive()


def test_silent_client_disconnected(server, clients):
    """XEP-0199 §6: a client that does not answer within the timeout is
    considered dead and disconnected (within a few seconds)."""
    c = clients.login(server, "bob@localhost", resource="silent")
    start = time.monotonic()
    c.wait_for(is_server_ping, timeout=4, what="server ping")
    try:
        c.wait_closed(timeout=4)
    except StreamClosed:
        pass
    except TimeoutError:
        raise AssertionError("silent client was not disconnected")
    assert time.monotonic() - start < 8
