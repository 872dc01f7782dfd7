// The one place where an address event meets the lock table: performs decide()'s steps against
// the listeners (RpcServer), the lock table and the status monitor, and reports what it did.
import { Subject, filter, type Observable, type Subscription } from 'rxjs';
import type { Logger } from 'pino';
import type { Arrival, DropCounts, GracePeriod, GraceScope, ReclaimDone, Unreclaimed } from '../locks';
import { nowMs, type AddressEvent, type AddressPhase, type SourceName } from '../watch/types';
import { decide, type FailoverStep } from './decide';
import { dropLine, plural } from './words';
import { Backoff } from '../net';

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

/** What failover needs of the lock journal (the cluster's store and the table's awaiting locks). */
export interface FailoverJournal {
  /** Everything granted through the address is durable and in every live node's index: only then may its kernel locks go. */
  barrier(address: string): Promise<{ missing: string[]; ms: number }>;
  /** The address's journal read to its end, its entries set up as locks awaiting reclaim (with placeholders on the files). */
  takeOver(address: string): Promise<Arrival>;
  /** The address's grace ended: what is still awaiting reclaim is removed, from the table and the journal. */
  expire(address: string): Unreclaimed;
  /** An address whose every awaiting lock was reclaimed or given up. */
  readonly reclaimed$: Observable<ReclaimDone>;
  /** After a planned restart: the address's journal written here again, its entries already in the table (no arrival). */
  resume?(address: string): Promise<void>;
}

export type FailoverReport =
  /** `line`: the drop's one line, as logged here; the daemon's `watch` shows the same. */
  | { type: 'down'; address: string; source: SourceName; pid?: number; comm?: string; counts: DropCounts; ms: number; line: string }
  | { type: 'up'; address: string; source: SourceName; state: number; monitors: number; graceEndsAt: number | null }
  | { type: 'draining' | 'drain-ended'; address: string; source: SourceName; pid?: number; comm?: string }
  | { type: 'notified'; address: string; state: number; notified: number; failed: string[]; ms: number }
  /** The address's grace ended by itself (everything reclaimed) or at its deadline (`unreclaimed` locks removed). */
  | { type: 'grace-ended'; address: string; reclaimed: boolean; locks: number; unreclaimed: number; line: string }
  | { type: 'barrier'; address: string; missing: string[]; ms: number }
  | { type: 'error'; address: string; step: FailoverStep | 'grace-end' | 'lost-lock'; error: string };

export interface FailoverOptions {
  listeners: Listeners;
  locks: FailoverLocks;
  monitors: FailoverMonitors;
  /** The lock journal; without it a move keeps no lock for its owner (one node, or memory-only locks). */
  journal?: FailoverJournal;
  /** Grace period of an arriving address, in seconds (read at each arrival, so a reload applies). */
  graceSeconds: () => number;
  log?: Logger;
  /** Attempts to bind an arriving address (an address can be briefly unbindable right after it appears). */
  bindAttempts?: number;
  bindRetryMs?: number;
}

const addressScope = (address: string): GraceScope => ({ kind: 'address', address });

/** The first wait before a failed take-over is tried again. */
const TAKE_OVER_RETRY_MS = 200;

export class FailoverController {
  /** The phase failover has applied to each address it has seen. */
  private readonly applied = new Map<string, AddressPhase>();
  private readonly reports = new Subject<FailoverReport>();
  /** One queue per address: its events apply in order; one address's slow bind never delays another's drop. */
  private readonly queues = new Map<string, Promise<void>>();
  /** Each address's latest event (handled or queued): a step tried again stops once another came. */
  private readonly latest = new Map<string, AddressEvent>();
  private readonly graceEnds: Subscription;
  private readonly reclaims: Subscription | undefined;

  /** Everything failover did, for logs, metrics and `lockdropctl watch`. */
  readonly reports$: Observable<FailoverReport> = this.reports.asObservable();

