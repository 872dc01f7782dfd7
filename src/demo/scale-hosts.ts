// The failover-at-scale benchmark's clients (bench/failover-scale.ts), compiled into dist/ and run
// with plain node, as a real client's code would be (not through tsx, whose helpers and loader
// thread cost the clients CPU the machine's one other core is short of):
//   node dist/demo/scale-hosts.js hosts CONFIG-JSON   many client hosts in one process
//   node dist/demo/scale-hosts.js probe CONFIG-JSON   a client of another address, one call at a time
// Driven by JSON lines on stdin, reporting JSON lines on stdout. Per host: a statd (SM_NOTIFY on
// the host's own address, registered with the namespace's rpcbind), an NlmClient bound to the
// host's address, and the reclaim a kernel client's lockd makes after SM_NOTIFY: a fresh binding,
// then its locks one at a time (Linux's reclaimer), each with the reclaim flag and the new state.
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';
import { NlmClient, type LockSpec } from '../nlm';
import type { StatChge } from '../nsm';
import type { TransportKind } from '../rpc';
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
  return Array.from({ length: n }, (_, j) => ({ fh: files[j % 10]!, svid: 1000 + (j % 10), offset: BigInt(Math.floor(j / 10) * 10), length: 5n, exclusive: true }));
}

export async function runScaleHosts(cfg: ScaleHostsConfig): Promise<void> {
  const hosts: Host[] = cfg.addresses.map((address, i) => ({
    address, name: cfg.names[i]!, locks: locksOf(cfg.names[i]!, cfg.locksPerHost), client: undefined, state: -1, notifiedAt: 0, doneAt: 0, granted: 0, refused: {},
  }));
  const byAddress = new Map(hosts.map((h) => [h.address, h]));
  const connect = (h: Host): Promise<NlmClient> =>
    NlmClient.create({ server: { address: cfg.server }, transport: cfg.transport, vers: 4, callerName: h.name, source: h.address, timeoutMs: 20_000 });
  let reclaiming = 0;

  const reclaim = async (h: Host, notice: StatChge): Promise<void> => {
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
    h.doneAt = wallMs();
    if (--reclaiming === 0 && hosts.every((x) => x.doneAt > 0)) {
      void say('reclaimed', { hosts: hosts.map((x) => ({ name: x.name, notifiedAt: x.notifiedAt, doneAt: x.doneAt, granted: x.granted, refused: x.refused })) });
    }
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
  void say('ready', { hosts: hosts.length });

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
