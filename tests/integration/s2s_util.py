"""Federation test machinery (RFC 6120 §3.2, §13.7; XEP-0220, XEP-0368).

`FedNet` builds a private network out of Linux network namespaces: a hub
namespace with a bridge (10.99.0.254) running a dnsmasq that answers only
for the test domains (no-resolv; srv-host= and address= lines), and one
namespace per server joined to the bridge with a veth pair (10.99.0.1, .2,
...). Nothing is configured outside the namespaces it creates, except a
per-namespace /etc/netns/NAME/resolv.conf (what `ip netns exec` binds over
/etc/resolv.conf for Prosody), removed again at teardown.

`FedCA` is a certificate authority made with the openssl CLI that issues
host certificates (SAN dNSName, optionally XmppAddr). `NetStarling` runs Starling inside a
namespace; `NetProsody` runs Debian's prosody unprivileged inside one.
`netns(name)` switches the calling thread into a namespace for as long as
it needs to open sockets there (sockets keep their namespace afterwards),
so raw test clients talk to servers on the private network.
"""
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from server import StarlingServer
import pytest

import xmpp_raw
from xmpp_raw import NS_CLIENT, new_id, q

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
HUB_ADDR = "10.99.0.254"


def run(*argv, check=True):
    cp = subprocess.run(list(argv), capture_output=True, text=True)
    if check and cp.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {cp.stderr.strip()}")
    return cp


