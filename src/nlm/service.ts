// The NLM service: the program versions (1, 3, 4) the daemon registers on the RPC server, made
// of one handler per procedure (handlers.ts) and the procedure table (procedures.ts), given what
// deps.ts describes.
import type { ProgramVersion } from '../rpc/types';
import type { BlockGranted } from '../locks/types';
import { defaultNlmServiceOptions, type NlmServiceDeps, type NlmServiceOptions } from './deps';
import { NlmHandlers } from './handlers';
import { nlmPrograms } from './procedures';

export interface NlmService {
  readonly programs: ProgramVersion[];
  /** Give to the LockTable as its onBlockGranted: sends GRANTED / GRANTED_MSG. */
  onBlockGranted(g: BlockGranted): void;
  /**
   * The address went away (its locks dropped): forget its monitored hosts without unmonitoring
   * (the records stay for the node taking it over) and its pending GRANTED callbacks, so that a
   * late callback failure cannot release a lock reclaimed in the meantime.
   */
  forgetAddress(serverAddress: string): void;
  /** The host rebooted (its locks dropped): forget it without unmonitoring, and its pending grants. */
  forgetHost(hostKey: string): void;
  /** Unmonitors idle hosts now (also runs every hostGcIntervalMs). */
  collectHosts(): number;
  pendingGrants(): number;
  close(): void;
}

export function createNlmService(deps: NlmServiceDeps): NlmService {
  const opts: NlmServiceOptions = { ...defaultNlmServiceOptions, ...deps.options };
  const h = new NlmHandlers(deps, opts);
  return {
    programs: nlmPrograms(h, opts.versions),
    // GRANTED goes out once the grant is durable in the journal.
    onBlockGranted: (g) => {
      const durable = deps.durable?.();
      if (!durable) return h.grants.start(g);
      durable.then(
        () => h.grants.start(g),
        (err: unknown) => {
          deps.logger?.error({ err: (err as Error).message, host: g.lock.owner.host }, `a grant to ${g.lock.owner.host} could not be journaled: taken back`);
          deps.table.undoGrant(g);
        },
      );
    },
    forgetAddress: (a) => {
      h.monitored?.forgetAddress(a);
      h.grants.forget((l) => l.serverAddress === a);
    },
    forgetHost: (host) => {
      h.monitored?.forgetHost(host);
      h.grants.forgetOfHost(host);
    },
    collectHosts: () => h.monitored?.sweep() ?? 0,
    pendingGrants: () => h.grants.size,
    close: () => h.close(),
  };
}
