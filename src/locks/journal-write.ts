// The journal's writing, at the end of each table call: every (address, owner, file) whose ranges
// changed is written as that owner's whole entry there, or its deletion (journal.ts says why).
import { encodeJournalEntry, type JournalLock } from './journal-entry';
import type { JournalRecord } from './journal-index';
import { toWire } from './range';
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
      const locks: JournalLock[] = [];
      if (owner !== 0 && a) {
        for (const l of mineOn(st, file, owner)) {
          if (H.addr[L.holder[l]] === a.id) locks.push({ ...toWire(L.start(l), L.end(l)), exclusive: isExcl(L, l) });
        }
      }
      records.push({ key, value: locks.length === 0 ? null : encodeJournalEntry({ owner: m.owner, fh: Buffer.from(m.fileKey, 'latin1'), exportId: m.exportId, locks }) });
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
