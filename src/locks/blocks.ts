// Blocked requests: their queues (per file, per owner, per address and host), deadlock detection,
// the wakeups that grant them when bytes are released, the wait in the kernel for a holder
// outside the table, and the grants awaiting the client's confirmation with their undo.
import type { Block } from './entries';
import { heldIn, recordGrant, takeUndo } from './grants';
import { flushJournal } from './journal-write';
import { closeIfIdle, resync } from './mirror';
import { protectedBy } from './protect';
import { EOF, parseRange } from './range';
import type { Pos } from './range';
import { applyLock, firstConflict, mineOn, priorOf, unlockRange } from './ranges';
import { isExcl } from './state';
import type { LockState } from './state';
import type { BlockGranted } from './types';

export function findBlock(st: LockState, file: number, owner: number, s: Pos, e: Pos, excl: boolean): Block | undefined {
  return st.ownerBlocks.get(owner)?.find((b) => b.file === file && b.start === s && b.end === e && b.exclusive === excl);
}

/** Queues the owner's request behind a holder: in the table's (inKernel false) or outside it. */
export function queueBlock(st: LockState, file: number, owner: number, address: string, start: Pos, end: Pos, exclusive: boolean, waiter: unknown, inKernel: boolean): void {
  const addr = st.internAddr(address);
  const host = st.hostOf(owner);
  const b: Block = { file, owner, addr, start, end, exclusive, waiter, queued: true, slot: 0, kernelWait: null };
  st.more(file).queue.push(b);
  const ob = st.ownerBlocks.get(owner);
  if (ob) ob.push(b);
  else st.ownerBlocks.set(owner, [b]);
  addr.blocks.add(b);
  host.blocks.add(b);
  st.hostRef(addr, host, 1);
  st.nBlocked++;
  if (inKernel) waitInKernel(st, b);
}

export function removeBlock(st: LockState, b: Block): void {
  b.queued = false;
  if (b.kernelWait !== null) {
    const cancel = b.kernelWait;
    b.kernelWait = null;
    cancel();
  }
  st.extras.get(b.file)!.queue.remove(b);
  const ob = st.ownerBlocks.get(b.owner)!;
  ob.splice(ob.indexOf(b), 1);
  if (ob.length === 0) st.ownerBlocks.delete(b.owner);
  const host = st.hostOf(b.owner);
  host.blocks.delete(b);
  b.addr.blocks.delete(b);
  st.hostRef(b.addr, host, -1);
  st.nBlocked--;
}

/**
 * Would queueing this request close a cycle in the wait-for graph? The requester would wait
 * for the holders of the conflicting locks; a holder waits for the holders blocking its own
 * queued requests, and so on.
 */
