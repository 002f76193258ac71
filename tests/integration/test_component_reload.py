"""External components and configuration reload (SIGHUP): a component
removed from the configuration is disconnected with <host-gone/> (RFC 6120
§4.9.3.6) and stanzas to its domain bounce afterwards; a changed secret
applies to the component's next connection (XEP-0114 §3) while the running
stream stays up. Its own server: the reload rewrites the configuration."""
import copy
import signal
import time

import pytest

from component_util import RawComponent, component_config, connect_component
from xmpp_raw import NS_CLIENT, NS_PING, NS_STANZAS, new_id, q, tostr

SERVER_CONFIG = component_config({
    "gone.localhost": "gone-Secret-1",
    "keep.localhost": "keep-Secret-1",
})


@pytest.fixture(scope="module")
def srv(server):
    server.secrets.update({"gone-Secret-1", "keep-Secret-1", "keep-Secret-2"})
    return server


def reload(server, mutate):
    cfg = copy.deepcopy(server.config)
    mutate(cfg)
    server.config = cfg
    mark = len(server.log_text())
    server.write_config()
    server.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "reloaded configuration" not in server.log_text()[mark:]:
        assert time.monotonic() < deadline, server.log_tail()
        time.sleep(0.05)


def error_condition(el):
    err = el.find(q(NS_CLIENT, "error"))
    assert err is not None, tostr(el)
    return [c.tag.split("}")[1] for c in err if c.tag.startswith("{" + NS_STANZAS)][0]


def test_removed_component_host_gone_then_bounces(srv, clients):
    alice = clients.login(srv, "alice@localhost")
    gone = connect_component(srv, "gone.localhost", "gone-Secret-1")
    keep = connect_component(srv, "keep.localhost", "keep-Secret-1")
    reload(srv, lambda c: c["components"].pop("gone.localhost"))
    assert gone.expect_stream_error() == "host-gone"
    # Later stanzas to the removed domain bounce; the other component keeps its stream.
    r = alice.iq(f"<iq type='get' id='{new_id()}' to='gone.localhost'><ping xmlns='{NS_PING}'/></iq>")
    assert r.get("type") == "error", tostr(r)
    assert error_condition(r) in ("service-unavailable", "remote-server-not-found"), tostr(r)
    alice.send("<message to='keep.localhost' id='still'><body>x</body></message>")
    keep.stanza("message", lambda e: e.get("id") == "still")
    # The removed domain can no longer connect.
    c = RawComponent(srv, "gone.localhost")
    c.open()
    assert c.expect_stream_error() == "host-unknown"
    keep.close()


def test_changed_secret_applies_to_next_connection(srv, clients):
    keep = connect_component(srv, "keep.localhost", "keep-Secret-1")
    reload(srv, lambda c: c["components"]["keep.localhost"].update(secret="keep-Secret-2"))
    alice = clients.login(srv, "alice@localhost")
    alice.send("<message to='keep.localhost' id='same-stream'><body>x</body></message>")
    keep.stanza("message", lambda e: e.get("id") == "same-stream")
    keep.disconnect()
    old = RawComponent(srv, "keep.localhost")
    old.open()
    old.handshake("keep-Secret-1")
    assert old.expect_stream_error() == "not-authorized"
    deadline = time.monotonic() + 3
    while True:  # the first stream's close is noticed asynchronously (conflict until then)
        try:
            new = connect_component(srv, "keep.localhost", "keep-Secret-2")
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    new.close()
