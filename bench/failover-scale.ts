// The headline failover: client hosts hold locks through one floating address on node A (a real
// lockdropd); the address moves to node B (another lockdropd sharing that address's state folder,
// as shared storage would). Measured: the time until every host has had SM_NOTIFY and every lock
// is reclaimed on B, and what a client of another address on B sees meanwhile (any grace reply?
// how much added latency?).
//
//   npx tsx bench/failover-scale.ts [--hosts 1000] [--locks 100000] [--namespaces 4] [--transport tcp|udp] [--runs 1] [--window 1] [--gap 0] [--clients c|node] [--profile DIR]
//
// Run as root after `npm run build` (the nodes run bin/lockdropd, i.e. dist/). The lab is
// src/demo's: one bridge, one namespace per machine with its own rpcbind:
//   node a 10.77.0.1, holding VIP 10.77.0.100 at first; node b 10.77.0.2, holding STAY 10.77.0.101;
//   the probe 10.77.0.9, a client of STAY; client namespace k at 10.77.0.(10+k), carrying its
//   hosts' addresses 10.78.k.1… (routed to it from the nodes, so their neighbour tables hold one
//   entry per namespace, not one per host).
// Each client namespace runs one Node process playing all its hosts (src/demo/scale-hosts.ts, from
// dist/): per host a statd (SM_NOTIFY on the host's own address, registered with the namespace's
// rpcbind), an NlmClient bound to the host's address, and the reclaim a kernel client's lockd makes
// after SM_NOTIFY: one lock at a time, each with the reclaim flag and the new state. With `--clients c`
// (the default; TCP, window 1) the reclaims themselves are bench/nlm-reclaim.c's, one per namespace,
// built here with gcc: calls encoded once, xid and state patched, so the clients take little of the
// CPU the server is measured on; `--clients node` reclaims through NlmClient. 1,000 namespaces would fit the kernel, but
// 1,000 processes (30–50 MB of Node each) do not fit this 2-core machine; 1,000 hosts are four
// processes of 250 hosts by default. Everything is removed at the end, also on error or Ctrl-C.
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { JsonLines, Lab, type LabHost } from '../src/demo/lab';
import { wallMs as now, type ScaleHostsConfig, type ScaleProbeConfig } from '../src/demo/scale-hosts';
import type { TransportKind } from '../src/rpc';
import type { StatusReport } from '../src/control';

type Json = Record<string, any>;

const VIP = '10.77.0.100';
const STAY = '10.77.0.101';
const REPO = path.resolve(__dirname, '..');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---- the driver ----

interface Options {
  hosts: number;
  locks: number;
  namespaces: number;
  transport: TransportKind;
  runs: number;
  /** Milliseconds between the removal on a and the addition on b (a cluster agent's stop, then start). */
  gap: number;
  /** Reclaims in flight per host (1: one at a time, as Linux's lockd). */
  window: number;
  /** A folder for CPU profiles of both nodes and the client processes (--cpu-prof). */
  profile: string;
  /** Who makes the reclaims: bench/nlm-reclaim.c (c) or NlmClient in the hosts' node process. */
  clients: 'c' | 'node';
}

function options(argv: string[]): Options {
  const o: Options = { hosts: 1000, locks: 100_000, namespaces: 4, transport: 'tcp', runs: 1, window: 1, gap: 0, profile: '', clients: 'c' };
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i]!.replace(/^--/, ''), argv[i + 1]];
    if (!(k in o) || v === undefined) throw new Error(`usage: failover-scale.ts [--hosts N] [--locks N] [--namespaces N] [--transport tcp|udp] [--runs N] [--window N] [--gap MS] [--clients c|node] [--profile DIR] (bad: ${argv[i]})`);
    (o as unknown as Record<string, unknown>)[k] = k === 'transport' || k === 'profile' || k === 'clients' ? v : Number(v);
  }
  if (o.transport !== 'tcp' && o.transport !== 'udp') throw new Error('--transport is tcp or udp');
  if (o.clients !== 'c' && o.clients !== 'node') throw new Error('--clients is c or node');
  if (o.clients === 'c' && (o.transport !== 'tcp' || o.window !== 1)) o.clients = 'node';
  if (o.locks % o.hosts !== 0) throw new Error('--locks must be a multiple of --hosts');
  if (Math.ceil(o.hosts / o.namespaces) > 250) throw new Error('at most 250 hosts per namespace: add --namespaces');
  return o;
}

