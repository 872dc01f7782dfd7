// Prometheus metrics (prom-client, own registry) served as text on /metrics. Counters move with
// the events the parts publish (rpc server events, procedure results, failover drops, address
// events); gauges are read at scrape time from counts the parts already keep (per-address stats,
// grace periods): no scrape walks the locks.
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ProgramVersion, Procedure, RpcServerEvent } from '../rpc';
import { NLM_PROG, NlmProc, statName } from '../nlm/protocol';

export type DropTrigger = 'netlink' | 'bpf' | 'poll' | 'replay' | 'admin';

/** Per-scrape figures the daemon reads from the parts' own counts. */
export interface MetricsSnapshot {
  addresses: Map<string, { locks: number; monitors: number }>;
  blocked: number;
  gracePeriods: number;
  /** Real-file locking: open descriptions, kernel waits, refusals for the descriptor budget. */
  files: { open: number; waits: number; budgetRefusals: number };
}

const PROGRAM_NAMES: Record<number, string> = { [NLM_PROG]: 'nlm', 100024: 'nsm' };
const NLM_PROC_NAMES = new Map<number, string>(Object.entries(NlmProc).map(([name, num]) => [num, name]));
const NSM_PROC_NAMES = ['NULL', 'STAT', 'MON', 'UNMON', 'UNMON_ALL', 'SIMU_CRASH', 'NOTIFY'];
const procName = (prog: number, proc: number): string =>
  (prog === NLM_PROG ? NLM_PROC_NAMES.get(proc) : prog === 100024 ? NSM_PROC_NAMES[proc] : undefined) ?? String(proc);

export class Metrics {
  readonly registry = new Registry();
  private server: Server | undefined;

