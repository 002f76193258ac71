"""The command line: account management (`starling user add|passwd|del|list`)
against a running and a stopped server, configuration checking (`starling
check`), and start-up failure on a bad configuration ("FILE:LINE: message").
Logins use SASL (RFC 6120 §6) to observe the effect of each command."""
import signal
import subprocess

import pytest

import xmpp_raw
from server import SANITIZER_MARKERS, USERS, starling_bin
from xmpp_raw import NS_SASL, q


def run_bin(*args, timeout=30):
    """Runs the binary directly; a sanitizer report fails the test."""
    cp = subprocess.run([starling_bin()] + list(args), capture_output=True, text=True,
                        timeout=timeout)
    for marker in SANITIZER_MARKERS:
        assert marker not in cp.stderr, cp.stderr
    return cp


def can_login(server, user, password, domain="localhost"):
    c = xmpp_raw.connect(server, domain=domain)
    try:
        c.open_stream()
        c.starttls()
        c.open_stream()
        ok_plain = c.auth_plain(user, password).tag == q(NS_SASL, "success")
        d = xmpp_raw.connect(server, domain=domain)
        try:
            d.open_stream()
            d.starttls()
            d.open_stream()
            resp, _ = d.auth_scram("SCRAM-SHA-256", user, password)
            ok_scram = resp.tag == q(NS_SASL, "success")
        finally:
            d.close()
        assert ok_plain == ok_scram, "PLAIN and SCRAM disagree"
        return ok_plain
    finally:
        c.close()


def user_cmd(server, *args, password=None):
    stdin = None if password is None else password + "\n"
    return server.cli("user", *args, stdin=stdin)


def test_user_list(server):
    """`user list [DOMAIN]` prints one JID per line, sorted."""
    cp = user_cmd(server, "list")
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.split()
    # sorted as strings, or by (domain, localpart): both are "sorted"
    by_domain = sorted(lines, key=lambda j: (j.split("@")[1], j.split("@")[0]))
    assert lines in (sorted(lines), by_domain), lines
    assert set(USERS) <= set(lines)
    cp = user_cmd(server, "list", "example.test")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.split() == ["eve@example.test"]


def test_add_while_running_then_login(server):
    """A user added while the server runs can log in immediately."""
    pw = "pw-newbie-J4kd9 with spaces \u00fc"
    server.passwords.add(pw)
    cp = user_cmd(server, "add", "newbie@localhost", "--password-stdin", password=pw)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert can_login(server, "newbie", pw)
    assert "newbie@localhost" in user_cmd(server, "list", "localhost").stdout.split()


def test_add_existing_fails(server):
    """Adding an account that exists fails with status 1 and keeps the old password."""
    cp = user_cmd(server, "add", "alice@localhost", "--password-stdin", password="other-pw-x1")
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert can_login(server, "alice", USERS["alice@localhost"])


def test_add_unserved_domain_fails(server):
    """A JID whose domain is not a configured host is refused (status 1)."""
    cp = user_cmd(server, "add", "x@not-served.example", "--password-stdin", password="pw-xx-1")
    assert cp.returncode == 1, cp.stdout + cp.stderr


def test_add_invalid_jid_fails(server):
    """An invalid JID (RFC 7622) is refused and nothing is created."""
    cp = user_cmd(server, "add", "a@b@localhost", "--password-stdin", password="pw-xx-2")
    assert cp.returncode in (1, 2), cp.stdout + cp.stderr


def test_passwd_while_running(server):
    """After `user passwd` the old password fails and the new one works."""
    old, new = "pw-changer-old-7Hq", "pw-changer-new-3Lz"
    server.passwords.update({old, new})
    assert user_cmd(server, "add", "changer@localhost", "--password-stdin",
                    password=old).returncode == 0
    assert can_login(server, "changer", old)
    cp = user_cmd(server, "passwd", "changer@localhost", "--password-stdin", password=new)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert not can_login(server, "changer", old)
    assert can_login(server, "changer", new)


