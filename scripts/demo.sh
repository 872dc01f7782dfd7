#!/usr/bin/env bash
# The main job: installs what it needs, builds, and runs the failover demo (as root: it builds
# network namespaces, and removes them again).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "the demo builds network namespaces: run it as root (sudo npm run demo)" >&2
  exit 1
fi
bash scripts/setup.sh
exec node bin/lockdrop demo "$@"
