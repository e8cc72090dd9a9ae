#!/bin/sh
# Install loaxa on a unit without internet, from a bundle made by bundle-offline.sh.
#
#   tar xzf loaxa-offline-VERSION-aarch64.tar.gz
#   sudo sh loaxa-offline-VERSION-aarch64/install-offline.sh
#
# 1. checks the bundle against SHA256SUMS;
# 2. installs the Debian packages of debs/ that are missing or older here (apt-get
#    --no-download, or dpkg -i);
# 3. makes the virtualenv (default /opt/loaxa/venv) and installs loaxa from wheels/ only
#    (pip --no-index: nothing is fetched);
# 4. links /usr/local/bin/loaxa to it (as root), so `sudo loaxa provision` works.
# Options: --venv DIR, --no-debs, --no-link.
set -eu

BUNDLE="$(cd "$(dirname "$0")" && pwd)"
VENV=/opt/loaxa/venv
WITH_DEBS=yes
LINK=yes
PYTHON="${PYTHON:-python3}"

while [ $# -gt 0 ]; do
    case "$1" in
        --venv) VENV="$2"; shift 2 ;;
        --no-debs) WITH_DEBS=no; shift ;;
        --no-link) LINK=no; shift ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install-offline: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

say() { echo "install-offline: $*"; }

say "checking the bundle"
(cd "$BUNDLE" && sha256sum --quiet -c SHA256SUMS) || {
    echo "install-offline: the bundle is damaged (SHA256SUMS does not match); copy it again" >&2
    exit 1
}

# A .deb is worth installing when its package is missing, or older, here.
needed_debs() {
    for deb in "$BUNDLE"/debs/*.deb; do
        [ -e "$deb" ] || continue
        pkg="$(dpkg-deb -f "$deb" Package)"
        arch="$(dpkg-deb -f "$deb" Architecture)"
        version="$(dpkg-deb -f "$deb" Version)"
        installed="$(dpkg-query -W -f='${Version}' "$pkg:$arch" 2>/dev/null || true)"
        if [ -z "$installed" ] || dpkg --compare-versions "$installed" lt "$version"; then
            echo "$deb"
        fi
    done
}

if [ "$WITH_DEBS" = yes ] && [ -d "$BUNDLE/debs" ]; then
    debs="$(needed_debs)"
    if [ -n "$debs" ]; then
        if [ "$(id -u)" != 0 ]; then
            echo "install-offline: installing Debian packages needs root: run it with sudo" >&2
            exit 1
        fi
        say "installing $(echo "$debs" | wc -l) Debian packages"
        # apt orders them (Pre-Depends) and, with --no-download, never goes online;
        # plain dpkg where there is no apt.
        if command -v apt-get >/dev/null 2>&1; then
            # shellcheck disable=SC2086
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-download --no-install-recommends $debs
        else
            # shellcheck disable=SC2086
            dpkg -i $debs
        fi
    else
        say "the Debian packages are already installed"
    fi
fi

if ! "$PYTHON" -c "import venv, ensurepip" >/dev/null 2>&1; then
    echo "install-offline: $PYTHON cannot make a virtualenv (python3-venv missing; it is in debs/)" >&2
    exit 1
fi
say "installing loaxa into $VENV"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# --isolated: this machine's pip settings (an index, find-links) play no part.
"$VENV/bin/python" -m pip --isolated --disable-pip-version-check install --quiet \
    --no-index --find-links "$BUNDLE/wheels" --upgrade loaxa
if [ -n "$(ls "$BUNDLE"/wheels/lgpio-*.whl 2>/dev/null)" ]; then
    "$VENV/bin/python" -m pip --isolated --disable-pip-version-check install --quiet \
        --no-index --find-links "$BUNDLE/wheels" lgpio
fi

if [ "$LINK" = yes ] && [ "$(id -u)" = 0 ]; then
    ln -sf "$VENV/bin/loaxa" /usr/local/bin/loaxa
fi
say "done: $("$VENV/bin/loaxa" --version)"
say "next: sudo loaxa provision   (then: sudo loaxa provision --install-service)"
