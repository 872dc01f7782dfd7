#!/bin/sh
# PID 1 of the knfsd server guest (test/vm/knfsd-scenes.test.ts), after switch_root: an ext4
# filesystem (/dev/vda, made by the test) exported by the kernel's nfsd with Debian's userland
# (rpcbind, exportfs, rpc.mountd, rpc.nfsd), the kernel's lockd displaced as docs/cluster.md's
# "Beside knfsd" says, and lockdropd (`exportsFrom: knfsd`, no `exports:`) as NLM and statd —
# or, with lockdrop.anchor=kernel, the kernel's own lockd and rpc.statd. Then the test's agent.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
say() { echo "lockdrop-vm: $*"; }
fail() { say "FAILED: $*"; sync; echo o > /proc/sysrq-trigger; sleep 10; }
mount -t proc proc /proc
mount -t sysfs sys /sys
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^lockdrop\.$1=//p"; }
name=$(arg host) addr=$(arg addr) export=$(arg export) agent=$(arg agent) repo=$(arg repo) anchor=$(arg anchor)
agent_code=$(cat "$agent") || fail "cannot read the agent $agent"
for d in /run /tmp /var/tmp /var/lib/nfs /srv; do mount -t tmpfs -o mode=0755 tmpfs "$d"; done
chmod 1777 /tmp /var/tmp
printf '%s\n' "$agent_code" > /run/lockdrop-agent.pl
mkdir -p /run/rpcbind /run/lock /var/lib/nfs/sm /var/lib/nfs/sm.bak /var/lib/nfs/v4recovery "$export"
chown statd:nogroup /var/lib/nfs/sm /var/lib/nfs/sm.bak 2>/dev/null
touch /var/lib/nfs/etab /var/lib/nfs/rmtab
mount -t ext4 /dev/vda "$export" || fail "mount /dev/vda"
chmod 1777 "$export"
mount -t nfsd nfsd /proc/fs/nfsd || fail "mount nfsd"
hostname "$name"
printf '127.0.0.1 localhost\n%s %s\n' "${addr%/*}" "$name" > /etc/hosts
ip link set lo up
ip addr add "$addr" dev eth0 || fail "address $addr"
ip link set eth0 up
rpcbind -w || fail rpcbind
# NFSv4's grace and lease at their minimum: the scenes would otherwise wait 90 s for the first open.
echo 10 > /proc/fs/nfsd/nfsv4gracetime
echo 10 > /proc/fs/nfsd/nfsv4leasetime
# An export with default options but rw: no fsid=, so knfsd names it by the filesystem's uuid.
exportfs -o rw "*:$export" || fail exportfs
# NFSv4's root: the guest's / (an overlay over 9p) cannot be exported, so mountd's automatic
# pseudo root fails ("Cannot export /"); the tmpfs above the export is the root instead, and
# NFSv4 clients mount $export's path below it (/srv/export: server:/export).
exportfs -o ro,fsid=0 "*:${export%/*}" || fail "exportfs of the NFSv4 root"
# In the foreground: its log (the test prints it on a failed mount) goes to a file.
rpc.mountd -F -d auth -d call > /run/mountd.log 2>&1 &
if [ "$anchor" = kernel ]; then
  sysctl -q -w fs.nfs.nlm_grace_period=10
  rpc.statd --no-notify || fail rpc.statd
  rpc.nfsd 4 || fail rpc.nfsd
  say "knfsd with its own lockd at $(cut -d' ' -f1 /proc/uptime) s"
else
  # docs/cluster.md, "Beside knfsd": the kernel's lockd on ports of its own, no rpc.statd.
  sysctl -q -w fs.nfs.nlm_tcpport=32768 fs.nfs.nlm_udpport=32768 || fail "nlm port sysctls"
  rpc.nfsd 4 || fail rpc.nfsd
  cat > /run/lockdrop.yaml <<YAML
rpcbind: takeover
nlmPort: 4045
nsmPort: 4046
sources: [poll]
pollInterval: 1
grace: 1
stateDir: /run/lockdrop-state
control: /run/lockdrop/control.sock
exportsFrom: knfsd
YAML
  "$(command -v node)" "$repo/bin/lockdropd" --config /run/lockdrop.yaml > /run/lockdropd.log 2>&1 &
  pid=$!
  i=0
  until grep -q ' started: ' /run/lockdropd.log 2>/dev/null; do
    kill -0 $pid 2>/dev/null || fail "lockdropd exited: $(tail -3 /run/lockdropd.log)"
    sleep 0.2; i=$((i + 1)); [ $i -lt 600 ] || fail "lockdropd did not start: $(tail -3 /run/lockdropd.log)"
  done
  say "lockdropd started at $(cut -d' ' -f1 /proc/uptime) s"
fi
for p in /sys/class/virtio-ports/*; do [ "$(cat "$p/name")" = ctl ] && port=/dev/${p##*/}; done
[ -n "$port" ] || fail "no virtio serial port named ctl"
exec perl /run/lockdrop-agent.pl "$port"
