// Time from `ip addr del` to the end of the drop of that address's locks, through the real
// address pipeline (netlink via the addon, or the poll source alone) and the failover
// controller over a real lock table, its locks in memory or on real files (a tmpfs export: the
// drop then releases every OFD lock before it is done, and the addon's threads close the
// descriptions right after: "drop done → closed"). Runs in a private network and mount
// namespace it makes itself.
//   npx tsx bench/failover.ts [runs] [memory|files]
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { promisify } from 'node:util';
import { filter, firstValueFrom } from 'rxjs';
import { addonStatus, openLockdropProbes, openRtnetlink } from '../src/addon';
import { FailoverController, type FailoverReport } from '../src/failover';
import { LockTable, hostKey } from '../src/locks';
import { bpfSource, netlinkSource, nowMs, pollSource, watchAddresses, type SourceItem } from '../src/watch';
import { merge, type Observable } from 'rxjs';
import { realFilesUnavailable, reexecInNamespaces, tmpfsExport, type BenchExport } from './real-files';

// Namespaces of our own: addresses come and go without touching the machine's, the tmpfs goes with us.
reexecInNamespaces(['net', 'mount']);

const run = promisify(execFile);
const VIP = '10.90.0.100';
const OTHER = '10.90.0.200';
const RUNS = Number(process.argv[2] ?? 15);
const ONLY_MODE = process.argv[3] as Mode | undefined;
const POLL_MS = 1000;

type Mode = 'memory' | 'files';

/**
 * Who holds the locks: lock i is on file i % files, of owner i % owners (of 64 client hosts on
 * 10.<net>.0.x: a client mounts through one address), so with lcm(owners, files) ≥ n every lock
 * is its own (owner, file), the files' worst case: one description each.
 */
