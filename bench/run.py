#!/usr/bin/python3
"""`make bench`: Starling side by side with Prosody and ejabberd (issue 6).

Builds bench/loadgen and bench/relay, installs Debian's prosody and ejabberd
when missing (as root; otherwise that peer is skipped with a message), then runs
each server alone on loopback, on a freshly started process per scenario, with
equivalent settings: one vhost (localhost), the same pre-created accounts with
hashed SCRAM-SHA-1 credentials (4096 iterations), no rate limits or shapers,
an ECDSA P-256 certificate made here, default storage. The server is pinned to
one core and the load generator to another (taskset), except in the two PLAIN
storms, where the server may use both cores (its PBKDF2 work can spread over
them) and so shares core 1 with the load generator; those scenarios also
report the PBKDF2 floor measured in the same run. Scenarios (see
SCENARIOS): idle sessions (KiB per session), login storms, one-to-one
messaging, the same after 10k sessions came and went, and the byte-copying
relay that bounds what any server can reach. Each figure is the median of
--runs runs; the table gives each server's figure and the Starling/peer ratio.
Any error in a run (refused login, lost or misdelivered message, server death)
is printed and makes the exit status 1: a harness that measures errors quietly
is worse than none.

usage: bench/run.py [--quick] [--runs N] [--servers starling,prosody,ejabberd]
                    [--scenarios idle_1k,msg_100_w10,...] [--selftest]
"""
import argparse
import json
import os
import platform
import pwd
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = "secret"
PREFIX = "u"
DOMAIN = "localhost"
SERVER_CPU = "0"   # taskset core of the server under test
CLIENT_CPU = "1"   # taskset core of the load generator
BOTH_CPUS = "0,1"  # the server in scenarios whose work may spread over both cores
PBKDF2_ITERATIONS = 4096  # what every server stores (Starling's minimum, peers' default)
CHURN_WARMUP = 100  # sessions that come and go before the churn's reference RSS sample
FD_SPLIT = 9500    # sessions per loadgen process in split runs (20k fd limit each)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- sizes ---

def sizes(quick):
    """Scenario sizes: full (issue 6) or --quick (smoke test on a busy machine)."""
    if quick:
        return dict(idle_small=200, idle_big=1000, idle_max=2000, login=1000, churn=1000,
                    pairs_small=20, pairs_big=100, duration=3, users=2000)
    return dict(idle_small=1000, idle_big=10000, idle_max=19000, login=10000, churn=10000,
                pairs_small=100, pairs_big=1000, duration=10, users=19000)


# scenario id -> (label, kind, parameters); kinds: idle, login, message, churn
def scenario_table(z):
    return [
        ("idle_1k", f"idle sessions ({z['idle_small']}), plain", "idle",
         dict(n=z["idle_small"], tls=False)),
        ("idle_10k", f"idle sessions ({z['idle_big']}), plain", "idle",
         dict(n=z["idle_big"], tls=False)),
        ("idle_10k_tls", f"idle sessions ({z['idle_big']}), STARTTLS", "idle",
         dict(n=z["idle_big"], tls=True)),
        ("idle_max", f"idle sessions ({z['idle_max']}, near the fd limit), plain", "idle",
         dict(n=z["idle_max"], tls=False)),
        # One PBKDF2 per PLAIN login, which a server can run on both cores: the server gets
        # cores 0 and 1 (sharing core 1 with the load generator) and the figure is compared
        # with the floor of 2 cores doing nothing but PBKDF2 (issue 6's PLAIN bar).
        ("login_plain", f"login storm ({z['login']}), plain TCP + PLAIN, server on cores "
         f"{BOTH_CPUS} (shares core {CLIENT_CPU} with the load generator)", "login",
         dict(n=z["login"], tls=False, mech="PLAIN", server_cpus=BOTH_CPUS, pbkdf2_floor=True)),
        # The same with STARTTLS, as clients log in with PLAIN on the open Internet: the
        # handshakes take their share of both cores.
        ("login_tls_plain", f"login storm ({z['login']}), STARTTLS + PLAIN, server on cores "
         f"{BOTH_CPUS} (shares core {CLIENT_CPU} with the load generator)", "login",
         dict(n=z["login"], tls=True, mech="PLAIN", server_cpus=BOTH_CPUS, pbkdf2_floor=True)),
        ("login_tls_scram", f"login storm ({z['login']}), STARTTLS + SCRAM-SHA-1", "login",
         dict(n=z["login"], tls=True, mech="SCRAM-SHA-1")),
        ("msg_small_w10", f"messages, {z['pairs_small']} pairs W=10", "message",
         dict(pairs=z["pairs_small"], window=10)),
        ("msg_big_w10", f"messages, {z['pairs_big']} pairs W=10", "message",
         dict(pairs=z["pairs_big"], window=10)),
        ("msg_small_w1", f"messages, {z['pairs_small']} pairs W=1", "message",
         dict(pairs=z["pairs_small"], window=1)),
        ("msg_after_churn", f"messages, {z['pairs_small']} pairs W=10 after {z['churn']} "
         "sessions came and went", "churn", dict(pairs=z["pairs_small"], window=10,
                                                  churn=z["churn"])),
    ]


# -------------------------------------------------------------- helpers ---

