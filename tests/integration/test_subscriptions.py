"""Presence subscriptions (RFC 6121 §3 and the Appendix A state machine)
between local accounts, with the contact online and offline: the
handshake with its roster pushes and presence, 'from' stamping, stored
requests redelivered at the next login, pre-approval (§3.4), denial,
cancellation (§3.2), unsubscribing (§3.3), roster removal (§2.5.2), and a
slixmpp flow."""
import asyncio
import logging

import pytest

from im_util import (NS_PREAPPROVAL, login, make_users, run_async, slix_client,
                     subscribe_both)
from xmpp_raw import tostr

USERS = make_users("su", 22)


@pytest.fixture(scope="module")
def srv(make_server):
    return make_server(users=USERS, name="subs")


def test_handshake_online(srv):
    """RFC 6121 §3.1.1-§3.1.6 (A.2.1, A.3.1, A.2.2, A.3.2): the user's
    server pushes ask='subscribe', stamps the request with the user's bare
    JID and delivers it to the contact; the approval pushes 'from' to the
    contact and 'to' to the user, delivers 'subscribed', and the contact's
    available presence follows."""
    a = login(srv, "su1@localhost")
    b = login(srv, "su2@localhost", presence="<status>at work</status>")
    try:
        a.send_presence(to="su2@localhost", type_="subscribe")
        _, item = a.push("su2@localhost")
        assert item.get("subscription") == "none" and item.get("ask") == "subscribe"
        req = b.presence(frm="su1@localhost", type_="subscribe")
        assert req.get("from") == "su1@localhost", tostr(req)  # §3.1.2: bare JID
        b.no_push(0.2)  # §3.1.3: no roster item for a mere request
        b.send_presence(to="su1@localhost", type_="subscribed")
        _, item = b.push("su1@localhost")
        assert item.get("subscription") == "from" and item.get("ask") is None
        ok = a.presence(frm="su2@localhost", type_="subscribed")
        assert ok.get("from") == "su2@localhost"
        _, item = a.push("su2@localhost")
        assert item.get("subscription") == "to" and item.get("ask") is None
        p = a.presence(frm=b.jid, type_="")
        assert p.findtext("{jabber:client}status") == "at work"
        # And back: both.
        b.send_presence(to="su1@localhost", type_="subscribe")
        a.presence(frm="su2@localhost", type_="subscribe")
        a.send_presence(to="su2@localhost", type_="subscribed")
        b.presence(frm="su1@localhost", type_="subscribed")
        b.presence(frm=a.jid, type_="")
        assert a.roster_items()["su2@localhost"].get("subscription") == "both"
        assert b.roster_items()["su1@localhost"].get("subscription") == "both"
    finally:
        a.close()
        b.close()


def test_request_to_offline_contact_redelivered(srv):
    """RFC 6121 §3.1.3: a request for a contact without available resources
    is stored and delivered (with its status text) when the contact becomes
    available — again at every login until it is answered."""
    a = login(srv, "su3@localhost")
    try:
        a.send_presence(to="su4@localhost", type_="subscribe", extra="<status>hi, it's su3</status>")
        a.push("su4@localhost")
        a.ping()
        for _ in range(2):
            b = login(srv, "su4@localhost", presence=False)
            b.no_presence(type_="subscribe", timeout=0.2)  # not before initial presence
            b.send_presence()
            req = b.presence(frm="su3@localhost", type_="subscribe")
            assert req.findtext("{jabber:client}status") == "hi, it's su3", tostr(req)
            b.close()
        b = login(srv, "su4@localhost")
        b.presence(frm="su3@localhost", type_="subscribe")
        b.send_presence(to="su3@localhost", type_="subscribed")
        a.presence(frm="su4@localhost", type_="subscribed")
        _, item = a.push("su4@localhost")
        assert item.get("subscription") == "to"
        b.close()
        # Answered: not delivered again.
        b = login(srv, "su4@localhost")
        b.no_presence(type_="subscribe", timeout=0.4)
        b.close()
    finally:
        a.close()


def test_approval_while_user_offline(srv):
    """RFC 6121 §3.1.6 and A.3.2 with the user offline: the approval changes
    the stored roster (subscription 'to' at the next login)."""
    a = login(srv, "su5@localhost")
    a.send_presence(to="su6@localhost", type_="subscribe")
    a.push("su6@localhost")
    a.close()
    b = login(srv, "su6@localhost")
    b.presence(frm="su5@localhost", type_="subscribe")
    b.send_presence(to="su5@localhost", type_="subscribed")
    b.push("su5@localhost")
    b.ping()
    a = login(srv, "su5@localhost", presence=False)
    try:
        item = a.roster_items()["su6@localhost"]
        assert item.get("subscription") == "to" and item.get("ask") is None
    finally:
        a.close()
        b.close()


