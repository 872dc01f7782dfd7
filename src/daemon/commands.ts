// The operator's commands (lockdropctl over the control socket): status, locks, drop, grace,
// monitors, notify, watch, reload, restart, log-level, exports. Each checks its target first (admin.ts) and answers with the
// views of control/protocol.ts.
import { isAbsolute, resolve } from 'node:path';
import type { AddressStatus, DropReport, ExportsReport, DropTarget, GraceReport, GraceTarget, LocksFilter, LockView, LogLevel, LogLevelReport, MonitorView, NotifyReport, ReloadReport, StatusReport, RestartReport } from '../control';
import type { DropCounts, GraceScope } from '../locks';
import { nameToHandle } from '../addon';
import { normaliseAddress } from '../net';
import { EtcdStore } from '../store';
import { nowMs } from '../watch/types';
import { checkAddressTarget, checkExportTarget, type AddressView } from './admin';
import type { DaemonParts } from './compose';
import type { ControlHandlers } from './control';
import type { MetricsSnapshot } from './metrics';
import { VERSION } from './version';
import { iso, lockView, operatorDropLine, sum } from './views';

/** What the commands need of the daemon's lifecycle. */
export interface Lifecycle {
  readonly startedAt: number;
  ready(): boolean;
  reload(): ReloadReport;
  exports(): ExportsReport;
  restart(): RestartReport;
}

export class OperatorCommands {
  constructor(
    private readonly parts: DaemonParts,
    private readonly lifecycle: Lifecycle,
  ) {}

  handlers(): ControlHandlers {
    return {
      status: () => this.status(),
      locks: (f) => this.locks(f),
      drop: async (t) => this.drop(t),
      grace: (action, t, seconds) => this.grace(action, t, seconds),
      monitors: (ip) => this.monitors(ip),
      notify: (ip) => this.notify(ip),
      watch: () => this.parts.feed.stream(),
      reload: () => this.lifecycle.reload(),
      restart: () => this.lifecycle.restart(),
      logLevel: (level) => this.logLevel(level),
      exports: () => this.lifecycle.exports(),
    };
  }

  status(): StatusReport {
    const { table, failover, nsm, leases, nlmServer, nsmServer, rpcbind, watch, node } = this.parts;
    const stats = table.stats();
    const known = failover.status();
    const graces = new Map<string, number>();
    let globalGrace: number | null = null;
    const exportGraces: StatusReport['exportGraces'] = [];
    for (const p of table.grace.active()) {
      if (p.scope.kind === 'address') graces.set(p.scope.address, p.endsAt);
      else if (p.scope.kind === 'export') exportGraces.push({ export: p.scope.exportId, grace: iso(p.endsAt)! });
      else globalGrace = p.endsAt;
    }
    const names = new Set<string>([...known.keys(), ...stats.byAddress.keys(), ...nsm.addresses(), ...graces.keys(), ...leases.waitingAddresses(), ...table.journalAddresses()]);
    const addresses = [...names].sort().map((address): AddressStatus => ({
      address,
      present: this.holds(address),
      served: this.holds(address) || node.serves(address),
      draining: known.get(address) === 'draining',
      grace: iso(graces.get(address)),
      locks: stats.byAddress.get(address)?.locks ?? 0,
      monitors: nsm.recordCount(address),
      heldBy: leases.heldBy(address) ?? null,
      journal: table.journalEntries(address).length,
      reclaim: reclaimOf(table.reclaimProgress(address)),
    }));
    return {
      pid: process.pid,
      version: VERSION,
      startedAt: new Date(this.lifecycle.startedAt).toISOString(),
      ready: this.lifecycle.ready(),
      nlmPort: nlmServer.port,
      nsmPort: nsmServer.port,
      rpcbind: rpcbind.registered,
      sources: watch.sources,
      addresses,
      locks: stats.locks,
      blocked: stats.blocked,
      monitors: addresses.reduce((n, a) => n + a.monitors, 0),
      exportGraces,
      globalGrace: iso(globalGrace),
      files: this.filesStatus(),
      store: this.storeStatus(),
    };
  }