export function wouldDeadlock(st: LockState, owner: number, file: number, s: Pos, e: Pos, excl: boolean): boolean {
  const { L, H, F } = st;
  const seen = new Set<number>();
  const stack: number[] = [];
  const pushHolders = (f: number, o: number, bs: Pos, be: Pos, bx: boolean): void => {
    for (let l = F.head[f]; l !== 0; l = L.fNext[l]) {
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
    for (const b of st.ownerBlocks.get(h) ?? []) pushHolders(b.file, h, b.start, b.end, b.exclusive);
  }
  return false;
}

/**
 * Bytes [s, e] of the file were released or became shared: grants, in arrival order, the queued
 * requests there that no longer conflict. Only waiters overlapping the bytes are looked at (a
 * release costs what it wakes, not the whole queue), and a grant that turns the owner's own
 * exclusive bytes shared looks again at its range.
 */
export function wake(st: LockState, file: number, s: Pos, e: Pos): void {
  const queue = st.extras.get(file)?.queue;
  if (!queue) return;
  let refused: Block[] | undefined;
  const changed: { s: Pos; e: Pos }[] = [{ s, e }];
  for (let c = changed.pop(); c !== undefined && queue.size !== 0; c = changed.pop()) {
    for (const b of queue.overlapping(c.s, c.e)) {
      if (!b.queued || firstConflict(st, file, b.owner, b.start, b.end, b.exclusive) !== 0) continue;
      // Another owner's journal entry its holder does not hold now: woken again when the index
      // changes (a waiter in the kernel too: the kernel may have let go because its node died).
      if (isProtected(st, b)) continue;
      if (st.draining.size !== 0 && st.draining.has(b.addr.address)) continue;
      if (st.locker) {
        const key = st.F.key[file];
        const onFile = st.locker.lock(key, Buffer.from(key, 'latin1'), st.ownerKeyOf(b.owner), b.start, b.end, b.exclusive);
        if (onFile === 'denied' || onFile === 'drop_reply') {
          // Free in the table, held outside it (or a lease being broken): wait in the kernel.
          if (b.kernelWait === null) waitInKernel(st, b);
          continue;
        }
        // No file descriptor left now: queued for the next release.
        if (onFile === 'denied_nolocks') continue;
        if (onFile !== 'granted') {
          // Never grantable (its handle went stale, its filesystem read-only): removed, and no
          // GRANTED for it; its client's request sent again gets the refusal.
          removeBlock(st, b);
          closeIfIdle(st, file, b.owner);
          (refused ??= []).push(b);
          continue;
        }
      }
      if (grantBlock(st, b)) changed.push({ s: b.start, e: b.end });
    }
  }
  // Forgotten once the queue is no longer walked.
  if (refused) for (const b of refused) st.forgetIfUnused(file, b.owner);
}

/** Wakes every waiter of each file (a drop released them wholesale); returns how many were granted. */
export function wakeAll(st: LockState, files: readonly number[]): number {
  const before = st.pending.length;
  for (const f of files) if (st.extras.get(f)?.queue.size) wake(st, f, 0, EOF);
  return st.pending.length - before;
}

/** Commits a queued request the kernel holds for it; returns whether exclusive bytes became shared. */
function grantBlock(st: LockState, b: Block): boolean {
  const file = b.file;
  // The block keeps its address alive until the lock holds it.
  const prior = priorOf(st, file, b.owner, b.start, b.end);
  const holder = st.internHolder(b.owner, b.addr);
  const downgraded = applyLock(st, file, holder, b.start, b.end, b.exclusive);
  removeBlock(st, b);
  const lock = st.heldOf(file, holder, b.start, b.end, b.exclusive, st.now());
  const g: BlockGranted = { lock, waiter: b.waiter, prior };
  recordGrant(st, g, file, b.owner, b.start, b.end);
  st.pending.push(g);
  if (st.subject.observed) st.subject.next({ type: 'granted', lock, viaBlock: true });
  return downgraded;
}

/**
 * Waits in the kernel for a holder outside the table. When the kernel hands the range over,
 * a still-queued request is granted; one removed meanwhile (cancel, unlock, drop, a grant by
 * the table) has its range put back to what the table says the owner holds.
 */
function waitInKernel(st: LockState, b: Block): void {
  const locker = st.locker!;
  const fileKey = st.F.key[b.file];
  const ownerKey = st.ownerKeyOf(b.owner);
  const owner = st.publicOwner(b.owner);
  const cancel = locker.wait(fileKey, Buffer.from(fileKey, 'latin1'), ownerKey, b.start, b.end, b.exclusive, (acquired) => {
    if (b.kernelWait !== cancel) {
      if (acquired) resync(st, fileKey, ownerKey, owner, b.start, b.end);
      return;
    }
    b.kernelWait = null;
    if (!acquired) {
      // The kernel gave up on the file (gone, or no resources): the client retransmits its request.
      removeBlock(st, b);
      closeIfIdle(st, b.file, b.owner);
      st.forgetIfUnused(b.file, b.owner);
      return;
    }
    if (firstConflict(st, b.file, b.owner, b.start, b.end, b.exclusive) !== 0) {
      // The table gave the bytes to another owner meanwhile (an arrived address's lock kept for
      // its owner): the range goes back, and a placeholder that waited for it is taken now.
      resync(st, fileKey, ownerKey, owner, b.start, b.end);
      takePlaceholders(st, b.file);
      return;
    }
    // The kernel let go because the holder's node died, not because its owner unlocked: the
    // journal still has the owner's entry. Given back; queued until the index says otherwise.
    // Nor is anything granted through an address about to leave (until its removal fails).
    if (isProtected(st, b) || (st.draining.size !== 0 && st.draining.has(b.addr.address))) {
      resync(st, fileKey, ownerKey, owner, b.start, b.end);
      return;
    }
    if (grantBlock(st, b)) wake(st, b.file, b.start, b.end);
    flush(st);
  });
  b.kernelWait = cancel;
}

/**
 * Takes back a grant the client never confirmed (its GRANTED refused or unanswered, or CANCEL
 * after the grant): the owner is left with exactly what it held in that range before — an
 * upgrade falls back to the shared lock, never to nothing — except on bytes a later grant of the
 * owner covers, which that grant keeps (grants.ts). Where an exclusive prior lock now meets
 * another owner's lock (a downgrade let readers in), the owner keeps it shared. Nothing happens
 * when the owner no longer holds the grant's range through its address, or the grant is no
 * longer in the owner's log.
 */
export function undoGrant(st: LockState, g: BlockGranted): void {
  const { lock } = g;
  const file = st.F.find(lock.fh);
  const owner = st.findOwner(lock.owner);
  const r = parseRange(lock.offset, lock.length);
  if (file === 0 || owner === 0 || !r) return;
  const undo = takeUndo(st, g, file, owner, r);
  if (!undo || !heldIn(st, mineOn(st, file, owner), lock.serverAddress, r)) return;
  const { open, restore } = undo;
  const fkey = st.F.key[file];
  for (const p of restore) {
    if (!p.exclusive) continue;
    if (firstConflict(st, file, owner, p.start, p.end, true) !== 0) p.exclusive = false;
    // The kernel may refuse the way back up (an outside reader came in): then shared.
    else if (st.locker && st.locker.lock(fkey, lock.fh, st.ownerKeyOf(owner), p.start, p.end, true) !== 'granted') p.exclusive = false;
  }
  for (const sp of open) unlockRange(st, file, owner, sp.start, sp.end);
  for (const p of restore) applyLock(st, file, st.internHolder(owner, st.internAddr(p.address)), p.start, p.end, p.exclusive);
  if (st.locker) resync(st, fkey, st.ownerKeyOf(owner), lock.owner, r.start, r.end);
  wake(st, file, r.start, r.end);
  st.forgetIfUnused(file, owner);
  flush(st);
}

/** Sets on the file the placeholders arrival could not take while a waiter held their bytes. */
function takePlaceholders(st: LockState, file: number): void {
  const pending = st.placeholders.get(file);
  if (!pending || !st.locker) return;
  const key = st.F.key[file];
  const fh = Buffer.from(key, 'latin1');
  const left = pending.filter((p) => {
    // A lock reclaimed, released or dropped meanwhile needs no placeholder any more.
    const needed = st.O.live(p.owner) && mineOn(st, file, p.owner).some((l) => st.L.start(l) <= p.e && st.L.end(l) >= p.s);
    if (needed && st.locker!.lock(key, fh, st.ownerKeyOf(p.owner), p.s, p.e, p.excl) !== 'granted') return true;
    p.cancel?.();
    return false;
  });
  if (left.length) st.placeholders.set(file, left);
  else st.placeholders.delete(file);
}

/** Whether a queued request would take a journal entry from an owner who does not hold it now. */
function isProtected(st: LockState, b: Block): boolean {
  if (st.index.empty) return false;
  const key = st.F.key[b.file];
  const p = protectedBy(st, key, Buffer.from(key, 'latin1'), st.ownerKeyOf(b.owner), b.start, b.end, b.exclusive);
  return p !== undefined && typeof p !== 'string';
}

/**
 * Ends a call: its journal records written (before any grant is reported, so a GRANTED callback
 * can wait for them to be durable), then its grants reported once the table is consistent
 * (callbacks may call back in).
 */
export function flush(st: LockState): void {
  if (st.journal) flushJournal(st);
  if (st.flushing) return;
  st.flushing = true;
  try {
    while (st.pending.length !== 0) {
      const batch = st.pending;
      st.pending = [];
      for (const g of batch) st.onBlockGranted(g);
    }
  } finally {
    st.flushing = false;
  }
}
