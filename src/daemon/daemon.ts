// lockdropd's composition: the one file where the parts meet.
//  - A packet enters: RpcServer (NLM on nlmPort, statd on nsmPort), one UDP socket and TCP
//    listener per server address, each call carrying the address it arrived on.
//  - A lock lives: the NLM service asks the LockTable, whose exportOf is the exports table and
//    whose export policy (client networks, secure ports) the NLM service consults per request;
//    hosts are monitored through Nsm (durable records per server address).
//  - An address event turns into a drop: watch sources → AddressEvents → FailoverController
//    (drop, listeners, grace, state number, SM_NOTIFY); a host's reboot (SM_NOTIFY in) →
//    LockTable.dropByHost.
// Around them: metrics, the control socket, reload (SIGHUP) and a graceful stop.
import { lookup } from 'node:dns/promises';
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { Subject, map, merge, type Observable, type Subscription } from 'rxjs';
import type { Logger } from 'pino';
import { ExportsTable } from '../exports';
import { FailoverController, dropLine, plural, type FailoverReport } from '../failover';
import { LockTable, hostKey, type DropCounts, type GraceScope, type HeldLock, type LockChange } from '../locks';
import { NLM_PROG, NLM_VERSIONS, callbackCredential, createNlmService, type NlmService } from '../nlm';
import { Nsm, NsmStore, NODE_IDENTITY, RpcNsmSender, createNsmProgram, neighbourAnnouncer, NSM_PROGRAM, NSM_VERSION } from '../nsm';
import { normaliseAddress } from '../net';
import { RpcClientPool, RpcServer, type RpcbindEntry, type RpcServerEvent } from '../rpc';
import { readLocalAddresses } from '../watch';
import { nowMs, type AddressEvent } from '../watch/types';
import { checkAddressTarget, checkExportTarget, type AddressView } from './admin';
import { changedKeys, ConfigError, RELOADABLE, type Config } from './config';
import { ControlServer, type ControlHandlers } from './control';
import { arpProbe } from './dad';
import { AddressLeases } from './lease';
import { acquireInstanceLock, type InstanceLock } from './lockfile';
import { Metrics, type DropTrigger, type MetricsSnapshot } from './metrics';
import type { AddressStatus, DropReport, DropTarget, LocksFilter, LockView, MonitorView, ReloadReport, StatusReport, WatchEvent } from './protocol';
import { NodeAddresses, SharedListeners } from './node';
import { arrivalOutcomes, arrivalsApplied, presentAddresses, statusLine, type Readiness } from './readiness';
import { RpcbindKeeper } from './rpcbind-owner';
import { createAddressWatch, type AddressWatch } from './sources';
import { checkHandleFormats, exportSpecs, exportsLeaving, openDaemonFiles, type DaemonFiles } from './files';
import { ExportError } from '../files';
import { VERSION } from './version';
import { withoutDropReleases } from './watch-stream';

const LOOPBACK = '127.0.0.1';

/** What the command running the daemon gives it beyond the configuration. */
export interface DaemonHooks {
  /** Reads the configuration again (file, then flags) for a reload; throws ConfigError. */
  loadConfig?: () => Config;
  /** sd_notify: READY=1 once serving, RELOADING=1 around reloads. */
  readiness?: Readiness;
}

/** How long READY=1 waits for the addresses present at start before it is sent anyway (with a warning). */
const ARRIVALS_TIMEOUT_MS = 30_000;

/** SM_MON of a host name: resolved as statd does (getaddrinfo: the hosts file, then DNS), in bounded time. */
function resolveHost(name: string): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), 5_000)));
  return Promise.race([lookup(name).then((r) => r.address, () => undefined), late]).finally(() => clearTimeout(timer));
}

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
class PartLogs {
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

const iso = (ms: number | null | undefined): string | null => (ms === null || ms === undefined ? null : new Date(ms).toISOString());

export class Daemon {
  private readonly startedAt = Date.now();
  private readonly watchEvents = new Subject<WatchEvent>();
  private readonly subs: Subscription[] = [];
  private rpcbind: RpcbindKeeper | undefined;
  private stopping: Promise<void> | undefined;
  private ready = false;
  private hooks: DaemonHooks = {};
  private leases!: AddressLeases;
  private readonly control: ControlServer;
  private readonly log: Logger;