  private storeStatus(): NonNullable<StatusReport['store']> {
    const { store } = this.parts;
    const h = store?.health?.() ?? { ok: true };
    return { kind: store === undefined ? 'none' : store instanceof EtcdStore ? 'etcd' : 'directory', ok: h.ok, reason: h.reason ?? null };
  }

  metricsSnapshot(): MetricsSnapshot {
    const files = this.parts.files.files?.stats();
    return { status: this.status(), kept: this.parts.table.stats().kept, files: { open: files?.open ?? 0, waits: files?.waits ?? 0, budgetRefusals: files?.budgetRefusals ?? 0 } };
  }

  locks(f: LocksFilter): LockView[] {
    const hosts = f.client === undefined ? undefined : new Set(this.hostsMatching(f.client));
    const onFile = f.file === undefined ? undefined : this.fileMatcher(f.file);
    const fh = f.fh?.toLowerCase();
    const out: LockView[] = [];
    const source = this.parts.table.locks({ serverAddress: f.ip === undefined ? undefined : normaliseAddress(f.ip), exportId: f.export });
    for (const l of source) {
      if ((hosts && !hosts.has(l.owner.host)) || (onFile && !onFile(l.fh))) continue;
      const v = lockView(l);
      if (fh === undefined || v.fh === fh) out.push(v);
    }
    return out;
  }

  /**
   * `locks --file PATH`: who holds this file, whatever handle each client named it by. The file's
   * kernel handle (name_to_handle_at) against each lock's, within the export that holds the path.
   */
  private fileMatcher(file: string): (fh: Buffer) => boolean {
    if (!isAbsolute(file)) throw new Error(`${file}: give the file's absolute path on this node`);
    const path = resolve(file);
    const table = this.parts.live.exports();
    const exportId = table.list().map((e) => e.path).filter((e) => path === e || path.startsWith(e.endsWith('/') ? e : `${e}/`)).sort((a, b) => b.length - a.length)[0];
    if (exportId === undefined) throw new Error(`${path} is in no configured export`);
    let want: { type: number; handle: Buffer };
    try {
      want = nameToHandle(path);
    } catch (err) {
      throw new Error(`${path}: ${(err as Error).message}`);
    }
    return (fh) => {
      const k = table.kernelHandle(fh);
      if (k.exportId !== exportId) return false;
      if ('root' in k) return path === exportId;
      return 'handle' in k && k.type === want.type && k.handle.equals(want.handle);
    };
  }

  /** `lockdropctl log-level`: until the next start or reload, which set the configured level again. */
  logLevel(level: LogLevel): LogLevelReport {
    const { logs } = this.parts;
    const previous = logs.root.level;
    logs.setLevel(level);
    logs.root.info({ level, previous }, `log level ${level} (was ${previous}) until the next reload or start`);
    return { level, previous };
  }

  async drop(t: DropTarget): Promise<DropReport> {
    const { table, nlm, files, metrics, logs, feed } = this.parts;
    const start = nowMs();
    let target: string;
    let counts: DropCounts;
    if (t.ip !== undefined) {
      target = normaliseAddress(t.ip);
      checkAddressTarget('drop', target, this.addressView());
      counts = table.dropByServerAddress(target);
      // No GRANTED may go on for what was dropped (nor undo a lock taken again meanwhile).
      nlm.forgetAddress(target);
    } else if (t.client !== undefined) {
      const hosts = this.hostsMatching(t.client);
      if (hosts.length === 0) throw new Error(`no client matches "${t.client}": it holds no lock, share or queued request here (see \`lockdropctl locks\`)`);
      target = `client ${t.client}`;
      counts = sum(hosts.map((h) => table.dropByHost(h)));
      for (const h of hosts) nlm.forgetHost(h);
    } else {
      const exportId = t.export ?? (t.fsid !== undefined ? this.parts.live.exports().byFsid(t.fsid) : undefined);
      if (exportId === undefined) throw new Error(`no export is configured with fsid ${t.fsid}`);
      checkExportTarget(exportId, this.exportPaths());
      target = `export ${exportId}`;
      counts = table.dropByExport(exportId);
      // Nothing of the export stays open: its filesystem can be unmounted now.
      await files.files?.closeExport(exportId);
    }
    const ms = nowMs() - start;
    metrics.observeDrop('admin', counts.locks, ms);
    const line = operatorDropLine(target, counts, ms);
    logs.root.info({ target, trigger: 'admin', ...counts, ms: Number(ms.toFixed(3)) }, line);
    feed.emit({ kind: 'drop', message: line, trigger: 'admin', ...counts, ms });
    return { target, ...counts, ms };
  }

