"""Behind a reverse proxy: Debian's nginx (started here as a foreground,
single-process server with its own prefix and config, the docs/OPERATIONS.md
example) forwards BOSH, WebSocket and host-meta to Starling's plain HTTP
port. The client address comes from X-Forwarded-For only because nginx is a
trusted proxy, walked from the right so a forged entry does not count
(RFC 7239 §7.4 for the same rule with Forwarded); proxy_is_secure makes the
proxied sessions secure, so SASL PLAIN (offered only over TLS, RFC 4616 §6)
is offered."""
import os
import shutil
import socket
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

import web_util as W
from server import free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

CONF = """daemon off;
master_process off;
worker_processes 1;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {p}/body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{port};
        location /http-bind {{
            proxy_pass http://127.0.0.1:{up};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_read_timeout 120s;
        }}
        location /xmpp-websocket {{
            proxy_pass http://127.0.0.1:{up};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout 900s;
        }}
        location /.well-known/host-meta {{
            proxy_pass http://127.0.0.1:{up};
            proxy_set_header Host $host;
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
def web(make_server):
    return W.start_web(make_server, {
        "http": {"trusted_proxies": ["127.0.0.1"], "proxy_is_secure": True},
    })


@pytest.fixture(scope="module")
def proxy(web, tmp_path_factory):
    if not os.path.exists(NGINX):
        pytest.skip("nginx not installed (tools/deps.sh test)")
    prefix = str(tmp_path_factory.mktemp("nginx"))
    port = free_port()
    with open(os.path.join(prefix, "nginx.conf"), "w") as f:
        f.write(CONF.format(p=prefix, port=port, up=W.http_port(web)))
    proc = subprocess.Popen([NGINX, "-p", prefix, "-c", os.path.join(prefix, "nginx.conf"),
                             "-e", os.path.join(prefix, "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, \
                proc.stderr.read().decode()
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


def request_from(port, data, source="127.0.0.3"):
    s = socket.socket()
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    s.sendall(data)
    r = W.read_response(s)
    s.close()
    return r


def test_bosh_through_nginx_is_secure_and_sees_client(web, proxy):
    """A BOSH session through the trusted proxy: secure (PLAIN offered), and the client
    address is the proxy's client even when the client forges X-Forwarded-For."""
    body = (b"<body xmlns='http://jabber.org/protocol/httpbind' rid='100' to='localhost' "
            b"wait='5' hold='1' ver='1.11' xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'/>")
    st, h, resp = request_from(proxy, b"POST /http-bind HTTP/1.1\r\nHost: chat.example\r\n"
                               b"X-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n"
                               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert st == 200, resp
    r = ET.fromstring(resp)
    assert r.get("secure") == "true"
    mechs = [m.text for m in r.iter(W.q(W.NS_SASL, "mechanism"))]
    assert "PLAIN" in mechs
    sid = r.get("sid")
    log = web.log_text()
    assert f"BOSH session {sid} from 127.0.0.3" in log


def test_websocket_through_nginx(web, proxy):
    """WebSocket upgrade through nginx; the session logs in and is secure."""
    c = W.WSClient(proxy)
    jid = c.login("alice", web.users["alice@localhost"], resource="proxied")
    assert jid == "alice@localhost/proxied"
    c.close()


def test_hostmeta_through_nginx(web, proxy):
    """host-meta built from the forwarded Host; https because TLS ends at the proxy."""
    st, _, body = W.get(proxy, "/.well-known/host-meta", {"Host": "chat.example"})
    assert st == 200
    assert b"https://chat.example/http-bind" in body


def test_untrusted_peer_headers_ignored(web):
    """Directly (not via the proxy, from 127.0.0.3): X-Forwarded-For is ignored and the
    session is not secure."""
    body = (b"<body xmlns='http://jabber.org/protocol/httpbind' rid='100' to='localhost' "
            b"wait='5' hold='1' ver='1.11'/>")
    st, _, resp = request_from(W.http_port(web),
                               b"POST /http-bind HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: "
                               b"6.6.6.6\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n"
                               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    r = ET.fromstring(resp)
    assert r.get("secure") == "false"
    assert f"BOSH session {r.get('sid')} from 127.0.0.3" in web.log_text()
