// The lock journal's part of the table (issue 19: a lock survives its address's move).
//  - Writing: every change to an owner's ranges on a file through an address is marked (state.ts
//    mark, from ranges.ts and the drops by host and export) and written at the end of the call as
//    that owner's whole entry there — or its deletion. A drop by address writes nothing: the
//    entries are what keeps the locks for their owners while the address moves.
//  - Protecting: a request the table's own locks allow is checked against the index of every
//    address's journal (journal-index.ts). An entry of another owner whose holder does not hold
//    it right now — the kernel says the range is free — is not handed to anyone else.
//  - Arriving: an address's entries become locks awaiting their owners' reclaim (with their
//    owners' descriptions on the files: placeholders nobody else can take); a reclaim turns them
//    into ordinary locks, and once none is left the address's reclaim is done.
import { flush, wake } from './blocks';
import type { Arrival, Unreclaimed } from './journal-entry';
import type { IndexUpdate, IndexedEntry, JournalRecord } from './journal-index';
import { idleOn, resync } from './mirror';
import { EOF, dec, inc, maxPos, minPos, type Pos } from './range';
import { applyLock, firstConflict, mineOn, unlockRange } from './ranges';
import type { AddressEntry } from './entries';
import { isAwaiting, type LockState, type Placeholder } from './state';

/** Applies records of an address's journal to the index; waiters on the files it touched look again. */
export function applyJournal(st: LockState, address: string, records: readonly JournalRecord[], reset: boolean): IndexUpdate {
  const update = st.index.apply(address, records, reset);
  for (const key of update.files) {
    const f = st.F.findKey(key);
    if (f !== 0) wake(st, f, 0, EOF);
  }
  flush(st);
  return update;
}

/** An entry as the arrival takes it: as the index keeps it (keys and ranges parsed when it was read). */
export type ArrivingEntry = Pick<IndexedEntry, 'file' | 'owner' | 'entry' | 'locks'>;

/**
 * An address arrived with these journal entries: each becomes its owner's locks through the
 * address, awaiting reclaim, held on the file in the owner's own description (so the reclaim is
 * the same lock set again, with no gap). An entry whose range another locker took while the
 * address moved is reported lost, and still kept from lockdrop's other clients until its owner's
 * reclaim or the grace's end.
 */
export function arrive(st: LockState, address: string, entries: Iterable<ArrivingEntry>): Arrival {
  const lost: Arrival['lost'] = [];
  const hosts = new Set<string>();
  const addr = st.internAddr(address);
  const before = addr.awaiting;
  st.served.add(address);
  let refused: string | undefined;
  let placed = false;
  const note = (status: string): void => {
    if (status === 'granted' || status === 'kept') placed = true;
    if (status !== 'granted') refused = status === 'kept' ? 'denied' : status;
  };
  for (const x of entries) {
    const { entry } = x;
    let file = st.F.findKey(x.file);
    if (file === 0) file = st.newFile(x.file, entry.exportId ?? st.exportOf(entry.fh), entry.fh);
    const owner = st.internOwner(entry.owner);
    // What the owner took meanwhile through another address is newer than the entry: kept as is.
    // Mostly it holds nothing there: each range is then placed whole, with no walk of its locks,
    // while it lies outside the entry's ranges placed before it (an entry's ranges never overlap
    // as the table writes them, in either order).
    const had = mineOn(st, file, owner).length !== 0;
    refused = undefined;
    placed = false;
    let first: Pos = -1;
    let last: Pos = -1;
    for (const l of x.locks) {
      const whole = !had && (first === -1 || l.start > last || l.end < first);
      first = first === -1 ? l.start : minPos(first, l.start);
      last = maxPos(last, l.end);
      if (whole) {
        note(place(st, addr, x.file, entry.fh, file, owner, l.start, l.end, l.exclusive));
      } else {
        for (const g of gapsOf(st, file, owner, l.start, l.end)) note(place(st, addr, x.file, entry.fh, file, owner, g.s, g.e, l.exclusive));
      }
    }
    if (placed) hosts.add(entry.owner.host);
    if (refused !== undefined) lost.push({ entry, status: refused });
    st.forgetIfUnused(file, owner);
  }
  // What arrived is what the journal already says (ranges.ts marks nothing for it): nothing to write.
  const locks = addr.awaiting - before;
  if (locks > 0) st.arrivals.set(address, { total: locks, hosts: hosts.size, at: st.now() });
  else st.freeAddrIfEmpty(addr);
  flush(st);
  return { locks, hosts: hosts.size, lost };
}