  grace(action: 'start' | 'end', t: GraceTarget, seconds?: number): GraceReport {
    const { table, failover, live, logs } = this.parts;
    let scope: GraceScope;
    if (t.ip !== undefined) {
      scope = { kind: 'address', address: normaliseAddress(t.ip) };
      checkAddressTarget(`grace ${action}`, scope.address, this.addressView());
      if (action === 'start') failover.startGrace(scope.address, seconds ?? live.config().grace);
      else failover.endGrace(scope.address);
    } else {
      const exportId = t.export!;
      checkExportTarget(exportId, this.exportPaths());
      scope = { kind: 'export', exportId };
      if (action === 'start') table.grace.start(scope, seconds ?? live.config().grace);
      else table.grace.end(scope);
    }
    const target = scope.kind === 'address' ? scope.address : scope.exportId;
    const g = table.grace.active().find((p) => JSON.stringify(p.scope) === JSON.stringify(scope));
    logs.root.info({ scope: scope.kind, target, action, seconds: seconds ?? null }, `grace ${action} for ${scope.kind} ${target} by the operator`);
    return { target, scope: scope.kind, grace: iso(g?.endsAt) };
  }

  monitors(ip?: string): MonitorView[] {
    const { nsm } = this.parts;
    return nsm.records(ip === undefined ? undefined : nsm.identityOf(ip)).map((r): MonitorView => ({ server: r.serverAddress, host: r.monName, address: r.address, state: r.state ?? null }));
  }

  async notify(ip: string): Promise<NotifyReport> {
    const address = normaliseAddress(ip);
    const r = await this.parts.failover.notify(address);
    return { address, notified: r.notified, failed: r.failed };
  }

  /**
   * This node holds the floating address: failover applied its arrival and it is still floating
   * (one a narrowed `addresses` let go stays applied in failover, but is the node's own now).
   */
  private holds(address: string): boolean {
    return this.parts.failover.holds(address) && this.parts.watch.isFloating(address);
  }

  private addressView(): AddressView {
    const { watch, table } = this.parts;
    return {
      manages: (a) => watch.isFloating(a),
      holds: (a) => this.holds(a),
      hasLocks: (a) => table.stats().byAddress.has(a),
    };
  }

  private exportPaths(): string[] {
    return this.parts.live.exports().list().map((e) => e.path);
  }

  private filesStatus(): StatusReport['files'] {
    const { files } = this.parts;
    const f = files.files;
    const s = f?.stats();
    return { exports: f?.realExports() ?? [], unavailable: files.unavailable, open: s?.open ?? 0, waits: s?.waits ?? 0, maxOpen: files.maxOpen, budgetRefusals: s?.budgetRefusals ?? 0 };
  }

  /** Host keys matching `name@address`, an address, or a caller name. */
  private hostsMatching(client: string): string[] {
    const { table } = this.parts;
    const keys = new Set<string>();
    for (const l of table.locks()) keys.add(l.owner.host);
    for (const s of table.shares()) keys.add(s.owner.host);
    for (const b of table.blocked()) keys.add(b.request.owner.host);
    return [...keys].filter((k) => k === client || k.endsWith(`@${client}`) || k.startsWith(`${client}@`));
  }
}

function reclaimOf(p: { total: number; awaiting: number; hosts: number; since: number } | undefined): AddressStatus['reclaim'] {
  return p ? { awaiting: p.awaiting, total: p.total, hosts: p.hosts, since: new Date(p.since).toISOString() } : null;
}
