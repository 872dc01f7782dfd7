// lockdropd's lifecycle: start (compose, then serve: control socket, metrics, rpcbind, the node's
// addresses, READY=1 once the present ones are served), reload (SIGHUP) and a graceful stop. The
// parts and how they meet: compose.ts; the operator's commands: commands.ts.
import { mkdirSync } from 'node:fs';
import { map, merge, type Subscription } from 'rxjs';
import type { Logger } from 'pino';
import type { ExportsReport, ReloadReport, RestartReport, StatusReport } from '../control';
import { ExportsTable, mergeExports, type EffectiveExport } from '../exports';
import { ExportError } from '../files';
import { readLocalAddresses } from '../watch';
import { OperatorCommands } from './commands';
import { LOOPBACK, StartupError, compose, wire, type DaemonParts, type Undo } from './compose';
import { changedKeys, ConfigError, RELOADABLE, type Config } from './config';
import { ControlServer } from './control';
import { ExportsFollower, type FollowedExports } from './exports-follow';
import { checkHandleFormats, exportSpecs, exportsLeaving, reloadedBudget } from './files';
import { acquireInstanceLock, type InstanceLock } from './lockfile';
import { missingCapabilities, readPrivileges } from './privileges';
import type { MetricsSnapshot } from './metrics';
import { arrivalOutcomes, arrivalsApplied, presentAddresses, statusLine, type Readiness } from './readiness';
import { handToStore, quiesceWaits, reexec, removeFromStore, restoreTable, takeSnapshot, tellReplaced, type HandOver } from './restart';
import { VERSION } from './version';

export { StartupError } from './compose';

/** What the command running the daemon gives it beyond the configuration. */
export interface DaemonHooks {
  /** Reads the configuration again (file, then flags) for a reload; throws ConfigError. */
  loadConfig?: () => Config;
  /** sd_notify: READY=1 once serving, RELOADING=1 around reloads. */
  readiness?: Readiness;
  /** The previous lockdropd's descriptions and snapshot (a planned restart, restart.ts), checked. */
  handOver?: HandOver;
  /** `lockdropctl restart` was answered: the caller hands over (handOver) and exits. */
  onRestart?: () => void;
}

/** How long the previous lockdropd waits for the one it started to be ready. */
const RESTART_READY_MS = 60_000;

/** How long READY=1 waits for the addresses present at start before it is sent anyway (with a warning). */
const ARRIVALS_TIMEOUT_MS = 30_000;

export class Daemon {
  private readonly startedAt = Date.now();
  private subs: Subscription[] = [];
  private stopping: Promise<void> | undefined;
  private ready = false;
  private readonly commands: OperatorCommands;
  private readonly control: ControlServer;
  private readonly log: Logger;
  /** The configuration as the file (and flags) give it; live.config() holds it with the followed exports merged in. */
  private explicit: Config;
  /** The effective exports and where each came from (`lockdropctl exports`). */
  private merged: EffectiveExport[];

  private constructor(
    private readonly parts: DaemonParts,
    private readonly lock: InstanceLock,
    private readonly hooks: DaemonHooks,
    explicit: Config,
    private readonly follower: ExportsFollower | undefined,
  ) {
    this.explicit = explicit;
    this.merged = effectiveExports(explicit, follower?.current);
    this.log = parts.logs.root;
    this.commands = new OperatorCommands(parts, { startedAt: this.startedAt, ready: () => this.ready, reload: () => this.reloadFromFile(), exports: () => this.exports(), restart: () => this.restart() });
    this.control = new ControlServer({ path: parts.live.config().control, handlers: this.commands.handlers(), log: parts.logs.of('control') });
  }

