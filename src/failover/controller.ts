// The one place where an address event meets the lock table: performs decide()'s steps against
// the listeners (RpcServer), the lock table and the status monitor, and reports what it did.
import { Subject, filter, type Observable, type Subscription } from 'rxjs';
import type { Logger } from 'pino';
import type { DropCounts, GracePeriod, GraceScope } from '../locks/types';
import { nowMs, type AddressEvent, type AddressPhase, type SourceName } from '../watch/types';
import { decide, type FailoverStep } from './decide';
import { dropLine, plural } from './words';

/** Who asked for an address change (the bpf probes see it), as a log field: `pid` alone would be pino's own. */
const by = (ev: { pid?: number; comm?: string }): { by?: { pid?: number; comm?: string } } => (ev.pid === undefined && ev.comm === undefined ? {} : { by: { pid: ev.pid, comm: ev.comm } });
/**
 * Milliseconds from the removal to now. A removal stamped by the kernel (a probe's timestamp, mapped
 * onto this process's clock) can read a few ms ahead of it on a loaded virtual machine: then the
 * drop is measured from when lockdrop saw the removal, never as a negative time.
 */
const sinceRemoval = (ev: AddressEvent): number => {
  const now = nowMs();
  return now - (ev.at <= now ? ev.at : Math.min(ev.detectedAt, now));
};
const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

/** The sockets of one server address (RpcServer). */
export interface Listeners {
  addAddress(address: string): Promise<void>;
  removeAddress(address: string): Promise<void>;
}

/** What failover needs of the lock table. */
export interface FailoverLocks {
  dropByServerAddress(address: string): DropCounts;
  setDraining(address: string, draining: boolean): void;
  readonly grace: {
    start(scope: GraceScope, seconds: number): GracePeriod;
    end(scope: GraceScope): boolean;
    active(): GracePeriod[];
    readonly ended$: Observable<GracePeriod>;
  };
}

export interface NotifyOutcome {
  notified: string[];
  failed: string[];
  ms: number;
  state: number;
}

/** What failover needs of the status monitor and of the lock manager's clients. */
export interface FailoverMonitors {
  activate(address: string): Promise<{ records: number }>;
  bumpState(address: string): Promise<number>;
  notify(address: string): Promise<NotifyOutcome>;
  /**
   * The address left (its locks dropped): forget its clients — stop monitoring them (their records
   * stay for the node taking it over) and forget the GRANTED callbacks pending to them, so a late
   * callback failure cannot release a lock reclaimed meanwhile.
   */
  forgetClients(address: string): void;
  graceEnded(address: string): Promise<number>;
}

export type FailoverReport =
  /** `line`: the drop's one line, as logged here; the daemon's `watch` shows the same. */
  | { type: 'down'; address: string; source: SourceName; pid?: number; comm?: string; counts: DropCounts; ms: number; line: string }
  | { type: 'up'; address: string; source: SourceName; state: number; monitors: number; graceEndsAt: number | null }
  | { type: 'draining' | 'drain-ended'; address: string; source: SourceName; pid?: number; comm?: string }
  | { type: 'notified'; address: string; state: number; notified: number; failed: string[]; ms: number }
  | { type: 'error'; address: string; step: FailoverStep | 'grace-end'; error: string };

export interface FailoverOptions {
  listeners: Listeners;
  locks: FailoverLocks;
  monitors: FailoverMonitors;
  /** Grace period of an arriving address, in seconds (read at each arrival, so a reload applies). */
  graceSeconds: () => number;
  log?: Logger;
  /** Attempts to bind an arriving address (an address can be briefly unbindable right after it appears). */
  bindAttempts?: number;
  bindRetryMs?: number;
}

const addressScope = (address: string): GraceScope => ({ kind: 'address', address });

export class FailoverController {
  /** The phase failover has applied to each address it has seen. */
  private readonly applied = new Map<string, AddressPhase>();
  private readonly reports = new Subject<FailoverReport>();
  /** One queue per address: its events apply in order; one address's slow bind never delays another's drop. */
  private readonly queues = new Map<string, Promise<void>>();
  private readonly graceEnds: Subscription;

  /** Everything failover did, for logs, metrics and `lockdropctl watch`. */
  readonly reports$: Observable<FailoverReport> = this.reports.asObservable();

  constructor(private readonly opts: FailoverOptions) {
    // An address's grace ended (on time, early or by hand): hosts told and not back are forgotten.
    this.graceEnds = opts.locks.grace.ended$
      .pipe(filter((p) => p.scope.kind === 'address'))
      .subscribe((p) => {
        const address = (p.scope as { address: string }).address;
        opts.monitors.graceEnded(address).catch((err) => this.fail(address, 'grace-end', err));
      });
  }

  /** Applies one event after the earlier events of its address. Resolves when its drop is complete. */
  handle(ev: AddressEvent): Promise<void> {
    const done = (this.queues.get(ev.address) ?? Promise.resolve()).then(() => this.apply(ev));
    const tail = done.catch(() => undefined);
    this.queues.set(ev.address, tail);
    void tail.then(() => {
      if (this.queues.get(ev.address) === tail) this.queues.delete(ev.address);
    });
    return done;
  }

  /** Subscribes to an address event stream; the returned subscription stops it. */
  run(events$: Observable<AddressEvent>): Subscription {
    return events$.subscribe({
      next: (ev) => void this.handle(ev),
      error: (err) => this.opts.log?.error({ err }, 'failover: the address event stream failed'),
    });
  }

  /** The phase applied to each address seen: 'up' or 'draining' while this node holds it. */
  status(): ReadonlyMap<string, AddressPhase> {
    return this.applied;
  }

  /** Whether this node holds the address: it arrived here (listeners opened) and has not left. */
  holds(address: string): boolean {
    return (this.applied.get(address) ?? 'down') !== 'down';
  }

