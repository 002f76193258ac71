"""Process management for the Starling binary under test.

A `StarlingServer` writes a YAML configuration into its own temporary
directory, runs `starling run --config FILE` in the foreground with stderr
captured to a file, waits for the client port to accept connections, runs
`starling user ...` commands against the same configuration, and on `finish()`
stops the process with SIGTERM and asserts the exit contract: status 0 within
5 s, no sanitizer report, and no test password in the log.
"""
import base64
import copy
import os
import random
import signal
import socket
import subprocess
import time

# The accounts every test server starts with (password check: never logged).
USERS = {
    "alice@localhost": "pw-alice-Kq7vT2",
    "bob@localhost": "pw-bob-Zx3mP8",
    "carol@localhost": "pw-carol-Hd9sL4",
    "eve@example.test": "pw-eve-Wr5tN6",
}

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")


def starling_bin():
    """Path of the binary under test (env STARLING_BIN, default build/starling)."""
    path = os.environ.get("STARLING_BIN")
    if not path:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        path = os.path.join(root, "build", "starling")
    return os.path.abspath(path)


def strophe_client_bin():
    return os.path.join(os.path.dirname(starling_bin()), "tests", "integration", "strophe_client")


def asan_enabled():
    return os.environ.get("STARLING_ASAN") == "1"