  private constructor(
    private cfg: Config,
    private readonly logs: PartLogs,
    private exports: ExportsTable,
    private readonly lock: InstanceLock,
    private readonly nlmServer: RpcServer,
    private readonly nsmServer: RpcServer,
    private readonly table: LockTable,
    private readonly nlm: NlmService,
    private readonly nsm: Nsm,
    private readonly failover: FailoverController,
    private readonly watch: AddressWatch,
    private readonly node: NodeAddresses,
    private readonly metrics: Metrics,
    private readonly files: DaemonFiles,
  ) {
    this.log = logs.root;
    this.control = new ControlServer({ path: cfg.control, handlers: this.handlers(), log: logs.of('control') });
  }

  /** Builds and starts everything; on failure undoes what was started and throws StartupError. */
  static async start(cfg: Config, log: Logger, hooks: DaemonHooks = {}): Promise<Daemon> {
    let lock: InstanceLock;
    try {
      mkdirSync(cfg.stateDir, { recursive: true, mode: 0o755 });
      lock = acquireInstanceLock(cfg.stateDir);
    } catch (err) {
      throw new StartupError((err as Error).message);
    }
    const undo: (() => unknown)[] = [() => lock.release()];
    try {
      return await Daemon.compose(cfg, log, lock, undo, hooks);
    } catch (err) {
      for (const f of undo.reverse()) await Promise.resolve(f()).catch(() => undefined);
      if (err instanceof ExportError) throw new StartupError(err.message, true);
      throw err instanceof StartupError ? err : new StartupError((err as Error).message);
    }
  }

  private static async compose(cfg: Config, log: Logger, lock: InstanceLock, undo: (() => unknown)[], hooks: DaemonHooks): Promise<Daemon> {
    const logs = new PartLogs(log);
    const exports = new ExportsTable(cfg.exports, { byteOrder: cfg.fhByteOrder, unknownHandles: cfg.unknownHandles });
    // Late-bound: the daemon swaps the exports table on reload, the table and service refer to each other.
    const ref = { exports, nlm: undefined as NlmService | undefined, daemon: undefined as Daemon | undefined, watch: undefined as AddressWatch | undefined };

    const metrics = new Metrics(() => ref.daemon!.metricsSnapshot());
    const rpcOptions = { onEvent: (e: RpcServerEvent) => metrics.observeRpc(e), log: logs.of('rpc'), maxConnections: cfg.connections.max, maxConnectionsPerPeer: cfg.connections.perPeer };
    const nlmServer = new RpcServer(rpcOptions);
    const nsmServer = new RpcServer(rpcOptions);
    nlmServer.listen({ port: cfg.nlmPort });
    nsmServer.listen({ port: cfg.nsmPort });
    undo.push(() => nlmServer.close(), () => nsmServer.close());

    // A lock lives here.
    const store = new NsmStore(cfg.stateDir, { log: logs.of('nsm') });
    const nsm = new Nsm({
      store,
      sender: new RpcNsmSender({ log: logs.of('nsm'), announce: neighbourAnnouncer({ log: logs.of('nsm') }) }),
      log: logs.of('nsm'),
      monName: (a) => (ref.daemon?.cfg ?? cfg).monNames[a],
      // A floating address's hosts move with it; every other address's are the node's.
      identity: (a) => (ref.watch?.isFloating(a) ? a : NODE_IDENTITY),
      resolve: resolveHost,
      // Getters: Nsm reads them at each notify (SM_SIMU_CRASH included), so a reload applies.
      get notifyTimeoutMs() { return (ref.daemon?.cfg ?? cfg).notify.timeout * 1000; },
      get notifyConcurrency() { return (ref.daemon?.cfg ?? cfg).notify.concurrency; },
    });
    undo.push(() => nsm.close());
    // A lock lives on the file too: the table decides, the files part carries it to the kernel.
    const files = openDaemonFiles(cfg, () => ref.exports, logs.of('files'));
    undo.push(() => files.files?.setExports([]));
    const table = new LockTable({
      exportOf: (fh) => ref.exports.exportOf(fh),
      onBlockGranted: (g) => ref.nlm?.onBlockGranted(g),
      locker: files.files,
    });
    const caller = new RpcClientPool({ cred: callbackCredential(hostname()) });
    undo.push(() => caller.close());
    const nlm = createNlmService({
      table,
      rpc: caller,
      monitor: nsm,
      logger: logs.of('nlm'),
      exportPolicy: (fh, peer) => {
        const d = ref.exports.check(fh, peer);
        if (!d.allowed) log.debug({ export: d.exportId ?? null, client: peer.address, port: peer.port, reason: d.reason }, 'export policy refused a request');
        // check() already applied the export's secure-port rule.
        return { allowed: d.allowed, secure: false };
      },
    });
    ref.nlm = nlm;
    undo.push(() => nlm.close());
    for (const p of metrics.instrumentNlm(nlm.programs)) nlmServer.register(p);
    nsmServer.register(createNsmProgram({ nsm, log: logs.of('nsm') }));

    // A packet enters here: loopback always (local tools, rpcinfo, this node's own lockd); the
    // node's other addresses and the floating ones follow events.
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
      throw new StartupError(portError('NLM', cfg.nlmPort, err));
    }
    try {
      await nsmServer.addAddress(LOOPBACK);
    } catch (err) {
      throw new StartupError(portError('NSM (statd)', cfg.nsmPort, err));
    }

