"""Test driver behind `make test`: for each build directory, run the cmocka
unit tests (through meson) and the pytest integration suite against that
build's binary, then print a single total line "N passed, N failed"."""
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_unit(build):
    subprocess.run(["meson", "test", "-C", build, "--print-errorlogs", "--no-rebuild"],
                   cwd=ROOT)
    passed = failed = 0
    log = os.path.join(ROOT, build, "meson-logs", "testlog.json")
    try:
        lines = open(log, encoding="utf-8", errors="replace").read().splitlines()
    except OSError:
        return 0, 1
    for line in lines:
        try:
            t = json.loads(line)
        except ValueError:
            continue
        out = (t.get("stdout") or "") + (t.get("stderr") or "")
        p = len(re.findall(r"^\[       OK \] ", out, re.M))
        f = sum(int(m.group(1)) for m in re.finditer(r"\[  FAILED  \] (\d+) test", out))
        if t.get("result") not in ("OK", "EXPECTEDFAIL", "SKIP") and f == 0:
            f = 1  # crashed or timed out before cmocka could report
            print(f"unit test binary {t.get('name')} failed: {t.get('result')}")
        passed += p
        failed += f
    return passed, failed


def run_integration(build, asan):
    junit = os.path.join(ROOT, build, "pytest-junit.xml")
    env = dict(os.environ)
    env["STARLING_BIN"] = os.path.join(ROOT, build, "starling")
    env["STARLING_BUILD"] = os.path.join(ROOT, build)
    if asan:
        env["STARLING_ASAN"] = "1"
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:exitcode=23"
        env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:exitcode=24"
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "--junitxml", junit, "tests/integration"]
    if os.environ.get("PYTEST_ARGS"):
        args += os.environ["PYTEST_ARGS"].split()
    rc = subprocess.run(args, cwd=ROOT, env=env).returncode
    try:
        suite = ET.parse(junit).getroot()
        if suite.tag == "testsuites":
            suite = suite[0]
        tests = int(suite.get("tests", 0))
        bad = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped = int(suite.get("skipped", 0))
        return tests - bad - skipped, bad, skipped
    except (OSError, ET.ParseError):
        return 0, 1 if rc not in (0, 5) else 0, 0


def main():
    builds = sys.argv[1:] or ["build"]
    total_p = total_f = total_s = 0
    start = time.time()
    print("=== style (tools/checksrc.py) ===", flush=True)
    if subprocess.run([sys.executable, "tools/checksrc.py"], cwd=ROOT).returncode == 0:
        total_p += 1
    else:
        total_f += 1
    for i, b in enumerate(builds):
        asan = i > 0
        print(f"=== unit tests ({b}) ===", flush=True)
        p, f = run_unit(b)
        print(f"unit ({b}): {p} passed, {f} failed", flush=True)
        total_p += p
        total_f += f
        print(f"=== integration tests ({b}) ===", flush=True)
        p, f, s = run_integration(b, asan)
        print(f"integration ({b}): {p} passed, {f} failed, {s} skipped", flush=True)
        total_p += p
        total_f += f
        total_s += s
    print(f"total time {time.time() - start:.0f}s")
    print(f"{total_p} passed, {total_f} failed, {total_s} skipped")
    sys.exit(1 if total_f else 0)


if __name__ == "__main__":
    main()
