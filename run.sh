#!/usr/bin/env bash
# One entry point for a fresh Debian 12 box (run as root) and for CI:
#   ./run.sh demo   set up, then run the end-to-end demo
#   ./run.sh test   set up, then run lint, type checks and the whole test suite
# Set-up is idempotent: it installs missing Debian packages, creates or refreshes .venv, and
# reinstalls the Python dependencies only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")"

APT_NEEDED=(mosquitto mosquitto-clients fonts-wqy-microhei)
VENV=.venv

log() { printf '[run.sh] %s\n' "$*" >&2; }

python_ok() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null
}

find_python() {
    for candidate in python3.11 python3 python3.12 python3.13; do
        if command -v "$candidate" >/dev/null && python_ok "$candidate"; then
            command -v "$candidate"; return 0
        fi
    done
    return 1
}

apt_install() {
    if ! command -v apt-get >/dev/null; then
        log "missing $*, and this is not a Debian-like system: install them by hand"; return 1
    fi
    if [ "$(id -u)" != 0 ]; then
        log "missing $*: run as root (or: sudo apt-get install $*)"; return 1
    fi
    log "installing Debian packages: $*"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

setup() {
    local missing=()
    for pkg in "${APT_NEEDED[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    PY=$(find_python) || { missing+=(python3 python3-venv); }
    if [ -n "${PY:-}" ] && ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
        missing+=(python3-venv)
    fi
    if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
    PY=${PY:-$(find_python)}

    if [ ! -x "$VENV/bin/python" ] || ! python_ok "$VENV/bin/python"; then
        log "creating virtualenv $VENV with $PY"
        rm -rf "$VENV"
        "$PY" -m venv "$VENV"
    fi
    local stamp="$VENV/.cunlink-installed"
    local want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        log "installing Python dependencies into $VENV"
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -e '.[dev]'
        echo "$want" > "$stamp"
    fi
}

case "${1:-}" in
    demo)
        setup
        shift
        exec "$VENV/bin/cunlink" demo "$@"
        ;;
    test)
        setup
        shift
        # the alert-rule tests (tests/config) check the rules with Debian's promtool
        scripts/install-promtool.sh >&2
        log "ruff"
        "$VENV/bin/ruff" check gateway devices protocols sync tests bench
        log "mypy --strict"
        "$VENV/bin/mypy"
        log "pytest"
        exec "$VENV/bin/pytest" "$@"
        ;;
    setup)
        # only the set-up (a station box: Debian packages and .venv, no tests)
        setup
        log "ready: $VENV/bin/cunlink"
        ;;
    *)
        echo "usage: ./run.sh demo | ./run.sh test [pytest args] | ./run.sh setup" >&2
        exit 2
        ;;
esac
