// The lock table: POSIX byte-range locks, share reservations and blocked-lock queues, indexed by
// file, server address, client host and export so that every drop costs what it drops.
//
// Representation (≤ 250 bytes per held lock is a target): files, owners, hosts, addresses and
// exports are interned once. A "holder" is one owner holding through one server address; the
// address index is its set of holders. A held lock is one small object (nine fields, positions
// as plain numbers, see range.ts) on two intrusive doubly linked lists, its file's and its
// holder's, so linking and unlinking are O(1) with no per-lock Map, Set or BigInt.
//
// One owner's locks never overlap. Its overlapping or adjacent locks merge when they have the same
// type *and* came through the same server address: the server address is what a failover drops
// by, so a lock taken through one VIP must never be folded into a lock held through another.
import { Observable, Subject } from 'rxjs';
import { GraceTable } from './grace';
import { EOF, Pos, dec, inc, maxPos, minPos, parseRange, toWire } from './range';
import type {
  BlockGranted,
  DropCounts,
  PriorLock,
  FileLocker,
  HeldLock,
  LockChange,
  LockOptions,
  LockOwner,
  LockRequest,
  LockStatus,
  ShareRequest,
  TestResult,
} from './types';

export interface LockTableOptions {
  /** Maps a file handle to its export (for the export index, export grace and dropByExport). */
  exportOf?: (fh: Buffer) => string | undefined;
  now?: () => number;
  /** Called synchronously, before the releasing call returns, for each queued block granted. */
  onBlockGranted?: (g: BlockGranted) => void;
  /** Carries every decision to the real files (src/files); without it locks live in memory only. */
  locker?: FileLocker;
}

export interface LockFilter {
  serverAddress?: string;
  host?: string;
  exportId?: string;
}

export interface LockTableStats {
  locks: number;
  shares: number;
  blocked: number;
  byAddress: Map<string, { locks: number; hosts: number }>;
}

/** Shared by every owner without holders; never mutated (holder arrays are copied on write). */
const NO_HOLDERS: Holder[] = [];

class HostEntry {
  readonly owners = new Set<Owner>();
  readonly shares = new Set<Share>();
  mark = 0;
  constructor(readonly key: string) {}
}

class Owner {
  /** One holder per server address this owner holds locks through (almost always one). */
  holders: Holder[] = NO_HOLDERS;
  blocks: Block[] | null = null;
  mark = 0;
  constructor(
    readonly key: string,
    readonly host: HostEntry,
    readonly svid: number,
    /** Where the owner handle (latin1) starts in the key: no separate string or Buffer. */
    readonly ohAt: number,
  ) {}
}

/**
 * An owner holding locks through one server address. The address index is a set of holders,
 * so per-lock changes never touch an address's maps, and a drop walks each holder's list.
 */
class Holder {
  head: Lock | null = null;
  count = 0;
  constructor(
    readonly owner: Owner,
    readonly addr: AddressEntry,
  ) {}
}

class AddressEntry {
  readonly holders = new Set<Holder>();
  /** Locks held through this address. */
  count = 0;
  readonly shares = new Set<Share>();
  readonly blocks = new Set<Block>();
  /** Host key -> number of holders, shares and blocks it has through this address. */
  readonly hosts = new Map<string, number>();
  constructor(readonly address: string) {}
}

class ExportEntry {
  readonly files = new Set<FileState>();
  constructor(readonly id: string) {}
}

/**
 * A file's queued requests in arrival order. A removal leaves a hole (O(1): a grant storm must not
 * shift the array once per grant); holes are swept when they outnumber the requests.
 */
class BlockQueue {
  private items: (Block | null)[] = [];
  size = 0;
  push(b: Block): void {
    b.slot = this.items.length;
    this.items.push(b);
    this.size++;
  }
  remove(b: Block): void {
    this.items[b.slot] = null;
    this.size--;
    if (this.size === 0) this.items = [];
    else if (this.items.length > 16 && this.size * 2 < this.items.length) this.sweep();
  }
  private sweep(): void {
    const live = this.toArray();
    live.forEach((b, i) => (b.slot = i));
    this.items = live;
  }
  toArray(): Block[] {
    return this.items.filter((b): b is Block => b !== null);
  }
  /** The requests overlapping [s, e], in arrival order. */
  overlapping(s: Pos, e: Pos): Block[] {
    return this.items.filter((b): b is Block => b !== null && b.start <= e && b.end >= s);
  }
}

/** What few files have: queued blocks and share reservations. */
class FileExtra {
  /** Blocked requests in arrival order. */
  readonly queue = new BlockQueue();
  readonly shares: Share[] = [];
}

class FileState {
  head: Lock | null = null;
  /** Locks on the file, and how many are exclusive: a shared request meets no conflict when none is. */
  count = 0;
  exclusive = 0;
  mark = 0;
  extra: FileExtra | null = null;
  constructor(
    /** The file handle bytes as a latin1 string. */
    readonly key: string,
    readonly exp: ExportEntry | undefined,
  ) {}
  get queue(): BlockQueue | null {
    return this.extra && this.extra.queue;
  }
  get shares(): Share[] | null {
    return this.extra && this.extra.shares;
  }
  more(): FileExtra {
    return (this.extra ??= new FileExtra());
  }
}

/**
 * A held lock: nine fields. `tag` packs the type and the time: seconds since the table's
 * epoch times two, plus one if exclusive (a small integer for 34 years).
 */
class Lock {
  fPrev: Lock | null = null;
  fNext: Lock | null = null;
  hPrev: Lock | null = null;
  hNext: Lock | null = null;
  constructor(
    readonly file: FileState,
    readonly holder: Holder,
    public start: Pos,
    public end: Pos,
    public tag: number,
  ) {}
}

const isExcl = (l: Lock): boolean => (l.tag & 1) === 1;

interface Block {
  file: FileState;
  owner: Owner;
  addr: AddressEntry;
  start: Pos;
  end: Pos;
  exclusive: boolean;
  waiter: unknown;
  /** Still queued (removeBlock clears it): a kernel wait finishing later must know. */
  queued: boolean;
  /** Its place in the file's BlockQueue. */
  slot: number;
  /** The cancel of a wait in the kernel for a holder outside the table, while one runs. */
  kernelWait: (() => void) | null;
}

interface Share {
  file: FileState;
  host: HostEntry;
  oh: string;
  mode: number;
  access: number;
  addr: AddressEntry;
}

const NO_COUNTS: DropCounts = { locks: 0, shares: 0, blocked: 0, clients: 0, woken: 0 };

const overlaps = (l: { start: Pos; end: Pos }, s: Pos, e: Pos): boolean => l.start <= e && l.end >= s;

/** What checkIndexes reads of a table: granted by the class (a static block), to nobody else. */
interface TableState {
  files: ReadonlyMap<string, FileState>;
  owners: ReadonlyMap<string, Owner>;
  hosts: ReadonlyMap<string, HostEntry>;
  addrs: ReadonlyMap<string, AddressEntry>;
  exports: ReadonlyMap<string, ExportEntry>;
  nLocks: number;
  nBlocked: number;
  nShares: number;
}

