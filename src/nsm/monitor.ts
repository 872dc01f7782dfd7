// The status monitor's state per identity: its NSM state number, the hosts monitored through it
// (durable, see store.ts), who asked (the in-process lock manager or an RPC caller's my_id), and
// the two directions of reboot news:
//  - a client rebooted (SM_NOTIFY in): matched as nfs-utils' statd does (the name case-insensitively,
//    or an address name), but believed only from the host's recorded address and only with a
//    changed state; then `rebooted$` tells the daemon to drop that host's locks;
//  - this identity restarted or moved (SM_NOTIFY out): notify() tells every recorded host, from
//    the address itself, through the NsmSender.
// An identity is a floating server address (its records move with it) or the node's own
// (NODE_IDENTITY, "127.0.0.1" as nfs-utils files them): every address that never moves shares
// the node's one state number and records.
// nsm never imports nlm or locks: the lock manager calls monitor()/unmonitor() structurally and
// the daemon turns `rebooted$` into `dropByHost(hostKey(monName, address))`.
import { hostname } from 'node:os';
import { Subject, type Observable } from 'rxjs';
import type { Logger } from 'pino';
import type { ClientHost } from '../locks/types';
import { isAddress, normaliseAddress } from '../net';
import { SM_MON_PROCS, SM_MON_PROG, STAT_FAIL, STAT_SUCC, type Mon, type MonId, type MyId, type SmStatRes, type SmStatus, type StatChge } from './protocol';
import { readNfsUtilsStateDir, type NfsUtilsReadOptions } from './nfsutils';
import { recordKey, type HostRecord, type MonitorCallback, type NsmStore, type SkippedFile } from './store';

/** A monitored client restarted: the daemon releases `hostKey(monName, address)`'s locks and shares. */
export interface HostRebooted {
  monName: string;
  address: string;
  /** The host's new NSM state number. */
  state: number;
  /** The identities the host was monitored through. */
  serverAddresses: string[];
}

/** What became of one SM_NOTIFY received. */
export type NotifyVerdict = 'accepted' | 'unknown-host' | 'wrong-address' | 'stale-state';

export interface NotifyTarget {
  /** The peer's address; its statd is found through its portmapper. */
  address: string;
}

export interface NotifyRequest {
  /** The server address the notices leave from; undefined: any local address (the node's identity, as sm-notify without -v). */
  from: string | undefined;
  targets: NotifyTarget[];
  args: StatChge;
  timeoutMs: number;
  concurrency: number;
  signal: AbortSignal;
  /** Called as each host answers. */
  onNotified(address: string): void;
}

/** The RPC side of NSM (notifier.ts implements it over src/rpc). */
export interface NsmSender {
  /** Resolves when every target answered or the time ran out; never rejects for a single host. */
  notifyHosts(req: NotifyRequest): Promise<void>;
  /** statd's status callback to an RPC monitor's my_id after the host rebooted. */
  statusCallback(cb: MonitorCallback, status: SmStatus): Promise<void>;
}

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
  store: NsmStore;
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

interface AddressEntry {
  state: number | undefined;
  records: Map<string, HostRecord>;
  /** Keys monitored (again) since this address came up: the rest are only remembered to notify. */
  monitored: Set<string>;
  /** The server addresses the lock manager monitors each key through (an identity may have several). */
  localVia: Map<string, Set<string>>;
  /** Keys whose host answered this address's last notify. */
  notified: Set<string>;
  notifying: AbortController | undefined;
}

const MAX_STATE = 0x7fffffff;
/** The next odd state number: every start and every takeover gets a new one. */
export const nextUpState = (current: number | undefined): number => {
  if (current === undefined || current < 0) return 1;
  const n = current % 2 === 1 ? current + 2 : current + 1;
  return n > MAX_STATE ? 1 : n;
};

const sameId = (c: MonitorCallback, id: MyId): boolean =>
  c.myName === id.myName && c.myProg === id.myProg && c.myVers === id.myVers && c.myProc === id.myProc;

/** The node's own identity: where the monitors of every address that never moves are filed. */
export const NODE_IDENTITY = '127.0.0.1';

/** An address spelling of `name` equal to `address` (a host may be named by its address). */
const namesAddress = (name: string, address: string): boolean => isAddress(name) && normaliseAddress(name) === address;

/**
 * Whether an SM_NOTIFY's mon_name, sent from `sender`, is the recorded host, as nfs-utils'
 * sm_notify_1_svc matches (statd_matchhostname on the mon_name and on the sender's address):
 * the names equal ignoring case, or the mon_name is the host's address, or the host was recorded
 * under its address and the notice comes from there. Only a notice from the recorded address is
 * believed: a name alone releases nothing (the spoof nfs-utils' DNS match cannot rule out).
 */