    // An address event turns into a drop here.
    const failover = new FailoverController({ listeners: listeners.of('failover'), locks: table, monitors: {
      activate: (a) => nsm.activate(a),
      bumpState: (a) => nsm.bumpState(a),
      notify: (a) => nsm.notify(a),
      forgetClients: (a) => {
        nlm.forgetAddress(a);
        nsm.stopMonitoring(a);
      },
      graceEnded: (a) => nsm.graceEnded(a),
    }, graceSeconds: () => ref.daemon?.cfg.grace ?? cfg.grace, log: logs.of('failover') });
    undo.push(() => failover.close());
    const watch = createAddressWatch(cfg, logs.of('watch'));
    ref.watch = watch;
    undo.push(() => watch.close());
    // Split brain: an address another live node holds the lease of is not served here.
    const leases = new AddressLeases({ stateDir: cfg.stateDir, node: hostname(), leaseMs: cfg.leaseSeconds * 1000, log: logs.of('lease'), onConflict: (a) => metrics.observeLeaseConflict(a) });
    undo.push(() => leases.close());
    const node = new NodeAddresses({
      listeners: listeners.of('node'),
      monitors: nsm,
      grace: table.grace,
      graceSeconds: () => ref.daemon?.cfg.grace ?? cfg.grace,
      isFloating: (a) => watch.isFloating(a),
      log: logs.of('node'),
    });

    const daemon = new Daemon(cfg, logs, exports, lock, nlmServer, nsmServer, table, nlm, nsm, failover, watch, node, metrics, files);
    ref.daemon = daemon;
    daemon.hooks = hooks;
    daemon.leases = leases;
    await daemon.control.listen().catch((err: Error) => {
      throw new StartupError(`control socket: ${err.message}`);
    });
    undo.push(() => daemon.control.close());
    let metricsPort: number | null = null;
    if (cfg.metrics) {
      metricsPort = await metrics.listen(cfg.metrics).catch((err: NodeJS.ErrnoException) => {
        throw new StartupError(`metrics address ${cfg.metrics}: ${err.code === 'EADDRINUSE' ? 'in use by another process' : err.message}`);
      });
      undo.push(() => metrics.close());
    }

