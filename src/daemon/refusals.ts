// Requests the daemon refuses, told to the operator: a client that cannot lock should be found in
// the log without debug logging. One line at info per client and reason, then at most one per
// interval while the refusals go on, saying how many were not written (a client retrying in a
// loop must not flood the log).
import type { Logger } from 'pino';

const REASONS: Record<string, string> = {
  network: "its address is not among the export's clients",
  'insecure-port': 'the export is secure and the request came from an unprivileged port (>= 1024)',
  'unknown-handle': 'the file handle belongs to no configured export (stale_fh)',
  access: "the caller's uid may not open the file it would lock",
  'stale-handle': 'the file handle names no file (stale_fh)',
  budget: 'the open-file budget (maxOpenFiles) is spent (denied_nolocks)',
  'no-locks': 'no lock can be given now: the address is being dropped or the kernel had none (denied_nolocks)',
  'read-only': 'the file is on a read-only filesystem (rofs)',
  failed: 'the file could not be locked (failed)',
  unmonitored: 'the client could not be monitored (SM_MON failed): denied_nolocks',
};

export interface Refusal {
  /** The client's address and port. */
  client: string;
  port: number;
  /** AUTH_SYS machine name, when the call carried one. */
  machine?: string;
  /** The NLM caller_name the request carried. */
  callerName?: string;
  /** The server address the request came in through. */
  server: string;
  reason: string;
  export?: string | null;
  /** The NLM status answered, when it was not the export policy's `failed`. */
  status?: string;
}

/** Keys kept at most: past it, the ones older than the interval go. */
const MAX_KEYS = 4096;

export class RefusalLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly log: Pick<Logger, 'info'>,
    private readonly intervalMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  refused(r: Refusal): void {
    const key = `${r.client} ${r.reason}`;
    const t = this.now();
    const seen = this.last.get(key);
    if (seen && t - seen.at < this.intervalMs) {
      seen.suppressed++;
      return;
    }
    if (this.last.size >= MAX_KEYS) for (const [k, v] of this.last) if (t - v.at >= this.intervalMs) this.last.delete(k);
    if (this.last.size >= MAX_KEYS) this.last.clear();
    this.last.set(key, { at: t, suppressed: 0 });
    const suppressed = seen?.suppressed ?? 0;
    const names = [r.callerName !== undefined && `caller_name ${JSON.stringify(r.callerName)}`, r.machine !== undefined && `machine ${JSON.stringify(r.machine)}`].filter(Boolean);
    const who = `${r.client}${names.length ? ` (${names.join(', ')})` : ''}`;
    const more = suppressed ? `; ${suppressed} more refused since the last line` : '';
    this.log.info({ ...r, suppressed }, `refused a request from ${who} through ${r.server}${r.export ? ` on export ${r.export}` : ''}: ${REASONS[r.reason] ?? r.reason}${more}`);
  }
}
