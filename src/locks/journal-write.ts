// The journal's writing, at the end of each table call: every (address, owner, file) whose ranges
// changed is written as that owner's whole entry there, or its deletion (journal.ts says why).
import { encodeJournalEntry, journalKey } from './journal-entry';
import type { IndexedLock, JournalRecord } from './journal-index';
import { mineOn } from './ranges';
import { isExcl, type LockState } from './state';

/** Writes the marked entries of this call, per address, and reports addresses whose reclaim is done. */
export function flushJournal(st: LockState): void {
  // A reclaim writes nothing (ranges.ts): every arrived address is looked at, they are few.
  if (st.arrivals.size !== 0) for (const address of st.arrivals.keys()) if ((st.marks.get(address)?.length ?? 0) === 0) reclaimDone(st, address);
  if (!st.marked) return;
  st.marked = false;
  const journal = st.journal!;
  const { L, H } = st;
  for (const [address, marks] of st.marks) {
    if (marks.length === 0) continue;
    const a = st.addrs.get(address);
    const records: JournalRecord[] = [];
    // Marked more than once in this call (a drop marks an entry per lock): written once.
    const seen = marks.length > 1 ? new Set<string>() : undefined;
    for (const m of marks) {
      const key = journalKey(m.ownerKey, m.fileKey);
      if (seen) {
        if (seen.has(key)) continue;
        seen.add(key);
      }
      const file = st.F.findKey(m.fileKey);
      const host = file !== 0 ? st.hosts.get(m.host) : undefined;
      const owner = host ? st.O.findKey(host.id, m.svid, m.oh) : 0;
      const locks: IndexedLock[] = [];
      if (owner !== 0 && a) {
        for (const l of mineOn(st, file, owner)) if (H.addr[L.holder[l]] === a.id) locks.push({ start: L.start(l), end: L.end(l), exclusive: isExcl(L, l) });
      }
      // The index of this node takes the entry as it is here, without decoding its bytes back.
      records.push(locks.length === 0 ? { key, value: null } : { key, value: encodeJournalEntry({ owner: m, fh: m.fileKey, exportId: m.exportId, locks }), parsed: { file: m.fileKey, owner: m.ownerKey, locks } });
    }
    marks.length = 0;
    st.served.add(address);
    journal(address, records);
    reclaimDone(st, address);
  }
}

/** Reports an arrived address once none of its locks awaits reclaim any more. */
function reclaimDone(st: LockState, address: string): void {
  const arrival = st.arrivals.get(address);
  if (!arrival || (st.addrs.get(address)?.awaiting ?? 0) !== 0) return;
  st.arrivals.delete(address);
  st.reclaims.next({ address, locks: arrival.total, hosts: arrival.hosts, ms: st.now() - arrival.at });
}
