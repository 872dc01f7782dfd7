#!/bin/bash
# The TCP path of bench/nlm-lock.ts with the server alone in its process, so that strace and the
# V8 profiler see only it. Prints the server's counters at the generator's start and stop (RPCs,
# read/write syscalls from /proc, CPU µs) and the generator's result; with `strace` the
# syscall summary of the server's threads, with `prof` the V8 tick profile (--prof), processed,
# with `cpuprof` a .cpuprofile (--cpu-prof) left in the folder it names, for DevTools.
# The generator: `node` (bench/nlm-lock.ts's, all owners on one connection, so calls batch) or
# `c` (bench/nlm-load.c, a connection and a thread per owner with one call in flight each, as
# libtirpc clients and bench/nlm-vs-ganesha.ts have it).
#   bash bench/profile-tcp.sh OWNERS SECONDS [plain|strace|prof|cpuprof] [node|c]
set -euo pipefail
cd "$(dirname "$0")/.."
owners=${1:-8}; seconds=${2:-4}; mode=${3:-plain}; gen=${4:-node}
out=$(mktemp -d /tmp/lockdrop-profile-tcp.XXXXXX)
flags=(--import tsx)
[ "$mode" = prof ] && flags=(--prof "--logfile=$out/v8.log" --no-logfile-per-isolate --import tsx)
[ "$mode" = cpuprof ] && flags=(--cpu-prof "--cpu-prof-dir=$out" --import tsx)
node "${flags[@]}" bench/nlm-lock.ts serve > "$out/server.log" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q port "$out/server.log" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/.*"port":\([0-9]*\).*/\1/p' "$out/server.log" | head -1)
if [ "$mode" = strace ]; then
  strace -c -f -p "$server" -o "$out/strace.txt" & tracer=$!
  sleep 1
fi
if [ "$gen" = c ]; then
  gcc -O2 -pthread -o "$out/nlm-load" bench/nlm-load.c
  kill -USR2 $server
  "$out/nlm-load" tcp 127.0.0.1 "$port" "$owners" 0 "$((seconds * 1000))" 0102030405060708090a0b0c0d0e0f1011121314 "$server" 127.0.0.1
  kill -USR2 $server
else
  node --import tsx bench/nlm-lock.ts drive "$port" "$owners" "$((seconds * 1000))" "$server"
fi
sleep 0.3
[ "$mode" = strace ] && { kill -INT $tracer; wait $tracer || true; }
kill -TERM $server; wait $server || true
trap - EXIT
tail -n +2 "$out/server.log"
[ "$mode" = strace ] && cat "$out/strace.txt"
[ "$mode" = prof ] && node --prof-process "$out/v8.log" 2>/dev/null | sed -n '/\[Summary\]/,/\[C++ entry points\]/p;/\[Bottom up/,+12p'
if [ "$mode" = cpuprof ]; then echo "profile: $(ls "$out"/*.cpuprofile)"; else rm -rf "$out"; fi
