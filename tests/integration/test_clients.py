"""Real client libraries against Starling: slixmpp 1.8.3 (Python, asyncio)
over STARTTLS (RFC 6120 §5) and direct TLS (XEP-0368), exchanging messages and
IQs (RFC 6120 §8) including two resources of one account; and libstrophe 0.12
(C) through tests/integration/strophe_client talking to a slixmpp peer.

Clients are set up as slix.py describes (plain SCRAM, because of slixmpp
1.8.3's channel-binding bug on TLS 1.3), except in the test of a stock client."""
import asyncio
import logging
import os
import ssl
import subprocess

import pytest

import slix
from server import strophe_client_bin

slixmpp = pytest.importorskip("slixmpp")

logging.getLogger("slixmpp").setLevel(logging.CRITICAL)

TIMEOUT = 10


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, stock=False):
        if stock:
            super().__init__(jid, password)
            self.ssl_context.check_hostname = False
            self.ssl_context.verify_mode = ssl.CERT_NONE
        else:
            super().__init__(jid, password, plugin_config=slix.plugin_config())
            slix.configure(self)
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0199")
        self.inbox = asyncio.Queue()
        self.add_event_handler("message", self._on_message)
        self.add_event_handler("session_start", self._on_start)
        self.failed = asyncio.get_event_loop().create_future()
        if not stock:  # a stock client sees (and survives) refused mechanisms
            self.add_event_handler("failed_auth", lambda *_: self._fail("auth failed"))
        self.add_event_handler("connection_failed", lambda *_: self._fail("connection failed"))
        self.add_event_handler("disconnected", lambda *_: self._fail("disconnected"))

    def _fail(self, why):
        if not self.failed.done():
            self.failed.set_result(why)

    async def _on_start(self, _event):
        self.send_presence()

    def _on_message(self, msg):
        if msg["type"] in ("chat", "normal"):
            self.inbox.put_nowait(msg)

    async def start(self, port, direct_tls=False):
        started = asyncio.ensure_future(self.wait_until("session_start", TIMEOUT))
        self.connect(("127.0.0.1", port), use_ssl=direct_tls)
        done, _ = await asyncio.wait([started, self.failed], timeout=TIMEOUT,
                                     return_when=asyncio.FIRST_COMPLETED)
        if started not in done:
            started.cancel()
            raise AssertionError(f"{self.boundjid}: no session: "
                                 f"{self.failed.result() if self.failed.done() else 'timeout'}")
        # the session is up: later disconnects are expected
        self.failed = asyncio.get_event_loop().create_future()
        return self

    async def next_message(self):
        return await asyncio.wait_for(self.inbox.get(), TIMEOUT)

    async def stop(self):
        try:
            await asyncio.wait_for(self.disconnect(wait=1), 5)
        except (asyncio.TimeoutError, Exception):
            self.abort()


