// The edge to the exported filesystems: the lock table's FileLocker over real files.
//
// An export whose locks are on the real files has its root open for open_by_handle_at only
// while a description of one of its files is (a lock held or awaited), and rootLingerMs after
// (opening it costs more than a lock): an idle export pins nothing, so that its filesystem can
// be unmounted (resource-agents' Filesystem `stop` signals whoever keeps it busy), and a root
// mounted again under the same path is the one the next request opens. A drop closes the roots
// it leaves idle at once: an unmount follows an address's departure. Each (owner, file) the table locks gets one open file description of its own, and the owner's
// ranges are OFD locks on it: the kernel then enforces them against every other holder (local
// POSIX/OFD locks, the NFS server's NFSv4 locks, another node's lockd on a cluster filesystem)
// and applies splits, merges, upgrades and downgrades exactly as the table does for that owner.
// A description is closed as soon as its owner holds and awaits nothing on the file.
//
// The common LOCK, of a file the owner has no description of, is one addon call (open by
// handle, a regular file?, F_OFD_SETLK); checking a handle that no lock follows (TEST, UNLOCK,
// CANCEL of a file nobody has open) opens it O_PATH only, never for I/O. A drop's descriptions
// go to the addon in one call: when it returns every kernel lock of theirs is released (so the
// drop can be acknowledged), and the addon's threads close them within milliseconds after;
// closing an export waits for those closes (its filesystem is unmounted next).
//
// Every open counts against a budget (below RLIMIT_NOFILE, which lockdropd raises at start): at
// the limit a request is refused with denied_nolocks, never EMFILE.
import { sameBytes } from '../locks';
import type { FileLocker, FilePos, LockAnswer, LockStatus, OutsideHolder } from '../locks/types';
import { GANESHA_FSID_DEVICE, GANESHA_FSID_TWO_UINT32, type Caller, type GaneshaFsid, type KernelHandleResult } from '../exports';
import { Backoff } from '../net';
import { availableParallelism, endianness } from 'node:os';
import { E, LOCK_READ, LOCK_REFUSED, LOCK_UNLOCK, LOCK_WRITE, type FileSyscalls, type FlockPos } from './syscalls';

/** An export as this part needs it: its path (the export's id) and whether its locks are on the files. */
export interface ExportSpec {
  path: string;
  fileLocks: boolean;
}

export interface ExportedFilesOptions {
  sys: FileSyscalls;
  /** The kernel handle inside an NFS handle, or why there is none (ExportsTable.kernelHandle). */
  kernelHandle: (fh: Buffer) => KernelHandleResult;
  /** Open file descriptions allowed at once (export roots, at most one per export, not counted). */
  maxOpen: number;
  /** Retry interval while every kernel wait thread is busy: starts here, doubles (jittered) up to pollMaxMs. */
  pollInitialMs?: number;
  pollMaxMs?: number;
  /** How long an export's root stays open after its last description closed (default 100 ms; 0: closed at once). */
  rootLingerMs?: number;
  /** Threads releasing a drop's descriptions, this one included (default: the cores, at most 3). */
  closeThreads?: number;
  log?: { warn(obj: object, msg: string): void; error(obj: object, msg: string): void };
}

/** An export whose configuration cannot be served on the real files (exit 78 at start). */
export class ExportError extends Error {
  constructor(
    readonly exportPath: string,
    why: string,
  ) {
    super(`export ${exportPath}: ${why}`);
    this.name = 'ExportError';
  }
}

export interface FilesStats {
  /** Open descriptions of locked files (export roots not counted), `closing` included. */
  open: number;
  /** Descriptions a drop released that the addon's threads have not closed yet. */
  closing: number;
  /** Export roots open now: those with a description of one of their files. */
  roots: number;
  waits: number;
  /** Requests refused because the descriptor budget was spent. */
  budgetRefusals: number;
  /** Kernel unlocks that failed (the kernel may still hold what the table released). */
  unlockFailures: number;
}

class RealExport {
  rootFd = -1;
  /** The root's own kernel handle and its filesystem as NFS-Ganesha's handles name it: read once per open of the root. */
  rootHandle: { type: number; handle: Buffer } | undefined;
  fs: { fsid: [number, number]; dev: [number, number] } | undefined;
  /** Descriptions of its files open now: the root stays open while there is one. */
  descriptions = 0;
  /** Closes the root once it has been idle for rootLingerMs. */
  linger: NodeJS.Timeout | undefined;
  /** Kernel waits on its files whose thread still holds a dup of a description (it pins the filesystem). */
  waits = 0;
  /** Called once `waits` is 0 again. */
  readonly onWaitsGone: (() => void)[] = [];
  constructor(readonly path: string) {}
}

