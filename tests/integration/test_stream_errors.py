"""Stream errors (RFC 6120 §4.9): for each condition a raw client provokes the
error and must see exactly that condition in urn:ietf:params:xml:ns:xmpp-streams
inside <stream:error/>, then </stream:stream>, then the TCP close (§4.9.1.1).
An unrelated authenticated session on the same server must stay usable."""
import time

import pytest

import xmpp_raw
from xmpp_raw import NS_STREAM, NS_SASL, NS_CLIENT

SERVER_CONFIG = {
    "limits": {"stanza_size": "64KiB", "stanza_size_preauth": "8KiB",
               "max_depth": 32, "max_attributes": 64},
}


@pytest.fixture(scope="module")
def witness(server):
    """carol's session: must survive every other connection's stream error."""
    c = xmpp_raw.login(server, "carol", server.users["carol@localhost"], resource="witness")
    yield c
    c.close()


def expect(c, condition, witness):
    got = c.expect_stream_error()
    assert got == condition, f"expected <{condition}/>, got <{got}/>: " + \
        xmpp_raw.tostr(c.error_element)
    witness.assert_alive()


def session(server, clients, user="alice"):
    return clients.login(server, f"{user}@localhost")


# -- RFC 6120 §4.9.3.13 not-well-formed -------------------------------------

def test_not_well_formed_garbage(server, clients, witness):
    """RFC 6120 §4.9.3.13: data that is not well-formed XML → <not-well-formed/>."""
    c = clients.connect(server)
    c.open_stream()
    c.send("<<>>")
    expect(c, "not-well-formed", witness)


def test_not_well_formed_mismatched_tags(server, clients, witness):
    """RFC 6120 §4.9.3.13: mismatched end tag inside a stanza → <not-well-formed/>."""
    c = session(server, clients)
    c.send("<message to='bob@localhost'><body>x</message>")
    expect(c, "not-well-formed", witness)


# -- RFC 6120 §4.9.3.10 invalid-namespace -----------------------------------

def test_invalid_namespace_stream(server, clients, witness):
    """RFC 6120 §4.8.1, §4.9.3.10: stream root not qualified by
    http://etherx.jabber.org/streams → <invalid-namespace/>."""
    c = clients.connect(server)
    c.send("<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
           "xmlns='jabber:client' xmlns:stream='http://wrong.example/streams'>")
    expect(c, "invalid-namespace", witness)


def test_invalid_namespace_content(server, clients, witness):
    """RFC 6120 §4.8.2, §4.9.3.10: a content namespace other than jabber:client
    on a client stream → <invalid-namespace/>."""
    c = clients.connect(server)
    c.send(c.header_bytes(xmlns="urn:example:wrong"))
    expect(c, "invalid-namespace", witness)


# -- RFC 6120 §4.9.3.1 bad-format ---------------------------------------------

def test_bad_format_root_not_stream(server, clients, witness):
    """RFC 6120 §4.9.3.1: a header with a 'to' whose root element (in the streams
    namespace) is not <stream/> cannot be processed → <bad-format/>."""
    c = clients.connect(server)
    c.send("<?xml version='1.0'?><stream:foo to='localhost' version='1.0' "
           f"xmlns='jabber:client' xmlns:stream='{NS_STREAM}'>")
    expect(c, "bad-format", witness)


# -- RFC 6120 §4.9.3.6 host-unknown ---------------------------------------------

def test_host_unknown(server, clients, witness):
    """RFC 6120 §4.9.3.6: 'to' names a domain this server does not serve."""
    c = clients.connect(server)
    c.send(c.header_bytes(to="unknown.example"))
    expect(c, "host-unknown", witness)


def test_host_unknown_missing_to(server, clients, witness):
    """RFC 6120 §4.7.1, §4.9.3.6: a client header without 'to' → <host-unknown/>."""
    c = clients.connect(server)
    c.send(c.header_bytes(to=False))
    expect(c, "host-unknown", witness)


# -- RFC 6120 §4.9.3.25 unsupported-version, §4.9.3.22 unsupported-encoding ------

def test_unsupported_version(server, clients, witness):
    """RFC 6120 §4.7.5, §4.9.3.25: major version 2 → <unsupported-version/>."""
    c = clients.connect(server)
    c.send(c.header_bytes(version="2.0"))
    expect(c, "unsupported-version", witness)


def test_unsupported_encoding(server, clients, witness):
    """RFC 6120 §11.6, §4.9.3.22: an encoding other than UTF-8 → <unsupported-encoding/>."""
    c = clients.connect(server)
    hdr = c.header_bytes(xml_decl=False)
    c.send("<?xml version='1.0' encoding='ISO-8859-1'?>" + hdr)
    expect(c, "unsupported-encoding", witness)


# -- RFC 6120 §4.9.3.24 unsupported-stanza-type ------------------------------------

def test_unsupported_stanza_type(server, clients, witness):
    """RFC 6120 §4.9.3.24: a top-level <foo/> in jabber:client after
    authentication → <unsupported-stanza-type/>."""
    c = session(server, clients)
    c.send("<foo/>")
    expect(c, "unsupported-stanza-type", witness)


# -- RFC 6120 §4.9.3.12 not-authorized ---------------------------------------------