let stateOf: (t: LockTable) => TableState;

export class LockTable {
  static {
    stateOf = (t) => ({ files: t.files, owners: t.owners, hosts: t.hosts, addrs: t.addrs, exports: t.exports, nLocks: t.nLocks, nBlocked: t.nBlocked, nShares: t.nShares });
  }

  readonly grace: GraceTable;
  readonly changes: Observable<LockChange>;

  private readonly subject = new Subject<LockChange>();
  private readonly exportOf: (fh: Buffer) => string | undefined;
  private readonly now: () => number;
  private readonly onBlockGranted: (g: BlockGranted) => void;
  private readonly locker: FileLocker | undefined;
  private readonly epoch: number;

  private readonly files = new Map<string, FileState>();
  private readonly owners = new Map<string, Owner>();
  private readonly hosts = new Map<string, HostEntry>();
  private readonly addrs = new Map<string, AddressEntry>();
  private readonly exports = new Map<string, ExportEntry>();
  private readonly draining = new Set<string>();

  private nLocks = 0;
  private nShares = 0;
  private nBlocked = 0;
  /** Stamp for "already collected" marks during one drop. */
  private markSeq = 0;
  /** Grants made while the table was being changed, reported once it is consistent again. */
  private pending: BlockGranted[] = [];
  private flushing = false;

  constructor(opts: LockTableOptions = {}) {
    this.exportOf = opts.exportOf ?? (() => undefined);
    this.now = opts.now ?? Date.now;
    this.onBlockGranted = opts.onBlockGranted ?? (() => {});
    this.locker = opts.locker;
    this.epoch = this.now();
    this.grace = new GraceTable(this.now, (period, state) => {
      if (this.subject.observed) this.subject.next({ type: 'grace', period, state });
    });
    this.changes = this.subject.asObservable();
  }

  // ---- NLM procedures ----

  /**
   * TEST. While a grace period covers the request the answer is denied_grace_period, before
   * the range is even checked, as Linux lockd's nlm4svc_proc_test does: locks not yet reclaimed
   * are invisible, so "granted" could be a lie. Scoped here: a grace on another address or
   * export does not affect this TEST. A draining address still answers TEST truthfully.
   * The holder answered is the conflicting lock with the lowest offset.
   */
  test(req: LockRequest): TestResult {
    const fkey = req.fh.toString('latin1');
    const refused = this.locker?.validate(fkey, req.fh);
    if (refused !== undefined) return { status: refused as Exclude<LockStatus, 'granted' | 'denied' | 'blocked'> };
    const file = this.files.get(fkey);
    const exportId = file ? file.exp?.id : this.exportOf(req.fh);
    if (this.grace.covers(req.serverAddress, exportId)) return { status: 'denied_grace_period' };
    const r = parseRange(req.offset, req.length);
    if (!r) return { status: 'fbig' };
    const ownerKey = this.ownerKey(req.owner);
    let best: Lock | null = null;
    for (let l: Lock | null = file?.head ?? null; l; l = l.fNext) {
      if (l.holder.owner.key === ownerKey || !(req.exclusive || isExcl(l)) || !overlaps(l, r.start, r.end)) continue;
      if (best === null || l.start < best.start) best = l;
    }
    if (best) return { status: 'denied', holder: this.held(best) };
    if (!this.locker) return { status: 'granted' };
    const outside = this.locker.test(fkey, req.fh, ownerKey, r.start, r.end, req.exclusive);
    if (outside === undefined) return { status: 'granted' };
    if (typeof outside === 'string') return { status: outside as Exclude<LockStatus, 'granted' | 'denied' | 'blocked'> };
    // Held by no NLM owner: svid 0 and an empty owner handle, as the kernel names no owner.
    const { offset, length } = toWire(outside.start, outside.end);
    const holder: HeldLock = {
      fh: req.fh, owner: { host: '', svid: 0, oh: Buffer.alloc(0) }, exclusive: outside.exclusive, offset, length, serverAddress: '', exportId, since: this.now(),
    };
    return { status: 'denied', holder };
  }

  lock(req: LockRequest, opts: LockOptions): LockStatus {
    const r = parseRange(req.offset, req.length);
    if (!r) return 'fbig';
    const fkey = req.fh.toString('latin1');
    const refused = this.locker?.validate(fkey, req.fh);
    if (refused !== undefined) return refused;
    // A draining address is about to leave this node: a lock granted now would be dropped in a
    // moment. denied_nolocks ("no resources now, try later") is the one status that neither claims
    // a conflicting holder (denied) nor tells the client to reclaim (denied_grace_period).
    if (this.draining.size !== 0 && this.draining.has(req.serverAddress)) return 'denied_nolocks';
    let file = this.files.get(fkey);
    const exportId = file ? file.exp?.id : this.exportOf(req.fh);
    if (this.grace.covers(req.serverAddress, exportId) !== opts.reclaim) return 'denied_grace_period';
    file ??= this.newFile(fkey, exportId);
    const owner = this.internOwner(req.owner);
    const { start, end } = r;
    const excl = req.exclusive;

    // No conflict in the table: the kernel decides whether anyone outside holds the range.
    const free = this.firstConflict(file, owner, start, end, excl) === null;
    const onFile = free && this.locker ? this.locker.lock(fkey, req.fh, owner.key, start, end, excl) : 'granted';
    if (free && onFile === 'granted') {
      const holder = this.internHolder(owner, this.internAddr(req.serverAddress));
      const downgraded = this.applyLock(file, holder, start, end, excl);
      // A retransmitted blocking request that is grantable now is satisfied by this grant.
      if (owner.blocks !== null) {
        const b = this.findBlock(file, owner, start, end, excl);
        if (b) this.removeBlock(b);
      }
      if (this.subject.observed) {
        this.subject.next({ type: 'granted', lock: this.heldOf(file, holder, start, end, excl, this.now()), viaBlock: false });
      }
      if (downgraded) this.wake(file, start, end);
      this.flush();
      return 'granted';
    }
    if (onFile !== 'granted' && onFile !== 'denied') {
      this.forgetIfUnused(file, owner);
      return onFile;
    }
    if (!opts.block) {
      this.forgetIfUnused(file, owner);
      return 'denied';
    }
    if (owner.blocks !== null && this.findBlock(file, owner, start, end, excl)) return 'blocked';
    // Only the table's own owners can form a cycle; a holder outside it is waited for in the kernel.
    if (free === false && this.wouldDeadlock(owner, file, start, end, excl)) {
      this.forgetIfUnused(file, owner);
      return 'deadlck';
    }
    const addr = this.internAddr(req.serverAddress);
    const b: Block = { file, owner, addr, start, end, exclusive: excl, waiter: opts.waiter?.(), queued: true, slot: 0, kernelWait: null };
    file.more().queue.push(b);
    (owner.blocks ??= []).push(b);
    addr.blocks.add(b);
    this.hostRef(addr, owner.host.key, 1);
    this.nBlocked++;
    if (free) this.waitInKernel(b);
    if (this.subject.observed) this.subject.next({ type: 'blocked', request: req });
    return 'blocked';
  }