/**
 * An owner's open file description of a file, opened as Linux's lockd opens by lock mode
 * (lock_to_openmode): read-only while the owner takes shared locks only, so that a shared lock
 * breaks no local read lease (an NFSv4 read delegation, a Samba oplock) and keeps no program on
 * the server from running (ETXTBSY); read-write from its first exclusive lock on.
 */
interface Description {
  fd: number;
  writable: boolean;
  /** Kernel waits working on a dup of this description. */
  waits: number;
  exp: RealExport;
}

class OpenFile {
  readonly owners = new Map<string, Description>();
  constructor(readonly exp: RealExport) {}
}

/** A kernel handle to open in the export's filesystem, or the export's root itself. */
type KernelHandle = { type: number; handle: Buffer } | { root: true };
type Resolved = { kind: 'memory' } | { kind: 'stale'; why: string } | { kind: 'file'; exp: RealExport; kh: KernelHandle };

/**
 * Kernel handle types (include/linux/exportfs.h) whose first bytes name the file and whose rest,
 * if any, names its parent directory: a handle with the parent (knfsd's subtree_check) names the
 * same file as one without. tmpfs, which ignores the type, is covered by the first pair (its
 * generation and low inode number).
 */
const SAME_FILE = new Map<number, { type: number; bytes: number }>([
  [1, { type: 1, bytes: 8 }], // FILEID_INO32_GEN: inode, generation (ext2/3/4, xfs's 32-bit inodes)
  [2, { type: 1, bytes: 8 }], // FILEID_INO32_GEN_PARENT
  [0x81, { type: 0x81, bytes: 12 }], // FILEID_INO64_GEN (xfs): 64-bit inode, generation
  [0x82, { type: 0x81, bytes: 12 }], // FILEID_INO64_GEN_PARENT
  [0x4d, { type: 0x4d, bytes: 20 }], // FILEID_BTRFS_WITHOUT_PARENT: objectid, root, generation
  [0x4e, { type: 0x4d, bytes: 20 }], // FILEID_BTRFS_WITH_PARENT
  [0x4f, { type: 0x4d, bytes: 20 }], // FILEID_BTRFS_WITH_PARENT_ROOT
]);

const flockOf = (start: FilePos, end: FilePos): [FlockPos, FlockPos] => {
  if (end === Infinity) return [start, 0];
  if (typeof start === 'number' && typeof end === 'number') return [start, end - start + 1];
  return [start, BigInt(end) - BigInt(start) + 1n];
};

const endOf = (start: FlockPos, len: FlockPos): FilePos => {
  if (len === 0 || len === 0n) return Infinity;
  if (typeof start === 'number' && typeof len === 'number' && start + len - 1 <= Number.MAX_SAFE_INTEGER) return start + len - 1;
  return BigInt(start) + BigInt(len) - 1n;
};

export class ExportedFiles implements FileLocker {
  private readonly sys: FileSyscalls;
  private readonly exports = new Map<string, RealExport>();
  /** Files with at least one open description, by the table's file key. */
  private readonly files = new Map<string, OpenFile>();
  /** Descriptions held for locks, and export roots (not those being closed). */
  private open = 0;
  /** At least the descriptions the addon is still closing: refreshed from it only when it matters. */
  private closing = 0;
  private waits = 0;
  private budgetRefusals = 0;
  private unlockFailures = 0;
  private maxOpen: number;
  private readonly pollInitialMs: number;
  private readonly pollMaxMs: number;
  private readonly closeThreads: number;
  private readonly rootLingerMs: number;
  /** The handle identify decoded last, for the resolve that follows it. */
  private parsed: { fh: Buffer; kh: KernelHandleResult } | undefined;

  constructor(private readonly opts: ExportedFilesOptions) {
    this.sys = opts.sys;
    this.maxOpen = opts.maxOpen;
    this.pollInitialMs = opts.pollInitialMs ?? 20;
    this.pollMaxMs = opts.pollMaxMs ?? 500;
    this.closeThreads = opts.closeThreads ?? Math.min(3, availableParallelism());
    this.rootLingerMs = opts.rootLingerMs ?? 100;
  }