def free_port():
    """A TCP port on 127.0.0.1 that nothing uses right now, chosen below the
    kernel's ephemeral range (32768-60999) so that our own client sockets
    cannot take it before the server binds it."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if s == "" or any(c in s for c in ":#{}[],&*!|>'\"%@`") or s.strip() != s:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return s


def to_yaml(obj, indent=0):
    """Block-style YAML for nested dicts/lists/scalars (enough for our configs)."""
    pad = "  " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict):
                if v:
                    lines.append(f"{pad}{k}:")
                    lines.append(to_yaml(v, indent + 1))
                else:
                    lines.append(f"{pad}{k}: {{}}")
            elif isinstance(v, list):
                items = ", ".join(_yaml_scalar(x) for x in v)
                lines.append(f"{pad}{k}: [{items}]")
            else:
                lines.append(f"{pad}{k}: {_yaml_scalar(v)}")
    else:
        raise TypeError("top level must be a dict")
    return "\n".join(lines)


def deep_merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def default_config(workdir, c2s_port, c2s_tls_port):
    return {
        "log_level": "debug",
        "data_dir": os.path.join(workdir, "data"),
        "hosts": {"localhost": {}, "example.test": {}},
        "listen": {
            "interfaces": ["127.0.0.1"],
            "c2s_port": c2s_port,
            "c2s_tls_port": c2s_tls_port,
        },
        "c2s": {
            "require_encryption": True,
            "negotiation_timeout": "60s",
            "sasl_attempts": 3,
            "connections_per_ip": 32,
            "max_resources": 10,
            "allow_plain": True,
        },
        "limits": {
            "stanza_size": "256KiB",
            "stanza_size_preauth": "8KiB",
            "max_depth": 32,
            "max_attributes": 64,
            "output_queue": "2MiB",
        },
        # the HTTP ports are off unless a test asks for them (web_util.web_config)
        "http": {"port": 0, "tls_port": 0},
        # No federation listeners: several test servers run side by side (s2s tests set
        # their own ports inside network namespaces).
        "s2s": {"port": 0, "tls_port": 0},
        "modules": {
            "ping": {"interval": "300s", "timeout": "60s"},
            "version": {},
            "disco": {},
        },
    }


class StarlingServer:
    """One Starling process with its own config, data dir and log file."""

    def __init__(self, workdir, overrides=None, name="starling"):
        self.workdir = str(workdir)
        self.name = name
        os.makedirs(self.workdir, exist_ok=True)
        self.port = free_port()
        self.tls_port = free_port()
        while self.tls_port == self.port:
            self.tls_port = free_port()
        self.config = deep_merge(default_config(self.workdir, self.port, self.tls_port),
                                 overrides or {})
        self.config_path = os.path.join(self.workdir, "starling.yaml")
        self.log_path = os.path.join(self.workdir, "starling.log")
        self.proc = None
        self.passwords = set()   # every password used with this server (log check)
        self.secrets = set()     # other strings that must not appear in the log
        self.finished = False
        self.cli_errors = []     # sanitizer reports from CLI runs
        self.write_config()

    # -- configuration -------------------------------------------------
    def write_config(self, text=None):
        if text is None:
            text = to_yaml(self.config) + "\n"
        with open(self.config_path, "w", encoding="utf-8") as f:
            f.write(text)

    @property
    def data_dir(self):
        return self.config["data_dir"]

    # -- process -------------------------------------------------------
    def start(self, wait=True):
        assert self.proc is None or self.proc.poll() is not None
        for attempt in range(3):
            mark = len(self.log_text())
            self._log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                [starling_bin(), "run", "--config", self.config_path],
                stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                cwd=self.workdir)
            if not wait:
                return self
            try:
                self.wait_ready()
                return self
            except AssertionError:
                clash = "in use" in self.log_text()[mark:]
                if self.proc.poll() is None or not clash or attempt == 2:
                    raise
                # another process took one of our ports: pick new ones
                self._log.close()
                self.port, self.tls_port = free_port(), free_port()
                self.config["listen"]["c2s_port"] = self.port
                self.config["listen"]["c2s_tls_port"] = self.tls_port
                self.write_config()
        return self

    def wait_ready(self, timeout=10.0):
        """Poll until the c2s port accepts a TCP connection (RFC 6120 §3)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"starling exited with {self.proc.returncode} during start-up:\n"
                    + self.log_tail())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        raise AssertionError("starling did not accept connections within %.0fs:\n%s"
                             % (timeout, self.log_tail()))

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Send `sig` and wait; returns the exit status (kills after timeout)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._log.close()
                raise AssertionError(
                    f"starling did not exit within {timeout}s of signal {sig}")
        self._log.close()
        return self.proc.returncode

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=60):
        return "\n".join(self.log_text().splitlines()[-n:])

    def check_log_clean(self):
        """No sanitizer report, no password (nor PLAIN blob) in the log."""
        text = self.log_text()
        for marker in SANITIZER_MARKERS:
            assert marker not in text, f"sanitizer report in server log:\n{self.log_tail(80)}"
        for pw in self.passwords | self.secrets:
            assert pw not in text, f"secret {pw!r} appears in the server log"
        for err in self.cli_errors:
            raise AssertionError("sanitizer report from a CLI run:\n" + err)

    def finish(self):
        """SIGTERM; assert exit 0 within 5 s and a clean log (every server, every build)."""
        if self.finished:
            return
        self.finished = True
        if self.proc is not None and self.proc.poll() is None:
            rc = self.stop(signal.SIGTERM, timeout=5.0)
        elif self.proc is not None:
            rc = self.proc.returncode
            self._log.close()
        else:
            rc = 0
        self.check_log_clean()
        assert rc == 0, f"starling exited with status {rc}:\n{self.log_tail()}"

    # -- command line ----------------------------------------------------
    def cli(self, *args, stdin=None, config=True, timeout=30):
        """Run `starling ARGS... --config FILE`; returns CompletedProcess (text)."""
        argv = [starling_bin()] + list(args)
        if config:
            argv += ["--config", self.config_path]
        cp = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                            timeout=timeout, cwd=self.workdir)
        for marker in SANITIZER_MARKERS:
            if marker in cp.stderr:
                self.cli_errors.append(" ".join(argv) + "\n" + cp.stderr)
        return cp

    def add_user(self, jid, password):
        self.passwords.add(password)
        user = jid.split("@")[0]
        # a PLAIN message for this account must not be logged either
        self.secrets.add(base64.b64encode(f"\0{user}\0{password}".encode()).decode())
        cp = self.cli("user", "add", jid, "--password-stdin", stdin=password + "\n")
        assert cp.returncode == 0, (
            f"`starling user add {jid}` failed ({cp.returncode}):\n{cp.stdout}{cp.stderr}")
