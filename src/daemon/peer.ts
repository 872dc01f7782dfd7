// Who is on the other end of a control connection? With the native addon: SO_PEERCRED on the
// accepted socket (the kernel's record of the connecting process's effective uid, mapped into our
// user namespace; a getsockopt, no fork). Without it, the fallback needs no native code and is
// slower (tens of ms per connection, one `ss` run): our end's inode (fstat of the accepted fd) →
// the peer socket's inode and the processes holding it (sock_diag and /proc, through `ss -xp`;
// for a peer in another network namespace, a scan of /proc/*/fd) → their effective uids. It
// cannot see a client outside lockdropd's PID namespace (its /proc does not show one): such a
// peer is refused, never guessed.
import { execFile } from 'node:child_process';
import { fstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { Socket } from 'node:net';
import { promisify } from 'node:util';
import { addonStatus, peerCredentials } from '../addon';

const run = promisify(execFile);

/** How this process identifies peers: SO_PEERCRED, or `ss` and /proc when the addon is unavailable (reason). */
export type PeerCheck = { method: 'SO_PEERCRED' } | { method: 'ss'; reason: string };

export function peerCheck(): PeerCheck {
  const addon = addonStatus();
  return addon.available ? { method: 'SO_PEERCRED' } : { method: 'ss', reason: addon.reason };
}

/** The file descriptor behind a connected net.Socket (libuv pipe handle). */
function socketFd(socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('the connection has no file descriptor (closed, or not a libuv pipe)');
  return fd;
}

/**
 * The effective uid of the peer. Throws an Error saying why when it cannot be told (no fd, the
 * getsockopt failed; in the fallback: peer gone, in another PID namespace, or its socket shared by
 * processes of different uids).
 */
export async function peerUid(socket: Socket, check: PeerCheck = peerCheck()): Promise<number> {
  const fd = socketFd(socket);
  return check.method === 'SO_PEERCRED' ? peerCredentials(fd).uid : peerUidBySs(fd);
}

/**
 * From one `ss -xpn` listing (sock_diag for the sockets, /proc for their holders): the peer
 * socket's inode, and the pids holding it when the peer is in our network namespace (undefined
 * when it is not: its socket is not listed here).
 */
async function peerOf(localInode: number, netnsOf?: number): Promise<{ inode: number; pids: number[] | undefined } | undefined> {
  const { stdout } = netnsOf === undefined
    ? await run('ss', ['-xpnH'], { maxBuffer: 32 << 20 })
    : await run('nsenter', [`--net=/proc/${netnsOf}/ns/net`, 'ss', '-xpnH'], { maxBuffer: 32 << 20 });
  // u_str ESTAB recvq sendq <path|*> <inode> <peerpath|*> <peerinode> [users:(("cmd",pid=N,fd=N),…)]
  // A path may hold spaces: the inodes are read relative to the users column or the end.
  const rows = stdout.split('\n').map((line) => {
    const users = line.indexOf(' users:(');
    const f = (users >= 0 ? line.slice(0, users) : line).trim().split(/\s+/);
    const pids = users >= 0 ? [...line.slice(users).matchAll(/pid=(\d+)/g)].map((m) => Number(m[1])) : [];
    return { local: Number(f[f.length - 3]), peer: Number(f[f.length - 1]), pids, ok: f.length >= 8 };
  });
  const ours = rows.find((r) => r.ok && r.local === localInode);
  if (!ours) return undefined;
  const theirs = rows.find((r) => r.ok && r.local === ours.peer);
  return { inode: ours.peer, pids: theirs && theirs.pids.length ? theirs.pids : undefined };
}

const euid = (pid: number): number | undefined => {
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^Uid:\s+\d+\s+(\d+)/m);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined; // exited meanwhile
  }
};

/** Effective uids of the processes holding socket inode `inode` open. */
function holderUids(inode: number): number[] {
  const target = `socket:[${inode}]`;
  const uids: number[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or not ours to read
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (link !== target) continue;
      const uid = euid(Number(pid));
      if (uid !== undefined) uids.push(uid);
      break;
    }
  }
  return uids;
}

/** One process per network namespace other than ours (at most MAX_NETNS), to enter for sock_diag. */
const MAX_NETNS = 64;
function otherNetnsPids(): number[] {
  const ours = readlinkSync('/proc/self/ns/net');
  const seen = new Map<string, number>();
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || seen.size >= MAX_NETNS) continue;
    try {
      const ns = readlinkSync(`/proc/${pid}/ns/net`);
      if (ns !== ours && !seen.has(ns)) seen.set(ns, Number(pid));
    } catch {
      /* gone or not ours to read */
    }
  }
  return [...seen.values()];
}

/** The fallback: the effective uid every process holding the peer socket agrees on. */
async function peerUidBySs(fd: number): Promise<number> {
  const local = fstatSync(fd).ino;
  let peer = await peerOf(local);
  // A connection from another network namespace belongs to that namespace (the kernel makes the
  // accepted socket in the connecting socket's namespace): look in each other namespace.
  for (const pid of peer ? [] : otherNetnsPids()) {
    peer = await peerOf(local, pid).catch(() => undefined);
    if (peer) break;
  }
  if (peer === undefined) throw new Error(`socket inode ${local} not listed by ss in any network namespace (peer gone?)`);
  // A peer in another network namespace is not in our listing: find its holders in /proc.
  const uids = new Set(peer.pids ? peer.pids.map(euid) : holderUids(peer.inode));
  uids.delete(undefined);
  if (uids.size === 1) return [...uids][0]!;
  throw new Error(uids.size === 0
    ? "no process holding the peer socket is visible (in another PID namespace, or gone; the native addon's SO_PEERCRED would tell)"
    : `the peer socket is held by processes of uids ${[...uids].join(', ')}`);
}
