// lockdropd's composition: the one file where the parts meet.
//  - A packet enters: RpcServer (NLM on nlmPort, statd on nsmPort), one UDP socket and TCP
//    listener per server address, each call carrying the address it arrived on (rpcServers).
//  - A lock lives: the NLM service asks the LockTable, whose exportOf is the exports table and
//    whose export policy (client networks, secure ports) the NLM service consults per request;
//    hosts are monitored through Nsm (durable records per server address) (lockParts).
//  - An address event turns into a drop: watch sources → AddressEvents → FailoverController
//    (drop, listeners, grace, state number, SM_NOTIFY); a host's reboot (SM_NOTIFY in) →
//    LockTable.dropByHost (addressParts, wire).
// What a reload changes (the configuration, the exports table) is in `Live`; the parts read it
// through accessors at each use, never a copy taken at start.
import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Subscription } from 'rxjs';
import type { Logger } from 'pino';
import { ExportsTable } from '../exports';
import { FailoverController, type FailoverReport } from '../failover';
import { LockTable, hostKey } from '../locks';
import { NLM_PROG, NLM_VERSIONS, callbackCredential, createNlmService, type NlmService } from '../nlm';
import { Nsm, NsmStore, NODE_IDENTITY, RpcNsmSender, createNsmProgram, neighbourAnnouncer, NSM_PROGRAM, NSM_VERSION, type NsmSettings } from '../nsm';
import { AUTH_SYS, RpcClientPool, RpcServer, type CallContext, type RpcbindEntry, type RpcServerEvent } from '../rpc';
import { DirectoryStore, EtcdStore, type ClusterStore } from '../store';
import { EtcdLeases, type HolderLeases } from './etcd-lease';
import { EtcdNsmRecords } from './etcd-nsm';
import type { Config } from './config';
import { arpProbe } from './dad';
import { mayLock, openDaemonFiles, type DaemonFiles } from './files';
import { LockJournal } from './journal';
import { AddressLeases } from './lease';
import { Metrics, type DropTrigger, type MetricsSnapshot } from './metrics';
import { NodeAddresses, SharedListeners } from './node';
import { RefusalLog, type Refusal } from './refusals';
import { RpcbindKeeper } from './rpcbind-owner';
import { createAddressWatch, type AddressWatch } from './sources';
import { describeEvent, describeReport, overflowLine, portError, rebootLine } from './views';
import { WatchFeed } from './watch-stream';

export const LOOPBACK = '127.0.0.1';

export class StartupError extends Error {
  constructor(
    message: string,
    /** The configuration is at fault (exit 78, EX_CONFIG), not the machine. */
    readonly badConfig = false,
  ) {
    super(message);
    this.name = 'StartupError';
  }
}

/** One child logger per part; pino children keep the level they were made with, so reload sets each. */
export class PartLogs {
  private readonly parts = new Map<string, Logger>();
  constructor(readonly root: Logger) {}
  of(part: string): Logger {
    let c = this.parts.get(part);
    if (!c) this.parts.set(part, (c = this.root.child({ part })));
    return c;
  }
  setLevel(level: string): void {
    this.root.level = level;
    for (const c of this.parts.values()) c.level = level;
  }
}

/** What a reload replaces, everything else being built once: the parts call config() and exports() at each use. */
export class Live {
  constructor(
    private running: Config,
    private table: ExportsTable,
  ) {}
  config(): Config {
    return this.running;
  }
  exports(): ExportsTable {
    return this.table;
  }
  replaceConfig(next: Config): void {
    this.running = next;
  }
  replaceExports(next: ExportsTable): void {
    this.table = next;
  }
}

