#!/bin/sh
# Set up everything `make run` and `make test` need on a fresh Debian / Raspberry Pi OS:
# the system packages (via apt-get as root, or sudo, or printing the exact command),
# then a virtualenv with loaxa. `bootstrap.sh VENV test` adds what the tests need
# (a PostgreSQL server for the fleet database tests, the test tools).
set -eu
VENV="${1:-.venv}"
PURPOSE="${2:-run}"
PYTHON="${PYTHON:-python3}"

missing=""
need() { # need <package> <test command...>
    pkg="$1"; shift
    if ! "$@" >/dev/null 2>&1; then missing="$missing $pkg"; fi
}
need ffmpeg command -v ffmpeg
need mosquitto test -x /usr/sbin/mosquitto -o -x /usr/bin/mosquitto
need mosquitto-clients command -v mosquitto_sub
# aplay plays on the Pi (audio/alsa.py); the tests run it against ALSA's null device.
need alsa-utils command -v aplay
if [ "$PURPOSE" = test ]; then
    need postgresql sh -c 'ls /usr/lib/postgresql/*/bin/initdb'
    # tests/test_service.py checks the shipped unit file with `systemd-analyze verify`.
    need systemd command -v systemd-analyze
fi
# lgpio, gpiozero's GPIO driver on a 64-bit Pi, has wheels for CPython 3.11 and 3.12 only
# (Raspberry Pi OS Bookworm); with another Python (Trixie's 3.13) pip builds it from source.
if [ "$(uname -m)" = aarch64 ] && ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] not in ((3, 11), (3, 12)))' 2>/dev/null; then
    need swig command -v swig
    need liblgpio-dev test -e /usr/include/lgpio.h
    need build-essential command -v gcc
    need python3-dev "$PYTHON" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'
fi
need "$PYTHON" command -v "$PYTHON"
if command -v "$PYTHON" >/dev/null 2>&1; then
    # Debian splits venv/ensurepip out of python3 into python3-venv.
    need python3-venv "$PYTHON" -c "import venv, ensurepip"
fi

if [ -n "$missing" ]; then
    cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y$missing"
    if [ "$(id -u)" = 0 ]; then
        echo "bootstrap: installing$missing"
        sh -c "$cmd"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        echo "bootstrap: installing$missing (sudo)"
        sudo sh -c "$cmd"
    else
        echo "bootstrap: missing system packages:$missing" >&2
        echo "bootstrap: run this as root, then try again:" >&2
        echo "    sudo sh -c '$cmd'" >&2
        exit 1
    fi
fi

"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"bootstrap: loaxa needs Python 3.11 or newer, this is {sys.version.split()[0]}")
PY

if [ ! -x "$VENV/bin/python" ]; then
    echo "bootstrap: creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
if [ "$PURPOSE" = test ]; then
    "$VENV/bin/python" -m pip install --quiet -e ".[test]"
else
    "$VENV/bin/python" -m pip install --quiet -e .
fi
echo "bootstrap: ready"
