// Which address sources run, and the AddressEvent stream the watch pipeline makes of them. A
// source that cannot run here (no addon, no BPF, replay mode) is reported with the reason, for
// the start log and `lockdropctl status`; the daemon then runs on the others.
import { BehaviorSubject, EMPTY, Observable, catchError, filter, merge, share, tap } from 'rxjs';
import type { Logger } from 'pino';
import { addonStatus, openLockdropProbes, openRtnetlink, type RtnetlinkSocket } from '../addon';
import {
  addressTransitions, bpfSource, floatingFilter, isOverflow, netlinkSource, onlyFloating, pollSource, replaySource,
  type AddressEvent, type SourceItem, type SourceName, type SourceOverflow, type WatchConfig,
} from '../watch';
import type { Config } from './config';
import type { SourceStatus } from '../control';

export interface AddressWatch {
  /** The floating addresses' events (failover's). */
  events$: Observable<AddressEvent>;
  /** Every non-loopback address's events, floating or not (the node serves the others). */
  all$: Observable<AddressEvent>;
  /** Whether failover manages the address (the configured floating filter, as reloaded). */
  isFloating(address: string): boolean;
  overflows$: Observable<SourceOverflow>;
  /** Live: a source that fails after start is marked inactive with its reason. */
  sources: SourceStatus[];
  /** Applies the reloadable settings: hold-down and floating filter (an address already up that it now takes in arrives). */
  reconfigure(cfg: Config): void;
  close(): void;
}

/** What the watch pipeline takes from the configuration (reloadable). */
const watchConfig = (cfg: Config): WatchConfig => ({ floating: cfg.addresses, holdDownMs: cfg.holdDown });

export function createAddressWatch(cfg: Config, log: Logger): AddressWatch {
  const sources: SourceStatus[] = [];
  const inputs: Observable<SourceItem>[] = [];
  let rtnetlink: RtnetlinkSocket | undefined;
  // A source failing later (e.g. the probes refused at load) leaves the others running.
  const guarded = (name: SourceName, status: SourceStatus, source: Observable<SourceItem>): Observable<SourceItem> =>
    source.pipe(
      catchError((err: Error) => {
        status.active = false;
        status.reason = err.message;
        log.warn({ source: name, err: err.message }, `source ${name}: off (${err.message})`);
        return EMPTY;
      }),
    );
  if (cfg.replay) {
    const status: SourceStatus = { name: 'replay', active: true, reason: cfg.replay };
    sources.push(status);
    let changes = 0;
    // The trace ends; the daemon keeps the state it left (inspect it with lockdropctl) until stopped.
    const replay$ = replaySource(cfg.replay).pipe(
      tap({
        next: (i) => void (isOverflow(i) || changes++),
        complete: () => {
          status.reason = `${cfg.replay}: ended after ${changes} address ${changes === 1 ? 'change' : 'changes'}`;
          log.info({ source: 'replay', trace: cfg.replay, changes }, `replay: end of the trace ${cfg.replay} (${changes} address ${changes === 1 ? 'change' : 'changes'}); lockdropd keeps serving what it left until stopped`);
        },
      }),
    );
    inputs.push(guarded('replay', status, replay$));
    for (const name of cfg.sources) sources.push({ name, active: false, reason: 'replaying a trace' });
  } else {
    for (const name of cfg.sources) {
      const status: SourceStatus = { name, active: true };
      sources.push(status);
      if (name === 'poll') {
        status.reason = `every ${cfg.pollInterval} s`;
        inputs.push(guarded(name, status, pollSource({ intervalMs: cfg.pollInterval * 1000 })));
        continue;
      }
      const addon = addonStatus();
      if (!addon.available) {
        status.active = false;
        status.reason = addon.reason;
        continue;
      }
      if (name === 'netlink') {
        rtnetlink = openRtnetlink({ rcvbuf: cfg.netlinkReceiveBuffer });
        inputs.push(guarded(name, status, netlinkSource(rtnetlink)));
      } else {
        // Opened when the source is subscribed: which programs run, and why the others do not.
        const open = () => {
          const probes = openLockdropProbes();
          const programs: Array<{ name: string; status: string; reason?: string }> = probes.programs;
          status.reason = programs.map((p) => (p.status === 'attached' ? `${p.name}: attached` : `${p.name}: ${p.status} (${p.reason})`)).join('; ');
          for (const p of programs) log.info({ source: 'bpf', program: p.name, status: p.status, reason: p.reason }, `bpf probe ${p.name}: ${p.status}${p.reason ? ` (${p.reason})` : ''}`);
          return probes;
        };
        inputs.push(guarded(name, status, bpfSource(open)));
      }
    }
  }
  for (const s of sources) log.info({ source: s.name, active: s.active, reason: s.reason }, `source ${s.name}: ${s.active ? 'active' : `off (${s.reason})`}`);

  const items$ = (inputs.length ? merge(...inputs) : EMPTY).pipe(share());
  const overflows$ = items$.pipe(filter(isOverflow), share());
  // The hold-down and the floating filter are the pipeline's, fed by reloads: every non-loopback
  // address's transitions for the node, the floating ones' for failover.
  const config$ = new BehaviorSubject(watchConfig(cfg));
  let floating = floatingFilter(cfg.addresses);
  const all$ = items$.pipe(addressTransitions(config$), share());
  const events$ = all$.pipe(onlyFloating(config$), share());
  return {
    events$,
    all$,
    isFloating: (a) => floating(a),
    overflows$,
    sources,
    reconfigure: (next) => {
      floating = floatingFilter(next.addresses);
      config$.next(watchConfig(next));
    },
    close: () => {
      config$.complete();
      rtnetlink?.close();
    },
  };
}