  constructor(private readonly opts: FailoverOptions) {
    // An address's grace ended (on time, early or by hand): hosts told and not back are forgotten.
    this.graceEnds = opts.locks.grace.ended$
      .pipe(filter((p) => p.scope.kind === 'address'))
      .subscribe((p) => {
        const address = (p.scope as { address: string }).address;
        if (opts.journal) this.expire(opts.journal, address);
        opts.monitors.graceEnded(address).catch((err) => this.fail(address, 'grace-end', err));
      });
    // Nothing left to reclaim: the grace of that address has no reason to go on.
    this.reclaims = opts.journal?.reclaimed$.subscribe((r) => {
      const line = `grace of ${r.address} ended: ${r.locks} of ${plural(r.locks, 'lock')} reclaimed by ${plural(r.hosts, 'host')} in ${(r.ms / 1000).toFixed(2)} s`;
      this.opts.log?.info({ address: r.address, locks: r.locks, hosts: r.hosts, ms: r.ms }, line);
      this.reports.next({ type: 'grace-ended', address: r.address, reclaimed: true, locks: r.locks, unreclaimed: 0, line });
      this.opts.locks.grace.end(addressScope(r.address));
    });
  }

  /** The grace of an address ended with locks still awaiting reclaim: they are reported and removed. */
  private expire(journal: FailoverJournal, address: string): void {
    let u: Unreclaimed;
    try {
      u = journal.expire(address);
    } catch (err) {
      return this.fail(address, 'grace-end', err);
    }
    if (u.locks === 0) return;
    const who = [...u.byHost].map(([h, n]) => `${h} ${n}`).join(', ');
    const line = `grace of ${address} ended: ${u.locks} of ${plural(u.total, 'lock')} not reclaimed, removed (${who})`;
    this.opts.log?.warn({ address, unreclaimed: u.locks, total: u.total, hosts: Object.fromEntries(u.byHost) }, line);
    this.reports.next({ type: 'grace-ended', address, reclaimed: false, locks: u.total - u.locks, unreclaimed: u.locks, line });
  }

