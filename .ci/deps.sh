#!/bin/sh
# deps.sh: install the Debian packages lmpipe builds and tests with, if any is missing,
# plus any named as arguments (`make bench` adds PyTorch and GNU time).
# Called by `make check` (and so by .ci/run); a no-op when everything is there.
set -eu
pkgs="build-essential pkg-config libmsgpack-dev libopenblas-dev libarchive-dev zlib1g-dev
libjansson-dev libpcre2-dev bats bats-support bats-assert parallel mandoc python3 python3-msgpack
python3-numpy util-linux $*"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing:$missing" >&2
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
		echo "deps: not root and no sudo; install these packages:$missing" >&2
		exit 1
	fi
else
	SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >&2 || true
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing >&2
