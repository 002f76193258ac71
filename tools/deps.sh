#!/bin/sh
# Installs the Debian 12 packages Starling needs, idempotently.
#   tools/deps.sh build   -> compiler, meson, libraries
#   tools/deps.sh test    -> build + what the test suites need
# As root, missing packages are installed with apt-get; otherwise the exact
# apt-get line is printed and the script fails.
set -eu
BUILD="gcc libc6-dev pkg-config meson ninja-build libuv1-dev libexpat1-dev libssl-dev
 libsqlite3-dev libidn2-dev libutf8proc-dev libc-ares-dev libyaml-dev libcmocka-dev
 libwslay-dev"
TEST="python3 python3-pytest python3-slixmpp libstrophe-dev openssl procps
 chromium nginx biboumi ngircd dnsmasq prosody iproute2"
case "${1:-build}" in
  build) want="$BUILD" ;;
  test) want="$BUILD $TEST" ;;
  *) echo "usage: $0 build|test" >&2; exit 2 ;;
esac
missing=""
for p in $want; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "Missing packages. Run as root:" >&2
  echo "  apt-get update && apt-get install -y$missing" >&2
  exit 1
fi
echo "Installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
