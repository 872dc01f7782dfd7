// The lock table: POSIX byte-range locks, share reservations and blocked-lock queues, indexed by
// file, server address, client host and export so that every drop costs what it drops. LockTable
// is the one surface; its parts share one state (state.ts: the records and their indexes) and
// each does one job:
//   ranges.ts  an owner's ranges on one file: conflicts, apply (merge, split), unlock
//   blocks.ts  queued requests: deadlock detection, wakeups, grants and their undo
//   grants.ts  the log of grants a client may still refuse: what undoing one takes back
//   drops.ts   drops by server address, client host and export
//   mirror.ts  the real files (FileLocker): resync, close when idle, release after a drop
//   shares.ts  share reservations (SHARE, UNSHARE)
//   journal.ts the lock journal: entries written per call (journal-write.ts), other owners'
//              entries protected (protect.ts), an arrived address's locks awaiting reclaim
//   views.ts   held locks, queued requests, shares and counts, as copies
//   check.ts   the invariant check (checkIndexes) for tests and benchmarks
// Representation (≤ 250 bytes per held lock is a target): locks, files, owners and holders are
// records in typed-array columns (records.ts), found by id; hosts, addresses and exports are few
// and stay objects (entries.ts).
import type { Observable } from 'rxjs';
import { applyJournal, arrive, expireAwaiting, reclaimProgress } from './journal';
import type { Arrival, JournalEntry, ReclaimDone, Unreclaimed } from './journal-entry';
import { indexedForm, type IndexUpdate, type IndexedEntry, type JournalRecord } from './journal-index';
import { protectedBy } from './protect';
import { share, unshare } from './shares';
import { findBlock, flush, queueBlock, removeBlock, undoGrant, wake, wouldDeadlock } from './blocks';
import { checkState } from './check';
import { dropByExport, dropByHost, dropByServerAddress } from './drops';
import { GraceTable } from './grace';
import { checked, closeIfIdle, idleOn, resync } from './mirror';
import { ownerKey } from './journal-entry';
import { EOF, inc, parseRange, toWire, type Pos } from './range';
import { applyLock, firstConflict, mineOn, reclaimExact, unlockRange } from './ranges';
import { LockState, isAwaiting, isExcl } from './state';
import { blockedRequests, heldLocks, hostsAt, shareReservations, stats } from './views';
import type { LockFilter, LockTableStats } from './views';
import type {
  BlockGranted,
  DropCounts,
  FileLocker,
  HeldLock,
  LockChange,
  LockAnswer,
  LockOptions,
  LockRequest,
  LockStatus,
  ShareRequest,
  TestResult,
} from './types';

export type { LockFilter, LockTableStats } from './views';

export interface LockTableOptions {
  /** Maps a file handle to its export (for the export index, export grace and dropByExport). */
  exportOf?: (fh: Buffer) => string | undefined;
  now?: () => number;
  /** Called synchronously, before the releasing call returns, for each queued block granted. */
  onBlockGranted?: (g: BlockGranted) => void;
  /** Carries every decision to the real files (src/files); without it locks live in memory only. */
  locker?: FileLocker;
  /**
   * Takes the journal records of each call (per server address: an owner's entry on a file, or
   * its deletion) before the call returns; a grant must not be answered before they are durable.
   * Without it nothing is journaled and a move keeps no lock for its owner.
   */
  journal?: (address: string, records: JournalRecord[]) => void;
}

/** checkIndexes' way in to a table's state: granted by the class (a static block), to nobody else. */
let stateOf: (t: LockTable) => LockState;

export class LockTable {
  static {
    stateOf = (t) => t.st;
  }

  readonly grace: GraceTable;
  readonly changes: Observable<LockChange>;
  /** Arrived addresses whose every awaiting lock has been reclaimed or given up. */
  readonly reclaimed$: Observable<ReclaimDone>;

  private readonly st: LockState;

