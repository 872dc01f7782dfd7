// Time from `ip addr del` to the end of the drop of that address's locks, through the real
// address pipeline (netlink via the addon, or the poll source alone) and the failover
// controller over a real lock table. Runs in a private network namespace it makes itself.
//   npx tsx bench/failover.ts [runs]
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { filter, firstValueFrom } from 'rxjs';
import { addonStatus, openLockdropProbes, openRtnetlink } from '../src/addon';
import { FailoverController, type FailoverReport } from '../src/failover';
import { LockTable, hostKey } from '../src/locks';
import { bpfSource, netlinkSource, nowMs, pollSource, watchAddresses, type SourceItem } from '../src/watch';
import { merge, type Observable } from 'rxjs';

if (process.env.LOCKDROP_BENCH_NS !== '1') {
  // A namespace of our own: addresses come and go without touching the machine's.
  execFileSync('unshare', ['--net', '--', 'env', 'LOCKDROP_BENCH_NS=1', process.execPath, ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
  process.exit(0);
}

const run = promisify(execFile);
const VIP = '10.90.0.100';
const OTHER = '10.90.0.200';
const RUNS = Number(process.argv[2] ?? 15);
const POLL_MS = 1000;

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

function fill(table: LockTable, address: string, n: number, tag: string): void {
  // 64 client hosts, each owner holding many small ranges on a few files.
  for (let i = 0; i < n; i++) {
    const host = i % 64;
    const status = table.lock({
      fh: Buffer.from(`${tag}-file-${i % 256}`),
      owner: { host: hostKey(`client${host}`, `10.91.${host >> 8}.${host & 255}`), svid: i % 1000, oh: Buffer.from(`oh${host}`) },
      exclusive: true, offset: BigInt(i) * 10n, length: 5n, serverAddress: address,
    }, { block: false, reclaim: false });
    if (status !== 'granted') throw new Error(`fill: ${status}`);
  }
}

async function bench(name: string, source: () => Observable<SourceItem>, sizes: number[], runs: number): Promise<void> {
  const table = new LockTable();
  // The drop alone, to tell it apart from event delivery.
  const dropMs: number[] = [];
  const drop = table.dropByServerAddress.bind(table);
  table.dropByServerAddress = (address: string) => {
    const t = nowMs();
    const counts = drop(address);
    dropMs.push(nowMs() - t);
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
  fill(table, OTHER, 100_000, 'other');
  for (const n of sizes) {
    const total: number[] = [];
    const fromEvent: number[] = [];
    dropMs.length = 0;
    for (let r = 0; r < runs; r++) {
      const up = next('up');
      await run('ip', ['addr', 'add', `${VIP}/32`, 'dev', 'bench0']);
      await up;
      fill(table, VIP, n, `r${r}`);
      const down = next('down');
      const t0 = nowMs();
      void run('ip', ['addr', 'del', `${VIP}/32`, 'dev', 'bench0']);
      const d = await down;
      const t1 = nowMs();
      if (d.type !== 'down' || d.counts.locks !== n) throw new Error(`expected ${n} locks dropped, got ${JSON.stringify(d)}`);
      total.push(t1 - t0);
      fromEvent.push(d.ms);
    }
    const f = (x: number) => x.toFixed(2).padStart(8);
    console.log(`${name.padEnd(8)} ${String(n).padStart(7)} locks (+100k on another address), ${runs} runs: ` +
      `ip addr del → drop done p50 ${f(pct(total, 50))} p99 ${f(pct(total, 99))} ms | first sighting → drop done p50 ${f(pct(fromEvent, 50))} p99 ${f(pct(fromEvent, 99))} ms | the drop alone p50 ${f(pct(dropMs, 50))} p99 ${f(pct(dropMs, 99))} ms`);
  }
  sub.unsubscribe();
  ctl.close();
  execFileSync('ip', ['addr', 'del', `${OTHER}/32`, 'dev', 'bench0']);
}

async function main(): Promise<void> {
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  execFileSync('ip', ['link', 'add', 'bench0', 'type', 'veth', 'peer', 'name', 'bench1']);
  execFileSync('ip', ['link', 'set', 'bench0', 'up']);
  execFileSync('ip', ['link', 'set', 'bench1', 'up']);
  const sizes = [1_000, 10_000, 100_000];
  const addon = addonStatus();
  if (addon.available) {
    const socket = openRtnetlink();
    await bench('netlink', () => netlinkSource(socket), sizes, RUNS);
    // With the probe, an event's time is the `ip` process's own sendmsg: "kernel event → drop
    // done" then runs from the command's request, without the cost of starting `ip`.
    await bench('bpf+nl', () => merge(bpfSource(() => openLockdropProbes()), netlinkSource(socket)), sizes, RUNS);
    socket.close();
  } else {
    console.log(`netlink: skipped (${addon.reason})`);
  }
  await bench(`poll ${POLL_MS / 1000}s`, () => pollSource({ intervalMs: POLL_MS }), sizes, Math.max(3, Math.floor(RUNS / 3)));
  process.exit(0);
}

void main();
