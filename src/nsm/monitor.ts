// The status monitor: per identity its NSM state number and the hosts monitored through it
// (monitor-list.ts, durable through store.ts), the lock manager's HostMonitor (monitor/unmonitor), and
// the two directions of reboot news:
//  - a client rebooted (SM_NOTIFY in, reboots.ts): `rebooted$` tells the daemon to drop that host's
//    locks;
//  - this identity restarted or moved (SM_NOTIFY out): notify() tells every recorded host, from
//    the address itself, through the NsmSender (sender.ts).
// The monitors RPC callers ask for (SM_MON and friends) are rpc-monitors.ts'.
// An identity is a floating server address (its records move with it) or the node's own
// (NODE_IDENTITY, "127.0.0.1" as nfs-utils files them): every address that never moves shares
// the node's one state number and records.
// nsm never imports nlm or locks: the lock manager calls monitor()/unmonitor() structurally and
// the daemon turns `rebooted$` into `dropByHost(hostKey(monName, address))`.
import { hostname } from 'node:os';
import { Subject, type Observable } from 'rxjs';
import type { Logger } from 'pino';
import { normaliseAddress } from '../net';
import type { Mon, MonId, MyId, SmStatRes, StatChge } from './protocol';
import { readNfsUtilsStateDir, type NfsUtilsReadOptions } from './nfsutils';
import { receiveRebootNotice, type HostRebooted, type NotifyVerdict } from './reboots';
import { MonitorList } from './monitor-list';
import { RpcMonitors } from './rpc-monitors';
import type { NsmSender } from './sender';
import { recordKey, type HostRecord, type NsmRecords, type SkippedFile } from './store';

export interface NotifyReport {
  serverAddress: string;
  monName: string;
  state: number;
  /** Host addresses that answered. */
  notified: string[];
  /** Host addresses that never answered in time; their records stay. */
  failed: string[];
  ms: number;
}

export interface NotifyOptions {
  /** How long to keep retransmitting to hosts that do not answer. Default: the Nsm's settings' notifyTimeoutMs. */
  timeoutMs?: number;
  concurrency?: number;
}

export interface ActivateReport {
  serverAddress: string;
  state: number | undefined;
  records: number;
  skipped: SkippedFile[];
}

export interface NsmOptions {
  store: NsmRecords;
  sender?: NsmSender;
  log?: Logger;
  /**
   * The identity a server address's monitors are filed under. Default: its own. The daemon files
   * every address that never moves (loopback included) under the node's, NODE_IDENTITY.
   */
  identity?: (serverAddress: string) => string;
  /** Resolves an SM_MON mon_name that is not an address. Default: no resolution (STAT_FAIL). */
  resolve?: (hostname: string) => Promise<string | undefined>;
  /** The settings a reload may change, read at each use (every notify, SM_SIMU_CRASH's included). */
  config?: () => NsmSettings;
}

/** What the configuration sets of the status monitor. */
export interface NsmSettings {
  /** The mon_name an identity calls itself in SM_NOTIFY. Default: the host name for the node's, else the address. */
  monNames?: Readonly<Record<string, string>>;
  /** SM_NOTIFY retransmission time. Default 15 min, as sm-notify. */
  notifyTimeoutMs?: number;
  /** Hosts notified at once. Default 1024. */
  notifyConcurrency?: number;
}

/** The node's own identity: where the monitors of every address that never moves are filed. */
export const NODE_IDENTITY = '127.0.0.1';

/** The lock manager's client host, as src/locks' ClientHost has it (the monitor files it by caller_name and address). */
interface MonitoredHost {
  key: string;
  callerName: string;
  address: string;
}

export class Nsm {
  private readonly list: MonitorList;
  private readonly rpcMonitors: RpcMonitors;
  /** In-flight first monitors, so a burst for one host writes once. */
  private readonly monitoring = new Map<string, Promise<boolean>>();
  private readonly rebootedSubject = new Subject<HostRebooted>();
  private readonly log: Logger | undefined;

  /** Host reboots accepted from SM_NOTIFY. */
  readonly rebooted$: Observable<HostRebooted> = this.rebootedSubject.asObservable();

  constructor(private readonly opts: NsmOptions) {
    this.log = opts.log;
    this.list = new MonitorList(opts.store, opts.log);
    this.rpcMonitors = new RpcMonitors({
      list: this.list, identityOf: (a) => this.identityOf(a), upState: (a) => this.upState(a), resolve: opts.resolve, log: opts.log,
    });
  }

  private settings(): NsmSettings {
    return this.opts.config?.() ?? {};
  }