  private readonly rpcCalls = new Counter({ name: 'lockdrop_rpc_calls_total', help: 'RPC calls answered, by program, procedure and RPC reply status', labelNames: ['program', 'procedure', 'status', 'transport'], registers: [this.registry] });
  private readonly rpcDrops = new Counter({ name: 'lockdrop_rpc_dropped_total', help: 'RPC messages dropped without a reply', labelNames: ['transport'], registers: [this.registry] });
  private readonly connectionLimits = new Counter({ name: 'lockdrop_rpc_connection_limit_total', help: 'New TCP connections that met a connection limit (server-wide or per peer address): an idle one closed to make room, or the new one refused', labelNames: ['scope', 'action'], registers: [this.registry] });
  private readonly nlmResults = new Counter({ name: 'lockdrop_nlm_requests_total', help: 'NLM requests by procedure and NLM status', labelNames: ['procedure', 'status'], registers: [this.registry] });
  private readonly drops = new Counter({ name: 'lockdrop_drops_total', help: 'Lock drops, by what triggered them', labelNames: ['trigger'], registers: [this.registry] });
  private readonly droppedLocks = new Counter({ name: 'lockdrop_dropped_locks_total', help: 'Locks released by drops', labelNames: ['trigger'], registers: [this.registry] });
  private readonly dropSeconds = new Histogram({
    name: 'lockdrop_drop_duration_seconds',
    help: 'Time from the triggering event to the end of the drop',
    labelNames: ['trigger'],
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  private readonly notifications = new Counter({ name: 'lockdrop_notifications_total', help: 'SM_NOTIFY sent to client hosts, by result', labelNames: ['result'], registers: [this.registry] });
  private readonly addressEvents = new Counter({ name: 'lockdrop_address_events_total', help: 'Address transitions, by source and type', labelNames: ['source', 'type'], registers: [this.registry] });
  private readonly overflows = new Counter({ name: 'lockdrop_source_overflows_total', help: 'Events lost by a source (netlink ENOBUFS and the like), each healed by a re-dump', labelNames: ['source'], registers: [this.registry] });

  constructor(snapshot: () => MetricsSnapshot) {
    const read = snapshot; // O(addresses): the parts keep these counts
    new Gauge({
      name: 'lockdrop_locks',
      help: 'Locks held, per server address',
      labelNames: ['server'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [server, a] of read().addresses) this.set({ server }, a.locks);
      },
    });
    new Gauge({
      name: 'lockdrop_monitors',
      help: 'Client hosts monitored, per server address',
      labelNames: ['server'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [server, a] of read().addresses) this.set({ server }, a.monitors);
      },
    });
    new Gauge({
      name: 'lockdrop_blocked_requests',
      help: 'Blocking lock requests waiting in queues',
      registers: [this.registry],
      collect() {
        this.set(read().blocked);
      },
    });
    new Gauge({
      name: 'lockdrop_open_files',
      help: 'Open file descriptions holding real-file locks (one per lock owner and file)',
      registers: [this.registry],
      collect() {
        this.set(read().files.open);
      },
    });
    new Gauge({
      name: 'lockdrop_file_waits',
      help: 'Blocking requests waiting in the kernel for a holder outside lockdrop',
      registers: [this.registry],
      collect() {
        this.set(read().files.waits);
      },
    });
    new Counter({
      name: 'lockdrop_file_budget_refusals_total',
      help: 'Locks refused with denied_nolocks because the open-file budget (maxOpenFiles) was spent',
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc(read().files.budgetRefusals);
      },
    });
    new Gauge({
      name: 'lockdrop_grace_periods_active',
      help: 'Grace periods in force',
      registers: [this.registry],
      collect() {
        this.set(read().gracePeriods);
      },
    });
  }

  observeRpc(e: RpcServerEvent): void {
    if (e.kind === 'call') this.rpcCalls.inc({ program: PROGRAM_NAMES[e.prog] ?? String(e.prog), procedure: procName(e.prog, e.proc), status: e.stat, transport: e.transport });
    else if (e.kind === 'drop') this.rpcDrops.inc({ transport: e.transport });
    else if (e.kind === 'limit') this.connectionLimits.inc({ scope: e.scope, action: e.action });
  }

  observeDrop(trigger: DropTrigger, locks: number, ms: number): void {
    this.drops.inc({ trigger });
    this.droppedLocks.inc({ trigger }, locks);
    this.dropSeconds.observe({ trigger }, ms / 1000);
  }

  observeNotify(sent: number, failed: number): void {
    if (sent) this.notifications.inc({ result: 'sent' }, sent);
    if (failed) this.notifications.inc({ result: 'failed' }, failed);
  }

  observeAddressEvent(source: string, type: string): void {
    this.addressEvents.inc({ source, type });
  }

  observeOverflow(source: string): void {
    this.overflows.inc({ source });
  }

  /**
   * The NLM programs with every procedure's result status counted (procedures whose result has
   * a `stat`: TEST, LOCK, CANCEL, UNLOCK, GRANTED, SHARE, …; the rest count as "ok").
   */
  instrumentNlm(programs: readonly ProgramVersion[]): ProgramVersion[] {
    return programs.map((pv) => {
      const procedures = new Map<number, Procedure<any, any>>();
      for (const [num, proc] of pv.procedures) {
        const count = (result: unknown): void => {
          const stat = result !== null && typeof result === 'object' && 'stat' in result ? statName((result as { stat: number }).stat) : undefined;
          this.nlmResults.inc({ procedure: proc.name, status: stat ?? 'ok' });
        };
        procedures.set(num, {
          ...proc,
          handle: (args, ctx) => {
            const r = proc.handle(args, ctx);
            if (r instanceof Promise) return r.then((v) => (count(v), v));
            count(r);
            return r;
          },
        });
      }
      return { ...pv, procedures };
    });
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Serves GET /metrics on "host:port"; resolves with the bound port. */
  async listen(hostPort: string): Promise<number> {
    const i = hostPort.lastIndexOf(':');
    const host = hostPort.slice(0, i).replace(/^\[|\]$/g, '');
    const port = Number(hostPort.slice(i + 1));
    const server = createServer((req, res) => {
      if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
        res.writeHead(404).end('not found: try /metrics\n');
        return;
      }
      this.registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(body),
        (err: Error) => res.writeHead(500).end(`${err.message}\n`),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    return (server.address() as { port: number }).port;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s) {
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
  }
}
