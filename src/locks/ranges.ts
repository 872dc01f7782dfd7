// POSIX range semantics for one owner on one file: which lock conflicts, what the owner holds
// there, and the two changes to it — apply (merge, upgrade, downgrade, split) and unlock (trim,
// split) — over the lock records and their file and holder lists. applyLock and unlockRange are
// the only ways a request changes an owner's ranges (drops unlink whole lists, drops.ts).
//
// One owner's locks never overlap. Its overlapping or adjacent locks merge when they have the same
// type *and* came through the same server address: the server address is what a failover drops
// by, so a lock taken through one VIP must never be folded into a lock held through another.
import { EOF, dec, inc, maxPos, minPos, toWire } from './range';
import type { Pos } from './range';
import { AWAITING, isAwaitingTag, isExcl, isExclTag } from './state';
import type { LockState } from './state';
import type { PriorLock } from './types';

/** mineOn's answer when the owner holds nothing on the file: no array per call. */
const NONE: readonly number[] = Object.freeze([]);

/** The first lock of another owner on the file that conflicts with [s, e] of this type, or 0. */
export function firstConflict(st: LockState, file: number, owner: number, s: Pos, e: Pos, excl: boolean): number {
  const { L, H } = st;
  if (!excl && st.F.exclusive[file] === 0) return 0;
  for (let l = st.F.head[file]; l !== 0; l = L.fNext[l]) {
    if (H.owner[L.holder[l]] !== owner && (excl || isExcl(L, l)) && L.start(l) <= e && L.end(l) >= s) return l;
  }
  return 0;
}

/**
 * The owner's locks on the file, from whichever list is shorter: the file's, or the owner's own
 * (its holders'), so that neither a crowded file nor a busy owner makes the other slow. Both are
 * walked in step until one ends; that one is walked again to collect. Read-only: it may be shared.
 */