  /**
   * Makes these the exports served on the real files: new ones are checked (the path exists, its
   * filesystem gives handles, its root opens); removed ones have their descriptions and root
   * closed (the caller dropped their locks first). Throws ExportError naming the first bad
   * export, leaving the previous set in place.
   */
  setExports(specs: readonly ExportSpec[]): void {
    const wanted = new Set(specs.filter((s) => s.fileLocks).map((s) => s.path));
    const added: RealExport[] = [];
    for (const path of wanted) if (!this.exports.has(path)) added.push(this.checkExport(path));
    for (const path of [...this.exports.keys()]) {
      if (wanted.has(path)) continue;
      void this.closeExport(path);
      this.exports.delete(path);
    }
    for (const e of added) this.exports.set(e.path, e);
  }

  /** A new export, checked as its first request would use it: its root opened, read and closed again. */
  private checkExport(path: string): RealExport {
    const e = new RealExport(path);
    const why = this.openRoot(e);
    if (why !== undefined) throw new ExportError(path, why);
    this.closeRoot(e);
    return e;
  }

  /**
   * Opens the export's root and reads its handle and filesystem anew (the path may name another
   * mount than last time): undefined, or why it cannot.
   */
  private openRoot(e: RealExport): string | undefined {
    let fd = -1;
    try {
      e.rootHandle = this.sys.nameToHandle(e.path);
      fd = this.sys.openPath(e.path);
      const id = this.sys.filesystemId(fd);
      const word = (at: number) => (endianness() === 'LE' ? id.fsid.readUInt32LE(at) : id.fsid.readUInt32BE(at));
      e.fs = { fsid: [word(0), word(4)], dev: [id.devMajor, id.devMinor] };
    } catch (err) {
      if (fd >= 0) this.sys.closeFd(fd);
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return 'the path does not exist on this node (set fileLocks: false to keep its locks in memory)';
      if (code === 'EOPNOTSUPP') return 'its filesystem cannot turn file handles into files (no name_to_handle_at): set fileLocks: false';
      return `cannot open its root: ${(err as Error).message}`;
    }
    e.rootFd = fd;
    return undefined;
  }

  private closeRoot(e: RealExport): void {
    if (e.linger) clearTimeout(e.linger);
    e.linger = undefined;
    if (e.rootFd < 0) return;
    this.sys.closeFd(e.rootFd);
    e.rootFd = -1;
  }

  /** Closes the export's root rootLingerMs after no description of its files is open: an idle export pins nothing. */
  private settle(e: RealExport): void {
    if (e.descriptions !== 0 || e.rootFd < 0 || e.linger) return;
    if (this.rootLingerMs === 0) return this.closeRoot(e);
    e.linger = setTimeout(() => {
      e.linger = undefined;
      if (e.descriptions === 0) this.closeRoot(e);
    }, this.rootLingerMs);
    e.linger.unref();
  }

  /**
   * Closes every description of the export's files and its root, so that its filesystem can be
   * unmounted; the root opens again at the next request. The caller dropped its locks first,
   * which cancelled their kernel waits: the promise resolves (with how many descriptions were
   * closed) once every wait's thread has let go of its dup of a description too, so that an
   * umount right after finds nothing of the export open.
   */
  closeExport(path: string): Promise<number> {
    const e = this.exports.get(path);
    if (!e) return Promise.resolve(0);
    const fds: number[] = [];
    for (const [key, f] of this.files) {
      if (f.exp !== e) continue;
      for (const d of f.owners.values()) fds.push(d.fd);
      this.files.delete(key);
    }
    e.descriptions = 0;
    this.closeDescriptions(Int32Array.from(fds));
    // A drop's descriptions may still be closing: the filesystem is unmounted next.
    this.awaitCloses();
    this.closeRoot(e);
    if (e.waits === 0) return Promise.resolve(fds.length);
    return new Promise((resolve) => e.onWaitsGone.push(() => resolve(fds.length)));
  }

  /** Returns once every description a drop released is closed (the addon closes them within milliseconds). */
  awaitCloses(): void {
    this.sys.awaitCloses();
    this.closing = 0;
  }

  /** Exports whose locks are on the real files. */
  realExports(): string[] {
    return [...this.exports.keys()];
  }

  setBudget(maxOpen: number): void {
    this.maxOpen = maxOpen;
  }

  stats(): FilesStats {
    let roots = 0;
    for (const e of this.exports.values()) if (e.rootFd >= 0) roots++;
    const closing = this.closingNow();
    return { open: this.open + closing, closing, roots, waits: this.waits, budgetRefusals: this.budgetRefusals, unlockFailures: this.unlockFailures };
  }

