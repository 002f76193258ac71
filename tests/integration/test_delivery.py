"""Delivery rules for local accounts: RFC 6121 §8.5 (with RFC 6120 §10.5),
for each message type × bare/full JID × online/offline/non-existent account,
presence priorities (§4.7.2.1: negative priority never receives bare-JID
messages), IQs handled on the account's behalf (§8.5.2.1.3), and the
`delivery.bare_messages` choice between all equal-highest resources and the
most recently active one (§8.5.2.1.1)."""
import time

import pytest

from offline_util import (collect, expect_error, got_msg, msg, no_reply, online,
                          presence, received_before_sentinel, settle, sync)
from xmpp_raw import NS_CLIENT, NS_PING, new_id, q, tostr

NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"]
USERS = {f"{n}@localhost": f"pw-{n}-Dl4vR8" for n in NAMES}
TYPES = ["normal", "chat", "headline", "groupchat", "error"]
UNKNOWN = "<query xmlns='urn:example:unknown'/>"


@pytest.fixture(scope="module")
def srv(make_server):
    return make_server(users=USERS, name="delivery")


def login(clients, server, user, resource, priority=0, available=True):
    return online(clients, server, f"{user}@localhost", resource, priority, available)


def send_typed(sender, to, mtype, mid, body="x"):
    """A message of mtype; type='error' messages carry an <error/> child (RFC 6120 §8.3)."""
    if mtype == "error":
        sender.send(f"<message to='{to}' type='error' id='{mid}'><error type='cancel'>"
                    "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
                    "</message>")
    else:
        sender.send(msg(to, None if mtype == "normal" else mtype, mid, body))


def ids(msgs):
    return [e.get("id") for e in msgs]


def not_received(sender, mid, *clients):
    """None of clients got mid (checked with a sentinel, see offline_util)."""
    for c in clients:
        got = received_before_sentinel(sender, c)
        assert mid not in got, f"{c.jid} received {mid}"


def no_answer(client, mid):
    """Nothing came back for mid: answers on synchronous paths precede the
    reply to a later ping."""
    sync(client)
    client.no_element(0, lambda e: e.get("id") == mid)


@pytest.fixture
def trio(srv, clients):
    """bob with three resources at priorities 5, 1 and -1; alice sends."""
    alice = login(clients, srv, "alice", "a")
    r5 = login(clients, srv, "bob", "p5", 5)
    r1 = login(clients, srv, "bob", "p1", 1)
    rn = login(clients, srv, "bob", "neg", -1)
    return alice, r5, r1, rn


@pytest.mark.parametrize("mtype", ["normal", "chat", None])
def test_bare_normal_chat_to_highest_priority(trio, mtype):
    """RFC 6121 §8.5.2.1.1: normal (also with no type, §5.2.2) and chat to a
    bare JID go to the available resource with the highest non-negative
    priority only."""
    alice, r5, r1, rn = trio
    mid = new_id()
    alice.send(msg("bob@localhost", mtype, mid))
    e = got_msg(r5, mid)
    assert e.get("to") == "bob@localhost" and e.get("from") == "alice@localhost/a"
    not_received(alice, mid, r1, rn)
    no_answer(alice, mid)


def test_bare_headline_to_all_non_negative(trio):
    """RFC 6121 §8.5.2.1.1: a headline to a bare JID goes to every available
    resource with non-negative priority, never to a negative one."""
    alice, r5, r1, rn = trio
    alice.send(msg("bob@localhost", "headline", "hl-1"))
    got_msg(r5, "hl-1")
    got_msg(r1, "hl-1")
    not_received(alice, "hl-1", rn)


def test_bare_groupchat_error(trio):
    """RFC 6121 §8.5.2.1.1: a groupchat message to a bare JID is not delivered
    to any resource; the sender gets <service-unavailable/>."""
    alice, r5, r1, rn = trio
    alice.send(msg("bob@localhost", "groupchat", "gc-1"))
    e = expect_error(alice, "gc-1", "service-unavailable", "cancel")
    assert e.get("from") == "bob@localhost" and e.get("to") == "alice@localhost/a"
    not_received(alice, "gc-1", r5, r1, rn)