  constructor(opts: LockTableOptions = {}) {
    const st = (this.st = new LockState(opts.exportOf ?? (() => undefined), opts.now ?? Date.now, opts.onBlockGranted ?? (() => {}), opts.locker, opts.journal));
    this.grace = new GraceTable(st.now, (period, state) => {
      if (st.subject.observed) st.subject.next({ type: 'grace', period, state });
    });
    this.changes = st.subject.asObservable();
    this.reclaimed$ = st.reclaims.asObservable();
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
    const st = this.st;
    const L = st.L;
    const file = st.fileOf(req.fh);
    const fkey = st.locker ? st.fileKey(file, req.fh) : '';
    const exportId = file !== 0 ? st.exportIdOf(file) : st.exportOf(req.fh);
    type Refusal = Exclude<LockStatus, 'granted' | 'denied' | 'blocked'>;
    if (this.grace.covers(req.serverAddress, exportId)) return { status: checked(st, fkey, req.fh, 'denied_grace_period') as Refusal };
    const r = parseRange(req.offset, req.length);
    if (!r) return { status: checked(st, fkey, req.fh, 'fbig') as Refusal };
    const owner = st.findOwner(req.owner);
    let best = 0;
    for (let l = file !== 0 ? st.F.head[file] : 0; l !== 0; l = L.fNext[l]) {
      if (st.H.owner[L.holder[l]] === owner || !(req.exclusive || isExcl(L, l)) || !(L.start(l) <= r.end && L.end(l) >= r.start)) continue;
      if (best === 0 || L.start(l) < L.start(best)) best = l;
    }
    if (best !== 0) {
      const refused = st.locker?.validate(fkey, req.fh);
      // A lock awaiting its owner's reclaim: who will hold it is not known until the grace ends.
      if (refused === undefined && isAwaiting(L, best)) return { status: 'denied_grace_period' };
      return refused === undefined ? { status: 'denied', holder: st.held(best) } : { status: refused as Refusal };
    }
    if (!st.index.empty) {
      const p = protectedBy(st, st.fileKey(file, req.fh), req.fh, ownerKey(req.owner), r.start, r.end, req.exclusive);
      if (p !== undefined) return { status: typeof p === 'string' ? (p as Refusal) : 'denied_grace_period' };
    }
    // The file's own TEST checks the handle (it opens the file unless a description is open).
    if (!st.locker) return { status: 'granted' };
    const outside = st.locker.test(fkey, req.fh, ownerKey(req.owner), r.start, r.end, req.exclusive);
    if (outside === undefined) return { status: 'granted' };
    if (typeof outside === 'string') return { status: outside as Exclude<LockStatus, 'granted' | 'denied' | 'blocked'> };
    // Held by no NLM owner: svid 0 and an empty owner handle, as the kernel names no owner.
    const { offset, length } = toWire(outside.start, outside.end);
    const holder: HeldLock = {
      fh: req.fh, owner: { host: '', svid: 0, oh: Buffer.alloc(0) }, exclusive: outside.exclusive, offset, length, serverAddress: '', exportId, since: st.now(),
    };
    return { status: 'denied', holder };
  }