  /** Every open description of a locked file, for a planned restart's hand-over (src/daemon/restart.ts). */
  descriptions(): { fileKey: string; ownerKey: string; fd: number; writable: boolean; exportPath: string }[] {
    const out: { fileKey: string; ownerKey: string; fd: number; writable: boolean; exportPath: string }[] = [];
    for (const [fileKey, f] of this.files) for (const [ownerKey, d] of f.owners) out.push({ fileKey, ownerKey, fd: d.fd, writable: d.writable, exportPath: f.exp.path });
    return out;
  }

  /**
   * A description handed over by the previous lockdropd (a planned restart), taken as the
   * owner's description of the file: the table's locks set on it again find them held. Throws
   * when its export is not served on the files, or the owner already has one there.
   */
  adoptDescription(fileKey: string, ownerKey: string, fd: number, writable: boolean, exportPath: string): void {
    const exp = this.exports.get(exportPath);
    if (!exp) throw new Error(`export ${exportPath} is not locked on its files here`);
    if (this.files.get(fileKey)?.owners.has(ownerKey)) throw new Error('two descriptions for one owner and file');
    this.open++;
    this.adopt(this.files.get(fileKey), fileKey, Buffer.from(fileKey, 'latin1'), exp, ownerKey, fd, writable);
  }

  // ---- FileLocker ----

  /**
   * Whether the caller (squash options applied) may lock the file: undefined, or 'failed' when
   * it may not open it as Linux's lockd does, as the caller, by lock mode (nlm_fopen,
   * NFSD_MAY_READ or NFSD_MAY_WRITE): `write` for an exclusive lock, read for a shared one. As
   * knfsd: the file's owner always may (NFSD_MAY_OWNER_OVERRIDE) and root (not squashed) may;
   * unlike lockd, which checks only the first open of a file it then shares among its clients,
   * every request is checked. Permission bits only: an ACL's named entries are not read. Opens
   * nothing for I/O.
   */
  access(fh: Buffer, caller: Caller, write: boolean): LockStatus | undefined {
    if (this.exports.size === 0 || caller.uid === 0) return undefined;
    const r = this.resolve(fh);
    if (r.kind !== 'file') return undefined; // memory, or stale: the request answers that itself
    let owner: { mode: number; uid: number; gid: number } | undefined;
    const rc = this.byHandle(r.exp, r.kh, (root, h) => {
      const o = this.sys.handleOwner(root, h.type, h.handle);
      if (typeof o === 'number') return o;
      owner = o;
      return 0;
    });
    this.settle(r.exp);
    if (rc !== 0 || !owner) return undefined;
    if (owner.uid === caller.uid) return undefined;
    const inGroup = owner.gid === caller.gid || caller.gids.includes(owner.gid);
    const bits = inGroup ? (owner.mode >> 3) & 7 : owner.mode & 7;
    return bits & (write ? 2 : 4) ? undefined : 'failed';
  }

  /**
   * `exclusive`: the request is for an exclusive lock, which needs the file opened for writing:
   * on a read-only filesystem it can never be granted and answers rofs now (Linux's lockd opens
   * the file for writing when the request arrives), checked without an open for writing (no
   * lease broken) unless an owner already has the file open read-write.
   */
  validate(fileKey: string, fh: Buffer, exclusive = false): LockStatus | undefined {
    if (this.exports.size === 0) return undefined;
    const f = this.files.get(fileKey);
    if (f && (!exclusive || [...f.owners.values()].some((d) => d.writable))) return undefined;
    const r = this.resolve(fh);
    if (r.kind === 'memory') return undefined;
    if (r.kind === 'stale') return 'stale_fh';
    // Opened and closed within the call: not a description, not counted against the budget.
    const rc = this.byHandle(r.exp, r.kh, (root, h) => this.sys.checkHandle(root, h.type, h.handle, exclusive));
    this.settle(r.exp);
    return rc === 0 ? undefined : this.refusal(rc);
  }

  /**
   * The file's identity: its filesystem (the export root's device numbers, as this node has them)
   * and its kernel handle, which every NFS handle of the file embeds whichever export, server
   * (knfsd, NFS-Ganesha) or fsid type made it, without the parent directory a connectable handle
   * adds (SAME_FILE). A Ganesha handle whose fsid names another filesystem has none (it is stale).
   */
  identify(fh: Buffer): string | undefined {
    if (this.exports.size === 0) return undefined;
    const kh = this.opts.kernelHandle(fh);
    // A new file's LOCK opens it next: its handle is decoded once.
    this.parsed = { fh, kh };
    if ('error' in kh) return undefined;
    const exp = this.exports.get(kh.exportId);
    if (!exp?.fs || !exp.rootHandle) return undefined;
    if ('fsid' in kh && kh.fsid) {
      const same = this.onRootFilesystem(exp, kh.fsid);
      this.settle(exp);
      if (!same) return undefined;
    }
    const h = 'root' in kh ? exp.rootHandle : kh;
    const same = SAME_FILE.get(h.type);
    const id = same && h.handle.length >= same.bytes ? `${same.type}:${h.handle.toString('latin1', 0, same.bytes)}` : `${h.type}:${h.handle.toString('latin1')}`;
    return `${exp.fs.dev[0]}:${exp.fs.dev[1]}:${id}`;
  }