    // One lockdropd per rpcbind: refused while another live lock manager holds NLM or statd.
    daemon.rpcbind = new RpcbindKeeper({ mode: cfg.rpcbind, entries: () => daemon.rpcbindEntries(), log: logs.of('rpcbind') });
    await daemon.rpcbind.start();
    undo.push(() => daemon.rpcbind?.stop());
    // Registered, so the node's hosts can find us again when told: serve its addresses and notify.
    const present = await readLocalAddresses().then((as) => as.flatMap((a) => (a.local === undefined ? [] : [a.local])), () => []);
    await node.start(present, [LOOPBACK]);
    // The floating ones arrive through failover: READY=1 waits for them below.
    const floating = cfg.replay ? [] : await presentAddresses((a) => watch.isFloating(a));
    daemon.wire();
    // Ready once every address present now is served (reports come a tick after the events: none is missed).
    const outcomes$ = merge(arrivalOutcomes(failover.reports$, watch.events$), leases.waiting$.pipe(map((w) => ({ address: w.address, failed: true }))));
    const arrivals = await arrivalsApplied(floating, outcomes$, ARRIVALS_TIMEOUT_MS);
    if (arrivals.pending.length || arrivals.failed.length) log.warn(arrivals, `ready, but not serving ${[...arrivals.pending, ...arrivals.failed].join(', ')}: ${arrivals.pending.length ? `no arrival within ${ARRIVALS_TIMEOUT_MS / 1000} s` : 'their arrival failed or waits for another node'}`);
    daemon.ready = true;
    hooks.readiness?.ready(statusLine(daemon.status()));
    log.info({ nlmPort: nlmServer.port, nsmPort: nsmServer.port, control: cfg.control, metrics: cfg.metrics, metricsPort, stateDir: cfg.stateDir, grace: cfg.grace }, `lockdropd ${VERSION} started: NLM port ${nlmServer.port}, statd port ${nsmServer.port}`);
    return daemon;
  }

  /** Event plumbing between the parts: address events to failover, reboots to drops, everything to metrics and `watch`. */
  private wire(): void {
    const { log, metrics, table, nsm, nlm } = this;
    // Failover subscribes first: the sources start with it and their first snapshot is its.
    this.subs.push(this.failover.run(this.leases.gate(this.watch.events$)), this.watch.all$.subscribe((e) => this.node.handle(e)));
    this.subs.push(
      nsm.rebooted$.subscribe((r) => {
        const key = hostKey(r.monName, r.address);
        const counts = table.dropByHost(key);
        nlm.forgetHost(key);
        log.info({ host: key, state: r.state, ...counts }, `${key} rebooted (state ${r.state}): released ${plural(counts.locks, 'lock')}, ${plural(counts.shares, 'share')}`);
        this.emit({ kind: 'drop', address: r.address, message: `${key} rebooted: released ${plural(counts.locks, 'lock')}, ${plural(counts.shares, 'share')}`, host: key, ...counts });
      }),
      this.watch.events$.subscribe((e) => {
        metrics.observeAddressEvent(e.source, e.type);
        if (e.type === 'up' && e.family === 4 && !this.cfg.replay) void this.probeDuplicate(e.address, e.ifindex);
        this.emit({ kind: 'address', address: e.address, message: describeEvent(e), type: e.type, source: e.source, pid: e.pid, comm: e.comm });
      }),
      this.watch.overflows$.subscribe((o) => {
        metrics.observeOverflow(o.source);
        log.warn({ source: o.source, reason: o.reason }, `${o.source}: events lost (${o.reason ?? 'overflow'}), resynchronising`);
        this.emit({ kind: 'overflow', message: `${o.source} lost events (${o.reason ?? 'overflow'}), resynchronised` });
      }),
      this.failover.reports$.subscribe((r) => this.onFailoverReport(r)),
    );
  }

  /** Another host answering ARP for an address that just arrived here: logged and counted, not acted on. */
  private async probeDuplicate(address: string, ifindex: number): Promise<void> {
    const r = await arpProbe(address, ifindex);
    if ('unavailable' in r) this.log.debug({ address, reason: r.unavailable }, `no duplicate address detection for ${address}: ${r.unavailable}`);
    else if (r.duplicate) {
      this.metrics.observeDuplicateAddress(address);
      this.log.error({ address, mac: r.mac }, `${address} arrived here but another host (${r.mac}) answers ARP for it: two nodes with one address?`);
    }
  }