def test_bare_error_dropped(trio):
    """RFC 6121 §8.5.2.1.1, RFC 6120 §8.3.1: a message of type error to a bare
    JID is silently dropped — no resource gets it and nothing is returned."""
    alice, r5, r1, rn = trio
    send_typed(alice, "bob@localhost", "error", "err-1")
    not_received(alice, "err-1", r5, r1, rn)
    no_answer(alice, "err-1")


@pytest.mark.parametrize("mtype", TYPES)
def test_full_jid_online_any_type_any_priority(trio, mtype):
    """RFC 6121 §8.5.3.1: a message of any type to a connected full JID is
    delivered to that resource — also when its priority is negative."""
    alice, r5, r1, rn = trio
    mid = new_id()
    send_typed(alice, rn.jid, mtype, mid)
    e = got_msg(rn, mid)
    assert e.get("to") == rn.jid
    not_received(alice, mid, r5, r1)


@pytest.mark.parametrize("mtype", TYPES)
def test_full_jid_offline_resource(srv, clients, mtype):
    """RFC 6121 §8.5.3.2.1: a message to a full JID that is not online is
    treated as addressed to the bare JID when normal or chat (here delivered
    to the account's online resource); groupchat gets <service-unavailable/>;
    headline and error are silently ignored."""
    alice = login(clients, srv, "alice", "a")
    bob = login(clients, srv, "bob", "here", 1)
    mid = new_id()
    send_typed(alice, "bob@localhost/elsewhere", mtype, mid)
    if mtype in ("normal", "chat"):
        e = got_msg(bob, mid)
        assert e.get("to") == "bob@localhost/elsewhere"
        no_answer(alice, mid)
    elif mtype == "groupchat":
        e = expect_error(alice, mid, "service-unavailable")
        assert e.get("from") == "bob@localhost/elsewhere"
        not_received(alice, mid, bob)
    else:
        not_received(alice, mid, bob)
        no_answer(alice, mid)


def test_negative_priority_only(srv, clients):
    """RFC 6121 §8.5.2.1.1 and §4.7.2.1: a resource with negative priority
    never receives bare-JID messages; with no other resource, normal/chat are
    handled as for an offline account (stored, XEP-0160) and a headline is
    dropped. Raising the priority delivers the stored message."""
    alice = login(clients, srv, "alice", "a")
    rn = login(clients, srv, "carol", "neg", -5)
    alice.send(msg("carol@localhost", "chat", "nc-1"))
    alice.send(msg("carol@localhost", "headline", "nh-1"))
    settle(alice)
    assert received_before_sentinel(alice, rn) == []
    no_reply(alice, "nc-1", 0.05)
    no_reply(alice, "nh-1", 0.05)
    presence(rn, 0, wait=False)
    assert ids(collect(rn, 1)) == ["nc-1"]


def test_non_existent_account(srv, clients):
    """RFC 6121 §8.5.1: for a local account that does not exist, normal and
    chat messages (bare or full JID) and IQ get/set (bare or full JID) get
    <service-unavailable/>; groupchat too; headline, error, presence and IQ
    results are silently ignored. The error comes from the address used."""
    alice = login(clients, srv, "alice", "a")
    for to in ("nobody@localhost", "nobody@localhost/res"):
        for mtype in ("normal", "chat", "groupchat"):
            mid = new_id()
            send_typed(alice, to, mtype, mid)
            e = expect_error(alice, mid, "service-unavailable", "cancel")
            assert e.get("from") == to and e.get("to") == "alice@localhost/a", tostr(e)
        for itype, payload in (("get", f"<ping xmlns='{NS_PING}'/>"), ("set", UNKNOWN)):
            iid = new_id()
            alice.send(f"<iq type='{itype}' to='{to}' id='{iid}'>{payload}</iq>")
            e = expect_error(alice, iid, "service-unavailable", "cancel")
            assert e.get("from") == to, tostr(e)
    quiet = []
    for to in ("nobody@localhost", "nobody@localhost/res"):
        for mtype in ("headline", "error"):
            mid = new_id()
            send_typed(alice, to, mtype, mid)
            quiet.append(mid)
        for p in ("", " type='subscribe'", " type='probe'", " type='unavailable'"):
            pid = new_id()
            alice.send(f"<presence to='{to}' id='{pid}'{p}/>")
            quiet.append(pid)
        iid = new_id()
        alice.send(f"<iq type='result' to='{to}' id='{iid}'/>")
        quiet.append(iid)
    sync(alice)
    time.sleep(0.2)
    alice.no_element(0.2, lambda e: e.get("id") in quiet)


