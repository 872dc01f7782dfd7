#!/usr/bin/env bash
# What the kernel-client VM test needs beyond scripts/setup.sh's packages (which calls this as
# root): QEMU, a static busybox for the initramfs, and Debian bookworm's kernel — its .deb fetched with
# apt-get download and unpacked with dpkg-deb -x into .cache/vm/ (never installed on this machine).
# Idempotent: with everything in place it only checks. A failure here is reported, not fatal:
# the test then says exactly what is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${LOCKDROP_VM_CACHE:-$PWD/.cache/vm}
PACKAGES=(qemu-system-x86 busybox-static)

[ "$(id -u)" = 0 ] || { echo "test/vm/setup: not root: the VM test will not run" >&2; exit 0; }
command -v apt-get >/dev/null || { echo "test/vm/setup: no apt-get: the VM test will not run" >&2; exit 0; }
export DEBIAN_FRONTEND=noninteractive
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "test/vm/setup: installing ${missing[*]}" >&2
  apt-get update -qq
  apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "${missing[@]}" >/dev/null
fi

# The kernel the metapackage points at now; one unpacked tree per version.
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-6\.1\.[^ ]*-amd64\)$/\1/p' | head -1)
if [ -z "$pkg" ]; then
  apt-get update -qq
  pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-6\.1\.[^ ]*-amd64\)$/\1/p' | head -1)
fi
[ -n "$pkg" ] || { echo "test/vm/setup: apt knows no bookworm 6.1 kernel (linux-image-amd64)" >&2; exit 0; }
kver=${pkg#linux-image-}
if [ ! -f "$CACHE/$kver/ok" ]; then
  echo "test/vm/setup: fetching $pkg into $CACHE/$kver" >&2
  rm -rf "$CACHE/$kver" "$CACHE/$kver.tmp"
  mkdir -p "$CACHE/$kver.tmp"
  (cd "$CACHE/$kver.tmp" && apt-get download -qq "$pkg" 2>/dev/null && dpkg-deb -x ./*.deb tree && rm -f ./*.deb)
  # The .deb has no modules.dep (its postinst makes one): busybox's depmod writes it.
  busybox depmod -b "$CACHE/$kver.tmp/tree" "$kver"
  touch "$CACHE/$kver.tmp/ok"
  mv "$CACHE/$kver.tmp" "$CACHE/$kver"
fi
ln -sfn "$kver" "$CACHE/current"