  // UNLOCK and CANCEL work during grace. Linux lockd refuses both with denied_grace_period;
  // here they can only release what a client just reclaimed, and refusing them would merely make
  // clients of a scoped (per-address) grace retry.

  /** Removes the owner's queued block for exactly this range and type: 'granted' if one was removed. */
  cancel(req: LockRequest): LockStatus {
    const r = parseRange(req.offset, req.length);
    if (!r) return 'fbig';
    const fkey = req.fh.toString('latin1');
    const refused = this.locker?.validate(fkey, req.fh);
    if (refused !== undefined) return refused;
    const file = this.files.get(fkey);
    const owner = this.owners.get(this.ownerKey(req.owner));
    if (!file || !owner || owner.blocks === null) return 'denied';
    const b = this.findBlock(file, owner, r.start, r.end, req.exclusive);
    if (!b) return 'denied';
    this.removeBlock(b);
    this.closeIfIdle(file, owner);
    this.forgetIfUnused(file, owner);
    return 'granted';
  }

  /** POSIX unlock of the owner's range (trims and splits); 'granted' even when nothing was held. */
  unlock(req: LockRequest): LockStatus {
    const r = parseRange(req.offset, req.length);
    if (!r) return 'fbig';
    const fkey = req.fh.toString('latin1');
    const refused = this.locker?.validate(fkey, req.fh);
    if (refused !== undefined) return refused;
    const file = this.files.get(fkey);
    const owner = this.owners.get(this.ownerKey(req.owner));
    if (!file || !owner) return 'granted';
    // The owner's own queued requests inside the range go first, as Linux's nlmsvc_unlock cancels
    // the blocked lock before unlocking: granted later, they would be locks nobody waits for.
    if (owner.blocks !== null) {
      for (const b of [...owner.blocks]) if (b.file === file && b.start >= r.start && b.end <= r.end) this.removeBlock(b);
    }
    if (owner.holders.length !== 0 && this.unlockRange(file, owner, r.start, r.end)) {
      // The kernel lets go first, so the waiters woken next are granted on the file too; an owner
      // left with nothing there closes its description (one call instead of unlock and close).
      if (this.locker) {
        if (this.idleOn(file, owner)) this.locker.close(fkey, owner.key);
        else this.locker.unlock(fkey, owner.key, r.start, r.end);
      }
      this.wake(file, r.start, r.end);
    }
    this.closeIfIdle(file, owner);
    this.forgetIfUnused(file, owner);
    this.flush();
    return 'granted';
  }

  /**
   * Takes back a grant the client never confirmed (its GRANTED refused or unanswered, or CANCEL
   * after the grant): the owner is left with exactly what it held in that range before — an
   * upgrade falls back to the shared lock, never to nothing. Where an exclusive prior lock now
   * meets another owner's lock (a downgrade let readers in), the owner keeps it shared. Nothing
   * happens when the owner no longer holds the grant's range through its address.
   */
  undoGrant(g: BlockGranted): void {
    const { lock, prior } = g;
    const fkey = lock.fh.toString('latin1');
    const file = this.files.get(fkey);
    const owner = this.owners.get(this.ownerKey(lock.owner));
    const r = parseRange(lock.offset, lock.length);
    if (!file || !owner || !r) return;
    const holder = owner.holders.find((hd) => hd.addr.address === lock.serverAddress);
    let held = false;
    for (let l = holder?.head ?? null; l && !held; l = l.hNext) held = l.file === file && overlaps(l, r.start, r.end);
    if (!held) return;
    const pieces = prior.flatMap((p) => {
      const pr = parseRange(p.offset, p.length);
      return pr ? [{ start: pr.start, end: pr.end, exclusive: p.exclusive, address: p.serverAddress }] : [];
    });
    for (const p of pieces) {
      if (!p.exclusive) continue;
      if (this.firstConflict(file, owner, p.start, p.end, true) !== null) p.exclusive = false;
      // The kernel may refuse the way back up (an outside reader came in): then shared.
      else if (this.locker && this.locker.lock(fkey, lock.fh, owner.key, p.start, p.end, true) !== 'granted') p.exclusive = false;
    }
    this.unlockRange(file, owner, r.start, r.end);
    for (const p of pieces) this.applyLock(file, this.internHolder(owner, this.internAddr(p.address)), p.start, p.end, p.exclusive);
    if (this.locker) this.resync(fkey, owner.key, r.start, r.end);
    this.wake(file, r.start, r.end);
    this.forgetIfUnused(file, owner);
    this.flush();
  }

  /**
   * NLM SHARE. A reservation conflicts with another owner's when one's access meets the other's
   * deny mode; the same (host, oh) replaces its own reservation. During a covering grace only
   * reclaims are taken; unlike LOCK, a reclaim after grace is accepted (Linux nlmsvc_proc_share).
   */
  share(req: ShareRequest, reclaim: boolean): LockStatus {
    const fkey = req.fh.toString('latin1');
    // Shares are NLM's alone (Linux keeps them in lockd's memory too), but the handle must name a file.
    const refused = this.locker?.validate(fkey, req.fh);
    if (refused !== undefined) return refused;
    if (this.draining.size !== 0 && this.draining.has(req.serverAddress)) return 'denied_nolocks';
    let file = this.files.get(fkey);
    const exportId = file ? file.exp?.id : this.exportOf(req.fh);
    if (!reclaim && this.grace.covers(req.serverAddress, exportId)) return 'denied_grace_period';
    const oh = req.owner.oh.toString('latin1');
    let mine: Share | undefined;
    for (const s of file?.shares ?? []) {
      if (s.host.key === req.owner.host && s.oh === oh) mine = s;
      else if ((req.access & s.mode) !== 0 || (req.mode & s.access) !== 0) return 'denied';
    }
    if (mine) this.removeShare(mine);
    file ??= this.newFile(fkey, exportId);
    const host = this.internHost(req.owner.host);
    const addr = this.internAddr(req.serverAddress);
    const s: Share = { file, host, oh, mode: req.mode, access: req.access, addr };
    file.more().shares.push(s);
    host.shares.add(s);
    addr.shares.add(s);
    this.hostRef(addr, host.key, 1);
    this.nShares++;
    return 'granted';
  }

  /** NLM UNSHARE: always 'granted' (Linux answers granted whether or not a reservation existed). */
  unshare(req: ShareRequest): LockStatus {
    const fkey = req.fh.toString('latin1');
    const refused = this.locker?.validate(fkey, req.fh);
    if (refused !== undefined) return refused;
    const file = this.files.get(fkey);
    if (!file || file.shares === null) return 'granted';
    const oh = req.owner.oh.toString('latin1');
    const s = file.shares.find((x) => x.host.key === req.owner.host && x.oh === oh);
    if (s) {
      this.removeShare(s);
      this.freeHostIfEmpty(s.host);
      this.freeFileIfEmpty(file);
    }
    return 'granted';
  }

