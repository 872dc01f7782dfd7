// Which client hosts are monitored through which server address, and when to stop.
// Like Linux lockd (nlm_gc_hosts), a host is monitored before its first lock and unmonitored only
// after it has held nothing through that address for an idle time, found by a periodic sweep:
// a client that locks and unlocks in a loop costs one monitor call, not one per cycle.
import type { ClientHost } from '../locks/types';

/**
 * What the NLM service needs from the status monitor (the daemon adapts nsm to it; nsm never
 * imports nlm). `monitor` answers false (or rejects) when the host cannot be monitored: the
 * lock is then refused with denied_nolocks, as Linux does.
 */
export interface HostMonitor {
  monitor(host: ClientHost, serverAddress: string): Promise<boolean> | boolean;
  unmonitor(host: ClientHost, serverAddress: string): Promise<void> | void;
}

interface Entry {
  host: ClientHost;
  lastUsed: number;
  pending?: Promise<boolean>;
}

export interface MonitoredHostsOptions {
  /** How long a host must hold nothing through an address before it is unmonitored there. */
  idleMs: number;
  /** Sweep interval. */
  gcIntervalMs: number;
  now?: () => number;
  /** Host keys still holding something through an address (LockTable.hostsAt). */
  hostsAt(serverAddress: string): ReadonlySet<string>;
  onError?(err: unknown, host: ClientHost, serverAddress: string): void;
}

export class MonitoredHosts {
  private readonly byAddress = new Map<string, Map<string, Entry>>();
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly monitor: HostMonitor, private readonly opts: MonitoredHostsOptions) {
    this.now = opts.now ?? Date.now;
    this.timer = setInterval(() => this.sweep(), opts.gcIntervalMs);
    this.timer.unref();
  }

  /** Monitors the host through the address unless it already is; true when monitored. */
  ensure(host: ClientHost, serverAddress: string): Promise<boolean> | boolean {
    let hosts = this.byAddress.get(serverAddress);
    const known = hosts?.get(host.key);
    if (known) {
      known.lastUsed = this.now();
      return known.pending ?? true;
    }
    if (!hosts) this.byAddress.set(serverAddress, (hosts = new Map()));
    const entry: Entry = { host, lastUsed: this.now() };
    const settle = (ok: boolean): boolean => {
      entry.pending = undefined;
      if (!ok && hosts!.get(host.key) === entry) hosts!.delete(host.key);
      return ok;
    };
    let answer: Promise<boolean> | boolean;
    try {
      answer = this.monitor.monitor(host, serverAddress);
    } catch (err) {
      this.opts.onError?.(err, host, serverAddress);
      return false;
    }
    hosts.set(host.key, entry);
    if (typeof answer === 'boolean') return settle(answer);
    entry.pending = answer.then(settle, (err) => {
      this.opts.onError?.(err, host, serverAddress);
      return settle(false);
    });
    return entry.pending;
  }

  /** Notes activity so the sweep leaves the host alone for another idle time. */
  touch(hostKey: string, serverAddress: string): void {
    const e = this.byAddress.get(serverAddress)?.get(hostKey);
    if (e) e.lastUsed = this.now();
  }

  isMonitored(hostKey: string, serverAddress: string): boolean {
    return this.byAddress.get(serverAddress)?.has(hostKey) ?? false;
  }

  /** Unmonitors every host idle for idleMs that holds nothing through the address. */
  sweep(): number {
    const now = this.now();
    let released = 0;
    for (const [address, hosts] of this.byAddress) {
      const holding = this.opts.hostsAt(address);
      for (const [key, e] of hosts) {
        if (e.pending || now - e.lastUsed < this.opts.idleMs || holding.has(key)) continue;
        hosts.delete(key);
        released++;
        Promise.resolve()
          .then(() => this.monitor.unmonitor(e.host, address))
          .catch((err) => this.opts.onError?.(err, e.host, address));
      }
      if (hosts.size === 0) this.byAddress.delete(address);
    }
    return released;
  }

  /** Forgets an address's hosts without unmonitoring (failover: the records stay for the next owner). */
  forgetAddress(serverAddress: string): void {
    this.byAddress.delete(serverAddress);
  }

  /** Forgets a host everywhere without unmonitoring (it rebooted: statd has dealt with it). */
  forgetHost(hostKey: string): void {
    for (const [address, hosts] of this.byAddress) {
      hosts.delete(hostKey);
      if (hosts.size === 0) this.byAddress.delete(address);
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