def test_passwd_unknown_user_fails(server):
    """`user passwd` for an account that does not exist fails with status 1."""
    cp = user_cmd(server, "passwd", "ghost@localhost", "--password-stdin", password="pw-ghost-1")
    assert cp.returncode == 1, cp.stdout + cp.stderr


def test_del_while_running(server):
    """After `user del` the account can no longer log in and is not listed."""
    pw = "pw-goner-5Tg"
    server.passwords.add(pw)
    assert user_cmd(server, "add", "goner@localhost", "--password-stdin", password=pw).returncode == 0
    assert can_login(server, "goner", pw)
    cp = user_cmd(server, "del", "goner@localhost")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert not can_login(server, "goner", pw)
    assert "goner@localhost" not in user_cmd(server, "list").stdout.split()
    assert user_cmd(server, "del", "goner@localhost").returncode == 1


def test_usage_errors(server):
    """Usage errors exit with status 2."""
    assert server.cli("user").returncode == 2
    assert server.cli("user", "add").returncode == 2
    assert server.cli("frobnicate").returncode == 2


def test_while_stopped(server):
    """Account commands work while the server is stopped; the changes are seen
    after the next start. SIGTERM exits 0."""
    rc = server.stop(signal.SIGTERM)
    assert rc == 0, server.log_tail()
    pw1, pw2 = "pw-offline-1Qa", "pw-offline-2Ws"
    server.passwords.update({pw1, pw2})
    assert user_cmd(server, "add", "offline@localhost", "--password-stdin", password=pw1).returncode == 0
    assert user_cmd(server, "passwd", "offline@localhost", "--password-stdin", password=pw2).returncode == 0
    assert user_cmd(server, "add", "temp@localhost", "--password-stdin", password=pw1).returncode == 0
    assert user_cmd(server, "del", "temp@localhost").returncode == 0
    lines = user_cmd(server, "list").stdout.split()
    assert "offline@localhost" in lines and "temp@localhost" not in lines
    server.start()
    assert can_login(server, "offline", pw2)
    assert not can_login(server, "offline", pw1)
    assert not can_login(server, "temp", pw1)


# -- configuration ------------------------------------------------------------

def test_check_good_config(server):
    """`starling check --config FILE` exits 0 for a valid file."""
    cp = server.cli("check")
    assert cp.returncode == 0, cp.stdout + cp.stderr


def _bad_config(tmp_path, server, line_text):
    """Writes the server's config with line_text appended; returns (path, line no)."""
    text = open(server.config_path, encoding="utf-8").read().rstrip("\n") + "\n"
    path = str(tmp_path / "bad.yaml")
    lineno = text.count("\n") + 1
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + line_text + "\n")
    return path, lineno


@pytest.mark.parametrize("line", ["bogus_option: 1", "log_level: loudest"])
def test_check_bad_config(server, tmp_path, line):
    """An unknown key or a bad value is reported as FILE:LINE: message, status ≠ 0."""
    path, lineno = _bad_config(tmp_path, server, line)
    cp = run_bin("check", "--config", path)
    assert cp.returncode != 0
    assert f"{path}:{lineno}:" in cp.stdout + cp.stderr, cp.stdout + cp.stderr


def test_check_bad_nested_value(server, tmp_path):
    """A bad value in a nested section (c2s.sasl_attempts) names its own line."""
    text = open(server.config_path, encoding="utf-8").read()
    lines = text.splitlines()
    idx = next(i for i, l in enumerate(lines) if l.strip().startswith("sasl_attempts:"))
    lines[idx] = lines[idx].split(":")[0] + ": many"
    path = str(tmp_path / "bad_nested.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    cp = run_bin("check", "--config", path)
    assert cp.returncode != 0
    assert f"{path}:{idx + 1}:" in cp.stdout + cp.stderr, cp.stdout + cp.stderr


def test_run_bad_config_exits(server, tmp_path):
    """`starling run` with an invalid config exits non-zero at once, with FILE:LINE."""
    path, lineno = _bad_config(tmp_path, server, "no_such_section: {}")
    cp = run_bin("run", "--config", path, timeout=15)
    assert cp.returncode != 0
    assert f"{path}:{lineno}:" in cp.stderr, cp.stderr
