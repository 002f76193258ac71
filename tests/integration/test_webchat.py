"""The chat page (modules.webchat, like ejabberd's mod_conversejs): `make webclient`
installs converse.js from npm into webclient/ (gitignored); the server serves an HTML page
at /chat that loads converse.js from its own /chat/dist/ route (no CDN) and configures it
with the host's BOSH (XEP-0206) and WebSocket (RFC 7395) endpoints, as host-meta
(XEP-0156) advertises them. Debian's chromium (playwright-core) logs in through
converse.js's login form and shows a message that a slixmpp client on TCP sends
(RFC 6121 §5). Without the assets the route answers 404 and the start log says how to
install them."""
import asyncio
import json
import os
import shutil
import subprocess
import tempfile

import pytest

import web_util as W

slixmpp = pytest.importorskip("slixmpp")
import slix  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BROWSER_DIR = os.path.join(HERE, "browser")
DIST = os.path.join(ROOT, "webclient", "node_modules", "converse.js", "dist")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def ensure_converse():
    if os.path.exists(os.path.join(DIST, "converse.min.js")):
        return
    if not shutil.which("npm") or not shutil.which("make"):
        pytest.skip("npm (or make) is not installed: `make webclient` cannot fetch converse.js")
    cp = subprocess.run(["make", "-C", ROOT, "webclient"], capture_output=True, text=True,
                        timeout=600)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert os.path.exists(os.path.join(DIST, "converse.min.js"))


def ensure_browser():
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node/npm not installed")
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium not installed (tools/deps.sh test)")
    if os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        return
    cp = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BROWSER_DIR,
                        capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stdout + cp.stderr


@pytest.fixture(scope="module")
def chat(make_server):
    ensure_converse()
    return W.start_web(make_server, {
        "c2s": {"require_encryption": False},
        "modules": {"webchat": {"assets_dir": DIST, "domain": "localhost"}},
    })


def test_page_preconfigured_for_host(chat):
    """The page loads converse.js and its CSS from the server's own route and passes the
    BOSH and WebSocket URLs of the host it was requested from, and the domain."""
    port = W.http_port(chat)
    st, hdrs, _ = W.get(port, "/chat")
    assert st == 301 and hdrs["location"] == "/chat/"
    st, hdrs, body = W.get(port, "/chat/")
    assert st == 200 and hdrs["content-type"].startswith("text/html")
    page = body.decode()
    assert 'import converse from "/chat/dist/converse.min.js"' in page
    assert "href='/chat/dist/converse.min.css'" in page
    assert '"bosh_service_url": "http://localhost/http-bind"' in page
    assert '"websocket_url": "ws://localhost/xmpp-websocket"' in page
    assert '"default_domain": "localhost"' in page
    assert "https://" not in page            # nothing from elsewhere
    st, hdrs, body = W.get(port, "/chat/dist/converse.min.js")
    assert st == 200 and hdrs["content-type"].startswith("text/javascript")
    assert len(body) > 100000
    assert W.get(port, "/chat/dist/converse.min.js.map")[0] == 404   # not served
    assert W.get(port, "/chat/dist/../../etc/passwd")[0] == 404
    assert W.get(port, "/chat/dist/nothing.js")[0] == 404
    assert W.get(port, "/chat/curve25519_compiled.wasm")[0] == 200   # relative fetches
    assert W.get(port, "/chat/", method="POST")[0] == 405


def test_not_installed_answers_404(make_server):
    """Without the assets the module still loads: a clear line at start, 404 on the route."""
    with tempfile.TemporaryDirectory() as empty:
        srv = W.start_web(make_server, {
            "modules": {"webchat": {"assets_dir": empty, "path": "/webchat"}},
        })
        st, _, body = W.get(W.http_port(srv), "/webchat")
        assert st == 404 and b"make webclient" in body
        assert W.get(W.http_port(srv), "/webchat/")[0] == 404
        assert "make webclient" in srv.log_tail()


class Sender(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password, plugin_config=slix.plugin_config())
        slix.configure(self)
        self.add_event_handler("session_start", lambda _: self.send_presence())


async def scenario(srv, text, shot):
    bob = Sender("bob@localhost/tcp", srv.users["bob@localhost"])
    started = asyncio.ensure_future(bob.wait_until("session_start", 10))
    bob.connect(("127.0.0.1", srv.port))
    await started
    url = f"http://127.0.0.1:{W.http_port(srv)}/chat/"
    proc = await asyncio.create_subprocess_exec(
        "node", os.path.join(BROWSER_DIR, "webchat.js"), url, "alice@localhost",
        srv.users["alice@localhost"], text, shot, cwd=BROWSER_DIR,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ, CHROMIUM=CHROMIUM))
    comm = asyncio.ensure_future(proc.communicate())
    # Until the browser sees it: sent to the bare JID, it is stored offline while alice is
    # not online yet and delivered to her available resource once she is.
    while not comm.done():
        bob.send_message(mto="alice@localhost", mbody=text, mtype="chat")
        await asyncio.wait([comm], timeout=2)
    out, err = comm.result()
    try:
        await asyncio.wait_for(bob.disconnect(wait=1), 5)
    except Exception:  # noqa: BLE001 - a slow disconnect does not matter here
        bob.abort()
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
    assert lines, "no result from the browser:\n" + out.decode() + err.decode()[-20000:]
    res = json.loads(lines[-1])
    assert res["ok"], res["error"] + "\n" + err.decode()[-20000:]
    return res["result"]


def test_converse_logs_in_and_receives(chat, tmp_path):
    """converse.js, served and configured by Starling, logs in through its own form (over
    WebSocket, which it prefers when both endpoints are given), shows itself online, and
    its connection receives bob's message (seen through converse's API,
    api.listen.stanza); the browser fetched nothing from any other origin."""
    ensure_browser()
    text = "hello converse from slixmpp"
    result = slix.run_async(scenario(chat, text, str(tmp_path / "webchat.png")), timeout=120)
    cfg = result["config"]
    assert cfg["websocket_url"].endswith("/xmpp-websocket")
    assert cfg["bosh_service_url"].endswith("/http-bind")
    assert result["foreign"] == [], result["foreign"]
    assert result["online"] >= 1          # converse's own UI shows the logged-in state
