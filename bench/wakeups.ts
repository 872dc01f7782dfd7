// What a release costs when many requests wait on one file (issue 11, item 4): one UNLOCK over
// the wire with 20k locks and 20k waiters on one file, and an unrelated client's NULL meanwhile;
// then the table alone in the shapes that stress a wakeup.
// Run: npx tsx bench/wakeups.ts
import { LockTable, hostKey } from '../src/locks';
import type { LockRequest } from '../src/locks';
import { NlmClient, createNlmService } from '../src/nlm';
import { RpcServer } from '../src/rpc';

const N = 20_000;
const FH = Buffer.from('bench-wakeups-file'.padEnd(32, '\0'));
const HOST = hostKey('bench', '127.0.0.1');
const req = (svid: number, offset: number, length: number, exclusive: boolean): LockRequest =>
  ({ fh: FH, owner: { host: HOST, svid, oh: Buffer.from(`oh${svid}`) }, exclusive, offset: BigInt(offset), length: BigInt(length), serverAddress: '127.0.0.1' });
const BLOCK = { block: true, reclaim: false, waiter: () => ({}) };
const NB = { block: false, reclaim: false };

function ms(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** 20k owners each hold one byte exclusively; 20k more each wait for one of those bytes. */
function disjointWaiters(table: LockTable): void {
  for (let i = 0; i < N; i++) table.lock(req(i, 2 * i, 1, true), NB);
  for (let i = 0; i < N; i++) table.lock(req(N + i, 2 * i, 1, true), BLOCK);
}

async function overTheWire(): Promise<void> {
  let grants = 0;
  const table = new LockTable({ onBlockGranted: () => void grants++ });
  const service = createNlmService({ table, options: { requireAuthSys: false } });
  const rpc = new RpcServer();
  for (const p of service.programs) rpc.register(p);
  await rpc.addAddress('127.0.0.1');
  disjointWaiters(table);
  const unlocker = await NlmClient.create({ server: { address: '127.0.0.1', port: rpc.port }, transport: 'udp', vers: 4, callerName: 'bench' });
  const other = await NlmClient.create({ server: { address: '127.0.0.1', port: rpc.port }, transport: 'udp', vers: 4, callerName: 'other' });
  const unlocks: number[] = [];
  const nulls: number[] = [];
  let stop = false;
  const pinger = (async () => {
    while (!stop) {
      const t0 = process.hrtime.bigint();
      await other.null();
      nulls.push(ms(t0));
    }
  })();
  for (let k = 0; k < 50; k++) {
    const i = k * 97;
    const t0 = process.hrtime.bigint();
    await unlocker.unlock({ fh: FH, svid: i, oh: Buffer.from(`oh${i}`), offset: BigInt(2 * i), length: 1n });
    unlocks.push(ms(t0));
  }
  stop = true;
  await pinger;
  const p = (xs: number[], q: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))]!;
  console.log(`wire, ${N} locks + ${N} waiters on one file: UNLOCK waking one waiter p50 ${p(unlocks, 0.5).toFixed(2)} ms, max ${Math.max(...unlocks).toFixed(2)} ms (${grants} grants); unrelated NULL p50 ${p(nulls, 0.5).toFixed(2)} ms, max ${Math.max(...nulls).toFixed(2)} ms over ${nulls.length} calls`);
  await unlocker.close();
  await other.close();
  service.close();
  await rpc.close();
}

function tableAlone(): void {
  {
    const table = new LockTable();
    disjointWaiters(table);
    const t0 = process.hrtime.bigint();
    for (let k = 0; k < 100; k++) table.unlock(req(k, 2 * k, 1, true));
    console.log(`table, ${N} + ${N} disjoint: UNLOCK waking one waiter ${(ms(t0) / 100).toFixed(3)} ms each`);
  }
  for (const waiters of [1_000, N]) {
    const table = new LockTable();
    table.lock(req(0, 0, 0, true), NB);
    for (let i = 0; i < waiters; i++) table.lock(req(1 + i, i, 1, false), BLOCK);
    const t0 = process.hrtime.bigint();
    table.unlock(req(0, 0, 0, true));
    console.log(`table, one whole-file lock, ${waiters} shared waiters on disjoint bytes: the UNLOCK granting all of them ${ms(t0).toFixed(1)} ms (${table.stats().locks} locks after)`);
  }
  {
    const table = new LockTable();
    table.lock(req(0, 0, 0, true), NB);
    for (let i = 0; i < N; i++) table.lock(req(1 + i, 0, 0, true), BLOCK);
    const t0 = process.hrtime.bigint();
    table.unlock(req(0, 0, 0, true));
    console.log(`table, one whole-file lock, ${N} exclusive waiters on it: the UNLOCK granting the next ${ms(t0).toFixed(2)} ms`);
  }
}

async function main(): Promise<void> {
  await overTheWire();
  tableAlone();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
