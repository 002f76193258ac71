#!/bin/sh
# Runs every suite on each given build directory (normal, then ASan+UBSan)
# and prints one closing line "N passed, N failed". Exit status is non-zero
# when anything failed.
set -u
cd "$(dirname "$0")/.."
exec /usr/bin/python3 tools/run_tests.py "$@"
