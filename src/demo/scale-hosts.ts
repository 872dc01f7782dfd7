// The failover-at-scale benchmark's clients (bench/failover-scale.ts), compiled into dist/ and run
// with plain node, as a real client's code would be (not through tsx, whose helpers and loader
// thread cost the clients CPU the machine's one other core is short of):
//   node dist/demo/scale-hosts.js hosts CONFIG-JSON   many client hosts in one process
//   node dist/demo/scale-hosts.js probe CONFIG-JSON   a client of another address, one call at a time
// Driven by JSON lines on stdin, reporting JSON lines on stdout. Per host: a statd (SM_NOTIFY on
// the host's own address, registered with the namespace's rpcbind), an NlmClient bound to the
// host's address, and the reclaim a kernel client's lockd makes after SM_NOTIFY: a fresh binding,
// then its locks one at a time (Linux's reclaimer), each with the reclaim flag and the new state.
// With `reclaimer` (bench/nlm-reclaim.c, compiled) the reclaims are that C program's: the calls
// encoded here once, before the move, and only their xid and state patched there, so that the
// benchmark's window measures the server rather than NlmClient's JavaScript (TCP only).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';
import { NLM_PROG, NlmClient, NlmProc, encodeLockArgs, type LockSpec } from '../nlm';
import type { StatChge } from '../nsm';
import { AUTH_SYS, NULL_AUTH, encodeAuthSys, encodeCall, getPort, type TransportKind } from '../rpc';
import { XdrWriter } from '../xdr';
import { serveStatusMonitor } from './statd-responder';

type Json = Record<string, unknown>;

export interface ScaleHostsConfig {
  /** The server address the hosts lock through. */
  server: string;
  /** Host addresses (one per host) and their caller names. */
  addresses: string[];
  names: string[];
  transport: TransportKind;
  locksPerHost: number;
  /** Reclaims in flight per host: 1 as a kernel client's lockd. */
  window: number;
  /** bench/nlm-reclaim.c compiled: it makes the reclaims (window 1, TCP); without it NlmClient does. */
  reclaimer?: string;
}

export interface ScaleProbeConfig {
  server: string;
  /** The probe's own address. */
  address: string;
  transport: TransportKind;
}

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across the lab's processes. */
export const wallMs = (): number => performance.timeOrigin + performance.now();
/** One JSON line out; resolves once written (a pipe takes big lines asynchronously, and exit would cut them). */
const say = (event: string, fields: Json = {}): Promise<void> =>
  new Promise((resolve) => void process.stdout.write(`${JSON.stringify({ event, at: wallMs(), ...fields })}\n`, () => resolve()));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Host {
  address: string;
  name: string;
  /** Its locks, as a client keeps them: reclaimed from this list. */
  locks: LockSpec[];
  client: NlmClient | undefined;
  /** The NSM state of the last SM_NOTIFY acted on. */
  state: number;
  notifiedAt: number;
  doneAt: number;
  granted: number;
  refused: Record<string, number>;
}

/** A host's locks: ten owners (svids) on ten files, ten 5-byte ranges each. */
function locksOf(name: string, n: number): LockSpec[] {
  const files = Array.from({ length: 10 }, (_, j) => Buffer.from(`scale-${name}-file-${j}`.padEnd(32, '.')));
  // The owner handle named, so that the C reclaimer's calls name the same owners as NlmClient's.
  return Array.from({ length: n }, (_, j) => ({
    fh: files[j % 10]!, svid: 1000 + (j % 10), oh: Buffer.from(`${1000 + (j % 10)}@${name}`), offset: BigInt(Math.floor(j / 10) * 10), length: 5n, exclusive: true,
  }));
}

/**
 * The reclaim calls of every host, as bench/nlm-reclaim.c reads them: u32 host count; per host its
 * address (XDR string), its call count and each call as a TCP record (XDR opaque), xid and state 0.
 */