  /** Builds and starts everything; on failure undoes what was started and throws StartupError. */
  static async start(cfg: Config, log: Logger, hooks: DaemonHooks = {}): Promise<Daemon> {
    const missing = missingCapabilities(cfg, readPrivileges());
    if (missing.length) throw new StartupError(`missing capabilities: ${missing.map((m) => `${m.capability} (${m.why})`).join(', ')}; run as root, or grant them (AmbientCapabilities= in the unit)`);
    let lock: InstanceLock;
    try {
      mkdirSync(cfg.stateDir, { recursive: true, mode: 0o755 });
      lock = acquireInstanceLock(cfg.stateDir);
    } catch (err) {
      throw new StartupError((err as Error).message);
    }
    const undo: Undo = [() => lock.release()];
    const h = hooks.handOver;
    // Resumed on the ports it had (the configured ones when not ephemeral), over the addresses present now.
    if (h) cfg = { ...cfg, nlmPort: cfg.nlmPort || h.snapshot.ports.nlm, nsmPort: cfg.nsmPort || h.snapshot.ports.nsm };
    const present = await readLocalAddresses().then((as) => as.flatMap((a) => (a.local === undefined ? [] : [a.local])), () => []);
    try {
      let daemon: Daemon | undefined;
      // The NFS server's own exports are read before anything is built: the first table has them.
      const follower = cfg.exportsFrom
        ? new ExportsFollower({ ...cfg.exportsFrom, pollMs: cfg.exportsFrom.pollSeconds * 1000, log: log.child({ part: 'exports' }), onChange: () => daemon?.followedChanged() })
        : undefined;
      await follower?.start();
      undo.push(() => follower?.close());
      const read = follower?.current;
      const served = { ...cfg, exports: effectiveExports(cfg, read).map((m) => configEntry(m)) };
      const parts = await compose(served, log, undo, () => daemon!.metricsSnapshot());
      // Before any turn of the loop: loopback is already bound, a request must find the table whole.
      if (h) resume(parts, h, new Set([...present, LOOPBACK]), log);
      daemon = new Daemon(parts, lock, hooks, cfg, follower);
      // A change read while the parts were built had no daemon to go to.
      if (follower && follower.current !== read) daemon.followedChanged();
      await daemon.serve(undo, present);
      return daemon;
    } catch (err) {
      for (const f of undo.reverse()) await Promise.resolve(f()).catch(() => undefined);
      if (err instanceof ExportError) throw new StartupError(err.message, true);
      throw err instanceof StartupError ? err : new StartupError((err as Error).message);
    }
  }

  /** Control socket, metrics, rpcbind, then the node's addresses and the floating ones present now: READY=1 once they are served. */
  private async serve(undo: Undo, present: string[]): Promise<void> {
    const { live, metrics, rpcbind, node, failover, watch, leases, nlmServer, nsmServer } = this.parts;
    const cfg = live.config();
    await this.control.listen().catch((err: Error) => {
      throw new StartupError(`control socket: ${err.message}`);
    });
    undo.push(() => this.control.close());
    let metricsPort: number | null = null;
    if (cfg.metrics) {
      metricsPort = await metrics.listen(cfg.metrics).catch((err: NodeJS.ErrnoException) => {
        throw new StartupError(`metrics address ${cfg.metrics}: ${err.code === 'EADDRINUSE' ? 'in use by another process' : err.message}`);
      });
      undo.push(() => metrics.close());
    }
    // One lockdropd per rpcbind: refused while another live lock manager holds NLM or statd.
    await rpcbind.start();
    undo.push(() => rpcbind.stop());
    // Registered, so the node's hosts can find us again when told: serve its addresses and notify.
    const h = this.hooks.handOver;
    await node.start(present, [LOOPBACK], h !== undefined);
    // After a planned restart the floating addresses held before are held again as they were.
    const resumed = new Set(h?.snapshot.floating.filter((a) => present.includes(a) && watch.isFloating(a)));
    for (const a of resumed) await failover.resume(a);
    // The floating ones arrive through failover: READY=1 waits for them below.
    const floating = cfg.replay ? [] : (await presentAddresses((a) => watch.isFloating(a))).filter((a) => !resumed.has(a));
    this.subs = wire(this.parts);
    // Ready once every address present now is served (reports come a tick after the events: none is missed).
    const outcomes$ = merge(arrivalOutcomes(failover.reports$, watch.events$), leases.waiting$.pipe(map((w) => ({ address: w.address, failed: true }))));
    const arrivals = await arrivalsApplied(floating, outcomes$, ARRIVALS_TIMEOUT_MS);
    if (arrivals.pending.length || arrivals.failed.length) this.log.warn(arrivals, `ready, but not serving ${[...arrivals.pending, ...arrivals.failed].join(', ')}: ${arrivals.pending.length ? `no arrival within ${ARRIVALS_TIMEOUT_MS / 1000} s` : 'their arrival failed or waits for another node'}`);
    this.ready = true;
    this.hooks.readiness?.ready(statusLine(this.status()));
    // The lockdropd this one replaces (`lockdropctl restart`) exits now, whether its hand-over was usable or not.
    tellReplaced();
    this.log.info({ nlmPort: nlmServer.port, nsmPort: nsmServer.port, control: cfg.control, metrics: cfg.metrics, metricsPort, stateDir: cfg.stateDir, grace: cfg.grace }, `lockdropd ${VERSION} started: NLM port ${nlmServer.port}, statd port ${nsmServer.port}`);
  }