  /** Applies one event after the earlier events of its address. Resolves when its drop is complete. */
  handle(ev: AddressEvent): Promise<void> {
    this.latest.set(ev.address, ev);
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

  /**
   * An address this node held before a planned restart (src/daemon/restart.ts), its locks
   * already back in the table: held again as it was — its journal, listeners and monitor
   * records — with no grace, no new state number and no SM_NOTIFY (its clients saw no change).
   * Its 'up' event then finds it up: nothing more to do.
   */
  async resume(address: string): Promise<void> {
    this.applied.set(address, 'up');
    try {
      await this.opts.journal?.resume?.(address);
      await this.bind(address);
      await this.opts.monitors.activate(address);
    } catch (err) {
      this.fail(address, 'open-listeners', err);
      throw err;
    }
    this.opts.log?.info({ address }, `${address} resumed after a planned restart: no grace, state unchanged, nobody notified`);
  }

  /** Waits until every queued event is applied (notifications may go on: they retry for minutes). */
  async settle(): Promise<void> {
    await Promise.all([...this.queues.values()]);
  }

  close(): void {
    this.latest.clear();
    this.graceEnds.unsubscribe();
    this.reclaims?.unsubscribe();
    this.reports.complete();
  }

  private async apply(ev: AddressEvent): Promise<void> {
    const { next, steps } = decide(this.applied.get(ev.address), ev);
    this.applied.set(ev.address, next);
    let counts: DropCounts | undefined;
    let monitors = 0;
    let state = 0;
    let grace: GracePeriod | undefined;
    let arrival: Arrival | undefined;
    const journal = this.opts.journal;
    // Each step's milliseconds, logged with the arrival: what an address's way to SM_NOTIFY cost.
    const stepsMs: Partial<Record<FailoverStep, number>> = {};
    let prev: { step: FailoverStep; at: number } | undefined;
    for (const step of steps) {
      if (prev) stepsMs[prev.step] = Number((nowMs() - prev.at).toFixed(1));
      prev = { step, at: nowMs() };
      try {
        switch (step) {
          case 'drain': this.opts.locks.setDraining(ev.address, true); break;
          case 'undrain': this.opts.locks.setDraining(ev.address, false); break;
          case 'barrier':
            if (journal) await this.barrier(journal, ev.address);
            break;
          case 'take-over':
            if (journal) arrival = await this.takeOverUntilDone(journal, ev);
            break;
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
            // Nobody to tell means nobody to reclaim: no reason to keep the address in grace. With a
            // journal, what must be reclaimed is known exactly: nothing held, no grace.
            if ((arrival ? arrival.locks === 0 : monitors === 0) && grace) {
              this.opts.locks.grace.end(addressScope(ev.address));
              grace = undefined;
            }
            this.opts.log?.info({ address: ev.address, source: ev.source, state, monitors, graceEndsAt: iso(grace?.endsAt), stepsMs }, `${ev.address} arrived: grace ${grace ? `until ${iso(grace.endsAt)}` : 'not needed'}, state ${state}, notifying ${plural(monitors, 'host')}`);
            this.reports.next({ type: 'up', address: ev.address, source: ev.source, state, monitors, graceEndsAt: grace?.endsAt ?? null });
            if (monitors > 0) void this.track(ev.address);
            break;
        }
      } catch (err) {
        this.fail(ev.address, step, err);
        // A barrier that failed (the store unreachable) must not hold the drop: the address is gone.
        if (step === 'take-over' || step === 'open-listeners' || step === 'bump-state') {
          // Without its journal the address's locks cannot be protected for their owners, without
          // listeners a notify would send clients to a dead address, and without a new state
          // number peers would take it for an old one; a grace would only outlive either.
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

  private async barrier(journal: FailoverJournal, address: string): Promise<void> {
    const r = await journal.barrier(address);
    this.reports.next({ type: 'barrier', address, missing: r.missing, ms: r.ms });
    if (r.missing.length === 0) return;
    this.opts.log?.error({ address, missing: r.missing, ms: r.ms }, `${address}: ${r.missing.join(', ')} did not confirm its journal within ${r.ms.toFixed(0)} ms: dropping anyway (until their index catches up they may grant its ranges)`);
  }

  /**
   * The take-over, tried again while the address stays present (no later event of it): a store
   * that failed once (an etcd election, a shared filesystem's hiccup) must not leave an address
   * here unserved until it moves again.
   */
  private async takeOverUntilDone(journal: FailoverJournal, ev: AddressEvent): Promise<Arrival> {
    const backoff = new Backoff({ initialMs: TAKE_OVER_RETRY_MS, maxMs: 5_000 });
    for (;;) {
      try {
        return await this.takeOver(journal, ev.address);
      } catch (err) {
        if (this.latest.get(ev.address) !== ev) throw err;
        const ms = backoff.next();
        const error = err instanceof Error ? err.message : String(err);
        this.opts.log?.warn({ address: ev.address, err: error, retryMs: Math.round(ms) }, `failover: take-over of ${ev.address} failed: ${error}; trying again in ${Math.round(ms)} ms`);
        await new Promise((r) => setTimeout(r, ms));
        if (this.latest.get(ev.address) !== ev) throw err;
      }
    }
  }

  private async takeOver(journal: FailoverJournal, address: string): Promise<Arrival> {
    const a = await journal.takeOver(address);
    for (const { entry, status } of a.lost) {
      const error = `${entry.owner.host}'s locks on ${entry.fh.toString('hex')} through ${address} could not be held for reclaim (${status}): another locker took them while the address moved (kept from lockdrop's other clients until the grace ends; its reclaim fails while that locker holds them)`;
      this.opts.log?.error({ address, host: entry.owner.host, fh: entry.fh.toString('hex'), status }, error);
      this.reports.next({ type: 'error', address, step: 'lost-lock', error });
    }
    if (a.locks > 0) this.opts.log?.info({ address, locks: a.locks, hosts: a.hosts }, `${address}: ${plural(a.locks, 'lock')} of ${plural(a.hosts, 'host')} held for reclaim`);
    return a;
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
