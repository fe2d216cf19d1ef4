#!/bin/sh
# Put Debian's promtool into .venv/bin/promtool, for the alert-rule tests (tests/config/).
#
# Why not `apt-get install prometheus`: that package also installs and starts a Prometheus
# server as a system service. We only need the checker, so we download the package, unpack it
# into a temporary directory with `dpkg -x` (no maintainer scripts, no service, no root), and
# copy the one binary out. Needs the Debian package archive (apt-get download), as CI has.
#
# Idempotent: does nothing if .venv/bin/promtool already runs. Usage, from the repository:
#   scripts/install-promtool.sh            # or: PROMTOOL_DEST=/some/bin/promtool scripts/...
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
dest=${PROMTOOL_DEST:-"$root/.venv/bin/promtool"}

if [ -x "$dest" ] && "$dest" --version >/dev/null 2>&1; then
    echo "promtool already installed: $dest"
    exit 0
fi

for tool in apt-get dpkg; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "install-promtool: $tool not found; this script needs Debian or Ubuntu." >&2
        echo "Elsewhere, put promtool from https://prometheus.io/download/ at $dest" >&2
        exit 1
    fi
done
if [ ! -d "$(dirname "$dest")" ]; then
    echo "install-promtool: $(dirname "$dest") does not exist; create the venv first (run.sh)" >&2
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
# As root, apt downloads as the unprivileged _apt user: let that user write the .deb here.
if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then
    chown _apt "$tmp"
fi

# apt-get download writes into the current directory and needs no root.
# On a fresh machine the package lists may be missing: as root, refresh them once and retry.
if ! (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1) \
    && ! { [ "$(id -u)" = 0 ] && apt-get update -qq >/dev/null \
           && (cd "$tmp" && apt-get download prometheus >/dev/null); }; then
    echo "install-promtool: 'apt-get download prometheus' failed; check the network and" >&2
    echo "the apt sources (run 'apt-get update' as root if the package is not found)." >&2
    exit 1
fi
deb=$(ls "$tmp"/prometheus_*.deb)
dpkg -x "$deb" "$tmp/unpacked"
if [ ! -x "$tmp/unpacked/usr/bin/promtool" ]; then
    echo "install-promtool: $deb holds no usr/bin/promtool" >&2
    exit 1
fi
# Copy then rename: a half-written binary is never left at $dest.
cp "$tmp/unpacked/usr/bin/promtool" "$dest.tmp.$$"
chmod 0755 "$dest.tmp.$$"
mv -f "$dest.tmp.$$" "$dest"
echo "installed $("$dest" --version 2>&1 | head -n 1) at $dest"
