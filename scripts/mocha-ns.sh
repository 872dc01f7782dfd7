#!/usr/bin/env bash
# Runs mocha inside a private network and mount namespace (as root), so tests can add
# addresses, start rpcbind and create sub-namespaces without touching the machine's own.
# The namespace dies with the process. Not root: runs mocha as is (namespace tests skip).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && [ -z "${LOCKDROP_TEST_NS:-}" ] && command -v unshare >/dev/null; then
  exec unshare --net --mount --propagation private -- env LOCKDROP_TEST_NS=1 bash "$0" "$@"
fi
if [ -n "${LOCKDROP_TEST_NS:-}" ]; then
  # Our own /run: rpcbind's socket, netns mounts and pid files stay private to this run.
  mount -t tmpfs -o mode=0755 lockdrop-test-run /run
  mkdir -p /run/netns /run/lock
  ip link set lo up
fi
# With no arguments: the whole suite.
[ $# -gt 0 ] || set -- 'test/**/*.test.ts'
exec npx mocha "$@"