  private onFailoverReport(r: FailoverReport): void {
    switch (r.type) {
      case 'down':
        // Dropped and closed here: another node may serve it now.
        this.leases.release(r.address);
        this.metrics.observeDrop(r.source as DropTrigger, r.counts.locks, r.ms);
        this.emit({ kind: 'drop', address: r.address, message: dropLine(r), trigger: r.source, ...r.counts, ms: r.ms });
        break;
      case 'notified':
        this.metrics.observeNotify(r.address, r.notified, r.failed.length);
        this.emit({ kind: 'notify', address: r.address, message: `${r.address}: SM_NOTIFY (state ${r.state}) answered by ${plural(r.notified, 'host')}${r.failed.length ? `, not by ${r.failed.join(', ')}` : ''} in ${r.ms.toFixed(0)} ms`, state: r.state, notified: r.notified, failed: r.failed });
        break;
      case 'up':
        this.emit({ kind: 'address', address: r.address, message: `${r.address} ready: state ${r.state}, ${plural(r.monitors, 'host')} to notify, grace ${r.graceEndsAt ? `until ${iso(r.graceEndsAt)}` : 'not needed'}`, state: r.state });
        break;
      case 'error':
        this.emit({ kind: 'address', address: r.address, message: `${r.step} failed for ${r.address}: ${r.error}` });
        break;
      default:
        break; // draining / drain-ended are reported from the address event itself
    }
  }

  /** Lock table changes for `watch`: subscribed only while someone watches (free otherwise). */
  private lockChanges(): Observable<WatchEvent> {
    return this.table.changes.pipe(
      withoutDropReleases(), // drops are reported in one line, with their trigger and timing
      map((c): WatchEvent => describeChange(c)),
    );
  }

  private emit(e: Omit<WatchEvent, 'at'>): void {
    if (this.watchEvents.observed) this.watchEvents.next({ at: new Date().toISOString(), ...e } as WatchEvent);
  }

  private rpcbindEntries(): RpcbindEntry[] {
    const out: RpcbindEntry[] = [];
    for (const protocol of ['udp', 'tcp'] as const) {
      for (const vers of NLM_VERSIONS) out.push({ prog: NLM_PROG, vers, protocol, port: this.nlmServer.port });
      out.push({ prog: NSM_PROGRAM, vers: NSM_VERSION, protocol, port: this.nsmServer.port });
    }
    return out;
  }

  metricsSnapshot(): MetricsSnapshot {
    const files = this.files.files?.stats();
    return { status: this.status(), files: { open: files?.open ?? 0, waits: files?.waits ?? 0, budgetRefusals: files?.budgetRefusals ?? 0 } };
  }

  // ---- the operator's commands ----

  private handlers(): ControlHandlers {
    return {
      status: () => this.status(),
      locks: (f) => this.locks(f),
      drop: async (t) => this.drop(t),
      grace: (action, t, seconds) => {
        let scope: GraceScope;
        if (t.ip !== undefined) {
          scope = { kind: 'address', address: normaliseAddress(t.ip) };
          checkAddressTarget(`grace ${action}`, scope.address, this.addressView());
          if (action === 'start') this.failover.startGrace(scope.address, seconds ?? this.cfg.grace);
          else this.failover.endGrace(scope.address);
        } else {
          const exportId = t.export!;
          checkExportTarget(exportId, this.exports.list().map((e) => e.path));
          scope = { kind: 'export', exportId };
          if (action === 'start') this.table.grace.start(scope, seconds ?? this.cfg.grace);
          else this.table.grace.end(scope);
        }
        const target = scope.kind === 'address' ? scope.address : scope.exportId;
        const g = this.table.grace.active().find((p) => JSON.stringify(p.scope) === JSON.stringify(scope));
        this.log.info({ scope: scope.kind, target, action, seconds: seconds ?? null }, `grace ${action} for ${scope.kind} ${target} by the operator`);
        return { target, scope: scope.kind, grace: iso(g?.endsAt) };
      },
      monitors: (ip) =>
        this.nsm.records(ip === undefined ? undefined : this.nsm.identityOf(ip)).map((r): MonitorView => ({ server: r.serverAddress, host: r.monName, address: r.address, state: r.state ?? null })),
      notify: async (ip) => {
        const address = normaliseAddress(ip);
        const r = await this.failover.notify(address);
        return { address, notified: r.notified, failed: r.failed };
      },
      watch: () => merge(this.watchEvents, this.lockChanges()),
      reload: () => this.reloadFromFile(),
    };
  }

