// The lock journal's wiring: the table's entries to the cluster store, every node's journals to
// the table's index, and the journal steps of a failover (barrier before a drop, take-over on an
// arrival, expiry at the end of a grace).
import type { Observable, Subscription } from 'rxjs';
import type { Logger } from 'pino';
import type { FailoverJournal } from '../failover';
import type { Arrival, LockTable, ReclaimDone, Unreclaimed } from '../locks';
import type { ClusterStore, JournalRecord } from '../store';

export interface LockJournalOptions {
  store: ClusterStore;
  table: LockTable;
  /** How long a planned drop waits for every live node to confirm the address's journal. */
  barrierMs: () => number;
  log: Logger;
}

export class LockJournal implements FailoverJournal {
  readonly reclaimed$: Observable<ReclaimDone>;
  private readonly subs: Subscription[];
  /** Addresses this node writes the journal of: taken over, not released. */
  private readonly held = new Set<string>();
  /** Records appended since the last commit was asked for. */
  private pending = false;
  /** Per address, records appended and not yet seen back from the store (durable, in the index). */
  private readonly unseen = new Map<string, number>();

  constructor(private readonly opts: LockJournalOptions) {
    const { store, table, log } = opts;
    this.reclaimed$ = table.reclaimed$;
    this.subs = [
      store.changes$.subscribe((c) => this.index(c.address, c.records, c.reset)),
      store.faults$.subscribe((f) => {
        log.error({ address: f.address, where: f.where, position: f.position, reason: f.reason, truncated: f.truncated }, `journal of ${f.address}: ${f.reason} at byte ${f.position} of ${f.where}: ${f.truncated ? 'cut off' : 'not trusted'}`);
      }),
    ];
  }

  /**
   * The table's records of a call, to the store (durable by the next commit). Only the addresses
   * this node took over have a journal: the node's own addresses never move.
   */
  append(address: string, records: JournalRecord[]): void {
    if (!this.held.has(address)) return;
    // With nothing of its own in flight the index is the journal: an entry written again as it
    // already is (a reclaim: the same lock, no longer awaiting) costs no write and no wait.
    const unseen = this.unseen.get(address) ?? 0;
    const changed = unseen !== 0 ? records : records.filter((r) => !sameValue(this.opts.table.journalValue(address, r.key), r.value));
    if (changed.length === 0) return;
    this.opts.store.append(address, changed);
    this.unseen.set(address, unseen + changed.length);
    this.pending = true;
  }

  /** Resolves once every record appended so far is durable (undefined: none pending); a grant is answered only after. */
  durable(): Promise<void> | undefined {
    if (!this.pending) return undefined;
    this.pending = false;
    return this.opts.store.commit();
  }

  async barrier(address: string): Promise<{ missing: string[]; ms: number }> {
    await this.opts.store.commit();
    const r = await this.opts.store.barrier(address, this.opts.barrierMs());
    return { missing: r.missing, ms: r.ms };
  }

  async takeOver(address: string): Promise<Arrival> {
    const live = await this.opts.store.takeOver(address);
    this.held.add(address);
    const records: JournalRecord[] = [];
    for (const [key, value] of live) records.push({ key, value });
    // The index decodes each entry once (none, mostly: it followed the journal before) and the
    // arrival places them as it has them; one that does not decode is reported and protects nothing.
    this.index(address, records, true);
    return this.opts.table.arriveIndexed(address);
  }

  /** After a planned restart: this node writes the address's journal again; the table already holds its locks (restart.ts). */
  async resume(address: string): Promise<void> {
    const live = await this.opts.store.takeOver(address);
    this.held.add(address);
    this.index(address, [...live].map(([key, value]) => ({ key, value })), true);
  }

  expire(address: string): Unreclaimed {
    return this.opts.table.expireAwaiting(address);
  }

  /** The address left this node (its locks dropped): another node writes its journal now. */
  release(address: string): Promise<void> {
    this.held.delete(address);
    this.unseen.delete(address);
    return this.opts.store.release(address);
  }

  /** Commits what is pending and withdraws this node from the store's live nodes. */
  async close(): Promise<void> {
    for (const s of this.subs) s.unsubscribe();
    await this.opts.store.close();
  }

  private index(address: string, records: JournalRecord[], reset: boolean): void {
    const unseen = this.unseen.get(address);
    if (unseen !== undefined && !reset) this.unseen.set(address, Math.max(0, unseen - records.length));
    const { bad } = this.opts.table.applyJournal(address, records, reset);
    for (const b of bad) {
      this.opts.log.error({ address, key: b.key, err: b.error }, `journal of ${address}: an entry does not decode (${b.error}): it protects nothing`);
    }
  }
}

const sameValue = (a: Buffer | undefined, b: Buffer | null): boolean => (a === undefined ? b === null : b !== null && a.equals(b));
