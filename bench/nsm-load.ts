// Loading an arriving address's monitor records (issue 19: the failover at scale): 1,000 hosts'
// records, each with one callback, as NsmStore.load reads them on the address's arrival. CPU per load.
//   npx tsx bench/nsm-load.ts [rounds]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { NsmStore } from '../src/nsm';

const V = '10.77.0.100';
const rounds = Number(process.argv[2] ?? 9);

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'nsm-load-'));
  try {
    const s = new NsmStore(dir);
    const cb = { myName: 'b', myProg: 100021, myVers: 4, myProc: 16, priv: '00'.repeat(16), callbackAddress: '127.0.0.1' };
    await Promise.all(Array.from({ length: 1000 }, (_, i) =>
      s.put({ monName: `host${i}`, address: `10.78.${i >> 8}.${i & 255}`, serverAddress: V, local: true, callbacks: [cb], since: Date.now() })));
    await s.flush();
    const ms: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const t0 = process.cpuUsage();
      const got = await new NsmStore(dir).load(V);
      const t = process.cpuUsage(t0);
      if (got.records.length !== 1000 || got.skipped.length !== 0) throw new Error(`loaded ${got.records.length}, skipped ${got.skipped.length}`);
      ms.push((t.user + t.system) / 1000);
    }
    ms.sort((a, b) => a - b);
    console.log(`load of 1,000 monitor records: CPU ms per round ${ms.map((x) => x.toFixed(1)).join(' ')}; median ${ms[ms.length >> 1]!.toFixed(1)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

void main();