  // ---- drops: each walks only what it drops ----

  /** NLM FREE_ALL: everything the host holds or waits for. */
  freeAll(host: string): DropCounts {
    return this.dropByHost(host);
  }

  dropByHost(host: string): DropCounts {
    const h = this.hosts.get(host);
    if (!h) return this.dropped('host', host, NO_COUNTS);
    const d = this.startDrop();
    for (const o of [...h.owners]) {
      for (const hd of o.holders) this.dropHolder(d, hd, true);
      o.holders = NO_HOLDERS;
      this.touchOwner(d, o);
      if (o.blocks) for (const b of [...o.blocks]) this.dropBlock(d, b);
    }
    for (const s of [...h.shares]) this.dropShare(d, s);
    return this.finishDrop(d, 'host', host);
  }

  dropByServerAddress(address: string): DropCounts {
    const a = this.addrs.get(address);
    if (!a) return this.dropped('address', address, NO_COUNTS);
    const d = this.startDrop();
    for (const b of [...a.blocks]) this.dropBlock(d, b);
    for (const s of [...a.shares]) this.dropShare(d, s);
    // Now only holders are left: unindex them wholesale rather than one by one.
    for (const hd of a.holders) {
      this.dropHolder(d, hd, false);
      this.unholder(hd);
      this.touchOwner(d, hd.owner);
    }
    a.holders.clear();
    a.hosts.clear();
    this.freeAddrIfEmpty(a);
    return this.finishDrop(d, 'address', address);
  }

  dropByExport(exportId: string): DropCounts {
    const e = this.exports.get(exportId);
    if (!e) return this.dropped('export', exportId, NO_COUNTS);
    const d = this.startDrop();
    const observed = this.subject.observed;
    const keep = this.locker !== undefined;
    for (const f of [...e.files]) {
      this.touchFile(d, f);
      for (let l = f.head; l; l = l.fNext) {
        if (observed) this.subject.next({ type: 'released', lock: this.held(l) });
        if (keep) d.released.push(l);
        const hd = l.holder;
        if (l.hPrev) l.hPrev.hNext = l.hNext;
        else hd.head = l.hNext;
        if (l.hNext) l.hNext.hPrev = l.hPrev;
        hd.addr.count--;
        if (--hd.count === 0) d.holders.push(hd);
        this.touchOwner(d, hd.owner);
        d.locks++;
        this.nLocks--;
      }
      f.head = null;
      f.count = 0;
      f.exclusive = 0;
      if (f.queue) for (const b of f.queue.toArray()) this.dropBlock(d, b);
      if (f.shares) for (const s of [...f.shares]) this.dropShare(d, s);
    }
    for (const hd of d.holders) this.freeHolder(hd);
    return this.finishDrop(d, 'export', exportId);
  }

  // ---- draining ----

  setDraining(address: string, draining: boolean): void {
    if (draining) this.draining.add(address);
    else this.draining.delete(address);
  }

  isDraining(address: string): boolean {
    return this.draining.has(address);
  }

  // ---- views ----

  *locks(filter: LockFilter = {}): Iterable<HeldLock> {
    const { serverAddress, host, exportId } = filter;
    const keep = (l: Lock): boolean =>
      (serverAddress === undefined || l.holder.addr.address === serverAddress) &&
      (host === undefined || l.holder.owner.host.key === host) &&
      (exportId === undefined || l.file.exp?.id === exportId);
    // Collect from the narrowest index before yielding, so a consumer may change the table.
    const found: Lock[] = [];
    const fromHolder = (hd: Holder): void => {
      for (let l = hd.head; l; l = l.hNext) found.push(l);
    };
    if (serverAddress !== undefined) {
      for (const hd of this.addrs.get(serverAddress)?.holders ?? []) fromHolder(hd);
    } else if (host !== undefined) {
      for (const o of this.hosts.get(host)?.owners ?? []) o.holders.forEach(fromHolder);
    } else if (exportId !== undefined) {
      for (const f of this.exports.get(exportId)?.files ?? []) for (let l = f.head; l; l = l.fNext) found.push(l);
    } else {
      for (const f of this.files.values()) for (let l = f.head; l; l = l.fNext) found.push(l);
    }
    for (const l of found.filter(keep)) yield this.held(l);
  }

  /** Host keys holding a lock, share or queued block through this server address. */
  hostsAt(serverAddress: string): ReadonlySet<string> {
    return new Set(this.addrs.get(serverAddress)?.hosts.keys() ?? []);
  }

  stats(): LockTableStats {
    const byAddress = new Map<string, { locks: number; hosts: number }>();
    for (const a of this.addrs.values()) byAddress.set(a.address, { locks: a.count, hosts: a.hosts.size });
    return { locks: this.nLocks, shares: this.nShares, blocked: this.nBlocked, byAddress };
  }

  /** Queued blocks in arrival order (per file), for views and tests. */
  *blocked(): Iterable<{ request: LockRequest; waiter: unknown }> {
    const all: Block[] = [];
    for (const f of this.files.values()) if (f.queue) all.push(...f.queue.toArray());
    for (const b of all) {
      const { offset, length } = toWire(b.start, b.end);
      yield {
        request: {
          fh: Buffer.from(b.file.key, 'latin1'),
          owner: this.publicOwner(b.owner),
          exclusive: b.exclusive,
          offset,
          length,
          serverAddress: b.addr.address,
        },
        waiter: b.waiter,
      };
    }
  }

  /** Share reservations, for views and tests. */
  *shares(): Iterable<ShareRequest> {
    const all: Share[] = [];
    for (const f of this.files.values()) if (f.shares) all.push(...f.shares);
    for (const s of all) {
      yield {
        fh: Buffer.from(s.file.key, 'latin1'),
        owner: { host: s.host.key, oh: Buffer.from(s.oh, 'latin1') },
        mode: s.mode as ShareRequest['mode'],
        access: s.access as ShareRequest['access'],
        serverAddress: s.addr.address,
      };
    }
  }

  // ---- internals: interning ----

  private ownerKey(o: LockOwner): string {
    // Length-prefixed host, so no (host, svid, oh) triple can spell another's key.
    return `${o.host.length}:${o.host}${o.svid}:${o.oh.toString('latin1')}`;
  }

  private internOwner(o: LockOwner): Owner {
    const key = this.ownerKey(o);
    let owner = this.owners.get(key);
    if (!owner) {
      const host = this.internHost(o.host);
      owner = new Owner(key, host, o.svid, key.length - o.oh.length);
      this.owners.set(key, owner);
      host.owners.add(owner);
    }
    return owner;
  }

