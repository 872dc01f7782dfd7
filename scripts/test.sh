#!/usr/bin/env bash
# The whole suite on a fresh machine: installs what it needs, builds, type-checks, runs mocha.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx tsc --noEmit
exec bash scripts/mocha-ns.sh "$@"
