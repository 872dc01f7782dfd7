// The journal's writing, at the end of each table call: every (address, owner, file) whose ranges
// changed is written as that owner's whole entry there, or its deletion (journal.ts says why).
import { encodeJournalEntry } from './journal-entry';
import type { IndexedLock, JournalRecord } from './journal-index';
import { mineOn } from './ranges';
import { isExcl, type LockState } from './state';

/** Writes the marked entries of this call, per address, and reports addresses whose reclaim is done. */
export function flushJournal(st: LockState): void {
  // A reclaim writes nothing (ranges.ts): every arrived address is looked at, they are few.
  if (st.arrivals.size !== 0) for (const address of st.arrivals.keys()) if (!st.marks.has(address)) reclaimDone(st, address);
  if (st.marks.size === 0) return;
  const journal = st.journal!;
  const { L, H } = st;
  for (const [address, marks] of st.marks) {
    const a = st.addrs.get(address);
    const records: JournalRecord[] = [];
    for (const [key, m] of marks) {
      const file = st.F.findKey(m.fileKey);
      const owner = file !== 0 ? st.findOwner(m.owner) : 0;
      const locks: IndexedLock[] = [];
      if (owner !== 0 && a) {
        for (const l of mineOn(st, file, owner)) if (H.addr[L.holder[l]] === a.id) locks.push({ start: L.start(l), end: L.end(l), exclusive: isExcl(L, l) });
      }
      // The index of this node takes the entry as it is here, without decoding its bytes back.
      records.push(locks.length === 0 ? { key, value: null } : { key, value: encodeJournalEntry({ owner: m.owner, fh: m.fileKey, exportId: m.exportId, locks }), parsed: { file: m.fileKey, owner: st.ownerKeyOf(owner), locks } });
    }
    st.served.add(address);
    journal(address, records);
    reclaimDone(st, address);
  }
  st.marks.clear();
}

/** Reports an arrived address once none of its locks awaits reclaim any more. */
function reclaimDone(st: LockState, address: string): void {
  const arrival = st.arrivals.get(address);
  if (!arrival || (st.addrs.get(address)?.awaiting ?? 0) !== 0) return;
  st.arrivals.delete(address);
  st.reclaims.next({ address, locks: arrival.total, hosts: arrival.hosts, ms: st.now() - arrival.at });
}