  /** The mon_name an identity sends in SM_NOTIFY (the node's: its host name, as sm-notify). */
  monNameOf(identity: string): string {
    return this.settings().monNames?.[identity] ?? (identity === NODE_IDENTITY ? hostname() : identity);
  }

  /** The identity a server address's monitors are filed under (see NsmOptions.identity). */
  identityOf(serverAddress: string): string {
    const a = normaliseAddress(serverAddress);
    return this.opts.identity?.(a) ?? a;
  }

  /**
   * Loads an address's state number and records from the state directory (again, after a
   * stopMonitoring: the node that had the address may have changed them on shared storage).
   */
  async activate(serverAddress: string): Promise<ActivateReport> {
    const addr = normaliseAddress(serverAddress);
    const skipped: SkippedFile[] = [];
    const e = await this.list.entry(addr, skipped);
    return { serverAddress: addr, state: e.state, records: e.records.size, skipped };
  }

  /** The server addresses currently active (loaded). */
  addresses(): string[] {
    return this.list.addresses();
  }

  state(serverAddress: string): number | undefined {
    return this.list.loaded(normaliseAddress(serverAddress))?.state;
  }

  /** How many hosts are recorded for the address (no copies, for status and metrics). */
  recordCount(serverAddress: string): number {
    return this.list.loaded(normaliseAddress(serverAddress))?.records.size ?? 0;
  }

  /** Copies of the records of one address (or of every active address). */
  records(serverAddress?: string): HostRecord[] {
    return this.list.copies(serverAddress === undefined ? undefined : normaliseAddress(serverAddress));
  }

  /** Durably moves the address to its next odd state number (at start and at every takeover). */
  async bumpState(serverAddress: string): Promise<number> {
    return this.list.bumpState(normaliseAddress(serverAddress));
  }

  /** The address's state number, given a first one if it has none yet (an address that answers is up). */
  async upState(serverAddress: string): Promise<number> {
    return this.list.upState(this.identityOf(serverAddress));
  }

  // ---- HostMonitor, for the lock manager ----

  /**
   * Called before a host's first lock through a server address. Already monitored: no write.
   * Otherwise resolves true once the host's record is durable (false if it could not be written).
   */
  monitor(host: MonitoredHost, serverAddress: string): Promise<boolean> | boolean {
    const via = normaliseAddress(serverAddress);
    const addr = this.identityOf(via);
    const address = normaliseAddress(host.address);
    const key = recordKey(host.callerName, address);
    const e = this.list.loaded(addr);
    if (e?.records.get(key)?.local && e.localVia.get(key)?.has(via)) return true;
    const flight = `${via} ${key}`;
    let p = this.monitoring.get(flight);
    if (!p) {
      p = this.list.addMonitor(addr, host.callerName, address, { via }).then(
        () => true,
        (err: Error) => {
          this.log?.error({ err, address: addr, host: key }, 'nsm: could not record monitored host');
          return false;
        },
      ).finally(() => this.monitoring.delete(flight));
      this.monitoring.set(flight, p);
    }
    return p;
  }

  /** Called once a host has held nothing through the address for a while: forgets it, durably. */
  async unmonitor(host: MonitoredHost, serverAddress: string): Promise<void> {
    const via = normaliseAddress(serverAddress);
    const addr = this.identityOf(via);
    const key = recordKey(host.callerName, normaliseAddress(host.address));
    await this.monitoring.get(`${via} ${key}`);
    const e = this.list.loaded(addr);
    if (e) await this.list.dropLocal(addr, e, key, via);
  }

  /**
   * The address left this node: stop monitoring through it and forget it in memory. Its records
   * stay on disk for the node taking the address over; a notify in progress from it stops.
   */
  stopMonitoring(serverAddress: string): void {
    const addr = normaliseAddress(serverAddress);
    const e = this.list.loaded(addr);
    e?.notifying?.abort();
    this.list.forget(addr);
    this.log?.info({ address: addr, records: e?.records.size ?? 0 }, 'nsm: stopped monitoring (records kept)');
  }

  /**
   * The address's grace period ended: hosts that answered its notify and did not monitor again
   * since are forgotten (nfs-utils' sm.bak); hosts never reached stay to be told next time.
   */
  async graceEnded(serverAddress: string): Promise<number> {
    const addr = normaliseAddress(serverAddress);
    const e = this.list.loaded(addr);
    if (!e) return 0;
    const forgotten = await this.list.forgetNotified(addr, e);
    if (forgotten) this.log?.info({ address: addr, forgotten }, 'nsm: grace ended, notified hosts that did not come back forgotten');
    return forgotten;
  }

  // ---- SM_NOTIFY out ----