function reclaimCalls(hosts: Host[]): Buffer {
  const w = new XdrWriter(4096);
  w.uint(hosts.length);
  for (const h of hosts) {
    w.string(h.address).uint(h.locks.length);
    const cred = { flavor: AUTH_SYS, body: encodeAuthSys({ stamp: 0, machineName: h.name, uid: 0, gid: 0, gids: [] }) };
    for (const [j, l] of h.locks.entries()) {
      const args = new XdrWriter(256);
      const cookie = Buffer.alloc(4);
      cookie.writeUInt32BE(j);
      encodeLockArgs(args, 4, {
        cookie, block: false, exclusive: l.exclusive ?? true, reclaim: true, state: 0,
        lock: { callerName: h.name, fh: l.fh, oh: l.oh!, svid: l.svid, offset: l.offset ?? 0n, length: l.length ?? 0n },
      });
      const call = encodeCall({ xid: 0, prog: NLM_PROG, vers: 4, proc: NlmProc.LOCK, cred, verf: NULL_AUTH }, args.toBuffer());
      const record = Buffer.alloc(4 + call.length);
      record.writeUInt32BE((0x80000000 | call.length) >>> 0);
      call.copy(record, 4);
      w.opaque(record);
    }
  }
  return w.toBuffer();
}

/** Starts the C reclaimer over the hosts' calls; `done` is told each host it finished (granted, others, when). */
async function startReclaimer(bin: string, server: string, hosts: Host[], done: (i: number, granted: number, refused: number, at: number) => void, error: (what: string) => void): Promise<ChildProcess> {
  const dir = mkdtempSync(path.join(tmpdir(), 'scale-reclaim-'));
  const file = path.join(dir, 'calls');
  writeFileSync(file, reclaimCalls(hosts));
  const child = spawn(bin, [file, server], { stdio: ['pipe', 'pipe', 'inherit'] });
  const ready = new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`nlm-reclaim exited (${code})`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const [what, ...f] = line.split(' ');
      if (what === 'ready') resolve();
      else if (what === 'done') done(Number(f[0]), Number(f[1]), Number(f[2]), Number(f[3]));
      else error(line);
    });
  });
  await ready.finally(() => rmSync(dir, { recursive: true, force: true }));
  return child;
}

