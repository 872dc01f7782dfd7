// Grace periods, each scoped to everything, to one server address or to one export.
// Expiry is checked lazily against now(); an unref'd timer only announces the end on time.
import { Subject, type Observable } from 'rxjs';
import type { GracePeriod, GraceScope } from './types';

const scopeKey = (s: GraceScope): string =>
  s.kind === 'global' ? 'g' : s.kind === 'address' ? `a:${s.address}` : `e:${s.exportId}`;

export class GraceTable {
  private readonly periods = new Map<string, { period: GracePeriod; timer: NodeJS.Timeout }>();
  private readonly endings = new Subject<GracePeriod>();

  /**
   * Periods as they end (on time, early or by hand). Apart from the table's changes so that who
   * only cares about grace (failover) does not make every grant and release build an event.
   */
  readonly ended$: Observable<GracePeriod> = this.endings.asObservable();

  constructor(
    private readonly now: () => number,
    private readonly announce: (period: GracePeriod, state: 'started' | 'ended') => void,
  ) {}

  /** Starts (or restarts, replacing the old end time) the grace period of a scope. */
  start(scope: GraceScope, seconds: number): GracePeriod {
    if (!(seconds >= 0)) throw new RangeError(`grace seconds must be >= 0, got ${seconds}`);
    const key = scopeKey(scope);
    const old = this.periods.get(key);
    if (old) clearTimeout(old.timer);
    const startedAt = this.now();
    const period: GracePeriod = { scope: { ...scope }, startedAt, endsAt: startedAt + seconds * 1000 };
    this.periods.set(key, { period, timer: this.arm(key, seconds * 1000) });
    this.announce(period, 'started');
    return period;
  }

  /** Ends a scope's grace early; false if that scope had none running. */
  end(scope: GraceScope): boolean {
    this.sweep();
    const key = scopeKey(scope);
    const p = this.periods.get(key);
    if (!p) return false;
    this.drop(key, p.period, p.timer);
    return true;
  }

  active(): GracePeriod[] {
    this.sweep();
    return [...this.periods.values()].map((p) => p.period);
  }

  /** Whether a grace period covers a request through this server address on this export. */
  covers(serverAddress: string, exportId?: string): boolean {
    if (this.periods.size === 0) return false;
    return (
      this.live('g') ||
      this.live(`a:${serverAddress}`) ||
      (exportId !== undefined && this.live(`e:${exportId}`))
    );
  }

  /** Node timers overflow past 2^31-1 ms: long periods re-arm until they are due. */
  private arm(key: string, ms: number): NodeJS.Timeout {
    return setTimeout(() => {
      this.sweep();
      const p = this.periods.get(key);
      if (p) p.timer = this.arm(key, Math.max(1, p.period.endsAt - this.now()));
    }, Math.min(ms + 1, 2 ** 31 - 1)).unref();
  }

  private live(key: string): boolean {
    const p = this.periods.get(key);
    if (!p) return false;
    if (this.now() < p.period.endsAt) return true;
    this.drop(key, p.period, p.timer);
    return false;
  }

  private sweep(): void {
    const t = this.now();
    for (const [key, p] of this.periods) if (t >= p.period.endsAt) this.drop(key, p.period, p.timer);
  }

  private drop(key: string, period: GracePeriod, timer: NodeJS.Timeout): void {
    clearTimeout(timer);
    this.periods.delete(key);
    this.announce(period, 'ended');
    this.endings.next(period);
  }
}