  private internHost(key: string): HostEntry {
    let h = this.hosts.get(key);
    if (!h) this.hosts.set(key, (h = new HostEntry(key)));
    return h;
  }

  private internAddr(address: string): AddressEntry {
    let a = this.addrs.get(address);
    if (!a) this.addrs.set(address, (a = new AddressEntry(address)));
    return a;
  }

  private internHolder(owner: Owner, addr: AddressEntry): Holder {
    const hs = owner.holders;
    for (let i = 0; i < hs.length; i++) if (hs[i].addr === addr) return hs[i];
    const hd = new Holder(owner, addr);
    // Exact-size arrays: an owner rarely holds through more than one address.
    owner.holders = hs.length === 0 ? [hd] : [...hs, hd];
    addr.holders.add(hd);
    this.hostRef(addr, owner.host.key, 1);
    return hd;
  }

  private newFile(key: string, exportId: string | undefined): FileState {
    let exp: ExportEntry | undefined;
    if (exportId !== undefined) {
      exp = this.exports.get(exportId);
      if (!exp) this.exports.set(exportId, (exp = new ExportEntry(exportId)));
    }
    const f = new FileState(key, exp);
    this.files.set(key, f);
    exp?.files.add(f);
    return f;
  }

  /** Frees what a request interned but left empty (an owner or file that holds nothing). */
  private forgetIfUnused(file: FileState, owner: Owner): void {
    this.freeOwnerIfEmpty(owner);
    this.freeFileIfEmpty(file);
  }

  /** Takes a holder out of its owner's array (copy on write: arrays stay exact-size). */
  private unholder(hd: Holder): void {
    const hs = hd.owner.holders;
    hd.owner.holders = hs.length === 1 ? NO_HOLDERS : hs.filter((x) => x !== hd);
  }

  /** Unindexes an empty holder (its owner's array is the caller's when dropping). */
  private freeHolder(hd: Holder, fromOwner = true): void {
    if (fromOwner) this.unholder(hd);
    hd.addr.holders.delete(hd);
    this.hostRef(hd.addr, hd.owner.host.key, -1);
  }

  private freeOwnerIfEmpty(o: Owner): void {
    if (o.holders.length !== 0 || (o.blocks !== null && o.blocks.length !== 0)) return;
    if (this.owners.get(o.key) === o) this.owners.delete(o.key);
    o.host.owners.delete(o);
    this.freeHostIfEmpty(o.host);
  }

  private freeHostIfEmpty(h: HostEntry): void {
    if (h.owners.size === 0 && h.shares.size === 0 && this.hosts.get(h.key) === h) this.hosts.delete(h.key);
  }

  private freeFileIfEmpty(f: FileState): void {
    if (f.head !== null || (f.queue !== null && f.queue.size !== 0) || (f.shares !== null && f.shares.length !== 0)) return;
    if (this.files.get(f.key) !== f) return;
    this.files.delete(f.key);
    if (f.exp) {
      f.exp.files.delete(f);
      if (f.exp.files.size === 0 && this.exports.get(f.exp.id) === f.exp) this.exports.delete(f.exp.id);
    }
  }

  /**
   * Server addresses are the machine's own (a handful of VIPs), so an emptied entry is kept for
   * the next request rather than rebuilt each time; dropping the address forgets it.
   */
  private freeAddrIfEmpty(a: AddressEntry): void {
    if (a.holders.size === 0 && a.shares.size === 0 && a.blocks.size === 0 && this.addrs.get(a.address) === a) {
      this.addrs.delete(a.address);
    }
  }

  private hostRef(a: AddressEntry, host: string, delta: 1 | -1): void {
    const n = (a.hosts.get(host) ?? 0) + delta;
    if (n === 0) a.hosts.delete(host);
    else a.hosts.set(host, n);
  }

  // ---- internals: locks ----

  private firstConflict(file: FileState, owner: Owner, s: Pos, e: Pos, excl: boolean): Lock | null {
    if (!excl && file.exclusive === 0) return null;
    for (let l = file.head; l; l = l.fNext) {
      if (l.holder.owner !== owner && (excl || isExcl(l)) && l.start <= e && l.end >= s) return l;
    }
    return null;
  }

  /**
   * The owner's locks on the file, from whichever list is shorter: the file's, or the owner's own
   * (its holders'), so that neither a crowded file nor a busy owner makes the other slow.
   */
  private mineOn(file: FileState, owner: Owner): Lock[] {
    const out: Lock[] = [];
    let own = 0;
    for (const hd of owner.holders) own += hd.count;
    if (own === 0) return out;
    if (own < file.count) {
      for (const hd of owner.holders) for (let l = hd.head; l; l = l.hNext) if (l.file === file) out.push(l);
    } else {
      for (let l = file.head; l; l = l.fNext) if (l.holder.owner === owner) out.push(l);
    }
    return out;
  }

  private insertLock(l: Lock): void {
    const f = l.file;
    l.fNext = f.head;
    if (f.head) f.head.fPrev = l;
    f.head = l;
    f.count++;
    if (isExcl(l)) f.exclusive++;
    const hd = l.holder;
    l.hNext = hd.head;
    if (hd.head) hd.head.hPrev = l;
    hd.head = l;
    hd.count++;
    hd.addr.count++;
    this.nLocks++;
  }

  private removeLock(l: Lock): void {
    const f = l.file;
    if (l.fPrev) l.fPrev.fNext = l.fNext;
    else f.head = l.fNext;
    f.count--;
    if (isExcl(l)) f.exclusive--;
    if (l.fNext) l.fNext.fPrev = l.fPrev;
    const hd = l.holder;
    if (l.hPrev) l.hPrev.hNext = l.hNext;
    else hd.head = l.hNext;
    if (l.hNext) l.hNext.hPrev = l.hPrev;
    hd.addr.count--;
    this.nLocks--;
    if (--hd.count === 0) this.freeHolder(hd);
  }

  private tag(excl: boolean): number {
    return Math.floor((this.now() - this.epoch) / 1000) * 2 + (excl ? 1 : 0);
  }

  /**
   * Gives the holder's owner [s, e] of the given type through the holder's address: merges its
   * same-type same-address locks that overlap or touch, and cuts the range out of its other
   * locks (upgrade/downgrade, splitting as POSIX does). Returns whether any exclusive byte
   * became shared.
   */
  private applyLock(file: FileState, holder: Holder, s: Pos, e: Pos, excl: boolean): boolean {
    const owner = holder.owner;
    let downgraded = false;
    const s0 = s;
    const e0 = e;
    const mine = this.mineOn(file, owner);
    // Linked first, so absorbing the holder's other locks never leaves it empty (and freed).
    const nl = new Lock(file, holder, s, e, this.tag(excl));
    this.insertLock(nl);
    let first = nl.tag;
    for (const l of mine) {
      const ls = l.start;
      const le = l.end;
      const lx = isExcl(l);
      const same = lx === excl && l.holder === holder;
      if (ls <= e0 && le >= s0) {
        if (same) {
          s = minPos(s, ls);
          e = maxPos(e, le);
          first = Math.min(first, l.tag);
          this.removeLock(l);
        } else {
          if (lx && !excl) downgraded = true;
          this.cut(l, s0, e0);
        }
      } else if (same && ((le !== EOF && inc(le) === s0) || (e0 !== EOF && inc(e0) === ls))) {
        s = minPos(s, ls);
        e = maxPos(e, le);
        first = Math.min(first, l.tag);
        this.removeLock(l);
      }
    }
    nl.start = s;
    nl.end = e;
    nl.tag = first;
    return downgraded;
  }

