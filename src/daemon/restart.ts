// A planned restart keeps every kernel lock (issue 24). The old lockdropd stops serving, takes a
// snapshot of its lock table (locks, shares, graces, the floating addresses it held, its ports,
// which open file description is which owner's on which file) into a memfd, and hands that and
// every description to the next process: to systemd's file descriptor store (sd_notify
// FDSTORE=1, FDNAME=, SCM_RIGHTS), or to a new lockdropd it starts itself (`lockdropctl
// restart`), exiting once that one is ready. Either way the next process receives them as
// systemd passes descriptors (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, from fd 3), adopts the
// descriptions, rebuilds its table over them and serves on the same ports with no grace and no
// SM_NOTIFY. The descriptions never close in between, so the kernel never lets a lock go.
//
// A hand-over that cannot be trusted (a snapshot cut off or corrupt, a descriptor missing or
// naming another file, an export gone) is refused as a whole, logged, its descriptors closed
// (and removed from systemd's store, so a restart cannot loop on them): the daemon starts as
// after a crash, its floating addresses' journals taken over and reclaimed by their clients.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fstatSync, readSync, writeSync } from 'node:fs';
import type { Logger } from 'pino';
import { bindNotifySocket, memfdCreate, receiveNotify, sdNotifyWithFds, setCloexec } from '../addon';
import { ofdCancelAll } from '../addon/files';
import type { ExportedFiles } from '../files';
import { ownerKey, type GraceScope, type HeldLock, type JournalEntry, type LockTable, type ShareAccess, type ShareMode } from '../locks';
import type { Config } from './config';

export const SNAPSHOT_FDNAME = 'lockdrop-snapshot';
const DESCRIPTION_FDNAME = 'lockdrop-d';
const MAGIC = Buffer.from('LOCKDROP-SNAPSHOT\n');
const VERSION = 1;

/** A hand-over this process cannot use: why, in one line. */
export class HandOverError extends Error {
  override readonly name = 'HandOverError';
}

interface OwnerJson { host: string; svid: number; oh: string }

/** What the next process needs to rebuild the table over the descriptions it inherits. */
export interface Snapshot {
  version: number;
  pid: number;
  at: number;
  ports: { nlm: number; nsm: number };
  /** Floating addresses this node held (their journals written here). */
  floating: string[];
  /** Graces running, with when each ends (ms since epoch). */
  graces: { scope: GraceScope; endsAt: number }[];
  /** One per inherited description: its name, whose on which file, and the file's identity to check it by. */
  descriptions: { name: string; fileKey: string; ownerKey: string; writable: boolean; exportPath: string; dev: string; ino: string }[];
  /** Offsets and lengths as decimal strings, handles as hex. */
  locks: { owner: OwnerJson; fh: string; exclusive: boolean; offset: string; length: string; serverAddress: string; awaiting: boolean }[];
  shares: { owner: { host: string; oh: string }; fh: string; mode: number; access: number; serverAddress: string }[];
}

