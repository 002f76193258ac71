"""A real gateway on the XEP-0114 port: Debian's biboumi (XMPP <-> IRC)
connected to Starling as the external component biboumi.localhost, with
Debian's ngircd as the IRC server, all on loopback and started by the test
as unprivileged foreground processes with their own configurations. A
Starling user joins an IRC channel through biboumi as a XEP-0045 room
(`#chan%IRCHOST@biboumi.localhost/nick`) and exchanges messages with a
plain IRC client (RFC 1459 over a raw socket) in both directions."""
import os
import random
import shutil
import socket
import subprocess
import time

import pytest

from component_util import component_config
from xmpp_raw import NS_CLIENT, NS_DISCO_ITEMS, new_id, q, tostr

BIBOUMI = shutil.which("biboumi")
NGIRCD = shutil.which("ngircd") or ("/usr/sbin/ngircd" if os.path.exists("/usr/sbin/ngircd")
                                    else None)
pytestmark = pytest.mark.skipif(not BIBOUMI or not NGIRCD,
                                reason="biboumi and ngircd are needed (tools/deps.sh test)")

SECRET = "bib0umi-Secret-77"
GW = "biboumi.localhost"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
SERVER_CONFIG = component_config({GW: SECRET})


def wait_port(host, port, proc, timeout=10.0, what="server"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{what} exited with {proc.returncode}"
        try:
            with socket.create_connection((host, port), timeout=0.3):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{what} did not listen on {host}:{port}")


def stop(proc):
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def irc(tmp_path_factory):
    """ngircd on a loopback address of its own, port 6667 (biboumi's default plain port;
    its TLS ports 6697/6670 are refused there, so it falls back to plain)."""
    d = tmp_path_factory.mktemp("ngircd")
    for _ in range(20):
        host = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
        with socket.socket() as s:
            try:
                s.bind((host, 6667))
                break
            except OSError:
                continue
    conf = d / "ngircd.conf"
    motd = d / "motd"
    motd.write_text("test\n")
    conf.write_text(f"""[Global]
Name = irc.starling.test
Info = Starling gateway test
Listen = {host}
Ports = 6667
MotdFile = {motd}
[Limits]
MaxConnectionsIP = 0
PingTimeout = 120
PongTimeout = 60
[Options]
PAM = no
Ident = no
DNS = no
RequireAuthPing = no
""")
    log = open(d / "ngircd.log", "wb")
    proc = subprocess.Popen([NGIRCD, "-n", "-f", str(conf)], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log, cwd=str(d))
    try:
        wait_port(host, 6667, proc, what="ngircd")
        yield host
    finally:
        stop(proc)
        log.close()


@pytest.fixture(scope="module")
def biboumi(server, irc, tmp_path_factory):
    server.secrets.add(SECRET)
    d = tmp_path_factory.mktemp("biboumi")
    conf = d / "biboumi.cfg"
    conf.write_text(f"""hostname={GW}
password={SECRET}
xmpp_server_ip=127.0.0.1
port={server.config['listen']['component_port']}
db_name={d / 'biboumi.sqlite'}
identd_port=0
log_level=1
log_file={d / 'biboumi.log'}
realname_customization=false
""")
    proc = subprocess.Popen([BIBOUMI, str(conf)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(d))
    try:
        # connected once the server logs the authenticated component stream
        deadline = time.monotonic() + 10
        while "component " + GW + " connected" not in server.log_text():
            assert proc.poll() is None, f"biboumi exited with {proc.returncode}"
            assert time.monotonic() < deadline, "biboumi did not connect"
            time.sleep(0.05)
        yield proc
    finally:
        stop(proc)


class IrcClient:
    """A plain IRC client over a raw socket (RFC 1459 / RFC 2812 lines)."""

    def __init__(self, host, nick):
        self.sock = socket.create_connection((host, 6667), timeout=10)
        self.buf = b""
        self.nick = nick
        self.send(f"NICK {nick}")
        self.send(f"USER {nick} 0 * :{nick}")
        self.wait(lambda p: p[1] == "001", "welcome")

    def send(self, line):
        self.sock.sendall(line.encode() + b"\r\n")

    def lines(self, deadline):
        while True:
            while b"\r\n" in self.buf:
                line, self.buf = self.buf.split(b"\r\n", 1)
                yield line.decode("utf-8", "replace")
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                raise TimeoutError("IRC: timed out")
            if not data:
                raise AssertionError("IRC server closed the connection")
            self.buf += data

    def wait(self, pred, what, timeout=15):
        deadline = time.monotonic() + timeout
        for line in self.lines(deadline):
            parts = line.split(" ")
            if parts[0] == "PING":
                self.send("PONG " + " ".join(parts[1:]))
                continue
            if len(parts) > 1 and pred(parts):
                return line
            if time.monotonic() > deadline:
                raise TimeoutError(f"IRC: no {what}")

    def close(self):
        try:
            self.send("QUIT :bye")
        except OSError:
            pass
        self.sock.close()


def test_join_irc_channel_and_chat_both_ways(server, irc, biboumi, clients):
    """XEP-0045 over XEP-0114: alice joins #chan through biboumi; an IRC user sees her
    message, she receives his."""
    ircuser = IrcClient(irc, "bob")
    try:
        ircuser.send("JOIN #chan")
        ircuser.wait(lambda p: p[1] == "366", "end of names")
        alice = clients.login(server, "alice@localhost")
        # XEP-0030: the server lists the connected gateway in its items
        deadline = time.monotonic() + 5
        while True:
            r = alice.iq(f"<iq type='get' id='{new_id()}' to='localhost'>"
                         f"<query xmlns='{NS_DISCO_ITEMS}'/></iq>")
            items = [i.get("jid") for i in r.find(q(NS_DISCO_ITEMS, "query"))]
            if GW in items or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert GW in items, tostr(r)
        room = f"#chan%{irc}@{GW}"
        alice.send(f"<presence to='{room}/alice'><x xmlns='{NS_MUC}'/></presence>")

        def self_presence(e):
            x = e.find(q(NS_MUC_USER, "x"))
            return (e.tag == q(NS_CLIENT, "presence") and e.get("from") == f"{room}/alice"
                    and x is not None
                    and any(s.get("code") == "110" for s in x.findall(q(NS_MUC_USER, "status"))))
        alice.wait_for(self_presence, 20, "MUC self-presence from biboumi")
        ircuser.wait(lambda p: p[1] == "JOIN" and p[0].startswith(":alice!"), "alice's JOIN")

        alice.send(f"<message to='{room}' type='groupchat'><body>hello from xmpp</body></message>")
        line = ircuser.wait(lambda p: p[1] == "PRIVMSG" and p[2] == "#chan", "alice's message")
        assert line.startswith(":alice!") and line.endswith(":hello from xmpp"), line

        ircuser.send("PRIVMSG #chan :hello from irc")
        m = alice.wait_for(lambda e: e.tag == q(NS_CLIENT, "message")
                           and e.get("from") == f"{room}/bob"
                           and e.get("type") == "groupchat", 15, "bob's groupchat message")
        assert m.find(q(NS_CLIENT, "body")).text == "hello from irc", tostr(m)
    finally:
        ircuser.close()