export function notifyMatches(record: Pick<HostRecord, 'monName' | 'address'>, monName: string, sender: string): boolean {
  return record.address === sender && (record.monName.toLowerCase() === monName.toLowerCase() || namesAddress(monName, sender) || namesAddress(record.monName, sender));
}

/** The names a notice could mean, from anywhere: for telling a spoof ('wrong-address') from an unknown host. */
const notifyNames = (record: Pick<HostRecord, 'monName' | 'address'>, monName: string): boolean =>
  record.monName.toLowerCase() === monName.toLowerCase() || namesAddress(monName, record.address);

export class Nsm {
  private readonly store: NsmStore;
  private readonly entries = new Map<string, AddressEntry>();
  private readonly activating = new Map<string, Promise<AddressEntry>>();
  /** In-flight first monitors, so a burst for one host writes once. */
  private readonly monitoring = new Map<string, Promise<boolean>>();
  /** The tail of each record's chain of changes (see serial). */
  private readonly changing = new Map<string, Promise<void>>();
  private readonly rebootedSubject = new Subject<HostRebooted>();
  /**
   * The last state of rebooted hosts whose records went (rebootHandled): a host that monitors
   * again starts from it, so a late retransmission of the same notice is stale, not a new reboot
   * that would release the locks it took since.
   */
  private readonly lastStates = new Map<string, number>();
  private readonly log: Logger | undefined;

  /** Host reboots accepted from SM_NOTIFY. */
  readonly rebooted$: Observable<HostRebooted> = this.rebootedSubject.asObservable();

  constructor(private readonly opts: NsmOptions) {
    this.store = opts.store;
    this.log = opts.log;
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
    const e = await this.entry(addr, skipped);
    return { serverAddress: addr, state: e.state, records: e.records.size, skipped };
  }

  /** The server addresses currently active (loaded). */
  addresses(): string[] {
    return [...this.entries.keys()];
  }

  state(serverAddress: string): number | undefined {
    return this.entries.get(normaliseAddress(serverAddress))?.state;
  }

  /** Copies of the records of one address (or of every active address). */
  /** How many hosts are recorded for the address (no copies, for status and metrics). */
  recordCount(serverAddress: string): number {
    return this.entries.get(normaliseAddress(serverAddress))?.records.size ?? 0;
  }

  records(serverAddress?: string): HostRecord[] {
    const list = serverAddress === undefined ? [...this.entries.values()] : [this.entries.get(normaliseAddress(serverAddress))].filter((e): e is AddressEntry => !!e);
    return list.flatMap((e) => [...e.records.values()].map((r) => ({ ...r, callbacks: r.callbacks.map((c) => ({ ...c })) })));
  }

  /** Durably moves the address to its next odd state number (at start and at every takeover). */
  async bumpState(serverAddress: string): Promise<number> {
    const addr = normaliseAddress(serverAddress);
    const e = await this.entry(addr);
    // Two bumps at once must give two numbers: the state is changed like a record, in order.
    return this.serial(addr, '', () => this.writeNextState(addr, e));
  }

  private async writeNextState(addr: string, e: AddressEntry): Promise<number> {
    const next = nextUpState(e.state);
    await this.store.writeState(addr, next);
    e.state = next;
    this.log?.info({ address: addr, state: next }, 'nsm: state number bumped');
    return next;
  }

  // ---- HostMonitor, for the lock manager ----

