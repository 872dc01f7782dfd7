#!/usr/bin/env bash
# Runs mocha inside a private network and mount namespace (scripts/ns.sh, as root), so tests can
# add addresses, start rpcbind and create sub-namespaces without touching the machine's own.
# Not root: runs mocha as is (namespace tests skip).
set -euo pipefail
cd "$(dirname "$0")/.."
# With no arguments: the whole suite.
[ $# -gt 0 ] || set -- 'test/**/*.test.ts'
exec bash scripts/ns.sh npx mocha "$@"