  /** Removes [s, e] from lock l (which overlaps it): trims, splits in two, or removes it. */
  private cut(l: Lock, s: Pos, e: Pos): void {
    const keepLeft = l.start < s;
    const keepRight = l.end > e;
    if (keepLeft && keepRight) {
      const right = new Lock(l.file, l.holder, inc(e), l.end, l.tag);
      l.end = dec(s);
      this.insertLock(right);
    } else if (keepLeft) {
      l.end = dec(s);
    } else if (keepRight) {
      l.start = inc(e);
    } else {
      this.removeLock(l);
    }
  }

  /** Unlocks [s, e] for the owner; returns whether anything was released. */
  private unlockRange(file: FileState, owner: Owner, s: Pos, e: Pos): boolean {
    let released = false;
    const observed = this.subject.observed;
    for (const l of this.mineOn(file, owner)) {
      if (!(l.start <= e && l.end >= s)) continue;
      released = true;
      if (observed) {
        const gone = this.heldOf(file, l.holder, maxPos(l.start, s), minPos(l.end, e), isExcl(l), this.sinceOf(l));
        this.cut(l, s, e);
        this.subject.next({ type: 'released', lock: gone });
      } else {
        this.cut(l, s, e);
      }
    }
    return released;
  }

  // ---- internals: blocks ----

  private findBlock(file: FileState, owner: Owner, s: Pos, e: Pos, excl: boolean): Block | undefined {
    return owner.blocks?.find((b) => b.file === file && b.start === s && b.end === e && b.exclusive === excl);
  }

  private removeBlock(b: Block): void {
    b.queued = false;
    if (b.kernelWait !== null) {
      const cancel = b.kernelWait;
      b.kernelWait = null;
      cancel();
    }
    b.file.queue!.remove(b);
    const ob = b.owner.blocks!;
    ob.splice(ob.indexOf(b), 1);
    b.addr.blocks.delete(b);
    this.hostRef(b.addr, b.owner.host.key, -1);
    this.nBlocked--;
  }

  /**
   * Would queueing this request close a cycle in the wait-for graph? The requester would wait
   * for the holders of the conflicting locks; a holder waits for the holders blocking its own
   * queued requests, and so on.
   */
  private wouldDeadlock(owner: Owner, file: FileState, s: Pos, e: Pos, excl: boolean): boolean {
    const seen = new Set<Owner>();
    const stack: Owner[] = [];
    const pushHolders = (f: FileState, o: Owner, bs: Pos, be: Pos, bx: boolean): void => {
      for (let l = f.head; l; l = l.fNext) {
        const lo = l.holder.owner;
        if (lo !== o && (bx || isExcl(l)) && l.start <= be && l.end >= bs && !seen.has(lo)) {
          seen.add(lo);
          stack.push(lo);
        }
      }
    };
    pushHolders(file, owner, s, e, excl);
    while (stack.length) {
      const h = stack.pop()!;
      if (h === owner) return true;
      for (const b of h.blocks ?? []) pushHolders(b.file, h, b.start, b.end, b.exclusive);
    }
    return false;
  }

  /**
   * Bytes [s, e] of the file were released or became shared: grants, in arrival order, the queued
   * requests there that no longer conflict. Only waiters overlapping the bytes are looked at (a
   * release costs what it wakes, not the whole queue), and a grant that turns the owner's own
   * exclusive bytes shared looks again at its range.
   */
  private wake(file: FileState, s: Pos, e: Pos): void {
    const changed: { s: Pos; e: Pos }[] = [{ s, e }];
    for (let c = changed.pop(); c !== undefined && file.queue !== null && file.queue.size !== 0; c = changed.pop()) {
      const candidates = file.queue.overlapping(c.s, c.e);
      for (const b of candidates) {
        if (!b.queued || this.firstConflict(file, b.owner, b.start, b.end, b.exclusive) !== null) continue;
        if (this.locker) {
          const onFile = this.locker.lock(file.key, Buffer.from(file.key, 'latin1'), b.owner.key, b.start, b.end, b.exclusive);
          if (onFile === 'denied') {
            // Free in the table, held outside it: wait for that holder in the kernel.
            if (b.kernelWait === null) this.waitInKernel(b);
            continue;
          }
          // Any other refusal (no file descriptor left) leaves it queued for the next release.
          if (onFile !== 'granted') continue;
        }
        if (this.grantBlock(b)) changed.push({ s: b.start, e: b.end });
      }
    }
  }

  /** Commits a queued request the kernel holds for it; returns whether exclusive bytes became shared. */
  private grantBlock(b: Block): boolean {
    const file = b.file;
    // The block keeps its address alive until the lock holds it.
    const prior = this.priorOf(file, b.owner, b.start, b.end);
    const holder = this.internHolder(b.owner, b.addr);
    const downgraded = this.applyLock(file, holder, b.start, b.end, b.exclusive);
    this.removeBlock(b);
    const lock = this.heldOf(file, holder, b.start, b.end, b.exclusive, this.now());
    this.pending.push({ lock, waiter: b.waiter, prior });
    if (this.subject.observed) this.subject.next({ type: 'granted', lock, viaBlock: true });
    return downgraded;
  }

  /**
   * Waits in the kernel for a holder outside the table. When the kernel hands the range over,
   * a still-queued request is granted; one removed meanwhile (cancel, unlock, drop, a grant by
   * the table) has its range put back to what the table says the owner holds.
   */
  private waitInKernel(b: Block): void {
    const locker = this.locker!;
    const fileKey = b.file.key;
    const ownerKey = b.owner.key;
    const cancel = locker.wait(fileKey, Buffer.from(fileKey, 'latin1'), ownerKey, b.start, b.end, b.exclusive, (acquired) => {
      if (b.kernelWait !== cancel) {
        if (acquired) this.resync(fileKey, ownerKey, b.start, b.end);
        return;
      }
      b.kernelWait = null;
      if (!acquired) {
        // The kernel gave up on the file (gone, or no resources): the client retransmits its request.
        this.removeBlock(b);
        this.closeIfIdle(b.file, b.owner);
        this.forgetIfUnused(b.file, b.owner);
        return;
      }
      if (this.firstConflict(b.file, b.owner, b.start, b.end, b.exclusive) !== null) {
        // Cannot happen while the kernel mirrors the table; undo rather than hold two truths.
        this.resync(fileKey, ownerKey, b.start, b.end);
        return;
      }
      if (this.grantBlock(b)) this.wake(b.file, b.start, b.end);
      this.flush();
    });
    b.kernelWait = cancel;
  }

