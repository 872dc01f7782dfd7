// Who is on the other end of a unix socket? Node exposes no SO_PEERCRED, so: our end's inode
// (fstat of the accepted fd) → the peer socket's inode (sock_diag, through `ss -x`) → every
// process holding that inode (/proc/*/fd) → their effective uid. Slower than SO_PEERCRED (a
// few ms per connection) but enough for an admin socket, and it needs no native code.
import { execFile } from 'node:child_process';
import { fstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { Socket } from 'node:net';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The file descriptor behind a connected net.Socket (libuv pipe handle), if any. */
function socketFd(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/** The peer socket's inode, from `ss -xn` (columns: … Local Address:Port  Peer Address:Port). */
async function peerInode(localInode: number): Promise<number | undefined> {
  const { stdout } = await run('ss', ['-xnH'], { maxBuffer: 16 << 20 });
  for (const line of stdout.split('\n')) {
    // u_str ESTAB recvq sendq <path|*> <inode> <peerpath|*> <peerinode>: read from the end, a path may hold spaces
    const f = line.trim().split(/\s+/);
    if (f.length >= 8 && Number(f[f.length - 3]) === localInode) return Number(f[f.length - 1]);
  }
  return undefined;
}

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
      try {
        const uidLine = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^Uid:\s+(\d+)\s+(\d+)/m);
        if (uidLine) uids.push(Number(uidLine[2]));
      } catch {
        /* exited meanwhile */
      }
      break;
    }
  }
  return uids;
}

/**
 * The effective uid of the peer, when every process holding the peer socket agrees on one;
 * undefined when it cannot be told (peer gone, socket shared by processes of different uids).
 */
export async function peerUid(socket: Socket): Promise<number | undefined> {
  const fd = socketFd(socket);
  if (fd === undefined) return undefined;
  const peer = await peerInode(fstatSync(fd).ino);
  if (peer === undefined) return undefined;
  const uids = new Set(holderUids(peer));
  return uids.size === 1 ? [...uids][0] : undefined;
}
