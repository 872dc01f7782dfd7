// The lock table's state, shared by its parts: the records (locks, files, owners, holders, in
// typed-array columns), the entries (hosts, addresses, exports) and every index between them, with
// the interning and freeing that keep them in step. A "holder" is one owner holding through one
// server address; an address keeps its holders in one list per client host, so a drop by address
// or by host walks only what it drops. A held lock is on two intrusive doubly linked lists, its
// file's and its holder's (ranges.ts links them), so linking and unlinking are O(1) with no
// per-lock Map, Set, object or BigInt.
import { Subject } from 'rxjs';
import { AddressEntry, ExportEntry, FileExtra, HostAtAddress, HostEntry } from './entries';
import type { Block, GrantEntry, Share } from './entries';

import { toWire } from './range';
import type { Pos } from './range';
import { FileRecords, HolderRecords, LockRecords, OwnerRecords, Registry } from './records';
import { ownerKeyOfParts, type ReclaimDone } from './journal-entry';
import { JournalIndex, type JournalRecord } from './journal-index';
import type { BlockGranted, FileLocker, HeldLock, LockChange, LockOwner } from './types';

// A lock's tag: bit 0 is exclusive, bit 1 awaiting its owner's reclaim (an arrived address's
// journal entry, journal.ts), the bits above them the whole seconds since the table's epoch when
// it was first granted (merges keep the earliest). Read and made only here.
export const isExcl = (L: LockRecords, l: number): boolean => (L.tag[l] & 1) === 1;
export const isExclTag = (tag: number): boolean => (tag & 1) === 1;
export const isAwaiting = (L: LockRecords, l: number): boolean => (L.tag[l] & 2) === 2;
export const isAwaitingTag = (tag: number): boolean => (tag & 2) === 2;
export const AWAITING = 2;

/** An awaiting lock's placeholder not on the file yet (LockState.placeholders). */
export interface Placeholder {
  owner: number;
  s: Pos;
  e: Pos;
  excl: boolean;
  /** Ends its wait in the kernel, when it has one. */
  cancel?: () => void;
}

export class LockState {
  readonly L = new LockRecords();
  readonly F = new FileRecords();
  readonly O = new OwnerRecords();
  readonly H = new HolderRecords();
  /**
   * The locker's name of each live owner, by owner id, built once when first needed: the files
   * part's maps then hash one string per owner, not a new string per call (a drop of 10k
   * descriptions built 10k). Kept only with a locker.
   */
  readonly lockerKeys: (string | undefined)[] = [];
  /** What few files have (queues, shares), by file id. */
  readonly extras = new Map<number, FileExtra>();
  /** Queued requests of owners that have any, by owner id. */
  readonly ownerBlocks = new Map<number, Block[]>();
  /** Grants of queued requests an undo may still meet, per owner id in grant order (grants.ts). */
  readonly grants = new Map<number, GrantEntry[]>();

  readonly hosts = new Map<string, HostEntry>();
  readonly hostIds = new Registry<HostEntry>();
  readonly addrs = new Map<string, AddressEntry>();
  readonly addrIds = new Registry<AddressEntry>();
  readonly exports = new Map<string, ExportEntry>();
  readonly exportIds = new Registry<ExportEntry>();

  nLocks = 0;
  nShares = 0;
  nBlocked = 0;
  /** Requests refused or queued to keep a journal entry for its owner (table.ts keep). */
  nKept = 0;
  /** Grants made while the table was being changed, reported once it is consistent again (blocks.flush). */
  pending: BlockGranted[] = [];
  flushing = false;

  readonly subject = new Subject<LockChange>();
  readonly epoch: number;

  /** Addresses about to leave this node: they grant nothing (table.ts setDraining). */
  readonly draining = new Set<string>();

  // ---- the journal (journal.ts) ----
  /** Every address's journal as this node follows it: what other nodes' owners hold. */
  readonly index = new JournalIndex();
  /** Addresses whose entries are this table's own locks (it writes their journal): the index skips them. */
  readonly served = new Set<string>();
  /**
   * (address, owner, file) whose ranges changed in this call, by address, in the order marked and
   * maybe more than once (journal-write.ts keeps one of each): written at its end. An address's
   * list is emptied then, not dropped, and a mark builds no key: most calls mark one entry.
   */
  readonly marks = new Map<string, JournalMark[]>();
  /** Some address's marks are not empty. */
  marked = false;
  /** Arrived addresses whose locks still await their owners' reclaim. */
  readonly arrivals = new Map<string, ArrivalState>();
  readonly reclaims = new Subject<ReclaimDone>();
  /**
   * Awaiting locks whose placeholder the kernel refused at arrival, by file id: while a waiter of
   * this table held the range (its wait had just been granted, its callback not yet run), taken
   * once that waiter gives the range back (blocks.ts); while a locker outside the table held it,
   * waited for in the kernel (`cancel` ends that wait; journal.ts).
   */
  readonly placeholders = new Map<number, Placeholder[]>();