def test_non_existent_order_kept(srv, clients):
    """RFC 6120 §10.1 (in-order processing) with §8.5.1: the answers for a
    non-existent account come back in the order the stanzas were sent, though
    the account check is asynchronous."""
    alice = login(clients, srv, "alice", "a")
    seq = []
    out = []
    for i in range(6):
        mid = f"ord-{i}"
        seq.append(mid)
        if i % 2:
            out.append(f"<iq type='get' to='ghost@localhost' id='{mid}'>"
                       f"<ping xmlns='{NS_PING}'/></iq>")
        else:
            out.append(msg("ghost@localhost", "chat", mid))
    alice.send("".join(out))
    got = []
    while len(got) < len(seq):
        e = alice.wait_for(lambda x: x.get("id") in seq and x.get("type") == "error",
                           3.0, "error replies")
        got.append(e.get("id"))
    assert got == seq


def test_iq_to_bare_jid_answered_by_server(srv, clients):
    """RFC 6121 §8.5.2.1.3 / RFC 6120 §10.5.3.2: an IQ to an account's bare
    JID is answered by the server on the account's behalf — whether the
    account is offline or online (its resources never see it); an unknown
    payload gets <service-unavailable/>."""
    alice = login(clients, srv, "alice", "a")
    r = alice.ping("dave@localhost")  # dave has no session
    assert r.get("type") == "result" and r.get("from") == "dave@localhost", tostr(r)
    iid = new_id()
    e = alice.iq(f"<iq type='get' to='dave@localhost' id='{iid}'>{UNKNOWN}</iq>")
    assert e.get("type") == "error"
    expect_error_el(e, "service-unavailable")
    bob = login(clients, srv, "bob", "on", 3)
    r = alice.ping("bob@localhost")
    assert r.get("type") == "result" and r.get("from") == "bob@localhost", tostr(r)
    received_before_sentinel(alice, bob)
    bob.no_element(0, lambda x: x.tag == q(NS_CLIENT, "iq") and x.get("type") == "get")


def expect_error_el(e, cond):
    from xmpp_raw import stanza_error
    assert stanza_error(e)[1] == cond, tostr(e)


@pytest.mark.parametrize("online_user", [False, True])
def test_iq_to_offline_full_jid(srv, clients, online_user):
    """RFC 6121 §8.5.3.2.3: an IQ get/set to a full JID that is not online gets
    <service-unavailable/> (whether or not the account has other resources);
    an IQ result or error to it is dropped."""
    alice = login(clients, srv, "alice", "a")
    if online_user:
        login(clients, srv, "erin", "present", 1)
    for itype in ("get", "set"):
        iid = new_id()
        r = alice.iq(f"<iq type='{itype}' to='erin@localhost/absent' id='{iid}'>"
                     f"<ping xmlns='{NS_PING}'/></iq>")
        expect_error_el(r, "service-unavailable")
        assert r.get("from") == "erin@localhost/absent"
    iid = new_id()
    alice.send(f"<iq type='result' to='erin@localhost/absent' id='{iid}'/>")
    no_answer(alice, iid)