def accounts_needed(scenarios, z):
    """Accounts the chosen scenarios log in (creating all 19,000 takes minutes)."""
    need = [max(p.get("n", 0), p.get("churn", 0), 2 * p.get("pairs", 0), CHURN_WARMUP)
            for _, _, _, p in scenarios]
    return min(z["users"], max(need, default=1))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc_alive, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if not proc_alive():
            raise BenchError("server exited during start-up")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"server did not listen on port {port} within {timeout}s")


def proc_sample(pid):
    """(cpu seconds, rss KiB) of pid from /proc, or (None, None)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        return cpu, rss
    except (OSError, StopIteration, IndexError, ValueError):
        return None, None


def thread_cpu(pid):
    """{tid: cpu seconds} for every thread of pid (empty if it is gone)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tids:
        try:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[t] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return out


PBKDF2_PROBE = """
import hashlib, os, sys, time
h, n, it = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
salt = os.urandom(16)
t0, w0 = time.process_time(), time.time()
for i in range(n):
    hashlib.pbkdf2_hmac(h, b"secret", salt, it)
print((time.process_time() - t0) / n, (time.time() - w0) / n)
"""


def measure_pbkdf2(hash_name, n=150):
    """CPU seconds of one PBKDF2-HMAC-<hash_name> (PBKDF2_ITERATIONS iterations) on each core,
    both cores measured at the same time (as a server using both would run). Python's hashlib
    runs OpenSSL's PBKDF2, the same code the servers' C or Erlang bindings use. Returns
    ([seconds per PBKDF2 on each core], floor in logins/s = sum over cores of 1 / seconds)."""
    procs = [subprocess.Popen(pinned(cpu, [sys.executable, "-c", PBKDF2_PROBE, hash_name,
                                           str(n), str(PBKDF2_ITERATIONS)]),
                              stdout=subprocess.PIPE, text=True)
             for cpu in BOTH_CPUS.split(",")]
    per = []
    for pr in procs:
        out, _ = pr.communicate(timeout=600)
        if pr.returncode != 0:
            raise BenchError(f"PBKDF2 probe failed (exit {pr.returncode})")
        per.append(float(out.split()[0]))
    return per, sum(1.0 / t for t in per)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pinned(cpu, argv):
    return ["taskset", "-c", cpu] + argv if shutil.which("taskset") else argv


def make_cert(d):
    """Self-signed ECDSA P-256 certificate for localhost (the same for every server)."""
    crt, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "30", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(os.path.join(d, "combined.pem"), "w") as out:
        for p in (crt, key):
            with open(p) as f:
                out.write(f.read())
    return crt, key


def build_tools(build):
    """Compiles loadgen and relay into BUILD/bench with the project's warnings."""
    out = os.path.join(ROOT, build, "bench")
    os.makedirs(out, exist_ok=True)
    cflags = ["-std=c17", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE",
              "-I", os.path.join(ROOT, "src"), "-I", ROOT]
    base = [os.path.join(ROOT, "src/base/buf.c"), os.path.join(ROOT, "src/base/mem.c")]
    b = lambda f: os.path.join(ROOT, "bench", f)
    tools = {"loadgen": [b("loadgen.c"), b("lg_scram.c"), b("lg_util.c")] + base,
             "relay": [b("relay.c")] + base}
    cc = os.environ.get("CC", "cc")
    for name, srcs in tools.items():
        exe = os.path.join(out, name)
        deps = srcs + [b("lg_scram.h"), b("lg_util.h")]
        if os.path.exists(exe) and all(os.path.getmtime(exe) >= os.path.getmtime(s)
                                       for s in deps):
            continue
        subprocess.run([cc] + cflags + srcs + ["-lssl", "-lcrypto", "-o", exe], check=True)
    return os.path.join(out, "loadgen"), os.path.join(out, "relay")


def register_ibr(port, users, threads=8):
    """Creates accounts by in-band registration (XEP-0077 §3.1) over plain TCP."""
    header = ("<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
              "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
    errors = []

    def until(sock, buf, pat):
        rx = re.compile(pat, re.S)
        while True:
            m = rx.search(buf)
            if m:
                return m, buf[m.end():]
            data = sock.recv(65536)
            if not data:
                raise BenchError("registration: server closed: " + buf[-200:])
            buf += data.decode("utf-8", "replace")

    def worker(names):
        for name in names:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=30)
                s.sendall(header.encode())
                _, buf = until(s, "", r"</stream:features>")
                s.sendall((f"<iq type='set' id='reg1'><query xmlns='jabber:iq:register'>"
                           f"<username>{name}</username><password>{PASSWORD}</password>"
                           f"</query></iq>").encode())
                m, buf = until(s, buf, r"<iq[^>]*id=['\"]reg1['\"][^>]*>")
                if "error" in m.group(0):
                    m2, _ = until(s, buf, r"</iq>")
                    errors.append(f"{name}: {m.group(0)}{m2.string[:m2.end()][:300]}")
                s.sendall(b"</stream:stream>")
                s.close()
            except (OSError, BenchError) as e:
                errors.append(f"{name}: {e}")
            if len(errors) > 5:
                return

    chunks = [users[i::threads] for i in range(threads)]
    ts = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise BenchError("in-band registration failed: " + "; ".join(errors[:3]))


