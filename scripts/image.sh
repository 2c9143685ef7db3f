#!/usr/bin/env bash
# Build the engine's container image from Debian 12 packages only (no
# registry): a release build of the engine installed into a staging tree, a
# Debian bookworm root file system made by mmdebstrap with the runtime
# libraries the staged binaries link, imported as localhost/engine-base:HASH,
# and the Containerfile at the repository root on top of it.
#
# Usage (as root): scripts/image.sh [TAG]
#   TAG     image name to tag (default: localhost/engine:VERSION and
#           localhost/engine:latest)
# Environment:
#   ENGINE_IMAGE_CACHE   where base root file systems are kept
#                        (default /var/cache/engine-image)
#   ENGINE_IMAGE_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#   ENGINE_IMAGE_SECURITY_MIRROR  (default http://deb.debian.org/debian-security)
# The base is keyed by a hash of its package list: a second run reuses it,
# and an unchanged engine makes `podman build` reuse its layers too.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

[ "$(id -u)" = 0 ] || { echo "image: run as root (apt, mmdebstrap, podman)" >&2; exit 1; }

BUILD=build-image
CACHE=${ENGINE_IMAGE_CACHE:-/var/cache/engine-image}
MIRROR=${ENGINE_IMAGE_MIRROR:-http://deb.debian.org/debian}
SECURITY=${ENGINE_IMAGE_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SUITE=bookworm
# Programs the engine and its plugins run as children: the PostgreSQL 15
# client programs (pg_dump, pg_restore, psql), zstd for compressed dumps;
# tini as PID 1; CA certificates for HTTPS (S3, Slack, PagerDuty).
PROGRAMS=(ca-certificates tini postgresql-client-15 zstd)

t0=$(date +%s)

# 1. Release build (scripts/setup.sh installs the build dependencies,
#    mmdebstrap and podman), installed into a staging tree without debug
#    information, SDK headers or pkg-config files.
bash scripts/setup.sh "$BUILD" -Dbuildtype=release --prefix=/usr -Dtests=disabled
STAGE=$ROOT/$BUILD/image-context
rm -rf "$STAGE"
mkdir -p "$STAGE/root"
meson install -C "$BUILD" --destdir "$STAGE/root" --strip --no-rebuild >/dev/null
rm -rf "$STAGE/root/usr/include"
find "$STAGE/root" -type d -name pkgconfig -prune -exec rm -rf {} +
VERSION=$(meson introspect "$BUILD" --projectinfo |
          python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')

# 2. The Debian packages holding every library the staged binaries load
#    (one dpkg query; a library is looked up under its path, its other
#    /usr-merge spelling and its real path).
libs=$(find "$STAGE/root" -type f -print0 |
  while IFS= read -r -d '' f; do
    [ "$(head -c4 "$f" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] || continue
    ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'
  done | sort -u)
spellings() {
  case "$1" in /usr/*) printf '%s\n' "$1" "${1#/usr}" ;; *) printf '%s\n' "$1" "/usr$1" ;; esac
  readlink -f "$1"
}
mapfile -t paths < <(for l in $libs; do spellings "$l"; done | sort -u)
declare -A owner=()
while IFS= read -r line; do
  case "$line" in diversion*) continue ;; esac
  pkg=${line%%: *}; pkg=${pkg%%,*}
  owner[${line#*: }]=${pkg%%:*}
done < <(dpkg -S "${paths[@]}" 2>/dev/null || true)
pkgs=$(printf '%s\n' "${PROGRAMS[@]}"
  for l in $libs; do
    p=""
    for q in $(spellings "$l"); do p=${owner[$q]:-}; [ -z "$p" ] || break; done
    [ -n "$p" ] || { echo "image: no Debian package owns $l" >&2; exit 1; }
    echo "$p"
  done)
pkgs=$(echo "$pkgs" | sort -u)
pkglist=$(echo "$pkgs" | paste -sd, -)
HASH=$(printf '%s\n' "recipe 1" "$SUITE" "$MIRROR" "$SECURITY" "$pkglist" |
       sha256sum | cut -c1-16)
BASE=localhost/engine-base:$HASH
echo "image: base packages: $pkglist"

# 3. The base root file system, cached by that hash. Documentation, manual
#    pages, locales and the apt lists of the packages are left out.
mkdir -p "$CACHE"
TAR=$CACHE/base-$HASH.tar
if [ ! -s "$TAR" ]; then
  echo "image: building the base root file system (mmdebstrap, $SUITE)"
  # shellcheck disable=SC2016 # the hook's $1 (the new root) is mmdebstrap's
  mmdebstrap --variant=apt --format=tar --include="$pkglist" \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*' \
    "$SUITE" "$TAR.part" \
    "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
    "deb $SECURITY $SUITE-security main" </dev/null
  mv "$TAR.part" "$TAR"
fi

CONF=$CACHE/containers.conf  # runc, no default ulimits (see README)
printf '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n' > "$CONF"
export CONTAINERS_CONF=$CONF
if ! podman image exists "$BASE"; then
  podman import --quiet "$TAR" "$BASE" >/dev/null
fi

# 4. The engine's image: Containerfile on top of the base.
if [ -n "${1:-}" ]; then tags=("$1"); else
  tags=("localhost/engine:$VERSION" "localhost/engine:latest"); fi
tag_args=()
for t in "${tags[@]}"; do tag_args+=(--tag "$t"); done
podman build --quiet --pull=never -f "$ROOT/Containerfile" \
  --build-arg "BASE=$BASE" --build-arg "VERSION=$VERSION" \
  "${tag_args[@]}" "$STAGE" >/dev/null
size=$(podman image inspect --format '{{.Size}}' "${tags[0]}")
echo "image: ${tags[*]} (base $BASE), $((size / 1000000)) MB, built in $(( $(date +%s) - t0 )) s"