export interface DaemonParts {
  live: Live;
  logs: PartLogs;
  nlmServer: RpcServer;
  nsmServer: RpcServer;
  /** Each address's sockets, held by failover and by the node (a reload moves an address from one to the other). */
  listeners: SharedListeners;
  table: LockTable;
  nlm: NlmService;
  nsm: Nsm;
  files: DaemonFiles;
  /** The lock journal on the cluster store; undefined when `journal.enabled` is false. */
  journal: LockJournal | undefined;
  failover: FailoverController;
  watch: AddressWatch;
  leases: HolderLeases;
  /** The cluster store (undefined: no journal and no etcd). */
  store: ClusterStore | undefined;
  node: NodeAddresses;
  metrics: Metrics;
  rpcbind: RpcbindKeeper;
  feed: WatchFeed;
  /** Tells an arriving address's neighbours its link-layer address (gratuitous ARP / unsolicited NA). */
  announce: (address: string) => Promise<void>;
}

/** Steps that undo what was built, run in reverse when the start fails. */
export type Undo = (() => unknown)[];

/** SM_MON of a host name: resolved as statd does (getaddrinfo: the hosts file, then DNS), in bounded time. */
function resolveHost(name: string): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), 5_000)));
  return Promise.race([lookup(name).then((r) => r.address, () => undefined), late]).finally(() => clearTimeout(timer));
}

/** Builds every part, bound to loopback; nothing is announced or served beyond it yet (Daemon.serve does). */
export async function compose(cfg: Config, log: Logger, undo: Undo, snapshot: () => MetricsSnapshot): Promise<DaemonParts> {
  const logs = new PartLogs(log);
  const live = new Live(cfg, new ExportsTable(cfg.exports, { byteOrder: cfg.fhByteOrder, unknownHandles: cfg.unknownHandles }));
  const metrics = new Metrics(snapshot);
  const servers = await rpcServers(cfg, logs, metrics, undo);
  // Late-bound: Nsm asks the watch which addresses float, and the watch is built after it.
  let watch: AddressWatch | undefined;
  const announce = neighbourAnnouncer({ log: logs.of('nsm') });
  // Every node follows every address's journal in the (shared) state directory; a node is live
  // while its heartbeat moves, judged on the same bound as an address's holder lease.
  // With etcd, the holder leases are there too, journal or not.
  const etcd = cfg.store.etcd ? await openEtcd(cfg.store.etcd, cfg.leaseSeconds, logs.of('journal'), (a) => metrics.observeStoreRefusal(a)) : undefined;
  if (etcd) undo.push(() => etcd.close());
  const store = !cfg.journal.enabled ? undefined : (etcd ?? (await DirectoryStore.open({ stateDir: cfg.stateDir, node: hostname(), pollMs: cfg.journal.pollMs, livenessMs: cfg.leaseSeconds * 1000, log: logs.of('journal') })));
  const locks = lockParts(live, logs, (a) => watch?.isFloating(a) ?? false, announce, store, etcd, undo);
  const faults = store?.faults$.subscribe((f) => metrics.observeJournalFault(f.address));
  undo.push(() => faults?.unsubscribe());
  for (const p of metrics.instrumentNlm(locks.nlm.programs)) servers.nlmServer.register(p);
  servers.nsmServer.register(createNsmProgram({ nsm: locks.nsm, log: logs.of('nsm') }));
  watch = createAddressWatch(cfg, logs.of('watch'));
  undo.push(() => watch?.close());
  const addresses = addressParts(live, logs, { ...servers, ...locks, watch, metrics, etcd }, undo);
  const rpcbind = new RpcbindKeeper({ mode: cfg.rpcbind, entries: () => rpcbindEntries(servers.nlmServer, servers.nsmServer), log: logs.of('rpcbind') });
  return { live, logs, metrics, watch, rpcbind, feed: new WatchFeed(locks.table.changes), announce, store: store ?? etcd, ...servers, ...locks, ...addresses };
}

/** The etcd store of `store.etcd`, its TLS files read here (a missing one is a configuration error). */
async function openEtcd(c: NonNullable<Config['store']['etcd']>, leaseSeconds: number, log: Logger, onRefused: (address: string) => void): Promise<EtcdStore> {
  const tls = c.tls && { ca: readFileSync(c.tls.ca), cert: c.tls.cert === undefined ? undefined : readFileSync(c.tls.cert), key: c.tls.key === undefined ? undefined : readFileSync(c.tls.key) };
  return EtcdStore.open({ endpoints: c.endpoints, prefix: c.prefix, tls, node: hostname(), livenessMs: leaseSeconds * 1000, commitTimeoutMs: c.commitTimeoutMs, onRefused, log });
}

