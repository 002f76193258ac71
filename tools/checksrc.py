#!/usr/bin/python3
"""Enforces the written parts of our C style (docs: ../shared/DESIGN.md, "Code style"):

- banned functions: strcpy strcat sprintf vsprintf strtok atoi atol gets
- every .c/.h file opens with a comment paragraph saying what it implements
- lines at most 100 columns, no tabs, no trailing whitespace
- files at most 1500 lines
- modules in src/mod/ include no core internals, only starling/module.h (plus
  their own headers and the C library)
- layering: a lower layer never includes a higher one (base < event < net,
  xml < xmpp < storage? no: storage depends only on base/event)

Exit status 1 with one "FILE:LINE: message" per problem."""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BANNED = re.compile(r"\b(strcpy|strcat|sprintf|vsprintf|strtok|atoi|atol|gets)\s*\(")
LAYERS = ["base", "event", "net", "xml", "storage", "xmpp", "transport", "mod", "cli"]
# Which layers each layer may include (besides itself).
ALLOWED = {
    "base": set(),
    "event": {"base"},
    "net": {"base", "event"},
    "xml": {"base"},
    "storage": {"base", "event"},
    "xmpp": {"base", "event", "net", "xml", "storage", "transport", "mod"},
    "transport": {"base", "event", "net", "xml", "xmpp", "storage"},
    # the HTTP server sits beside the transports it serves (BOSH, WebSocket)
    "http": {"base", "event", "net", "xml", "xmpp", "storage", "transport"},
    "mod": {"base", "xml", "storage"},
    "cli": {"base", "event", "net", "xml", "xmpp", "storage"},
}


def check_file(path, rel, problems):
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    if len(lines) > 1500:
        problems.append(f"{rel}:1: {len(lines)} lines; split files before 1500")
    first = next((l for l in lines if l.strip()), "")
    if not first.startswith("/*"):
        problems.append(f"{rel}:1: file must open with a comment saying what it implements")
    layer = rel.split("/")[1] if rel.startswith("src/") and rel.count("/") >= 2 else None
    in_comment = False
    for i, line in enumerate(lines, 1):
        if len(line) > 100:
            problems.append(f"{rel}:{i}: line longer than 100 columns")
        if "\t" in line:
            problems.append(f"{rel}:{i}: tab character")
        if line != line.rstrip():
            problems.append(f"{rel}:{i}: trailing whitespace")
        code = line
        if in_comment:
            if "*/" not in code:
                continue
            code = code.split("*/", 1)[1]
            in_comment = False
        code = re.sub(r"/\*.*?\*/", "", code)
        if "/*" in code:
            code = code.split("/*", 1)[0]
            in_comment = True
        code = re.sub(r'"(\\.|[^"\\])*"', '""', code.split("//", 1)[0])
        if BANNED.search(code):
            problems.append(f"{rel}:{i}: banned function {BANNED.search(code).group(1)}")
        m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
        if m and layer:
            inc = m.group(1)
            top = inc.split("/")[0]
            if layer == "mod":
                if "/" in inc and inc != "starling/module.h" and top not in ALLOWED["mod"] \
                        and top != "mod":
                    problems.append(f"{rel}:{i}: modules include only starling/module.h, "
                                    f"not {inc}")
            elif top in LAYERS and top != layer and top not in ALLOWED.get(layer, set()):
                problems.append(f"{rel}:{i}: layer {layer} must not include {inc}")


def main():
    problems = []
    files = 0
    for base in ("src", "include", "tests/unit", "tests/fuzz", "tests/integration"):
        for dirpath, _, names in os.walk(os.path.join(ROOT, base)):
            for n in sorted(names):
                if n.endswith((".c", ".h")):
                    p = os.path.join(dirpath, n)
                    check_file(p, os.path.relpath(p, ROOT), problems)
                    files += 1
    for p in problems:
        print(p)
    print(f"checksrc: {files} files, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