export async function runScaleHosts(cfg: ScaleHostsConfig): Promise<void> {
  const hosts: Host[] = cfg.addresses.map((address, i) => ({
    address, name: cfg.names[i]!, locks: locksOf(cfg.names[i]!, cfg.locksPerHost), client: undefined, state: -1, notifiedAt: 0, doneAt: 0, granted: 0, refused: {},
  }));
  const byAddress = new Map(hosts.map((h) => [h.address, h]));
  const connect = (h: Host): Promise<NlmClient> =>
    NlmClient.create({ server: { address: cfg.server }, transport: cfg.transport, vers: 4, callerName: h.name, source: h.address, timeoutMs: 20_000 });
  let reclaiming = 0;
  const finished = (h: Host, at = wallMs()): void => {
    h.doneAt = at;
    if (--reclaiming === 0 && hosts.every((x) => x.doneAt > 0)) {
      void say('reclaimed', { hosts: hosts.map((x) => ({ name: x.name, notifiedAt: x.notifiedAt, doneAt: x.doneAt, granted: x.granted, refused: x.refused })) });
    }
  };
  const reclaimer = cfg.reclaimer && cfg.transport === 'tcp' && cfg.window === 1
    ? await startReclaimer(cfg.reclaimer, cfg.server, hosts, (i, granted, refused, at) => {
      const h = hosts[i]!;
      h.granted = granted;
      if (refused) h.refused = { 'not granted': refused };
      finished(h, at);
    }, (line) => void say('error', { what: 'nlm-reclaim', error: line }))
    : undefined;
  const index = new Map(hosts.map((h, i) => [h, i]));

  const reclaim = async (h: Host, notice: StatChge): Promise<void> => {
    if (reclaimer) {
      // As the kernel's lockd: the server's port asked again (GETPORT from the host's address).
      const port = await getPort(cfg.server, NLM_PROG, 4, 'tcp', { source: h.address, timeoutMs: 20_000 });
      reclaimer.stdin!.write(`${index.get(h)} ${port} ${notice.state}\n`);
      return;
    }
    // As a kernel client's lockd: the server restarted, so a fresh binding and every lock again.
    const old = h.client;
    h.client = undefined;
    await old?.close();
    const c = (h.client = await connect(h));
    let next = 0;
    await Promise.all(Array.from({ length: cfg.window }, async () => {
      while (next < h.locks.length) {
        const r = await c.lock({ ...h.locks[next++]!, reclaim: true, state: notice.state });
        if (r.status === 'granted') h.granted++;
        else h.refused[r.status] = (h.refused[r.status] ?? 0) + 1;
      }
    }));
    finished(h);
  };

  // A retransmitted notice (its answer was lost) is answered again but not acted on twice.
  const statd = await serveStatusMonitor(cfg.addresses, (notice, ctx) => {
    const h = byAddress.get(ctx.local.address);
    if (!h || h.state === notice.state) return;
    h.state = notice.state;
    h.notifiedAt = wallMs();
    h.granted = 0;
    h.refused = {};
    h.doneAt = 0;
    reclaiming++;
    void reclaim(h, notice).catch((err) => say('error', { what: `reclaim ${h.name}`, error: String(err) }));
  });
  void say('ready', { hosts: hosts.length, reclaimerPid: reclaimer?.pid });

  for await (const line of createInterface({ input: process.stdin })) {
    const cmd = JSON.parse(line) as { do: string };
    if (cmd.do === 'lock') {
      const t0 = wallMs();
      const statuses: Record<string, number> = {};
      await Promise.all(hosts.map(async (h) => {
        h.client ??= await connect(h);
        for (const spec of h.locks) {
          const r = await h.client.lock(spec);
          statuses[r.status] = (statuses[r.status] ?? 0) + 1;
        }
      }));
      void say('locked', { statuses, ms: wallMs() - t0 });
    } else if (cmd.do === 'quit') {
      break;
    }
  }
  reclaimer?.kill();
  await Promise.all(hosts.map((h) => h.client?.close()));
  await statd.close();
}

/** LOCK+UNLOCK through `server`, one call at a time, a millisecond apart, until told to stop; then every sample. */
export async function runScaleProbe(cfg: ScaleProbeConfig): Promise<void> {
  const c = await NlmClient.create({ server: { address: cfg.server }, transport: cfg.transport, vers: 4, callerName: 'probe', source: cfg.address, timeoutMs: 5_000 });
  const samples: { at: number; ms: number; status: string }[] = [];
  let running = true;
  const fh = Buffer.from('scale-probe-file'.padEnd(32, '.'));
  const loop = (async () => {
    for (let i = 0; running; i++) {
      const spec = { fh, svid: 7, offset: BigInt((i % 1000) * 10), length: 5n, exclusive: true };
      const t0 = wallMs();
      // A call that fails is a sample too (its error as the status): the probe must not stop.
      const status = await c.lock(spec).then((r) => r.status, (err: Error) => `error: ${err.message}`);
      samples.push({ at: t0, ms: wallMs() - t0, status });
      await c.unlock(spec).catch(() => undefined);
      await sleep(1);
    }
  })();
  void say('ready', {});
  for await (const line of createInterface({ input: process.stdin })) {
    if ((JSON.parse(line) as { do: string }).do === 'stop') break;
  }
  running = false;
  await loop;
  await say('samples', { samples });
  await c.close();
}

if (require.main === module) {
  const [role, config] = process.argv.slice(2);
  const run = role === 'hosts' ? runScaleHosts : role === 'probe' ? runScaleProbe : undefined;
  if (!run || !config) {
    process.stderr.write('usage: scale-hosts hosts|probe CONFIG-JSON\n');
    process.exit(2);
  }
  (run as (c: unknown) => Promise<void>)(JSON.parse(config)).then(() => process.exit(0), (err) => {
    void say('error', { what: role, error: String(err) }).then(() => process.exit(1));
  });
}
