"""Presence (RFC 6121 §4) between local accounts: initial presence
broadcast and probes, probe answers (including to non-contacts and
unknown accounts), presence updates, unavailable on logout and on
connection loss with the last status, directed presence, negative
priority, and several resources of one account."""
import socket
import time

import pytest

from im_util import login, make_users, subscribe_both
from xmpp_raw import NS_CLIENT, new_id, q, tostr

USERS = make_users("pr", 20)


@pytest.fixture(scope="module")
def srv(make_server):
    return make_server(users=USERS, name="presence")


def status(p):
    return p.findtext(q(NS_CLIENT, "status"))


def test_initial_presence_broadcast(srv):
    """RFC 6121 §4.2.2: initial presence goes to contacts with 'from' or
    'both', to the user's own available resources (the sender included),
    and to nobody else."""
    a = login(srv, "pr1@localhost")
    b = login(srv, "pr2@localhost")
    c = login(srv, "pr3@localhost")
    try:
        subscribe_both(a, b)
        a2 = login(srv, "pr1@localhost", presence=False)
        a2.send_presence(extra="<status>second</status>")
        p = a2.presence(frm=a2.jid, type_="")
        assert status(p) == "second"
        assert status(b.presence(frm=a2.jid, type_="")) == "second"
        assert status(a.presence(frm=a2.jid, type_="")) == "second"
        # the new resource learns about the other one (§4.2.2 / §4.4.2)
        a2.presence(frm=a.jid, type_="")
        c.no_presence(frm="pr1@localhost", timeout=0.3)
        a2.close()
    finally:
        a.close()
        b.close()
        c.close()


def test_probe_on_login_gets_contacts_presence(srv):
    """RFC 6121 §4.2.2, §4.3.2: at initial presence the server probes the
    contacts the user is subscribed to; an available contact's last
    presence of every resource comes back; an offline one answers
    'unavailable'."""
    a = login(srv, "pr4@localhost")
    b = login(srv, "pr5@localhost", presence="<show>away</show><status>lunch</status>")
    c = login(srv, "pr6@localhost")
    try:
        subscribe_both(a, b)
        subscribe_both(a, c)
        c.close()
        a.close()
        a = login(srv, "pr4@localhost", presence=False)
        a.send_presence()
        p = a.presence(frm=b.jid, type_="")
        assert status(p) == "lunch" and p.findtext(q(NS_CLIENT, "show")) == "away"
        u = a.presence(frm="pr6@localhost", type_="unavailable")
        assert u.get("from") == "pr6@localhost", tostr(u)
    finally:
        a.close()
        b.close()


def test_probe_from_non_contact_and_unknown(srv):
    """RFC 6121 §4.3.2: a probe from an entity without a subscription is
    answered 'unsubscribed', exactly as a probe of an account that does not
    exist; no presence is revealed. The answer is an inbound 'unsubscribed'
    for the prober's server (A.3.4 None: no state change, not delivered),
    so the probing client sees nothing in either case."""
    a = login(srv, "pr7@localhost")
    b = login(srv, "pr8@localhost", presence="<status>secret</status>")
    try:
        for target in ("pr8@localhost", "no-such-user@localhost"):
            a.send_presence(to=target, type_="probe")
            a.ping()
            a.no_presence(timeout=0.3)
            assert a.roster_items() == {}
        b.no_presence(type_="probe", timeout=0.1)  # probes are never delivered to clients
    finally:
        a.close()
        b.close()


def test_probe_by_subscriber_answered(srv):
    """RFC 6121 §4.3.2: a probe from a subscriber is answered with the last
    presence of every available resource (to the probing resource)."""
    a = login(srv, "pr9@localhost")
    b = login(srv, "pr10@localhost", presence="<status>one</status>")
    b2 = login(srv, "pr10@localhost", presence="<status>two</status>")
    try:
        subscribe_both(a, b)
        a.send_presence(to="pr10@localhost", type_="probe")
        got = {a.presence(frm=b.jid).get("from"), a.presence(frm=b2.jid).get("from")}
        assert got == {b.jid, b2.jid}
    finally:
        a.close()
        b.close()
        b2.close()


