// Lock table benchmarks: bytes per held lock (heap after GC), drop timings, a drop that wakes 1k
// waiters, and raw LOCK+UNLOCK pairs per second of the table alone; with --files, what the same
// shapes cost on real files: open descriptions (one per owner and file), kernel OFD locks and
// memory per held lock.
// Run: npx tsx bench/locks.ts            (or: node --expose-gc --import tsx bench/locks.ts)
//      npx tsx bench/locks.ts --quick    (100k only, for a fast look)
//      npx tsx bench/locks.ts --files    (root: a tmpfs export in a private mount namespace)
import { readFileSync, statSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { LockTable, hostKey } from '../src/locks';
import type { LockOwner, LockRequest } from '../src/locks';
import { fdsOpen, realFilesUnavailable, reexecInNamespaces, tmpfsExport, type BenchExport } from './real-files';
import { checkIndexes } from '../src/locks/testing';

setFlagsFromString('--expose-gc');
const gc: () => void = (globalThis as { gc?: () => void }).gc ?? runInNewContext('gc');
const quick = process.argv.includes('--quick');

function fullGc(): void {
  for (let i = 0; i < 4; i++) gc();
}

const NB = { block: false, reclaim: false };
// A client host mounts through one VIP. Of 1000 hosts, 10 each on five small VIPs and 100 each on
// three big ones: with 1M locks (1000 per host) that is 10k and 100k locks per VIP.
const SMALL_VIPS = Array.from({ length: 5 }, (_, i) => `10.9.0.${i + 1}`);
const BIG_VIPS = Array.from({ length: 3 }, (_, i) => `10.9.0.${i + 11}`);
const OTHER_VIPS = Array.from({ length: 8 }, (_, i) => `10.9.1.${i + 1}`);

/** Wall and CPU time of fn: the machine is shared, so CPU time is the steadier figure. */
function timed<T>(fn: () => T): { ms: number; cpuMs: number; value: T } {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const value = fn();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const c = process.cpuUsage(c0);
  return { ms, cpuMs: (c.user + c.system) / 1000, value };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function fh(i: number): Buffer {
  // 32-byte handles, like a Linux knfsd filehandle with a fsid and an inode.
  const b = Buffer.alloc(32);
  b.writeUInt32BE(0x01000601, 0);
  b.writeUInt32BE(7, 4);
  b.writeUInt32BE(i, 24);
  return b;
}

function owners(hosts: number, perHost: number): LockOwner[] {
  const out: LockOwner[] = [];
  for (let h = 0; h < hosts; h++) {
    const host = hostKey(`client-${h}.example.com`, `192.168.${h >> 8}.${h & 255}`);
    for (let s = 0; s < perHost; s++) out.push({ host, svid: 1000 + s, oh: Buffer.from(`${s}@client-${h}`) });
  }
  return out;
}

function vipOf(host: number): string {
  if (host < 50) return SMALL_VIPS[Math.floor(host / 10)];
  if (host < 350) return BIG_VIPS[Math.floor((host - 50) / 100)];
  return OTHER_VIPS[host % OTHER_VIPS.length];
}

const handles = (files: number): Buffer[] => Array.from({ length: files }, (_, i) => fh(i));

/** n locks: lock i on file i % files, owner i % owners, a 5-byte range that never touches another. */
function fill(t: LockTable, n: number, hs: Buffer[], os: LockOwner[]): void {
  const files = hs.length;
  for (let i = 0; i < n; i++) {
    const k = Math.floor(i / files);
    const r: LockRequest = {
      fh: hs[i % files],
      owner: os[i % os.length],
      exclusive: true,
      offset: BigInt(k * 10),
      length: 5n,
      serverAddress: vipOf(Math.floor(((i % os.length) * 1000) / os.length)),
    };
    if (t.lock(r, NB) !== 'granted') throw new Error(`lock ${i} not granted`);
  }
}

/** In its own frame, so no interpreter register keeps the table alive. */
function throwaway(n: number, hs: Buffer[], os: LockOwner[]): void {
  fill(new LockTable(), n, hs, os);
}

function memory(n: number, files: number, os: LockOwner[], label: string): void {
  // The caller's handles and owners exist before: only the table is measured. A throwaway table
  // of the same shape first, so compiled code and grown internal tables are not counted.
  const hs = handles(files);
  throwaway(Math.min(n, 100_000), hs.slice(0, Math.max(1, Math.min(n, 100_000) / (n / files))), os);
  fullGc();
  const before = process.memoryUsage().heapUsed;
  const t = new LockTable();
  fill(t, n, hs, os);
  fullGc();
  const after = process.memoryUsage().heapUsed;
  if (t.stats().locks !== n) throw new Error('lock count');
  console.log(`memory  ${label.padEnd(52)} ${((after - before) / n).toFixed(1)} bytes/lock  (heap +${((after - before) / 2 ** 20).toFixed(1)} MiB)`);
}

/** Runs the drop and wake paths once on a small table, so the timed runs measure warm code. */
function warmUp(): void {
  for (let r = 0; r < 20; r++) {
    const t = new LockTable({ onBlockGranted: () => {} });
    fill(t, 20_000, handles(2_000), owners(100, 10));
    const os = owners(200, 1);
    for (let i = 0; i < 100; i++) {
      const base = { fh: fh(30_000_000 + i), exclusive: true, offset: 0n, length: 0n };
      t.lock({ ...base, owner: os[i], serverAddress: '10.9.3.1' }, NB);
      t.lock({ ...base, owner: os[100 + i], serverAddress: '10.9.3.2' }, { block: true, reclaim: false });
    }
    t.dropByServerAddress('10.9.3.1');
    t.dropByServerAddress(SMALL_VIPS[0]);
    t.dropByHost(os[150].host);
  }
}

function drops(n: number, os: LockOwner[]): void {
  const t = new LockTable({ onBlockGranted: () => {} });
  fill(t, n, handles(n / 10), os);
  fullGc();
  for (const vips of [SMALL_VIPS, BIG_VIPS]) {
    const runs = vips.map((vip) => timed(() => t.dropByServerAddress(vip)));
    const locks = runs[0].value.locks;
    const label = locks >= 1000 ? `${locks / 1000}k` : String(locks);
    const wall = median(runs.map((r) => r.ms));
    const cpu = median(runs.map((r) => r.cpuMs));
    console.log(
      `drop    ${`${label} of ${n} locks (${runs[0].value.clients} clients), median of ${runs.length}`.padEnd(52)} ` +
        `wall ${wall.toFixed(1)} ms ${((wall * 1000) / locks).toFixed(3)} µs/lock, cpu ${cpu.toFixed(1)} ms ${((cpu * 1000) / locks).toFixed(3)} µs/lock`,
    );
  }
  if (checkIndexes(t).length) throw new Error('indexes out of step after drops');
  // Each round: 1k files held through one VIP, each with a waiter (another owner) queued through
  // another; dropping the first VIP must grant all 1k before it returns.
  const os2 = owners(2000, 1);
  const rounds = [];
  for (let r = 0; r < 3; r++) {
    for (let i = 0; i < 1000; i++) {
      const base = { fh: fh(10_000_000 + r * 1000 + i), exclusive: true, offset: 0n, length: 0n };
      t.lock({ ...base, owner: os2[i], serverAddress: `10.9.2.${r}` }, NB);
      if (t.lock({ ...base, owner: os2[1000 + i], serverAddress: '10.9.2.100' }, { block: true, reclaim: false }) !== 'blocked') throw new Error('not blocked');
    }
    rounds.push(timed(() => t.dropByServerAddress(`10.9.2.${r}`)));
  }
  console.log(
    `wake    ${`drop 1k locks waking ${rounds[0].value.woken} waiters elsewhere, ${t.stats().locks - 3000} held`.padEnd(52)} ` +
      `wall ${median(rounds.map((r) => r.ms)).toFixed(1)} ms, cpu ${median(rounds.map((r) => r.cpuMs)).toFixed(1)} ms (median of 3)`,
  );
}

/** 1k shared waiters queued behind one exclusive lock on one file. */
function dropWakingOneFile(): void {
  const t = new LockTable({ onBlockGranted: () => {} });
  const os = owners(1001, 1);
  const base = { fh: fh(1), offset: 0n, length: 0n };
  t.lock({ ...base, exclusive: true, owner: os[0], serverAddress: '10.9.2.1' }, NB);
  for (let i = 1; i <= 1000; i++) t.lock({ ...base, exclusive: false, owner: os[i], serverAddress: '10.9.2.2' }, { block: true, reclaim: false });
  const { ms, cpuMs, value: c } = timed(() => t.dropByServerAddress('10.9.2.1'));
  console.log(`wake    ${`drop 1 lock, woke ${c.woken} shared waiters on one file`.padEnd(52)} wall ${ms.toFixed(1)} ms, cpu ${cpuMs.toFixed(1)} ms`);
}

function ops(label: string, subscribe: boolean, held: number): void {
  const t = new LockTable();
  fill(t, held, handles(Math.max(1, held / 10)), owners(1000, 10));
  const sub = subscribe ? t.changes.subscribe(() => {}) : undefined;
  const os = owners(8, 1);
  const hs = Array.from({ length: 1000 }, (_, i) => fh(20_000_000 + i));
  const reqs: LockRequest[] = [];
  for (let i = 0; i < 4096; i++) {
    reqs.push({ fh: hs[(i * 7919) % 1000], owner: os[i % 8], exclusive: (i & 1) === 0, offset: BigInt((i % 64) * 100), length: 10n, serverAddress: OTHER_VIPS[i % 8] });
  }
  const run = (n: number): void => {
    for (let i = 0; i < n; i++) {
      const r = reqs[i & 4095];
      t.lock(r, NB);
      t.unlock(r);
    }
  };
  run(200_000); // warm up
  const n = 1_000_000;
  const { ms, cpuMs } = timed(() => run(n));
  sub?.unsubscribe();
  const rate = (x: number): string => Math.round(n / (x / 1000)).toLocaleString('en-US');
  console.log(`ops     ${label.padEnd(52)} ${rate(ms)} pairs/s wall (${((ms * 1000) / n).toFixed(2)} µs), ${rate(cpuMs)} pairs/s cpu (${((cpuMs * 1000) / n).toFixed(2)} µs)`);
}

/** OFD locks the kernel holds on the export's filesystem (/proc/locks: "OFDLCK … MAJ:MIN:INODE …", in hex). */
function kernelLocksOn(dir: string): number {
  const dev = statSync(dir).dev;
  const id = `${((dev >> 8) & 0xfff).toString(16).padStart(2, '0')}:${((dev & 0xff) | ((dev >> 12) & 0xfff00)).toString(16).padStart(2, '0')}:`;
  return readFileSync('/proc/locks', 'utf8').split('\n').filter((l) => l.includes('OFDLCK') && l.includes(` ${id}`)).length;
}

/** A slab's object size (bytes) from /proc/slabinfo, or undefined when the cache is merged away. */
function slabSize(name: string): number | undefined {
  const line = readFileSync('/proc/slabinfo', 'utf8').split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.split(/\s+/)[3]);
}

/**
 * A shape of memory() on real files: n locks held, then what they cost — descriptions (one per
 * owner and file) and process fds, kernel OFD locks, the JS heap beyond the in-memory table, and
 * the kernel's struct file and struct file_lock for them.
 */
function onFiles(exp: BenchExport, n: number, files: number, os: LockOwner[], label: string): void {
  const hs = exp.handles(`s${n}-${files}-${os.length}-`, files);
  const heapOf = (locker: boolean): { heap: number; table: LockTable } => {
    fullGc();
    const before = process.memoryUsage().heapUsed;
    const table = new LockTable(locker ? { locker: exp.files, exportOf: (fh) => exp.exports.exportOf(fh) } : {});
    fill(table, n, hs, os);
    fullGc();
    return { heap: process.memoryUsage().heapUsed - before, table };
  };
  const memory = heapOf(false).heap;
  const fds0 = fdsOpen();
  const { heap, table } = heapOf(true);
  const descriptions = exp.files.stats().open;
  const fds = fdsOpen() - fds0;
  const kernelLocks = kernelLocksOn(exp.dir);
  const kernelBytes = descriptions * (slabSize('filp') ?? 0) + kernelLocks * (slabSize('file_lock_cache') ?? 0);
  console.log(`files   ${label.padEnd(52)} ${(descriptions / n).toFixed(2)} descriptions/lock (${descriptions} open, ${fds} fds), ${(kernelLocks / n).toFixed(2)} OFD locks/lock, ` +
    `heap ${((heap - memory) / n).toFixed(0)} B/lock beyond the table's, kernel ${(kernelBytes / n).toFixed(0)} B/lock`);
  for (const vip of [...SMALL_VIPS, ...BIG_VIPS, ...OTHER_VIPS]) table.dropByServerAddress(vip);
  if (exp.files.stats().open !== 0 || fdsOpen() !== fds0) throw new Error(`descriptions left after the drops: ${exp.files.stats().open}`);
}

if (process.argv.includes('--files')) {
  reexecInNamespaces(['mount']);
  const why = realFilesUnavailable();
  if (why !== undefined) throw new Error(`--files ${why}`);
  const exp = tmpfsExport();
  console.log(`kernel objects: struct file ${slabSize('filp') ?? '?'} B, struct file_lock ${slabSize('file_lock_cache') ?? '?'} B (/proc/slabinfo); descriptor budget ${exp.files.stats().roots} root + what RLIMIT_NOFILE leaves`);
  // The shapes of memory() below, as large as this machine's RLIMIT_NOFILE lets one process hold.
  onFiles(exp, 100_000, 10_000, owners(1000, 10), '100000 locks, 10 per file, 10k owners');
  onFiles(exp, 10_000, 10_000, owners(1000, 10), '10000 locks, 1 per file, 10k owners');
  onFiles(exp, 10_000, 10_000, owners(1000, 100), '10000 locks, 1 per file, 100k owners');
  onFiles(exp, 10_000, 1_000, owners(1000, 10), '10000 locks, 10 per file, 10k owners');
  onFiles(exp, 10_000, 1_000, owners(10, 10), '10000 locks, 10 per file, 100 owners');
  exp.files.setExports([]);
  process.exit(0);
}

const sizes = quick ? [100_000] : [100_000, 1_000_000];
for (const n of sizes) {
  memory(n, n / 10, owners(1000, 10), `${n} locks, 10 per file, 10k owners`);
  memory(n, n, owners(1000, 10), `${n} locks, 1 per file, 10k owners`);
  memory(n, n, owners(1000, 100), `${n} locks, 1 per file, 100k owners`);
}
warmUp();
drops(quick ? 400_000 : 1_000_000, owners(1000, 10));
dropWakingOneFile();
ops('8 owners, 1k files, empty table', false, 0);
ops('8 owners, 1k files, 100k other locks held', false, 100_000);
ops('8 owners, 1k files, one changes subscriber', true, 0);
