// The chaos test of issue 19: lockdropd nodes over one shared state directory, floating
// addresses moved under them (ip addr, resource-agents' IPaddr2, two at once, back to the same
// node), lockdropd killed -9 and started again, NFS client hosts and local processes contending
// for a few ranges of a few real files — and the checker's verdict over everything they saw.
// `npm run chaos -- --duration S --seed N [--nodes 2|3] [--clients 16] …` (see README.md here);
// chaos.test.ts runs a short one inside `npm test`.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { ChildProcess } from 'node:child_process';
import type { LockView, StatusReport } from '../../src/control';
import { request } from '../../src/cli/client';
import { knfsdHandle } from '../../src/exports';
import { Lab, JsonLines, type LabHost } from '../../src/demo/lab';
import { IPADDR2, narrateDaemon } from '../../src/demo/stage';
import { ensureBuilt } from '../daemon/harness';
import { EtcdCluster } from '../store/etcd-cluster';
import { mountTmpfs, OutsideLocker } from '../support/files';
import { nameToHandle } from '../support/name-to-handle';
import { check, compareViews, conflictsWithin, describe, describeLoss, holdsAsRanges, parseKernelLocks, windowStats, type ChaosEvent, type CheckReport, type Hold, type OwnedRange, type RangeLock, type Violation, type Window } from './checker';
import { now, Sleeps, type ClientsConfig } from './clients';
import { chaosSchedule, initialNode, localIntents, type Action, type Tool } from './schedule';

export interface ChaosOptions {
  seed: number;
  durationS: number;
  nodes: number;
  clients: number;
  vips: number;
  /** Concurrent lock sequences per client host. */
  lanes: number;
  /** Local processes on the nodes' side (POSIX and OFD locks on the same files). */
  locals: number;
  files: number;
  /** lockdropd's grace per arriving address, and its holder lease, seconds. */
  grace: number;
  lease: number;
  /** Every event, one JSON line each, to this file. */
  log?: string;
  /** The cluster's state: one shared state directory (default), or a three-member etcd (each node a private state directory). */
  store?: 'dir' | 'etcd';
  print?: (line: string) => void;
  prefix?: string;
}

export const DEFAULTS: Omit<ChaosOptions, 'seed'> = { durationS: 60, nodes: 2, clients: 16, vips: 2, lanes: 2, locals: 2, files: 3, grace: 5, lease: 3 };

export interface ChaosResult {
  seed: number;
  counts: CheckReport['counts'] & { moves: number; kills: number; violations: number };
  violations: Violation[];
  /** One line per violation. */
  lines: string[];
  /** One line per window loss (a local process's grant in an address's window: measured, not a violation). */
  losses: string[];
  /** The schedule's digest: the same seed and options give the same one. */
  schedule: string;
  leftovers: string[];
}