def test_pre_approval(srv):
    """RFC 6121 §3.4: the stream feature is offered; 'subscribed' without a
    pending request pre-approves (item with approved='true', nothing
    routed); the contact's later request is approved automatically without
    reaching the user."""
    b = login(srv, "su7@localhost")
    a = login(srv, "su8@localhost")
    try:
        assert b.features.find(f"{{{NS_PREAPPROVAL}}}sub") is not None
        b.send_presence(to="su8@localhost", type_="subscribed")
        _, item = b.push("su8@localhost")
        assert item.get("approved") == "true" and item.get("subscription") == "none"
        a.no_presence(frm="su7@localhost", timeout=0.3)
        a.send_presence(to="su7@localhost", type_="subscribe")
        a.presence(frm="su7@localhost", type_="subscribed")
        a.presence(frm=b.jid, type_="")
        _, item = b.push("su8@localhost")
        assert item.get("subscription") == "from" and item.get("approved") is None
        b.no_presence(type_="subscribe", timeout=0.3)
    finally:
        a.close()
        b.close()


def test_deny_request(srv):
    """RFC 6121 §3.2 (A.2.4 None + Pending In, A.3.4 None + Pending Out):
    answering a request with 'unsubscribed' denies it: the user gets it
    and a push without ask."""
    a = login(srv, "su9@localhost")
    b = login(srv, "su10@localhost")
    try:
        a.send_presence(to="su10@localhost", type_="subscribe")
        a.push("su10@localhost")
        b.presence(frm="su9@localhost", type_="subscribe")
        b.send_presence(to="su9@localhost", type_="unsubscribed")
        a.presence(frm="su10@localhost", type_="unsubscribed")
        _, item = a.push("su10@localhost")
        assert item.get("subscription") == "none" and item.get("ask") is None
        b.no_push(0.2)
    finally:
        a.close()
        b.close()


def test_cancel_subscription(srv):
    """RFC 6121 §3.2.2-§3.2.3 (A.2.4 Both -> To, A.3.4 Both -> From): the
    contact cancels the user's subscription; both get pushes, the user gets
    'unsubscribed' and unavailable presence from the contact's resources."""
    a = login(srv, "su11@localhost")
    b = login(srv, "su12@localhost")
    try:
        subscribe_both(a, b)
        b.send_presence(to="su11@localhost", type_="unsubscribed")
        _, item = b.push("su11@localhost")
        assert item.get("subscription") == "to"
        a.presence(frm=b.jid, type_="unavailable")
        a.presence(frm="su12@localhost", type_="unsubscribed")
        _, item = a.push("su12@localhost")
        assert item.get("subscription") == "from"
        # b no longer sends presence to a; a still sends to b.
        b.send_presence(extra="<show>away</show>")
        a.no_presence(frm=b.jid, timeout=0.3)
        a.send_presence(extra="<show>dnd</show>")
        b.presence(frm=a.jid, type_="")
    finally:
        a.close()
        b.close()


def test_unsubscribe(srv):
    """RFC 6121 §3.3.2-§3.3.3 (A.2.3 Both -> From, A.3.3 Both -> To): the
    user unsubscribes; the contact gets 'unsubscribe' and a push, and its
    server sends unavailable from the contact's resources to the user."""
    a = login(srv, "su13@localhost")
    b = login(srv, "su14@localhost")
    try:
        subscribe_both(a, b)
        a.send_presence(to="su14@localhost", type_="unsubscribe")
        _, item = a.push("su14@localhost")
        assert item.get("subscription") == "from"
        req = b.presence(frm="su13@localhost", type_="unsubscribe")
        assert req.get("from") == "su13@localhost"
        _, item = b.push("su13@localhost")
        assert item.get("subscription") == "to"
        a.presence(frm=b.jid, type_="unavailable")
    finally:
        a.close()
        b.close()


