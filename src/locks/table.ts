// The lock table: POSIX byte-range locks, share reservations and blocked-lock queues, indexed by
// file, server address, client host and export so that every drop costs what it drops.
//
// Representation (≤ 250 bytes per held lock is a target): locks, files, owners and holders are
// records in typed-array columns (records.ts), found by id; hosts, addresses and exports are few
// and stay objects. A "holder" is one owner holding through one server address; an address keeps
// its holders in one list per client host, so a drop by address or by host walks only what it
// drops. A held lock is on two intrusive doubly linked lists, its file's and its holder's, so
// linking and unlinking are O(1) with no per-lock Map, Set, object or BigInt.
//
// One owner's locks never overlap. Its overlapping or adjacent locks merge when they have the same
// type *and* came through the same server address: the server address is what a failover drops
// by, so a lock taken through one VIP must never be folded into a lock held through another.
import { Observable, Subject } from 'rxjs';
import { GraceTable } from './grace';
import { EOF, Pos, dec, inc, maxPos, minPos, parseRange, toWire } from './range';
import { FileRecords, HolderRecords, LockRecords, OwnerRecords, Registry } from './records';
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

class HostEntry {
  /** Owners interned under this host. */
  owners = 0;
  readonly shares = new Set<Share>();
  /** Its owners' queued requests: how a drop by host finds an owner that holds nothing. */
  readonly blocks = new Set<Block>();
  marked = false;
  constructor(
    readonly id: number,
    readonly key: string,
  ) {}
}

/** One client host at one server address: its holders there (a list), and what refers to it. */
class HostAtAddress {
  /** The first of its holders through the address (HolderRecords.aNext chains them). */
  head = 0;
  /** Holders, shares and queued requests of the host through the address. */
  refs = 0;
  constructor(readonly host: HostEntry) {}
}

class AddressEntry {
  /** Locks held through this address. */
  count = 0;
  readonly shares = new Set<Share>();
  readonly blocks = new Set<Block>();
  /** Host id -> that host's holders and references here. */
  readonly hosts = new Map<number, HostAtAddress>();
  constructor(
    readonly id: number,
    readonly address: string,
  ) {}
}

class ExportEntry {
  /** The first of its files (FileRecords.xNext chains them), and how many. */
  head = 0;
  files = 0;
  constructor(
    readonly id: number,
    readonly key: string,
  ) {}
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

interface Block {
  /** File and owner ids: both stay while the request is queued. */
  file: number;
  owner: number;
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
  /** File id: it stays while the reservation does. */
  file: number;
  host: HostEntry;
  oh: string;
  mode: number;
  access: number;
  addr: AddressEntry;
}

/** A lock taken out by a drop, as the real files must hear of it (its record is freed by then). */
interface Released {
  file: number;
  owner: number;
  start: Pos;
  end: Pos;
}

/** A held lock as a view saw it: its records may change or be reused before it is yielded. */
interface LockSnapshot {
  file: string;
  host: string;
  svid: number;
  oh: string;
  start: Pos;
  end: Pos;
  tag: number;
  address: string;
  exportId: string | undefined;
}

const NO_COUNTS: DropCounts = { locks: 0, shares: 0, blocked: 0, clients: 0, woken: 0 };

/** What checkIndexes reads of a table: granted by the class (a static block), to nobody else. */
interface TableState {
  L: LockRecords;
  F: FileRecords;
  O: OwnerRecords;
  H: HolderRecords;
  extras: ReadonlyMap<number, FileExtra>;
  ownerBlocks: ReadonlyMap<number, Block[]>;
  hosts: ReadonlyMap<string, HostEntry>;
  hostIds: Registry<HostEntry>;
  addrs: ReadonlyMap<string, AddressEntry>;
  addrIds: Registry<AddressEntry>;
  exports: ReadonlyMap<string, ExportEntry>;
  nLocks: number;
  nBlocked: number;
  nShares: number;
}

let stateOf: (t: LockTable) => TableState;

export class LockTable {
  static {
    stateOf = (t) => ({
      L: t.L, F: t.F, O: t.O, H: t.H, extras: t.extras, ownerBlocks: t.ownerBlocks, hosts: t.hosts, hostIds: t.hostIds,
      addrs: t.addrs, addrIds: t.addrIds, exports: t.exports, nLocks: t.nLocks, nBlocked: t.nBlocked, nShares: t.nShares,
    });
  }

  readonly grace: GraceTable;
  readonly changes: Observable<LockChange>;

  private readonly subject = new Subject<LockChange>();
  private readonly exportOf: (fh: Buffer) => string | undefined;
  private readonly now: () => number;
  private readonly onBlockGranted: (g: BlockGranted) => void;
  private readonly locker: FileLocker | undefined;
  private readonly epoch: number;

  private readonly L = new LockRecords();
  private readonly F = new FileRecords();
  private readonly O = new OwnerRecords();
  /**
   * The locker's name of each live owner, by owner id, built once when first needed: the files
   * part's maps then hash one string per owner, not a new string per call (a drop of 10k
   * descriptions built 10k). Kept only with a locker.
   */
  private readonly lockerKeys: (string | undefined)[] = [];
  private readonly H = new HolderRecords();
  /** What few files have (queues, shares), by file id. */
  private readonly extras = new Map<number, FileExtra>();
  /** Queued requests of owners that have any, by owner id. */
  private readonly ownerBlocks = new Map<number, Block[]>();

  private readonly hosts = new Map<string, HostEntry>();
  private readonly hostIds = new Registry<HostEntry>();
  private readonly addrs = new Map<string, AddressEntry>();
  private readonly addrIds = new Registry<AddressEntry>();
  private readonly exports = new Map<string, ExportEntry>();
  private readonly exportIds = new Registry<ExportEntry>();
  private readonly draining = new Set<string>();

  private nLocks = 0;
  private nShares = 0;
  private nBlocked = 0;
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
    const L = this.L;
    const file = this.F.find(req.fh);
    const fkey = this.locker ? this.fileKey(file, req.fh) : '';
    const exportId = file !== 0 ? this.exportIdOf(file) : this.exportOf(req.fh);
    type Refusal = Exclude<LockStatus, 'granted' | 'denied' | 'blocked'>;
    if (this.grace.covers(req.serverAddress, exportId)) return { status: this.checked(fkey, req.fh, 'denied_grace_period') as Refusal };
    const r = parseRange(req.offset, req.length);
    if (!r) return { status: this.checked(fkey, req.fh, 'fbig') as Refusal };
    const owner = this.findOwner(req.owner);
    let best = 0;
    for (let l = file !== 0 ? this.F.head[file] : 0; l !== 0; l = L.fNext[l]) {
      if (this.H.owner[L.holder[l]] === owner || !(req.exclusive || isExcl(L, l)) || !(L.start(l) <= r.end && L.end(l) >= r.start)) continue;
      if (best === 0 || L.start(l) < L.start(best)) best = l;
    }
    if (best !== 0) {
      const refused = this.locker?.validate(fkey, req.fh);
      return refused === undefined ? { status: 'denied', holder: this.held(best) } : { status: refused as Refusal };
    }
    // The file's own TEST checks the handle (it opens the file unless a description is open).
    if (!this.locker) return { status: 'granted' };
    const outside = this.locker.test(fkey, req.fh, this.ownerKey(req.owner), r.start, r.end, req.exclusive);
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
    let file = this.F.find(req.fh);
    const locker = this.locker;
    const fkey = locker ? this.fileKey(file, req.fh) : '';
    // A draining address is about to leave this node: a lock granted now would be dropped in a
    // moment. denied_nolocks ("no resources now, try later") is the one status that neither claims
    // a conflicting holder (denied) nor tells the client to reclaim (denied_grace_period).
    if (this.draining.size !== 0 && this.draining.has(req.serverAddress)) return this.checked(fkey, req.fh, 'denied_nolocks');
    const exportId = file !== 0 ? this.exportIdOf(file) : this.exportOf(req.fh);
    if (this.grace.covers(req.serverAddress, exportId) !== opts.reclaim) return this.checked(fkey, req.fh, 'denied_grace_period');
    if (file === 0) file = this.newFile(fkey || req.fh.toString('latin1'), exportId);
    const owner = this.internOwner(req.owner);
    const { start, end } = r;
    const excl = req.exclusive;