# -------------------------------------------------------------- servers ---

class Server:
    """One server under test: prepares its data once, starts fresh processes."""
    name = "?"
    unsupported = {}
    plain_hash = "sha1"  # the PBKDF2 hash behind a PLAIN check against stored SCRAM-SHA-1

    def __init__(self, work, cert, key, users):
        self.dir = os.path.join(work, self.name)
        os.makedirs(self.dir, exist_ok=True)
        self.cert, self.key, self.users = cert, key, users
        self.port = free_port()
        self.proc = None
        self.pid = None

    def available(self):
        return True

    def prepare(self):
        """Writes the config and creates the accounts."""

    def start(self, cpus=SERVER_CPU):
        """Starts a fresh process pinned to cpus (taskset list)."""
        raise NotImplementedError

    def finish(self):
        """Called once after the last scenario."""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        pids = [p for p in (self.pid, self.proc.pid if self.proc else None) if p]
        for p in pids:
            try:
                os.kill(p, signal.SIGTERM)
            except ProcessLookupError:
                pass
        t0 = time.time()
        while time.time() - t0 < 15 and any(os.path.exists(f"/proc/{p}") and
                                            not is_zombie(p) for p in pids):
            if self.proc:
                self.proc.poll()
            time.sleep(0.1)
        for p in pids:
            if os.path.exists(f"/proc/{p}") and not is_zombie(p):
                os.kill(p, signal.SIGKILL)
        if self.proc:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.proc = self.pid = None


def is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class Starling(Server):
    name = "starling"
    # PLAIN is checked against the stored SCRAM-SHA-256 credential (src/transport/c2s_sasl.c).
    plain_hash = "sha256"

    def __init__(self, work, cert, key, users, binary, log_level="warn"):
        super().__init__(work, cert, key, users)
        self.bin = binary
        self.log_level = log_level

    def available(self):
        return os.path.exists(self.bin)

    def prepare(self):
        self.cfg = os.path.join(self.dir, "starling.yaml")
        with open(self.cfg, "w") as f:
            f.write(f"""log_level: {self.log_level}
data_dir: {self.dir}/data
hosts:
  localhost:
    certificate: {self.cert}
    key: {self.key}
listen:
  interfaces: ["127.0.0.1"]
  c2s_port: {self.port}
  c2s_tls_port: 0
s2s:
  port: 0
  tls_port: 0
http:
  port: 0
  tls_port: 0
c2s:
  require_encryption: false
  allow_plain_unencrypted: true  # as the peers are set up: the plain-TCP PLAIN storm
  connections_per_ip: 0
  max_resources: 1000
""")
        log(f"starling: creating {len(self.users)} accounts (starling user add)")
        errors = []

        def add(names):
            for n in names:
                # Concurrent opens of the database can meet "database is locked" (the CLI sets
                # up WAL without a busy timeout): retry those.
                for attempt in range(20):
                    r = subprocess.run([self.bin, "user", "add", f"{n}@{DOMAIN}",
                                        "--password-stdin", "--config", self.cfg],
                                       input=(PASSWORD + "\n").encode(), capture_output=True)
                    if r.returncode == 0 or b"locked" not in r.stderr:
                        break
                    time.sleep(0.05 * (attempt + 1))
                if r.returncode != 0:
                    errors.append(f"{n}: {r.stderr.decode()[:200]}")
                    return
        add(self.users[:1])  # creates the database alone
        rest = self.users[1:]
        ts = [threading.Thread(target=add, args=(rest[i::6],)) for i in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if errors:
            raise BenchError("starling user add failed: " + errors[0])

    def start(self, cpus=SERVER_CPU):
        self.proc = subprocess.Popen(pinned(cpus, [self.bin, "run", "--config", self.cfg]),
                                     preexec_fn=raise_nofile, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "server.log"), "a"))
        self.pid = self.proc.pid
        wait_port(self.port, self.alive)


class Prosody(Server):
    name = "prosody"

    def available(self):
        return shutil.which("prosody") is not None

    def prepare(self):
        user = pwd.getpwnam("prosody") if os.getuid() == 0 else None
        self.cfg = os.path.join(self.dir, "prosody.cfg.lua")
        for sub in ("data",):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        # Prosody refuses to read a key it cannot open: give it copies it owns.
        shutil.copy(self.cert, os.path.join(self.dir, "cert.pem"))
        shutil.copy(self.key, os.path.join(self.dir, "key.pem"))
        with open(self.cfg, "w") as f:
            f.write(f"""-- generated by bench/run.py
daemonize = false
pidfile = "{self.dir}/prosody.pid"
data_path = "{self.dir}/data"
log = {{ warn = "{self.dir}/prosody.log" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {self.port} }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
network_backend = "epoll"
network_settings = {{ tcp_backlog = 1024 }} -- Starling listens with 1024 too
admins = {{ }}
modules_enabled = {{ "roster", "saslauth", "tls", "disco", "ping", "version", "register" }}
modules_disabled = {{ "s2s" }}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
allow_registration = true
-- no mod_limits: no rate limits on c2s
unbound = {{ resolvconf = true; hoststxt = true }}
ssl = {{ certificate = "{self.dir}/cert.pem"; key = "{self.dir}/key.pem" }}
VirtualHost "localhost"
""")
        if user:
            for root, dirs, files in os.walk(self.dir):
                for n in dirs + files:
                    os.chown(os.path.join(root, n), user.pw_uid, user.pw_gid)
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        self.start()
        try:
            log(f"prosody: creating {len(self.users)} accounts (in-band registration, "
                "internal_hashed)")
            register_ibr(self.port, self.users)
        finally:
            self.stop()

    def start(self, cpus=SERVER_CPU):
        argv = ["prosody", "--config", self.cfg, "-F"]
        if os.getuid() == 0:
            argv = ["setpriv", "--reuid=prosody", "--regid=prosody", "--init-groups"] + argv
        self.proc = subprocess.Popen(pinned(cpus, argv), preexec_fn=raise_nofile,
                                     stdout=open(os.path.join(self.dir, "stdout.log"), "a"),
                                     stderr=subprocess.STDOUT, cwd=self.dir)
        self.pid = self.proc.pid
        wait_port(self.port, self.alive)