  /** LOCK: 'drop_reply' when the file's open started breaking a lease (nothing queued: the client asks again). */
  lock(req: LockRequest, opts: LockOptions): LockAnswer {
    const st = this.st;
    const r = parseRange(req.offset, req.length);
    if (!r) return 'fbig';
    let file = st.fileOf(req.fh);
    const locker = st.locker;
    const fkey = locker ? st.fileKey(file, req.fh) : '';
    // A draining address is about to leave this node: a lock granted now would be dropped in a
    // moment. denied_nolocks ("no resources now, try later") is the one status that neither claims
    // a conflicting holder (denied) nor tells the client to reclaim (denied_grace_period).
    if (st.draining.size !== 0 && st.draining.has(req.serverAddress)) return checked(st, fkey, req.fh, 'denied_nolocks');
    const exportId = file !== 0 ? st.exportIdOf(file) : st.exportOf(req.fh);
    if (this.grace.covers(req.serverAddress, exportId) !== opts.reclaim) {
      // Every awaiting lock was reclaimed (clients of an earlier notice) before the arrival's own
      // SM_NOTIFY went out, and the grace ended: the reclaims that notice sets off are of locks
      // their owners hold here now. Confirming one changes nothing; refusing it would tell its
      // client the lock is lost (Linux clients then fail the file's I/O).
      if (opts.reclaim && file !== 0 && this.holdsAlready(req, file, r.start, r.end)) return 'granted';
      return checked(st, fkey, req.fh, 'denied_grace_period');
    }
    // A reclaim of exactly a lock awaiting it: nothing to look for, to lock on the file or to journal.
    if (opts.reclaim && file !== 0 && this.reclaimedExactly(req, file, r.start, r.end)) return 'granted';
    if (file === 0) file = st.newFile(fkey || req.fh.toString('latin1'), exportId, req.fh);
    const owner = st.internOwner(req.owner);
    const { start, end } = r;
    const excl = req.exclusive;

    // No conflict in the table: the kernel decides whether anyone outside holds the range.
    const conflict = firstConflict(st, file, owner, start, end, excl);
    const free = conflict === 0;
    // Free in the table: another owner's journal entry that its holder does not hold right now
    // (its address moving, its node dead) is kept for that owner's reclaim. A reclaim takes
    // nothing from anyone: only the owner's own entry is reclaimed, through its address's grace.
    const entry = free && !opts.reclaim && !st.index.empty ? st.index.conflict(fkey || req.fh.toString('latin1'), st.ownerKeyOf(owner), start, end, excl, (a) => st.served.has(a)) : undefined;
    if (entry && !locker) return this.keep(req, opts, file, owner, start, end, entry);
    const onFile = free && locker ? locker.lock(fkey, req.fh, st.ownerKeyOf(owner), start, end, excl) : 'granted';
    if (entry && onFile === 'granted') {
      // The kernel gave the range, so the entry's holder does not hold it now (a TEST first would
      // leave a gap: its node may let go between the TEST and the lock). Given back, and kept.
      resync(st, fkey, st.ownerKeyOf(owner), req.owner, start, end);
      return this.keep(req, opts, file, owner, start, end, entry);
    }
    if (free && onFile === 'granted') {
      const holder = st.internHolder(owner, st.internAddr(req.serverAddress));
      const downgraded = applyLock(st, file, holder, start, end, excl);
      // A retransmitted blocking request that is grantable now is satisfied by this grant.
      if (st.ownerBlocks.size !== 0) {
        const b = findBlock(st, file, owner, start, end, excl);
        if (b) removeBlock(st, b);
      }
      if (st.subject.observed) {
        st.subject.next({ type: 'granted', lock: st.heldOf(file, holder, start, end, excl, st.now()), viaBlock: false });
      }
      if (downgraded) wake(st, file, start, end);
      flush(st);
      return 'granted';
    }
    // A conflict in the table: the handle is checked now, for this mode, before anything is queued
    // (a free range's lock checked it, by opening the file).
    const refused = onFile !== 'granted' && onFile !== 'denied' ? onFile : free ? undefined : locker?.validate(fkey, req.fh, excl);
    if (refused !== undefined) {
      // The client is told: its own request still queued for the same bytes (sent before the
      // file went stale or read-only) is over too, never to be GRANTED.
      const queued = refused !== 'drop_reply' && st.ownerBlocks.size !== 0 ? findBlock(st, file, owner, start, end, excl) : undefined;
      if (queued) removeBlock(st, queued);
      closeIfIdle(st, file, owner);
      st.forgetIfUnused(file, owner);
      return refused;
    }
    if (!opts.block) {
      st.forgetIfUnused(file, owner);
      // A lock awaiting its owner's reclaim: held for now, but by whom is settled by the grace.
      return !free && isAwaiting(st.L, conflict) ? 'denied_grace_period' : 'denied';
    }
    if (findBlock(st, file, owner, start, end, excl)) return 'blocked';
    // Only the table's own owners can form a cycle; a holder outside it is waited for in the kernel.
    if (free === false && wouldDeadlock(st, owner, file, start, end, excl)) {
      st.forgetIfUnused(file, owner);
      return 'deadlck';
    }
    queueBlock(st, file, owner, req.serverAddress, start, end, excl, opts.waiter?.(), free);
    if (st.subject.observed) st.subject.next({ type: 'blocked', request: req });
    return 'blocked';
  }

  /** Whether the owner holds [s, e] of this type through the request's address now (its locks there cover it, end to end). */
  private holdsAlready(req: LockRequest, file: number, s: Pos, e: Pos): boolean {
    const st = this.st;
    const L = st.L;
    const addr = st.addrs.get(req.serverAddress);
    const owner = st.findOwner(req.owner);
    if (addr === undefined || owner === 0) return false;
    const mine = mineOn(st, file, owner).filter((l) => st.H.addr[L.holder[l]] === addr.id && isExcl(L, l) === req.exclusive && L.start(l) <= e && L.end(l) >= s);
    mine.sort((a, b) => (L.start(a) < L.start(b) ? -1 : L.start(a) > L.start(b) ? 1 : 0));
    let from: Pos = s;
    for (const l of mine) {
      if (L.start(l) > from) return false;
      if (L.end(l) >= e) return true;
      from = inc(L.end(l));
    }
    return false;
  }

