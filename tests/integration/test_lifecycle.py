"""Process life cycle: SIGHUP reloads configuration and certificates without
dropping sessions; SIGTERM/SIGINT close every stream with <system-shutdown/>
(RFC 6120 §4.9.3.21) and exit 0 within 5 s."""
import os
import signal
import subprocess
import time

import xmpp_raw


def wait_log(server, text, timeout=5.0, since=0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in server.log_text()[since:]:
            return True
        time.sleep(0.05)
    raise AssertionError(f"log line containing {text!r} not seen:\n{server.log_tail()}")


def make_cert(certs_dir, host):
    crt, key = os.path.join(certs_dir, f"{host}.crt"), os.path.join(certs_dir, f"{host}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key + ".new",
                    "-out", crt + ".new", "-days", "2", "-subj", f"/CN={host}",
                    "-addext", f"subjectAltName=DNS:{host}"],
                   check=True, capture_output=True)
    os.replace(key + ".new", key)
    os.replace(crt + ".new", crt)
    with open(crt) as f:
        import ssl
        return ssl.PEM_cert_to_DER_cert(f.read())


def test_sighup_reloads_certificates(server, clients):
    """SIGHUP re-reads the configuration and certificates ("reloaded" logged):
    an authenticated session survives and new connections get the new cert."""
    alice = clients.login(server, "alice@localhost", resource="hup")
    before = clients.tls_stream(server).sock.getpeercert(binary_form=True)
    new_der = make_cert(os.path.join(server.data_dir, "certs"), "localhost")
    assert new_der != before
    mark = len(server.log_text())
    server.send_signal(signal.SIGHUP)
    wait_log(server, "reloaded", since=mark)
    alice.assert_alive()
    after = clients.tls_stream(server).sock.getpeercert(binary_form=True)
    assert after == new_der, "new connections still get the old certificate"
    bob = clients.login(server, "bob@localhost")
    alice.send(f"<message to='{bob.jid}' id='hup-1'><body>still here</body></message>")
    assert bob.messages(pred=lambda e: e.get("id") == "hup-1").get("from") == alice.jid


def test_sighup_with_broken_config_keeps_running(server, clients):
    """A reload with an invalid config is refused; the server keeps running with
    the previous configuration and existing sessions stay up."""
    alice = clients.login(server, "alice@localhost", resource="hup2")
    original = open(server.config_path, encoding="utf-8").read()
    try:
        server.write_config(original + "this_key_does_not_exist: 1\n")
        mark = len(server.log_text())
        server.send_signal(signal.SIGHUP)
        wait_log(server, server.config_path, since=mark)
        assert server.proc.poll() is None, "server exited on a bad reload"
        alice.assert_alive()
        clients.login(server, "bob@localhost").assert_alive()
    finally:
        server.write_config(original)


def _shutdown(make_server, sig):
    srv = make_server(name=f"shutdown_{sig.name.lower()}")
    authed = xmpp_raw.login(srv, "alice", srv.users["alice@localhost"], resource="sd")
    fresh = xmpp_raw.connect(srv)
    fresh.open_stream()
    start = time.monotonic()
    srv.send_signal(sig)
    try:
        for c in (authed, fresh):
            assert c.expect_stream_error(timeout=5) == "system-shutdown"
        srv.proc.wait(timeout=max(0.1, 5 - (time.monotonic() - start)))
    finally:
        authed.close()
        fresh.close()
    assert srv.proc.returncode == 0, srv.log_tail()
    srv.check_log_clean()


def test_sigterm_shutdown(make_server):
    """RFC 6120 §4.9.3.21: on SIGTERM every client stream (bound or still
    negotiating) gets <system-shutdown/> then </stream:stream>; exit 0 in 5 s."""
    _shutdown(make_server, signal.SIGTERM)


def test_sigint_shutdown(make_server):
    """SIGINT behaves like SIGTERM (clean shutdown, exit 0)."""
    _shutdown(make_server, signal.SIGINT)