  private addressView(): AddressView {
    return {
      manages: (a) => this.watch.isFloating(a),
      holds: (a) => this.failover.holds(a),
      hasLocks: (a) => this.table.stats().byAddress.has(a),
    };
  }

  status(): StatusReport {
    const stats = this.table.stats();
    const known = this.failover.status();
    const graces = new Map<string, number>();
    let globalGrace: number | null = null;
    const exportGraces: StatusReport['exportGraces'] = [];
    for (const p of this.table.grace.active()) {
      if (p.scope.kind === 'address') graces.set(p.scope.address, p.endsAt);
      else if (p.scope.kind === 'export') exportGraces.push({ export: p.scope.exportId, grace: iso(p.endsAt)! });
      else globalGrace = p.endsAt;
    }
    const names = new Set<string>([...known.keys(), ...stats.byAddress.keys(), ...this.nsm.addresses(), ...graces.keys(), ...this.leases.waitingAddresses()]);
    const addresses = [...names].sort().map((address): AddressStatus => ({
      address,
      present: this.failover.holds(address),
      draining: known.get(address) === 'draining',
      grace: iso(graces.get(address)),
      locks: stats.byAddress.get(address)?.locks ?? 0,
      monitors: this.nsm.recordCount(address),
      heldBy: this.leases.heldBy(address) ?? null,
    }));
    return {
      pid: process.pid,
      version: VERSION,
      startedAt: new Date(this.startedAt).toISOString(),
      ready: this.ready,
      nlmPort: this.nlmServer.port,
      nsmPort: this.nsmServer.port,
      rpcbind: this.rpcbind?.registered ?? false,
      sources: this.watch.sources,
      addresses,
      locks: stats.locks,
      blocked: stats.blocked,
      monitors: addresses.reduce((n, a) => n + a.monitors, 0),
      exportGraces,
      globalGrace: iso(globalGrace),
      files: this.filesStatus(),
    };
  }

  private filesStatus(): StatusReport['files'] {
    const f = this.files.files;
    const s = f?.stats();
    return { exports: f?.realExports() ?? [], unavailable: this.files.unavailable, open: s?.open ?? 0, waits: s?.waits ?? 0, maxOpen: this.files.maxOpen, budgetRefusals: s?.budgetRefusals ?? 0 };
  }

  /** Host keys matching `name@address`, an address, or a caller name. */
  private hostsMatching(client: string): string[] {
    const keys = new Set<string>();
    for (const l of this.table.locks()) keys.add(l.owner.host);
    for (const s of this.table.shares()) keys.add(s.owner.host);
    for (const b of this.table.blocked()) keys.add(b.request.owner.host);
    return [...keys].filter((k) => k === client || k.endsWith(`@${client}`) || k.startsWith(`${client}@`));
  }

  locks(f: LocksFilter): LockView[] {
    const hosts = f.client === undefined ? undefined : new Set(this.hostsMatching(f.client));
    const out: LockView[] = [];
    const source = this.table.locks({ serverAddress: f.ip === undefined ? undefined : normaliseAddress(f.ip), exportId: f.export });
    for (const l of source) if (!hosts || hosts.has(l.owner.host)) out.push(lockView(l));
    return out;
  }