  status(): StatusReport {
    return this.commands.status();
  }

  metricsSnapshot(): MetricsSnapshot {
    return this.commands.metricsSnapshot();
  }

  /** The running configuration: what the parts read through Live at each use. */
  get config(): Config {
    return this.parts.live.config();
  }

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

  /** Applies a new configuration's reloadable keys; the caller validated it. No lock is dropped but those of exports that left. */
  reload(file: Config): ReloadReport {
    const { live, files: daemonFiles, logs, watch, node, feed, failover } = this.parts;
    const running = live.config();
    const merged = effectiveExports(file, this.follower?.current);
    const next = { ...file, exports: merged.map((m) => configEntry(m)) };
    const changed = changedKeys(running, next);
    const later = changed.filter((k) => !RELOADABLE.includes(k));
    if (changed.includes('exports') || changed.includes('fhByteOrder') || changed.includes('unknownHandles')) this.serveExports(running, next);
    if (changed.includes('maxOpenFiles') && daemonFiles.files) {
      daemonFiles.maxOpen = reloadedBudget(next);
      daemonFiles.files.setBudget(daemonFiles.maxOpen);
    }
    logs.setLevel(next.logLevel);
    this.log.debug({ config: next }, 'new configuration');
    const floatedBefore = [...failover.status()].filter(([, phase]) => phase !== 'down').map(([a]) => a);
    watch.reconfigure(next);
    node.refresh();
    this.keepLetGo(floatedBefore.filter((a) => !watch.isFloating(a)));
    live.replaceConfig({ ...next, ...Object.fromEntries(later.map((k) => [k, running[k]])) } as Config);
    this.explicit = file;
    this.merged = merged;
    this.log.info({ changed, needsRestart: later }, `configuration reloaded${changed.length ? `: ${changed.join(', ')}` : ' (no change)'}${later.length ? `; ${later.join(', ')}: at the next start` : ''}`);
    feed.emit({ kind: 'reload', message: `configuration reloaded${changed.length ? `: ${changed.join(', ')}` : ' (no change)'}` });
    return { changed, needsRestart: later };
  }

  /**
   * Serves a new exports table: throws ConfigError (nothing changed) when an export cannot be
   * served; the exports that left have their files closed and their locks dropped.
   */
  private serveExports(running: Config, next: Config): void {
    const { live, files: daemonFiles, table: locks } = this.parts;
    const files = daemonFiles.files;
    if (!files && next.exports.some((e) => e.fileLocks)) {
      throw new ConfigError('reload refused', [`exports: ${daemonFiles.unavailable} (or set fileLocks: false)`]);
    }
    let table: ExportsTable;
    try {
      table = new ExportsTable(next.exports, { byteOrder: next.fhByteOrder, unknownHandles: next.unknownHandles });
      // Opens the new exports' roots first: a bad one refuses the reload with nothing changed.
      checkHandleFormats(next);
      files?.setExports(exportSpecs(next));
    } catch (err) {
      if (err instanceof ExportError || !(err instanceof ConfigError)) throw new ConfigError('reload refused', [`exports: ${(err as Error).message}`]);
      throw err;
    }
    live.replaceExports(table);
    for (const path of exportsLeaving(running, next)) {
      const counts = locks.dropByExport(path);
      if (counts.locks + counts.shares + counts.blocked) this.log.info({ export: path, ...counts }, `export ${path} removed or changed: dropped ${counts.locks} locks`);
    }
  }

