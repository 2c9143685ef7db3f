#!/usr/bin/env bash
# Set up everything and run the main job: the restore drill. Without
# DATABASE_URL it drills against an embedded throwaway PostgreSQL; with it,
# against that server. Extra arguments go to `engine run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh build
exec build/core/engine run runbooks/restore-drill.yaml "$@"