  private async drop(t: DropTarget): Promise<DropReport> {
    const start = nowMs();
    let target: string;
    let counts: DropCounts;
    if (t.ip !== undefined) {
      target = normaliseAddress(t.ip);
      checkAddressTarget('drop', target, this.addressView());
      counts = this.table.dropByServerAddress(target);
      // No GRANTED may go on for what was dropped (nor undo a lock taken again meanwhile).
      this.nlm.forgetAddress(target);
    } else if (t.client !== undefined) {
      const hosts = this.hostsMatching(t.client);
      target = `client ${t.client}`;
      counts = sum(hosts.map((h) => this.table.dropByHost(h)));
      for (const h of hosts) this.nlm.forgetHost(h);
    } else {
      const exportId = t.export ?? (t.fsid !== undefined ? this.exports.byFsid(t.fsid) : undefined);
      if (exportId === undefined) throw new Error(`no export is configured with fsid ${t.fsid}`);
      checkExportTarget(exportId, this.exports.list().map((e) => e.path));
      target = `export ${exportId}`;
      counts = this.table.dropByExport(exportId);
      // Nothing of the export stays open: its filesystem can be unmounted now.
      this.files.files?.closeExport(exportId);
    }
    const ms = nowMs() - start;
    this.metrics.observeDrop('admin', counts.locks, ms);
    this.log.info({ target, trigger: 'admin', ...counts, ms: Number(ms.toFixed(3)) }, `${target}: dropped ${plural(counts.locks, 'lock')} of ${plural(counts.clients, 'client')} by the operator in ${ms.toFixed(1)} ms`);
    this.emit({ kind: 'drop', message: `${target}: dropped ${plural(counts.locks, 'lock')} of ${plural(counts.clients, 'client')} (operator) in ${ms.toFixed(1)} ms`, trigger: 'admin', ...counts, ms });
    return { target, ...counts, ms };
  }

  // ---- reload and stop ----

  /** SIGHUP and `lockdropctl reload`: reads the file again and applies it; throws ConfigError and keeps the running configuration when it is invalid. */
  reloadFromFile(): ReloadReport {
    const { loadConfig, readiness } = this.hooks;
    readiness?.reloading();
    try {
      if (!loadConfig) throw new Error('this daemon was started without a configuration to reload');
      return this.reload(loadConfig());
    } catch (err) {
      const problems = (err as { problems?: string[] }).problems ?? [];
      this.log.error({ problems }, `reload refused, keeping the running configuration: ${(err as Error).message}`);
      throw err;
    } finally {
      readiness?.ready(statusLine(this.status()));
    }
  }

  /** Applies a new configuration's reloadable keys; the caller validated it. No lock is dropped. */
  reload(next: Config): ReloadReport {
    const changed = changedKeys(this.cfg, next);
    const later = changed.filter((k) => !RELOADABLE.includes(k));
    if (changed.includes('exports') || changed.includes('fhByteOrder') || changed.includes('unknownHandles')) {
      const files = this.files.files;
      if (!files && next.exports.some((e) => e.fileLocks)) {
        throw new ConfigError('reload refused', [`exports: ${this.files.unavailable} (or set fileLocks: false)`]);
      }
      const table = new ExportsTable(next.exports, { byteOrder: next.fhByteOrder, unknownHandles: next.unknownHandles });
      try {
        // Opens the new exports' roots first: a bad one refuses the reload with nothing changed.
        checkHandleFormats(next);
        files?.setExports(exportSpecs(next));
      } catch (err) {
        if (err instanceof ExportError) throw new ConfigError('reload refused', [`exports: ${err.message}`]);
        throw err;
      }
      this.exports = table;
      for (const path of exportsLeaving(this.cfg, next)) {
        const counts = this.table.dropByExport(path);
        if (counts.locks + counts.shares + counts.blocked) this.log.info({ export: path, ...counts }, `export ${path} removed or changed: dropped ${counts.locks} locks`);
      }
    }
    if (changed.includes('maxOpenFiles') && this.files.files) {
      this.files.maxOpen = next.maxOpenFiles ?? this.files.maxOpen;
      this.files.files.setBudget(this.files.maxOpen);
    }
    this.logs.setLevel(next.logLevel);
    this.log.debug({ config: next }, 'new configuration');
    this.watch.reconfigure(next);
    this.node.refresh();
    this.cfg = { ...next, ...Object.fromEntries(later.map((k) => [k, this.cfg[k]])) } as Config;
    this.log.info({ changed, needsRestart: later }, `configuration reloaded${changed.length ? `: ${changed.join(', ')}` : ' (no change)'}${later.length ? `; ${later.join(', ')}: at the next start` : ''}`);
    this.emit({ kind: 'reload', message: `configuration reloaded${changed.length ? `: ${changed.join(', ')}` : ' (no change)'}` });
    return { changed, needsRestart: later };
  }