  /** The NFS server's export table changed: served at once, the configuration's exports still winning. */
  private followedChanged(): void {
    const { live, feed } = this.parts;
    const running = live.config();
    const merged = effectiveExports(this.explicit, this.follower?.current);
    const next = { ...running, exports: merged.map((m) => configEntry(m)) };
    const before = new Set(running.exports.map((e) => e.path));
    const after = new Set(next.exports.map((e) => e.path));
    const added = [...after].filter((p) => !before.has(p));
    const removed = [...before].filter((p) => !after.has(p));
    try {
      this.serveExports(running, next);
    } catch (err) {
      this.log.error({ problems: (err as ConfigError).problems ?? [] }, `exports from ${this.follower?.current.server}: not applied, keeping the running table: ${(err as Error).message}`);
      return;
    }
    live.replaceConfig(next);
    this.merged = merged;
    const message = `exports from ${this.follower?.current.server} (${this.follower?.file}): ${[added.length ? `added ${added.join(', ')}` : '', removed.length ? `removed ${removed.join(', ')}` : ''].filter(Boolean).join('; ') || 'options changed'}`;
    this.log.info({ added, removed }, message);
    feed.emit({ kind: 'reload', message });
  }

  /** `lockdropctl exports`: the effective table, where each entry came from, and the followed source's state. */
  exports(): ExportsReport {
    const f = this.follower?.current;
    return {
      exports: this.merged.map((m) => ({ ...m.entry, from: m.from, ...(m.overrides ? { overrides: m.overrides } : {}) })),
      source: f ? { server: f.server, file: f.file, readAt: f.readAt, error: f.error, notes: f.notes } : null,
    };
  }

  /** Waits for the looks at the followed table under way (tests). */
  async exportsSettled(): Promise<void> {
    await this.follower?.settled();
  }

  /**
   * Addresses failover held that a narrowed `addresses` lets go: they keep their locks and are
   * served as the node's own (node.refresh opened its hold on their listeners first). Their
   * leases go, so another node may float them.
   */
  private keepLetGo(addresses: string[]): void {
    const { listeners, leases, table } = this.parts;
    const byAddress = table.stats().byAddress;
    for (const a of addresses) {
      leases.release(a);
      listeners.of('failover').removeAddress(a).catch((err: Error) => this.log.warn({ address: a, err: err.message }, `${a}: ${err.message}`));
      const locks = byAddress.get(a)?.locks ?? 0;
      this.log.info({ address: a, locks }, `${a} is no longer floating: served as one of the node's own addresses, its locks kept`);
    }
  }

  /**
   * `lockdropctl restart`: answered at once, then the hand-over (handOver) to a lockdropd started
   * here. Under a service manager the manager restarts it (`systemctl restart`: the descriptions
   * go through its file descriptor store).
   */
  restart(): RestartReport {
    if (process.env.NOTIFY_SOCKET) throw new Error('run by a service manager: restart it with systemctl restart lockdropd (the locks are kept through its file descriptor store when the unit passes --fd-store)');
    if (!this.hooks.onRestart) throw new Error('this daemon was started without a way to restart itself');
    setImmediate(this.hooks.onRestart);
    return { pid: process.pid };
  }