  // ---- files by identity (with a locker) ----
  /**
   * File ids by the locker's identity of their file: a request with another handle of a file the
   * table has (under the first handle it saw) is that file, so that one owner's locks through two
   * handles never conflict with each other and two owners' always do. Each client keeps its own
   * handle (its GRANTED callbacks carry the one it sent).
   */
  readonly byIdentity = new Map<string, number>();
  readonly identityOf = new Map<number, string>();
  /** The identity of the last handle fileOf found no file for: newFile, next, needs it. */
  private missed: { fh: Buffer; id: string | undefined } | undefined;

  constructor(
    readonly exportOf: (fh: Buffer) => string | undefined,
    readonly now: () => number,
    readonly onBlockGranted: (g: BlockGranted) => void,
    /** Carries every decision to the real files (mirror.ts); without it locks live in memory only. */
    readonly locker: FileLocker | undefined,
    /** Takes each call's journal records, per address, before the call returns; without it nothing is journaled. */
    readonly journal: ((address: string, records: JournalRecord[]) => void) | undefined,
  ) {
    this.epoch = now();
  }

  // ---- the tag ----

  tag(excl: boolean): number {
    return Math.floor((this.now() - this.epoch) / 1000) * 4 + (excl ? 1 : 0);
  }

  sinceOf(tag: number): number {
    return this.epoch + Math.floor(tag / 4) * 1000;
  }

  // ---- names ----

  ownerKeyOf(o: number): string {
    const known = this.lockerKeys[o];
    if (known !== undefined) return known;
    return (this.lockerKeys[o] = ownerKeyOfParts(this.hostOf(o).key, this.O.svid[o], this.O.oh[o]));
  }

  /** The file a handle names: by its bytes, else by its file's identity (another handle of a file the table has), or 0. */
  fileOf(fh: Buffer): number {
    const f = this.F.find(fh);
    if (f !== 0 || this.locker?.identify === undefined) return f;
    const id = this.locker.identify(fh);
    this.missed = { fh, id };
    return id === undefined ? 0 : this.byIdentity.get(id) ?? 0;
  }

  fileKey(file: number, fh: Buffer): string {
    return file !== 0 ? this.F.key[file] : fh.toString('latin1');
  }

  hostOf(o: number): HostEntry {
    return this.hostIds.get(this.O.host[o]);
  }

  exportIdOf(f: number): string | undefined {
    const e = this.F.exp[f];
    return e === 0 ? undefined : this.exportIds.get(e).key;
  }

  more(f: number): FileExtra {
    let x = this.extras.get(f);
    if (!x) this.extras.set(f, (x = new FileExtra()));
    return x;
  }

  // ---- the journal ----

  /** The owner's entry on the file through the address changes in this call: written again at its end (journal.ts). */
  mark(addr: number, owner: number, file: number): void {
    if (this.journal === undefined) return;
    const address = this.addrIds.get(addr).address;
    let m = this.marks.get(address);
    if (!m) this.marks.set(address, (m = []));
    const fileKey = this.F.key[file];
    const ownerKey = this.ownerKeyOf(owner);
    // The same entry again, just marked (a lock split or merged in one call): once is enough.
    const last = m.length === 0 ? undefined : m[m.length - 1];
    if (last !== undefined && last.ownerKey === ownerKey && last.fileKey === fileKey) return;
    // The owner's parts as the table has them (strings it keeps): no Buffer, no LockOwner per call.
    m.push({ ownerKey, host: this.hostOf(owner).key, svid: this.O.svid[owner], oh: this.O.oh[owner], fileKey, exportId: this.exportIdOf(file) });
    this.marked = true;
  }

  // ---- interning ----

  findOwner(o: LockOwner): number {
    const host = this.hosts.get(o.host);
    return host ? this.O.find(host.id, o.svid, o.oh) : 0;
  }

  internOwner(o: LockOwner): number {
    const host = this.internHost(o.host);
    let owner = this.O.find(host.id, o.svid, o.oh);
    if (owner === 0) {
      owner = this.O.add(host.id, o.svid, o.oh.toString('latin1'));
      // A reused id: the name cached for its previous owner must not survive (freed or not).
      this.lockerKeys[owner] = undefined;
      host.owners++;
    }
    return owner;
  }

  internHost(key: string): HostEntry {
    let h = this.hosts.get(key);
    if (!h) this.hosts.set(key, (h = this.hostIds.add((id) => new HostEntry(id, key))));
    return h;
  }

  internAddr(address: string): AddressEntry {
    let a = this.addrs.get(address);
    if (!a) this.addrs.set(address, (a = this.addrIds.add((id) => new AddressEntry(id, address))));
    return a;
  }