/** A packet enters here: loopback always (local tools, rpcinfo, this node's own lockd); the node's other addresses and the floating ones follow events. */
async function rpcServers(cfg: Config, logs: PartLogs, metrics: Metrics, undo: Undo): Promise<{ nlmServer: RpcServer; nsmServer: RpcServer; listeners: SharedListeners }> {
  const rpcOptions = { onEvent: (e: RpcServerEvent) => metrics.observeRpc(e), log: logs.of('rpc'), maxConnections: cfg.connections.max, maxConnectionsPerPeer: cfg.connections.perPeer };
  const nlmServer = new RpcServer(rpcOptions);
  const nsmServer = new RpcServer(rpcOptions);
  nlmServer.listen({ port: cfg.nlmPort });
  nsmServer.listen({ port: cfg.nsmPort });
  undo.push(() => nlmServer.close(), () => nsmServer.close());
  const listeners = new SharedListeners({
    addAddress: async (a: string) => {
      await nlmServer.addAddress(a);
      await nsmServer.addAddress(a);
    },
    removeAddress: async (a: string) => {
      await Promise.all([nlmServer.removeAddress(a), nsmServer.removeAddress(a)]);
    },
  });
  try {
    await nlmServer.addAddress(LOOPBACK);
  } catch (err) {
    throw new StartupError(portError('NLM', cfg.nlmPort, LOOPBACK, err));
  }
  try {
    await nsmServer.addAddress(LOOPBACK);
  } catch (err) {
    throw new StartupError(portError('NSM (statd)', cfg.nsmPort, LOOPBACK, err));
  }
  return { nlmServer, nsmServer, listeners };
}

/** A lock lives here: the table, the NLM service over it, the status monitor, and the files that carry locks to the kernel. */
function lockParts(live: Live, logs: PartLogs, isFloating: (a: string) => boolean, announce: (a: string) => Promise<void>, store: ClusterStore | undefined, etcd: EtcdStore | undefined, undo: Undo): { table: LockTable; nlm: NlmService; nsm: Nsm; files: DaemonFiles; journal: LockJournal | undefined; caller: RpcClientPool } {
  const cfg = live.config();
  const nsm = new Nsm({
    // With etcd, a floating address's records live there and move with it without a shared directory.
    store: etcd ? new EtcdNsmRecords(etcd, new NsmStore(cfg.stateDir, { log: logs.of('nsm') })) : new NsmStore(cfg.stateDir, { log: logs.of('nsm') }),
    sender: new RpcNsmSender({ log: logs.of('nsm'), announce }),
    log: logs.of('nsm'),
    // A floating address's hosts move with it; every other address's are the node's.
    identity: (a) => (isFloating(a) ? a : NODE_IDENTITY),
    resolve: resolveHost,
    config: (): NsmSettings => {
      const { monNames, notify } = live.config();
      return { monNames, notifyTimeoutMs: notify.timeout * 1000, notifyConcurrency: notify.concurrency };
    },
  });
  undo.push(() => nsm.close());
  // A lock lives on the file too: the table decides, the files part carries it to the kernel.
  const files = openDaemonFiles(cfg, () => live.exports(), logs.of('files'));
  undo.push(() => files.files?.setExports([]));
  const refusals = new RefusalLog(logs.of('nlm'));
  // A denied_nolocks for the fd budget is told apart by the files' count of such refusals having
  // grown since the last look (the table answers in the same turn, so the count is this call's).
  let budgetRefusals = 0;
  const budgetSpent = (): boolean => {
    const n = files.files?.stats().budgetRefusals ?? 0;
    const grew = n > budgetRefusals;
    budgetRefusals = n;
    return grew;
  };
  let nlm: NlmService | undefined; // the table and the service refer to each other
  let journal: LockJournal | undefined; // and the table and its journal
  const table = new LockTable({
    exportOf: (fh) => live.exports().exportOf(fh),
    onBlockGranted: (g) => nlm?.onBlockGranted(g),
    locker: files.files,
    journal: cfg.journal.enabled ? (a, records) => journal?.append(a, records) : undefined,
  });
  if (store) {
    const j = (journal = new LockJournal({ store, table, barrierMs: () => live.config().journal.barrierMs, log: logs.of('journal') }));
    undo.push(() => j.close());
  }
  const caller = new RpcClientPool({ cred: callbackCredential(hostname()) });
  undo.push(() => caller.close());
  nlm = createNlmService({
    table,
    rpc: caller,
    monitor: nsm,
    logger: logs.of('nlm'),
    durable: () => journal?.durable(),
    exportPolicy: (fh, peer, ctx, callerName, write) => {
      const d = live.exports().check(fh, peer);
      const reason = !d.allowed ? d.reason : mayLock(files.files, live.exports(), d.exportId, fh, ctx, write) ? undefined : 'access';
      if (reason) refusals.refused({ ...refusalFrom(ctx, callerName), reason, export: d.exportId ?? null });
      // check() already applied the export's secure-port rule.
      return { allowed: reason === undefined, secure: false, ...(reason === 'unknown-handle' ? { refusal: 'stale_fh' as const } : {}) };
    },
    onRefused: (r, ctx) => refusals.refused({ ...refusalFrom(ctx, r.callerName), reason: r.reason === 'no-locks' && budgetSpent() ? 'budget' : r.reason, status: r.status }),
  });
  const service = nlm;
  undo.push(() => service.close());
  return { table, nlm, nsm, files, journal, caller };
}