  lock(fileKey: string, fh: Buffer, ownerKey: string, start: FilePos, end: FilePos, exclusive: boolean): LockAnswer {
    if (this.exports.size === 0) return 'granted';
    const f = this.files.get(fileKey);
    const d = f?.owners.get(ownerKey);
    if (d === undefined) return this.openLocked(f, fileKey, fh, ownerKey, start, end, exclusive);
    const refused = exclusive && !d.writable ? this.upgrade(fileKey, fh, d) : undefined;
    if (refused !== undefined) return refused;
    const [s, len] = flockOf(start, end);
    const rc = this.sys.ofdSetLock(d.fd, exclusive ? LOCK_WRITE : LOCK_READ, s, len);
    return rc === 0 ? 'granted' : this.lockRefusal(fileKey, rc);
  }

  /**
   * The owner's first lock on the file: its description opened (by lock mode) and locked in one
   * call, kept only if the lock was taken (a refusal leaves nothing open).
   */
  private openLocked(f: OpenFile | undefined, fileKey: string, fh: Buffer, ownerKey: string, start: FilePos, end: FilePos, exclusive: boolean): LockAnswer {
    const r = this.resolve(fh);
    if (r.kind !== 'file') return r.kind === 'memory' ? 'granted' : 'stale_fh';
    const [s, len] = flockOf(start, end);
    const type = exclusive ? LOCK_WRITE : LOCK_READ;
    const fd = this.openByHandle(r.exp, r.kh, (root, h) => this.sys.openLock(root, h.type, h.handle, exclusive ? 'rw' : 'ro', type, s, len));
    if (fd < 0) {
      this.settle(r.exp);
      return fd <= -LOCK_REFUSED ? this.lockRefusal(fileKey, fd + LOCK_REFUSED) : this.openRefusal(fd);
    }
    this.open++;
    this.adopt(f, fileKey, fh, r.exp, ownerKey, fd, exclusive);
    return 'granted';
  }

  /**
   * The owner's first exclusive lock on a file it opened read-only: a second, read-write
   * description takes over its shared locks (read back from the kernel), and the first closes,
   * so that the owner holds the same bytes throughout; undefined, or the refusal (rofs on a
   * read-only filesystem, drop_reply while a lease is being broken, failed where it may not write).
   */
  private upgrade(fileKey: string, fh: Buffer, d: Description): LockAnswer | undefined {
    // A kernel wait works on a dup of this description: a lock it takes would stay on it. Only
    // an owner with two requests at once (threads) meets this; it may try again.
    if (d.waits !== 0) return 'denied_nolocks';
    const r = this.resolve(fh);
    if (r.kind !== 'file') return 'stale_fh';
    try {
      const fd = this.openRegular(r.exp, r.kh, 'rw');
      if (fd < 0) return this.openRefusal(fd);
      for (const l of this.sys.ofdHeld(d.fd)) {
        const rc = this.sys.ofdSetLock(fd, LOCK_READ, l.start, l.len);
        if (rc !== 0) {
          this.closeDescription(fd);
          return this.lockRefusal(fileKey, rc);
        }
      }
      this.closeDescription(d.fd);
      d.fd = fd;
      d.writable = true;
      return undefined;
    } finally {
      // Opened through another export of the file's filesystem (another handle): its root may close.
      if (r.exp !== d.exp) this.settle(r.exp);
    }
  }

  /**
   * What a failed open for a lock answers. EAGAIN: the open started breaking a lease or an NFSv4
   * delegation of someone else's (O_NONBLOCK): no answer, so that the client sends the request
   * again once the holder let go, as Linux's lockd does (nfserr_jukebox → nlm_drop_reply); a
   * request already queued keeps trying on a timer.
   */
  private openRefusal(rc: number): LockAnswer {
    return rc === -E.EAGAIN ? 'drop_reply' : this.refusal(rc);
  }