/** dist/ must be the current code: the nodes run the compiled daemon. */
function checkBuilt(): void {
  const newest = (dir: string): number => readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .reduce((m, e) => Math.max(m, statSync(path.join(e.parentPath, e.name)).mtimeMs), 0);
  if (statSync(path.join(REPO, 'dist', 'cli', 'lockdropd.js')).mtimeMs < newest(path.join(REPO, 'src'))) {
    throw new Error('dist/ is older than src/: run npm run build first');
  }
}

/** TCP counters of a lab host's namespace (nstat, absolute): a full accept queue, retransmissions. */
function tcpCounters(lab: Lab, host: LabHost): Record<string, number> {
  const names = ['TcpExtListenOverflows', 'TcpExtListenDrops', 'TcpRetransSegs', 'TcpExtTCPSynRetrans'];
  const out = lab.exec(host, 'nstat', ['-az', ...names]);
  return Object.fromEntries(names.map((n) => [n, Number(new RegExp(`^${n}\\s+(\\d+)`, 'm').exec(out)?.[1] ?? NaN)]));
}

/** CPU milliseconds a process has used (user + system, or system only: the kernel's share, from /proc). */
function cpuMs(pid: number | undefined, only?: 'system'): number {
  if (pid === undefined) return NaN;
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((only ? 0 : Number(f[11])) + Number(f[12])) * 10;
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(s.length * p))]! : NaN;
};
const f1 = (x: number): string => x.toFixed(1);

