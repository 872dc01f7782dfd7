#!/usr/bin/env bash
# Builds lockdrop's eBPF probes (CO-RE) into dist/bpf/. vmlinux.h is generated from the running
# kernel's BTF. Fails (non-zero) without clang, bpftool or BTF: lockdrop then runs without probes.
set -euo pipefail
cd "$(dirname "$0")"
out=../dist/bpf
for tool in clang bpftool; do
  command -v "$tool" >/dev/null || { echo "build:bpf: $tool not found" >&2; exit 1; }
done
[ -r /sys/kernel/btf/vmlinux ] || { echo "build:bpf: no kernel BTF at /sys/kernel/btf/vmlinux" >&2; exit 1; }
[ -r /usr/include/bpf/bpf_helpers.h ] || { echo "build:bpf: libbpf headers missing (libbpf-dev)" >&2; exit 1; }
bpftool btf dump file /sys/kernel/btf/vmlinux format c > vmlinux.h.tmp
if cmp -s vmlinux.h.tmp vmlinux.h; then rm vmlinux.h.tmp; else mv vmlinux.h.tmp vmlinux.h; fi
case "$(uname -m)" in
  x86_64) arch=x86 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;;
esac
mkdir -p "$out"
for prog in lockdrop selftest; do
  clang -target bpf -O2 -g -Wall -Werror -D__TARGET_ARCH_"$arch" -I. -I/usr/include/"$(uname -m)"-linux-gnu -c "$prog.bpf.c" -o "$out/$prog.bpf.o"
  echo "build:bpf: $out/$prog.bpf.o"
done