  /** The owner's holder through the address, made (last in its chain) if it has none. */
  internHolder(owner: number, addr: AddressEntry): number {
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

  /** The holder of the owner through the address, or 0. */
  holderAt(owner: number, address: string): number {
    let holder = this.O.holder[owner];
    while (holder !== 0 && this.addrIds.get(this.H.addr[holder]).address !== address) holder = this.H.next[holder];
    return holder;
  }

  /** A new file record under its first handle (key, as latin1); `fh`: that handle, if the caller has it as a Buffer. */
  newFile(key: string, exportId: string | undefined, fh?: Buffer): number {
    let exp = 0;
    let e: ExportEntry | undefined;
    if (exportId !== undefined) {
      e = this.exports.get(exportId);
      if (!e) this.exports.set(exportId, (e = this.exportIds.add((id) => new ExportEntry(id, exportId))));
      exp = e.id;
    }
    const f = this.F.add(key, exp);
    if (this.locker?.identify) {
      const id = fh !== undefined && this.missed?.fh === fh ? this.missed.id : this.locker.identify(fh ?? Buffer.from(key, 'latin1'));
      if (id !== undefined && !this.byIdentity.has(id)) {
        this.byIdentity.set(id, f);
        this.identityOf.set(f, id);
      }
    }
    this.missed = undefined;
    if (e) {
      this.F.xNext[f] = e.head;
      if (e.head !== 0) this.F.xPrev[e.head] = f;
      e.head = f;
      e.files++;
    }
    return f;
  }

  /** Counts a holder, share or queued request of the host through the address; returns their group. */
  hostRef(a: AddressEntry, host: HostEntry, delta: 1 | -1): HostAtAddress {
    let at = a.hosts.get(host.id);
    if (!at) a.hosts.set(host.id, (at = new HostAtAddress(host)));
    at.refs += delta;
    if (at.refs === 0) a.hosts.delete(host.id);
    return at;
  }

  // ---- freeing ----

  /** Frees what a request interned but left empty (an owner or file that holds nothing). */
  forgetIfUnused(file: number, owner: number): void {
    this.freeOwnerIfEmpty(owner);
    this.freeFileIfEmpty(file);
  }

  /** Takes a holder out of its owner's chain. */
  unholder(hd: number): void {
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
  freeHolder(hd: number): void {
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

  freeOwnerIfEmpty(o: number): void {
    if (!this.O.live(o) || this.O.holder[o] !== 0 || this.ownerBlocks.has(o)) return;
    const host = this.hostOf(o);
    this.lockerKeys[o] = undefined;
    if (this.grants.size !== 0) this.grants.delete(o);
    this.O.remove(o);
    host.owners--;
    this.freeHostIfEmpty(host);
  }

  freeHostIfEmpty(h: HostEntry): void {
    if (h.owners === 0 && h.shares.size === 0 && this.hosts.get(h.key) === h) {
      this.hosts.delete(h.key);
      this.hostIds.remove(h);
    }
  }

  freeFileIfEmpty(f: number): void {
    const F = this.F;
    if (!F.live(f) || F.head[f] !== 0) return;
    for (const p of this.placeholders.get(f) ?? []) p.cancel?.();
    this.placeholders.delete(f);
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
    const id = this.identityOf.get(f);
    if (id !== undefined) {
      this.identityOf.delete(f);
      this.byIdentity.delete(id);
    }
    F.remove(f);
  }

  /**
   * Server addresses are the machine's own (a handful of VIPs), so an emptied entry is kept for
   * the next request rather than rebuilt each time; dropping the address forgets it.
   */
  freeAddrIfEmpty(a: AddressEntry): void {
    if (a.hosts.size === 0 && a.shares.size === 0 && a.blocks.size === 0 && this.addrs.get(a.address) === a) {
      this.addrs.delete(a.address);
      this.addrIds.remove(a);
    }
  }

  removeShare(s: Share): void {
    const list = this.extras.get(s.file)!.shares;
    list.splice(list.indexOf(s), 1);
    s.host.shares.delete(s);
    s.addr.shares.delete(s);
    this.hostRef(s.addr, s.host, -1);
    this.nShares--;
  }

  // ---- the public shapes ----

  publicOwner(o: number): LockOwner {
    return { host: this.hostOf(o).key, svid: this.O.svid[o], oh: Buffer.from(this.O.oh[o], 'latin1') };
  }

  held(l: number): HeldLock {
    const L = this.L;
    return this.heldOf(L.file[l], L.holder[l], L.start(l), L.end(l), isExcl(L, l), this.sinceOf(L.tag[l]));
  }

  heldOf(file: number, holder: number, s: Pos, e: Pos, exclusive: boolean, since: number): HeldLock {
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

/** An owner's entry on a file through an address, to be written again at the end of the call. */
export interface JournalMark {
  /** The owner's locker key, and its parts (the owner handle as latin1): it may be freed before the end of the call. */
  ownerKey: string;
  host: string;
  svid: number;
  oh: string;
  fileKey: string;
  exportId: string | undefined;
}

/** An arrived address whose locks await reclaim. */
export interface ArrivalState {
  /** Locks set up awaiting reclaim, and their hosts. */
  total: number;
  hosts: number;
  at: number;
}
