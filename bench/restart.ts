// A planned restart at scale: one lockdropd holding N locks on N files (one open description
// each) over a real export, a client locking and unlocking throughout, then `lockdropctl restart`.
// Measured: the whole restart as lockdropctl sees it, the old process's hand-over and the new
// one's rebuild (from their log lines), and the pause the client saw (its LOCK+UNLOCK latency
// before and during).
//
//   npm run build && npx tsx bench/restart.ts [--locks 2000] [--runs 3]
//
// Run as root (the export's handles need CAP_DAC_READ_SEARCH); the export is a folder under /tmp,
// the daemon listens on loopback only (ephemeral ports, rpcbind off).
import { execFileSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { NlmClient } from '../src/nlm';
import type { StatusReport } from '../src/control';
import { LOCKDROPCTL, daemonDir, spawnDaemon, type DaemonProcess, type LogLine } from '../test/daemon/harness';
import { knfsdHandle, makeFile } from '../test/files/support';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const LOCKS = arg('locks', 2000);
const RUNS = arg('runs', 3);
const FSID = 51;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;

async function run(): Promise<{ total: number; old: number; handOver: number; rebuild: number; newStart: number; before: number[]; during: number[]; refused: number }> {
  const dir = daemonDir();
  const exportDir = `${dir}/export`;
  execFileSync('mkdir', ['-p', exportDir]);
  const d: DaemonProcess = spawnDaemon(['--log-level', 'info'], { dir, config: { exports: [{ path: exportDir, fsid: FSID, secure: false, rootSquash: false }], maxOpenFiles: LOCKS + 100 } });
  const port = (await d.started()).nlmPort as number;
  const c = await NlmClient.create({ server: { address: '127.0.0.1', port }, transport: 'tcp', vers: 4, callerName: 'bench-holder' });
  const fhs = Array.from({ length: LOCKS }, (_, i) => knfsdHandle(makeFile(exportDir, `f${i}`, 16), FSID));
  for (let i = 0; i < LOCKS; i += 64) await Promise.all(fhs.slice(i, i + 64).map((fh, j) => c.lock({ fh, svid: i + j, exclusive: true, offset: 0n, length: 1n })));
  const load = await NlmClient.create({ server: { address: '127.0.0.1', port }, transport: 'udp', vers: 4, callerName: 'bench-load', timeoutMs: 10_000 });
  const loadFh = knfsdHandle(makeFile(exportDir, 'load', 16), FSID);
  const lat: { at: number; ms: number }[] = [];
  let refused = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const t0 = performance.now();
      for (;;) {
        try {
          const r = await load.lock({ fh: loadFh, svid: 1, exclusive: true, offset: 0n, length: 1n });
          if (r.status !== 'granted') refused++;
          await load.unlock({ fh: loadFh, svid: 1, offset: 0n, length: 1n });
          break;
        } catch {
          await sleep(10); // port unreachable while the sockets change hands: a client retries
        }
      }
      lat.push({ at: t0, ms: performance.now() - t0 });
    }
  })();
  await sleep(500);
  const t0 = performance.now();
  const out = JSON.parse(execFileSync(process.execPath, [LOCKDROPCTL, 'restart', '--json', '--control', d.control], { encoding: 'utf8' })) as { pid: number; ms: number; locks: number };
  const t1 = performance.now();
  await sleep(500);
  running = false;
  await loop;
  const s = JSON.parse(execFileSync(process.execPath, [LOCKDROPCTL, 'status', '--json', '--control', d.control], { encoding: 'utf8' })) as StatusReport;
  if (s.locks < LOCKS) throw new Error(`only ${s.locks} of ${LOCKS} locks after the restart`);
  const line = (re: RegExp): LogLine => {
    const l = d.logs.find((x) => re.test(x.msg));
    if (!l) throw new Error(`no log line ${re}`);
    return l;
  };
  const handed = line(/^planned restart: lockdropd\[\d+\] holds/);
  const taken = line(/^planned restart: \d+ locks and \d+ shares .* taken back/);
  const begun = line(/^planned restart: handing every lock over/);
  const started = d.logs.filter((x) => / started: /.test(x.msg)).at(-1)!;
  const ms = (a: LogLine, b: LogLine): number => Date.parse(String(b.time)) - Date.parse(String(a.time));
  await c.close();
  await load.close();
  try {
    process.kill(out.pid, 'SIGTERM');
  } catch {
    /* gone */
  }
  await sleep(1000);
  execFileSync('rm', ['-rf', dir]);
  return {
    total: t1 - t0,
    handOver: ms(begun, taken),
    rebuild: Number(taken.ms),
    newStart: ms(begun, started),
    old: Number(handed.ms),
    before: lat.filter((x) => x.at + x.ms < t0).map((x) => x.ms),
    during: lat.filter((x) => x.at >= t0 - 2000 && x.at <= t1).map((x) => x.ms),
    refused,
  };
}

async function main(): Promise<void> {
  process.stdout.write(`restart of a lockdropd holding ${LOCKS} locks on ${LOCKS} files; load ${loadavg().map((x) => x.toFixed(1)).join(' ')}\n`);
  for (let i = 0; i < RUNS; i++) {
    const r = await run();
    process.stdout.write(
      `run ${i + 1}: lockdropctl restart ${r.total.toFixed(0)} ms; old's first hand-over line → new's table rebuilt ${r.handOver} ms (rebuild itself ${r.rebuild} ms) → new ready ${r.newStart} ms (the old one's whole hand-over, its wait included: ${r.old} ms); ` +
        `client LOCK+UNLOCK p50/p99/max before ${pct(r.before, 50).toFixed(1)}/${pct(r.before, 99).toFixed(1)}/${Math.max(...r.before).toFixed(0)} ms, around the restart max ${Math.max(...r.during).toFixed(0)} ms; refusals ${r.refused}\n`,
    );
  }
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
