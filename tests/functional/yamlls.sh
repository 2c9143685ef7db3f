#!/bin/sh
# Install yaml-language-server 1.25.0 (the server behind VS Code's YAML
# extension) used by test_editor.py into a cache directory (default
# /tmp/engine-yaml-language-server; env YAMLLS_DIR). Idempotent: does
# nothing when that version is already there.
set -eu
VERSION=1.25.0
DIR=${YAMLLS_DIR:-/tmp/engine-yaml-language-server}
mkdir -p "$DIR"
cd "$DIR"
PKG=node_modules/yaml-language-server/package.json
if ! [ -f "$PKG" ] || ! grep -q "\"version\": \"$VERSION\"" "$PKG"; then
  [ -f package.json ] ||
    printf '{"name":"engine-yaml-language-server","private":true}\n' > package.json
  npm install --no-audit --no-fund --loglevel=error "yaml-language-server@$VERSION"
fi
echo "yaml-language-server $VERSION: ready in $DIR"