  /** `lockdropctl grace start`: (re)starts an address's grace by hand. */
  startGrace(address: string, seconds: number): GracePeriod {
    return this.opts.locks.grace.start(addressScope(address), seconds);
  }

  /** `lockdropctl grace end`: ends an address's grace early; false if none was running. */
  endGrace(address: string): boolean {
    return this.opts.locks.grace.end(addressScope(address));
  }

  /**
   * `lockdropctl notify`: tells the address's recorded hosts again — only for an address this node
   * holds (its listeners are open), never for one another node may own.
   */
  async notify(address: string): Promise<NotifyOutcome> {
    if (!this.holds(address)) throw new Error(`${address} is not a local server address here: only its holder notifies for it`);
    return this.track(address);
  }

  /** Waits until every queued event is applied (notifications may go on: they retry for minutes). */
  async settle(): Promise<void> {
    await Promise.all([...this.queues.values()]);
  }

  close(): void {
    this.graceEnds.unsubscribe();
    this.reports.complete();
  }

  private async apply(ev: AddressEvent): Promise<void> {
    const { next, steps } = decide(this.applied.get(ev.address), ev);
    this.applied.set(ev.address, next);
    let counts: DropCounts | undefined;
    let monitors = 0;
    let state = 0;
    let grace: GracePeriod | undefined;
    for (const step of steps) {
      try {
        switch (step) {
          case 'drain': this.opts.locks.setDraining(ev.address, true); break;
          case 'undrain': this.opts.locks.setDraining(ev.address, false); break;
          case 'drop-locks':
            counts = this.opts.locks.dropByServerAddress(ev.address);
            this.reportDrop(ev, counts, sinceRemoval(ev));
            break;
          case 'close-listeners': await this.opts.listeners.removeAddress(ev.address); break;
          case 'forget-clients': this.opts.monitors.forgetClients(ev.address); break;
          case 'start-grace': grace = this.opts.locks.grace.start(addressScope(ev.address), this.opts.graceSeconds()); break;
          case 'open-listeners': await this.bind(ev.address); break;
          case 'load-monitors': monitors = (await this.opts.monitors.activate(ev.address)).records; break;
          case 'bump-state': state = await this.opts.monitors.bumpState(ev.address); break;
          case 'notify':
            // Nobody to tell means nobody to reclaim: no reason to keep the address in grace.
            if (monitors === 0 && grace) {
              this.opts.locks.grace.end(addressScope(ev.address));
              grace = undefined;
            }
            this.opts.log?.info({ address: ev.address, source: ev.source, state, monitors, graceEndsAt: iso(grace?.endsAt) }, `${ev.address} arrived: grace ${grace ? `until ${iso(grace.endsAt)}` : 'not needed'}, state ${state}, notifying ${plural(monitors, 'host')}`);
            this.reports.next({ type: 'up', address: ev.address, source: ev.source, state, monitors, graceEndsAt: grace?.endsAt ?? null });
            if (monitors > 0) void this.track(ev.address);
            break;
        }
      } catch (err) {
        this.fail(ev.address, step, err);
        if (step === 'open-listeners' || step === 'bump-state') {
          // Without listeners a notify would send clients to a dead address, and without a new
          // state number peers would take it for an old one; a grace would only outlive either.
          // The address stays present: its removal still drops.
          if (grace) this.opts.locks.grace.end(addressScope(ev.address));
          return;
        }
      }
    }
    if (ev.type === 'draining' || ev.type === 'drain-ended') {
      if (steps.length) {
        this.opts.log?.info({ address: ev.address, source: ev.source, ...by(ev) }, `${ev.address} ${ev.type === 'draining' ? `removal requested${ev.comm ? ` by ${ev.comm}[${ev.pid}]` : ''}: refusing new locks through it` : 'removal did not happen: accepting locks again'}`);
        this.reports.next({ type: ev.type, address: ev.address, source: ev.source, pid: ev.pid, comm: ev.comm });
      }
    }
  }

  private reportDrop(ev: AddressEvent, counts: DropCounts, ms: number): void {
    const line = dropLine({ address: ev.address, source: ev.source, pid: ev.pid, comm: ev.comm, counts, ms });
    this.opts.log?.info(
      { address: ev.address, source: ev.source, ...by(ev), locks: counts.locks, shares: counts.shares, blocked: counts.blocked, clients: counts.clients, woken: counts.woken, ms: Number(ms.toFixed(3)), measuredFrom: ev.source === 'poll' ? 'detection' : 'removal' },
      line,
    );
    this.reports.next({ type: 'down', address: ev.address, source: ev.source, pid: ev.pid, comm: ev.comm, counts, ms, line });
  }

  private async bind(address: string): Promise<void> {
    const attempts = this.opts.bindAttempts ?? 10;
    for (let i = 1; ; i++) {
      try {
        return await this.opts.listeners.addAddress(address);
      } catch (err) {
        if (i >= attempts) throw err;
        await new Promise((r) => setTimeout(r, this.opts.bindRetryMs ?? 100));
      }
    }
  }

  private track(address: string): Promise<NotifyOutcome> {
    const p = this.opts.monitors.notify(address);
    p.then(
      (r) => this.reports.next({ type: 'notified', address, state: r.state, notified: r.notified.length, failed: r.failed, ms: r.ms }),
      (err) => this.fail(address, 'notify', err),
    );
    return p;
  }

  private fail(address: string, step: FailoverStep | 'grace-end', err: unknown): void {
    const error = err instanceof Error ? err.message : String(err);
    this.opts.log?.error({ address, step, err: error }, `failover: ${step} for ${address} failed: ${error}`);
    this.reports.next({ type: 'error', address, step, error });
  }
}
