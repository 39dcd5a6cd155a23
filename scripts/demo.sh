#!/usr/bin/env bash
# The main job on a fresh machine: set-up, then `druvaa demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node_modules/.bin/bun src/cli.ts demo "$@"