  /**
   * The owner's awaiting lock of exactly this range and type through the request's address becomes
   * its lock (ranges.ts reclaimExact). Not when its placeholder is still to be taken (the kernel
   * refused it at arrival): the general path asks the file. False: nothing changed.
   */
  private reclaimedExactly(req: LockRequest, file: number, s: Pos, e: Pos): boolean {
    const st = this.st;
    const addr = st.addrs.get(req.serverAddress);
    if (addr === undefined || addr.awaiting === 0) return false;
    const owner = st.findOwner(req.owner);
    if (owner === 0) return false;
    let holder = st.O.holder[owner];
    while (holder !== 0 && st.H.addr[holder] !== addr.id) holder = st.H.next[holder];
    if (holder === 0) return false;
    if (st.placeholders.size !== 0 && st.placeholders.get(file)?.some((p) => p.owner === owner && p.s <= e && p.e >= s)) return false;
    const l = reclaimExact(st, file, holder, s, e, req.exclusive);
    if (l === 0) return false;
    if (st.ownerBlocks.size !== 0) {
      const b = findBlock(st, file, owner, s, e, req.exclusive);
      if (b) removeBlock(st, b);
    }
    if (st.subject.observed) st.subject.next({ type: 'granted', lock: st.held(l), viaBlock: false });
    flush(st);
    return true;
  }

  /** Refuses (or queues, until the index changes) a request that would take a kept journal entry. */
  private keep(req: LockRequest, opts: LockOptions, file: number, owner: number, start: Pos, end: Pos, entry: IndexedEntry): LockStatus {
    const st = this.st;
    st.nKept++;
    if (st.subject.observed) st.subject.next({ type: 'kept', request: req, holder: { host: entry.entry.owner.host, address: entry.address } });
    if (!opts.block) {
      st.forgetIfUnused(file, owner);
      return 'denied_grace_period';
    }
    if (findBlock(st, file, owner, start, end, req.exclusive)) return 'blocked';
    const refused = st.locker?.validate(st.F.key[file], req.fh, req.exclusive);
    if (refused !== undefined) {
      st.forgetIfUnused(file, owner);
      return refused;
    }
    queueBlock(st, file, owner, req.serverAddress, start, end, req.exclusive, opts.waiter?.(), false);
    if (st.subject.observed) st.subject.next({ type: 'blocked', request: req });
    return 'blocked';
  }

  // UNLOCK and CANCEL work during grace. Linux lockd refuses both with denied_grace_period;
  // here they can only release what a client just reclaimed, and refusing them would merely make
  // clients of a scoped (per-address) grace retry.

  /** Removes the owner's queued block for exactly this range and type: 'granted' if one was removed. */
  cancel(req: LockRequest): LockStatus {
    const st = this.st;
    const r = parseRange(req.offset, req.length);
    if (!r) return 'fbig';
    const file = st.fileOf(req.fh);
    const refused = st.locker?.validate(st.fileKey(file, req.fh), req.fh);
    if (refused !== undefined) return refused;
    const owner = st.findOwner(req.owner);
    if (file === 0 || owner === 0) return 'denied';
    const b = findBlock(st, file, owner, r.start, r.end, req.exclusive);
    if (!b) return 'denied';
    removeBlock(st, b);
    closeIfIdle(st, file, owner);
    st.forgetIfUnused(file, owner);
    return 'granted';
  }

  /** POSIX unlock of the owner's range (trims and splits); 'granted' even when nothing was held. */
  unlock(req: LockRequest): LockStatus {
    const st = this.st;
    const r = parseRange(req.offset, req.length);
    if (!r) return 'fbig';
    const file = st.fileOf(req.fh);
    const refused = st.locker?.validate(st.fileKey(file, req.fh), req.fh);
    if (refused !== undefined) return refused;
    const owner = st.findOwner(req.owner);
    if (file === 0 || owner === 0) return 'granted';
    // The owner's own queued requests inside the range go first, as Linux's nlmsvc_unlock cancels
    // the blocked lock before unlocking: granted later, they would be locks nobody waits for.
    const ob = st.ownerBlocks.get(owner);
    if (ob) for (const b of [...ob]) if (b.file === file && b.start >= r.start && b.end <= r.end) removeBlock(st, b);
    if (st.O.holder[owner] !== 0 && unlockRange(st, file, owner, r.start, r.end)) {
      // The kernel lets go first, so the waiters woken next are granted on the file too; an owner
      // left with nothing there closes its description (one call instead of unlock and close).
      if (st.locker) {
        if (idleOn(st, file, owner)) st.locker.close(st.F.key[file], st.ownerKeyOf(owner));
        else st.locker.unlock(st.F.key[file], st.ownerKeyOf(owner), r.start, r.end);
      }
      wake(st, file, r.start, r.end);
    }
    closeIfIdle(st, file, owner);
    st.forgetIfUnused(file, owner);
    flush(st);
    return 'granted';
  }