    // No conflict in the table: the kernel decides whether anyone outside holds the range.
    const free = this.firstConflict(file, owner, start, end, excl) === 0;
    const onFile = free && locker ? locker.lock(fkey, req.fh, this.ownerKeyOf(owner), start, end, excl) : 'granted';
    if (free && onFile === 'granted') {
      const holder = this.internHolder(owner, this.internAddr(req.serverAddress));
      const downgraded = this.applyLock(file, holder, start, end, excl);
      // A retransmitted blocking request that is grantable now is satisfied by this grant.
      if (this.ownerBlocks.size !== 0) {
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
    // A conflict in the table: the handle is checked now (a free range's lock checked it, by opening the file).
    const refused = onFile !== 'granted' && onFile !== 'denied' ? onFile : free ? undefined : locker?.validate(fkey, req.fh);
    if (refused !== undefined) {
      this.forgetIfUnused(file, owner);
      return refused;
    }
    if (!opts.block) {
      this.forgetIfUnused(file, owner);
      return 'denied';
    }
    if (this.findBlock(file, owner, start, end, excl)) return 'blocked';
    // Only the table's own owners can form a cycle; a holder outside it is waited for in the kernel.
    if (free === false && this.wouldDeadlock(owner, file, start, end, excl)) {
      this.forgetIfUnused(file, owner);
      return 'deadlck';
    }
    const addr = this.internAddr(req.serverAddress);
    const host = this.hostOf(owner);
    const b: Block = { file, owner, addr, start, end, exclusive: excl, waiter: opts.waiter?.(), queued: true, slot: 0, kernelWait: null };
    this.more(file).queue.push(b);
    const ob = this.ownerBlocks.get(owner);
    if (ob) ob.push(b);
    else this.ownerBlocks.set(owner, [b]);
    addr.blocks.add(b);
    host.blocks.add(b);
    this.hostRef(addr, host, 1);
    this.nBlocked++;
    if (free) this.waitInKernel(b);
    if (this.subject.observed) this.subject.next({ type: 'blocked', request: req });
    return 'blocked';
  }

  // UNLOCK and CANCEL work during grace. Linux lockd refuses both with denied_grace_period;
  // here they can only release what a client just reclaimed, and refusing them would merely make
  // clients of a scoped (per-address) grace retry.

  /**
   * An answer given without the file: a handle that names no file answers stale_fh instead, as
   * on every procedure (Linux's lockd looks the file up first). LOCK and TEST check the handle
   * only on the answers that do not reach the file: their first open of a file checks it anyway.
   */
  private checked(fkey: string, fh: Buffer, status: LockStatus): LockStatus {
    return this.locker?.validate(fkey, fh) ?? status;
  }

  /** Removes the owner's queued block for exactly this range and type: 'granted' if one was removed. */
  cancel(req: LockRequest): LockStatus {
    const r = parseRange(req.offset, req.length);
    if (!r) return 'fbig';
    const file = this.F.find(req.fh);
    const refused = this.locker?.validate(this.fileKey(file, req.fh), req.fh);
    if (refused !== undefined) return refused;
    const owner = this.findOwner(req.owner);
    if (file === 0 || owner === 0) return 'denied';
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
    const file = this.F.find(req.fh);
    const refused = this.locker?.validate(this.fileKey(file, req.fh), req.fh);
    if (refused !== undefined) return refused;
    const owner = this.findOwner(req.owner);
    if (file === 0 || owner === 0) return 'granted';
    // The owner's own queued requests inside the range go first, as Linux's nlmsvc_unlock cancels
    // the blocked lock before unlocking: granted later, they would be locks nobody waits for.
    const ob = this.ownerBlocks.get(owner);
    if (ob) for (const b of [...ob]) if (b.file === file && b.start >= r.start && b.end <= r.end) this.removeBlock(b);
    if (this.O.holder[owner] !== 0 && this.unlockRange(file, owner, r.start, r.end)) {
      // The kernel lets go first, so the waiters woken next are granted on the file too; an owner
      // left with nothing there closes its description (one call instead of unlock and close).
      if (this.locker) {
        if (this.idleOn(file, owner)) this.locker.close(this.F.key[file], this.ownerKeyOf(owner));
        else this.locker.unlock(this.F.key[file], this.ownerKeyOf(owner), r.start, r.end);
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
    const L = this.L;
    const file = this.F.find(lock.fh);
    const owner = this.findOwner(lock.owner);
    const r = parseRange(lock.offset, lock.length);
    if (file === 0 || owner === 0 || !r) return;
    let holder = this.O.holder[owner];
    while (holder !== 0 && this.addrIds.get(this.H.addr[holder]).address !== lock.serverAddress) holder = this.H.next[holder];
    let held = false;
    for (let l = holder !== 0 ? this.H.head[holder] : 0; l !== 0 && !held; l = L.hNext[l]) {
      held = L.file[l] === file && L.start(l) <= r.end && L.end(l) >= r.start;
    }
    if (!held) return;
    const fkey = this.F.key[file];
    const pieces = prior.flatMap((p) => {
      const pr = parseRange(p.offset, p.length);
      return pr ? [{ start: pr.start, end: pr.end, exclusive: p.exclusive, address: p.serverAddress }] : [];
    });
    for (const p of pieces) {
      if (!p.exclusive) continue;
      if (this.firstConflict(file, owner, p.start, p.end, true) !== 0) p.exclusive = false;
      // The kernel may refuse the way back up (an outside reader came in): then shared.
      else if (this.locker && this.locker.lock(fkey, lock.fh, this.ownerKeyOf(owner), p.start, p.end, true) !== 'granted') p.exclusive = false;
    }
    this.unlockRange(file, owner, r.start, r.end);
    for (const p of pieces) this.applyLock(file, this.internHolder(owner, this.internAddr(p.address)), p.start, p.end, p.exclusive);
    if (this.locker) this.resync(fkey, this.ownerKeyOf(owner), lock.owner, r.start, r.end);
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
    let file = this.F.find(req.fh);
    const fkey = this.fileKey(file, req.fh);
    // Shares are NLM's alone (Linux keeps them in lockd's memory too), but the handle must name a file.
    const refused = this.locker?.validate(fkey, req.fh);
    if (refused !== undefined) return refused;
    if (this.draining.size !== 0 && this.draining.has(req.serverAddress)) return 'denied_nolocks';
    const exportId = file !== 0 ? this.exportIdOf(file) : this.exportOf(req.fh);
    if (!reclaim && this.grace.covers(req.serverAddress, exportId)) return 'denied_grace_period';
    const oh = req.owner.oh.toString('latin1');
    let mine: Share | undefined;
    for (const s of (file !== 0 && this.extras.get(file)?.shares) || []) {
      if (s.host.key === req.owner.host && s.oh === oh) mine = s;
      else if ((req.access & s.mode) !== 0 || (req.mode & s.access) !== 0) return 'denied';
    }
    if (mine) this.removeShare(mine);
    if (file === 0) file = this.newFile(fkey, exportId);
    const host = this.internHost(req.owner.host);
    const addr = this.internAddr(req.serverAddress);
    const s: Share = { file, host, oh, mode: req.mode, access: req.access, addr };
    this.more(file).shares.push(s);
    host.shares.add(s);
    addr.shares.add(s);
    this.hostRef(addr, host, 1);
    this.nShares++;
    return 'granted';
  }

  /** NLM UNSHARE: always 'granted' (Linux answers granted whether or not a reservation existed). */
  unshare(req: ShareRequest): LockStatus {
    const file = this.F.find(req.fh);
    const refused = this.locker?.validate(this.fileKey(file, req.fh), req.fh);
    if (refused !== undefined) return refused;
    const shares = file !== 0 ? this.extras.get(file)?.shares : undefined;
    if (!shares) return 'granted';
    const oh = req.owner.oh.toString('latin1');
    const s = shares.find((x) => x.host.key === req.owner.host && x.oh === oh);
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
    try {
      this.touchHost(d, h);
      for (const a of this.addrs.values()) {
        const at = a.hosts.get(h.id);
        if (!at) continue;
        at.refs -= this.dropHolders(d, at);
        if (at.refs === 0) a.hosts.delete(h.id);
      }
      for (const b of [...h.blocks]) this.dropBlock(d, b);
      for (const s of [...h.shares]) this.dropShare(d, s);
      return this.finishDrop(d, 'host', host);
    } finally {
      this.clearMarks(d);
    }
  }

  dropByServerAddress(address: string): DropCounts {
    const a = this.addrs.get(address);
    if (!a) return this.dropped('address', address, NO_COUNTS);
    const d = this.startDrop();
    try {
      for (const b of [...a.blocks]) this.dropBlock(d, b);
      for (const s of [...a.shares]) this.dropShare(d, s);
      // Now only holders are left: unindex them wholesale rather than one by one.
      for (const at of a.hosts.values()) {
        this.touchHost(d, at.host);
        this.dropHolders(d, at);
      }
      a.hosts.clear();
      this.freeAddrIfEmpty(a);
      return this.finishDrop(d, 'address', address);
    } finally {
      this.clearMarks(d);
    }
  }

  dropByExport(exportId: string): DropCounts {
    const e = this.exports.get(exportId);
    if (!e) return this.dropped('export', exportId, NO_COUNTS);
    const { L, F, H } = this;
    const d = this.startDrop();
    try {
      const observed = this.subject.observed;
      const keep = this.locker !== undefined;
      const files: number[] = [];
      for (let f = e.head; f !== 0; f = F.xNext[f]) files.push(f);
      for (const f of files) {
        this.touchFile(d, f);
        for (let l = F.head[f], next = 0; l !== 0; l = next) {
          next = L.fNext[l];
          if (observed) this.subject.next({ type: 'released', lock: this.held(l) });
          const hd = L.holder[l];
          if (keep) d.released.push({ file: f, owner: H.owner[hd], start: L.start(l), end: L.end(l) });
          this.unlinkFromHolder(l);
          if (H.head[hd] === 0) d.holders.push(hd);
          this.touchOwner(d, H.owner[hd]);
          L.release(l);
          d.locks++;
          this.nLocks--;
        }
        F.head[f] = 0;
        F.exclusive[f] = 0;
        const x = this.extras.get(f);
        if (x) {
          for (const b of x.queue.toArray()) this.dropBlock(d, b);
          for (const s of [...x.shares]) this.dropShare(d, s);
        }
      }
      for (const hd of d.holders) this.freeHolder(hd);
      return this.finishDrop(d, 'export', exportId);
    } finally {
      this.clearMarks(d);
    }
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
    const { L, F, H } = this;
    const { serverAddress, host, exportId } = filter;
    const addr = serverAddress === undefined ? undefined : this.addrs.get(serverAddress);
    const h = host === undefined ? undefined : this.hosts.get(host);
    const exp = exportId === undefined ? undefined : this.exports.get(exportId);
    if ((serverAddress !== undefined && !addr) || (host !== undefined && !h) || (exportId !== undefined && !exp)) return;
    const keep = (l: number): boolean => {
      const hd = L.holder[l];
      return (!addr || H.addr[hd] === addr.id) && (!h || this.O.host[H.owner[hd]] === h.id) && (!exp || F.exp[L.file[l]] === exp.id);
    };
    // Collected from the narrowest index and copied before yielding, so a consumer may change the table.
    const found: LockSnapshot[] = [];
    const take = (l: number): void => {
      if (keep(l)) found.push(this.snapshot(l));
    };
    const fromHolders = (first: number): void => {
      for (let hd = first; hd !== 0; hd = H.aNext[hd]) for (let l = H.head[hd]; l !== 0; l = L.hNext[l]) take(l);
    };
    if (addr) {
      for (const at of addr.hosts.values()) fromHolders(at.head);
    } else if (h) {
      for (const a of this.addrs.values()) fromHolders(a.hosts.get(h.id)?.head ?? 0);
    } else if (exp) {
      for (let f = exp.head; f !== 0; f = F.xNext[f]) for (let l = F.head[f]; l !== 0; l = L.fNext[l]) take(l);
    } else {
      for (const f of F.ids()) for (let l = F.head[f]; l !== 0; l = L.fNext[l]) take(l);
    }
    for (const s of found) {
      const { offset, length } = toWire(s.start, s.end);
      yield {
        fh: Buffer.from(s.file, 'latin1'),
        owner: { host: s.host, svid: s.svid, oh: Buffer.from(s.oh, 'latin1') },
        exclusive: (s.tag & 1) === 1,
        offset,
        length,
        serverAddress: s.address,
        exportId: s.exportId,
        since: this.sinceOf(s.tag),
      };
    }
  }

  /** Host keys holding a lock, share or queued block through this server address. */
  hostsAt(serverAddress: string): ReadonlySet<string> {
    const out = new Set<string>();
    for (const at of this.addrs.get(serverAddress)?.hosts.values() ?? []) out.add(at.host.key);
    return out;
  }

  stats(): LockTableStats {
    const byAddress = new Map<string, { locks: number; hosts: number }>();
    for (const a of this.addrs.values()) byAddress.set(a.address, { locks: a.count, hosts: a.hosts.size });
    return { locks: this.nLocks, shares: this.nShares, blocked: this.nBlocked, byAddress };
  }

  /** Queued blocks in arrival order (per file), for views and tests. */
  *blocked(): Iterable<{ request: LockRequest; waiter: unknown }> {
    const all: { request: LockRequest; waiter: unknown }[] = [];
    for (const [f, x] of this.extras) {
      for (const b of x.queue.toArray()) {
        const { offset, length } = toWire(b.start, b.end);
        all.push({
          request: { fh: Buffer.from(this.F.key[f], 'latin1'), owner: this.publicOwner(b.owner), exclusive: b.exclusive, offset, length, serverAddress: b.addr.address },
          waiter: b.waiter,
        });
      }
    }
    yield* all;
  }

  /** Share reservations, for views and tests. */
  *shares(): Iterable<ShareRequest> {
    const all: ShareRequest[] = [];
    for (const [f, x] of this.extras) {
      for (const s of x.shares) {
        all.push({
          fh: Buffer.from(this.F.key[f], 'latin1'),
          owner: { host: s.host.key, oh: Buffer.from(s.oh, 'latin1') },
          mode: s.mode as ShareRequest['mode'],
          access: s.access as ShareRequest['access'],
          serverAddress: s.addr.address,
        });
      }
    }
    yield* all;
  }

  // ---- internals: interning ----

  /** The locker's name for an owner; length-prefixed host, so no (host, svid, oh) triple can spell another's. */
  private ownerKey(o: LockOwner): string {
    return `${o.host.length}:${o.host}${o.svid}:${o.oh.toString('latin1')}`;
  }

  private ownerKeyOf(o: number): string {
    const known = this.lockerKeys[o];
    if (known !== undefined) return known;
    const host = this.hostOf(o).key;
    return (this.lockerKeys[o] = `${host.length}:${host}${this.O.svid[o]}:${this.O.oh[o]}`);
  }

  private fileKey(file: number, fh: Buffer): string {
    return file !== 0 ? this.F.key[file] : fh.toString('latin1');
  }

  private hostOf(o: number): HostEntry {
    return this.hostIds.get(this.O.host[o]);
  }

  private exportIdOf(f: number): string | undefined {
    const e = this.F.exp[f];
    return e === 0 ? undefined : this.exportIds.get(e).key;
  }

  private more(f: number): FileExtra {
    let x = this.extras.get(f);
    if (!x) this.extras.set(f, (x = new FileExtra()));
    return x;
  }

  private findOwner(o: LockOwner): number {
    const host = this.hosts.get(o.host);
    return host ? this.O.find(host.id, o.svid, o.oh) : 0;
  }

  private internOwner(o: LockOwner): number {
    const host = this.internHost(o.host);
    let owner = this.O.find(host.id, o.svid, o.oh);
    if (owner === 0) {
      owner = this.O.add(host.id, o.svid, o.oh.toString('latin1'));
      // A reused id: the name cached for its previous owner must not survive (freed or not).
      if (this.locker) this.lockerKeys[owner] = undefined;
      host.owners++;
    }
    return owner;
  }

  private internHost(key: string): HostEntry {
    let h = this.hosts.get(key);
    if (!h) this.hosts.set(key, (h = this.hostIds.add((id) => new HostEntry(id, key))));
    return h;
  }

  private internAddr(address: string): AddressEntry {
    let a = this.addrs.get(address);
    if (!a) this.addrs.set(address, (a = this.addrIds.add((id) => new AddressEntry(id, address))));
    return a;
  }

  /** The owner's holder through the address, made (last in its chain) if it has none. */
  private internHolder(owner: number, addr: AddressEntry): number {
    const H = this.H;
    let last = 0;
    for (let hd = this.O.holder[owner]; hd !== 0; hd = H.next[hd]) {
      if (H.addr[hd] === addr.id) return hd;
      last = hd;
    }
    const hd = H.alloc();
    H.owner[hd] = owner;
    H.addr[hd] = addr.id;
    H.head[hd] = 0;
    H.next[hd] = 0;
    if (last === 0) this.O.holder[owner] = hd;
    else H.next[last] = hd;
    const host = this.hostOf(owner);
    const at = this.hostRef(addr, host, 1);
    H.aPrev[hd] = 0;
    H.aNext[hd] = at.head;
    if (at.head !== 0) H.aPrev[at.head] = hd;
    at.head = hd;
    return hd;
  }

  private newFile(key: string, exportId: string | undefined): number {
    let exp = 0;
    let e: ExportEntry | undefined;
    if (exportId !== undefined) {
      e = this.exports.get(exportId);
      if (!e) this.exports.set(exportId, (e = this.exportIds.add((id) => new ExportEntry(id, exportId))));
      exp = e.id;
    }
    const f = this.F.add(key, exp);
    if (e) {
      this.F.xNext[f] = e.head;
      if (e.head !== 0) this.F.xPrev[e.head] = f;
      e.head = f;
      e.files++;
    }
    return f;
  }

  /** Frees what a request interned but left empty (an owner or file that holds nothing). */
  private forgetIfUnused(file: number, owner: number): void {
    this.freeOwnerIfEmpty(owner);
    this.freeFileIfEmpty(file);
  }

  /** Takes a holder out of its owner's chain. */
  private unholder(hd: number): void {
    const { H, O } = this;
    const o = H.owner[hd];
    if (O.holder[o] === hd) {
      O.holder[o] = H.next[hd];
      return;
    }
    let prev = O.holder[o];
    while (H.next[prev] !== hd) prev = H.next[prev];
    H.next[prev] = H.next[hd];
  }

  /** Unindexes an empty holder and frees its record. */
  private freeHolder(hd: number): void {
    const H = this.H;
    this.unholder(hd);
    const addr = this.addrIds.get(H.addr[hd]);
    const at = addr.hosts.get(this.O.host[H.owner[hd]])!;
    if (H.aPrev[hd] !== 0) H.aNext[H.aPrev[hd]] = H.aNext[hd];
    else at.head = H.aNext[hd];
    if (H.aNext[hd] !== 0) H.aPrev[H.aNext[hd]] = H.aPrev[hd];
    this.hostRef(addr, at.host, -1);
    H.release(hd);
  }

  private freeOwnerIfEmpty(o: number): void {
    if (!this.O.live(o) || this.O.holder[o] !== 0 || this.ownerBlocks.has(o)) return;
    const host = this.hostOf(o);
    if (this.locker) this.lockerKeys[o] = undefined;
    this.O.remove(o);
    host.owners--;
    this.freeHostIfEmpty(host);
  }

  private freeHostIfEmpty(h: HostEntry): void {
    if (h.owners === 0 && h.shares.size === 0 && this.hosts.get(h.key) === h) {
      this.hosts.delete(h.key);
      this.hostIds.remove(h);
    }
  }

  private freeFileIfEmpty(f: number): void {
    const F = this.F;
    if (!F.live(f) || F.head[f] !== 0) return;
    const x = this.extras.get(f);
    if (x) {
      if (x.queue.size !== 0 || x.shares.length !== 0) return;
      this.extras.delete(f);
    }
    const exp = F.exp[f];
    if (exp !== 0) {
      const e = this.exportIds.get(exp);
      if (F.xPrev[f] !== 0) F.xNext[F.xPrev[f]] = F.xNext[f];
      else e.head = F.xNext[f];
      if (F.xNext[f] !== 0) F.xPrev[F.xNext[f]] = F.xPrev[f];
      if (--e.files === 0) {
        this.exports.delete(e.key);
        this.exportIds.remove(e);
      }
    }
    F.remove(f);
  }

  /**
   * Server addresses are the machine's own (a handful of VIPs), so an emptied entry is kept for
   * the next request rather than rebuilt each time; dropping the address forgets it.
   */
  private freeAddrIfEmpty(a: AddressEntry): void {
    if (a.hosts.size === 0 && a.shares.size === 0 && a.blocks.size === 0 && this.addrs.get(a.address) === a) {
      this.addrs.delete(a.address);
      this.addrIds.remove(a);
    }
  }

  /** Counts a holder, share or queued request of the host through the address; returns their group. */
  private hostRef(a: AddressEntry, host: HostEntry, delta: 1 | -1): HostAtAddress {
    let at = a.hosts.get(host.id);
    if (!at) a.hosts.set(host.id, (at = new HostAtAddress(host)));
    at.refs += delta;
    if (at.refs === 0) a.hosts.delete(host.id);
    return at;
  }

  // ---- internals: locks ----

  private firstConflict(file: number, owner: number, s: Pos, e: Pos, excl: boolean): number {
    const L = this.L;
    if (!excl && this.F.exclusive[file] === 0) return 0;
    for (let l = this.F.head[file]; l !== 0; l = L.fNext[l]) {
      if (this.H.owner[L.holder[l]] !== owner && (excl || isExcl(L, l)) && L.start(l) <= e && L.end(l) >= s) return l;
    }
    return 0;
  }

  /**
   * The owner's locks on the file, from whichever list is shorter: the file's, or the owner's own
   * (its holders'), so that neither a crowded file nor a busy owner makes the other slow. Both are
   * walked in step until one ends; that one is walked again to collect. Read-only: it may be shared.
   */
  private mineOn(file: number, owner: number): readonly number[] {
    const { L, H } = this;
    const first = this.O.holder[owner];
    if (first === 0) return NONE;
    let out: number[] | undefined;
    let a = this.F.head[file];
    let hd = first;
    let b = H.head[hd];
    for (;;) {
      if (a === 0) {
        for (let l = this.F.head[file]; l !== 0; l = L.fNext[l]) if (H.owner[L.holder[l]] === owner) (out ??= []).push(l);
        return out ?? NONE;
      }
      while (b === 0) {
        hd = H.next[hd];
        if (hd === 0) {
          for (let h = first; h !== 0; h = H.next[h]) for (let l = H.head[h]; l !== 0; l = L.hNext[l]) if (L.file[l] === file) (out ??= []).push(l);
          return out ?? NONE;
        }
        b = H.head[hd];
      }
      a = L.fNext[a];
      b = L.hNext[b];
    }
  }

  private newLock(file: number, holder: number, s: Pos, e: Pos, tag: number): number {
    const L = this.L;
    const l = L.alloc();
    L.file[l] = file;
    L.holder[l] = holder;
    L.setStart(l, s);
    L.setEnd(l, e);
    L.tag[l] = tag;
    L.fPrev[l] = 0;
    L.fNext[l] = this.F.head[file];
    if (L.fNext[l] !== 0) L.fPrev[L.fNext[l]] = l;
    this.F.head[file] = l;
    if ((tag & 1) === 1) this.F.exclusive[file]++;
    L.hPrev[l] = 0;
    L.hNext[l] = this.H.head[holder];
    if (L.hNext[l] !== 0) L.hPrev[L.hNext[l]] = l;
    this.H.head[holder] = l;
    this.addrIds.get(this.H.addr[holder]).count++;
    this.nLocks++;
    return l;
  }

  private removeLock(l: number): void {
    const hd = this.L.holder[l];
    this.unlinkFromFile(l);
    this.unlinkFromHolder(l);
    this.nLocks--;
    this.L.release(l);
    if (this.H.head[hd] === 0) this.freeHolder(hd);
  }

  private unlinkFromFile(l: number): void {
    const { L, F } = this;
    const f = L.file[l];
    if (L.fPrev[l] !== 0) L.fNext[L.fPrev[l]] = L.fNext[l];
    else F.head[f] = L.fNext[l];
    if (L.fNext[l] !== 0) L.fPrev[L.fNext[l]] = L.fPrev[l];
    if (isExcl(L, l)) F.exclusive[f]--;
  }

  /** Also counts the lock out of its address. */
  private unlinkFromHolder(l: number): void {
    const { L, H } = this;
    const hd = L.holder[l];
    if (L.hPrev[l] !== 0) L.hNext[L.hPrev[l]] = L.hNext[l];
    else H.head[hd] = L.hNext[l];
    if (L.hNext[l] !== 0) L.hPrev[L.hNext[l]] = L.hPrev[l];
    this.addrIds.get(H.addr[hd]).count--;
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
  private applyLock(file: number, holder: number, s: Pos, e: Pos, excl: boolean): boolean {
    const L = this.L;
    const owner = this.H.owner[holder];
    let downgraded = false;
    const s0 = s;
    const e0 = e;
    const mine = this.mineOn(file, owner);
    // Linked first, so absorbing the holder's other locks never leaves it empty (and freed).
    const nl = this.newLock(file, holder, s, e, this.tag(excl));
    let first = L.tag[nl];
    for (const l of mine) {
      const ls = L.start(l);
      const le = L.end(l);
      const lx = isExcl(L, l);
      const same = lx === excl && L.holder[l] === holder;
      if (ls <= e0 && le >= s0) {
        if (same) {
          s = minPos(s, ls);
          e = maxPos(e, le);
          first = Math.min(first, L.tag[l]);
          this.removeLock(l);
        } else {
          if (lx && !excl) downgraded = true;
          this.cut(l, s0, e0);
        }
      } else if (same && ((le !== EOF && inc(le) === s0) || (e0 !== EOF && inc(e0) === ls))) {
        s = minPos(s, ls);
        e = maxPos(e, le);
        first = Math.min(first, L.tag[l]);
        this.removeLock(l);
      }
    }
    L.setStart(nl, s);
    L.setEnd(nl, e);
    L.tag[nl] = first;
    return downgraded;
  }

  /** Removes [s, e] from lock l (which overlaps it): trims, splits in two, or removes it. */
  private cut(l: number, s: Pos, e: Pos): void {
    const L = this.L;
    const ls = L.start(l);
    const le = L.end(l);
    const keepLeft = ls < s;
    const keepRight = le > e;
    if (keepLeft && keepRight) {
      L.setEnd(l, dec(s));
      this.newLock(L.file[l], L.holder[l], inc(e), le, L.tag[l]);
    } else if (keepLeft) {
      L.setEnd(l, dec(s));
    } else if (keepRight) {
      L.setStart(l, inc(e));
    } else {
      this.removeLock(l);
    }
  }

  /** Unlocks [s, e] for the owner; returns whether anything was released. */
  private unlockRange(file: number, owner: number, s: Pos, e: Pos): boolean {
    const L = this.L;
    let released = false;
    const observed = this.subject.observed;
    for (const l of this.mineOn(file, owner)) {
      if (!(L.start(l) <= e && L.end(l) >= s)) continue;
      released = true;
      if (observed) {
        const gone = this.heldOf(file, L.holder[l], maxPos(L.start(l), s), minPos(L.end(l), e), isExcl(L, l), this.sinceOf(L.tag[l]));
        this.cut(l, s, e);
        this.subject.next({ type: 'released', lock: gone });
      } else {
        this.cut(l, s, e);
      }
    }
    return released;
  }

  // ---- internals: blocks ----

  private findBlock(file: number, owner: number, s: Pos, e: Pos, excl: boolean): Block | undefined {
    return this.ownerBlocks.get(owner)?.find((b) => b.file === file && b.start === s && b.end === e && b.exclusive === excl);
  }

  private removeBlock(b: Block): void {
    b.queued = false;
    if (b.kernelWait !== null) {
      const cancel = b.kernelWait;
      b.kernelWait = null;
      cancel();
    }
    this.extras.get(b.file)!.queue.remove(b);
    const ob = this.ownerBlocks.get(b.owner)!;
    ob.splice(ob.indexOf(b), 1);
    if (ob.length === 0) this.ownerBlocks.delete(b.owner);
    const host = this.hostOf(b.owner);
    host.blocks.delete(b);
    b.addr.blocks.delete(b);
    this.hostRef(b.addr, host, -1);
    this.nBlocked--;
  }

  /**
   * Would queueing this request close a cycle in the wait-for graph? The requester would wait
   * for the holders of the conflicting locks; a holder waits for the holders blocking its own
   * queued requests, and so on.
   */
  private wouldDeadlock(owner: number, file: number, s: Pos, e: Pos, excl: boolean): boolean {
    const { L, H } = this;
    const seen = new Set<number>();
    const stack: number[] = [];
    const pushHolders = (f: number, o: number, bs: Pos, be: Pos, bx: boolean): void => {
      for (let l = this.F.head[f]; l !== 0; l = L.fNext[l]) {
        const lo = H.owner[L.holder[l]];
        if (lo !== o && (bx || isExcl(L, l)) && L.start(l) <= be && L.end(l) >= bs && !seen.has(lo)) {
          seen.add(lo);
          stack.push(lo);
        }
      }
    };
    pushHolders(file, owner, s, e, excl);
    while (stack.length) {
      const h = stack.pop()!;
      if (h === owner) return true;
      for (const b of this.ownerBlocks.get(h) ?? []) pushHolders(b.file, h, b.start, b.end, b.exclusive);
    }
    return false;
  }

  /**
   * Bytes [s, e] of the file were released or became shared: grants, in arrival order, the queued
   * requests there that no longer conflict. Only waiters overlapping the bytes are looked at (a
   * release costs what it wakes, not the whole queue), and a grant that turns the owner's own
   * exclusive bytes shared looks again at its range.
   */
  private wake(file: number, s: Pos, e: Pos): void {
    const queue = this.extras.get(file)?.queue;
    if (!queue) return;
    const changed: { s: Pos; e: Pos }[] = [{ s, e }];
    for (let c = changed.pop(); c !== undefined && queue.size !== 0; c = changed.pop()) {
      for (const b of queue.overlapping(c.s, c.e)) {
        if (!b.queued || this.firstConflict(file, b.owner, b.start, b.end, b.exclusive) !== 0) continue;
        if (this.locker) {
          const key = this.F.key[file];
          const onFile = this.locker.lock(key, Buffer.from(key, 'latin1'), this.ownerKeyOf(b.owner), b.start, b.end, b.exclusive);
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
    const fileKey = this.F.key[b.file];
    const ownerKey = this.ownerKeyOf(b.owner);
    const owner = this.publicOwner(b.owner);
    const cancel = locker.wait(fileKey, Buffer.from(fileKey, 'latin1'), ownerKey, b.start, b.end, b.exclusive, (acquired) => {
      if (b.kernelWait !== cancel) {
        if (acquired) this.resync(fileKey, ownerKey, owner, b.start, b.end);
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
      if (this.firstConflict(b.file, b.owner, b.start, b.end, b.exclusive) !== 0) {
        // Cannot happen while the kernel mirrors the table; undo rather than hold two truths.
        this.resync(fileKey, ownerKey, owner, b.start, b.end);
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
   * description closed when the owner holds and awaits nothing more on the file. The owner is
   * named, not given by id: once its request is gone the id may name another owner.
   */
  private resync(fileKey: string, ownerKey: string, who: LockOwner, s: Pos, e: Pos): void {
    const locker = this.locker!;
    const L = this.L;
    const file = this.F.findKey(fileKey);
    const owner = this.findOwner(who);
    if (file === 0 || owner === 0) {
      locker.close(fileKey, ownerKey);
      return;
    }
    const mine = this.mineOn(file, owner).filter((l) => L.start(l) <= e && L.end(l) >= s);
    mine.sort((a, b) => (L.start(a) < L.start(b) ? -1 : L.start(a) > L.start(b) ? 1 : 0));
    const fh = Buffer.from(fileKey, 'latin1');
    let from: Pos | null = s;
    for (const l of mine) {
      const ls = L.start(l);
      const le = L.end(l);
      locker.lock(fileKey, fh, ownerKey, maxPos(ls, s), minPos(le, e), isExcl(L, l));
      if (from !== null && ls > from) locker.unlock(fileKey, ownerKey, from, dec(ls));
      from = le === EOF || le >= e ? null : inc(le);
    }
    if (from !== null) locker.unlock(fileKey, ownerKey, from, e);
    this.closeIfIdle(file, owner);
  }

  /** The owner's locks on [s, e], clipped to it: what undoing a grant of [s, e] restores. */
  private priorOf(file: number, owner: number, s: Pos, e: Pos): PriorLock[] {
    const L = this.L;
    const out: PriorLock[] = [];
    for (const l of this.mineOn(file, owner)) {
      if (!(L.start(l) <= e && L.end(l) >= s)) continue;
      out.push({ ...toWire(maxPos(L.start(l), s), minPos(L.end(l), e)), exclusive: isExcl(L, l), serverAddress: this.addrIds.get(this.H.addr[L.holder[l]]).address });
    }
    return out;
  }

  private awaitsInKernel(file: number, owner: number): boolean {
    return this.ownerBlocks.get(owner)?.some((b) => b.file === file && b.kernelWait !== null) ?? false;
  }

  /** The owner holds and awaits nothing on the file. */
  private idleOn(file: number, owner: number): boolean {
    return !this.awaitsInKernel(file, owner) && this.mineOn(file, owner).length === 0;
  }

  /** Closes the owner's description of the file once it holds and awaits nothing there. */
  private closeIfIdle(file: number, owner: number): void {
    if (this.locker && this.idleOn(file, owner)) this.locker.close(this.F.key[file], this.ownerKeyOf(owner));
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
    const list = this.extras.get(s.file)!.shares;
    list.splice(list.indexOf(s), 1);
    s.host.shares.delete(s);
    s.addr.shares.delete(s);
    this.hostRef(s.addr, s.host, -1);
    this.nShares--;
  }

  // ---- internals: drops ----

  private startDrop(): Drop {
    return { files: [], owners: [], hosts: [], holders: [], released: [], unblocked: [], locks: 0, shares: 0, blocked: 0 };
  }

  private touchFile(d: Drop, f: number): void {
    if (this.F.mark[f] === 0) {
      this.F.mark[f] = 1;
      d.files.push(f);
    }
  }

  private touchOwner(d: Drop, o: number): void {
    if (this.O.mark[o] === 0) {
      this.O.mark[o] = 1;
      d.owners.push(o);
      this.touchHost(d, this.hostOf(o));
    }
  }

  private touchHost(d: Drop, h: HostEntry): void {
    if (!h.marked) {
      h.marked = true;
      d.hosts.push(h);
    }
  }

  /** Clears what the drop marked (records freed meanwhile are cleared when reused). */
  private clearMarks(d: Drop): void {
    for (const f of d.files) this.F.mark[f] = 0;
    for (const o of d.owners) this.O.mark[o] = 0;
    for (const h of d.hosts) h.marked = false;
  }

  /** Drops every holder of the host at the address and frees their records; returns how many. */
  private dropHolders(d: Drop, at: HostAtAddress): number {
    let n = 0;
    for (let hd = at.head, next = 0; hd !== 0; hd = next, n++) {
      next = this.H.aNext[hd];
      this.touchOwner(d, this.H.owner[hd]);
      this.dropHolder(d, hd);
      this.unholder(hd);
      this.H.release(hd);
    }
    at.head = 0;
    return n;
  }

  /** Releases every lock of a holder and frees their records; the holder's record is the caller's. */
  private dropHolder(d: Drop, hd: number): void {
    const { L, H } = this;
    const observed = this.subject.observed;
    const keep = this.locker !== undefined;
    let n = 0;
    for (let l = H.head[hd], next = 0; l !== 0; l = next) {
      next = L.hNext[l];
      if (observed) this.subject.next({ type: 'released', lock: this.held(l) });
      const f = L.file[l];
      if (keep) d.released.push({ file: f, owner: H.owner[hd], start: L.start(l), end: L.end(l) });
      this.unlinkFromFile(l);
      this.touchFile(d, f);
      L.release(l);
      n++;
    }
    d.locks += n;
    this.nLocks -= n;
    this.addrIds.get(H.addr[hd]).count -= n;
    H.head[hd] = 0;
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
    for (const f of d.files) if (this.extras.get(f)?.queue.size) this.wake(f, 0, EOF);
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
    const partly = new Map<number, Set<number>>();
    const later = (o: number, f: number): void => {
      const fs = partly.get(o);
      if (fs) fs.add(f);
      else partly.set(o, new Set([f]));
    };
    // The descriptions to close go to the locker together: it may close them in parallel.
    const closeFiles: string[] = [];
    const closeOwners: string[] = [];
    for (const r of d.released) {
      const key = this.F.key[r.file];
      if (this.O.holder[r.owner] === 0 && !this.awaitsInKernel(r.file, r.owner)) {
        closeFiles.push(key);
        closeOwners.push(this.ownerKeyOf(r.owner));
      } else {
        locker.unlock(key, this.ownerKeyOf(r.owner), r.start, r.end);
        later(r.owner, r.file);
      }
    }
    locker.closeAll(closeFiles, closeOwners);
    for (const b of d.unblocked) later(b.owner, b.file);
    for (const [owner, files] of partly) for (const file of files) this.closeIfIdle(file, owner);
  }

  private dropped(reason: 'address' | 'host' | 'export', key: string, counts: DropCounts): DropCounts {
    if (this.subject.observed) this.subject.next({ type: 'dropped', reason, key, counts: { ...counts } });
    return { ...counts };
  }

  // ---- internals: the public shapes ----

  private publicOwner(o: number): LockOwner {
    return { host: this.hostOf(o).key, svid: this.O.svid[o], oh: Buffer.from(this.O.oh[o], 'latin1') };
  }

  private sinceOf(tag: number): number {
    return this.epoch + Math.floor(tag / 2) * 1000;
  }

  private held(l: number): HeldLock {
    const L = this.L;
    return this.heldOf(L.file[l], L.holder[l], L.start(l), L.end(l), isExcl(L, l), this.sinceOf(L.tag[l]));
  }

  private snapshot(l: number): LockSnapshot {
    const { L, O, H } = this;
    const o = H.owner[L.holder[l]];
    return {
      file: this.F.key[L.file[l]],
      host: this.hostOf(o).key,
      svid: O.svid[o],
      oh: O.oh[o],
      start: L.start(l),
      end: L.end(l),
      tag: L.tag[l],
      address: this.addrIds.get(H.addr[L.holder[l]]).address,
      exportId: this.exportIdOf(L.file[l]),
    };
  }

  private heldOf(file: number, holder: number, s: Pos, e: Pos, exclusive: boolean, since: number): HeldLock {
    const { offset, length } = toWire(s, e);
    return {
      fh: Buffer.from(this.F.key[file], 'latin1'),
      owner: this.publicOwner(this.H.owner[holder]),
      exclusive,
      offset,
      length,
      serverAddress: this.addrIds.get(this.H.addr[holder]).address,
      exportId: this.exportIdOf(file),
      since,
    };
  }
}

const isExcl = (L: LockRecords, l: number): boolean => (L.tag[l] & 1) === 1;

/** mineOn's answer when the owner holds nothing on the file: no array per call. */
const NONE: readonly number[] = Object.freeze([]);

interface Drop {
  files: number[];
  owners: number[];
  hosts: HostEntry[];
  /** Holders a drop by export emptied, freed at its end. */
  holders: number[];
  /** Locks and blocks taken out, for the real files (kept only with a locker). */
  released: Released[];
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
  const { L, F, O, H } = s;
  const errs: string[] = [];
  const perHolder = new Map<number, Set<number>>();
  const perAddr = new Map<number, number>();
  // address id -> host id -> holders + shares + blocks found by the rescan
  const refs = new Map<number, Map<number, number>>();
  const ref = (a: AddressEntry, host: number): void => {
    const m = refs.get(a.id) ?? new Map<number, number>();
    m.set(host, (m.get(host) ?? 0) + 1);
    refs.set(a.id, m);
  };
  let locks = 0;
  let blocked = 0;
  let shares = 0;
  let files = 0;
  const perExport = new Map<number, number>();
  for (const f of F.ids()) {
    files++;
    if (F.findKey(F.key[f]) !== f) errs.push('file not indexed by its key');
    let n = 0;
    let x = 0;
    for (let l = F.head[f]; l !== 0; l = L.fNext[l]) {
      n++;
      if (isExcl(L, l)) x++;
      if (L.file[l] !== f) errs.push('lock on wrong file list');
      if (L.fNext[l] !== 0 && L.fPrev[L.fNext[l]] !== l) errs.push('broken file links');
      if (!(L.start(l) <= L.end(l))) errs.push('lock ends before it starts');
      const hd = L.holder[l];
      perHolder.set(hd, (perHolder.get(hd) ?? new Set()).add(l));
      perAddr.set(H.addr[hd], (perAddr.get(H.addr[hd]) ?? 0) + 1);
    }
    locks += n;
    if (x !== F.exclusive[f]) errs.push(`file exclusive count ${F.exclusive[f]}, rescan ${x}`);
    const extra = s.extras.get(f);
    for (const b of extra?.queue.toArray() ?? []) {
      blocked++;
      ref(b.addr, O.host[b.owner]);
      if (b.file !== f || !b.addr.blocks.has(b) || !s.ownerBlocks.get(b.owner)?.includes(b) || !s.hostIds.get(O.host[b.owner]).blocks.has(b)) {
        errs.push('block missing from an index');
      }
    }
    for (const sh of extra?.shares ?? []) {
      shares++;
      ref(sh.addr, sh.host.id);
      if (sh.file !== f || !sh.addr.shares.has(sh) || !sh.host.shares.has(sh)) errs.push('share missing from an index');
    }
    if (n === 0 && !extra?.queue.size && !extra?.shares.length) errs.push('empty file kept');
    if (F.exp[f] !== 0) perExport.set(F.exp[f], (perExport.get(F.exp[f]) ?? 0) + 1);
    if (F.mark[f] !== 0) errs.push('file left marked');
  }
  for (const [f] of s.extras) if (!F.live(f)) errs.push('extra kept for a freed file');
  if (files !== F.size) errs.push(`files ${F.size} live, ${files} rescanned`);
  if (locks !== s.nLocks || locks !== L.size) errs.push(`nLocks ${s.nLocks} (records ${L.size}) != ${locks}`);
  if (blocked !== s.nBlocked) errs.push(`nBlocked ${s.nBlocked} != ${blocked}`);
  if (shares !== s.nShares) errs.push(`nShares ${s.nShares} != ${shares}`);
  const ownersPerHost = new Map<number, number>();
  const holderIds = new Set(H.ids());
  for (const o of O.ids()) {
    if (O.findKey(O.host[o], O.svid[o], O.oh[o]) !== o) errs.push('owner not indexed');
    const host = s.hostIds.find(O.host[o]);
    if (!host || s.hosts.get(host.key) !== host) errs.push('owner under an unindexed host');
    ownersPerHost.set(O.host[o], (ownersPerHost.get(O.host[o]) ?? 0) + 1);
    if (O.holder[o] === 0 && !s.ownerBlocks.get(o)?.length) errs.push('empty owner kept');
    if (O.mark[o] !== 0) errs.push('owner left marked');
    const seen = new Set<number>();
    for (let hd = O.holder[o]; hd !== 0; hd = H.next[hd]) {
      if (!holderIds.delete(hd)) errs.push('owner chains a freed or shared holder');
      if (seen.has(H.addr[hd])) errs.push('two holders for one address');
      seen.add(H.addr[hd]);
      if (H.owner[hd] !== o) errs.push('holder under the wrong owner');
      const want = perHolder.get(hd) ?? new Set();
      let n = 0;
      for (let l = H.head[hd]; l !== 0; l = L.hNext[l]) {
        n++;
        if (!want.has(l)) errs.push('holder lists a lock not in the table');
        if (L.hNext[l] !== 0 && L.hPrev[L.hNext[l]] !== l) errs.push('broken holder links');
      }
      if (n !== want.size || n === 0) errs.push(`holder list ${n}, rescan ${want.size}`);
      ref(s.addrIds.get(H.addr[hd]), O.host[o]);
    }
  }
  if (holderIds.size !== 0) errs.push(`${holderIds.size} holders on no owner`);
  for (const [hd] of perHolder) if (O.holder[H.owner[hd]] === 0) errs.push('lock under an unindexed holder');
  for (const a of s.addrs.values()) {
    if (s.addrIds.find(a.id) !== a) errs.push(`address ${a.address} not registered`);
    if ((perAddr.get(a.id) ?? 0) !== a.count) errs.push(`address ${a.address} count ${a.count}, rescan ${perAddr.get(a.id) ?? 0}`);
    const want = refs.get(a.id) ?? new Map<number, number>();
    for (const [hid, at] of a.hosts) {
      if (at.host.id !== hid || s.hosts.get(at.host.key) !== at.host) errs.push(`address ${a.address} lists an unindexed host`);
      let prev = 0;
      for (let hd = at.head; hd !== 0; hd = H.aNext[hd]) {
        if (H.aPrev[hd] !== prev) errs.push(`address ${a.address} broken holder links`);
        if (H.addr[hd] !== a.id || O.host[H.owner[hd]] !== hid) errs.push(`address ${a.address} lists a stale holder`);
        prev = hd;
      }
      if ((want.get(hid) ?? 0) !== at.refs) errs.push(`address ${a.address} host refs ${at.refs}, rescan ${want.get(hid) ?? 0}`);
    }
    for (const [hid] of want) if (!a.hosts.has(hid)) errs.push(`address ${a.address} misses a host`);
  }
  for (const [aid] of perAddr) {
    const a = s.addrIds.find(aid);
    if (!a || s.addrs.get(a.address) !== a) errs.push('lock through an unindexed address');
  }
  for (const h of s.hosts.values()) {
    if (s.hostIds.find(h.id) !== h) errs.push(`host ${h.key} not registered`);
    if ((ownersPerHost.get(h.id) ?? 0) !== h.owners) errs.push(`host ${h.key} counts ${h.owners} owners, rescan ${ownersPerHost.get(h.id) ?? 0}`);
    if (h.owners === 0 && h.shares.size === 0) errs.push(`empty host ${h.key} kept`);
    if (h.marked) errs.push(`host ${h.key} left marked`);
  }
  for (const e of s.exports.values()) {
    let n = 0;
    for (let f = e.head, prev = 0; f !== 0; prev = f, f = F.xNext[f]) {
      n++;
      if (F.exp[f] !== e.id || F.xPrev[f] !== prev) errs.push(`export ${e.key} lists a file that is not its own`);
    }
    if (n !== e.files || n !== (perExport.get(e.id) ?? 0)) errs.push(`export ${e.key} lists ${n} files, counts ${e.files}, rescan ${perExport.get(e.id) ?? 0}`);
    if (n === 0) errs.push(`empty export ${e.key} kept`);
  }
  return errs;
}