class Ejabberd(Server):
    name = "ejabberd"

    def available(self):
        return shutil.which("ejabberdctl") is not None or os.path.exists("/usr/sbin/ejabberdctl")

    def prepare(self):
        self.node = f"bench{os.getpid()}@localhost"
        for sub in ("spool", "logs"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        shutil.copy(os.path.join(os.path.dirname(self.cert), "combined.pem"),
                    os.path.join(self.dir, "combined.pem"))
        with open(os.path.join(self.dir, "ejabberdctl.cfg"), "w") as f:
            f.write("ERL_MAX_PORTS=65536\nPOLL=true\nERL_PROCESSES=1000000\n")
        with open(os.path.join(self.dir, "inetrc"), "w") as f:
            f.write("{lookup,[file,native]}.\n{hosts_file,\"/etc/hosts\"}.\n")
        with open(os.path.join(self.dir, "ejabberd.yml"), "w") as f:
            f.write(f"""# generated by bench/run.py
hosts:
  - localhost
loglevel: warning
certfiles:
  - "{self.dir}/combined.pem"
listen:
  -
    port: {self.port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    backlog: 1024
    max_stanza_size: 262144
    shaper: none  # backlog as Starling's (1024); ejabberd's default is 5
    access: c2s
    starttls: true
    starttls_required: false
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha
registration_timeout: infinity
max_fsm_queue: 1000000
acl:
  loopback:
    ip:
      - 127.0.0.0/8
access_rules:
  local:
    allow: all
  c2s:
    allow: all
  register:
    allow: all
shaper: {{}}
shaper_rules:
  max_user_sessions: 100000
  max_user_offline_messages: 5000
  c2s_shaper: none
  s2s_shaper: none
modules:
  mod_disco: {{}}
  mod_ping: {{}}
  mod_roster: {{}}
  mod_offline: {{}}
  mod_version: {{}}
  mod_register:
    ip_access: all
    access: register
""")
        if os.getuid() == 0:
            u = pwd.getpwnam("ejabberd")
            for root, dirs, files in os.walk(self.dir):
                for n in dirs + files:
                    os.chown(os.path.join(root, n), u.pw_uid, u.pw_gid)
            os.chown(self.dir, u.pw_uid, u.pw_gid)
        self.start()
        try:
            log(f"ejabberd: creating {len(self.users)} accounts (in-band registration, "
                "scram)")
            register_ibr(self.port, self.users)
        finally:
            self.stop()

    def finish(self):
        """Stops the epmd our VM started, if none ran before (it outlives the VM)."""
        for pid in find_epmd() - self.epmd_before:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def start(self, cpus=SERVER_CPU):
        if not hasattr(self, "epmd_before"):
            self.epmd_before = find_epmd()
        argv = ["/usr/sbin/ejabberdctl", "--config-dir", self.dir, "--spool",
                os.path.join(self.dir, "spool"), "--logs", os.path.join(self.dir, "logs"),
                "--node", self.node, "foreground"]
        env = None
        if os.getuid() == 0:
            # As the ejabberd user directly: ejabberdctl's own `su` goes through PAM, which
            # resets the descriptor limit to 1024.
            argv = ["setpriv", "--reuid=ejabberd", "--regid=ejabberd", "--init-groups"] + argv
            env = dict(os.environ, HOME=pwd.getpwnam("ejabberd").pw_dir, USER="ejabberd")
        self.proc = subprocess.Popen(pinned(cpus, argv), preexec_fn=raise_nofile,
                                     stdout=open(os.path.join(self.dir, "stdout.log"), "a"),
                                     stderr=subprocess.STDOUT, cwd=self.dir, env=env)
        # The measured process is the Erlang VM (beam.smp) under the su/sh wrappers.
        t0 = time.time()
        self.pid = None
        while time.time() - t0 < 30 and not self.pid:
            self.pid = find_beam(self.node)
            if not self.pid:
                if not self.alive():
                    raise BenchError("ejabberdctl exited: see " + self.dir + "/stdout.log")
                time.sleep(0.2)
        if not self.pid:
            raise BenchError("ejabberd VM not found")
        wait_port(self.port, lambda: os.path.exists(f"/proc/{self.pid}"), timeout=90)
        with open(f"/proc/{self.pid}/limits") as f:
            lim = next((l.split()[3] for l in f if l.startswith("Max open files")), "?")
        if lim.isdigit() and int(lim) < 20000:
            raise BenchError(f"ejabberd runs with a descriptor limit of {lim}")


def find_epmd():
    """PIDs of running epmd daemons (Erlang's port mapper, started by the first VM)."""
    pids = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if f.read().split(b"\0")[0].endswith(b"/epmd"):
                        pids.add(int(d))
            except OSError:
                pass
    return pids


def find_beam(node):
    """PID of the beam.smp process started with our unique node name."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"beam.smp") and node.encode() in argv:
            return int(d)
    return None


class Relay(Server):
    """The byte-copying probe; takes only message scenarios, in --raw mode."""
    name = "relay"

    def __init__(self, work, binary):
        super().__init__(work, None, None, [])
        self.bin = binary

    def start(self, cpus=SERVER_CPU):
        # Not probed by connecting: the relay would pair the probe with the first session.
        self.proc = subprocess.Popen(pinned(cpus, [self.bin, "--port", str(self.port)]),
                                     preexec_fn=raise_nofile, stderr=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        if "listening" not in self.proc.stderr.readline():
            raise BenchError("relay did not start")


# ------------------------------------------------------------ scenarios ---

class Runner:
    def __init__(self, loadgen, n_users, workdir):
        self.loadgen = loadgen
        self.n_users = n_users
        self.work = workdir

    def lg_argv(self, srv, mode, extra):
        argv = [self.loadgen, "--mode", mode, "--port", str(srv.port), "--domain", DOMAIN,
                "--users", f"{PREFIX}/{PASSWORD}/{self.n_users}", "--server-pid", str(srv.pid),
                "--sources", "8", "--json",
                "--scram-cache", os.path.join(self.work, f"scram-{srv.name}.cache")] + extra
        return pinned(CLIENT_CPU, argv)

    def run_lg(self, srv, mode, extra, timeout=900):
        r = subprocess.run(self.lg_argv(srv, mode, extra), capture_output=True, text=True,
                           preexec_fn=raise_nofile, timeout=timeout)
        try:
            res = json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise BenchError(f"loadgen gave no report (exit {r.returncode}): {r.stderr[-400:]}")
        if r.returncode != 0 or res["errors"] or res["ready"] < res["sessions"]:
            raise BenchError(f"loadgen {mode}: {res['ready']}/{res['sessions']} ready, "
                             f"{res['errors']} errors {res['error_kinds']}; first: "
                             f"{res['first_error']}")
        if not srv.alive() or (srv.pid and not os.path.exists(f"/proc/{srv.pid}")):
            raise BenchError("server died during the run")
        return res

    def warm_cache(self, srv, n):
        """Logs every account in once so the client holds its salted passwords (as clients
        do); not measured. The server is restarted afterwards."""
        self.run_lg(srv, "login", ["--sessions", str(min(n, self.n_users)), "--mech",
                                   "SCRAM-SHA-1"])

    def idle(self, srv, p):
        n = p["n"]
        time.sleep(1.0)
        cpu0, rss0 = proc_sample(srv.pid)
        procs, first = [], 0
        while first < n:
            k = min(FD_SPLIT, n - first)
            extra = ["--sessions", str(k), "--first", str(first), "--duration", "600",
                     "--mech", "SCRAM-SHA-1"] + (["--tls"] if p["tls"] else [])
            procs.append(subprocess.Popen(self.lg_argv(srv, "idle", extra), text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          preexec_fn=raise_nofile))
            first += k
        ready = 0
        try:
            for pr in procs:
                line = pr.stderr.readline()
                while line and not line.startswith("READY"):
                    line = pr.stderr.readline()
                ready += int(line.split()[1]) if line else 0
            time.sleep(2.0)
            cpu1, rss1 = proc_sample(srv.pid)
        finally:
            for pr in procs:
                pr.send_signal(signal.SIGTERM)
        results = []
        for pr in procs:
            out, err = pr.communicate(timeout=120)
            try:
                results.append(json.loads(out.strip().splitlines()[-1]))
            except (ValueError, IndexError):
                raise BenchError(f"loadgen idle gave no report: {err[-400:]}")
        errs = sum(r["errors"] for r in results)
        if ready < n or errs:
            firsts = [r["first_error"] for r in results if r["first_error"]]
            raise BenchError(f"idle: {ready}/{n} ready, {errs} errors; first: {firsts[:1]}")
        if rss0 is None or rss1 is None:
            raise BenchError("cannot read server RSS")
        per = (rss1 - rss0) / n
        return {"kib_per_session": per, "rss_start_mib": rss0 / 1024,
                "rss_mib": rss1 / 1024, "proj_1m_gib": (rss0 + per * 1e6) / 2**20,
                "login_rate": sum(r["login"]["rate"] for r in results)}

    def login(self, srv, p):
        if p["mech"] != "PLAIN":
            self.warm_cache(srv, p["n"])
        time.sleep(0.5)
        extra = ["--sessions", str(p["n"]), "--mech", p["mech"]] + (["--tls"] if p["tls"]
                                                                     else [])
        if p.get("pbkdf2_floor"):
            per, floor = measure_pbkdf2(srv.plain_hash)
            log(f"bench: PBKDF2-HMAC-{srv.plain_hash.upper()} x{PBKDF2_ITERATIONS}: "
                f"{', '.join(f'{t * 1000:.2f}' for t in per)} ms CPU on cores {BOTH_CPUS}; "
                f"floor {floor:.0f} logins/s")
        threads0 = thread_cpu(srv.pid)
        r = self.run_lg(srv, "login", extra)
        threads1 = thread_cpu(srv.pid)
        lg = r["login"]
        res = {"logins_per_s": lg["rate"], "login_p50_ms": lg["p50_ms"],
               "login_p99_ms": lg["p99_ms"], "login_max_ms": lg["max_ms"],
               "cpu_ms_per_login": lg["server_cpu_s"] * 1000 / p["n"],
               "client_busy_pct": lg["client_cpu_s"] * 100 / lg["seconds"] if lg["seconds"] else 0,
               "client_pbkdf2": lg["pbkdf2_runs"], "tls": r["tls_info"]}
        if p.get("pbkdf2_floor"):
            # Threads that did a real share (>= 10%) of the server's CPU in the storm: a worker
            # pool that spreads PBKDF2 shows the loop thread plus at least two workers.
            used = {t: threads1[t] - threads0.get(t, 0.0) for t in threads1}
            total = sum(used.values())
            res.update(pbkdf2_ms=statistics.mean(per) * 1000, pbkdf2_floor=floor,
                       floor_share=lg["rate"] / floor,
                       busy_threads=sum(1 for v in used.values() if total and v >= 0.1 * total),
                       pbkdf2_hash=srv.plain_hash)
        return res

    def message(self, srv, p, raw=False, duration=10):
        extra = ["--pairs", str(p["pairs"]), "--window", str(p["window"]), "--duration",
                 str(duration), "--mech", "SCRAM-SHA-1"] + (["--raw"] if raw else [])
        r = self.run_lg(srv, "message", extra)
        m = r["messages"]
        return {"msgs_per_s": m["rate"], "p50_ms": m["p50_ms"], "p99_ms": m["p99_ms"],
                "max_ms": m["max_ms"], "cpu_s_per_100k": m["cpu_s_per_100k"]}

    def churn(self, srv, p, duration):
        time.sleep(1.0)
        _, rss0 = proc_sample(srv.pid)
        # "Its start plus caches": a small round first touches the code and fills the caches
        # every login uses; growth is reported against both samples.
        self.run_lg(srv, "login", ["--sessions", str(CHURN_WARMUP), "--mech", "SCRAM-SHA-1"])
        time.sleep(3.0)
        _, rss_warm = proc_sample(srv.pid)
        n, first = p["churn"], 0
        while first < n:
            k = min(FD_SPLIT, n - first)
            self.run_lg(srv, "login", ["--sessions", str(k), "--first", str(first),
                                       "--mech", "SCRAM-SHA-1"])
            first += k
        time.sleep(3.0)
        _, rss1 = proc_sample(srv.pid)
        res = self.message(srv, p, duration=duration)
        res["rss_growth_pct"] = (rss1 - rss0) * 100.0 / rss0
        res["rss_growth_warm_pct"] = (rss1 - rss_warm) * 100.0 / rss_warm
        return res


# --------------------------------------------------------------- report ---

METRICS = {  # metric -> (label, better: "low"/"high", format)
    "kib_per_session": ("KiB per session", "low", "{:.1f}"),
    "rss_start_mib": ("idle process RSS, MiB", "low", "{:.1f}"),
    "rss_mib": ("RSS with sessions, MiB", "low", "{:.1f}"),
    "proj_1m_gib": ("projected RSS for 1M sessions, GiB", "low", "{:.1f}"),
    "logins_per_s": ("logins/s", "high", "{:.0f}"),
    "login_p50_ms": ("login p50, ms", "low", "{:.1f}"),
    "login_p99_ms": ("login p99, ms", "low", "{:.1f}"),
    "cpu_ms_per_login": ("server CPU ms per login", "low", "{:.2f}"),
    "client_busy_pct": ("load generator CPU, % of its one core", "low", "{:.0f}"),
    "pbkdf2_ms": (f"CPU ms per PBKDF2 ({PBKDF2_ITERATIONS} iterations, this run)", "low",
                  "{:.2f}"),
    "pbkdf2_floor": ("PBKDF2 floor: 2 cores / CPU per PBKDF2, logins/s", "high", "{:.0f}"),
    "floor_share": ("share of the PBKDF2 floor", "high", "{:.2f}"),
    "busy_threads": ("server threads with >= 10% of its CPU", "high", "{:.0f}"),
    "msgs_per_s": ("messages/s", "high", "{:.0f}"),
    "p50_ms": ("latency p50, ms", "low", "{:.2f}"),
    "p99_ms": ("latency p99, ms", "low", "{:.2f}"),
    "cpu_s_per_100k": ("server CPU-s per 100k msgs", "low", "{:.2f}"),
    "rss_growth_pct": ("RSS growth after churn, %", "low", "{:.1f}"),
    "rss_growth_warm_pct": (f"RSS growth after churn vs. after a {CHURN_WARMUP}-session warm-up, %",
                            "low", "{:.1f}"),
}


def median_results(runs):
    out = {}
    for k in runs[0]:
        vals = [r[k] for r in runs if isinstance(r.get(k), (int, float))]
        out[k] = statistics.median(vals) if vals else runs[0][k]
    return out


def render(table, servers, scenarios, meta):
    peers = [s for s in servers if s not in ("starling", "relay")]
    cols = servers + [f"starling/{p}" for p in peers]
    if "relay" in servers:
        cols.append("starling/relay")
    lines = ["| scenario | figure | " + " | ".join(cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for sid, label, _, _ in scenarios:
        cells = {s: table.get((sid, s)) for s in servers}
        keys = []
        for v in cells.values():
            if isinstance(v, dict):
                keys += [k for k in v if k in METRICS and k not in keys]
        errs = [s for s, v in cells.items() if isinstance(v, str)]
        if not keys and errs:
            keys = ["-"]
        for k in keys:
            mlabel, _, fmt = METRICS.get(k, ("-", "low", "{}"))
            row = [label, mlabel]
            for s in servers:
                v = cells.get(s)
                if isinstance(v, str):
                    row.append(v)
                elif isinstance(v, dict) and isinstance(v.get(k), (int, float)):
                    row.append(fmt.format(v[k]))
                else:
                    row.append("")
            for p in [x for x in cols if "/" in x]:
                other = p.split("/")[1]
                a, b = cells.get("starling"), cells.get(other)
                if (isinstance(a, dict) and isinstance(b, dict) and
                        isinstance(a.get(k), (int, float)) and
                        isinstance(b.get(k), (int, float)) and b[k] > 0):
                    row.append(f"{a[k] / b[k]:.2f}")
                else:
                    row.append("")
            lines.append("| " + " | ".join(row) + " |")
    tls = {s: v.get("tls") for (sid, s), v in table.items()
           if isinstance(v, dict) and v.get("tls")}
    notes = [f"TLS as negotiated: " + "; ".join(f"{s}: {t}" for s, t in sorted(tls.items()))
             ] if tls else []
    shared = [sid for sid, _, _, p in scenarios if p.get("server_cpus", SERVER_CPU) != SERVER_CPU]
    if shared:
        notes.append(f"Cores: the server runs on core {SERVER_CPU} and the load generator on "
                     f"core {CLIENT_CPU}, except in {', '.join(shared)}: there the server may "
                     f"use cores {BOTH_CPUS} and shares core {CLIENT_CPU} with the load "
                     "generator.")
    hashes = {s: v.get("pbkdf2_hash") for (sid, s), v in table.items()
              if isinstance(v, dict) and v.get("pbkdf2_hash")}
    if hashes:
        notes.append(
            f"PBKDF2 floor: one PBKDF2 ({PBKDF2_ITERATIONS} iterations) per PLAIN login, with "
            "the hash each server checks PLAIN with (" +
            ", ".join(f"{s}: HMAC-{h.upper()}" for s, h in sorted(hashes.items())) +
            "), timed in the same run with OpenSSL (Python's hashlib) on both cores at once; "
            "floor = sum over the 2 cores of 1 / CPU seconds per PBKDF2, the logins/s if both "
            "cores did nothing else. Share = logins/s / floor.")
    return "\n".join(lines) + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else "")


def machine_facts():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()
    vers = []
    for pkg in ("prosody", "ejabberd", "libssl3"):
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True,
                           text=True)
        if r.returncode == 0:
            vers.append(f"{pkg} {r.stdout}")
    commit = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%h %s"],
                            capture_output=True, text=True).stdout.strip()
    return (f"{platform.node()}: {cpu}, {os.cpu_count()} cores, {mem:.0f} GiB; "
            f"kernel {platform.release()}; load average at start {load[0]:.2f}; "
            f"{', '.join(vers)}; Starling at {commit or '?'}")


def update_docs(md_table, cmd, facts, date, quick):
    path = os.path.join(ROOT, "docs", "PERFORMANCE.md")
    with open(path) as f:
        text = f.read()
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    flag = " (quick smoke sizes, one run: NOT a measurement)" if quick else ""
    body = (f"{begin}\nLatest run: {date}, `{cmd}`{flag}.\n\nMachine: {facts}.\n\n"
            f"{md_table}{end}")
    if begin in text and end in text:
        text = text[:text.index(begin)] + body + text[text.index(end) + len(end):]
    else:
        text += "\n" + body + "\n"
    with open(path, "w") as f:
        f.write(text)


# ----------------------------------------------------------------- main ---

def ensure_peers(wanted):
    missing = [p for p, exe in (("prosody", "prosody"), ("ejabberd", "ejabberdctl"))
               if p in wanted and not shutil.which(exe) and
               not os.path.exists(f"/usr/sbin/{exe}")]
    if not missing:
        return
    if os.getuid() != 0:
        log(f"bench: {', '.join(missing)} not installed and not root: skipping them")
        return
    log(f"bench: installing {' '.join(missing)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends"] + missing,
                       env=env, stdout=subprocess.DEVNULL)
    if r.returncode != 0:
        log("bench: apt-get install failed; peers that are missing are skipped")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--quick", action="store_true", help="small sizes, one run (smoke test)")
    ap.add_argument("--selftest", action="store_true",
                    help="Starling and the relay only, tiny sizes; exit 0 if all works")
    ap.add_argument("--runs", type=int, default=None, help="runs per figure (median)")
    ap.add_argument("--servers", default="starling,prosody,ejabberd,relay")
    ap.add_argument("--scenarios", default="all", help="comma-separated ids, or 'all'")
    ap.add_argument("--duration", type=float, default=None, help="message test seconds")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--no-docs", action="store_true", help="do not touch docs/PERFORMANCE.md")
    ap.add_argument("--log-level", default="warn",
                    help="Starling's log level (info shows each stream; costs some CPU)")
    a = ap.parse_args()
    if a.selftest:
        a.quick, a.servers, a.no_docs = True, "starling,relay", True
    runs = a.runs or (1 if a.quick else 3)
    z = sizes(a.quick)
    if a.selftest:
        z.update(idle_small=50, idle_big=100, idle_max=200, login=100, churn=100,
                 pairs_small=5, pairs_big=10, duration=1, users=200)
    duration = a.duration or z["duration"]
    scenarios = scenario_table(z)
    if a.scenarios != "all":
        want = a.scenarios.split(",")
        unknown = set(want) - {s[0] for s in scenarios}
        if unknown:
            ap.error(f"unknown scenarios {sorted(unknown)}; known: "
                     f"{[s[0] for s in scenarios]}")
        scenarios = [s for s in scenarios if s[0] in want]
    servers = a.servers.split(",")
    raise_nofile()
    ensure_peers(servers)
    loadgen, relay_bin = build_tools(a.build)
    work = tempfile.mkdtemp(prefix="starling-bench-")
    os.chmod(work, 0o755)
    cert, key = make_cert(work)
    for p in (cert, key, os.path.join(work, "combined.pem")):
        os.chmod(p, 0o644)
    n_users = accounts_needed(scenarios, z)
    users = [f"{PREFIX}{i}" for i in range(n_users)]
    runner = Runner(loadgen, n_users, work)
    facts = machine_facts()
    log(f"bench: {facts}")
    table, failures = {}, []
    started = time.strftime("%Y-%m-%d %H:%M")
    try:
        for sname in servers:
            if sname == "relay":
                srv = Relay(work, relay_bin)
            elif sname == "starling":
                srv = Starling(work, cert, key, users, os.path.join(ROOT, a.build, "starling"),
                               a.log_level)
            elif sname == "prosody":
                srv = Prosody(work, cert, key, users)
            elif sname == "ejabberd":
                srv = Ejabberd(work, cert, key, users)
            else:
                ap.error(f"unknown server {sname}")
            if not srv.available():
                log(f"bench: {sname} not available: skipped")
                continue
            try:
                srv.prepare()
            except (BenchError, subprocess.SubprocessError, OSError) as e:
                log(f"bench: {sname}: set-up FAILED: {e}")
                failures.append(f"{sname}: set-up: {e}")
                for s in scenarios:
                    table[(s[0], sname)] = "set-up failed"
                srv.finish()
                continue
            for sid, label, kind, p in scenarios:
                if sname == "relay" and kind != "message":
                    continue
                if sid in srv.unsupported:
                    table[(sid, sname)] = srv.unsupported[sid]
                    continue
                got = []
                for i in range(runs):
                    log(f"bench: {sname}: {sid} run {i + 1}/{runs}")
                    try:
                        srv.start(p.get("server_cpus", SERVER_CPU))
                        if kind == "idle":
                            got.append(runner.idle(srv, p))
                        elif kind == "login":
                            got.append(runner.login(srv, p))
                        elif kind == "message":
                            got.append(runner.message(srv, p, raw=sname == "relay",
                                                      duration=duration))
                        else:
                            got.append(runner.churn(srv, p, duration))
                    except (BenchError, subprocess.SubprocessError, OSError) as e:
                        log(f"bench: {sname}: {sid}: FAILED: {e}")
                        failures.append(f"{sname} {sid}: {e}")
                        break
                    finally:
                        srv.stop()
                if len(got) == runs:
                    table[(sid, sname)] = median_results(got)
                    log(f"bench: {sname}: {sid}: {table[(sid, sname)]}")
                else:
                    table[(sid, sname)] = "ERROR"
            srv.finish()
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"bench: work directory kept: {work}")
    present = [s for s in servers if any(k[1] == s for k in table)]
    md = render(table, present, scenarios, None)
    cmd = "bench/run.py " + " ".join(sys.argv[1:])
    print()
    print(md)
    if not a.selftest:
        os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
        with open(os.path.join(ROOT, "bench", "results", "latest.md"), "w") as f:
            f.write(f"# make bench results\n\n{started}, `{cmd.strip()}`, {runs} run(s) per "
                    f"figure, medians.\n\nMachine: {facts}\n\n{md}\n")
            if failures:
                f.write("\nFailures:\n\n" + "\n".join(f"- {x}" for x in failures) + "\n")
        if not a.no_docs:
            update_docs(md, cmd.strip(), facts, started, a.quick)
    if failures:
        log("bench: FAILURES:\n  " + "\n  ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