  get config(): Config {
    return this.cfg;
  }

  /** Graceful stop: stop accepting, unregister from rpcbind, flush records, close probes. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info('stopping');
      this.hooks.readiness?.stopping();
      for (const s of this.subs) s.unsubscribe();
      this.watch.close();
      await this.control.close();
      await Promise.all([this.nlmServer.close(), this.nsmServer.close()]);
      await this.rpcbind?.stop();
      // An arrival still being applied may be writing its state number: let it finish first.
      await this.failover.settle();
      this.failover.close();
      this.leases.close();
      this.nlm.close();
      // The kernel lets go of every lock: the descriptions close (the table's state goes with the process).
      this.files.files?.setExports([]);
      await this.nsm.close();
      await this.metrics.close();
      this.watchEvents.complete();
      this.lock.release();
      this.log.info('stopped');
    })();
    return this.stopping;
  }
}

function portError(what: string, port: number, err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'EADDRINUSE') return `${what} port ${port} is already in use on ${LOOPBACK} (another lock manager running? choose another port)`;
  if (e.code === 'EACCES') return `${what} port ${port} needs privileges to bind`;
  return `${what} port ${port}: ${e.message}`;
}

function sum(all: DropCounts[]): DropCounts {
  return all.reduce((a, c) => ({ locks: a.locks + c.locks, shares: a.shares + c.shares, blocked: a.blocked + c.blocked, clients: a.clients + c.clients, woken: a.woken + c.woken }), { locks: 0, shares: 0, blocked: 0, clients: 0, woken: 0 });
}

function lockView(l: HeldLock): LockView {
  const at = l.owner.host.lastIndexOf('@');
  return {
    server: l.serverAddress,
    client: l.owner.host,
    callerName: l.owner.host.slice(0, at),
    clientAddress: l.owner.host.slice(at + 1),
    svid: l.owner.svid,
    oh: l.owner.oh.toString('hex'),
    offset: l.offset.toString(),
    length: l.length.toString(),
    exclusive: l.exclusive,
    fh: l.fh.toString('hex'),
    export: l.exportId ?? null,
    since: new Date(l.since).toISOString(),
  };
}

function describeEvent(e: AddressEvent): string {
  const by = e.comm ? ` by ${e.comm}[${e.pid}]` : '';
  const what = { up: 'arrived', down: 'removed', draining: 'removal requested', 'drain-ended': 'removal did not happen' }[e.type];
  return `${e.address} ${what}${by} (${e.source}, seen in ${(e.detectedAt - e.at).toFixed(1)} ms)`;
}

function describeChange(c: Exclude<LockChange, { type: 'dropped' }>): WatchEvent {
  const at = new Date().toISOString();
  if (c.type === 'grace') {
    const scope = c.period.scope.kind === 'address' ? c.period.scope.address : c.period.scope.kind === 'export' ? `export ${c.period.scope.exportId}` : 'every address';
    return { at, kind: 'grace', address: c.period.scope.kind === 'address' ? c.period.scope.address : undefined, message: `grace ${c.state} for ${scope}${c.state === 'started' ? ` until ${iso(c.period.endsAt)}` : ''}` };
  }
  if (c.type === 'blocked') {
    const r = c.request;
    return { at, kind: 'blocked', address: r.serverAddress, message: `${r.owner.host} svid ${r.owner.svid} waits for ${r.exclusive ? 'write' : 'read'} ${r.offset}+${r.length} via ${r.serverAddress}` };
  }
  const l = c.lock;
  const kind = c.type === 'granted' ? 'grant' : 'release';
  return { at, kind, address: l.serverAddress, message: `${c.type === 'granted' ? (c.viaBlock ? 'granted (was blocked)' : 'granted') : 'released'} ${l.exclusive ? 'write' : 'read'} ${l.offset}+${l.length} to ${l.owner.host} svid ${l.owner.svid} via ${l.serverAddress}${l.exportId ? ` on ${l.exportId}` : ''}` };
}
