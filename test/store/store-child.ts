// A DirectoryStore in its own process, driven over stdin, for tests and benchmarks with real
// separate nodes. Arguments: stateDir node pollMs livenessMs watch(1|0).
//   in:  takeover A | append A KEY HEX|- [COUNT] (then commit) | barrier A MS | close
//   out: one JSON line per answer ({"ok":...}; an append's with t0 before it and t once committed)
//        and per change ({"change":..., "t": ms on the monotonic clock})
import { createInterface } from 'node:readline';
import pino from 'pino';
import { DirectoryStore } from '../../src/store';
import { monotonicMs } from './support';

const [stateDir, node, pollMs, livenessMs, watch] = process.argv.slice(2);
const now = monotonicMs;
const out = (o: unknown): void => void process.stdout.write(`${JSON.stringify(o)}\n`);

async function main(): Promise<void> {
  const store = await DirectoryStore.open({ stateDir, node, pollMs: Number(pollMs), livenessMs: Number(livenessMs), watch: watch !== '0', log: pino({ level: 'silent' }) });
  store.changes$.subscribe((c) => out({ t: now(), change: { address: c.address, reset: c.reset, records: c.records.map((r) => [r.key, r.value?.toString('hex') ?? null]) } }));
  store.faults$.subscribe((f) => out({ t: now(), fault: f }));
  out({ ok: 'ready' });
  for await (const line of createInterface({ input: process.stdin })) {
    const [cmd, address, a, b, c] = line.split(' ');
    try {
      if (cmd === 'takeover') out({ ok: Object.fromEntries([...(await store.takeOver(address))].map(([k, v]) => [k, v.toString('hex')])) });
      else if (cmd === 'append') {
        const t0 = now();
        for (let i = 0; i < Number(c ?? 1); i++) store.append(address, [{ key: c ? `${a}${i}` : a, value: b === '-' ? null : Buffer.from(b, 'hex') }]);
        await store.commit();
        out({ ok: 'committed', t0, t: now() });
      } else if (cmd === 'barrier') out({ ok: await store.barrier(address, Number(a)) });
      else if (cmd === 'close') {
        await store.close();
        out({ ok: 'closed' });
        process.exit(0);
      } else out({ error: `unknown command ${cmd}` });
    } catch (err) {
      out({ error: (err as Error).message });
    }
  }
}
void main();