const SUBNET = '10.91.0';
const FSID = 19;
const NLM_PORT = 4045;
const NSM_PORT = 4046;
const CALLBACK_PORT = 4047;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * CLOCK_REALTIME minus CLOCK_MONOTONIC in µs, read at the turn of a millisecond of Date.now() so the
 * ms-truncated wall clock costs no precision: daemon log lines carry the wall clock (pino's `time`).
 */
function realtimeOffset(): number {
  const ms = Date.now();
  let t = Date.now();
  while (t === ms) t = Date.now();
  return t * 1000 - now();
}

/** What a daemon's log line tells the checker: an address's locks dropped, protected on arrival, or a moved lock it could not hold. */
const DROPPED = /^(\S+) removed.*: dropped /;
const ARRIVED = /^(\S+) arrived: grace /;
const HELD = /^(\S+): \d+ locks? of \d+ hosts? held for reclaim$/;

interface Node {
  index: number;
  host: LabHost;
  dir: string;
  control: string;
  child: ChildProcess;
  log: JsonLines;
  alive: boolean;
  pid: number;
}

/** Runs a command on a lab host without blocking the event loop (the clocks of the local processes run here). */
function runOn(lab: Lab, host: LabHost, cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
  const child = lab.spawn(host, cmd, args, env ? { env } : {});
  child.stdin!.end();
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} on ${host.name}: exit ${code}: ${err.trim()}`)))));
}

const ocfEnv = (vip: string, k: number, host: LabHost): NodeJS.ProcessEnv =>
  ({ ...process.env, OCF_ROOT: '/usr/lib/ocf', OCF_RESOURCE_INSTANCE: `vip${k}`, OCF_RESKEY_ip: vip, OCF_RESKEY_cidr_netmask: '24', OCF_RESKEY_nic: host.nic });

/** Adds or removes a floating address on a host, with `ip addr` or IPaddr2. */
function addressOp(lab: Lab, host: LabHost, vip: string, k: number, op: 'start' | 'stop', tool: Tool): Promise<string> {
  return tool === 'ipaddr2'
    ? runOn(lab, host, IPADDR2, [op], ocfEnv(vip, k, host))
    : runOn(lab, host, 'ip', ['addr', op === 'start' ? 'add' : 'del', `${vip}/24`, 'dev', host.nic]);
}

export async function runChaos(o: ChaosOptions): Promise<ChaosResult> {
  const print = o.print ?? ((l: string) => void process.stdout.write(`${l}\n`));
  const opts = `--seed ${o.seed} --duration ${o.durationS} --nodes ${o.nodes} --clients ${o.clients} --vips ${o.vips} --lanes ${o.lanes} --locals ${o.locals}${o.store === 'etcd' ? ' --store etcd' : ''}`;
  print(`chaos: seed ${o.seed} (replay: npm run chaos -- ${opts})`);
  if (process.getuid?.() !== 0 || process.env.LOCKDROP_TEST_NS !== '1') throw new Error('the chaos test builds network namespaces: run it as root through npm run chaos (or scripts/mocha-ns.sh)');
  if (o.nodes < 2 || o.vips < 1 || o.clients < 1) throw new Error('needs --nodes ≥ 2, --vips ≥ 1, --clients ≥ 1');
  ensureBuilt();
  const durationMs = o.durationS * 1000;
  const schedule = chaosSchedule({ seed: o.seed, durationMs, nodes: o.nodes, vips: o.vips });
  const digest = createHash('sha256').update(JSON.stringify(schedule)).digest('hex').slice(0, 12);
  const vips = Array.from({ length: o.vips }, (_, k) => `${SUBNET}.${200 + k}`);
  print(`chaos: ${schedule.filter((a) => a.kind === 'move').length} moves and ${schedule.filter((a) => a.kind === 'kill').length} kills scheduled over ${o.durationS} s (schedule ${digest}); ${o.nodes} nodes, addresses ${vips.join(', ')}, ${o.clients} client hosts × ${o.lanes} lanes, ${o.locals} local processes, ${o.files} files`);

  const events: ChaosEvent[] = [];
  const logFile = o.log;
  if (logFile) writeFileSync(logFile, '');
  const record = (e: ChaosEvent): void => {
    events.push(e);
    if (logFile) writeFileSync(logFile, `${JSON.stringify(e)}\n`, { flag: 'a' });
  };
  let t0 = now();
  const offset = realtimeOffset();
  const say = (s: string): void => print(`[${((now() - t0) / 1e6).toFixed(1).padStart(6)}s] ${s}`);
  const stateViolations: Violation[] = [];
  let ending = false;
  const stateProblem = (what: string): void => {
    stateViolations.push({ kind: 'state', what });
    say(`VIOLATION: ${what}`);
  };

  // The exported files first: the lab hosts' mount namespaces are copies taken when they start.
  const fs = mountTmpfs();
  const lab = new Lab(o.prefix ?? `ldc${process.pid % 1000}`, SUBNET);
  const work = mkdtempSync(path.join(tmpdir(), 'lockdrop-chaos-'));
  const lockers: OutsideLocker[] = [];
  let clients: JsonLines | undefined;
  let etcd: EtcdCluster | undefined;
  const interrupted = (): void => void cleanup().then(() => process.exit(130));
  const cleanup = async (): Promise<string[]> => {
    ending = true;
    clients?.child.kill('SIGKILL');
    await Promise.all(lockers.map((l) => l.stop()));
    await lab.dispose(); // the daemons first: etcd gone under them is a refusal in every log
    await etcd?.stop();
    rmSync(work, { recursive: true, force: true });
    try { fs.dispose(); } catch { /* busy only if something still holds a file: the namespace's end unmounts it */ }
    return lab.leftovers();
  };
  process.once('SIGINT', interrupted).once('SIGTERM', interrupted);
  try {
    const files = Array.from({ length: o.files }, (_, i) => {
      const p = path.join(fs.dir, `f${i}`);
      writeFileSync(p, Buffer.alloc(4096));
      return { name: `f${i}`, path: p, fh: knfsdHandle(FSID, nameToHandle(p)).toString('hex') };
    });
    const fileByFh = new Map(files.map((f) => [f.fh, f.name]));
    const fileByPath = new Map(files.map((f) => [f.path, f.name]));

    await lab.start();
    const nodeHosts: LabHost[] = [];
    for (let i = 0; i < o.nodes; i++) nodeHosts.push(await lab.addHost(`n${i + 1}`, i + 1));
    const clientHost = await lab.addHost('clients', 10);
    const hostSpecs = Array.from({ length: o.clients }, (_, i) => ({
      name: `c${String(i + 1).padStart(2, '0')}`, address: `${SUBNET}.${21 + i}`, via: vips[i % o.vips]!, transport: (Math.floor(i / o.vips) % 2 === 0 ? 'udp' : 'tcp') as 'udp' | 'tcp',
    }));
    for (const h of hostSpecs) lab.exec(clientHost, 'ip', ['addr', 'add', `${h.address}/24`, 'dev', clientHost.nic]);
    const placement = vips.map((_, k) => initialNode(k, o.nodes));
    vips.forEach((v, k) => lab.exec(nodeHosts[placement[k]!]!, 'ip', ['addr', 'add', `${v}/24`, 'dev', nodeHosts[placement[k]!]!.nic]));

    // One state directory for every node, as on shared storage; or etcd, each member on a lab host.
    const shared = path.join(work, 'shared');
    mkdirSync(shared);
    let store: { stateDir?: string; store?: { etcd: { endpoints: string[]; prefix: string } } } = { stateDir: shared };
    if (o.store === 'etcd') {
      const members = [await lab.addHost('e1', 241), await lab.addHost('e2', 242), await lab.addHost('e3', 243)];
      etcd = await EtcdCluster.start({ hosts: members.map((m) => m.address), wraps: members.map((m) => ['nsenter', '-t', String(m.anchorPid), '-n', '-m', '-u', '--']), basePort: 2379 });
      store = { store: { etcd: { endpoints: etcd.endpoints, prefix: '/lockdrop/chaos' } } };
      say(`etcd: three members on ${members.map((m) => m.address).join(', ')}; every node's state directory its own`);
    }
    const startDaemon = (index: number): Node => {
      const host = nodeHosts[index]!;
      const dir = path.join(work, host.name);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const d = lab.startDaemon(host, dir, {
        ...store, nlmPort: NLM_PORT, nsmPort: NSM_PORT, addresses: vips.map((v) => `${v}/32`), sources: ['netlink', 'poll'], pollInterval: 1,
        grace: o.grace, leaseSeconds: o.lease, notify: { timeout: 30 }, exports: [{ path: fs.dir, fsid: FSID, secure: false, rootSquash: false }],
      }, (j) => {
        // Its moment on the events' clock: the line's own wall-clock time (ms, truncated: rounded up),
        // never later than when the line reached us.
        const wall = typeof j.time === 'number' ? j.time : typeof j.time === 'string' ? Date.parse(j.time) : NaN;
        const t = (): number => (Number.isFinite(wall) ? Math.min(now(), wall * 1000 + 1000 - offset) : now());
        // Every daemon line in the log too, on the events' clock, to read a violation against.
        if (logFile) writeFileSync(logFile, `${JSON.stringify({ daemon: host.name, at: t(), ...j })}\n`, { flag: 'a' });
        const msg = String(j.msg);
        const arrival = ARRIVED.exec(msg) ?? HELD.exec(msg);
        if (arrival && vips.includes(arrival[1]!)) record({ t: t(), kind: 'protected', via: arrival[1]!, what: host.name });
        const drop = DROPPED.exec(msg);
        if (drop && vips.includes(drop[1]!)) record({ t: t(), kind: 'dropped', via: drop[1]!, what: host.name });
        if (HELD.test(msg)) say(`  ${host.name}│ ${msg}`);
        if (msg.includes('could not be held for reclaim') && typeof j.address === 'string') {
          record({ t: t(), kind: 'lost', via: j.address, owner: String(j.host), what: fileByFh.get(String(j.fh)) ?? String(j.fh), status: String(j.status) });
        }
        narrateDaemon(host.name, j, say);
        if ((j.level ?? 30) >= 50) say(`  ${host.name}! ${String(j.msg)}`);
      });
      const node: Node = { index, host, dir, control: d.control, child: d.child, log: d.log, alive: true, pid: d.child.pid ?? 0 };
      // Only the chaos kills lockdropd (and the lab's end): any other exit is a crash.
      d.child.once('exit', (code, signal) => {
        if (node.alive && !ending) stateProblem(`lockdropd on ${host.name} exited by itself (${code ?? signal})`);
      });
      return node;
    };
    const nodes = nodeHosts.map((_, i) => startDaemon(i));
    for (const n of nodes) await lab.waitForControl(n.host, n.control, 60_000);
    for (const n of nodes) n.pid = (await request<StatusReport>(n.control, { cmd: 'status' })).pid;
    say(`lockdropd runs on ${nodes.map((n) => `${n.host.name} (${n.host.address}, pid ${n.pid})`).join(', ')}; ${vips.map((v, k) => `${v} on ${nodeHosts[placement[k]!]!.name}`).join(', ')}`);

    // The client hosts: one process on one lab host, one clock (CLOCK_MONOTONIC, as here).
    const cfg: ClientsConfig = { seed: o.seed, hosts: hostSpecs, files: files.map(({ name, fh }) => ({ name, fh })), nlmPort: NLM_PORT, callbackPort: CALLBACK_PORT, lanes: o.lanes, timeoutMs: 2000 };
    const ctl: Record<string, unknown>[] = [];
    clients = new JsonLines(lab.spawn(clientHost, process.execPath, ['--require', require.resolve('tsx/cjs'), path.join(__dirname, 'clients.ts'), JSON.stringify(cfg)]), (j) => {
      if (typeof j.ctl === 'string') ctl.push(j);
      else record(j as ChaosEvent);
    });
    clients.child.stderr!.on('data', (d: Buffer) => say(`  clients! ${d.toString().trim()}`));
    const clientCtl = async (cmd: string, answer: string, timeoutMs = 30_000): Promise<Record<string, unknown>> => {
      const mark = clients!.count;
      if (cmd) clients!.send({ do: cmd });
      const j = await clients!.wait(answer, (x) => x.ctl === answer || x.ctl === 'error', timeoutMs, mark);
      if (j.ctl === 'error') throw new Error(`the client hosts failed: ${String(j.error)}`);
      return j;
    };
    await clientCtl('', 'ready', 60_000);
    t0 = now();
    say(`${o.clients} client hosts lock through ${vips.join(' and ')} (NLM v4, UDP and TCP): chaos for ${o.durationS} s`);

    // Local processes on the nodes' side: python3 fcntl, POSIX and OFD locks on the same files.
    let stopping = false;
    const sleeps = new Sleeps();
    const localWorker = async (name: string): Promise<void> => {
      const mine = await Promise.all(files.map((f) => OutsideLocker.start(f.path)));
      lockers.push(...mine);
      const next = localIntents(o.seed, name, files.length);
      const owner = `local:${name}`;
      while (!stopping) {
        const it = next();
        await sleeps.sleep(it.thinkMs);
        if (stopping) break;
        const lock: RangeLock = { file: files[it.file]!.name, offset: it.offset, length: it.length, exclusive: it.exclusive };
        record({ t: now(), kind: 'requested', owner, via: 'local', lock, op: it.kind });
        const sent = now();
        const answer = await mine[it.file]!.request(`${it.kind} ${it.exclusive ? 'w' : 'r'} ${it.offset} ${it.length}`);
        if (answer !== 'ok') {
          record({ t: now(), kind: answer === 'EAGAIN' || answer === 'EACCES' ? 'denied' : 'failed', owner, via: 'local', lock, sent, status: answer });
          continue;
        }
        record({ t: now(), kind: 'granted', owner, via: 'local', lock, sent, how: 'reply' });
        await sleeps.sleep(it.holdMs);
        record({ t: now(), kind: 'released', owner, via: 'local', lock });
        await mine[it.file]!.request(`${it.kind} u ${it.offset} ${it.length}`);
      }
    };
    const locals = Array.from({ length: o.locals }, (_, i) => localWorker(`p${i + 1}`));

    // The chaos: the schedule's actions at their times.
    const counts = { moves: 0, kills: 0 };
    const disrupt = (vip: string, op: 'move' | 'kill', what: string): void => record({ t: now(), kind: 'disrupt', via: vip, op, what });
    const restarts: Promise<void>[] = [];
    const act = async (a: Action): Promise<void> => {
      if (a.kind === 'move') {
        say(`move ${a.moves.map((m) => `${vips[m.vip]} ${nodeHosts[placement[m.vip]!]!.name}→${nodeHosts[m.to]!.name}`).join(' and ')} (${a.moves.map((m) => (m.tool === 'ipaddr2' ? 'IPaddr2' : 'ip addr')).join(', ')})`);
        await Promise.all(a.moves.map(async (m) => {
          const vip = vips[m.vip]!;
          const from = nodeHosts[placement[m.vip]!]!;
          const to = nodeHosts[m.to]!;
          disrupt(vip, 'move', from === to ? `back to ${to.name}` : `${from.name}→${to.name}`);
          counts.moves++;
          await addressOp(lab, from, vip, m.vip, 'stop', m.tool);
          await addressOp(lab, to, vip, m.vip, 'start', m.tool);
          placement[m.vip] = m.to;
        }));
      } else {
        const n = nodes[a.node]!;
        const served = vips.filter((_, k) => placement[k] === a.node);
        say(`kill -9 lockdropd on ${n.host.name} (pid ${n.pid}, serving ${served.join(', ') || 'nothing'}); again in ${(a.downMs / 1000).toFixed(1)} s`);
        for (const v of served) disrupt(v, 'kill', `lockdropd on ${n.host.name} killed`);
        counts.kills++;
        const gone = new Promise((r) => n.child.once('exit', r));
        n.alive = false;
        process.kill(n.pid, 'SIGKILL');
        await gone;
        restarts.push((async () => {
          await sleep(a.downMs);
          const again = startDaemon(a.node);
          nodes[a.node] = again;
          await again.log.wait(`lockdropd on ${n.host.name} started again`, (j) => /^lockdropd .* started/.test(String(j.msg)), 60_000);
          again.pid = (await request<StatusReport>(again.control, { cmd: 'status' })).pid;
          say(`lockdropd on ${n.host.name} started again (pid ${again.pid})`);
        })());
      }
    };
    const progress = setInterval(() => {
      const r = check(events);
      say(`${r.counts.granted} granted, ${r.counts.deniedGrace} denied_grace_period, ${r.counts.reclaimsOk} reclaims ok, ${r.counts.reclaimsRefused} refused, ${counts.moves} moves, ${counts.kills} kills, ${r.counts.windowLosses} window losses, ${r.violations.length} violations so far`);
    }, 10_000);
    try {
      for (const a of schedule) {
        const wait = a.at - (now() - t0) / 1000;
        if (wait > 0) await sleep(wait);
        await act(a).catch((err: Error) => say(`action failed: ${err.message}`));
      }
      const rest = durationMs - (now() - t0) / 1000;
      if (rest > 0) await sleep(rest);
      await Promise.all(restarts);
    } finally {
      clearInterval(progress);
    }

    // Quiet: no new requests, every address served and out of grace, no client busy.
    say('chaos over: clients stop asking (and keep what they hold), local processes let go');
    stopping = true;
    sleeps.wakeAll();
    await Promise.all(locals);
    await clientCtl('stop', 'stopped');
    const quietBy = Date.now() + (o.grace + 30) * 1000;
    let holds: { owner: string; caller: string; svid: number; via: string; lock: RangeLock }[] = [];
    for (;;) {
      const h = await clientCtl('holds', 'holds');
      holds = h.holds as typeof holds;
      const statuses = await Promise.all(nodes.map((n) => request<StatusReport>(n.control, { cmd: 'status' }).catch(() => undefined)));
      const graced = statuses.flatMap((s) => s?.addresses.filter((a) => a.present && a.grace).map((a) => a.address) ?? []);
      const unserved = vips.filter((v) => !statuses.some((s) => s?.addresses.some((a) => a.address === v && a.present)));
      const busy = h.busy as string[];
      if (!graced.length && !unserved.length && !busy.length) break;
      if (Date.now() > quietBy) {
        stateProblem(`no quiet within ${o.grace + 30} s: in grace ${graced.join(', ') || '-'}, not served ${unserved.join(', ') || '-'}, clients busy ${busy.join(', ') || '-'}`);
        break;
      }
      await sleep(1000);
    }
    say(`quiet: clients hold ${holds.length} locks; comparing the kernel's view, lockdropctl's and the clients'`);

    const lockdropView = (n: Node): OwnedRange[] => {
      const out = lab.exec(n.host, process.execPath, [path.join(__dirname, '..', '..', 'bin', 'lockdropctl'), 'locks', '--json', '--control', n.control]);
      return out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as LockView).map((v) => ({
        owner: `${v.callerName}/${v.svid}`, file: fileByFh.get(v.fh) ?? `fh ${v.fh}`, exclusive: v.exclusive,
        start: Number(v.offset), last: v.length === '0' ? Infinity : Number(v.offset) + Number(v.length) - 1,
      }));
    };
    /** The daemon's locks as the kernel has them: the "lock:" lines of its descriptions of the exported files. */
    const kernelView = (n: Node): { ranges: OwnedRange[]; exportFds: number; fds: number } => {
      const ranges: OwnedRange[] = [];
      let exportFds = 0;
      const fds = readdirSync(`/proc/${n.pid}/fd`);
      for (const fd of fds) {
        let target: string;
        try { target = readlinkSync(`/proc/${n.pid}/fd/${fd}`); } catch { continue; }
        const file = fileByPath.get(target);
        if (!file) continue;
        exportFds++;
        const info = readFileSync(`/proc/${n.pid}/fdinfo/${fd}`, 'utf8').split('\n').filter((l) => l.startsWith('lock:')).join('\n');
        for (const k of parseKernelLocks(info)) ranges.push({ owner: `fd${fd}`, file, exclusive: k.exclusive, start: k.start, last: k.last });
      }
      return { ranges, exportFds, fds: fds.length };
    };
    const compareNode = (n: Node, when: string): OwnedRange[] => {
      const mine = lockdropView(n);
      const k = kernelView(n);
      if (logFile) writeFileSync(logFile, `${JSON.stringify({ view: when, node: n.host.name, lockdrop: mine, kernel: k.ranges })}\n`, { flag: 'a' });
      const d = compareViews(k.ranges, mine);
      if (d.onlyA.length) stateProblem(`${when}: the kernel has locks of lockdropd on ${n.host.name} that lockdropctl does not list: ${d.onlyA.join('; ')}`);
      if (d.onlyB.length) stateProblem(`${when}: lockdropctl on ${n.host.name} lists locks the kernel does not have: ${d.onlyB.join('; ')}`);
      say(`  ${n.host.name}: lockdropctl lists ${mine.length} locks, the kernel ${k.ranges.length} on ${k.exportFds} open descriptions of the exported files (${k.fds} fds in all)`);
      return mine;
    };
    const served = nodes.flatMap((n) => compareNode(n, 'quiet'));
    for (const pair of conflictsWithin(served)) stateProblem(`quiet: lockdropd grants two owners conflicting locks: ${pair}`);
    const believed = holdsAsRanges(holds.map((h) => ({ owner: h.owner, via: h.via, lock: h.lock, from: 0, how: '' }) satisfies Hold));
    const d = compareViews(believed, served, true);
    if (d.onlyA.length) stateProblem(`quiet: clients hold locks no lockdropd has: ${d.onlyA.join('; ')}`);
    if (d.onlyB.length) stateProblem(`quiet: lockdropd holds locks no client knows it has: ${d.onlyB.join('; ')}`);

    say('every client lets go of everything');
    await clientCtl('release', 'released');
    for (const n of nodes) {
      let k = kernelView(n);
      for (let i = 0; i < 20 && (k.exportFds > 0 || k.ranges.length > 0); i++) {
        await sleep(250);
        k = kernelView(n);
      }
      const left = compareNode(n, 'after every release');
      if (left.length) stateProblem(`after every release: lockdropctl on ${n.host.name} still lists ${left.length} locks`);
      if (k.exportFds > 0) stateProblem(`after every release: lockdropd on ${n.host.name} still has ${k.exportFds} descriptions of the exported files open (idle is 0)`);
    }
    clients.send({ do: 'exit' });

    const report = check(events);
    const violations = [...report.violations, ...stateViolations];
    const lines = violations.map((v) => describe(v, t0));
    const losses = report.windowLosses.map((l) => describeLoss(l, t0));
    const c = { ...report.counts, ...counts, violations: violations.length };
    print('');
    print(`chaos: seed ${o.seed}, schedule ${digest}: ${c.requests} requests, ${c.granted} locks granted (${c.grantedByCallback} by GRANTED callback), ${c.denied} denied, ${c.deniedGrace} denied_grace_period, ${c.blocked} blocked, ${c.failed} failed/unanswered`);
    print(`chaos: ${c.moves} moves, ${c.kills} kills, ${c.notifies} SM_NOTIFY received, reclaims ${c.reclaimsOk} ok / ${c.reclaimsRefused} refused, ${c.givenUpBeforeReclaim} locks given up before their reclaim`);
    const stats = (ws: readonly Window[], fromRelease = false): string => {
      const w = windowStats(ws, fromRelease);
      return `${w.n}, p50 ${w.p50.toFixed(0)} ms, max ${w.max.toFixed(0)} ms`;
    };
    const killed = report.windows.filter((w) => w.what.includes('killed'));
    const moved = report.windows.filter((w) => !killed.includes(w));
    const unprotected = report.windows.filter((w) => w.protectedAt === undefined && !w.unnoticed).length;
    const unnoticed = report.windows.filter((w) => w.unnoticed).length;
    print(`chaos: the window per disruption, to the address protected on its node: from the disruption ${stats(report.windows)} (moves ${stats(moved)}; kills ${stats(killed)}); from the kernel's release (a move's drop, the kill) moves ${stats(moved, true)}${unprotected ? `; ${unprotected} not protected again by the end` : ''}${unnoticed ? `; ${unnoticed} moves the old node never noticed (no drop: no window)` : ''}`);
    print(`chaos: ${c.windowLosses} window losses (local processes took a moved lock in its window; longest window ${c.windowMsMax.toFixed(0)} ms), ${c.lostAtArrival} moved locks not held for reclaim on arrival`);
    for (const l of losses.slice(0, 20)) print(`  ${l}`);
    if (losses.length > 20) print(`  … and ${losses.length - 20} more`);
    const kinds = violations.reduce<Record<string, number>>((m, v) => ({ ...m, [v.kind]: (m[v.kind] ?? 0) + 1 }), {});
    print(`chaos: ${violations.length} violations${violations.length ? ` (${Object.entries(kinds).map(([k, n]) => `${n} ${k}`).join(', ')})` : ''}`);
    for (const l of lines.slice(0, 40)) print(`  ${l}`);
    if (lines.length > 40) print(`  … and ${lines.length - 40} more${logFile ? ` (every event is in ${logFile})` : ''}`);
    const leftovers = await cleanup();
    if (leftovers.length) print(`chaos: left behind: ${leftovers.join(', ')}`);
    return { seed: o.seed, counts: c, violations, lines, losses, schedule: digest, leftovers };
  } finally {
    process.off('SIGINT', interrupted).off('SIGTERM', interrupted);
    await cleanup();
  }
}

