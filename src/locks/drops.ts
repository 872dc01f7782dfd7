// Drops: everything held, shared or awaited through a server address, by a client host, or on an
// export's files, each walking only what it drops (an address's holders per host, a host's
// holders per address, an export's file list). The records touched are marked so each is looked
// at once at the end: waiters woken, emptied owners, hosts and files freed.
import { flush, removeBlock, wakeAll } from './blocks';
import { leave } from './journal';
import type { Block, HostAtAddress, HostEntry, Share } from './entries';
import { releaseOnFiles } from './mirror';
import type { Released } from './mirror';
import { unlinkFromFile, unlinkFromHolder } from './ranges';
import { isAwaiting, type LockState } from './state';
import type { DropCounts } from './types';

type Reason = 'address' | 'host' | 'export';

const NO_COUNTS: DropCounts = { locks: 0, shares: 0, blocked: 0, clients: 0, woken: 0 };

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

export function dropByHost(st: LockState, host: string): DropCounts {
  const h = st.hosts.get(host);
  if (!h) return dropped(st, 'host', host, NO_COUNTS);
  const d = startDrop();
  try {
    touchHost(d, h);
    for (const a of st.addrs.values()) {
      const at = a.hosts.get(h.id);
      if (!at) continue;
      // The host gave its locks up (it rebooted, or FREE_ALL): their journal entries go too.
      at.refs -= dropHolders(st, d, at, true);
      if (at.refs === 0) a.hosts.delete(h.id);
    }
    for (const b of [...h.blocks]) dropBlock(st, d, b);
    for (const s of [...h.shares]) dropShare(st, d, s);
    return finishDrop(st, d, 'host', host);
  } finally {
    clearMarks(st, d);
  }
}

export function dropByServerAddress(st: LockState, address: string): DropCounts {
  // The journal keeps the address's entries: they are its locks while it moves (journal.ts).
  leave(st, address);
  const a = st.addrs.get(address);
  if (!a) return dropped(st, 'address', address, NO_COUNTS);
  const d = startDrop();
  try {
    for (const b of [...a.blocks]) dropBlock(st, d, b);
    for (const s of [...a.shares]) dropShare(st, d, s);
    // Now only holders are left: unindex them wholesale rather than one by one.
    for (const at of a.hosts.values()) {
      touchHost(d, at.host);
      dropHolders(st, d, at, false);
    }
    a.hosts.clear();
    st.freeAddrIfEmpty(a);
    return finishDrop(st, d, 'address', address);
  } finally {
    clearMarks(st, d);
  }
}

export function dropByExport(st: LockState, exportId: string): DropCounts {
  const e = st.exports.get(exportId);
  if (!e) return dropped(st, 'export', exportId, NO_COUNTS);
  const { L, F, H } = st;
  const d = startDrop();
  try {
    const observed = st.subject.observed;
    const keep = st.locker !== undefined;
    const files: number[] = [];
    for (let f = e.head; f !== 0; f = F.xNext[f]) files.push(f);
    for (const f of files) {
      touchFile(st, d, f);
      for (let l = F.head[f], next = 0; l !== 0; l = next) {
        next = L.fNext[l];
        if (observed) st.subject.next({ type: 'released', lock: st.held(l) });
        const hd = L.holder[l];
        if (keep) d.released.push({ file: f, owner: H.owner[hd], start: L.start(l), end: L.end(l) });
        if (st.journal) st.mark(H.addr[hd], H.owner[hd], f);
        unlinkFromHolder(st, l);
        if (H.head[hd] === 0) d.holders.push(hd);
        touchOwner(st, d, H.owner[hd]);
        L.release(l);
        d.locks++;
        st.nLocks--;
      }
      F.head[f] = 0;
      F.exclusive[f] = 0;
      const x = st.extras.get(f);
      if (x) {
        for (const b of x.queue.toArray()) dropBlock(st, d, b);
        for (const s of [...x.shares]) dropShare(st, d, s);
      }
    }
    for (const hd of d.holders) st.freeHolder(hd);
    return finishDrop(st, d, 'export', exportId);
  } finally {
    clearMarks(st, d);
  }
}

