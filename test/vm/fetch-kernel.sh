#!/usr/bin/env bash
# Debian bookworm's kernel for the kernel-client VM test (scripts/setup.sh calls this as root):
# the .deb the linux-image-amd64 metapackage points at, fetched with apt-get download and
# unpacked with dpkg-deb -x into .cache/vm/ (never installed on this machine), with a modules.dep.
# Idempotent: with the tree in place it only checks. A failure here is reported, not fatal: the
# test then says exactly what is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${LOCKDROP_VM_CACHE:-$PWD/.cache/vm}

[ "$(id -u)" = 0 ] || { echo "test/vm/fetch-kernel: not root: the VM test will not run" >&2; exit 0; }
command -v apt-get >/dev/null || { echo "test/vm/fetch-kernel: no apt-get: the VM test will not run" >&2; exit 0; }
command -v busybox >/dev/null || { echo "test/vm/fetch-kernel: no busybox (busybox-static, from scripts/setup.sh)" >&2; exit 0; }

# The kernel the metapackage points at now; one unpacked tree per version.
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-6\.1\.[^ ]*-amd64\)$/\1/p' | head -1)
if [ -z "$pkg" ]; then
  apt-get update -qq
  pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-6\.1\.[^ ]*-amd64\)$/\1/p' | head -1)
fi
[ -n "$pkg" ] || { echo "test/vm/fetch-kernel: apt knows no bookworm 6.1 kernel (linux-image-amd64)" >&2; exit 0; }
kver=${pkg#linux-image-}
if [ ! -f "$CACHE/$kver/ok" ]; then
  echo "test/vm/fetch-kernel: fetching $pkg into $CACHE/$kver" >&2
  rm -rf "$CACHE/$kver" "$CACHE/$kver.tmp"
  mkdir -p "$CACHE/$kver.tmp"
  (cd "$CACHE/$kver.tmp" && apt-get download -qq "$pkg" 2>/dev/null && dpkg-deb -x ./*.deb tree && rm -f ./*.deb)
  # The .deb has no modules.dep (its postinst makes one): busybox's depmod writes it.
  busybox depmod -b "$CACHE/$kver.tmp/tree" "$kver"
  touch "$CACHE/$kver.tmp/ok"
  mv "$CACHE/$kver.tmp" "$CACHE/$kver"
fi
ln -sfn "$kver" "$CACHE/current"