  /**
   * The owner's new description of the file, in the maps, counted on the export of the handle
   * the table names the file by: a request through another handle of the file (another export
   * of its filesystem) opened it through that other export, whose root may then close.
   */
  private adopt(f: OpenFile | undefined, fileKey: string, fh: Buffer, opened: RealExport, ownerKey: string, fd: number, writable: boolean): Description {
    if (!f) this.files.set(fileKey, (f = new OpenFile(sameBytes(fileKey, fh) ? opened : this.exportOfKey(fileKey) ?? opened)));
    const d: Description = { fd, writable, waits: 0, exp: f.exp };
    f.owners.set(ownerKey, d);
    f.exp.descriptions++;
    if (opened !== f.exp) this.settle(opened);
    return d;
  }

  private exportOfKey(fileKey: string): RealExport | undefined {
    const id = this.opts.kernelHandle(Buffer.from(fileKey, 'latin1')).exportId;
    return id === undefined ? undefined : this.exports.get(id);
  }

  /** What a refused F_OFD_SETLK (its -errno) answers. */
  private lockRefusal(fileKey: string, rc: number): LockStatus {
    if (rc === -E.EAGAIN || rc === -E.EACCES) return 'denied';
    if (rc === -E.ENOLCK) return 'denied_nolocks';
    if (rc === -E.EDEADLK) return 'deadlck';
    this.opts.log?.warn({ fileKey: Buffer.from(fileKey, 'latin1').toString('hex'), errno: -rc }, 'OFD lock failed');
    return 'failed';
  }

  unlock(fileKey: string, ownerKey: string, start: FilePos, end: FilePos): void {
    const d = this.files.get(fileKey)?.owners.get(ownerKey);
    if (d === undefined) return;
    const [s, len] = flockOf(start, end);
    const rc = this.sys.ofdSetLock(d.fd, LOCK_UNLOCK, s, len);
    if (rc !== 0) {
      // Splitting a lock needs kernel memory; without it the kernel keeps the range.
      this.unlockFailures++;
      this.opts.log?.error({ fileKey: Buffer.from(fileKey, 'latin1').toString('hex'), errno: -rc }, 'OFD unlock failed: the file may stay locked until the owner holds nothing there');
    }
  }

  close(fileKey: string, ownerKey: string): void {
    const fd = this.forget(fileKey, ownerKey);
    if (fd >= 0) this.closeDescription(fd);
  }

  closeAll(fileKeys: readonly string[], ownerKeys: readonly string[]): void {
    const fds = new Int32Array(fileKeys.length);
    let n = 0;
    for (let i = 0; i < fileKeys.length; i++) {
      const fd = this.forget(fileKeys[i]!, ownerKeys[i]!);
      if (fd >= 0) fds[n++] = fd;
    }
    this.closeDescriptions(fds.subarray(0, n));
    // A drop: the filesystem of an export it left idle may be unmounted next.
    for (const e of this.exports.values()) if (e.descriptions === 0) this.closeRoot(e);
  }

  /** Takes the owner's description of the file out of the maps: its fd, or -1 when it had none. */
  private forget(fileKey: string, ownerKey: string): number {
    const f = this.files.get(fileKey);
    const d = f?.owners.get(ownerKey);
    if (!f || d === undefined) return -1;
    f.owners.delete(ownerKey);
    if (f.owners.size === 0) this.files.delete(fileKey);
    f.exp.descriptions--;
    this.settle(f.exp);
    return d.fd;
  }

  test(fileKey: string, fh: Buffer, ownerKey: string, start: FilePos, end: FilePos, exclusive: boolean): OutsideHolder | LockStatus | undefined {
    if (this.exports.size === 0) return undefined;
    const f = this.files.get(fileKey);
    // The owner's own description leaves its own locks out; without one it holds nothing in the
    // kernel, and another owner's locks were already found not to conflict by the table.
    let fd = f?.owners.get(ownerKey)?.fd ?? (f ? f.owners.values().next().value?.fd : undefined);
    let temporary: RealExport | undefined;
    if (fd === undefined) {
      const r = this.resolve(fh);
      if (r.kind === 'memory') return undefined;
      if (r.kind === 'stale') return 'stale_fh';
      const opened = this.openRegular(r.exp, r.kh, 'ro');
      if (opened < 0) {
        this.settle(r.exp);
        return this.refusal(opened);
      }
      fd = opened;
      temporary = r.exp;
    }
    const [s, len] = flockOf(start, end);
    try {
      const held = this.sys.ofdGetLock(fd, exclusive ? LOCK_WRITE : LOCK_READ, s, len);
      return held ? { exclusive: held.exclusive, start: held.start, end: endOf(held.start, held.len) } : undefined;
    } finally {
      if (temporary) {
        this.closeDescription(fd);
        this.settle(temporary);
      }
    }
  }