  /**
   * Puts the owner's description of the file back to what the table holds on [s, e]: its locks
   * there are set again (a downgrade where the kernel holds more), the gaps unlocked, and the
   * description closed when the owner holds and awaits nothing more on the file.
   */
  private resync(fileKey: string, ownerKey: string, s: Pos, e: Pos): void {
    const locker = this.locker!;
    const file = this.files.get(fileKey);
    const owner = this.owners.get(ownerKey);
    if (!file || !owner) {
      locker.close(fileKey, ownerKey);
      return;
    }
    const mine = this.mineOn(file, owner).filter((l) => overlaps(l, s, e));
    mine.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    const fh = Buffer.from(fileKey, 'latin1');
    let from: Pos | null = s;
    for (const l of mine) {
      locker.lock(fileKey, fh, ownerKey, maxPos(l.start, s), minPos(l.end, e), isExcl(l));
      if (from !== null && l.start > from) locker.unlock(fileKey, ownerKey, from, dec(l.start));
      from = l.end === EOF || l.end >= e ? null : inc(l.end);
    }
    if (from !== null) locker.unlock(fileKey, ownerKey, from, e);
    this.closeIfIdle(file, owner);
  }

  /** The owner's locks on [s, e], clipped to it: what undoing a grant of [s, e] restores. */
  private priorOf(file: FileState, owner: Owner, s: Pos, e: Pos): PriorLock[] {
    const out: PriorLock[] = [];
    for (const l of this.mineOn(file, owner)) {
      if (!overlaps(l, s, e)) continue;
      out.push({ ...toWire(maxPos(l.start, s), minPos(l.end, e)), exclusive: isExcl(l), serverAddress: l.holder.addr.address });
    }
    return out;
  }

  private awaitsInKernel(file: FileState, owner: Owner): boolean {
    return owner.blocks !== null && owner.blocks.some((b) => b.file === file && b.kernelWait !== null);
  }

  /** The owner holds and awaits nothing on the file. */
  private idleOn(file: FileState, owner: Owner): boolean {
    return !this.awaitsInKernel(file, owner) && this.mineOn(file, owner).length === 0;
  }

  /** Closes the owner's description of the file once it holds and awaits nothing there. */
  private closeIfIdle(file: FileState, owner: Owner): void {
    if (this.locker && this.idleOn(file, owner)) this.locker.close(file.key, owner.key);
  }

  /** Reports the grants of this call once the table is consistent (callbacks may call back in). */
  private flush(): void {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.pending.length !== 0) {
        const batch = this.pending;
        this.pending = [];
        for (const g of batch) this.onBlockGranted(g);
      }
    } finally {
      this.flushing = false;
    }
  }

  // ---- internals: shares ----

  private removeShare(s: Share): void {
    const list = s.file.shares!;
    list.splice(list.indexOf(s), 1);
    s.host.shares.delete(s);
    s.addr.shares.delete(s);
    this.hostRef(s.addr, s.host.key, -1);
    this.nShares--;
  }

  // ---- internals: drops ----

  private startDrop(): Drop {
    return { mark: ++this.markSeq, files: [], owners: [], hosts: [], holders: [], released: [], unblocked: [], locks: 0, shares: 0, blocked: 0 };
  }

  private touchFile(d: Drop, f: FileState): void {
    if (f.mark !== d.mark) {
      f.mark = d.mark;
      d.files.push(f);
    }
  }

  private touchOwner(d: Drop, o: Owner): void {
    if (o.mark !== d.mark) {
      o.mark = d.mark;
      d.owners.push(o);
    }
    this.touchHost(d, o.host);
  }

  private touchHost(d: Drop, h: HostEntry): void {
    if (h.mark !== d.mark) {
      h.mark = d.mark;
      d.hosts.push(h);
    }
  }

  /**
   * Releases every lock of a holder; unindexes it from its address when asked (the owner's
   * array is the caller's).
   */
  private dropHolder(d: Drop, hd: Holder, unindex: boolean): void {
    const observed = this.subject.observed;
    const keep = this.locker !== undefined;
    for (let l = hd.head; l; l = l.hNext) {
      if (observed) this.subject.next({ type: 'released', lock: this.held(l) });
      if (keep) d.released.push(l);
      const f = l.file;
      if (l.fPrev) l.fPrev.fNext = l.fNext;
      else f.head = l.fNext;
      if (l.fNext) l.fNext.fPrev = l.fPrev;
      f.count--;
      if (isExcl(l)) f.exclusive--;
      if (f.mark !== d.mark) {
        f.mark = d.mark;
        d.files.push(f);
      }
    }
    d.locks += hd.count;
    this.nLocks -= hd.count;
    hd.addr.count -= hd.count;
    hd.head = null;
    hd.count = 0;
    if (unindex) this.freeHolder(hd, false);
  }

  private dropBlock(d: Drop, b: Block): void {
    this.touchFile(d, b.file);
    this.touchOwner(d, b.owner);
    this.removeBlock(b);
    if (this.locker) d.unblocked.push(b);
    d.blocked++;
  }

  private dropShare(d: Drop, s: Share): void {
    this.touchFile(d, s.file);
    this.touchHost(d, s.host);
    this.removeShare(s);
    d.shares++;
  }

  /** Wakes the waiters the drop unblocked (any address), frees what it emptied, reports. */
  private finishDrop(d: Drop, reason: 'address' | 'host' | 'export', key: string): DropCounts {
    if (this.locker) this.releaseOnFiles(d);
    const before = this.pending.length;
    for (const f of d.files) if (f.queue !== null && f.queue.size !== 0) this.wake(f, 0, EOF);
    const woken = this.pending.length - before;
    for (const o of d.owners) this.freeOwnerIfEmpty(o);
    for (const h of d.hosts) this.freeHostIfEmpty(h);
    for (const f of d.files) this.freeFileIfEmpty(f);
    const counts: DropCounts = { locks: d.locks, shares: d.shares, blocked: d.blocked, clients: d.hosts.length, woken };
    this.dropped(reason, key, counts);
    this.flush();
    return counts;
  }

  /**
   * The kernel lets go of what the drop took out, before any waiter is woken and before the drop
   * returns: a description its owner no longer needs on that file is closed (one call releases
   * all of it), otherwise each dropped range is unlocked.
   */
  private releaseOnFiles(d: Drop): void {
    const locker = this.locker!;
    // Owners that still hold something somewhere: which of their files to look at once.
    const partly = new Map<Owner, Set<FileState>>();
    const later = (o: Owner, f: FileState): void => {
      const fs = partly.get(o);
      if (fs) fs.add(f);
      else partly.set(o, new Set([f]));
    };
    for (const l of d.released) {
      const o = l.holder.owner;
      if (o.holders.length === 0 && !this.awaitsInKernel(l.file, o)) {
        locker.close(l.file.key, o.key);
      } else {
        locker.unlock(l.file.key, o.key, l.start, l.end);
        later(o, l.file);
      }
    }
    for (const b of d.unblocked) later(b.owner, b.file);
    for (const [owner, files] of partly) for (const file of files) this.closeIfIdle(file, owner);
  }

  private dropped(reason: 'address' | 'host' | 'export', key: string, counts: DropCounts): DropCounts {
    if (this.subject.observed) this.subject.next({ type: 'dropped', reason, key, counts: { ...counts } });
    return { ...counts };
  }

  // ---- internals: the public shapes ----

  private publicOwner(o: Owner): LockOwner {
    return { host: o.host.key, svid: o.svid, oh: Buffer.from(o.key.slice(o.ohAt), 'latin1') };
  }

  private sinceOf(l: Lock): number {
    return this.epoch + Math.floor(l.tag / 2) * 1000;
  }

  private held(l: Lock): HeldLock {
    return this.heldOf(l.file, l.holder, l.start, l.end, isExcl(l), this.sinceOf(l));
  }

  private heldOf(file: FileState, holder: Holder, s: Pos, e: Pos, exclusive: boolean, since: number): HeldLock {
    const { offset, length } = toWire(s, e);
    return {
      fh: Buffer.from(file.key, 'latin1'),
      owner: this.publicOwner(holder.owner),
      exclusive,
      offset,
      length,
      serverAddress: holder.addr.address,
      exportId: file.exp?.id,
      since,
    };
  }
}