def run(coro):
    """Run one test scenario in a fresh event loop with an overall deadline."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, 45))
    finally:
        # slixmpp leaves its send-queue tasks running: cancel them before closing
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in pending:
            t.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.set_event_loop(None)


async def _pair(server, a_jid, b_jid, direct_tls=False):
    port = server.tls_port if direct_tls else server.port
    a = await Client(a_jid, server.users[a_jid.split("/")[0]]).start(port, direct_tls)
    b = await Client(b_jid, server.users[b_jid.split("/")[0]]).start(port, direct_tls)
    return a, b


def test_slixmpp_starttls_messages_and_iqs(server):
    """RFC 6120 §5-§8 with a real client: STARTTLS, SCRAM, bind, then messages
    both ways (from stamped with full JIDs) and IQs both ways (XEP-0199 ping to
    the peer, XEP-0030 disco#info to the server)."""
    async def scenario():
        a, b = await _pair(server, "alice@localhost/slix", "bob@localhost/slix")
        try:
            assert a.boundjid.full == "alice@localhost/slix"
            a.send_message(mto=b.boundjid.full, mbody="hello from alice", mtype="chat")
            m = await b.next_message()
            assert m["body"] == "hello from alice"
            assert m["from"].full == a.boundjid.full
            b.send_message(mto=m["from"], mbody="hello back", mtype="chat")
            r = await a.next_message()
            assert r["body"] == "hello back" and r["from"].full == b.boundjid.full
            # IQ both ways: each pings the other's full JID (answered by the peer)
            await a["xep_0199"].ping(jid=b.boundjid.full, timeout=TIMEOUT)
            await b["xep_0199"].ping(jid=a.boundjid.full, timeout=TIMEOUT)
            info = await a["xep_0030"].get_info(jid="localhost", timeout=TIMEOUT)
            assert "urn:xmpp:ping" in info["disco_info"]["features"]
        finally:
            await a.stop()
            await b.stop()
    run(scenario())


def test_slixmpp_stock_settings_log_in(server):
    """RFC 6120 §6.4.5, RFC 5802 §6: an unmodified slixmpp 1.8.3 (which offers
    tls-unique binding on TLS 1.3 and then the 'y' flag) is refused those
    attempts without using up its authentication retries, moves on down its
    mechanism list and logs in; messages then flow."""
    async def scenario():
        a = await Client("alice@localhost/stock", server.users["alice@localhost"],
                         stock=True).start(server.port)
        b = await Client("bob@localhost/stock", server.users["bob@localhost"],
                         stock=True).start(server.port)
        try:
            a.send_message(mto=b.boundjid.full, mbody="stock", mtype="chat")
            m = await b.next_message()
            assert m["body"] == "stock" and m["from"].full == a.boundjid.full
        finally:
            await a.stop()
            await b.stop()
    run(scenario())


def test_slixmpp_two_resources(server):
    """RFC 6120 §7, §10.5.4: two resources of one account are addressed
    independently by full JID, and can message each other."""
    async def scenario():
        r1, r2 = await _pair(server, "carol@localhost/one", "carol@localhost/two")
        bob = await Client("bob@localhost/peer", server.users["bob@localhost"]).start(server.port)
        try:
            bob.send_message(mto="carol@localhost/two", mbody="for two", mtype="chat")
            m = await r2.next_message()
            assert m["body"] == "for two" and m["to"].full == "carol@localhost/two"
            r1.send_message(mto="carol@localhost/two", mbody="sibling", mtype="chat")
            m = await r2.next_message()
            assert m["body"] == "sibling" and m["from"].full == "carol@localhost/one"
            await r2["xep_0199"].ping(jid="carol@localhost/one", timeout=TIMEOUT)
            assert r1.inbox.empty(), "message for resource two reached resource one"
        finally:
            for c in (r1, r2, bob):
                await c.stop()
    run(scenario())


def test_slixmpp_direct_tls(server):
    """XEP-0368: slixmpp connects with TLS first (use_ssl) and exchanges a message."""
    async def scenario():
        a, b = await _pair(server, "alice@localhost/dtls", "bob@localhost/dtls", direct_tls=True)
        try:
            a.send_message(mto=b.boundjid.full, mbody="over direct tls", mtype="chat")
            m = await b.next_message()
            assert m["body"] == "over direct tls" and m["from"].full == a.boundjid.full
        finally:
            await a.stop()
            await b.stop()
    run(scenario())


def test_libstrophe_with_slixmpp(server):
    """Interop with libstrophe 0.12 (C): strophe_client authenticates over
    STARTTLS, binds, messages a slixmpp peer and receives the peer's reply."""
    binary = strophe_client_bin()
    assert os.path.exists(binary), f"{binary} not built (needs libstrophe-dev)"

    async def scenario():
        peer = await Client("bob@localhost/echo", server.users["bob@localhost"]).start(server.port)
        try:
            proc = await asyncio.create_subprocess_exec(
                binary, "alice@localhost", server.users["alice@localhost"], "127.0.0.1",
                str(server.port), peer.boundjid.full, "ping from strophe",
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            m = await peer.next_message()
            assert m["body"] == "ping from strophe"
            assert m["from"].bare == "alice@localhost"
            peer.send_message(mto=m["from"], mbody="pong from slixmpp", mtype="chat")
            out, err = await asyncio.wait_for(proc.communicate(), 15)
            out = out.decode()
            assert proc.returncode == 0, f"strophe_client failed:\n{out}\n{err.decode()}"
            assert f"RECV {peer.boundjid.full} pong from slixmpp" in out, out
            assert f"BOUND {m['from'].full}" in out, out
        finally:
            await peer.stop()
    run(scenario())