  wait(fileKey: string, fh: Buffer, ownerKey: string, start: FilePos, end: FilePos, exclusive: boolean, done: (acquired: boolean) => void): () => void {
    const type = exclusive ? LOCK_WRITE : LOCK_READ;
    const [s, len] = flockOf(start, end);
    const d = this.describe(fileKey, fh, ownerKey, exclusive);
    if (typeof d !== 'string') {
      const id = this.sys.ofdWait(d.fd, type, s, len, (rc) => {
        // The wait's thread has closed its dup of the description.
        this.waits--;
        d.waits--;
        if (--d.exp.waits === 0) for (const gone of d.exp.onWaitsGone.splice(0)) gone();
        done(rc === 0);
      });
      if (id > 0) {
        this.waits++;
        d.waits++;
        d.exp.waits++;
        return () => this.sys.ofdCancelWait(id);
      }
      if (id !== -E.EBUSY) return this.failLater(done);
    } else if (d !== 'drop_reply') {
      return this.failLater(done);
    }
    // Every kernel wait thread is busy, or a lease is being broken: try again on a timer.
    return this.poll(fileKey, fh, ownerKey, exclusive, s, len, done);
  }

  private failLater(done: (acquired: boolean) => void): () => void {
    setImmediate(() => done(false));
    return () => {};
  }

  /**
   * The owner's description of the file fit for this lock type: the one it has, made read-write
   * for an exclusive lock, or a new one; else the refusal (drop_reply: a lease is being broken).
   */
  private describe(fileKey: string, fh: Buffer, ownerKey: string, exclusive: boolean): Description | LockAnswer {
    const d = this.files.get(fileKey)?.owners.get(ownerKey);
    if (d === undefined) return this.openFor(fileKey, fh, ownerKey, exclusive);
    return (exclusive && !d.writable ? this.upgrade(fileKey, fh, d) : undefined) ?? d;
  }

  /** Tries the lock again on a timer, doubling (jittered) from pollInitialMs to pollMaxMs. */
  private poll(fileKey: string, fh: Buffer, ownerKey: string, exclusive: boolean, s: FlockPos, len: FlockPos, done: (acquired: boolean) => void): () => void {
    const delay = new Backoff({ initialMs: this.pollInitialMs, maxMs: this.pollMaxMs });
    let timer: NodeJS.Timeout | undefined;
    const attempt = (): void => {
      timer = undefined;
      const d = this.describe(fileKey, fh, ownerKey, exclusive);
      const rc = typeof d === 'string' ? (d === 'drop_reply' ? -E.EAGAIN : -E.EBADF) : this.sys.ofdSetLock(d.fd, exclusive ? LOCK_WRITE : LOCK_READ, s, len);
      if (rc === 0) return done(true);
      if (rc !== -E.EAGAIN && rc !== -E.EACCES) return done(false);
      timer = setTimeout(attempt, delay.next());
    };
    timer = setTimeout(attempt, delay.next());
    return () => {
      if (timer) clearTimeout(timer);
      timer = undefined;
    };
  }

  // ---- opening ----

  private resolve(fh: Buffer): Resolved {
    const kh = this.parsed?.fh === fh ? this.parsed.kh : this.opts.kernelHandle(fh);
    this.parsed = undefined;
    if ('error' in kh) {
      const e = kh.exportId === undefined ? undefined : this.exports.get(kh.exportId);
      // A handle of an export kept in memory, or of none while no export is on real files.
      if (kh.exportId === undefined ? false : !e) return { kind: 'memory' };
      return { kind: 'stale', why: kh.error };
    }
    const exp = this.exports.get(kh.exportId);
    if (!exp) return { kind: 'memory' };
    if ('fsid' in kh && kh.fsid && !this.onRootFilesystem(exp, kh.fsid)) {
      this.settle(exp);
      return { kind: 'stale', why: "the handle's fsid is not the export root's filesystem" };
    }
    return { kind: 'file', exp, kh };
  }

  /**
   * Whether an NFS-Ganesha handle's fsid names the filesystem of the export's root: a kernel
   * handle decoded in another filesystem could name an unrelated file there. Told where the fsid
   * is one the kernel reports (statfs f_fsid, or the device when f_fsid is zero, as Ganesha
   * does; the device with fsid_device); a uuid from blkid or a configured Filesystem_id cannot be
   * compared here and passes (the export's ganeshaExportId already matched).
   */
  private onRootFilesystem(exp: RealExport, g: GaneshaFsid): boolean {
    // Read when the root last opened; an idle export's root is opened for its check (and closed
    // by the caller's settle), so that a filesystem mounted again is the one compared.
    if (exp.rootFd < 0 && !this.reopenRoot(exp)) return false;
    const fs = exp.fs!;
    const is = (pair: [number, number]) => g.major === BigInt(pair[0]) && g.minor === BigInt(pair[1]);
    if (g.type === GANESHA_FSID_TWO_UINT32) return fs.fsid[0] === 0 && fs.fsid[1] === 0 ? is(fs.dev) : is(fs.fsid);
    if (g.type === GANESHA_FSID_DEVICE) return is(fs.dev);
    return true;
  }