/**
 * One range of an arriving entry, awaiting its owner's reclaim, and its placeholder on the file:
 * one lock call, no test first (the table's own conflicts are looked at in memory). 'granted':
 * held for the owner (its placeholder may wait for one of the table's waiters to give the range
 * back); 'kept': kept for the owner in the table but lost on the file (another locker holds it);
 * otherwise what refused it.
 */
function place(st: LockState, addr: AddressEntry, fileKey: string, fh: Buffer, file: number, owner: number, s: Pos, e: Pos, excl: boolean): string {
  const c = firstConflict(st, file, owner, s, e, excl);
  const status = c !== 0 ? 'denied' : st.locker ? st.locker.lock(fileKey, fh, st.ownerKeyOf(owner), s, e, excl) : 'granted';
  // Held by a locker outside the table (a local process that came in while the address
  // moved, or one of this table's own waiters the kernel has just woken): the lock is still
  // kept for its owner in the table, so no lockdrop client gets it before the grace ends;
  // its placeholder is taken once a waiter gives the range back. Only the first case is a
  // loss, reported: the owner's reclaim is refused while that locker holds the range.
  const pending = status === 'denied' && c === 0;
  if (status !== 'granted' && !pending) return status;
  applyLock(st, file, st.internHolder(owner, addr), s, e, excl, true);
  if (!pending) return 'granted';
  const p = st.placeholders.get(file);
  const later: Placeholder = { owner, s, e, excl };
  if (p) p.push(later);
  else st.placeholders.set(file, [later]);
  if (waitsInKernel(st, file, owner, s, e)) return 'granted';
  // The outside locker lets go when it will, and nothing tells the table: the placeholder waits
  // for the range in the kernel, so that no other process takes it after the window.
  later.cancel = waitForPlaceholder(st, fileKey, fh, later);
  return 'kept';
}

/** Waits in the kernel for a placeholder's range on its owner's description; kept only while the table still has the owner's lock there. */
function waitForPlaceholder(st: LockState, fileKey: string, fh: Buffer, p: Placeholder): () => void {
  const who = st.publicOwner(p.owner);
  const ownerKey = st.ownerKeyOf(p.owner);
  return st.locker!.wait(fileKey, fh, ownerKey, p.s, p.e, p.excl, (acquired) => {
    p.cancel = undefined;
    const file = st.F.findKey(fileKey);
    const pending = file !== 0 ? st.placeholders.get(file) : undefined;
    const i = pending ? pending.indexOf(p) : -1;
    if (i >= 0 && acquired) {
      pending!.splice(i, 1);
      if (pending!.length === 0) st.placeholders.delete(file);
    }
    if (!acquired) return;
    const held = i >= 0 && st.findOwner(who) === p.owner && mineOn(st, file, p.owner).some((l) => st.L.start(l) <= p.e && st.L.end(l) >= p.s);
    // Reclaimed elsewhere, expired or released meanwhile: the file is put back to what the table says.
    if (!held) resync(st, fileKey, ownerKey, who, p.s, p.e);
  });
}

/** The placeholders of the owner's [s, e] on the file not taken yet: no longer needed (their waits end). */
function dropPlaceholders(st: LockState, file: number, owner: number, s: Pos, e: Pos): void {
  const pending = st.placeholders.get(file);
  if (!pending) return;
  const left = pending.filter((p) => {
    if (p.owner !== owner || p.s > e || p.e < s) return true;
    p.cancel?.();
    return false;
  });
  if (left.length) st.placeholders.set(file, left);
  else st.placeholders.delete(file);
}