async function runOnce(o: Options, run: number): Promise<Json> {
  const lab = new Lab(`ldfs${process.pid % 100}${run}`);
  const work = mkdtempSync(path.join(tmpdir(), 'lockdrop-scale-'));
  const stop = (): void => void lab.dispose().then(() => process.exit(130));
  process.once('SIGINT', stop).once('SIGTERM', stop);
  const log = (s: string): void => console.log(`  ${s}`);
  try {
    const t0 = now();
    await lab.start();
    const a = await lab.addHost('a', 1);
    const b = await lab.addHost('b', 2);
    const probeHost = await lab.addHost('p', 9);
    const spaces: LabHost[] = [];
    for (let k = 0; k < o.namespaces; k++) spaces.push(await lab.addHost(`c${k}`, 10 + k));
    const perNs = Math.ceil(o.hosts / o.namespaces);
    const hostAddrs = spaces.map((_, k) => Array.from({ length: Math.min(perNs, o.hosts - k * perNs) }, (_, i) => `10.78.${k}.${i + 1}`));
    for (const [k, ns] of spaces.entries()) {
      const batch = path.join(work, `addrs-${k}`);
      writeFileSync(batch, hostAddrs[k]!.map((x) => `addr add ${x}/32 dev eth0`).join('\n') + '\n');
      lab.exec(ns, 'ip', ['-batch', batch]);
      for (const node of [a, b]) lab.exec(node, 'ip', ['route', 'add', `10.78.${k}.0/24`, 'via', ns.address]);
    }
    lab.exec(a, 'ip', ['addr', 'add', `${VIP}/24`, 'dev', 'eth0']);
    lab.exec(b, 'ip', ['addr', 'add', `${STAY}/24`, 'dev', 'eth0']);
    log(`lab: 2 nodes, the probe and ${o.namespaces} client namespaces with ${o.hosts} host addresses, ${f1((now() - t0) / 1000)} s`);

    // The moving address's NSM folder is on "shared storage": both nodes see the same one.
    const shared = path.join(work, 'shared', VIP);
    mkdirSync(shared, { recursive: true });
    const nodes = new Map<string, { host: LabHost; control: string; log: JsonLines; child: ChildProcess }>();
    for (const host of [a, b]) {
      const dir = path.join(work, host.name);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      symlinkSync(shared, path.join(dir, VIP));
      const d = lab.startDaemon(host, dir, {
        grace: 120, addresses: [`${VIP}/32`, `${STAY}/32`], sources: ['netlink', 'poll'], pollInterval: 1,
        notify: { timeout: 60, concurrency: 1024 }, connections: { max: 8192, perPeer: 64 }, logLevel: 'info',
      }, undefined, (line) => log(`${host.name}! ${line}`), undefined, o.profile ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(o.profile)}`] : []);
      nodes.set(host.name, { host, ...d });
    }
    for (const { host, control } of nodes.values()) await lab.waitForControl(host, control);
    const [A, B] = [nodes.get('a')!, nodes.get('b')!];

    const start = (host: LabHost, role: 'hosts' | 'probe', config: ScaleHostsConfig | ScaleProbeConfig): JsonLines => {
      const child = lab.spawn(host, process.execPath, [...(o.profile ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(o.profile)}`] : []), path.join(REPO, 'dist', 'demo', 'scale-hosts.js'), role, JSON.stringify(config)]);
      createInterface({ input: child.stderr! }).on('line', (line) => log(`${host.name}! ${line}`));
      return new JsonLines(child, (j) => j.event === 'error' && log(`${host.name}: ${j.what}: ${j.error}`));
    };
    const reclaimer = o.clients === 'c' ? path.join(work, 'nlm-reclaim') : undefined;
    if (reclaimer) execFileSync('gcc', ['-O2', '-o', reclaimer, path.join(__dirname, 'nlm-reclaim.c')]);
    const perHost = o.locks / o.hosts;
    let first = 0;
    const clients = spaces.map((ns, k) => {
      const names = hostAddrs[k]!.map((_, i) => `host${first + i}`);
      first += names.length;
      return start(ns, 'hosts', { server: VIP, addresses: hostAddrs[k]!, names, transport: o.transport, locksPerHost: perHost, window: o.window, reclaimer });
    });
    // The client processes' pids, each host process's reclaimer among them: their CPU is the clients'.
    const clientPids = (await Promise.all(clients.map((c) => c.wait('hosts ready', (j) => j.event === 'ready', 60_000))))
      .flatMap((j, k) => [clients[k]!.child.pid, ...(typeof j.reclaimerPid === 'number' ? [j.reclaimerPid as number] : [])]);

    const tLock = now();
    for (const c of clients) c.send({ do: 'lock' });
    const locked = await Promise.all(clients.map((c) => c.wait('locks taken', (j) => j.event === 'locked', 600_000)));
    const lockStatuses = locked.reduce<Record<string, number>>((acc, j) => {
      for (const [k, v] of Object.entries(j.statuses as Record<string, number>)) acc[k] = (acc[k] ?? 0) + v;
      return acc;
    }, {});
    const at = (node: { host: LabHost; control: string }, address: string) =>
      lab.ctl<StatusReport>(node.host, node.control, ['status']).addresses.find((x) => x.address === address);
    const held = (node: { host: LabHost; control: string }, address: string): number => at(node, address)?.locks ?? 0;
    log(`${o.hosts} hosts took ${JSON.stringify(lockStatuses)} through ${VIP} on a in ${f1((now() - tLock) / 1000)} s; a holds ${held(A, VIP)}`);
    if ((lockStatuses.granted ?? 0) !== o.locks || held(A, VIP) !== o.locks) throw new Error('not every lock was granted on a');
    // Every host is monitored (a's records, in the shared folder) before the address moves.
    for (let i = 0; ; i++) {
      const n = at(A, VIP)?.monitors ?? 0;
      if (n >= o.hosts) break;
      if (i > 100) throw new Error(`a monitors only ${n} hosts`);
      await sleep(100);
    }

    const probe = start(probeHost, 'probe', { server: STAY, address: probeHost.address, transport: o.transport });
    await probe.wait('probe ready', (j) => j.event === 'ready', 60_000);
    await sleep(2_000); // the baseline

    const cpu0 = { b: cpuMs(B.child.pid), bSystem: cpuMs(B.child.pid, 'system'), clients: clientPids.map((pid) => cpuMs(pid)) };
    // CPU over time (USER_HZ ticks, read every 25 ms): what the reclaims alone cost, from the first
    // host's notice to the last reclaim, apart from b's arrival before them.
    const cpuAt: { at: number; b: number; bSystem: number; clients: number }[] = [];
    const sampleCpu = (): void => void cpuAt.push({ at: now(), b: cpuMs(B.child.pid), bSystem: cpuMs(B.child.pid, 'system'), clients: clientPids.reduce<number>((n, pid) => n + cpuMs(pid), 0) });
    const sampler = setInterval(sampleCpu, 25);
    const aMark = A.log.count;
    const bMark = B.log.count;
    const loadAtMove = loadavg()[0]!;
    const tDel = now();
    lab.exec(a, 'ip', ['addr', 'del', `${VIP}/24`, 'dev', 'eth0']);
    if (o.gap > 0) await sleep(o.gap);
    const tAdd = now();
    lab.exec(b, 'ip', ['addr', 'add', `${VIP}/24`, 'dev', 'eth0']);
    const tAdded = now();
    const reclaimed = await Promise.all(clients.map((c) => c.wait('reclaims', (j) => j.event === 'reclaimed', 120_000)));
    const tDone = now();
    clearInterval(sampler);
    sampleCpu();
    const cpu = { b: cpuMs(B.child.pid) - cpu0.b, bSystem: cpuMs(B.child.pid, 'system') - cpu0.bSystem, clients: clientPids.reduce<number>((n, pid, i) => n + cpuMs(pid) - cpu0.clients[i]!, 0) };
    // b's namespace is this run's: its counters since creation are the reclaim's (connections went to a before).
    const tcpOnB = tcpCounters(lab, b);
    await sleep(500);
    probe.send({ do: 'stop' });
    const samples = (await probe.wait('probe samples', (j) => j.event === 'samples', 30_000).catch((err: Error) => {
      throw new Error(`${err.message} (probe exit ${probe.child.exitCode} ${probe.child.signalCode}, ${probe.count} lines)`);
    })).samples as { at: number; ms: number; status: string }[];

    const drop = await A.log.wait('the drop on a', (j) => j.address === VIP && typeof j.locks === 'number' && typeof j.ms === 'number', 10_000, aMark);
    const arrived = await B.log.wait('the arrival on b', (j) => j.address === VIP && typeof j.monitors === 'number', 10_000, bMark);
    const notifyDone = await B.log.wait('the notify run on b', (j) => j.address === VIP && typeof j.notified === 'number', 60_000, bMark);
    // b may find a's lease on the address still held (a lets go once its drop is done) and wait for it.
    const leaseHeld = await B.log.wait('', (j) => j.address === VIP && typeof j.holder === 'string' && typeof j.leaseSeconds === 'number', 0, bMark).catch(() => undefined);
    const leaseTaken = leaseHeld && (await B.log.wait('', (j) => j.address === VIP && typeof j.holder === 'string' && /taken over/.test(j.msg), 0, bMark).catch(() => undefined));
    const leaseWaitMs = leaseHeld && leaseTaken ? Date.parse(leaseTaken.time) - Date.parse(leaseHeld.time) : 0;
    // a lets go of the lease as its drop is reported: b's takeover after that, and its arrival after the takeover.
    const takeover = leaseTaken ? { afterReleaseMs: Date.parse(leaseTaken.time) - Date.parse(drop.time), toArrivalMs: Date.parse(arrived.time) - Date.parse(leaseTaken.time) } : undefined;
    const hosts = reclaimed.flatMap((j) => j.hosts as { notifiedAt: number; doneAt: number; granted: number; refused: Record<string, number> }[]);
    const granted = hosts.reduce((n, h) => n + h.granted, 0);
    const refused = hosts.reduce<Record<string, number>>((acc, h) => {
      for (const [k, v] of Object.entries(h.refused)) acc[k] = (acc[k] ?? 0) + v;
      return acc;
    }, {});
    const onB = held(B, VIP);
    const onA = held(A, VIP);
    const notified = hosts.map((h) => h.notifiedAt - tAdd);
    const firstNotice = Math.min(...hosts.map((h) => h.notifiedAt));
    const fromNotice = cpuAt.find((x) => x.at >= firstNotice) ?? cpuAt[cpuAt.length - 1]!;
    const last = cpuAt[cpuAt.length - 1]!;
    const storm = { ms: last.at - fromNotice.at, b: last.b - fromNotice.b, bSystem: last.bSystem - fromNotice.bSystem, clients: last.clients - fromNotice.clients };
    // b's CPU from the removal on a until b serves the address (its arrival: lease, take-over, monitors).
    const atArrival = cpuAt.find((x) => x.at >= Date.parse(arrived.time)) ?? last;
    const arrival = { b: atArrival.b - cpu0.b, bSystem: atArrival.bSystem - cpu0.bSystem };
    const done = hosts.map((h) => h.doneAt - tAdd);
    const perHostMs = hosts.map((h) => h.doneAt - h.notifiedAt);
    const base = samples.filter((s) => s.at < tDel).map((s) => s.ms);
    // From when b serves the address (after any lease wait, which leaves b idle) to the last reclaim.
    const busyFrom = Date.parse(arrived.time);
    const during = samples.filter((s) => s.at >= busyFrom && s.at <= tDone);
    const notGranted = samples.filter((s) => s.status !== 'granted');
    const result = {
      run, transport: o.transport, window: o.window, clients: o.clients, gap: o.gap, hosts: hosts.length, locks: o.locks, namespaces: o.namespaces,
      ipDelMs: tAdd - tDel, ipAddMs: tAdded - tAdd, dropOnA: { locks: drop.locks, ms: drop.ms },
      arrivedOnB: { afterAddMs: Date.parse(arrived.time) - tAdd, monitors: arrived.monitors, leaseWaitMs, takeover, stepsMs: arrived.stepsMs },
      notifyDoneOnB: { afterAddMs: Date.parse(notifyDone.time) - tAdd, notified: notifyDone.notified, failed: notifyDone.failed },
      notifiedMs: { first: Math.min(...notified), p50: pct(notified, 0.5), last: Math.max(...notified) },
      reclaimedMs: { p50: pct(done, 0.5), last: Math.max(...done), perHost: { p50: pct(perHostMs, 0.5), p99: pct(perHostMs, 0.99), max: Math.max(...perHostMs) } },
      everyLockReclaimedMs: tDone - tAdd, fromRemovalMs: tDone - tDel,
      granted, refused, heldOnB: onB, heldOnA: onA, load: [loadAtMove, loadavg()[0]],
      cpuMs: { b: cpu.b, bSystem: cpu.bSystem, clients: cpu.clients, arrival, storm }, tcpOnB,
      probe: {
        baseline: { n: base.length, p50: pct(base, 0.5), p99: pct(base, 0.99), max: Math.max(...base) },
        during: { n: during.length, p50: pct(during.map((s) => s.ms), 0.5), p99: pct(during.map((s) => s.ms), 0.99), max: Math.max(...during.map((s) => s.ms)) },
        notGranted: notGranted.map((s) => s.status),
      },
    };
    log(`moved: ip addr del on a ${f1(result.ipDelMs)} ms, ip addr add on b ${f1(result.ipAddMs)} ms; a dropped ${drop.locks} locks in ${f1(drop.ms)} ms`);
    log(`b: ${VIP} up (lease, listeners, records, state) ${f1(result.arrivedOnB.afterAddMs)} ms after ip addr add began` +
      `${leaseWaitMs ? `, ${f1(leaseWaitMs)} ms of it waiting for a's lease` : ''}` +
      `${takeover ? ` (taken ${takeover.afterReleaseMs} ms after a's drop, which releases it; serving ${takeover.toArrivalMs} ms after that)` : ''}, notifying ${arrived.monitors} hosts (its steps, ms: ${JSON.stringify(arrived.stepsMs ?? {})}); ` +
      `every host answered SM_NOTIFY by ${f1(result.notifyDoneOnB.afterAddMs)} ms (${notifyDone.notified} answered, ${notifyDone.failed} failed)`);
    log(`SM_NOTIFY at the hosts: first ${f1(result.notifiedMs.first)} ms, median ${f1(result.notifiedMs.p50)} ms, last ${f1(result.notifiedMs.last)} ms`);
    log(`reclaims done: median host ${f1(result.reclaimedMs.p50)} ms, last ${f1(result.reclaimedMs.last)} ms (a host's, from its notice: p50 ${f1(result.reclaimedMs.perHost.p50)} / p99 ${f1(result.reclaimedMs.perHost.p99)} / max ${f1(result.reclaimedMs.perHost.max)} ms); ${granted} granted ${JSON.stringify(refused)}; b holds ${onB}, a ${onA} through ${VIP}`);
    log(`CPU of b from the removal until it serves ${VIP}: ${arrival.b.toFixed(0)} ms (${arrival.bSystem.toFixed(0)} of it in the kernel; /proc's 10 ms ticks, sampled every 25 ms)`);
    log(`CPU from the removal until the last reclaim: b ${cpu.b.toFixed(0)} ms (${((cpu.b * 1000) / o.locks).toFixed(1)} µs per reclaimed lock, ${((cpu.bSystem * 1000) / o.locks).toFixed(1)} of it in the kernel), the client processes ${cpu.clients.toFixed(0)} ms`);
    log(`CPU from the first host's notice until the last reclaim (${f1(storm.ms)} ms): b ${storm.b.toFixed(0)} ms (${((storm.b * 1000) / o.locks).toFixed(1)} µs per reclaim, ${((storm.bSystem * 1000) / o.locks).toFixed(1)} of it in the kernel), the client processes ${storm.clients.toFixed(0)} ms (${((storm.clients * 1000) / o.locks).toFixed(1)} µs per reclaim)`);
    log(`every lock reclaimed ${f1(result.everyLockReclaimedMs)} ms after ip addr add began (${f1(result.fromRemovalMs)} ms after the removal on a)`);
    log(`load average (1 min) ${loadAtMove.toFixed(1)} at the move, ${loadavg()[0]!.toFixed(1)} after the reclaims (the machine's other sessions included)`);
    log(`TCP on b: ${Object.entries(tcpOnB).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    log(`probe on ${STAY} (while b serves ${VIP} until the last reclaim): baseline p50 ${result.probe.baseline.p50.toFixed(2)} / p99 ${result.probe.baseline.p99.toFixed(2)} ms (n=${base.length}); ` +
      `during p50 ${result.probe.during.p50.toFixed(2)} / p99 ${result.probe.during.p99.toFixed(2)} / max ${result.probe.during.max.toFixed(2)} ms (n=${during.length}); ` +
      `refusals ${notGranted.length ? JSON.stringify(notGranted.map((s) => s.status)) : 'none'}`);
    for (const c of clients) c.send({ do: 'quit' });
    // Stopped, not killed: a profile is written at exit.
    await Promise.all([A, B].map((n) => new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 10_000);
      n.child.once('exit', () => { clearTimeout(t); resolve(); });
      n.child.kill('SIGTERM');
    })));
    return result;
  } finally {
    process.off('SIGINT', stop).off('SIGTERM', stop);
    await lab.dispose();
    rmSync(work, { recursive: true, force: true });
    const left = lab.leftovers();
    if (left.length) console.log(`  left behind: ${left.join(', ')}`);
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root: the bench builds network namespaces');
  checkBuilt();
  const o = options(process.argv.slice(2));
  console.log(`failover at scale: ${o.hosts} hosts, ${o.locks} locks through ${VIP}, ${o.namespaces} client namespaces, NLM v4 over ${o.transport}, ` +
    `${o.window} reclaim${o.window > 1 ? 's' : ''} in flight per host (${o.clients === 'c' ? 'bench/nlm-reclaim.c' : 'NlmClient'}), ${o.gap} ms from the removal on a to the addition on b, node ${process.version}`);
  const results = [];
  for (let run = 1; run <= o.runs; run++) results.push(await runOnce(o, run));
  console.log(JSON.stringify(results));
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