  /** The owner's new description of the file (for a wait), opened by lock mode, or the refusal (failed for a file not locked on disk). */
  private openFor(fileKey: string, fh: Buffer, ownerKey: string, exclusive: boolean): Description | LockAnswer {
    const r = this.resolve(fh);
    if (r.kind !== 'file') return r.kind === 'memory' ? 'failed' : 'stale_fh';
    const fd = this.openRegular(r.exp, r.kh, exclusive ? 'rw' : 'ro');
    if (fd < 0) {
      this.settle(r.exp);
      return this.openRefusal(fd);
    }
    return this.adopt(this.files.get(fileKey), fileKey, fh, r.exp, ownerKey, fd, exclusive);
  }

  /** A descriptor of a regular file by handle, counted against the budget, or a negative errno. */
  private openRegular(exp: RealExport, kh: KernelHandle, mode: 'rw' | 'ro'): number {
    // A regular file only, as knfsd's lockd opens (a directory, a device: failed).
    const fd = this.openByHandle(exp, kh, (root, h) => this.sys.openRegular(root, h.type, h.handle, mode));
    if (fd >= 0) this.open++;
    return fd;
  }

  /** An open by handle that leaves a descriptor behind: refused with -EMFILE once the budget is spent. */
  private openByHandle(exp: RealExport, kh: KernelHandle, open: (root: number, h: { type: number; handle: Buffer }) => number): number {
    if (this.open + this.closing >= this.maxOpen && this.open + this.closingNow() >= this.maxOpen) return -E.EMFILE;
    return this.byHandle(exp, kh, open);
  }

  /**
   * Runs an open of the kernel handle in the export's filesystem, its root opened first if
   * closed (the caller settles the export afterwards). A root that cannot be opened (its path
   * is gone) makes every handle of the export stale.
   */
  private byHandle(exp: RealExport, kh: KernelHandle, open: (root: number, h: { type: number; handle: Buffer }) => number): number {
    if (exp.rootFd < 0 && !this.reopenRoot(exp)) return -E.ESTALE;
    const rc = open(exp.rootFd, 'root' in kh ? exp.rootHandle! : kh);
    if (rc !== -E.ESTALE || exp.descriptions === 0) return rc;
    // A root held open since before its filesystem was mounted again (umount -l) names the old
    // one: open the root anew once.
    this.closeRoot(exp);
    if (!this.reopenRoot(exp)) return -E.ESTALE;
    return open(exp.rootFd, 'root' in kh ? exp.rootHandle! : kh);
  }

  private reopenRoot(exp: RealExport): boolean {
    const why = this.openRoot(exp);
    if (why !== undefined) this.opts.log?.warn({ export: exp.path }, `export ${exp.path}: ${why}`);
    return why === undefined;
  }

  /** What a failed open answers. */
  private refusal(errno: number): LockStatus {
    switch (-errno) {
      case E.ESTALE:
      case E.ENOENT:
      case E.EINVAL: // a handle of the wrong length or type for this filesystem
      case E.ENOTDIR:
      case E.ELOOP:
        return 'stale_fh';
      case E.EMFILE:
      case E.ENFILE:
      case E.ENOMEM:
        this.budgetRefusals++;
        return 'denied_nolocks';
      case E.EROFS:
        return 'rofs';
      default:
        return 'failed';
    }
  }

  private closingNow(): number {
    if (this.closing !== 0) this.closing = this.sys.closesPending();
    return this.closing;
  }

  private closeDescription(fd: number): void {
    this.sys.closeFd(fd);
    this.open--;
  }

  /** Closes many descriptions at once: none holds a lock when it returns; a large batch is still closing. */
  private closeDescriptions(fds: Int32Array): void {
    if (fds.length === 0) return;
    const notOpen = this.sys.releaseFds(fds, this.closeThreads);
    this.open -= fds.length;
    this.closing += fds.length;
    if (notOpen !== 0) this.opts.log?.error({ notOpen }, 'closing descriptions: some were not open fds');
  }
}
