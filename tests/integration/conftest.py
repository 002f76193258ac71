"""Shared fixtures for the Starling integration suite.

Each test module gets its own server(s) through the module-scoped
`make_server` factory; every server it starts is stopped with SIGTERM at the
end of the module and must exit 0 with no sanitizer report and no password in
its log (see server.StarlingServer.finish). A module may set SERVER_CONFIG (a
dict merged over the default test config) for its `server` fixture.
"""
import os
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from server import StarlingServer, USERS  # noqa: E402
import xmpp_raw  # noqa: E402


_OWN_BASETEMP = None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """A private temp root per run: pytest's shared /tmp/pytest-of-USER rotation
    would delete the data dirs of a suite running concurrently (e.g. the
    normal and the ASan run, or two developers' runs)."""
    global _OWN_BASETEMP
    if not config.option.basetemp:
        _OWN_BASETEMP = tempfile.mkdtemp(prefix="starling-itest-")
        config.option.basetemp = _OWN_BASETEMP


def pytest_unconfigure(config):
    if _OWN_BASETEMP and not os.environ.get("STARLING_KEEP_TMP"):
        shutil.rmtree(_OWN_BASETEMP, ignore_errors=True)


@pytest.fixture(scope="module")
def make_server(tmp_path_factory):
    """Factory: make_server(overrides=None, users=USERS, start=True) -> StarlingServer."""
    servers = []

    def factory(overrides=None, users=None, start=True, name="srv"):
        s = StarlingServer(tmp_path_factory.mktemp(name), overrides, name=name)
        servers.append(s)
        s.users = dict(USERS if users is None else users)
        for jid, pw in s.users.items():
            s.add_user(jid, pw)
        if start:
            s.start()
        return s

    yield factory
    errors = []
    for s in servers:
        try:
            s.finish()
        except AssertionError as exc:
            errors.append(f"[{s.name}] {exc}")
    assert not errors, "\n".join(errors)


@pytest.fixture(scope="module")
def server(request, make_server):
    """The module's main server (config: default + module's SERVER_CONFIG)."""
    return make_server(getattr(request.module, "SERVER_CONFIG", None),
                       name=request.module.__name__.rsplit(".", 1)[-1])


class Clients:
    """Opens raw clients for one test and closes them all afterwards."""

    def __init__(self):
        self.open = []

    def connect(self, server, **kw):
        c = xmpp_raw.connect(server, **kw)
        self.open.append(c)
        return c

    def login(self, server, jid, resource=None, password=None, **kw):
        user, domain = jid.split("@")
        password = password if password is not None else server.users[jid]
        c = xmpp_raw.login(server, user, password, resource=resource, domain=domain, **kw)
        self.open.append(c)
        return c

    def tls_stream(self, server, domain="localhost", **kw):
        """Connected, STARTTLS done, second stream header exchanged (SASL features read)."""
        c = self.connect(server, domain=domain, **kw)
        c.open_stream()
        c.starttls()
        c.open_stream()
        return c

    def close_all(self):
        for c in self.open:
            c.close()
        self.open = []


@pytest.fixture
def clients():
    cs = Clients()
    yield cs
    cs.close_all()