interface Drop {
  mark: number;
  files: FileState[];
  owners: Owner[];
  hosts: HostEntry[];
  holders: Holder[];
  /** Locks and blocks taken out, for the real files (kept only with a locker). */
  released: Lock[];
  unblocked: Block[];
  locks: number;
  shares: number;
  blocked: number;
}

/**
 * Rebuilds every count and index of the table from its per-file lists and compares: the
 * inconsistencies found (empty when the indexes are in step). For tests and benchmarks, through
 * src/locks/testing.ts: not part of the table's surface.
 */
export function checkIndexes(t: LockTable): string[] {
  const s = stateOf(t);
  const errs: string[] = [];
  const perHolder = new Map<Holder, Set<Lock>>();
  const perAddr = new Map<AddressEntry, number>();
  const hostRefs = new Map<AddressEntry, Map<string, number>>();
  const ref = (a: AddressEntry, h: string): void => {
    const m = hostRefs.get(a) ?? new Map<string, number>();
    m.set(h, (m.get(h) ?? 0) + 1);
    hostRefs.set(a, m);
  };
  let locks = 0;
  let blocked = 0;
  let shares = 0;
  for (const [key, f] of s.files) {
    if (f.key !== key) errs.push(`file key mismatch`);
    let n = 0;
    let x = 0;
    for (let l = f.head; l; l = l.fNext) {
      n++;
      if (isExcl(l)) x++;
      if (l.file !== f) errs.push('lock on wrong file list');
      if (l.fNext && l.fNext.fPrev !== l) errs.push('broken file links');
      perHolder.set(l.holder, (perHolder.get(l.holder) ?? new Set()).add(l));
      perAddr.set(l.holder.addr, (perAddr.get(l.holder.addr) ?? 0) + 1);
    }
    locks += n;
    if (n !== f.count || x !== f.exclusive) errs.push(`file counts ${f.count}/${f.exclusive}, rescan ${n}/${x}`);
    for (const b of f.queue?.toArray() ?? []) {
      blocked++;
      ref(b.addr, b.owner.host.key);
      if (!b.addr.blocks.has(b) || !b.owner.blocks?.includes(b)) errs.push('block missing from an index');
    }
    for (const s of f.shares ?? []) {
      shares++;
      ref(s.addr, s.host.key);
      if (!s.addr.shares.has(s) || !s.host.shares.has(s)) errs.push('share missing from an index');
    }
    if (n === 0 && !f.queue?.size && !f.shares?.length) errs.push('empty file kept');
    if (f.exp && (!f.exp.files.has(f) || s.exports.get(f.exp.id) !== f.exp)) errs.push('file missing from its export');
  }
  if (locks !== s.nLocks) errs.push(`nLocks ${s.nLocks} != ${locks}`);
  if (blocked !== s.nBlocked) errs.push(`nBlocked ${s.nBlocked} != ${blocked}`);
  if (shares !== s.nShares) errs.push(`nShares ${s.nShares} != ${shares}`);
  for (const [hd] of perHolder) if (!hd.addr.holders.has(hd) || !hd.owner.holders.includes(hd)) errs.push('holder not indexed');
  for (const o of s.owners.values()) {
    if (!o.host.owners.has(o) || s.hosts.get(o.host.key) !== o.host) errs.push('owner not under its host');
    if (o.holders.length === 0 && !o.blocks?.length) errs.push('empty owner kept');
    if (new Set(o.holders.map((hd) => hd.addr)).size !== o.holders.length) errs.push('two holders for one address');
    for (const hd of o.holders) {
      if (hd.owner !== o) errs.push('holder under the wrong owner');
      const want = perHolder.get(hd) ?? new Set();
      let n = 0;
      for (let l = hd.head; l; l = l.hNext) {
        n++;
        if (!want.has(l)) errs.push('holder lists a lock not in the table');
        if (l.hNext && l.hNext.hPrev !== l) errs.push('broken holder links');
      }
      if (n !== want.size || n !== hd.count || n === 0) errs.push(`holder count ${hd.count}, list ${n}, rescan ${want.size}`);
      ref(hd.addr, o.host.key);
    }
  }
  for (const [o] of [...perHolder].map(([hd]) => [hd.owner])) if (s.owners.get(o.key) !== o) errs.push('owner not indexed');
  for (const a of s.addrs.values()) {
    if ((perAddr.get(a) ?? 0) !== a.count) errs.push(`address ${a.address} count ${a.count}, rescan ${perAddr.get(a) ?? 0}`);
    for (const hd of a.holders) if (!hd.owner.holders.includes(hd) || hd.addr !== a) errs.push(`address ${a.address} lists a stale holder`);
    const refs = hostRefs.get(a) ?? new Map();
    if (refs.size !== a.hosts.size || [...refs].some(([h, c]) => a.hosts.get(h) !== c)) {
      errs.push(`address ${a.address} host refs differ from a rescan`);
    }
  }
  for (const [a] of perAddr) if (s.addrs.get(a.address) !== a) errs.push(`address ${a.address} not indexed`);
  for (const h of s.hosts.values()) {
    if (h.owners.size === 0 && h.shares.size === 0) errs.push(`empty host ${h.key} kept`);
  }
  for (const e of s.exports.values()) {
    for (const f of e.files) if (s.files.get(f.key) !== f) errs.push('export lists a dropped file');
    if (e.files.size === 0) errs.push(`empty export ${e.id} kept`);
  }
  return errs;
}