/** Magic, a 4-byte length, the SHA-256 of the body, the body (JSON): anything cut off or altered is detected. */
export function encodeSnapshot(s: Snapshot): Buffer {
  const body = Buffer.from(JSON.stringify(s), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([MAGIC, len, createHash('sha256').update(body).digest(), body]);
}

export function decodeSnapshot(b: Buffer): Snapshot {
  const head = MAGIC.length + 4 + 32;
  if (b.length < head || !b.subarray(0, MAGIC.length).equals(MAGIC)) throw new HandOverError(`the snapshot is not one (${b.length} bytes, no header)`);
  const n = b.readUInt32BE(MAGIC.length);
  if (b.length !== head + n) throw new HandOverError(`the snapshot is cut off or too long: ${b.length - head} bytes of body, ${n} announced`);
  const body = b.subarray(head);
  if (!createHash('sha256').update(body).digest().equals(b.subarray(MAGIC.length + 4, head))) throw new HandOverError('the snapshot is corrupt: its checksum does not match');
  let s: Snapshot;
  try {
    s = JSON.parse(body.toString('utf8')) as Snapshot;
  } catch (err) {
    throw new HandOverError(`the snapshot does not parse: ${(err as Error).message}`);
  }
  if (s.version !== VERSION) throw new HandOverError(`snapshot version ${s.version}, this lockdropd reads ${VERSION}`);
  for (const k of ['floating', 'graces', 'descriptions', 'locks', 'shares'] as const) if (!Array.isArray(s[k])) throw new HandOverError(`the snapshot has no ${k} list`);
  return s;
}

const hex = (latin1: string): string => Buffer.from(latin1, 'latin1').toString('hex');
const ownerJson = (o: HeldLock['owner']): OwnerJson => ({ host: o.host, svid: o.svid, oh: o.oh.toString('hex') });

/**
 * The table and its descriptions as they are now (serving stopped): the snapshot in a memfd
 * first, then every description, and their FDNAMEs in the same order.
 */
export function takeSnapshot(table: LockTable, files: ExportedFiles | undefined, ports: Snapshot['ports'], floating: string[]): { snapshot: Snapshot; fds: number[]; names: string[] } {
  const descriptions: Snapshot['descriptions'] = [];
  const fds: number[] = [];
  for (const d of files?.descriptions() ?? []) {
    const st = fstatSync(d.fd, { bigint: true });
    descriptions.push({ name: `${DESCRIPTION_FDNAME}${descriptions.length}`, fileKey: hex(d.fileKey), ownerKey: d.ownerKey, writable: d.writable, exportPath: d.exportPath, dev: String(st.dev), ino: String(st.ino) });
    fds.push(d.fd);
  }
  const locks = [...table.locks()].map((l) => ({ owner: ownerJson(l.owner), fh: l.fh.toString('hex'), exclusive: l.exclusive, offset: String(l.offset), length: String(l.length), serverAddress: l.serverAddress, awaiting: l.awaitingReclaim === true }));
  const shares = [...table.shares()].map((s) => ({ owner: { host: s.owner.host, oh: s.owner.oh.toString('hex') }, fh: s.fh.toString('hex'), mode: s.mode, access: s.access, serverAddress: s.serverAddress }));
  const graces = table.grace.active().map((p) => ({ scope: p.scope, endsAt: p.endsAt }));
  const snapshot: Snapshot = { version: VERSION, pid: process.pid, at: Date.now(), ports, floating, graces, descriptions, locks, shares };
  const mem = memfdCreate(SNAPSHOT_FDNAME);
  const bytes = encodeSnapshot(snapshot);
  for (let o = 0; o < bytes.length; ) o += writeSync(mem, bytes, o);
  return { snapshot, fds: [mem, ...fds], names: [SNAPSHOT_FDNAME, ...descriptions.map((d) => d.name)] };
}

/** Descriptors passed as systemd passes them: by name, all of them (fds 3 … 3+LISTEN_FDS-1). */
export interface Inherited {
  byName: Map<string, number>;
  all: number[];
}

/**
 * The descriptors this process was started with (sd_listen_fds_with_names(3)): only when
 * LISTEN_PID names this process. The variables are removed and the descriptors made
 * close-on-exec, so nothing the daemon starts inherits them. Throws HandOverError when the
 * variables disagree (names and count).
 */
export function inheritedDescriptors(env: NodeJS.ProcessEnv = process.env): Inherited | undefined {
  const { LISTEN_PID: pid, LISTEN_FDS: count, LISTEN_FDNAMES: names } = env;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (pid === undefined || count === undefined || Number(pid) !== process.pid) return undefined;
  const n = Number(count);
  if (!Number.isInteger(n) || n < 0 || n > 1 << 20) throw new HandOverError(`LISTEN_FDS=${count} is not a count`);
  const all = Array.from({ length: n }, (_, i) => 3 + i);
  for (const fd of all) {
    try {
      setCloexec(fd, true);
    } catch (err) {
      throw new HandOverError(`LISTEN_FDS=${n} but fd ${fd} is not open (${(err as Error).message})`);
    }
  }
  const list = names === undefined ? [] : names.split(':');
  if (list.length !== n) {
    for (const fd of all) closeSync(fd);
    throw new HandOverError(`LISTEN_FDNAMES names ${list.length} descriptors, LISTEN_FDS passes ${n}`);
  }
  const byName = new Map<string, number>();
  list.forEach((name, i) => byName.set(name, 3 + i));
  return { byName, all };
}

/** An inherited hand-over, checked: the snapshot, and each description's descriptor by its name. */
export interface HandOver {
  snapshot: Snapshot;
  fds: Map<string, number>;
  inherited: Inherited;
}

/**
 * Reads and checks an inherited hand-over against this process's configuration: the snapshot
 * decodes; every description it names was passed, is a regular file, the same file (device and
 * inode) as when it was taken, of an export locked on its files here. Throws HandOverError.
 */
export function readHandOver(inh: Inherited, cfg: Config): HandOver {
  const mem = inh.byName.get(SNAPSHOT_FDNAME);
  if (mem === undefined) throw new HandOverError(`no descriptor named ${SNAPSHOT_FDNAME} among the ${inh.all.length} passed`);
  const size = Number(fstatSync(mem).size);
  const bytes = Buffer.alloc(size);
  for (let o = 0; o < size; ) {
    const r = readSync(mem, bytes, o, size - o, o);
    if (r === 0) break;
    o += r;
  }
  const snapshot = decodeSnapshot(bytes);
  const onFiles = new Set(cfg.exports.filter((e) => e.fileLocks).map((e) => e.path));
  const fds = new Map<string, number>();
  const seen = new Set<string>();
  for (const d of snapshot.descriptions) {
    const fd = inh.byName.get(d.name);
    if (fd === undefined) throw new HandOverError(`description ${d.name} was not passed`);
    const st = fstatSync(fd, { bigint: true });
    if (!st.isFile() || String(st.dev) !== d.dev || String(st.ino) !== d.ino) throw new HandOverError(`descriptor ${fd} (${d.name}) is not the file the snapshot names (device ${d.dev}, inode ${d.ino})`);
    if (!onFiles.has(d.exportPath)) throw new HandOverError(`description ${d.name} is of export ${d.exportPath}, not locked on its files in this configuration`);
    const key = `${d.fileKey}/${d.ownerKey}`;
    if (seen.has(key)) throw new HandOverError(`two descriptions for one owner and file (${d.name})`);
    seen.add(key);
    fds.set(d.name, fd);
  }
  return { snapshot, fds, inherited: inh };
}

/** Closes every inherited descriptor (a refused hand-over): the kernel lets their locks go. */
export function closeInherited(inh: Inherited): void {
  for (const fd of inh.all) {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
  }
}

const ownerOf = (o: OwnerJson): HeldLock['owner'] => ({ host: o.host, svid: o.svid, oh: Buffer.from(o.oh, 'hex') });

export interface Restored {
  locks: number;
  shares: number;
  /** Locks the table refused to take back (each logged): their bytes stay held on the file until its owner's description closes. */
  refused: number;
  descriptions: number;
  /** Descriptions no lock was restored on (a kernel wait's only, or of an address not here now): closed. */
  closed: number;
}

/**
 * Rebuilds the table over the inherited descriptions: adopted by the files part first, so that
 * each lock set again is found already held by its owner's description (no gap, no new open);
 * awaiting locks of an address in grace arrive again as awaiting; shares; graces with the time
 * they had left. Locks through an address that is neither present nor the node's (`keep`) are
 * left out: their journal keeps them for whichever node holds that address now.
 */
export function restoreTable(h: HandOver, table: LockTable, files: ExportedFiles | undefined, keep: (serverAddress: string) => boolean, log: Logger): Restored {
  const s = h.snapshot;
  const adopted = new Set<string>();
  for (const d of s.descriptions) {
    if (!files) throw new HandOverError('descriptions were passed but no export is locked on its files here');
    const fileKey = Buffer.from(d.fileKey, 'hex').toString('latin1');
    files.adoptDescription(fileKey, d.ownerKey, h.fds.get(d.name)!, d.writable, d.exportPath);
    adopted.add(`${fileKey}/${d.ownerKey}`);
  }
  const used = new Set<string>();
  let locks = 0;
  let refused = 0;
  const awaiting = new Map<string, Map<string, JournalEntry>>();
  for (const l of s.locks) {
    if (!keep(l.serverAddress)) continue;
    const owner = ownerOf(l.owner);
    const fh = Buffer.from(l.fh, 'hex');
    used.add(`${fh.toString('latin1')}/${ownerKey(owner)}`);
    if (l.awaiting) {
      const byKey = awaiting.get(l.serverAddress) ?? new Map<string, JournalEntry>();
      awaiting.set(l.serverAddress, byKey);
      const k = `${ownerKey(owner)}/${l.fh}`;
      const e = byKey.get(k) ?? { owner, fh, exportId: undefined, locks: [] };
      byKey.set(k, e);
      e.locks.push({ offset: BigInt(l.offset), length: BigInt(l.length), exclusive: l.exclusive });
      continue;
    }
    const status = table.lock({ fh, owner, exclusive: l.exclusive, offset: BigInt(l.offset), length: BigInt(l.length), serverAddress: l.serverAddress }, { block: false, reclaim: false });
    if (status === 'granted') locks++;
    else {
      refused++;
      log.error({ host: owner.host, fh: l.fh, offset: l.offset, length: l.length, status }, `planned restart: ${owner.host}'s lock on ${l.fh} [${l.offset}, +${l.length}] could not be taken back (${status})`);
    }
  }
  for (const [address, byKey] of awaiting) locks += table.arrive(address, [...byKey.values()]).locks;
  let shares = 0;
  for (const x of s.shares) {
    if (!keep(x.serverAddress)) continue;
    const r = table.share({ fh: Buffer.from(x.fh, 'hex'), owner: { host: x.owner.host, oh: Buffer.from(x.owner.oh, 'hex') }, mode: x.mode as ShareMode, access: x.access as ShareAccess, serverAddress: x.serverAddress }, true);
    if (r === 'granted') shares++;
    else log.error({ host: x.owner.host, fh: x.fh, status: r }, `planned restart: ${x.owner.host}'s share reservation on ${x.fh} could not be taken back (${r})`);
  }
  const now = Date.now();
  for (const g of s.graces) if (g.endsAt > now && (g.scope.kind !== 'address' || keep(g.scope.address))) table.grace.start(g.scope, (g.endsAt - now) / 1000);
  let closed = 0;
  for (const d of s.descriptions) {
    const fileKey = Buffer.from(d.fileKey, 'hex').toString('latin1');
    if (used.has(`${fileKey}/${d.ownerKey}`)) continue;
    files!.close(fileKey, d.ownerKey);
    closed++;
  }
  return { locks, shares, refused, descriptions: s.descriptions.length, closed };
}

/** After a hand-over (or a refused one) through systemd's store: the store lets go of its copies, so that a description this process closes releases its locks. */
export function removeFromStore(socket: string, names: Iterable<string>): void {
  for (const name of new Set(names)) sdNotifyWithFds(socket, `FDSTOREREMOVE=1\nFDNAME=${name}`, []);
}

/** The descriptions and the snapshot to systemd's file descriptor store, one named descriptor per message. */
export function handToStore(socket: string, fds: readonly number[], names: readonly string[]): void {
  for (let i = 0; i < fds.length; i++) sdNotifyWithFds(socket, `FDSTORE=1\nFDNAME=${names[i]}`, [fds[i]!]);
}

/** Cancels the kernel waits (their threads hold dups of descriptions) and waits, bounded, until their threads let go. */
export async function quiesceWaits(files: ExportedFiles | undefined, timeoutMs = 2_000): Promise<void> {
  if (!files || files.stats().waits === 0) return;
  ofdCancelAll();
  const until = Date.now() + timeoutMs;
  while (files.stats().waits !== 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
}

/** The variable naming the socket where a lockdropd started by `lockdropctl restart` says READY=1 to the one it replaces. */
export const RESTART_NOTIFY = 'LOCKDROP_RESTART_NOTIFY';

/**
 * Starts the next lockdropd (same program, arguments and environment) with the descriptors as
 * systemd would pass them, and resolves with its pid once it says READY=1 on a socket of ours;
 * rejects when it exits first or is not ready within `timeoutMs`.
 */
export async function reexec(fds: readonly number[], names: readonly string[], timeoutMs: number): Promise<number> {
  const address = `@lockdrop-restart-${process.pid}-${randomBytes(6).toString('hex')}`;
  const sock = bindNotifySocket(address);
  try {
    const env: NodeJS.ProcessEnv = { ...process.env, LISTEN_FDS: String(fds.length), LISTEN_FDNAMES: names.join(':'), [RESTART_NOTIFY]: address };
    delete env.NOTIFY_SOCKET;
    // LISTEN_PID must be the new process's own: the shell exports its pid and becomes the daemon.
    const child = spawn('/bin/sh', ['-c', 'LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"', process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
      stdio: ['inherit', 'inherit', 'inherit', ...fds],
      env,
      detached: true,
    });
    child.unref();
    let exited: string | undefined;
    child.once('exit', (code, signal) => (exited = `exited (${signal ?? code}) before it was ready`));
    child.once('error', (err) => (exited = `could not start: ${err.message}`));
    const until = Date.now() + timeoutMs;
    for (;;) {
      for (let m = receiveNotify(sock); m; m = receiveNotify(sock)) {
        for (const fd of m.fds) closeSync(fd);
        if (m.message.split('\n').includes('READY=1')) return child.pid!;
      }
      if (exited) throw new Error(`the new lockdropd ${exited}`);
      if (Date.now() > until) {
        child.kill('SIGKILL');
        throw new Error(`the new lockdropd was not ready within ${timeoutMs / 1000} s`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    closeSync(sock);
  }
}

/** Tells the lockdropd that started this one (`lockdropctl restart`) that it may exit now. */
export function tellReplaced(env: NodeJS.ProcessEnv = process.env): void {
  const socket = env[RESTART_NOTIFY];
  delete env[RESTART_NOTIFY];
  if (socket) sdNotifyWithFds(socket, `READY=1\nMAINPID=${process.pid}`, []);
}
