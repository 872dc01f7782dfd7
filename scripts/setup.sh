#!/usr/bin/env bash
# Installs what lockdrop's demo and tests use: npm packages, and (as root) the Debian peers and build tools.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool rpcbind nfs-common tshark iproute2 resource-agents keepalived nfs-ganesha nfs-ganesha-vfs e2fsprogs python3 iputils-arping qemu-system-x86 busybox-static)

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # etcd for the etcd store's tests, which start their own members: the package's own service is
  # never started (policy-rc.d says no while it installs) and stays masked.
  if ! command -v etcd >/dev/null; then
    echo "setup: installing etcd-server (its service masked)" >&2
    policy=/usr/sbin/policy-rc.d
    [ -e "$policy" ] && cp -p "$policy" "$policy.lockdrop-setup"
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null || true
    if [ -e "$policy.lockdrop-setup" ]; then mv "$policy.lockdrop-setup" "$policy"; else rm -f "$policy"; fi
    systemctl mask etcd.service >/dev/null 2>&1 || ln -sf /dev/null /etc/systemd/system/etcd.service
  fi
fi

# Debian's exportfs for the exportsFrom: knfsd tests (test/exports/knfsd-follow.test.ts): its
# services must neither start at install (policy-rc.d refuses) nor stay enabled — lockdrop
# replaces the kernel's lockd and rpc.statd, and this machine has no nfsd.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! dpkg-query -W -f='${Status}' nfs-kernel-server 2>/dev/null | grep -q 'install ok installed'; then
  echo "setup: installing nfs-kernel-server (its services left stopped and disabled)" >&2
  policy=/usr/sbin/policy-rc.d
  if [ -e "$policy" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nfs-kernel-server >/dev/null
  else
    printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nfs-kernel-server >/dev/null || { rm -f "$policy"; exit 1; }
    rm -f "$policy"
  fi
  systemctl disable nfs-server.service nfs-blkmap.service >/dev/null 2>&1 || true
  update-rc.d nfs-kernel-server disable >/dev/null 2>&1 || true
fi

# The kernel-client VM test's kernel (test/vm): Debian's, unpacked, never installed.
bash test/vm/fetch-kernel.sh || echo "setup: test/vm/fetch-kernel.sh failed; the VM test will say what it lacks" >&2

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

# The native addon is optional: without it lockdrop runs on polling alone and says so.
if [ -f native/binding.gyp ]; then
  npm run --silent build:native || echo "setup: native addon not built; lockdrop will run without netlink/eBPF" >&2
fi
npm run --silent build
