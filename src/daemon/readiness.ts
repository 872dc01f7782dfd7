// Telling the service manager how lockdropd is doing (sd_notify(3), Type=notify): READY=1 only
// once every address present at start is served — its listeners open, its arrival applied
// (grace, state number, SM_NOTIFY started) — and rpcbind holds the registration; RELOADING=1
// and READY=1 around a reload; STOPPING=1; STATUS= lines for `systemctl status`.
//
// The datagram itself goes out through a `notify(message)` function: Node has no unix datagram
// sockets, the native addon sends it. Without $NOTIFY_SOCKET there is no service manager to tell.
import { addonStatus, sdNotify } from '../addon';
import { filter, firstValueFrom, merge, scan, takeWhile, timer, map, type Observable } from 'rxjs';
import type { Logger } from 'pino';
import { plural, type FailoverReport } from '../failover';
import { netlink, readLocalAddresses, type AddressEvent } from '../watch';
import type { StatusReport } from '../control';

/** Sends one sd_notify message (newline-separated KEY=VALUE lines); false when it could not. */
export type SdNotify = (message: string) => boolean;

/** The addon's sd_notify when $NOTIFY_SOCKET asks for one; undefined when nobody listens (or the addon cannot send). */
export function systemdNotify(log: Logger, env: NodeJS.ProcessEnv = process.env): SdNotify | undefined {
  if (!env.NOTIFY_SOCKET) return undefined;
  const addon = addonStatus();
  if (!addon.available) {
    log.warn({ notifySocket: env.NOTIFY_SOCKET, reason: addon.reason }, `NOTIFY_SOCKET is set but the native addon cannot send sd_notify messages (${addon.reason}): the service manager will not see READY=1`);
    return undefined;
  }
  return (message) => sdNotify(message, env.NOTIFY_SOCKET);
}

/** One line for `systemctl status`: what is served, locks, hosts, graces. */
export function statusLine(s: StatusReport): string {
  const held = s.addresses.filter((a) => a.present);
  const graces = held.filter((a) => a.grace !== null).length;
  const serving = held.length ? `serving ${plural(held.length, 'address', 'addresses')} (${held.map((a) => a.address).slice(0, 4).join(', ')}${held.length > 4 ? ', …' : ''})` : 'serving no floating address';
  return `${serving}; ${plural(s.locks, 'lock')}, ${plural(s.monitors, 'monitored host')}${graces ? `; ${graces} in grace` : ''}${s.rpcbind ? '' : '; not registered with rpcbind'}`;
}

export class Readiness {
  private last: string | undefined;

  constructor(
    private readonly notify: SdNotify | undefined,
    private readonly log: Logger,
  ) {}

  get enabled(): boolean {
    return this.notify !== undefined;
  }

  ready(status: string): void {
    this.last = status;
    this.send(`READY=1\nSTATUS=${status}`);
  }

  /** A reload starts (systemd's MONOTONIC_USEC is CLOCK_MONOTONIC, which process.hrtime reads). */
  reloading(): void {
    this.send(`RELOADING=1\nMONOTONIC_USEC=${process.hrtime.bigint() / 1000n}\nSTATUS=reloading the configuration`);
  }

  /** A status line, sent only when it changed. */
  status(text: string): void {
    if (text === this.last) return;
    this.last = text;
    this.send(`STATUS=${text}`);
  }

  stopping(): void {
    this.send('STOPPING=1\nSTATUS=stopping: closing listeners, unregistering from rpcbind');
  }

  private send(message: string): void {
    if (!this.notify) return;
    let ok = false;
    try {
      ok = this.notify(message);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'sd_notify failed');
      return;
    }
    if (!ok) this.log.warn({ message: message.split('\n')[0] }, 'sd_notify: the message was not sent');
  }
}

/** Usable local addresses now (not tentative nor failed duplicate address detection), those `managed` keeps. */
export async function presentAddresses(managed: (address: string) => boolean): Promise<string[]> {
  const unusable = netlink.IFA_F_TENTATIVE | netlink.IFA_F_DADFAILED;
  const all = await readLocalAddresses();
  const usable = all.filter((a) => (a.flags & unusable) === 0).map((a) => a.local).filter((a): a is string => a !== undefined && managed(a));
  return [...new Set(usable)].sort();
}

/** An arrival applied (up), failed, or cut short (the address left, or waits for another node's lease). */
export interface ArrivalOutcome {
  address: string;
  failed: boolean;
}

/** Arrival outcomes from failover's reports and the address events. */
export function arrivalOutcomes(reports$: Observable<FailoverReport>, events$: Observable<AddressEvent>): Observable<ArrivalOutcome> {
  return merge(
    // The steps whose failure ends an arrival (see FailoverController.apply); other failures come before its 'up'.
    reports$.pipe(filter((r) => r.type === 'up' || (r.type === 'error' && (r.step === 'open-listeners' || r.step === 'bump-state'))), map((r) => ({ address: r.address, failed: r.type === 'error' }))),
    events$.pipe(filter((e) => e.type === 'down'), map((e) => ({ address: e.address, failed: false }))),
  );
}

/**
 * Resolves once every expected address has an outcome, or after `timeoutMs` with the ones still
 * pending. Subscribe before the outcomes can come: they are not replayed.
 */
export function arrivalsApplied(expected: readonly string[], outcomes$: Observable<ArrivalOutcome>, timeoutMs: number): Promise<{ pending: string[]; failed: string[] }> {
  if (expected.length === 0) return Promise.resolve({ pending: [], failed: [] });
  const settled$ = merge(outcomes$, timer(timeoutMs).pipe(map(() => null)));
  return firstValueFrom(
    settled$.pipe(
      scan((acc, s) => {
        if (s === null) return { ...acc, timedOut: true };
        if (acc.pending.delete(s.address) && s.failed) acc.failed.push(s.address);
        return acc;
      }, { pending: new Set(expected), failed: [] as string[], timedOut: false }),
      takeWhile((acc) => acc.pending.size > 0 && !acc.timedOut, true),
      filter((acc) => acc.pending.size === 0 || acc.timedOut),
      map((acc) => ({ pending: [...acc.pending].sort(), failed: acc.failed.sort() })),
    ),
  );
}