export function mineOn(st: LockState, file: number, owner: number): readonly number[] {
  const { L, H, F } = st;
  const first = st.O.holder[owner];
  if (first === 0) return NONE;
  let out: number[] | undefined;
  let a = F.head[file];
  let hd = first;
  let b = H.head[hd];
  for (;;) {
    if (a === 0) {
      for (let l = F.head[file]; l !== 0; l = L.fNext[l]) if (H.owner[L.holder[l]] === owner) (out ??= []).push(l);
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

function newLock(st: LockState, file: number, holder: number, s: Pos, e: Pos, tag: number): number {
  const { L, F, H } = st;
  const l = L.alloc();
  L.file[l] = file;
  L.holder[l] = holder;
  L.setStart(l, s);
  L.setEnd(l, e);
  L.tag[l] = tag;
  L.fPrev[l] = 0;
  L.fNext[l] = F.head[file];
  if (L.fNext[l] !== 0) L.fPrev[L.fNext[l]] = l;
  F.head[file] = l;
  if (isExclTag(tag)) F.exclusive[file]++;
  L.hPrev[l] = 0;
  L.hNext[l] = H.head[holder];
  if (L.hNext[l] !== 0) L.hPrev[L.hNext[l]] = l;
  H.head[holder] = l;
  const a = st.addrIds.get(H.addr[holder]);
  a.count++;
  if (isAwaitingTag(tag)) a.awaiting++;
  st.nLocks++;
  return l;
}

function removeLock(st: LockState, l: number): void {
  const hd = st.L.holder[l];
  unlinkFromFile(st, l);
  unlinkFromHolder(st, l);
  st.nLocks--;
  st.L.release(l);
  if (st.H.head[hd] === 0) st.freeHolder(hd);
}

export function unlinkFromFile(st: LockState, l: number): void {
  const { L, F } = st;
  const f = L.file[l];
  if (L.fPrev[l] !== 0) L.fNext[L.fPrev[l]] = L.fNext[l];
  else F.head[f] = L.fNext[l];
  if (L.fNext[l] !== 0) L.fPrev[L.fNext[l]] = L.fPrev[l];
  if (isExcl(L, l)) F.exclusive[f]--;
}

/** Also counts the lock out of its address. */
export function unlinkFromHolder(st: LockState, l: number): void {
  const { L, H } = st;
  const hd = L.holder[l];
  if (L.hPrev[l] !== 0) L.hNext[L.hPrev[l]] = L.hNext[l];
  else H.head[hd] = L.hNext[l];
  if (L.hNext[l] !== 0) L.hPrev[L.hNext[l]] = L.hPrev[l];
  const a = st.addrIds.get(H.addr[hd]);
  a.count--;
  if (isAwaitingTag(L.tag[l])) a.awaiting--;
}

/**
 * Gives the holder's owner [s, e] of the given type through the holder's address: merges its
 * same-type same-address locks that overlap or touch, and cuts the range out of its other
 * locks (upgrade/downgrade, splitting as POSIX does). Returns whether any exclusive byte
 * became shared. A lock awaiting reclaim (an arrived address's journal entry) merges only with
 * locks awaiting too: a reclaim cuts it, so what is left awaiting is exactly what was not reclaimed.
 */
export function applyLock(st: LockState, file: number, holder: number, s: Pos, e: Pos, excl: boolean, awaiting = false): boolean {
  const { L, H } = st;
  const owner = H.owner[holder];
  let downgraded = false;
  const s0 = s;
  const e0 = e;
  const mine = mineOn(st, file, owner);
  // A reclaim of an awaiting lock's bytes, of its type, through its address, and the arrival of an
  // awaiting lock itself: the owner's entry in the journal stays as it is (the journal does not
  // know "awaiting"), so it is not written again.
  const reclaim = !awaiting && st.arrivals.size !== 0 && mine.some((l) => L.holder[l] === holder && isAwaitingTag(L.tag[l]) && isExcl(L, l) === excl && L.start(l) <= s0 && L.end(l) >= e0);
  const unchanged = reclaim || awaiting;
  if (st.journal && !unchanged) st.mark(H.addr[holder], owner, file);
  // Linked first, so absorbing the holder's other locks never leaves it empty (and freed).
  const nl = newLock(st, file, holder, s, e, st.tag(excl) | (awaiting ? AWAITING : 0));
  let first = L.tag[nl];
  for (const l of mine) {
    const ls = L.start(l);
    const le = L.end(l);
    const lx = isExcl(L, l);
    const same = lx === excl && L.holder[l] === holder && isAwaitingTag(L.tag[l]) === awaiting;
    if (st.journal && !unchanged && ls <= e0 && le >= s0) st.mark(H.addr[L.holder[l]], owner, file);
    if (ls <= e0 && le >= s0) {
      if (same) {
        s = minPos(s, ls);
        e = maxPos(e, le);
        first = Math.min(first, L.tag[l]);
        removeLock(st, l);
      } else {
        if (lx && !excl) downgraded = true;
        cut(st, l, s0, e0);
      }
    } else if (same && ((le !== EOF && inc(le) === s0) || (e0 !== EOF && inc(e0) === ls))) {
      s = minPos(s, ls);
      e = maxPos(e, le);
      first = Math.min(first, L.tag[l]);
      removeLock(st, l);
    }
  }
  L.setStart(nl, s);
  L.setEnd(nl, e);
  L.tag[nl] = first;
  return downgraded;
}

/**
 * A reclaim of exactly one of the holder's awaiting locks, of its type: that lock stops awaiting,
 * in place — the placeholder on the file already is that range in the owner's description and the
 * journal already has the entry, so nothing else changes. Returns the lock, or 0 (nothing changed)
 * when the request is anything else (a part or more of an awaiting lock, or next to one of the
 * holder's locks it would merge with): applyLock then does it the general way.
 */
export function reclaimExact(st: LockState, file: number, holder: number, s: Pos, e: Pos, excl: boolean): number {
  const L = st.L;
  let found = 0;
  for (let l = st.H.head[holder]; l !== 0; l = L.hNext[l]) {
    if (L.file[l] !== file || isExcl(L, l) !== excl) continue;
    const ls = L.start(l);
    const le = L.end(l);
    if (isAwaitingTag(L.tag[l])) {
      if (ls === s && le === e) found = l;
    } else if (ls <= e && le >= s) {
      return 0;
    } else if ((le !== EOF && inc(le) === s) || (e !== EOF && inc(e) === ls)) {
      return 0; // would merge with the reclaimed range
    }
  }
  if (found === 0) return 0;
  L.tag[found] = st.tag(excl);
  st.addrIds.get(st.H.addr[holder]).awaiting--;
  return found;
}

/** Removes [s, e] from lock l (which overlaps it): trims, splits in two, or removes it. */
function cut(st: LockState, l: number, s: Pos, e: Pos): void {
  const L = st.L;
  const ls = L.start(l);
  const le = L.end(l);
  const keepLeft = ls < s;
  const keepRight = le > e;
  if (keepLeft && keepRight) {
    L.setEnd(l, dec(s));
    newLock(st, L.file[l], L.holder[l], inc(e), le, L.tag[l]);
  } else if (keepLeft) {
    L.setEnd(l, dec(s));
  } else if (keepRight) {
    L.setStart(l, inc(e));
  } else {
    removeLock(st, l);
  }
}

/** Unlocks [s, e] for the owner; returns whether anything was released. */
export function unlockRange(st: LockState, file: number, owner: number, s: Pos, e: Pos): boolean {
  const L = st.L;
  let released = false;
  const observed = st.subject.observed;
  for (const l of mineOn(st, file, owner)) {
    if (!(L.start(l) <= e && L.end(l) >= s)) continue;
    released = true;
    if (st.journal) st.mark(st.H.addr[L.holder[l]], owner, file);
    if (observed) {
      const gone = st.heldOf(file, L.holder[l], maxPos(L.start(l), s), minPos(L.end(l), e), isExcl(L, l), st.sinceOf(L.tag[l]));
      cut(st, l, s, e);
      st.subject.next({ type: 'released', lock: gone });
    } else {
      cut(st, l, s, e);
    }
  }
  return released;
}

/** The owner's locks on [s, e], clipped to it: what undoing a grant of [s, e] restores. */
export function priorOf(st: LockState, file: number, owner: number, s: Pos, e: Pos): PriorLock[] {
  const L = st.L;
  const out: PriorLock[] = [];
  for (const l of mineOn(st, file, owner)) {
    if (!(L.start(l) <= e && L.end(l) >= s)) continue;
    out.push({ ...toWire(maxPos(L.start(l), s), minPos(L.end(l), e)), exclusive: isExcl(L, l), serverAddress: st.addrIds.get(st.H.addr[L.holder[l]]).address });
  }
  return out;
}
