// The table's mirror on the real files (the FileLocker, src/files): putting an owner's
// description back in step with what the table holds, closing it once the owner holds and awaits
// nothing on the file, and letting go of what a drop took out. Every function here runs only
// with a locker.
import { EOF, dec, inc, maxPos, minPos } from './range';
import type { Pos } from './range';
import { mineOn } from './ranges';
import { isExcl } from './state';
import type { LockState } from './state';
import type { Block } from './entries';
import type { LockOwner, LockStatus } from './types';

/** A lock taken out by a drop, as the real files must hear of it (its record is freed by then). */
export interface Released {
  file: number;
  owner: number;
  start: Pos;
  end: Pos;
}

/**
 * An answer given without the file: a handle that names no file answers stale_fh instead, as
 * on every procedure (Linux's lockd looks the file up first). LOCK and TEST check the handle
 * only on the answers that do not reach the file: their first open of a file checks it anyway.
 */
export function checked(st: LockState, fkey: string, fh: Buffer, status: LockStatus): LockStatus {
  return st.locker?.validate(fkey, fh) ?? status;
}

/**
 * Puts the owner's description of the file back to what the table holds on [s, e]: its locks
 * there are set again (a downgrade where the kernel holds more), the gaps unlocked, and the
 * description closed when the owner holds and awaits nothing more on the file. The owner is
 * named, not given by id: once its request is gone the id may name another owner.
 */
export function resync(st: LockState, fileKey: string, ownerKey: string, who: LockOwner, s: Pos, e: Pos): void {
  const locker = st.locker!;
  const L = st.L;
  const file = st.F.findKey(fileKey);
  const owner = st.findOwner(who);
  if (file === 0 || owner === 0) {
    locker.close(fileKey, ownerKey);
    return;
  }
  const mine = mineOn(st, file, owner).filter((l) => L.start(l) <= e && L.end(l) >= s);
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
  closeIfIdle(st, file, owner);
}

function awaitsInKernel(st: LockState, file: number, owner: number): boolean {
  return st.ownerBlocks.get(owner)?.some((b) => b.file === file && b.kernelWait !== null) ?? false;
}

/** The owner holds and awaits nothing on the file. */
export function idleOn(st: LockState, file: number, owner: number): boolean {
  return !awaitsInKernel(st, file, owner) && mineOn(st, file, owner).length === 0;
}

/** Closes the owner's description of the file once it holds and awaits nothing there. */
export function closeIfIdle(st: LockState, file: number, owner: number): void {
  if (st.locker && idleOn(st, file, owner)) st.locker.close(st.F.key[file], st.ownerKeyOf(owner));
}

/**
 * The kernel lets go of what a drop took out, before any waiter is woken and before the drop
 * returns: a description its owner no longer needs on that file is closed (one call releases
 * all of it), otherwise each dropped range is unlocked.
 */
export function releaseOnFiles(st: LockState, released: readonly Released[], unblocked: readonly Block[]): void {
  const locker = st.locker!;
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
  for (const r of released) {
    const key = st.F.key[r.file];
    if (st.O.holder[r.owner] === 0 && !awaitsInKernel(st, r.file, r.owner)) {
      closeFiles.push(key);
      closeOwners.push(st.ownerKeyOf(r.owner));
    } else {
      locker.unlock(key, st.ownerKeyOf(r.owner), r.start, r.end);
      later(r.owner, r.file);
    }
  }
  locker.closeAll(closeFiles, closeOwners);
  for (const b of unblocked) later(b.owner, b.file);
  for (const [owner, files] of partly) for (const file of files) closeIfIdle(st, file, owner);
}
