#!/usr/bin/env bash
# Install what the engine needs on Debian (only the missing packages), then
# build it. Usage: scripts/setup.sh [BUILD_DIR] [meson setup options...]
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(meson ninja-build pkg-config gcc python3 libpq-dev liblua5.4-dev
      libyaml-dev libssl-dev libuv1-dev libcurl4-openssl-dev libcmocka-dev
      libjansson-dev libzstd-dev zlib1g-dev libexpat1-dev libpg-query-dev postgresql postgresql-client
      postgresql-contrib python3-jsonschema python3-yaml pandoc
      pgbackrest openssl podman runc busybox-static mmdebstrap clang-14 libclang-rt-14-dev
      prometheus prometheus-pushgateway chromium age)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# node and npm: the editor test installs yaml-language-server with them
# (tests/functional/yamlls.sh); a node of another origin is kept
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

BUILD=${1:-build}
shift || true
if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD" "$@" >/dev/null
else
  [ $# -eq 0 ] || meson configure "$BUILD" "$@" >/dev/null
fi
ninja -C "$BUILD" >/dev/null || ninja -C "$BUILD"
echo "setup: built $BUILD/core/engine"