/** Who a refused request came from, as the refusal log names it. */
function refusalFrom(ctx: CallContext, callerName: string): Pick<Refusal, 'client' | 'port' | 'machine' | 'callerName' | 'server'> {
  const machine = ctx.cred.flavor === AUTH_SYS && 'machineName' in ctx.cred ? ctx.cred.machineName : undefined;
  return { client: ctx.peer.address, port: ctx.peer.port, machine, callerName, server: ctx.local.address };
}

/** An address event turns into a drop here; the node's own addresses and the leases that keep two nodes off one address. */
function addressParts(
  live: Live,
  logs: PartLogs,
  p: { listeners: SharedListeners; table: LockTable; nlm: NlmService; nsm: Nsm; watch: AddressWatch; metrics: Metrics; journal: LockJournal | undefined; caller: RpcClientPool; etcd: EtcdStore | undefined },
  undo: Undo,
): { failover: FailoverController; leases: HolderLeases; node: NodeAddresses } {
  const { listeners, table, nlm, nsm, watch, metrics, journal, caller } = p;
  const graceSeconds = (): number => live.config().grace;
  const failover = new FailoverController({ listeners: listeners.of('failover'), locks: table, monitors: {
    activate: (a) => nsm.activate(a),
    bumpState: (a) => nsm.bumpState(a),
    notify: (a) => nsm.notify(a),
    forgetClients: (a) => {
      nlm.forgetAddress(a);
      nsm.stopMonitoring(a);
      // Its GRANTED callback connections: bound to an address this node no longer has.
      caller.closeFrom(a);
    },
    graceEnded: (a) => nsm.graceEnded(a),
  }, journal, graceSeconds, log: logs.of('failover') });
  undo.push(() => failover.close());
  // Split brain: an address another live node holds the lease of is not served here.
  const cfg = live.config();
  const onConflict = (a: string): void => metrics.observeLeaseConflict(a);
  const leases: HolderLeases = p.etcd
    ? new EtcdLeases({ store: p.etcd, leaseMs: cfg.leaseSeconds * 1000, log: logs.of('lease'), onConflict })
    : new AddressLeases({ stateDir: cfg.stateDir, node: hostname(), leaseMs: cfg.leaseSeconds * 1000, log: logs.of('lease'), onConflict });
  undo.push(() => leases.close());
  const node = new NodeAddresses({ listeners: listeners.of('node'), monitors: nsm, grace: table.grace, graceSeconds, isFloating: (a) => watch.isFloating(a), log: logs.of('node') });
  return { failover, leases, node };
}