def test_three_resources_scenario(srv, clients):
    """RFC 6121 §8.5.2.1.1, §4.7.2.1 (priority), §4.5 (unavailable) with
    XEP-0160: resources at priorities 5, 1 and -1; after each presence change
    a chat and a headline to the bare JID show who receives them."""
    alice = login(clients, srv, "alice", "a")
    p5 = login(clients, srv, "frank", "p5", 5)
    p1 = login(clients, srv, "frank", "p1", 1)
    pn = login(clients, srv, "frank", "pn", -1)
    all3 = {"p5": p5, "p1": p1, "pn": pn}

    def step(name, chat_to, headline_to):
        cid, hid = f"{name}-c", f"{name}-h"
        alice.send(msg("frank@localhost", "chat", cid))
        alice.send(msg("frank@localhost", "headline", hid))
        for rname, c in all3.items():
            want = [m for m, who in ((cid, chat_to), (hid, headline_to)) if rname in who]
            got = [i for i in received_before_sentinel(alice, c) if i in (cid, hid)]
            assert got == want, f"{name}: {rname} got {got}, expected {want}"

    # 1. 5 / 1 / -1: chat to the 5, headline to 5 and 1
    step("s1", {"p5"}, {"p5", "p1"})
    # 2. the 1 rises to 7: it alone gets chat
    presence(p1, 7)
    step("s2", {"p1"}, {"p5", "p1"})
    # 3. the 7 goes to -2: back to the 5; headline only to the 5
    presence(p1, -2)
    step("s3", {"p5"}, {"p5"})
    # 4. the 5 sends unavailable: nobody non-negative; chat is stored, headline dropped
    presence(p5, ptype="unavailable")
    step("s4", set(), set())
    # 5. the -1 rises to 0: it gets the stored chat (with delay), then live chat and headline
    presence(pn, 0, wait=False)
    stored = got_msg(pn, "s4-c")
    assert stored.find("{urn:xmpp:delay}delay") is not None, tostr(stored)
    step("s5", {"pn"}, {"pn"})
    # 6. a full-JID message still reaches the unavailable-but-connected resource
    alice.send(msg(p5.jid, "chat", "s6-full"))
    got_msg(p5, "s6-full")


def test_one_highest(make_server, clients):
    """RFC 6121 §8.5.2.1.1 with delivery.bare_messages = one_highest: of
    several resources sharing the highest priority, only the most recently
    active one gets a chat to the bare JID; all_highest (the default server,
    above) delivers to each. Headlines still go to all non-negative."""
    users = {k: USERS[k] for k in ("alice@localhost", "bob@localhost")}
    s = make_server({"delivery": {"bare_messages": "one_highest"}}, users=users, name="one")
    alice = login(clients, s, "alice", "a")
    x = login(clients, s, "bob", "x", 2)
    y = login(clients, s, "bob", "y", 2)
    z = login(clients, s, "bob", "z", 1)
    for active, other in ((x, y), (y, x), (x, y)):
        time.sleep(0.02)
        sync(active)
        mid = new_id()
        alice.send(msg("bob@localhost", "chat", mid))
        got_msg(active, mid)
        not_received(alice, mid, other, z)
    alice.send(msg("bob@localhost", "headline", "one-hl"))
    for c in (x, y, z):
        got_msg(c, "one-hl")


def test_all_highest_default(srv, clients):
    """RFC 6121 §8.5.2.1.1 with the default delivery.bare_messages =
    all_highest: every resource sharing the highest priority gets a chat to
    the bare JID, a lower one does not."""
    alice = login(clients, srv, "alice", "a")
    x = login(clients, srv, "grace", "x", 2)
    y = login(clients, srv, "grace", "y", 2)
    z = login(clients, srv, "grace", "z", 1)
    alice.send(msg("grace@localhost", "chat", "ah-1"))
    got_msg(x, "ah-1")
    got_msg(y, "ah-1")
    not_received(alice, "ah-1", z)
