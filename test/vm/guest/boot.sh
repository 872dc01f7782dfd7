#!/bin/sh
# PID 1 of the test guest, from the host's tree after switch_root: the client machine's own
# services as Debian starts them (rpcbind, sm-notify, rpc.statd), then the NFS mount and the
# test's agent. Its settings come from the kernel command line (lockdrop.*=...).
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
say() { echo "lockdrop-vm: $*"; }
fail() { say "FAILED: $*"; sync; echo o > /proc/sysrq-trigger; sleep 10; }
mount -t proc proc /proc
mount -t sysfs sys /sys
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^lockdrop\.$1=//p"; }
name=$(arg host) addr=$(arg addr) server=$(arg server) export=$(arg export) agent=$(arg agent)
# The tree may be a clone under the host's /tmp, which a tmpfs hides below: keep the agent first.
agent_code=$(cat "$agent") || fail "cannot read the agent $agent"
for d in /run /tmp /var/tmp; do mount -t tmpfs -o mode=1777 tmpfs "$d"; done
printf '%s\n' "$agent_code" > /run/lockdrop-agent.pl
mkdir -p /run/rpcbind /run/lock /mnt/nfs
# The client's NSM state survives its reboots, as on a disk: the host shares a folder for it.
mount -t 9p -o trans=virtio,version=9p2000.L,rw nfsstate /var/lib/nfs || fail "9p mount of the NSM state"
mkdir -p /var/lib/nfs/sm /var/lib/nfs/sm.bak
chown statd:nogroup /var/lib/nfs/sm /var/lib/nfs/sm.bak /var/lib/nfs 2>/dev/null
hostname "$name"
echo "$name" > /etc/hostname
printf '127.0.0.1 localhost\n%s %s\n' "${addr%/*}" "$name" > /etc/hosts
ip link set lo up
ip addr add "$addr" dev eth0 || fail "address $addr"
ip link set eth0 up
rpcbind -w || fail rpcbind
# A reboot as nfs-utils has it: sm-notify tells the servers of the last boot, then statd serves.
sm-notify || fail sm-notify
rpc.statd --no-notify || fail rpc.statd
say "services up at $(cut -d' ' -f1 /proc/uptime) s (state $(od -An -tu4 /var/lib/nfs/state | tr -d ' '))"
for i in $(seq 1 30); do
  mount -t nfs -o vers=3,proto=tcp,mountproto=tcp,hard,timeo=100 "$server:$export" /mnt/nfs 2>/tmp/mount.err && break
  sleep 1
done
mountpoint -q /mnt/nfs || fail "NFS mount of $server:$export: $(cat /tmp/mount.err)"
say "mounted $server:$export at $(cut -d' ' -f1 /proc/uptime) s"
# The agent's port by its name (its number depends on the devices before it).
for p in /sys/class/virtio-ports/*; do [ "$(cat "$p/name")" = ctl ] && port=/dev/${p##*/}; done
[ -n "$port" ] || fail "no virtio serial port named ctl"
exec perl /run/lockdrop-agent.pl "$port"