  /**
   * Takes back a grant the client never confirmed (its GRANTED refused or unanswered, or CANCEL
   * after the grant): the owner is left with exactly what it held in that range before (blocks.ts).
   */
  undoGrant(g: BlockGranted): void {
    undoGrant(this.st, g);
  }

  /** NLM SHARE (shares.ts). */
  share(req: ShareRequest, reclaim: boolean): LockStatus {
    return share(this.st, this.grace, req, reclaim);
  }

  /** NLM UNSHARE: always 'granted' (Linux answers granted whether or not a reservation existed). */
  unshare(req: ShareRequest): LockStatus {
    return unshare(this.st, req);
  }

  // ---- drops: each walks only what it drops (drops.ts) ----

  /** NLM FREE_ALL: everything the host holds or waits for. */
  freeAll(host: string): DropCounts {
    return dropByHost(this.st, host);
  }

  dropByHost(host: string): DropCounts {
    return dropByHost(this.st, host);
  }

  dropByServerAddress(address: string): DropCounts {
    return dropByServerAddress(this.st, address);
  }

  dropByExport(exportId: string): DropCounts {
    return dropByExport(this.st, exportId);
  }

  // ---- the journal (journal.ts) ----

  /** Records of an address's journal as this node follows it (`reset`: its whole content); waiters they free look again. */
  applyJournal(address: string, records: readonly JournalRecord[], reset = false): IndexUpdate {
    return applyJournal(this.st, address, records, reset);
  }

  /** The address arrived with these journal entries: each is held for its owner, awaiting reclaim. */
  arrive(address: string, entries: readonly JournalEntry[]): Arrival {
    return arrive(this.st, address, entries.map(indexedForm));
  }

  /**
   * The address arrived with its journal as this node's index has it (applyJournal with its whole
   * content, reset, just before): each entry is held for its owner, as decoded when it was indexed.
   */
  arriveIndexed(address: string): Arrival {
    return arrive(this.st, address, this.st.index.entries(address));
  }

  /** The address's grace ended: what still awaits reclaim is removed (placeholders released, entries written again). */
  expireAwaiting(address: string): Unreclaimed {
    return expireAwaiting(this.st, address);
  }

  /** An arrived address's reclaim so far; undefined when nothing awaits reclaim there. */
  reclaimProgress(address: string): { total: number; awaiting: number; hosts: number; since: number } | undefined {
    return reclaimProgress(this.st, address);
  }

  /** One entry's bytes as this node's index has the address's journal (undefined: none). */
  journalValue(address: string, key: string): Buffer | undefined {
    return this.st.index.value(address, key);
  }

  /** Addresses with entries in this node's index of the journals. */
  journalAddresses(): string[] {
    return this.st.index.addresses();
  }

  /** The entries of an address as this node's index has them (its own, or another node's journal). */
  journalEntries(address: string): JournalEntry[] {
    return this.st.index.entries(address).map((x) => x.entry);
  }

  // ---- draining ----

  /**
   * A draining address grants nothing, its queued requests included: what it granted now would
   * reach the journal after the barrier of its drop (no other node would keep it for its owner).
   * A removal that did not happen wakes its waiters again.
   */
  setDraining(address: string, draining: boolean): void {
    const st = this.st;
    if (draining) return void st.draining.add(address);
    if (!st.draining.delete(address)) return;
    const files = new Set<number>();
    for (const b of st.addrs.get(address)?.blocks ?? []) files.add(b.file);
    for (const f of files) wake(st, f, 0, EOF);
    flush(st);
  }

  isDraining(address: string): boolean {
    return this.st.draining.has(address);
  }

  // ---- views (views.ts) ----

  locks(filter: LockFilter = {}): Iterable<HeldLock> {
    return heldLocks(this.st, filter);
  }

  /** Host keys holding a lock, share or queued block through this server address. */
  hostsAt(serverAddress: string): ReadonlySet<string> {
    return hostsAt(this.st, serverAddress);
  }

  stats(): LockTableStats {
    return stats(this.st);
  }

  /** Queued blocks in arrival order (per file), for views and tests. */
  *blocked(): Iterable<{ request: LockRequest; waiter: unknown }> {
    yield* blockedRequests(this.st);
  }

  /** Share reservations, for views and tests. */
  *shares(): Iterable<ShareRequest> {
    yield* shareReservations(this.st);
  }
}

/**
 * Rebuilds every count and index of the table from its per-file lists and compares: the
 * inconsistencies found (empty when the indexes are in step). For tests and benchmarks, through
 * src/locks/testing.ts: not part of the table's surface.
 */
export function checkIndexes(t: LockTable): string[] {
  return checkState(stateOf(t));
}
