"""Offline messages: XEP-0160 (Best Practices for Handling Offline Messages)
with XEP-0203 delay stamps, on top of RFC 6121 §8.5.2.2.1 / §8.5.3.2.1
(normal and chat messages for an account with no available resource of
non-negative priority are stored; groupchat, headline and error are not)."""
import asyncio
import datetime
import signal
import time

import pytest

from offline_util import (NS_CHATSTATES, NS_MSGOFFLINE, STAMP_RE, body_of, collect, delays,
                          drain_messages, expect_error, got_msg, msg, no_msg, no_reply, online,
                          presence, received_before_sentinel, run_async, settle, slix_client_class, sync)
from xmpp_raw import NS_CLIENT, NS_DISCO_INFO, new_id, q, tostr

NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
         "mallory", "oscar"]
USERS = {f"{n}@localhost": f"pw-{n}-Of7kQ2" for n in NAMES}


@pytest.fixture(scope="module")
def srv(make_server):
    return make_server(users=USERS, name="offline")


def login(clients, server, user, resource="r", priority=0, available=True):
    return online(clients, server, f"{user}@localhost", resource, priority, available)


def stamp_time(e):
    (d,) = delays(e)
    return datetime.datetime.strptime(d.get("stamp").split(".")[0].rstrip("Z"),
                                      "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)


def test_disco_advertises_msgoffline(srv, clients):
    """XEP-0160 §5: the server advertises http://jabber.org/protocol/msgoffline
    in its disco#info (XEP-0030)."""
    c = login(clients, srv, "alice")
    iid = new_id()
    r = c.iq(f"<iq type='get' to='localhost' id='{iid}'><query xmlns='{NS_DISCO_INFO}'/></iq>")
    feats = [f.get("var") for f in r.iter(q(NS_DISCO_INFO, "feature"))]
    assert NS_MSGOFFLINE in feats, tostr(r)


def test_store_deliver_in_order_with_delay(srv, clients):
    """XEP-0160 §2-§3, RFC 6121 §8.5.2.2.1 and §8.5.3.2.1: normal and chat
    messages to an offline account (bare JID, an offline full JID, no type)
    are stored and delivered in order at the next available presence, each
    with one XEP-0203 <delay xmlns='urn:xmpp:delay'/> whose 'from' is the
    server and whose 'stamp' is the UTC time of storage (XEP-0082, with Z).
    Delivered messages are deleted: a second login gets nothing."""
    sender = login(clients, srv, "alice", "s")
    t0 = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    sent = [msg("bob@localhost", "chat", "o-1", "first"),
            msg("bob@localhost/gone", "chat", "o-2", "second &lt;&amp;&gt; 'quoted'"),
            msg("bob@localhost", None, "o-3", "third"),
            msg("bob@localhost", "normal", "o-4", "fourth", extra="<thread>t1</thread>")]
    for s in sent:
        sender.send(s)
    settle(sender)
    no_reply(sender, "o-1", 0.1)
    t1 = datetime.datetime.now(datetime.timezone.utc)
    bob = login(clients, srv, "bob", "home")
    got = [got_msg(bob, f"o-{i}") for i in range(1, 5)]
    order = [e.get("id") for e in drain_messages(bob, 0.2)]
    assert order == [], f"unexpected extra messages {order}"
    assert [body_of(e) for e in got] == ["first", "second <&> 'quoted'", "third", "fourth"]
    for e in got:
        assert e.get("from") == "alice@localhost/s", tostr(e)
        (d,) = delays(e)
        assert d.get("from") == "localhost", tostr(e)
        assert STAMP_RE.match(d.get("stamp")), tostr(e)
        assert t0 - datetime.timedelta(seconds=1) <= stamp_time(e) <= t1, tostr(e)
    assert got[1].get("to") == "bob@localhost/gone"
    assert got[3].find(q(NS_CLIENT, "thread")).text == "t1"
    bob.close()
    bob2 = login(clients, srv, "bob", "again")
    no_msg(bob2, timeout=0.5)


def test_arrival_order_received_by_raw_bytes(srv, clients):
    """XEP-0160 §3: a burst of 30 messages comes back in the order sent, and
    on the wire each carries the delay element with the server as 'from'."""
    sender = login(clients, srv, "alice", "burst")
    ids = [f"b-{i}" for i in range(30)]
    sender.send("".join(msg("carol@localhost", "chat", i, i) for i in ids))
    settle(sender)
    carol = login(clients, srv, "carol", "r")
    got = [got_msg(carol, i).get("id") for i in ids]
    assert got == ids


def test_not_stored_types(srv, clients):
    """RFC 6121 §8.5.2.2.1 / XEP-0160 §3 / XEP-0085 §5.6: groupchat gets
    <service-unavailable/>; headline and error are dropped silently; a
    message carrying only chat states (or nothing at all) is not stored.
    A body-less message with another payload is stored."""
    sender = login(clients, srv, "alice", "types")
    to = "dave@localhost"
    sender.send(msg(to, "groupchat", "n-gc", "gc"))
    expect_error(sender, "n-gc", "service-unavailable")
    sender.send(msg(to, "headline", "n-hl", "news"))
    sender.send(f"<message to='{to}' type='error' id='n-err'><error type='cancel'>"
                "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>")
    for i, state in enumerate(["composing", "active", "paused", "inactive", "gone"]):
        sender.send(msg(to, "chat", f"n-cs{i}", None, f"<{state} xmlns='{NS_CHATSTATES}'/>"))
    sender.send(msg(to, "chat", "n-empty", None))
    sender.send(msg(to, "chat", "n-thread", None, "<thread>x</thread>"))
    sender.send(msg(to, "chat", "n-hint", "secret", "<no-store xmlns='urn:xmpp:hints'/>"))
    sender.send(msg(to, "chat", "n-oob", None,
                    "<x xmlns='jabber:x:oob'><url>http://example.test/f</url></x>"
                    f"<active xmlns='{NS_CHATSTATES}'/>"))
    sender.send(msg(to, "chat", "n-last", "last", f"<active xmlns='{NS_CHATSTATES}'/>"))
    settle(sender)
    for mid in ["n-hl", "n-err", "n-cs0", "n-cs4", "n-empty", "n-thread", "n-hint", "n-oob",
                "n-last"]:
        no_reply(sender, mid, 0.05)
    dave = login(clients, srv, "dave")
    got = [e.get("id") for e in collect(dave, 2)]
    assert got == ["n-oob", "n-last"], got


def test_two_resources_online_at_once_deliver_once(srv, clients):
    """XEP-0160 §3: stored messages are delivered once — when two resources
    send initial presence at the same moment, each stored message reaches
    exactly one of them, and all of them arrive."""
    sender = login(clients, srv, "alice", "twice")
    ids = [f"t-{i}" for i in range(8)]
    sender.send("".join(msg("erin@localhost", "chat", i, i) for i in ids))
    settle(sender)
    r1 = login(clients, srv, "erin", "one", available=False)
    r2 = login(clients, srv, "erin", "two", available=False)
    r1.send("<presence/>")
    r2.send("<presence/>")
    got1 = [e.get("id") for e in drain_messages(r1, 0.5)]
    got2 = [e.get("id") for e in drain_messages(r2, 0.2)]
    assert sorted(got1 + got2) == sorted(ids), (got1, got2)
    # whoever got them got them in order
    for got in (got1, got2):
        assert got == [i for i in ids if i in got]


def test_negative_priority_then_raised(srv, clients):
    """RFC 6121 §4.7.2.1, §8.5.2.1.1 with XEP-0160: a resource with negative
    priority does not receive stored messages (and messages sent meanwhile
    are stored too); raising its priority to non-negative delivers them all."""
    sender = login(clients, srv, "alice", "neg")
    sender.send(msg("frank@localhost", "chat", "neg-1", "one"))
    settle(sender)
    frank = login(clients, srv, "frank", "low", priority=-1)
    no_msg(frank, timeout=0.4)
    sender.send(msg("frank@localhost", "chat", "neg-2", "two"))
    settle(sender)
    no_msg(frank, timeout=0.2)
    presence(frank, 0, wait=False)
    assert [e.get("id") for e in collect(frank, 2)] == ["neg-1", "neg-2"]


def test_live_messages_follow_stored_ones(srv, clients):
    """XEP-0160 §3: messages sent just as the recipient comes online arrive
    after the stored ones, never before them."""
    sender = login(clients, srv, "alice", "live")
    sender.send("".join(msg("grace@localhost", "chat", f"l-{i}", str(i)) for i in range(5)))
    settle(sender)
    grace = login(clients, srv, "grace", "r", available=False)
    grace.send("<presence/>")
    sender.send("".join(msg("grace@localhost", "chat", f"l-{i}", str(i)) for i in range(5, 8)))
    got = [e.get("id") for e in collect(grace, 8)]
    assert got == [f"l-{i}" for i in range(8)], got


def test_nonexistent_account_not_stored(srv, clients):
    """RFC 6121 §8.5.1 with XEP-0160: a message to a local account that does
    not exist gets <service-unavailable/> (cancel) and is not stored — an
    account created later under that name finds nothing waiting."""
    sender = login(clients, srv, "alice", "ne")
    sender.send(msg("latecomer@localhost", "chat", "ne-1", "x"))
    expect_error(sender, "ne-1", "service-unavailable", "cancel")
    srv.add_user("latecomer@localhost", "pw-late-Uq3zB1")
    srv.users["latecomer@localhost"] = "pw-late-Uq3zB1"
    late = login(clients, srv, "latecomer")
    assert received_before_sentinel(sender, late) == []


def test_quota(make_server, clients):
    """XEP-0160 §2 with modules.offline.max_messages = 3: the fourth message
    to a full offline store gets <service-unavailable/> of type wait (the
    store empties at the recipient's next login) and is not stored; after
    delivery the store accepts messages again."""
    users = {"alice@localhost": USERS["alice@localhost"], "bob@localhost": USERS["bob@localhost"]}
    s = make_server({"modules": {"offline": {"max_messages": 3}}}, users=users, name="quota")
    sender = login(clients, s, "alice", "q")
    for i in range(3):
        sender.send(msg("bob@localhost", "chat", f"q-{i}", str(i)))
    sender.send(msg("bob@localhost", "chat", "q-3", "3"))
    e = expect_error(sender, "q-3", "service-unavailable", "wait")
    assert e.get("from") == "bob@localhost" and e.get("to") == "alice@localhost/q", tostr(e)
    for i in range(3):
        no_reply(sender, f"q-{i}", 0.05)
    bob = login(clients, s, "bob", "r")
    assert [e.get("id") for e in collect(bob, 3)] == ["q-0", "q-1", "q-2"]
    bob.close()
    sender.send(msg("bob@localhost", "chat", "q-4", "4"))
    settle(sender)
    no_reply(sender, "q-4", 0.1)
    bob = login(clients, s, "bob", "r2")
    assert [e.get("id") for e in collect(bob, 1)] == ["q-4"]


def test_crash_durability(make_server, clients):
    """XEP-0160 §3 with the storage contract: a stored message survives
    kill -9 of the server right after it was accepted, and after the restart
    on the same data directory it is delivered exactly once."""
    users = {"alice@localhost": USERS["alice@localhost"], "bob@localhost": USERS["bob@localhost"]}
    s = make_server(users=users, name="crash")
    sender = login(clients, s, "alice", "c")
    sender.send(msg("bob@localhost", "chat", "crash-1", "survive"))
    sync(sender)
    time.sleep(0.5)
    s.proc.send_signal(signal.SIGKILL)
    s.proc.wait()
    s._log.close()
    clients.close_all()
    s.start()
    bob = login(clients, s, "bob", "r")
    got = collect(bob, 1)
    assert [e.get("id") for e in got] == ["crash-1"] and body_of(got[0]) == "survive"
    bob.close()
    bob = login(clients, s, "bob", "r2")
    no_msg(bob, timeout=0.4)


def test_slixmpp_offline_flow(srv):
    """XEP-0160 / XEP-0203 with a real client: slixmpp sends to an offline
    contact; when the contact's slixmpp client comes online it receives the
    message with a delay stamp from the server."""
    Client = slix_client_class()

    async def scenario():
        a = await Client("heidi@localhost/slix", USERS["heidi@localhost"]).start(srv.port)
        try:
            a.send_message(mto="ivan@localhost", mbody="while you were away", mtype="chat")
            await a["xep_0199"].ping(jid="localhost", timeout=5)
            await asyncio.sleep(0.2)
            b = await Client("ivan@localhost/slix", USERS["ivan@localhost"]).start(srv.port)
            try:
                m = await b.next_message()
                assert m["body"] == "while you were away"
                assert m["from"].full == "heidi@localhost/slix"
                assert m["delay"]["from"].full == "localhost"
                stamp = m["delay"]["stamp"]
                now = datetime.datetime.now(datetime.timezone.utc)
                assert abs((now - stamp).total_seconds()) < 30
            finally:
                await b.stop()
        finally:
            await a.stop()
    run_async(scenario())
