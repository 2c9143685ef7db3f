#!/bin/sh
# Install the Prisma CLI 6.19.3 used as an oracle by test_prisma.py into a
# cache directory (default /tmp/engine-prisma-oracle; env PRISMA_ORACLE_DIR).
# Idempotent: does nothing when the CLI is already there. Prisma 7 cannot
# migrate offline (it downloads its schema engine); 6.19.3 with the
# driver adapter for pg and the JS engine can (see TESTING.md).
set -eu
DIR=${PRISMA_ORACLE_DIR:-/tmp/engine-prisma-oracle}
mkdir -p "$DIR"
cd "$DIR"
if ! [ -x node_modules/.bin/prisma ] || ! [ -d node_modules/@prisma/adapter-pg ] \
   || ! [ -d node_modules/pg ]; then
  [ -f package.json ] ||
    printf '{"name":"engine-prisma-oracle","private":true}\n' > package.json
  export CHECKPOINT_DISABLE=1 PRISMA_HIDE_UPDATE_MESSAGE=1
  npm install --no-audit --no-fund --loglevel=error \
    prisma@6.19.3 @prisma/client@6.19.3 @prisma/adapter-pg@6.19.3 pg
fi
# The pg adapter does not map the `name` type (oid 19), which the schema
# engine reads while it inspects the database ("Column type 'name' could
# not be deserialized"): map it to text, like varchar.
for f in node_modules/@prisma/adapter-pg/dist/index.js \
         node_modules/@prisma/adapter-pg/dist/index.mjs; do
  grep -q 'case 19: /\* name \*/' "$f" ||
    sed -i 's|^\( *\)case ScalarColumnType.TEXT:|\1case 19: /* name */\n&|' "$f"
done
# `migrate resolve --rolled-back` checks the connection with the binary
# schema engine even with a driver adapter (`--applied` skips that check
# when an adapter is configured): skip it the same way, so both forms run
# offline through the adapter. What they write is the JS engine's, unchanged.
f=node_modules/prisma/build/index.js
grep -q 'u||await Zw(a.primaryDatasource);let c=await wn.setup({schemaEngineConfig:n,migrationsDirPath:o,schemaContext:a,extensions:n.extensions});try{await c.markMigrationRolledBack' "$f" ||
  sed -i 's|;await Zw(a.primaryDatasource);\(let c=await wn.setup({schemaEngineConfig:n,migrationsDirPath:o,schemaContext:a,extensions:n.extensions});try{await c.markMigrationRolledBack\)|;u\|\|await Zw(a.primaryDatasource);\1|' "$f"
grep -q 'u||await Zw(a.primaryDatasource);let c=await wn.setup({schemaEngineConfig:n,migrationsDirPath:o,schemaContext:a,extensions:n.extensions});try{await c.markMigrationRolledBack' "$f" ||
  { echo "prisma oracle: cannot patch migrate resolve --rolled-back" >&2; exit 1; }
echo "prisma oracle: ready in $DIR"
