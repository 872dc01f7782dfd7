#!/usr/bin/env bash
# Runs a command inside a private network and mount namespace (as root), so it can add
# addresses, start rpcbind and create sub-namespaces without touching the machine's own; the
# namespace dies with the command. LOCKDROP_NS_PID=1 adds a PID namespace: everything the command
# started dies with it too, even when it is killed. Not root: runs the command as is.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && [ -z "${LOCKDROP_TEST_NS:-}" ] && command -v unshare >/dev/null; then
  pid=()
  [ -z "${LOCKDROP_NS_PID:-}" ] || pid=(--pid --fork --mount-proc)
  exec unshare --net --mount --propagation private "${pid[@]}" -- env LOCKDROP_TEST_NS=1 bash "$PWD/scripts/ns.sh" "$@"
fi
if [ -n "${LOCKDROP_TEST_NS:-}" ]; then
  # Our own /run: rpcbind's socket, netns mounts and pid files stay private to this run.
  mount -t tmpfs -o mode=0755 lockdrop-test-run /run
  mkdir -p /run/netns /run/lock
  ip link set lo up
fi
exec "$@"
