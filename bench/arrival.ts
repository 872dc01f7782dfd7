// An address's arrival on the node taking it over, in process (issue 19: the failover at scale):
// LockJournal.takeOver of a journal of 10,000 entries (1,000 hosts × 10 owners, ten 5-byte ranges
// each, the shape of bench/failover-scale.ts's clients) that this node already followed, as b
// does — the index reset with the journal's whole content, every entry held awaiting reclaim.
// Memory-only table (no placeholders on files). CPU per take-over, median of the rounds.
//   npx tsx bench/arrival.ts [rounds]
import pino from 'pino';
import { Subject } from 'rxjs';
import { LockJournal } from '../src/daemon/journal';
import { LockTable, encodeJournalEntry, journalKey, ownerKey } from '../src/locks';
import type { ClusterStore, JournalChange, JournalFault } from '../src/store';

const V = '10.77.0.100';
const rounds = Number(process.argv[2] ?? 7);

function journal(): Map<string, Buffer> {
  const live = new Map<string, Buffer>();
  for (let h = 0; h < 1000; h++) {
    const host = `host${h}`;
    for (let k = 0; k < 10; k++) {
      const owner = { host, svid: 1000 + k, oh: Buffer.from(`${1000 + k}@${host}`) };
      const fh = Buffer.from(`scale-${host}-file-${k}`.padEnd(32, '.'));
      // Newest first, as the table writes an owner's ranges.
      const locks = Array.from({ length: 10 }, (_, i) => ({ offset: BigInt((9 - i) * 10), length: 5n, exclusive: true }));
      live.set(journalKey(ownerKey(owner), fh.toString('latin1')), encodeJournalEntry({ owner, fh, exportId: undefined, locks }));
    }
  }
  return live;
}

async function main(): Promise<void> {
  const live = journal();
  const ms: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const changes$ = new Subject<JournalChange>();
    const store = { changes$, faults$: new Subject<JournalFault>(), takeOver: async () => new Map(live) } as unknown as ClusterStore;
    const table = new LockTable();
    const j = new LockJournal({ store, table, barrierMs: () => 0, log: pino({ level: 'silent' }) });
    // This node followed the address's journal before it moved here.
    changes$.next({ address: V, records: [...live].map(([key, value]) => ({ key, value })), reset: true });
    const t0 = process.cpuUsage();
    const a = await j.takeOver(V);
    const t = process.cpuUsage(t0);
    if (a.locks !== 100_000 || a.lost.length !== 0) throw new Error(`arrived ${a.locks} locks, ${a.lost.length} lost`);
    ms.push((t.user + t.system) / 1000);
  }
  ms.sort((a, b) => a - b);
  console.log(`take-over of 10,000 entries (100,000 locks): CPU ms per round ${ms.map((x) => x.toFixed(1)).join(' ')}; median ${ms[ms.length >> 1]!.toFixed(1)}`);
}

void main();