interface Shape {
  label: string;
  net: number;
  owners: number;
  files: Buffer[];
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

function fill(table: LockTable, address: string, n: number, shape: Shape): void {
  for (let i = 0; i < n; i++) {
    const o = i % shape.owners;
    const host = o % 64;
    const status = table.lock({
      fh: shape.files[i % shape.files.length]!,
      owner: { host: hostKey(`client${shape.net}-${host}`, `10.${shape.net}.0.${host}`), svid: o, oh: Buffer.from(`oh${host}`) },
      exclusive: true, offset: BigInt(i) * 10n, length: 5n, serverAddress: address,
    }, { block: false, reclaim: false });
    if (status !== 'granted') throw new Error(`fill: ${status}`);
  }
}

interface Files {
  mode: Mode;
  /** The export the locks are on (files mode); its handles name the files in both modes. */
  exp: BenchExport | undefined;
  /** Where the addresses' locks are: one shape for the address that goes, one for the other. */
  shapes: Shape[];
  other: Shape;
}

async function bench(name: string, source: () => Observable<SourceItem>, sizes: number[], runs: number, files: Files): Promise<void> {
  const onFiles = files.mode === 'files' ? { locker: files.exp!.files, exportOf: (fh: Buffer) => files.exp!.exports.exportOf(fh) } : {};
  const table = new LockTable(onFiles);
  // The drop alone, to tell it apart from event delivery; and its CPU time (every thread of the
  // process: the files part closes descriptions on threads of its own), steadier than the wall
  // time on a loaded machine.
  const dropMs: number[] = [];
  const dropCpuMs: number[] = [];
  // The JS thread's own time on a CPU and waiting for one (runnable, every core taken) during the
  // drop, from its schedstat: what a drop's tail is made of on a shared machine.
  const onCpuMs: number[] = [];
  const runQueueMs: number[] = [];
  const schedstat = (): number[] => readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ').map(Number);
  let dropCpu = process.cpuUsage();
  const drop = table.dropByServerAddress.bind(table);
  table.dropByServerAddress = (address: string) => {
    const c = (dropCpu = process.cpuUsage());
    const s0 = schedstat();
    const t = nowMs();
    const counts = drop(address);
    dropMs.push(nowMs() - t);
    const s1 = schedstat();
    onCpuMs.push((s1[0]! - s0[0]!) / 1e6);
    runQueueMs.push((s1[1]! - s0[1]!) / 1e6);
    const used = process.cpuUsage(c);
    dropCpuMs.push((used.user + used.system) / 1000);
    return counts;
  };
  const ctl = new FailoverController({
    listeners: { addAddress: async () => undefined, removeAddress: async () => undefined },
    locks: table,
    monitors: {
      activate: async () => ({ records: 0 }), bumpState: async () => 1, forgetClients: () => undefined,
      notify: async () => ({ notified: [], failed: [], ms: 0, state: 1 }), graceEnded: async () => 0,
    },
    graceSeconds: () => 0,
  });
  const sub = ctl.run(watchAddresses([source()], { floating: [VIP, OTHER] }));
  const reports = ctl.reports$;
  const next = (type: FailoverReport['type']) => firstValueFrom(reports.pipe(filter((r) => r.type === type && r.address === VIP)));
  execFileSync('ip', ['addr', 'add', `${OTHER}/32`, 'dev', 'bench0']);
  fill(table, OTHER, 100_000, files.other);
  const openBefore = files.exp?.files.stats().open ?? 0;
  for (const shape of files.shapes) {
    for (const n of sizes) {
      const total: number[] = [];
      const fromEvent: number[] = [];
      dropMs.length = 0;
      dropCpuMs.length = 0;
      onCpuMs.length = 0;
      runQueueMs.length = 0;
      const closedMs: number[] = [];
      const closedCpuMs: number[] = [];
      let described = 0;
      for (let r = 0; r < runs; r++) {
        const up = next('up');
        await run('ip', ['addr', 'add', `${VIP}/32`, 'dev', 'bench0']);
        await up;
        fill(table, VIP, n, shape);
        described = (files.exp?.files.stats().open ?? 0) - openBefore;
        const down = next('down');
        const t0 = nowMs();
        void run('ip', ['addr', 'del', `${VIP}/32`, 'dev', 'bench0']);
        const d = await down;
        const t1 = nowMs();
        // The descriptions close on the addon's threads after the drop (its locks were released before).
        files.exp?.files.awaitCloses();
        closedMs.push(nowMs() - t1);
        const used = process.cpuUsage(dropCpu);
        closedCpuMs.push((used.user + used.system) / 1000);
        if (d.type !== 'down' || d.counts.locks !== n) throw new Error(`expected ${n} locks dropped, got ${JSON.stringify(d)}`);
        const left = (files.exp?.files.stats().open ?? 0) - openBefore;
        if (left !== 0) throw new Error(`${left} descriptions of the dropped address still open`);
        total.push(t1 - t0);
        fromEvent.push(d.ms);
      }
      const f = (x: number) => x.toFixed(2).padStart(8);
      const fds = files.mode === 'files' ? `, ${described} descriptions closed` : '';
      console.log(`${name.padEnd(8)} ${files.mode.padEnd(6)} ${String(n).padStart(7)} locks, ${shape.label}${fds} (+100k on another address), ${runs} runs: ` +
        `ip addr del → drop done p50 ${f(pct(total, 50))} p99 ${f(pct(total, 99))} ms | first sighting → drop done p50 ${f(pct(fromEvent, 50))} p99 ${f(pct(fromEvent, 99))} ms | the drop alone p50 ${f(pct(dropMs, 50))} p99 ${f(pct(dropMs, 99))} ms, CPU p50 ${f(pct(dropCpuMs, 50))} ms (JS thread on a CPU p50 ${f(pct(onCpuMs, 50))}, waiting for one p50 ${f(pct(runQueueMs, 50))} p99 ${f(pct(runQueueMs, 99))} ms)` +
        (files.mode === 'files' ? ` | drop done → closed p50 ${f(pct(closedMs, 50))} p99 ${f(pct(closedMs, 99))} ms, CPU with the closes p50 ${f(pct(closedCpuMs, 50))} ms` : '') + ` (load ${loadavg()[0]!.toFixed(2)})`);
    }
  }
  sub.unsubscribe();
  ctl.close();
  table.dropByServerAddress(OTHER);
  execFileSync('ip', ['addr', 'del', `${OTHER}/32`, 'dev', 'bench0']);
}

/** knfsd-shaped handles (fsid 7) of files that exist nowhere: the memory rows when no real export can be made. */
const synthetic = (tag: number, n: number): Buffer[] => Array.from({ length: n }, (_, i) => {
  const b = Buffer.alloc(20);
  b.set([1, 0, 1, 1]);
  b.writeUInt32LE(7, 4);
  b.writeUInt32LE(tag * 1_000_000 + i, 8);
  return b;
});

async function main(): Promise<void> {
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  execFileSync('ip', ['link', 'add', 'bench0', 'type', 'veth', 'peer', 'name', 'bench1']);
  execFileSync('ip', ['link', 'set', 'bench0', 'up']);
  execFileSync('ip', ['link', 'set', 'bench1', 'up']);
  const noFiles = realFilesUnavailable();
  const exp = noFiles === undefined ? tmpfsExport() : undefined;
  const handles = (tag: number, prefix: string, n: number): Buffer[] => (exp ? exp.handles(prefix, n) : synthetic(tag, n));
  // Few locks per file: the table and the kernel both scan a file's locks on each change.
  // The other address: 100k locks, 100 per (owner, file), each owner on a file of its own — 1,000 descriptions.
  const other: Shape = { label: 'other', net: 92, owners: 1000, files: handles(1, 'other-', 1000) };
  const onePerLock: Shape = { label: 'one per (owner, file)', net: 91, owners: 8000, files: handles(2, 'vip-', 256) };
  const tenPerPair: Shape = { label: 'ten per (owner, file)', net: 91, owners: 1000, files: handles(3, 'vip10-', 1000) };
  if (noFiles !== undefined) console.log(`files: skipped (${noFiles})`);
  const modes: Files[] = [
    { mode: 'memory' as const, exp: undefined, shapes: [onePerLock], other },
    // RLIMIT_NOFILE here (and lockdropd's budget below it) bounds files to about 16k descriptions: no 100k.
    ...(exp ? [{ mode: 'files' as const, exp, shapes: [onePerLock, tenPerPair], other }] : []),
  ].filter((m) => ONLY_MODE === undefined || m.mode === ONLY_MODE);
  const sizes = (m: Files) => (m.mode === 'memory' ? [1_000, 10_000, 100_000] : [1_000, 10_000]);
  const addon = addonStatus();
  if (addon.available) {
    const socket = openRtnetlink();
    for (const m of modes) await bench('netlink', () => netlinkSource(socket), sizes(m), RUNS, m);
    // With the probe, an event's time is the `ip` process's own sendmsg: "kernel event → drop
    // done" then runs from the command's request, without the cost of starting `ip`.
    for (const m of modes) await bench('bpf+nl', () => merge(bpfSource(() => openLockdropProbes()), netlinkSource(socket)), sizes(m), RUNS, m);
    socket.close();
  } else {
    console.log(`netlink: skipped (${addon.reason})`);
  }
  for (const m of modes.filter((x) => x.mode === 'memory')) {
    await bench(`poll ${POLL_MS / 1000}s`, () => pollSource({ intervalMs: POLL_MS }), sizes(m), Math.max(3, Math.floor(RUNS / 3)), m);
  }
  exp?.files.setExports([]);
  process.exit(0);
}

void main();