def test_already_subscribed_auto_reply(srv):
    """RFC 6121 §3.1.3 (A.3.1 From/Both): a repeated request for an existing
    subscription is answered by the contact's server on the contact's
    behalf and not delivered to the contact; the answer changes nothing
    for the user (A.3.2 Both: no state change, not delivered)."""
    a = login(srv, "su15@localhost")
    b = login(srv, "su16@localhost")
    try:
        subscribe_both(a, b)
        a.send_presence(to="su16@localhost", type_="subscribe")
        b.no_presence(type_="subscribe", timeout=0.3)
        a.no_push(0.1)
        b.no_push(0.1)
        assert a.roster_items()["su16@localhost"].get("subscription") == "both"
        assert a.roster_items()["su16@localhost"].get("ask") is None
    finally:
        a.close()
        b.close()


def test_subscribe_to_unknown_account(srv):
    """RFC 6121 §3.1.3: a request for an account that does not exist is
    answered 'unsubscribed', which clears the pending request (A.3.4)."""
    a = login(srv, "su17@localhost")
    try:
        a.send_presence(to="nobody-here@localhost", type_="subscribe")
        _, item = a.push("nobody-here@localhost")
        assert item.get("ask") == "subscribe"
        a.presence(frm="nobody-here@localhost", type_="unsubscribed")
        _, item = a.push("nobody-here@localhost")
        assert item.get("ask") is None and item.get("subscription") == "none"
    finally:
        a.close()


def test_remove_item_cancels_both(srv):
    """RFC 6121 §2.5.2: removing a contact with subscription 'both' sends
    'unsubscribe' and 'unsubscribed' to the contact, whose roster then shows
    'none'."""
    a = login(srv, "su18@localhost")
    b = login(srv, "su19@localhost")
    try:
        subscribe_both(a, b)
        assert a.roster_set("su19@localhost", subscription="remove").get("type") == "result"
        _, item = a.push("su19@localhost")
        assert item.get("subscription") == "remove"
        b.presence(frm="su18@localhost", type_="unsubscribe")
        b.presence(frm="su18@localhost", type_="unsubscribed")
        b.presence(frm=a.jid, type_="unavailable")
        b.ping()
        assert b.roster_items()["su18@localhost"].get("subscription") == "none"
    finally:
        a.close()
        b.close()


def test_approval_not_sent_to_uninterested(srv):
    """RFC 6121 §3.1.6 / TESTING-NOTES: the 'subscribed' approval and roster
    pushes go to interested resources only; an available resource that
    never fetched the roster gets neither."""
    a1 = login(srv, "su20@localhost")
    a2 = login(srv, "su20@localhost", roster=False)
    b = login(srv, "su21@localhost")
    try:
        a1.send_presence(to="su21@localhost", type_="subscribe")
        b.presence(frm="su20@localhost", type_="subscribe")
        b.send_presence(to="su20@localhost", type_="subscribed")
        a1.presence(frm="su21@localhost", type_="subscribed")
        a2.no_presence(frm="su21@localhost", type_="subscribed", timeout=0.3)
        a2.no_push(0.1)
    finally:
        a1.close()
        a2.close()
        b.close()


def test_slixmpp_subscription_flow(srv):
    """RFC 6121 §3.1 with a real client library (slixmpp): one client
    subscribes, the other (auto-authorising) approves; the subscriber's
    roster ends at 'to' and it sees the contact's available presence."""
    slixmpp = pytest.importorskip("slixmpp")
    logging.getLogger("slixmpp").setLevel(logging.CRITICAL)

    async def scenario():
        a = slix_client(slixmpp, "su22@localhost", srv.users["su22@localhost"])
        b = slix_client(slixmpp, "su21@localhost", srv.users["su21@localhost"])
        b.auto_authorize = True
        b.auto_subscribe = False
        started = {c: asyncio.Event() for c in (a, b)}
        online = asyncio.Event()

        def on_start(c):
            async def go(_):
                await c.get_roster()
                c.send_presence()
                started[c].set()
            return go
        for c in (a, b):
            c.add_event_handler("session_start", on_start(c))
        a.add_event_handler("got_online",
                            lambda p: online.set() if p["from"].bare == "su21@localhost" else None)
        for c in (a, b):
            c.connect(("127.0.0.1", srv.port))
        await asyncio.gather(started[a].wait(), started[b].wait())
        a.send_presence(pto="su21@localhost", ptype="subscribe")
        await online.wait()
        for _ in range(50):
            if a.client_roster["su21@localhost"]["subscription"] == "to":
                break
            await asyncio.sleep(0.05)
        sub = a.client_roster["su21@localhost"]["subscription"]
        for c in (a, b):
            c.disconnect()
        return sub

    assert run_async(scenario()) == "to"
