// Which address sources run, and the address event stream they feed. Each source that cannot run
// here (no addon, no BPF, replay mode) is reported with the reason, for the start log and status.
import { EMPTY, Observable, filter, map, merge, share } from 'rxjs';
import type { Logger } from 'pino';
import { addonStatus, openRtnetlink, type RtnetlinkSocket } from '../addon';
import { addressFilter } from '../watch/address';
import { netlinkSource } from '../watch/sources/netlink';
import { pollSource } from '../watch/sources/poll';
import { replaySource } from '../watch/sources/replay';
import { isOverflow, nowMs, type AddressChange, type AddressEvent, type SourceItem, type SourceOverflow } from '../watch/types';
import type { Config } from './config';
import type { SourceStatus } from './protocol';

export interface AddressWatch {
  events$: Observable<AddressEvent>;
  overflows$: Observable<SourceOverflow>;
  sources: SourceStatus[];
  /** Applies the reloadable settings (floating filter, hold-down). */
  reconfigure(cfg: Config): void;
  close(): void;
}

export function createAddressWatch(cfg: Config, log: Logger): AddressWatch {
  const sources: SourceStatus[] = [];
  const inputs: Observable<SourceItem>[] = [];
  let rtnetlink: RtnetlinkSocket | undefined;
  if (cfg.replay) {
    inputs.push(replaySource(cfg.replay));
    sources.push({ name: 'replay', active: true, reason: cfg.replay });
    for (const name of cfg.sources) sources.push({ name, active: false, reason: 'replaying a trace' });
  } else {
    for (const name of cfg.sources) {
      if (name === 'poll') {
        inputs.push(pollSource({ intervalMs: cfg.pollInterval * 1000 }));
        sources.push({ name, active: true, reason: `every ${cfg.pollInterval} s` });
      } else if (name === 'netlink') {
        const addon = addonStatus();
        if (!addon.available) {
          sources.push({ name, active: false, reason: addon.reason });
          continue;
        }
        rtnetlink = openRtnetlink();
        inputs.push(netlinkSource(rtnetlink));
        sources.push({ name, active: true });
      } else {
        sources.push({ name, active: false, reason: 'the bpf source is not wired into the daemon yet' });
      }
    }
  }
  for (const s of sources) log.info({ source: s.name, active: s.active, reason: s.reason }, `source ${s.name}: ${s.active ? 'active' : `off (${s.reason})`}`);

  let floating = addressFilter(cfg.addresses);
  const items$ = (inputs.length ? merge(...inputs) : EMPTY).pipe(share());
  const overflows$ = items$.pipe(filter(isOverflow), share());
  // Interim until src/watch's pipeline lands: one source's AddressTable already yields only
  // real transitions; merge keeps the first report of each (present/absent) state.
  const present = new Map<string, boolean>();
  const events$ = items$.pipe(
    filter((i): i is AddressChange => !isOverflow(i)),
    filter((c) => floating(c.address)),
    map((c): AddressEvent | undefined => {
      const up = c.kind === 'added';
      if (c.kind === 'added' || c.kind === 'removed') {
        if (present.get(c.address) === up) return undefined;
        present.set(c.address, up);
      }
      const type = c.kind === 'added' ? 'up' : c.kind === 'removed' ? 'down' : c.kind === 'remove-intent' ? 'draining' : 'drain-ended';
      return { type, address: c.address, family: c.family, ifindex: c.ifindex, source: c.source, at: c.at, pid: c.pid, comm: c.comm, detectedAt: nowMs() };
    }),
    filter((e): e is AddressEvent => e !== undefined),
    share(),
  );
  return {
    events$,
    overflows$,
    sources,
    reconfigure: (next) => {
      floating = addressFilter(next.addresses);
    },
    close: () => {
      rtnetlink?.close();
    },
  };
}