/** Whether another owner's request on the file waits in the kernel for bytes of [s, e]. */
function waitsInKernel(st: LockState, file: number, owner: number, s: Pos, e: Pos): boolean {
  for (const b of st.extras.get(file)?.queue.overlapping(s, e) ?? []) if (b.owner !== owner && b.kernelWait !== null) return true;
  return false;
}

/** The parts of [s, e] the owner holds nothing of on the file, in order. */
function gapsOf(st: LockState, file: number, owner: number, s: Pos, e: Pos): { s: Pos; e: Pos }[] {
  const L = st.L;
  const mine = mineOn(st, file, owner).filter((l) => L.start(l) <= e && L.end(l) >= s);
  if (mine.length === 0) return [{ s, e }];
  mine.sort((a, b) => (L.start(a) < L.start(b) ? -1 : 1));
  const out: { s: Pos; e: Pos }[] = [];
  let from: Pos | null = s;
  for (const l of mine) {
    if (from !== null && L.start(l) > from) out.push({ s: from, e: dec(L.start(l)) });
    const le = L.end(l);
    from = le === EOF || le >= e ? null : maxPos(from ?? s, inc(le));
  }
  if (from !== null) out.push({ s: from, e });
  return out;
}

/**
 * The address's grace ended: what still awaits reclaim is taken out (its placeholders released
 * on the files, its waiters woken) and its entries written again — removed, or what the owner
 * holds there now.
 */
export function expireAwaiting(st: LockState, address: string): Unreclaimed {
  const arrival = st.arrivals.get(address);
  st.arrivals.delete(address);
  const byHost = new Map<string, number>();
  const a = st.addrs.get(address);
  const total = arrival?.total ?? 0;
  if (!arrival) return { address, total, locks: 0, byHost };
  const { L, H } = st;
  const awaiting: { file: number; owner: number; s: Pos; e: Pos; host: string }[] = [];
  for (const at of a?.hosts.values() ?? []) {
    for (let hd = at.head; hd !== 0; hd = H.aNext[hd]) {
      for (let l = H.head[hd]; l !== 0; l = L.hNext[l]) {
        if (isAwaiting(L, l)) awaiting.push({ file: L.file[l], owner: H.owner[hd], s: L.start(l), e: L.end(l), host: at.host.key });
      }
    }
  }
  for (const x of awaiting) {
    byHost.set(x.host, (byHost.get(x.host) ?? 0) + 1);
    if (st.placeholders.size !== 0) dropPlaceholders(st, x.file, x.owner, x.s, x.e);
    unlockRange(st, x.file, x.owner, x.s, x.e);
    if (st.locker) {
      if (idleOn(st, x.file, x.owner)) st.locker.close(st.F.key[x.file], st.ownerKeyOf(x.owner));
      else st.locker.unlock(st.F.key[x.file], st.ownerKeyOf(x.owner), x.s, x.e);
    }
    wake(st, x.file, x.s, x.e);
  }
  for (const x of awaiting) st.forgetIfUnused(x.file, x.owner);
  flush(st);
  return { address, total, locks: awaiting.length, byHost };
}

/** The address left this table: its locks were dropped, its journal is another node's to write. */
export function leave(st: LockState, address: string): void {
  st.served.delete(address);
  st.arrivals.delete(address);
  st.marks.delete(address);
}

/** An arrived address's reclaim so far. */
export function reclaimProgress(st: LockState, address: string): { total: number; awaiting: number; hosts: number; since: number } | undefined {
  const arrival = st.arrivals.get(address);
  if (!arrival) return undefined;
  return { total: arrival.total, awaiting: st.addrs.get(address)?.awaiting ?? 0, hosts: arrival.hosts, since: arrival.at };
}
