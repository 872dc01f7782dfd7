// The holder lease when the cluster store is etcd: the address's holder key, on this node's etcd
// lease (src/store/etcd.ts), instead of a file in the state directory. Same surface as
// AddressLeases. An arriving address is served only once a transaction confirmed the key is this
// node's: while another node holds it (its lease alive in etcd), or while etcd cannot answer, the
// arrival waits — no listeners, grace or SM_NOTIFY — and looks again when the key changes or on a
// backoff. etcd itself expires a dead or cut-off holder's key after the lease's TTL: no clocks of
// two nodes are compared, and no node takes an address it could not confirm.
import { Observable, Subject } from 'rxjs';
import type { Logger } from 'pino';
import { Backoff } from '../net';
import { HeldError, type EtcdStore } from '../store';
import { nowMs, type AddressEvent } from '../watch/types';
import type { AddressLeases } from './lease';

/** What the daemon asks of a holder lease, whichever store keeps it. */
export type HolderLeases = Pick<AddressLeases, 'gate' | 'release' | 'heldBy' | 'waitingAddresses' | 'waiting$' | 'close'>;

export interface EtcdLeasesOptions {
  store: EtcdStore;
  leaseMs: number;
  log: Logger;
  onConflict?: (address: string, holder: string) => void;
}

export class EtcdLeases implements HolderLeases {
  private readonly held = new Set<string>();
  private readonly waiting = new Map<string, { holder: string; cancel: () => void }>();
  private readonly queues = new Map<string, Promise<void>>();
  private readonly waits = new Subject<{ address: string; holder: string }>();
  private closed = false;
  readonly waiting$ = this.waits.asObservable();

  constructor(private readonly opts: EtcdLeasesOptions) {}

  heldBy(address: string): string | undefined {
    return this.waiting.get(address)?.holder;
  }

  waitingAddresses(): string[] {
    return [...this.waiting.keys()];
  }

  gate(events$: Observable<AddressEvent>): Observable<AddressEvent> {
    return new Observable<AddressEvent>((subscriber) => {
      const sub = events$.subscribe({
        next: (ev) => {
          if (ev.type === 'down') this.waiting.get(ev.address)?.cancel();
          const done = (this.queues.get(ev.address) ?? Promise.resolve()).then(() => this.pass(ev, (e) => subscriber.next(e)));
          this.queues.set(ev.address, done.catch((err: Error) => this.opts.log.error({ address: ev.address, err: err.message }, `lease of ${ev.address}: ${err.message}`)));
        },
        error: (err) => subscriber.error(err),
        complete: () => void Promise.all([...this.queues.values()]).then(() => subscriber.complete()),
      });
      return () => sub.unsubscribe();
    });
  }

  private async pass(ev: AddressEvent, emit: (e: AddressEvent) => void): Promise<void> {
    if (ev.type !== 'up') {
      if (this.held.has(ev.address)) emit(ev);
      return;
    }
    if (this.held.has(ev.address)) return emit(ev);
    const waited = await this.acquire(ev.address);
    if (waited === null) return;
    this.held.add(ev.address);
    if (waited) {
      const at = nowMs();
      emit({ ...ev, at, detectedAt: at });
    } else emit(ev);
  }

  /** true after a wait, false at once, null when the address left meanwhile. */
  private async acquire(address: string): Promise<boolean | null> {
    const { store, log } = this.opts;
    let cancelled = false;
    let waited = false;
    const backoff = new Backoff({ initialMs: 20, maxMs: Math.max(100, Math.floor(this.opts.leaseMs / 3)) });
    for (;;) {
      if (cancelled || this.closed) return null;
      let holder: string;
      try {
        await store.claim(address);
        if (waited) log.warn({ address }, `${address}: lease taken in etcd`);
        this.waiting.delete(address);
        return waited;
      } catch (err) {
        holder = err instanceof HeldError ? err.holder : `nobody confirmed (${(err as Error).message})`;
      }
      const w = this.waiting.get(address);
      if (!w || w.holder !== holder) {
        const first = !w;
        this.waiting.set(address, { holder, cancel: () => void (cancelled = true) });
        if (first) {
          log.error({ address, holder }, `${address} arrived here but its lease in etcd is not this node's (${holder}): no listeners, grace or SM_NOTIFY for it until it is`);
          this.opts.onConflict?.(address, holder);
          this.waits.next({ address, holder });
        }
      }
      waited = true;
      await store.holderChanged(backoff.next());
    }
  }

  release(address: string): void {
    if (!this.held.delete(address)) return;
    void this.opts.store.unclaim(address);
  }

  close(): void {
    this.closed = true;
    for (const w of this.waiting.values()) w.cancel();
    this.waiting.clear();
    this.waits.complete();
    // The holder keys go with this node's etcd lease, revoked when the store closes.
  }
}
