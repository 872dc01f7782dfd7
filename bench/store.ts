// The cluster store's directory adapter (issue 19): what a journal costs and how fresh the others are.
//  1. commits/s and commit latency p50/p99 with 1, 8 and 64 appenders (each: append one lock-sized
//     record, await commit(), again; alternately a put and a delete of its key, as LOCK and UNLOCK),
//     on tmpfs and on ext4 (an image on a loop device);
//  2. follower freshness: from a commit in another process to this one's changes$ emission, with
//     inotify and with polling only (pollMs 100 and 20), p50/p99;
//  3. barrier cost with one live follower in another process (inotify, and polling only), p50/p99;
//  4. a journal of 100k live entries: one commit, a new node's whole read, a compaction.
// Runs as root in its own mount namespace (it re-executes itself under unshare).
// Run: npx tsx bench/store.ts [seconds per throughput case]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { DirectoryStore } from '../src/store';
import { mountExt4, mountTmpfs, type Mounted } from '../test/support/files';
import { monotonicMs, StoreChild } from '../test/store/support';

const seconds = Number(process.argv[2] ?? 3);
const V = '10.99.0.7';
const silent = pino({ level: 'silent' });
const now = monotonicMs;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** About what the lock table will keep per entry: owner, client address, handle, range, mode. */
const VALUE = Buffer.alloc(120, 0x5a);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}
const fmt = (xs: number[]): string => `p50 ${pct(xs, 50).toFixed(2)} ms, p99 ${pct(xs, 99).toFixed(2)} ms (n=${xs.length})`;
const loadavg = (): string => execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).split(' ').slice(0, 3).join(' ');

async function throughput(fs: Mounted, kind: string, appenders: number, compactMinBytes = 64 * 1024): Promise<void> {
  const dir = mkdtempSync(join(fs.dir, 'store-'));
  const store = await DirectoryStore.open({ stateDir: dir, node: 'bench', log: silent, compactMinBytes });
  await store.takeOver(V);
  const latencies: number[] = [];
  const until = performance.now() + seconds * 1000;
  let commits = 0;
  const c0 = { ...store.counters };
  await Promise.all(Array.from({ length: appenders }, async (_, i) => {
    const key = `owner-${i}@client-${i % 17}/fh-0123456789abcdef`;
    for (let n = 0; performance.now() < until; n++) {
      const t = performance.now();
      store.append(V, [{ key, value: n % 2 === 0 ? VALUE : null }]);
      await store.commit();
      latencies.push(performance.now() - t);
      commits++;
    }
  }));
  const syncs = store.counters.syncs - c0.syncs;
  console.log(`${kind}, ${String(appenders).padStart(2)} appender${appenders === 1 ? "" : "s"}, compaction past ${compactMinBytes >> 10} KiB: ${Math.round(commits / seconds)} commits/s, ${Math.round(syncs / seconds)} fdatasyncs/s (${(commits / syncs).toFixed(1)} records each), latency ${fmt(latencies)}, ${store.counters.compactions - c0.compactions} compactions`);
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}

async function freshness(fs: Mounted, kind: string, mode: { watch: boolean; pollMs: number }): Promise<void> {
  const dir = mkdtempSync(join(fs.dir, 'store-'));
  const writer = await StoreChild.start(dir, 'writer');
  await writer.ask(`takeover ${V}`);
  const reader = await DirectoryStore.open({ stateDir: dir, node: 'reader', log: silent, ...mode });
  const seen = new Map<string, number>();
  reader.changes$.subscribe((c) => {
    const t = now();
    for (const r of c.records) if (!seen.has(r.key)) seen.set(r.key, t);
  });
  const fromCommit: number[] = [];
  const fromAppend: number[] = [];
  for (let i = 0; i < 200; i++) {
    const { t0, t } = await writer.ask(`append ${V} k${i} ${VALUE.toString('hex')}`);
    for (let w = 0; !seen.has(`k${i}`) && w < 1000; w++) await sleep(1);
    const at = seen.get(`k${i}`);
    if (at === undefined) throw new Error(`k${i} never reached the reader`);
    fromCommit.push(at - t!);
    fromAppend.push(at - t0!);
    // Commits at random phases of the reader's poll (not right after the look that saw the last one).
    await sleep(Math.random() * 1.5 * mode.pollMs);
  }
  console.log(`${kind}, ${mode.watch ? 'inotify + poll' : 'polling only'} (pollMs ${mode.pollMs}): commit → follower's changes$ ${fmt(fromCommit)}; append → changes$ ${fmt(fromAppend)}`);
  await reader.close();
  await writer.stop();
  rmSync(dir, { recursive: true, force: true });
}