def netns_unavailable_reason():
    """None when network namespaces, veth, bridges and dnsmasq are usable; else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root (run the suite as root)"
    for tool in ("ip", "dnsmasq", "openssl"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"{tool} is not installed (tools/deps.sh test)"
    name = f"stprobe{os.getpid()}"
    cp = run("ip", "netns", "add", name, check=False)
    if cp.returncode != 0:
        return f"cannot create a network namespace: {cp.stderr.strip()}"
    try:
        cp = run("ip", "-n", name, "link", "add", "p0", "type", "veth", "peer", "name", "p1",
                 check=False)
        if cp.returncode != 0:
            return f"cannot create veth pairs: {cp.stderr.strip()}"
    finally:
        run("ip", "netns", "del", name, check=False)
    return None


@contextlib.contextmanager
def netns(name):
    """Runs the block with this thread inside network namespace `name`."""
    with open("/proc/thread-self/ns/net") as orig, open(f"/run/netns/{name}") as target:
        if _libc.setns(target.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns failed")
        try:
            yield
        finally:
            _libc.setns(orig.fileno(), CLONE_NEWNET)


class FedNet:
    """The hub (bridge + dnsmasq) and the server namespaces."""

    def __init__(self, workdir, tag=None):
        self.workdir = str(workdir)
        self.tag = tag or f"{os.getpid() % 100000}"
        self.hub = f"sthub{self.tag}"
        self.nodes = {}          # name -> (namespace, address)
        self.dns_lines = []
        self.dnsmasq = None
        self.etc_dirs = []
        run("ip", "netns", "add", self.hub)
        run("ip", "-n", self.hub, "link", "set", "lo", "up")
        run("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.hub, "addr", "add", f"{HUB_ADDR}/24", "dev", "br0")
        run("ip", "-n", self.hub, "link", "set", "br0", "up")

    def add_node(self, name, index):
        """A namespace joined to the bridge with address 10.99.0.<index>; returns it."""
        ns = f"st{name}{self.tag}"
        addr = f"10.99.0.{index}"
        run("ip", "netns", "add", ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")
        hub_if = f"v{index}h{self.tag}"[:15]
        run("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", hub_if,
            "netns", self.hub)
        run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        run("ip", "-n", self.hub, "link", "set", hub_if, "master", "br0")
        run("ip", "-n", self.hub, "link", "set", hub_if, "up")
        etc = f"/etc/netns/{ns}"
        os.makedirs(etc, exist_ok=True)
        with open(os.path.join(etc, "resolv.conf"), "w") as f:
            f.write(f"nameserver {HUB_ADDR}\n")
        with open(os.path.join(etc, "hosts"), "w") as f:
            f.write("127.0.0.1 localhost\n")
        self.etc_dirs.append(etc)
        self.nodes[name] = (ns, addr)
        return ns, addr

    # -- DNS -----------------------------------------------------------
    def add_a(self, domain, addr):
        self.dns_lines.append(f"address=/{domain}/{addr}")

    def add_srv(self, service, domain, target, port, priority=0, weight=5):
        self.dns_lines.append(f"srv-host={service}.{domain},{target},{port},{priority},{weight}")

    def start_dns(self):
        conf = os.path.join(self.workdir, "dnsmasq.conf")
        with open(conf, "w") as f:
            f.write("no-resolv\nno-hosts\nno-poll\nbind-interfaces\n"
                    f"listen-address={HUB_ADDR}\nport=53\nlog-queries\nlocal=/test/\nlocal=/lan/\n"
                    + "\n".join(self.dns_lines) + "\n")
        log = open(os.path.join(self.workdir, "dnsmasq.log"), "wb")
        self.dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", self.hub, "dnsmasq", "--keep-in-foreground",
             "--conf-file=" + conf, "--user=root", "--pid-file=", "--log-facility=-"],
            stdout=log, stderr=log)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with netns(self.hub):
                cp = subprocess.run(["ss", "-uln"], capture_output=True, text=True)
            if f"{HUB_ADDR}:53" in cp.stdout:
                return
            if self.dnsmasq.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("dnsmasq did not start:\n" +
                           open(os.path.join(self.workdir, "dnsmasq.log")).read())

    def teardown(self):
        if self.dnsmasq and self.dnsmasq.poll() is None:
            self.dnsmasq.terminate()
            try:
                self.dnsmasq.wait(5)
            except subprocess.TimeoutExpired:
                self.dnsmasq.kill()
        for ns, _ in self.nodes.values():
            run("ip", "netns", "del", ns, check=False)
        run("ip", "netns", "del", self.hub, check=False)
        for d in self.etc_dirs:
            shutil.rmtree(d, ignore_errors=True)


class FedCA:
    """A throw-away certificate authority (openssl CLI)."""

    def __init__(self, workdir, name="Starling Test CA"):
        self.dir = os.path.join(str(workdir), "ca")
        os.makedirs(self.dir, exist_ok=True)
        self.key = os.path.join(self.dir, "ca.key")
        self.cert = os.path.join(self.dir, "ca.crt")
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", self.key, "-out", self.cert, "-days", "2", "-subj",
            f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, domain, outdir=None, also=(), xmpp_addrs=(), dns=True):
        """(cert_path, key_path) for domain, signed by this CA (SAN dNSName unless dns is
        false; `also`: more dNSNames; `xmpp_addrs`: XmppAddr otherNames, RFC 6120
        §13.7.1.4)."""
        outdir = outdir or self.dir
        key = os.path.join(outdir, f"{domain}.key")
        csr = os.path.join(outdir, f"{domain}.csr")
        crt = os.path.join(outdir, f"{domain}.crt")
        ext = os.path.join(outdir, f"{domain}.ext")
        with open(ext, "w") as f:
            names = [f"DNS:{d}" for d in ((domain,) if dns else ()) + tuple(also)]
            names += [f"otherName:1.3.6.1.5.5.7.8.5;UTF8:{d}" for d in xmpp_addrs]
            f.write(f"subjectAltName={','.join(names)}\nbasicConstraints=CA:FALSE\n"
                    "keyUsage=digitalSignature,keyAgreement\n"
                    "extendedKeyUsage=serverAuth,clientAuth\n")
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", f"/CN={domain}")
        run("openssl", "x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
            "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext)
        os.chmod(key, 0o644)
        return crt, key


class NetStarling(StarlingServer):
    """Starling inside a network namespace, listening on its address only."""

    def __init__(self, workdir, ns, addr, overrides=None, name="starling"):
        self.ns, self.addr = ns, addr
        base = {"listen": {"interfaces": [addr], "c2s_port": 5222, "c2s_tls_port": 5223},
                "s2s": {"port": 5269, "tls_port": 5270}}
        super().__init__(workdir, deep_merge_simple(base, overrides or {}), name=name)
        self.port, self.tls_port = 5222, 5223
        self.config["listen"]["c2s_port"] = 5222
        self.config["listen"]["c2s_tls_port"] = 5223
        self.config["hosts"] = (overrides or {}).get("hosts", self.config["hosts"])
        self.write_config()

    def start(self, wait=True):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, _starling_bin(), "run", "--config",
             self.config_path],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, cwd=self.workdir)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"starling exited with {self.proc.returncode}:\n"
                                     + self.log_tail())
            try:
                with netns(self.ns):
                    socket.create_connection((self.addr, self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("starling did not start:\n" + self.log_tail())

    def login(self, jid, resource=None, presence=False):
        user, domain = jid.split("@")
        with netns(self.ns):
            c = xmpp_raw.RawClient(self.port, domain=domain, host=self.addr)
        c.open_stream()
        c.starttls()
        c.open_stream()
        c.authenticate(user, self.users[jid])
        c.bind(resource)
        if presence:
            c.send("<presence/>")
        return c

    def raw(self, port=5269):
        """A plain TCP socket to this server's port, opened inside its namespace."""
        with netns(self.ns):
            return socket.create_connection((self.addr, port), timeout=5)


def _starling_bin():
    from server import starling_bin
    return starling_bin()


def deep_merge_simple(a, b):
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge_simple(out[k], v)
        else:
            out[k] = v
    return out