  /**
   * A planned restart (restart.ts): serving stops, the kernel waits are cancelled, and the table's
   * snapshot with every open description goes to the next process — systemd's file descriptor
   * store (`store`: its socket) or a lockdropd started here, which this one waits for. The
   * descriptions are never closed: the kernel keeps every lock. Rejects when the hand-over
   * failed (the caller exits: a crash, which the journal covers).
   */
  handOver(store?: string): Promise<void> {
    this.stopping ??= (async () => {
      const { watch, nlmServer, nsmServer, failover, leases, nlm, files, nsm, metrics, feed, journal, table } = this.parts;
      const t0 = performance.now();
      this.log.info(`planned restart: handing every lock over to ${store ? "the service manager's file descriptor store" : 'a new lockdropd'}`);
      this.hooks.readiness?.stopping();
      for (const s of this.subs) s.unsubscribe();
      watch.close();
      await this.control.close();
      // Registered with rpcbind still: the next process takes the same ports.
      await Promise.all([nlmServer.close(), nsmServer.close()]);
      await failover.settle();
      const floating = [...failover.status()].filter(([, phase]) => phase !== 'down').map(([a]) => a);
      failover.close();
      leases.close();
      nlm.close();
      await quiesceWaits(files.files);
      const taken = takeSnapshot(table, files.files, { nlm: nlmServer.port, nsm: nsmServer.port }, floating);
      await journal?.close();
      await nsm.close();
      await metrics.close();
      feed.complete();
      this.lock.release();
      const s = taken.snapshot;
      const what = `${s.locks.length} locks, ${s.shares.length} shares, ${s.descriptions.length} descriptions`;
      if (store) handToStore(store, taken.fds, taken.names);
      else {
        const pid = await reexec(taken.fds, taken.names, RESTART_READY_MS);
        this.log.info({ pid, ms: Number((performance.now() - t0).toFixed(1)) }, `planned restart: lockdropd[${pid}] holds ${what}; exiting`);
        return;
      }
      this.log.info({ ms: Number((performance.now() - t0).toFixed(1)) }, `planned restart: ${what} in the file descriptor store; exiting`);
    })();
    return this.stopping;
  }

  /** Graceful stop: stop accepting, unregister from rpcbind, flush records, close probes. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const { watch, nlmServer, nsmServer, rpcbind, failover, leases, nlm, files, nsm, metrics, feed, journal } = this.parts;
      this.log.info('stopping');
      this.hooks.readiness?.stopping();
      for (const s of this.subs) s.unsubscribe();
      watch.close();
      await this.control.close();
      await Promise.all([nlmServer.close(), nsmServer.close()]);
      await rpcbind.stop();
      await this.follower?.close();
      // An arrival still being applied may be writing its state number: let it finish first.
      await failover.settle();
      failover.close();
      leases.close();
      nlm.close();
      // The journal keeps every lock for its owner (this node's addresses arrive somewhere, here
      // again after a restart, and their clients reclaim): durable before the kernel lets go.
      await journal?.close();
      // The kernel lets go of every lock: the descriptions close (the table's state goes with the process).
      files.files?.setExports([]);
      await nsm.close();
      await metrics.close();
      feed.complete();
      this.lock.release();
      this.log.info('stopped');
    })();
    return this.stopping;
  }
}

/** The configuration's exports and the followed ones, the configuration's winning where both name a path. */
function effectiveExports(cfg: Config, followed: FollowedExports | undefined): EffectiveExport[] {
  return mergeExports(cfg.exports, followed?.entries ?? [], followed?.server ?? 'config');
}

/** An effective export as the configuration holds one (the followed ones lock on their files unless they say not). */
const configEntry = (m: EffectiveExport): Config['exports'][number] => ({ ...m.entry, fileLocks: m.entry.fileLocks ?? true });

/** Takes the previous process's table back over its descriptions (restart.ts); systemd's store lets go of its copies. */
function resume(parts: DaemonParts, h: HandOver, present: ReadonlySet<string>, log: Logger): void {
  const t0 = performance.now();
  const { table, files, watch } = parts;
  const r = restoreTable(h, table, files.files, (a) => present.has(a) || !watch.isFloating(a), log);
  if (process.env.NOTIFY_SOCKET) removeFromStore(process.env.NOTIFY_SOCKET, h.inherited.byName.keys());
  const s = h.snapshot;
  log.info({ from: s.pid, locks: r.locks, shares: r.shares, refused: r.refused, descriptions: r.descriptions, closed: r.closed, ms: Number((performance.now() - t0).toFixed(1)), age: Date.now() - s.at }, `planned restart: ${r.locks} locks and ${r.shares} shares of lockdropd[${s.pid}] taken back over ${r.descriptions} inherited descriptions${r.refused ? `; ${r.refused} refused` : ''}: no grace, no SM_NOTIFY`);
}