async function barrier(fs: Mounted, kind: string, mode: { watch: boolean; pollMs: number }): Promise<void> {
  const dir = mkdtempSync(join(fs.dir, 'store-'));
  const holder = await DirectoryStore.open({ stateDir: dir, node: 'holder', log: silent });
  await holder.takeOver(V);
  const follower = await StoreChild.start(dir, 'follower', mode);
  for (let w = 0; !holder.liveNodes().includes('follower'); w++) {
    if (w > 500) throw new Error('the follower never showed up');
    await sleep(10);
  }
  const costs: number[] = [];
  const withCommit: number[] = [];
  let missed = 0;
  for (let i = 0; i < 200; i++) {
    const t0 = performance.now();
    holder.append(V, [{ key: `k${i % 50}`, value: i % 2 ? VALUE : null }]);
    await holder.commit();
    const r = await holder.barrier(V, 1_000);
    if (r.missing.length > 0) missed++;
    costs.push(r.ms);
    withCommit.push(performance.now() - t0);
    await sleep(Math.random() * 1.5 * mode.pollMs);
  }
  console.log(`${kind}, barrier with one live follower (${mode.watch ? 'inotify + poll' : 'polling only'}, its pollMs ${mode.pollMs}): ${fmt(costs)}; append+commit+barrier ${fmt(withCommit)}; ${missed} timed out`);
  await follower.stop();
  await holder.close();
  rmSync(dir, { recursive: true, force: true });
}

/** A journal of `n` live entries: how long a holder takes to write it, a follower to read it whole, a compaction. */
async function scale(fs: Mounted, kind: string, n: number): Promise<void> {
  const dir = mkdtempSync(join(fs.dir, 'store-'));
  const holder = await DirectoryStore.open({ stateDir: dir, node: 'holder', log: silent });
  await holder.takeOver(V);
  let t = performance.now();
  for (let i = 0; i < n; i++) holder.append(V, [{ key: `owner-${i}@client-${i % 1000}/fh-0123456789abcdef`, value: VALUE }]);
  await holder.commit();
  const write = performance.now() - t;
  t = performance.now();
  const reader = await DirectoryStore.open({ stateDir: dir, node: 'reader', log: silent });
  const read = performance.now() - t;
  let size = 0;
  reader.changes$.subscribe((c) => (size = c.records.length)).unsubscribe();
  // Half of them released in one commit: the file is past twice its live content, compacted right after.
  for (let i = 0; i < n; i += 2) holder.append(V, [{ key: `owner-${i}@client-${i % 1000}/fh-0123456789abcdef`, value: null }]);
  t = performance.now();
  await holder.commit();
  await holder.commit(); // waits for the compaction under way
  const release = performance.now() - t;
  console.log(`${kind}, ${n} live entries: appended in one commit ${write.toFixed(0)} ms; a new node reads them whole in ${read.toFixed(0)} ms (${size} entries); half of them released in one commit, and the compaction after it: ${release.toFixed(0)} ms (${holder.counters.compactions} compaction)`);
  await reader.close();
  await holder.close();
  rmSync(dir, { recursive: true, force: true });
}

async function main(): Promise<void> {
  if (process.getuid?.() === 0 && !process.env.LOCKDROP_BENCH_NS) {
    execFileSync('unshare', ['--mount', '--propagation', 'private', '--', 'env', 'LOCKDROP_BENCH_NS=1', process.execPath, ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
    return;
  }
  console.log(`${new Date().toISOString()}, node ${process.version}, load average ${loadavg()}`);
  const filesystems: Array<[Mounted, string]> = [[mountTmpfs(128), 'tmpfs'], [mountExt4(128), 'ext4']];
  const only = process.env.STORE_BENCH; // throughput | freshness | barrier | scale: one part only
  try {
    if (!only || only === 'throughput') {
      for (const [fs, kind] of filesystems) for (const n of [1, 8, 64]) await throughput(fs, kind, n);
      for (const [fs, kind] of filesystems) await throughput(fs, kind, 64, 1 << 20);
    }
    if (!only || only === 'freshness') for (const [fs, kind] of filesystems) {
      await freshness(fs, kind, { watch: true, pollMs: 100 });
      await freshness(fs, kind, { watch: false, pollMs: 100 });
      await freshness(fs, kind, { watch: false, pollMs: 20 });
    }
    if (!only || only === 'barrier') for (const [fs, kind] of filesystems) {
      await barrier(fs, kind, { watch: true, pollMs: 100 });
      await barrier(fs, kind, { watch: false, pollMs: 100 });
    }
    if (!only || only === 'scale') for (const [fs, kind] of filesystems) await scale(fs, kind, 100_000);
  } finally {
    for (const [fs] of filesystems) fs.dispose();
  }
  console.log(`load average at the end ${loadavg()}`);
}

void main().catch((err: Error) => {
  console.error(err);
  process.exit(1);
});