function startDrop(): Drop {
  return { files: [], owners: [], hosts: [], holders: [], released: [], unblocked: [], locks: 0, shares: 0, blocked: 0 };
}

function touchFile(st: LockState, d: Drop, f: number): void {
  if (st.F.mark[f] === 0) {
    st.F.mark[f] = 1;
    d.files.push(f);
  }
}

function touchOwner(st: LockState, d: Drop, o: number): void {
  if (st.O.mark[o] === 0) {
    st.O.mark[o] = 1;
    d.owners.push(o);
    touchHost(d, st.hostOf(o));
  }
}

function touchHost(d: Drop, h: HostEntry): void {
  if (!h.marked) {
    h.marked = true;
    d.hosts.push(h);
  }
}

/** Clears what the drop marked (records freed meanwhile are cleared when reused). */
function clearMarks(st: LockState, d: Drop): void {
  for (const f of d.files) st.F.mark[f] = 0;
  for (const o of d.owners) st.O.mark[o] = 0;
  for (const h of d.hosts) h.marked = false;
}

/** Drops every holder of the host at the address and frees their records; returns how many. `journal`: their entries go too. */
function dropHolders(st: LockState, d: Drop, at: HostAtAddress, journal: boolean): number {
  let n = 0;
  for (let hd = at.head, next = 0; hd !== 0; hd = next, n++) {
    next = st.H.aNext[hd];
    touchOwner(st, d, st.H.owner[hd]);
    dropHolder(st, d, hd, journal && st.journal !== undefined);
    st.unholder(hd);
    st.H.release(hd);
  }
  at.head = 0;
  return n;
}

/** Releases every lock of a holder and frees their records; the holder's record is the caller's. */
function dropHolder(st: LockState, d: Drop, hd: number, journal: boolean): void {
  const { L, H } = st;
  const observed = st.subject.observed;
  const keep = st.locker !== undefined;
  let n = 0;
  let awaiting = 0;
  for (let l = H.head[hd], next = 0; l !== 0; l = next) {
    next = L.hNext[l];
    if (observed) st.subject.next({ type: 'released', lock: st.held(l) });
    const f = L.file[l];
    if (keep) d.released.push({ file: f, owner: H.owner[hd], start: L.start(l), end: L.end(l) });
    if (journal) st.mark(H.addr[hd], H.owner[hd], f);
    if (isAwaiting(L, l)) awaiting++;
    unlinkFromFile(st, l);
    touchFile(st, d, f);
    L.release(l);
    n++;
  }
  d.locks += n;
  st.nLocks -= n;
  const a = st.addrIds.get(H.addr[hd]);
  a.count -= n;
  a.awaiting -= awaiting;
  H.head[hd] = 0;
}

function dropBlock(st: LockState, d: Drop, b: Block): void {
  touchFile(st, d, b.file);
  touchOwner(st, d, b.owner);
  removeBlock(st, b);
  if (st.locker) d.unblocked.push(b);
  d.blocked++;
}

function dropShare(st: LockState, d: Drop, s: Share): void {
  touchFile(st, d, s.file);
  touchHost(d, s.host);
  st.removeShare(s);
  d.shares++;
}

/** Wakes the waiters the drop unblocked (any address), frees what it emptied, reports. */
function finishDrop(st: LockState, d: Drop, reason: Reason, key: string): DropCounts {
  if (st.locker) releaseOnFiles(st, d.released, d.unblocked);
  const woken = wakeAll(st, d.files);
  for (const o of d.owners) st.freeOwnerIfEmpty(o);
  for (const h of d.hosts) st.freeHostIfEmpty(h);
  for (const f of d.files) st.freeFileIfEmpty(f);
  const counts: DropCounts = { locks: d.locks, shares: d.shares, blocked: d.blocked, clients: d.hosts.length, woken };
  dropped(st, reason, key, counts);
  flush(st);
  return counts;
}

function dropped(st: LockState, reason: Reason, key: string, counts: DropCounts): DropCounts {
  if (st.subject.observed) st.subject.next({ type: 'dropped', reason, key, counts: { ...counts } });
  return { ...counts };
}