def test_not_authorized_stanza_before_auth(server, clients, witness):
    """RFC 6120 §4.9.3.12, §6.4.1 (and §4.3.5: no stanzas before negotiation
    completes): a <message/> before SASL → <not-authorized/>, not delivered."""
    bob = clients.login(server, "bob@localhost", resource="victim")
    c = clients.tls_stream(server)
    c.send(f"<message to='{bob.jid}'><body>sneaky</body></message>")
    expect(c, "not-authorized", witness)
    bob.no_element(0.3, lambda e: e.tag == xmpp_raw.q(NS_CLIENT, "message"))


# -- RFC 6120 §4.9.3.14 policy-violation -----------------------------------------------

def test_policy_violation_preauth_size(server, clients, witness):
    """RFC 6120 §4.9.3.14, §13.12: an element over stanza_size_preauth (8 KiB)
    before authentication → <policy-violation/>."""
    c = clients.tls_stream(server)
    c.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>" + "QUFB" * 2600 + "</auth>")
    expect(c, "policy-violation", witness)


def test_policy_violation_stanza_size(server, clients, witness):
    """RFC 6120 §4.9.3.14, §13.12: a stanza over stanza_size (64 KiB here) after
    authentication → <policy-violation/>."""
    c = session(server, clients)
    c.send("<message to='bob@localhost'><body>" + "x" * (70 * 1024) + "</body></message>")
    expect(c, "policy-violation", witness)


def test_policy_violation_depth(server, clients, witness):
    """RFC 6120 §4.9.3.14, §13.12: element nesting deeper than max_depth (32)."""
    c = session(server, clients)
    c.send("<message to='bob@localhost'>" + "<a>" * 40 + "</a>" * 40 + "</message>")
    expect(c, "policy-violation", witness)


def test_policy_violation_attributes(server, clients, witness):
    """RFC 6120 §4.9.3.14, §13.12: more attributes than max_attributes (64)."""
    c = session(server, clients)
    attrs = " ".join(f"a{i}='v'" for i in range(80))
    c.send(f"<message to='bob@localhost' {attrs}><body>x</body></message>")
    expect(c, "policy-violation", witness)


# -- RFC 6120 §4.9.3.9 invalid-from -----------------------------------------------------

@pytest.mark.parametrize("spoofed", ["carol@localhost/witness", "carol@localhost", "localhost"])
def test_invalid_from(server, clients, witness, spoofed):
    """RFC 6120 §8.1.2.1, §4.9.3.9: a client may not claim another 'from'. The
    server either stamps the true full JID or closes with <invalid-from/>; the
    recipient never sees the spoofed address."""
    bob = clients.login(server, "bob@localhost", resource="rcpt")
    alice = session(server, clients)
    alice.send(f"<message from='{spoofed}' to='{bob.jid}' id='spoof'><body>hi</body></message>")
    msg = None
    deadline = time.monotonic() + 5
    while msg is None and time.monotonic() < deadline:
        try:
            msg = bob.messages(timeout=0.05)
        except TimeoutError:
            pass
        try:
            alice.no_element(0.05, lambda e: e.tag == xmpp_raw.q(NS_STREAM, "error"))
        except AssertionError:
            break  # alice got a stream error: checked below
    if msg is not None:
        assert msg.get("from") == alice.jid, xmpp_raw.tostr(msg)
        alice.assert_alive()
    else:
        expect(alice, "invalid-from", witness)
    bob.no_element(0.2, lambda e: e.get("from") == spoofed)
    witness.assert_alive()


# -- RFC 6120 §11.1, §4.9.3.18 restricted-xml -------------------------------------------

RESTRICTED = {
    "comment": "<!-- a comment -->",
    "processing-instruction": "<?foo bar?>",
    "doctype": "<!DOCTYPE stream:stream>",
    "entity": "<!ENTITY ent 'value'>",
}


@pytest.mark.parametrize("kind", ["comment", "processing-instruction"])
def test_restricted_xml_after_header(server, clients, witness, kind):
    """RFC 6120 §11.1, §4.9.3.18: comments and processing instructions are
    forbidden in a stream → <restricted-xml/>."""
    c = clients.connect(server)
    c.open_stream()
    c.send(RESTRICTED[kind])
    expect(c, "restricted-xml", witness)


@pytest.mark.parametrize("kind", ["doctype", "entity"])
def test_restricted_xml_dtd_after_header(server, clients, witness, kind):
    """RFC 6120 §11.1, §4.9.3.18: a DTD or entity declaration after the stream
    header is forbidden. Inside the root element it is also a well-formedness
    error (XML 1.0 §2.8 allows doctypedecl only in the prolog); we name the more
    specific condition, <restricted-xml/>."""
    c = clients.connect(server)
    c.open_stream()
    c.send(RESTRICTED[kind])
    expect(c, "restricted-xml", witness)


def test_restricted_xml_doctype_in_prolog(server, clients, witness):
    """RFC 6120 §11.1: an internal DTD subset (with an entity declaration) before
    the stream header → <restricted-xml/>."""
    c = clients.connect(server)
    c.send("<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY ent 'boom'>]>"
           + c.header_bytes(xml_decl=False))
    expect(c, "restricted-xml", witness)


def test_restricted_xml_comment_in_stanza(server, clients, witness):
    """RFC 6120 §11.1: a comment inside a stanza after authentication."""
    c = session(server, clients)
    c.send("<message to='bob@localhost'><!-- c --><body>x</body></message>")
    expect(c, "restricted-xml", witness)


def test_witness_survived(server, witness):
    """RFC 6120 §4.9.1.1: a stream error affects only its own stream."""
    witness.assert_alive()
    assert witness.jid == "carol@localhost/witness"