  /**
   * Called before a host's first lock through a server address. Already monitored: no write.
   * Otherwise resolves true once the host's record is durable (false if it could not be written).
   */
  monitor(host: ClientHost, serverAddress: string): Promise<boolean> | boolean {
    const via = normaliseAddress(serverAddress);
    const addr = this.identityOf(via);
    const address = normaliseAddress(host.address);
    const key = recordKey(host.callerName, address);
    const e = this.entries.get(addr);
    if (e?.records.get(key)?.local && e.localVia.get(key)?.has(via)) return true;
    const flight = `${via} ${key}`;
    let p = this.monitoring.get(flight);
    if (!p) {
      p = this.addMonitor(addr, host.callerName, address, { via }).then(
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
  async unmonitor(host: ClientHost, serverAddress: string): Promise<void> {
    const via = normaliseAddress(serverAddress);
    const addr = this.identityOf(via);
    const key = recordKey(host.callerName, normaliseAddress(host.address));
    await this.monitoring.get(`${via} ${key}`);
    const e = this.entries.get(addr);
    if (!e) return;
    await this.serial(addr, key, async () => {
      const rec = e.records.get(key);
      if (!rec) return;
      const through = e.localVia.get(key);
      through?.delete(via);
      // Still monitored through another address of the same identity: the record stays local.
      if (through?.size) return;
      e.localVia.delete(key);
      rec.local = false;
      await this.settle(e, key, rec);
    });
  }

  /**
   * The address left this node: stop monitoring through it and forget it in memory. Its records
   * stay on disk for the node taking the address over; a notify in progress from it stops.
   */
  stopMonitoring(serverAddress: string): void {
    const addr = normaliseAddress(serverAddress);
    const e = this.entries.get(addr);
    e?.notifying?.abort();
    this.entries.delete(addr);
    // A load still under way must not bring the address back once it is done.
    this.activating.delete(addr);
    this.log?.info({ address: addr, records: e?.records.size ?? 0 }, 'nsm: stopped monitoring (records kept)');
  }

  /**
   * The address's grace period ended: hosts that answered its notify and did not monitor again
   * since are forgotten (nfs-utils' sm.bak); hosts never reached stay to be told next time.
   */
  async graceEnded(serverAddress: string): Promise<number> {
    const addr = normaliseAddress(serverAddress);
    const e = this.entries.get(addr);
    if (!e) return 0;
    let forgotten = 0;
    await Promise.all([...e.notified].map((k) => this.serial(addr, k, async () => {
      const rec = e.records.get(k);
      if (!rec || !e.notified.delete(k) || e.monitored.has(k)) return;
      e.records.delete(k);
      forgotten++;
      await this.store.remove(rec);
    })));
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
    const e = await this.entry(addr);
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
  async hostNotified(args: StatChge, from: string): Promise<NotifyVerdict> {
    const peer = normaliseAddress(from);
    const named: HostRecord[] = [];
    const ours: HostRecord[] = [];
    for (const e of this.entries.values()) {
      for (const r of e.records.values()) {
        if (notifyMatches(r, args.monName, peer)) ours.push(r);
        else if (notifyNames(r, args.monName)) named.push(r);
      }
    }
    const changed = ours.filter((r) => r.state !== args.state);
    let verdict: NotifyVerdict;
    if (ours.length === 0) verdict = named.length === 0 ? 'unknown-host' : 'wrong-address';
    else if (changed.length === 0) verdict = 'stale-state';
    else verdict = 'accepted';
    if (verdict !== 'accepted') {
      this.log?.warn({ monName: args.monName, from: peer, state: args.state, recorded: [...ours, ...named].map((r) => r.address), verdict }, 'nsm: SM_NOTIFY ignored');
      return verdict;
    }
    // One event per host as the lock manager keyed it (the record's own name and address).
    const hosts = new Map<string, HostRecord[]>();
    for (const r of changed) {
      r.state = args.state;
      const k = recordKey(r.monName, r.address);
      hosts.set(k, [...(hosts.get(k) ?? []), r]);
      // From now on a monitor() of the host records it again (after handled() below).
      this.entries.get(r.serverAddress)?.localVia.delete(k);
    }
    for (const [, rs] of hosts) {
      const { monName, address } = rs[0]!;
      const serverAddresses = [...new Set(rs.map((r) => r.serverAddress))];
      this.log?.info({ monName, notifiedAs: args.monName, client: address, state: args.state, addresses: serverAddresses }, 'nsm: host rebooted');
      this.rebootedSubject.next({ monName, address, state: args.state, serverAddresses });
    }
    for (const r of changed) {
      for (const cb of r.callbacks) {
        this.opts.sender?.statusCallback(cb, { monName: r.monName, state: args.state, priv: Buffer.from(cb.priv, 'hex') }).catch((err: Error) =>
          this.log?.warn({ err, callback: cb, monName: r.monName }, 'nsm: status callback failed'));
      }
    }
    // The sender retransmits until we answer: answer once the records are durable.
    await Promise.all(changed.map((r) => this.rebootHandled(r)));
    return verdict;
  }

  /**
   * The lock manager released the rebooted host (rebooted$), so it no longer needs the record:
   * only RPC monitors, told by their callback, may (until their SM_UNMON). A record nothing needs
   * goes; one the host monitored again meanwhile stays, with its new state.
   */
  private rebootHandled(r: HostRecord): Promise<void> {
    const e = this.entries.get(r.serverAddress);
    const key = recordKey(r.monName, r.address);
    if (!e) return this.store.put(r);
    return this.serial(r.serverAddress, key, async () => {
      const rec = e.records.get(key);
      if (!rec) return;
      if (e.localVia.has(key)) return this.store.put(rec);
      rec.local = false;
      if (rec.state !== undefined) this.lastStates.set(`${r.serverAddress} ${key}`, rec.state);
      await this.settle(e, key, rec);
    });
  }

  // ---- the RPC monitor procedures (SM_MON and friends) ----

  /** SM_MON through RPC: the host is monitored through the server address the call came in on. */
  async rpcMonitor(m: Mon, serverAddress: string, callerAddress: string): Promise<SmStatRes> {
    const addr = this.identityOf(serverAddress);
    const name = m.monId.monName;
    const { myProg, myProc } = m.monId.myId;
    // As nfs-utils: the callback can only be a lock manager's reboot procedure.
    if (myProg !== SM_MON_PROG || !SM_MON_PROCS.includes(myProc)) {
      this.log?.warn({ monName: name, myProg, myProc, address: addr }, 'nsm: SM_MON refused: the callback is not a lock manager\'s');
      return { res: STAT_FAIL, state: await this.upState(addr).catch(() => this.state(addr) ?? 0) };
    }
    const address = name.length === 0 || /[\s/]/.test(name) || name.startsWith('.') ? undefined
      : isAddress(name) ? name : await this.opts.resolve?.(name).catch(() => undefined);
    if (!address) {
      this.log?.warn({ monName: name, address: addr }, 'nsm: SM_MON for a host with no address');
      return { res: STAT_FAIL, state: await this.upState(addr).catch(() => this.state(addr) ?? 0) };
    }
    const cb: MonitorCallback = { ...m.monId.myId, priv: m.priv.toString('hex'), callbackAddress: normaliseAddress(callerAddress) };
    try {
      await this.addMonitor(addr, name, normaliseAddress(address), { callback: cb });
    } catch (err) {
      this.log?.error({ err, monName: name, address: addr }, 'nsm: SM_MON record not written');
      return { res: STAT_FAIL, state: await this.upState(addr).catch(() => this.state(addr) ?? 0) };
    }
    return { res: STAT_SUCC, state: await this.upState(addr) };
  }

  /** SM_UNMON: drops my_id's monitor of mon_name through the address; returns our state. */
  async rpcUnmonitor(id: MonId, serverAddress: string): Promise<number> {
    const addr = this.identityOf(serverAddress);
    const e = await this.entry(addr);
    await Promise.all([...e.records].filter(([, r]) => r.monName === id.monName).map(([k]) => this.dropCallbacks(addr, e, k, id.myId)));
    return this.upState(addr);
  }

  /** SM_UNMON_ALL: drops every monitor my_id holds through the address. */
  async rpcUnmonitorAll(id: MyId, serverAddress: string): Promise<number> {
    const addr = this.identityOf(serverAddress);
    const e = await this.entry(addr);
    await Promise.all([...e.records.keys()].map((k) => this.dropCallbacks(addr, e, k, id)));
    return this.upState(addr);
  }

  /** The address's state number, given a first one if it has none yet (an address that answers is up). */
  async upState(serverAddress: string): Promise<number> {
    const addr = this.identityOf(serverAddress);
    const e = await this.entry(addr);
    return e.state ?? this.serial(addr, '', async () => e.state ?? this.writeNextState(addr, e));
  }

  /**
   * Brings an nfs-utils state directory's hosts (sm/ and sm.bak/) into an address's records,
   * durably, and keeps its state number if it is ahead of ours. Returns what was imported.
   */
  async importNfsUtils(dir: string, serverAddress: string, opts: NfsUtilsReadOptions = {}): Promise<{ records: number; state: number | undefined; skipped: SkippedFile[] }> {
    const addr = normaliseAddress(serverAddress);
    const e = await this.entry(addr);
    const got = await readNfsUtilsStateDir(dir, addr, { resolve: this.opts.resolve, ...opts });
    for (const s of got.skipped) this.log?.warn(s, 'nsm: skipping unreadable nfs-utils record');
    const writes: Promise<void>[] = [];
    for (const r of got.records) {
      const k = recordKey(r.monName, r.address);
      const mine = e.records.get(k);
      if (mine) {
        mine.local ||= r.local;
        for (const c of r.callbacks) if (!mine.callbacks.some((m) => sameId(m, c))) mine.callbacks.push(c);
        writes.push(this.store.put(mine));
      } else {
        e.records.set(k, r);
        writes.push(this.store.put(r));
      }
    }
    if (got.state !== undefined && (e.state === undefined || got.state > e.state)) {
      writes.push(this.store.writeState(addr, got.state));
      e.state = got.state;
    }
    await Promise.all(writes);
    this.log?.info({ dir, address: addr, records: got.records.length, state: got.state }, 'nsm: imported nfs-utils records');
    return { records: got.records.length, state: got.state, skipped: got.skipped };
  }

  /** Waits for every write in progress. */
  async close(): Promise<void> {
    for (const e of this.entries.values()) e.notifying?.abort();
    await Promise.all([...this.monitoring.values()]);
    await this.store.flush();
    this.rebootedSubject.complete();
  }

  // ---- internals ----

  private async entry(addr: string, skipped?: SkippedFile[]): Promise<AddressEntry> {
    const have = this.entries.get(addr);
    if (have) return have;
    let p = this.activating.get(addr);
    if (!p) {
      const loading: Promise<AddressEntry> = this.store.load(addr).then((loaded) => {
        skipped?.push(...loaded.skipped);
        const e: AddressEntry = { state: loaded.state, records: new Map(), monitored: new Set(), localVia: new Map(), notified: new Set(), notifying: undefined };
        for (const r of loaded.records) e.records.set(recordKey(r.monName, r.address), r);
        if (this.activating.get(addr) === loading) this.entries.set(addr, e);
        this.log?.info({ address: addr, state: e.state, records: e.records.size, skipped: loaded.skipped.length }, 'nsm: address loaded');
        return e;
      }).finally(() => {
        if (this.activating.get(addr) === loading) this.activating.delete(addr);
      });
      this.activating.set(addr, loading);
      p = loading;
    }
    return p;
  }

  /** Runs changes to one record one at a time, in call order (two SM_MON for one host must not race). */
  private serial<T>(addr: string, key: string, change: () => Promise<T>): Promise<T> {
    const k = `${addr} ${key}`;
    const run = (this.changing.get(k) ?? Promise.resolve()).then(change);
    const tail = run.then(() => undefined, () => undefined);
    this.changing.set(k, tail);
    void tail.then(() => {
      if (this.changing.get(k) === tail) this.changing.delete(k);
    });
    return run;
  }

  /** Records (durably) that a monitor (the lock manager through `via`, or an RPC caller's callback) watches the host through addr. */
  private async addMonitor(addr: string, monName: string, address: string, by: { via: string } | { callback: MonitorCallback }): Promise<void> {
    const cb = 'callback' in by ? by.callback : undefined;
    const e = await this.entry(addr);
    const key = recordKey(monName, address);
    await this.serial(addr, key, async () => {
      let rec = e.records.get(key);
      let dirty = false;
      if (!rec) {
        const state = this.lastStates.get(`${addr} ${key}`);
        this.lastStates.delete(`${addr} ${key}`);
        rec = { monName, address, serverAddress: addr, ...(state === undefined ? {} : { state }), local: false, callbacks: [], since: Date.now() };
        dirty = true;
      }
      if (!cb && !rec.local) {
        rec = { ...rec, local: true };
        dirty = true;
      }
      if (cb) {
        const i = rec.callbacks.findIndex((c) => sameId(c, cb));
        const old = rec.callbacks[i];
        if (!old || old.priv !== cb.priv || old.callbackAddress !== cb.callbackAddress) {
          rec = { ...rec, callbacks: i < 0 ? [...rec.callbacks, cb] : rec.callbacks.map((c, j) => (j === i ? cb : c)) };
          dirty = true;
        }
      }
      if (dirty) await this.store.put(rec);
      // Only a durable record is visible: SM_NOTIFY in and notify() see what a restart would see.
      e.records.set(key, rec);
      e.monitored.add(key);
      e.notified.delete(key);
      if ('via' in by) {
        const through = e.localVia.get(key);
        if (through) through.add(by.via); else e.localVia.set(key, new Set([by.via]));
      }
    });
  }

  private dropCallbacks(addr: string, e: AddressEntry, key: string, id: MyId): Promise<void> {
    return this.serial(addr, key, async () => {
      const rec = e.records.get(key);
      if (!rec) return;
      const kept = rec.callbacks.filter((c) => !sameId(c, id));
      if (kept.length === rec.callbacks.length) return;
      rec.callbacks = kept;
      await this.settle(e, key, rec);
    });
  }

  /** Writes a changed record, or removes it when nobody monitors the host any more. */
  private async settle(e: AddressEntry, key: string, rec: HostRecord): Promise<void> {
    if (rec.local || rec.callbacks.length > 0) {
      await this.store.put(rec);
      return;
    }
    e.records.delete(key);
    e.monitored.delete(key);
    e.localVia.delete(key);
    e.notified.delete(key);
    await this.store.remove(rec);
  }
}
