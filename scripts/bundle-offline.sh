#!/bin/sh
# Build an offline install bundle of loaxa for a unit that has no internet.
#
#   sh scripts/bundle-offline.sh                     # for a Raspberry Pi (aarch64), with .debs
#   sh scripts/bundle-offline.sh --arch x86_64 --no-debs
#
# Run it on a machine with internet (Debian or Raspberry Pi OS, any architecture). It
# writes OUT/loaxa-offline-VERSION-ARCH/ and the same as a .tar.gz beside it:
#   wheels/             loaxa and every Python package it needs, as wheels for ARCH
#                       (pip download --platform ... --only-binary=:all:; a package with
#                       no wheel for ARCH but a pure-Python source is built here)
#   debs/               the Debian packages (arm64 for aarch64) of ffmpeg, mosquitto and the
#                       rest, with all their dependencies, as apt resolves them on an empty
#                       system; fetched with a private apt state (apt-get for ARCH), so this
#                       machine's dpkg and apt settings stay as they are
#   install-offline.sh  what the technician runs on the unit (see that script)
#   SHA256SUMS          to check the copy (a USB stick can corrupt it)
#
# Options: --arch aarch64|x86_64 (default aarch64), --out DIR (default dist/offline),
# --python 3.11 (the unit's Python; Bookworm's), --no-debs, --debs "PKG ...".
set -eu

ARCH=aarch64
OUT=dist/offline
PYVER=3.11
WITH_DEBS=yes
DEBS="ffmpeg alsa-utils mosquitto mosquitto-clients python3-venv"
PYTHON="${PYTHON:-python3}"
HERE="$(cd "$(dirname "$0")" && pwd)"
SRC="$(cd "$HERE/.." && pwd)"

while [ $# -gt 0 ]; do
    case "$1" in
        --arch) ARCH="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --python) PYVER="$2"; shift 2 ;;
        --no-debs) WITH_DEBS=no; shift ;;
        --debs) DEBS="$2"; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bundle-offline: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

case "$ARCH" in
    aarch64) DEB_ARCH=arm64; EXTRA_PACKAGES="lgpio" ;;   # gpiozero's pin driver on the Pi
    x86_64) DEB_ARCH=amd64; EXTRA_PACKAGES="" ;;
    *) echo "bundle-offline: --arch must be aarch64 or x86_64, not $ARCH" >&2; exit 2 ;;
esac

VERSION="$("$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$SRC/pyproject.toml")"
NAME="loaxa-offline-$VERSION-$ARCH"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
BUNDLE="$OUT/$NAME"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/wheels"
PIP="$PYTHON -m pip --disable-pip-version-check"

# 1. loaxa itself, built from a copy of the sources (the working tree stays clean).
echo "bundle-offline: building the loaxa wheel ($VERSION)"
mkdir -p "$WORK/src"
cp "$SRC/pyproject.toml" "$SRC/README.md" "$WORK/src/"
for package in loaxa device scheduler audio provisioning hw fleet; do
    if [ -d "$SRC/$package" ]; then
        (cd "$SRC" && tar cf - --exclude=__pycache__ --dereference "$package") | (cd "$WORK/src" && tar xf -)
    fi
done
$PIP wheel --quiet --no-deps --wheel-dir "$BUNDLE/wheels" "$WORK/src"
LOAXA_WHEEL="$(ls "$BUNDLE"/wheels/loaxa-*.whl)"

# 2. Its dependencies as wheels for the unit's platform (Bookworm: glibc 2.36).
PLATFORMS=""
glibc=36
while [ "$glibc" -ge 17 ]; do
    PLATFORMS="$PLATFORMS --platform manylinux_2_${glibc}_$ARCH"
    glibc=$((glibc - 1))
done
PLATFORMS="$PLATFORMS --platform manylinux2014_$ARCH --platform linux_$ARCH"
download() {
    # shellcheck disable=SC2086
    $PIP download --quiet --only-binary=:all: $PLATFORMS --python-version "$PYVER" \
        --implementation cp --abi "cp$(echo "$PYVER" | tr -d .)" \
        --find-links "$BUNDLE/wheels" --dest "$BUNDLE/wheels" "$LOAXA_WHEEL" $EXTRA_PACKAGES
}
echo "bundle-offline: downloading the Python packages for $ARCH"
if ! download; then
    echo "bundle-offline: some packages have no wheel for $ARCH; building the pure-Python ones here"
    $PIP wheel --quiet --wheel-dir "$WORK/host" "$LOAXA_WHEEL"
    cp "$WORK"/host/*-none-any.whl "$BUNDLE/wheels/" 2>/dev/null || true
    download
fi

# 3. The Debian packages, from a private apt state for the unit's architecture.
if [ "$WITH_DEBS" = yes ]; then
    echo "bundle-offline: downloading the $DEB_ARCH Debian packages: $DEBS"
    APT="$WORK/apt"
    mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$BUNDLE/debs"
    : > "$APT/status"
    set -- -o "APT::Architecture=$DEB_ARCH" -o "APT::Architectures::=$DEB_ARCH" \
        -o "Dir::State=$APT" -o "Dir::State::status=$APT/status" -o "Dir::Cache=$APT/cache" \
        -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root"
    apt-get "$@" -q update >/dev/null
    # apt's own resolver on an empty system: every package they need, one choice per
    # alternative (ffmpeg's libavcodec59, not also libavcodec-extra59), so dpkg takes the
    # whole set; install-offline.sh skips what the unit already has.
    mkdir -p "$APT/archives/partial"
    apt-get "$@" -q -y --no-install-recommends --download-only \
        -o "Dir::Cache::archives=$APT/archives" install $DEBS >/dev/null
    mv "$APT"/archives/*.deb "$BUNDLE/debs/"
    echo "bundle-offline: $(ls "$BUNDLE/debs" | wc -l) Debian packages"
fi

# 4. The installer and the checksums; then one archive to copy.
cp "$HERE/install-offline.sh" "$BUNDLE/install-offline.sh"
chmod 755 "$BUNDLE/install-offline.sh"
(cd "$BUNDLE" && find . -type f ! -name SHA256SUMS | sort | xargs sha256sum > SHA256SUMS)
tar -C "$OUT" -czf "$OUT/$NAME.tar.gz" "$NAME"
echo "bundle-offline: $BUNDLE ($(ls "$BUNDLE/wheels" | wc -l) wheels)"
echo "bundle-offline: copy $OUT/$NAME.tar.gz to the unit, then there:"
echo "    tar xzf $NAME.tar.gz && sudo sh $NAME/install-offline.sh"