function rpcbindEntries(nlmServer: RpcServer, nsmServer: RpcServer): RpcbindEntry[] {
  const out: RpcbindEntry[] = [];
  for (const protocol of ['udp', 'tcp'] as const) {
    for (const vers of NLM_VERSIONS) out.push({ prog: NLM_PROG, vers, protocol, port: nlmServer.port });
    out.push({ prog: NSM_PROGRAM, vers: NSM_VERSION, protocol, port: nsmServer.port });
  }
  return out;
}

/** Event plumbing between the parts: address events to failover, reboots to drops, everything to metrics and `watch`. */
export function wire(parts: DaemonParts): Subscription[] {
  const { failover, leases, watch, node, nsm, table, nlm, metrics, feed, live } = parts;
  const log = parts.logs.root;
  // Failover subscribes first: the sources start with it and their first snapshot is its.
  return [
    failover.run(leases.gate(watch.events$)),
    watch.all$.subscribe((e) => node.handle(e)),
    nsm.rebooted$.subscribe((r) => {
      const key = hostKey(r.monName, r.address);
      const counts = table.dropByHost(key);
      nlm.forgetHost(key);
      const line = rebootLine(key, r.state, counts);
      log.info({ host: key, state: r.state, ...counts }, line);
      feed.emit({ kind: 'drop', address: r.address, message: line, host: key, ...counts });
    }),
    watch.events$.subscribe((e) => {
      metrics.observeAddressEvent(e.source, e.type);
      if (e.type === 'up' && e.family === 4 && !live.config().replay) void probeDuplicate(parts, e.address, e.ifindex);
      feed.emit({ kind: 'address', address: e.address, message: describeEvent(e), type: e.type, source: e.source, pid: e.pid, comm: e.comm });
    }),
    watch.overflows$.subscribe((o) => {
      metrics.observeOverflow(o.source);
      const line = overflowLine(o);
      log.warn({ source: o.source, reason: o.reason }, line);
      feed.emit({ kind: 'overflow', message: line });
    }),
    failover.reports$.subscribe((r) => onFailoverReport(parts, r)),
  ];
}

function onFailoverReport({ leases, journal, metrics, feed, logs, announce }: DaemonParts, r: FailoverReport): void {
  // With hosts to notify, the notifier announces the address before its first SM_NOTIFY; without
  // any, a client whose neighbour cache still names the old node would time out for seconds.
  if (r.type === 'up' && r.monitors === 0) void announce(r.address);
  if (r.type === 'down') {
    // Dropped and closed here: another node may serve it now, and write its journal once this
    // node's last records of it are durable.
    if (journal) {
      journal.release(r.address).then(
        () => leases.release(r.address),
        (err: unknown) => {
          logs.root.error({ address: r.address, err: (err as Error).message }, `journal of ${r.address}: releasing it failed: ${(err as Error).message}`);
          leases.release(r.address);
        },
      );
    } else leases.release(r.address);
    metrics.observeDrop(r.source as DropTrigger, r.counts.locks, r.ms);
  } else if (r.type === 'notified') {
    metrics.observeNotify(r.address, r.notified, r.failed.length);
  }
  const e = describeReport(r);
  if (e) feed.emit(e);
}

/** Another host answering ARP for an address that just arrived here: logged and counted, not acted on. */
async function probeDuplicate({ logs, metrics }: DaemonParts, address: string, ifindex: number): Promise<void> {
  const r = await arpProbe(address, ifindex);
  if ('unavailable' in r) logs.root.debug({ address, reason: r.unavailable }, `no duplicate address detection for ${address}: ${r.unavailable}`);
  else if (r.duplicate) {
    metrics.observeDuplicateAddress(address);
    logs.root.error({ address, mac: r.mac }, `${address} arrived here but another host (${r.mac}) answers ARP for it: two nodes with one address?`);
  }
}