  /**
   * Tells every host recorded for the address that it restarted, from the address itself.
   * Call only once the address's listeners are open (clients reclaim at once).
   */
  async notify(serverAddress: string, opts: NotifyOptions = {}): Promise<NotifyReport> {
    const addr = normaliseAddress(serverAddress);
    const sender = this.opts.sender;
    if (!sender) throw new Error('nsm: no sender configured, cannot notify');
    const e = await this.list.entry(addr);
    if (e.state === undefined) await this.bumpState(addr);
    const state = e.state!;
    const settings = this.settings();
    const monName = this.monNameOf(addr);
    e.notifying?.abort();
    const abort = new AbortController();
    e.notifying = abort;
    const byAddress = new Map<string, string[]>();
    for (const [k, r] of e.records) {
      const keys = byAddress.get(r.address);
      if (keys) keys.push(k); else byAddress.set(r.address, [k]);
    }
    const answered = new Set<string>();
    const started = Date.now();
    this.log?.info({ address: addr, monName, state, hosts: byAddress.size }, 'nsm: notifying hosts');
    await sender.notifyHosts({
      // The node's hosts are told from whichever local address routes to them, as sm-notify does.
      from: addr === NODE_IDENTITY ? undefined : addr,
      targets: [...byAddress.keys()].map((address) => ({ address })),
      args: { monName, state },
      timeoutMs: opts.timeoutMs ?? settings.notifyTimeoutMs ?? 15 * 60_000,
      concurrency: opts.concurrency ?? settings.notifyConcurrency ?? 1024,
      signal: abort.signal,
      onNotified: (address) => {
        answered.add(address);
        for (const k of byAddress.get(address) ?? []) e.notified.add(k);
      },
    });
    if (e.notifying === abort) e.notifying = undefined;
    const failed = [...byAddress.keys()].filter((a) => !answered.has(a));
    const report: NotifyReport = { serverAddress: addr, monName, state, notified: [...answered], failed, ms: Date.now() - started };
    if (failed.length) this.log?.warn({ address: addr, failed }, 'nsm: hosts not reached; their records are kept');
    this.log?.info({ address: addr, notified: answered.size, failed: failed.length, ms: report.ms }, 'nsm: notify done');
    return report;
  }

  // ---- SM_NOTIFY in ----

  /** A host says it rebooted. `from` is the datagram's source address. */
  hostNotified(args: StatChge, from: string): Promise<NotifyVerdict> {
    return receiveRebootNotice({ list: this.list, rebooted: (h) => this.rebootedSubject.next(h), sender: this.opts.sender, log: this.log }, args, from);
  }

  // ---- the RPC monitor procedures (SM_MON and friends, rpc-monitors.ts) ----

  /** SM_MON through RPC: the host is monitored through the server address the call came in on. */
  rpcMonitor(m: Mon, serverAddress: string, callerAddress: string): Promise<SmStatRes> {
    return this.rpcMonitors.monitor(m, serverAddress, callerAddress);
  }

  /** SM_UNMON: drops my_id's monitor of mon_name through the address; returns our state. */
  rpcUnmonitor(id: MonId, serverAddress: string): Promise<number> {
    return this.rpcMonitors.unmonitor(id, serverAddress);
  }

  /** SM_UNMON_ALL: drops every monitor my_id holds through the address. */
  rpcUnmonitorAll(id: MyId, serverAddress: string): Promise<number> {
    return this.rpcMonitors.unmonitorAll(id, serverAddress);
  }

  /**
   * Brings an nfs-utils state directory's hosts (sm/ and sm.bak/) into an address's records,
   * durably, and keeps its state number if it is ahead of ours. Returns what was imported.
   */
  async importNfsUtils(dir: string, serverAddress: string, opts: NfsUtilsReadOptions = {}): Promise<{ records: number; state: number | undefined; skipped: SkippedFile[] }> {
    const addr = normaliseAddress(serverAddress);
    const e = await this.list.entry(addr);
    const got = await readNfsUtilsStateDir(dir, addr, { resolve: this.opts.resolve, ...opts });
    for (const s of got.skipped) this.log?.warn(s, 'nsm: skipping unreadable nfs-utils record');
    await this.list.merge(addr, e, got.records, got.state);
    this.log?.info({ dir, address: addr, records: got.records.length, state: got.state }, 'nsm: imported nfs-utils records');
    return { records: got.records.length, state: got.state, skipped: got.skipped };
  }

  /** Waits for every write in progress. */
  async close(): Promise<void> {
    for (const e of this.list.entriesLoaded()) e.notifying?.abort();
    await Promise.all([...this.monitoring.values()]);
    await this.opts.store.flush();
    this.rebootedSubject.complete();
  }
}
