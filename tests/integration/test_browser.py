"""A real browser: Debian's chromium, driven by playwright-core (npm), loads
a test page using strophe.js (npm) from another origin, logs in over BOSH
(XEP-0206, CORS preflights included) and, separately, over WebSocket
(RFC 7395, Origin allowlist), sends directed presence and a chat message to a
slixmpp client connected over TCP, and receives its answer (RFC 6121 §4.6,
§5). The npm packages install into tests/integration/browser/node_modules
(npm ci) on first use."""
import asyncio
import functools
import http.server
import json
import logging
import os
import shutil
import subprocess
import threading

import pytest

import web_util as W

slixmpp = pytest.importorskip("slixmpp")
import slix  # noqa: E402

logging.getLogger("slixmpp").setLevel(logging.CRITICAL)

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER_DIR = os.path.join(HERE, "browser")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def ensure_node_modules():
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node/npm not installed")
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium not installed (tools/deps.sh test)")
    mods = os.path.join(BROWSER_DIR, "node_modules")
    if os.path.isdir(os.path.join(mods, "playwright-core")) and \
            os.path.isdir(os.path.join(mods, "strophe.js")):
        return
    cmd = ["npm", "ci"] if os.path.exists(os.path.join(BROWSER_DIR, "package-lock.json")) \
        else ["npm", "install"]
    cp = subprocess.run(cmd + ["--no-audit", "--no-fund"], cwd=BROWSER_DIR,
                        capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stdout + cp.stderr


class PageHandler(http.server.SimpleHTTPRequestHandler):
    def translate_path(self, path):
        if path.startswith("/strophe.umd.min.js"):
            return os.path.join(BROWSER_DIR, "node_modules", "strophe.js", "dist",
                                "strophe.umd.min.js")
        return os.path.join(BROWSER_DIR, "test.html")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def page_server():
    ensure_node_modules()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PageHandler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def web(make_server, page_server):
    return W.start_web(make_server, {
        "c2s": {"require_encryption": False},
        "http": {"cors_origins": [page_server]},
        "websocket": {"origins": [page_server]},
    })


class Peer(slixmpp.ClientXMPP):
    """bob on TCP: answers every chat message, records presences."""

    def __init__(self, jid, password):
        super().__init__(jid, password, plugin_config=slix.plugin_config())
        slix.configure(self)
        self.presences = []
        self.got = []
        self.add_event_handler("session_start", lambda _: self.send_presence())
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("presence_available", lambda p: self.presences.append(
            str(p["from"])))

    def on_message(self, msg):
        if msg["type"] == "chat":
            self.got.append((str(msg["from"]), msg["body"]))
            self.send_message(mto=msg["from"], mbody="hi browser: " + msg["body"],
                              mtype="chat")


async def scenario(web, page_url, service, text):
    bob = Peer("bob@localhost/tcp", web.users["bob@localhost"])
    started = asyncio.ensure_future(bob.wait_until("session_start", 10))
    bob.connect(("127.0.0.1", web.port))
    await started
    proc = await asyncio.create_subprocess_exec(
        "node", os.path.join(BROWSER_DIR, "run.js"), page_url + "/test.html", service,
        "alice@localhost", web.users["alice@localhost"], "bob@localhost/tcp", text,
        cwd=BROWSER_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ, CHROMIUM=CHROMIUM))
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    try:
        await asyncio.wait_for(bob.disconnect(wait=1), 5)
    except Exception:  # noqa: BLE001 - a slow disconnect does not matter here
        bob.abort()
    lines = [l for l in out.decode().splitlines() if l.startswith("{")]
    assert lines, "no result from the browser:\n" + out.decode() + err.decode()[-3000:]
    res = json.loads(lines[-1])
    assert res["ok"], res["error"] + "\n" + err.decode()[-3000:]
    return bob, res["result"]


@pytest.mark.parametrize("kind", ["bosh", "websocket"])
def test_browser_chat(web, page_server, kind):
    port = W.http_port(web)
    service = (f"http://127.0.0.1:{port}/http-bind" if kind == "bosh"
               else f"ws://127.0.0.1:{port}/xmpp-websocket")
    text = f"hello over {kind}"
    bob, result = slix.run_async(scenario(web, page_server, service, text), timeout=90)
    assert result["body"] == "hi browser: " + text
    assert result["from"] == "bob@localhost/tcp"
    assert result["jid"].startswith("alice@localhost/")
    assert (result["jid"], text) in bob.got
    assert result["jid"] in bob.presences