export function parseChaosArgs(argv: string[]): ChaosOptions {
  const { values } = parseArgs({
    args: argv, strict: true,
    options: Object.fromEntries(['duration', 'seed', 'nodes', 'clients', 'vips', 'lanes', 'locals', 'files', 'grace', 'lease', 'log', 'store'].map((k) => [k, { type: 'string' as const }])),
  });
  const num = (k: string, dflt: number): number => {
    const v = values[k];
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${k} must be a whole number, not ${String(v)}`);
    return n;
  };
  return {
    seed: num('seed', Math.floor(Math.random() * 2 ** 31)),
    durationS: num('duration', DEFAULTS.durationS), nodes: num('nodes', DEFAULTS.nodes), clients: num('clients', DEFAULTS.clients), vips: num('vips', DEFAULTS.vips),
    lanes: num('lanes', DEFAULTS.lanes), locals: num('locals', DEFAULTS.locals), files: num('files', DEFAULTS.files), grace: num('grace', DEFAULTS.grace), lease: num('lease', DEFAULTS.lease),
    ...(typeof values.log === 'string' ? { log: values.log } : {}),
    ...(values.store === undefined ? {} : { store: storeArg(String(values.store)) }),
  };
}

function storeArg(v: string): 'dir' | 'etcd' {
  if (v !== 'dir' && v !== 'etcd') throw new Error(`--store is dir or etcd, not ${v}`);
  return v;
}

if (require.main === module) {
  let o: ChaosOptions;
  try {
    o = parseChaosArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`chaos: ${(err as Error).message}\nusage: npm run chaos -- [--duration S] [--seed N] [--nodes 2|3] [--clients N] [--vips N] [--lanes N] [--locals N] [--files N] [--grace S] [--lease S] [--log FILE] [--store dir|etcd]\n`);
    process.exit(64);
  }
  // A hard bound: the run, the quiet wait and the checks, with room to spare.
  const bound = setTimeout(() => {
    process.stderr.write(`chaos: no end after ${o.durationS + 180} s: giving up\n`);
    process.exit(2);
  }, (o.durationS + 180) * 1000);
  bound.unref();
  runChaos(o).then((r) => process.exit(r.violations.length ? 1 : 0), (err) => {
    process.stderr.write(`chaos: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(2);
  });
}