def test_presence_update_broadcast(srv):
    """RFC 6121 §4.4.2: subsequent presence is broadcast to subscribers and
    the user's resources; the server does not send probes again."""
    a = login(srv, "pr11@localhost")
    b = login(srv, "pr12@localhost")
    try:
        subscribe_both(a, b)
        a.send_presence(extra="<show>dnd</show><status>busy</status>")
        p = b.presence(frm=a.jid, type_="")
        assert p.findtext(q(NS_CLIENT, "show")) == "dnd" and status(p) == "busy"
        a.presence(frm=a.jid, type_="")
        b.no_presence(type_="probe", timeout=0.2)
    finally:
        a.close()
        b.close()


def test_unavailable_on_logout(srv):
    """RFC 6121 §4.5.2: unavailable presence from the client is broadcast
    to subscribers and the user's other resources."""
    a = login(srv, "pr13@localhost")
    a2 = login(srv, "pr13@localhost")
    b = login(srv, "pr14@localhost")
    try:
        subscribe_both(a, b)
        a2.c.stash.clear()
        a.send_presence(type_="unavailable", extra="<status>bye</status>")
        assert status(b.presence(frm=a.jid, type_="unavailable")) == "bye"
        assert status(a2.presence(frm=a.jid, type_="unavailable")) == "bye"
        a.close()
        b.no_presence(frm=a.jid, timeout=0.3)  # nothing more when the stream closes
    finally:
        a2.close()
        b.close()


def test_unavailable_on_connection_loss(srv):
    """RFC 6121 §4.5.2 (and RFC 6120 §4.4): when a resource's connection is
    lost the server broadcasts unavailable on its behalf, with the status
    of its last presence."""
    a = login(srv, "pr15@localhost", presence="<status>gone fishing</status>")
    b = login(srv, "pr16@localhost")
    try:
        subscribe_both(a, b)
        a.c.sock.shutdown(socket.SHUT_RDWR)
        a.c.sock.close()
        p = b.presence(frm=a.jid, type_="unavailable")
        assert status(p) == "gone fishing", tostr(p)
    finally:
        b.close()


def test_directed_presence_then_unavailable(srv):
    """RFC 6121 §4.6: directed presence reaches a non-subscriber; when the
    sender then goes unavailable (explicitly or by losing the connection)
    the recipient gets unavailable too; a later broadcast does not reach it."""
    a = login(srv, "pr17@localhost")
    c = login(srv, "pr18@localhost")
    try:
        a.send_presence(to="pr18@localhost", extra="<status>psst</status>")
        assert status(c.presence(frm=a.jid, type_="")) == "psst"
        a.send_presence(extra="<status>everyone</status>")
        c.no_presence(frm=a.jid, timeout=0.3)
        a.send_presence(type_="unavailable")
        c.presence(frm=a.jid, type_="unavailable")
        # Again, ending with a lost connection.
        a.send_presence()
        a.send_presence(to="pr18@localhost")
        c.presence(frm=a.jid, type_="")
        a.c.sock.shutdown(socket.SHUT_RDWR)
        a.c.sock.close()
        c.presence(frm=a.jid, type_="unavailable")
        c.no_presence(frm=a.jid, timeout=0.3)  # exactly one
    finally:
        c.close()


def test_negative_priority(srv):
    """RFC 6121 §4.7.2.1, §8.5.2.1.1: a resource with negative priority is
    available and receives presence broadcasts, but never messages sent to
    the bare JID (those go to a non-negative resource)."""
    b = login(srv, "pr19@localhost")
    a_neg = login(srv, "pr20@localhost", presence="<priority>-1</priority>")
    try:
        subscribe_both(b, a_neg)
        b.send_presence(extra="<status>hello</status>")
        assert status(a_neg.presence(frm=b.jid, type_="")) == "hello"
        a_pos = login(srv, "pr20@localhost", presence="<priority>0</priority>")
        b.c.send(f"<message to='pr20@localhost' type='chat' id='{new_id()}'><body>x</body></message>")
        m = a_pos.messages()
        assert m.findtext(q(NS_CLIENT, "body")) == "x"
        a_neg.c.no_element(0.4, lambda e: e.tag == q(NS_CLIENT, "message"))
        a_pos.close()
    finally:
        b.close()
        a_neg.close()


def test_presence_not_to_unavailable_or_uninterested_only(srv):
    """RFC 6121 §4.2.2 / §4.4.2: a connected resource that has not sent
    initial presence is not available and receives no broadcasts."""
    a = login(srv, "pr2@localhost")
    quiet = login(srv, "pr1@localhost", presence=False)
    try:
        a.send_presence(extra="<status>ping</status>")
        a.presence(frm=a.jid, type_="")
        quiet.no_presence(timeout=0.4)
    finally:
        a.close()
        quiet.close()
