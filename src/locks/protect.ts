// The protection of the journal's entries (journal.ts says why): which entry a request would take
// from an owner who does not hold it right now.
import type { IndexedEntry } from './journal-index';
import type { Pos } from './range';
import type { LockState } from './state';
import type { LockStatus } from './types';

/**
 * The journal entry that [s, e] of this type would take from an owner who does not hold it right
 * now: another owner's entry through an address this table does not serve, whose range the
 * kernel says is free (a holder outside the table means its node holds it: the ordinary answer
 * follows). A refusal of the file is answered as it is.
 */
export function protectedBy(st: LockState, fileKey: string, fh: Buffer, ownerKey: string, s: Pos, e: Pos, excl: boolean): IndexedEntry | LockStatus | undefined {
  const x = st.index.conflict(fileKey, ownerKey, s, e, excl, (a) => st.served.has(a));
  if (!x || !st.locker) return x;
  const outside = st.locker.test(fileKey, fh, ownerKey, s, e, excl);
  if (outside === undefined) return x;
  return typeof outside === 'string' ? outside : undefined;
}