PROSODY_CFG = """
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
log = {{ debug = "{dir}/prosody.log" }}
daemonize = false
plugin_paths = {{ }}
modules_enabled = {{
  "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "presence"; "posix";
  "s2s_auth_certs"; "version"; "s2s";
}}
modules_disabled = {{ "s2s_bidi" }}
unbound = {{ resolvconf = true; hoststxt = true }}
c2s_ports = {{ 5222 }}
s2s_ports = {{ 5269 }}
c2s_direct_tls_ports = {{ }}
s2s_direct_tls_ports = {{ }}
interfaces = {{ "{addr}" }}
local_interfaces = {{ "{addr}" }}
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = {secure}
s2s_insecure_domains = {{ {insecure} }}
authentication = "internal_plain"
storage = "internal"
certificates = "{dir}/certs"
ssl = {{ cafile = "{cafile}"; key = "{dir}/certs/{domain}.key"; certificate = "{dir}/certs/{domain}.crt" }}
VirtualHost "{domain}"
"""


class NetProsody:
    """Debian's prosody, unprivileged (user prosody), inside a network namespace."""

    def __init__(self, workdir, ns, addr, domain, ca, secure=True, insecure=()):
        # Its own directory outside the (root-only) pytest tree, so user prosody can read it.
        self.dir = tempfile.mkdtemp(prefix="starling-prosody-")
        os.chmod(self.dir, 0o755)
        self.ns, self.addr, self.domain = ns, addr, domain
        os.makedirs(os.path.join(self.dir, "certs"), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        ca.issue(domain, os.path.join(self.dir, "certs"))
        cafile = os.path.join(self.dir, "certs", "ca.crt")
        shutil.copy(ca.cert, cafile)
        self.cfg = os.path.join(self.dir, "prosody.cfg.lua")
        with open(self.cfg, "w") as f:
            f.write(PROSODY_CFG.format(
                dir=self.dir, addr=addr, domain=domain, cafile=cafile,
                secure="true" if secure else "false",
                insecure="; ".join(f'"{d}"' for d in insecure)))
        run("chown", "-R", "prosody:prosody", self.dir)
        self.proc = None
        self.users = {}

    def _as_prosody(self, *argv):
        return ["setpriv", "--reuid=prosody", "--regid=prosody", "--init-groups"] + list(argv)

    def add_user(self, jid, password):
        user, domain = jid.split("@")
        run(*self._as_prosody("prosodyctl", "--config", self.cfg, "register", user, domain,
                              password))
        self.users[jid] = password

    def start(self):
        log = open(os.path.join(self.dir, "stdout.log"), "ab")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns] +
            self._as_prosody("prosody", "--config", self.cfg, "-F"),
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("prosody exited:\n" + self.log_tail())
            try:
                with netns(self.ns):
                    socket.create_connection((self.addr, 5222), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError("prosody did not start:\n" + self.log_tail())

    def log_tail(self, n=80):
        out = []
        for name in ("stdout.log", "prosody.log"):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    out += f.read().splitlines()[-n:]
            except OSError:
                pass
        return "\n".join(out)

    def login(self, jid, resource=None, presence=False):
        user, domain = jid.split("@")
        with netns(self.ns):
            c = xmpp_raw.RawClient(5222, domain=domain, host=self.addr, timeout=10)
        c.open_stream()
        c.starttls()
        c.open_stream()
        c.authenticate(user, self.users[jid])
        c.bind(resource)
        if presence:
            c.send("<presence/>")
        return c

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self):
        self.stop()
        if not os.environ.get("STARLING_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)


# ---- shared by the federation test modules ----------------------------------------------

def start_servers(servers, plan):
    """Starts each NetStarling of plan [(server, {jid: password})] after creating its users;
    appends it to servers first so stop_servers() sees it even when start-up fails."""
    for srv, users in plan:
        servers.append(srv)
        srv.users = dict(users)
        for jid, pw in users.items():
            srv.add_user(jid, pw)
        srv.start()


def finish_servers(servers):
    """Stops every server the orderly way and fails with each one's problems (exit status,
    sanitizer reports, secrets in logs)."""
    errors = []
    for s in servers:
        try:
            s.finish()
        except AssertionError as exc:
            errors.append(f"[{s.name}] {exc}")
    assert not errors, "\n".join(errors)


def kill_servers(servers):
    """Last resort in a fixture's finally: kills what finish_servers() did not stop."""
    for s in servers:
        if s.proc and s.proc.poll() is None:
            s.proc.kill()


@pytest.fixture
def opened():
    """Raw client connections a test opened; closed after it."""
    conns = []
    yield conns
    for c in conns:
        c.close()


def login(server, jid, opened, **kw):
    c = server.login(jid, **kw)
    opened.append(c)
    return c


def chat(frm, to, body):
    frm.send(f"<message type='chat' to='{to}' id='{new_id()}'><body>{body}</body></message>")


def wait_body(c, body, timeout=10):
    return c.messages(timeout=timeout, pred=lambda m: m.findtext(q(NS_CLIENT, "body")) == body)
