#!/bin/sh
# PID 1 of the knfsd guest (test/vm/knfsd-rpcbind.test.ts), after switch_root: the kernel's own
# NFS server (nfsd and its lockd, modules of the guest kernel) with Debian's userland (rpcbind,
# exportfs, rpc.nfsd), and lockdropd with `rpcbind: takeover` and `exportsFrom: knfsd`. Each
# scene's result is one console line `lockdrop-knfsd: NAME JSON-or-text`; then it powers off.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
out() { echo "lockdrop-knfsd: $*"; }
fail() { out "FAILED $*"; sync; echo o > /proc/sysrq-trigger; sleep 10; }
mount -t proc proc /proc
mount -t sysfs sys /sys
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^lockdrop\.$1=//p"; }
repo=$(arg repo)
for d in /run /var/lib/nfs /srv; do mount -t tmpfs -o mode=0755 tmpfs "$d"; done
mkdir -p /run/rpcbind /run/lock /var/lib/nfs/sm /var/lib/nfs/sm.bak /var/lib/nfs/v4recovery /srv/export
touch /var/lib/nfs/etab /var/lib/nfs/rmtab
mount -t nfsd nfsd /proc/fs/nfsd || fail "mount nfsd"
hostname knfsd-guest
printf '127.0.0.1 localhost knfsd-guest\n' > /etc/hosts
ip link set lo up
rpcbind -w || fail rpcbind
# The kernel's lockd on ports of its own (docs/cluster.md, "Beside knfsd").
sysctl -q -w fs.nfs.nlm_tcpport=32768 fs.nfs.nlm_udpport=32768 || fail "nlm port sysctls"
now() { cut -d' ' -f1 /proc/uptime; }
nlm() { rpcinfo -p 2>/dev/null | awk '$1==100021 {print $4}' | sort -u | tr '\n' ' '; }
# Polls (every 20 ms, up to 10 s) until NLM is registered on lockdrop's port 4045 only.
owned() {
  out "$1-returned $(date +%s.%N)"
  t0=$(now)
  i=0
  while [ "$(nlm)" != "4045 " ] && [ $i -lt 500 ]; do sleep 0.02; i=$((i + 1)); done
  out "$1 {\"nlm\":\"$(nlm)\",\"after\":$(echo "$(now) $t0" | awk '{printf "%.2f", $1 - $2}')}"
}
cat > /run/lockdrop.yaml <<YAML
rpcbind: takeover
nlmPort: 4045
nsmPort: 4046
sources: [poll]
stateDir: /run/lockdrop-state
control: /run/lockdrop/control.sock
exportsFrom: knfsd
YAML
exportfs -o rw,fsid=1,insecure,no_subtree_check '*:/srv/export' || fail exportfs
"$(command -v node)" "$repo/bin/lockdropd" --config /run/lockdrop.yaml > /run/lockdropd.log 2>&1 &
pid=$!
i=0
until grep -q ' started: ' /run/lockdropd.log 2>/dev/null; do
  kill -0 $pid 2>/dev/null || fail "lockdropd exited: $(tail -3 /run/lockdropd.log)"
  sleep 0.2; i=$((i + 1)); [ $i -lt 600 ] || fail "lockdropd did not start: $(tail -3 /run/lockdropd.log)"
done
out "started {\"nlm\":\"$(nlm)\",\"at\":$(now)}"
out "exports $("$(command -v node)" "$repo/bin/lockdropctl" --control /run/lockdrop/control.sock exports --json | tr -d '\n')"
rpc.nfsd -N 4 4 || fail "rpc.nfsd"
owned nfsd-start
rpc.nfsd 0 || fail "rpc.nfsd 0"
owned nfsd-stop
rpc.nfsd -N 4 4 || fail "rpc.nfsd again"
owned nfsd-restart
grep '"part":"rpcbind"' /run/lockdropd.log | sed 's/^/lockdrop-knfsd-log: /'
out "rpcbind-log $(grep -c 'taking the registration back\|registered again' /run/lockdropd.log)"
out "done"
sync
echo o > /proc/sysrq-trigger
sleep 10
