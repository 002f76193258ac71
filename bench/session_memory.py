#!/usr/bin/python3
"""Measures the server memory held per idle authenticated c2s session.

Starts build/starling on loopback with a temporary data directory, logs in
WARM sessions, samples the server's RSS (/proc/PID/status VmRSS), logs in N
more sessions (SCRAM-SHA-1, resource bound, initial presence sent), waits for
the server to settle, samples again, and prints (RSS_after - RSS_before) / N.
Run once without TLS (require_encryption: false) and once with STARTTLS.

usage: bench/session_memory.py [--bin build/starling] [-n 2000] [--tls]
"""
import argparse
import base64
import hashlib
import hmac
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HEADER = ("<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
          "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = ""

    def send(self, s):
        self.sock.sendall(s.encode())

    def until(self, pattern):
        rx = re.compile(pattern, re.S)
        while True:
            m = rx.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return m
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError("server closed: " + self.buf[-300:])
            self.buf += data.decode("utf-8", "replace")


class Login:
    """SCRAM-SHA-1 with the salted password cached after the first login, as mobile clients do."""

    cache = {}

    def __init__(self, user, password):
        self.user, self.password = user, password

    def run(self, c, resource):
        cnonce = base64.b64encode(os.urandom(12)).decode()
        first_bare = f"n={self.user},r={cnonce}"
        c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>"
               + base64.b64encode(("n,," + first_bare).encode()).decode() + "</auth>")
        m = c.until(r"<challenge[^>]*>([^<]*)</challenge>")
        server_first = base64.b64decode(m.group(1)).decode()
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        salt, iters = base64.b64decode(attrs["s"]), int(attrs["i"])
        key = (salt, iters)
        if key not in self.cache:
            self.cache[key] = hashlib.pbkdf2_hmac("sha1", self.password.encode(), salt, iters)
        salted = self.cache[key]
        client_key = hmac.new(salted, b"Client Key", "sha1").digest()
        stored = hashlib.sha1(client_key).digest()
        final_wo_proof = f"c=biws,r={attrs['r']}"
        auth_msg = f"{first_bare},{server_first},{final_wo_proof}".encode()
        sig = hmac.new(stored, auth_msg, "sha1").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        final = final_wo_proof + ",p=" + base64.b64encode(proof).decode()
        c.send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
               + base64.b64encode(final.encode()).decode() + "</response>")
        c.until(r"<success")
        c.send(HEADER)
        c.until(r"</stream:features>")
        c.send(f"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
               f"<resource>{resource}</resource></bind></iq>")
        c.until(r"</iq>")
        c.send("<presence/>")


def open_session(port, login, resource, tls_ctx):
    c = Conn(port)
    c.send(HEADER)
    c.until(r"</stream:features>")
    if tls_ctx:
        c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        c.until(r"<proceed[^>]*/>")
        c.sock = tls_ctx.wrap_socket(c.sock, server_hostname="localhost")
        c.buf = ""
        c.send(HEADER)
        c.until(r"</stream:features>")
    login.run(c, resource)
    return c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/starling")
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--warm", type=int, default=100)
    ap.add_argument("--tls", action="store_true")
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="starling-mem-")
    port = free_port()
    cfg = os.path.join(tmp, "starling.yaml")
    with open(cfg, "w") as f:
        f.write(f"""log_level: warn
data_dir: {tmp}/data
hosts:
  localhost: {{}}
listen:
  interfaces: ["127.0.0.1"]
  c2s_port: {port}
  c2s_tls_port: 0
c2s:
  require_encryption: {"true" if a.tls else "false"}
  max_resources: 1000
  connections_per_ip: 0
""")
    users = (a.n + a.warm) // 1000 + 1
    for u in range(users):
        subprocess.run([a.bin, "user", "add", f"u{u}@localhost", "--password-stdin",
                        "--config", cfg], input=b"secret\n", check=True,
                       stdout=subprocess.DEVNULL)
    srv = subprocess.Popen([a.bin, "run", "--config", cfg])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
        tls_ctx = None
        if a.tls:
            tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            tls_ctx.check_hostname = False
            tls_ctx.verify_mode = ssl.CERT_NONE
        logins = [Login(f"u{u}", "secret") for u in range(users)]
        conns = []
        for i in range(a.warm):
            conns.append(open_session(port, logins[i // 1000], f"r{i}", tls_ctx))
        time.sleep(1)
        before = rss_kib(srv.pid)
        t0 = time.time()
        for i in range(a.warm, a.warm + a.n):
            conns.append(open_session(port, logins[i // 1000], f"r{i}", tls_ctx))
        elapsed = time.time() - t0
        time.sleep(2)
        after = rss_kib(srv.pid)
        per = (after - before) / a.n
        kind = "STARTTLS" if a.tls else "plain TCP"
        print(f"{kind}: {a.n} idle sessions: RSS {before} KiB -> {after} KiB; "
              f"{per:.2f} KiB per session; process RSS {after / 1024:.1f} MiB "
              f"(logins: {a.n / elapsed:.0f}/s from one sequential Python client)")
        for c in conns:
            c.sock.close()
    finally:
        srv.send_signal(signal.SIGTERM)
        srv.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
