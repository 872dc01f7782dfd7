// Split brain: a node must not run grace and SM_NOTIFY for an address another live node holds.
// The address's folder in the (shared) state directory names its holder in `holder`, a lease the
// holder renews every third of its length. An address that arrives here while another node's
// lease is live is held back from failover — no listeners, no grace, no notify — logged as an
// error and counted, until that lease expires (no renewal seen for its length) or the other node
// lets go (removes the file when the address leaves it, or when it stops).
//
// Taking a free lease is an exclusive create (O_EXCL, atomic on local filesystems and NFS); taking
// an expired one is a rename over it, read back after a moment in case another node did the same.
//
// A waiting node looks again when the holder file changes (inotify on its folder: the release on
// a failover comes 60–90 ms after the address left the other node, once its drop is done) and, as
// inotify sees nothing another NFS client does, on a backoff: 20 ms, doubling up to a third of the
// lease. Looking sooner never takes a live lease: only a removed file or one not renewed for a
// whole lease (measured on this node's clock) is taken.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, watch, writeSync, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { Observable, Subject } from 'rxjs';
import type { Logger } from 'pino';
import { nowMs, type AddressEvent } from '../watch/types';
import { Backoff } from '../net';

interface LeaseFile {
  node: string;
  pid: number;
  /** Incremented at every renewal: another node measures the lease by seeing it change. */
  seq: number;
  renewedAt: string;
  seconds: number;
}

export interface LeaseOptions {
  stateDir: string;
  /** This node's name: the host name, as the instance lock. */
  node: string;
  leaseMs: number;
  log: Logger;
  /** Called once each time an arriving address finds another node's live lease. */
  onConflict?: (address: string, holder: string) => void;
}

interface Waiting {
  holder: string;
  seq: string;
  /** When this node last saw the holder's lease change (its own clock). */
  changedAt: number;
  /** The next look, on the backoff. */
  timer: NodeJS.Timeout | undefined;
  /** The holder file's folder, watched; undefined where inotify cannot watch it. */
  watcher: FSWatcher | undefined;
  cancel: () => void;
}

/** The first look again after a held lease was found; it doubles up to a third of the lease. */
const FIRST_LOOK_MS = 20;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class AddressLeases {
  private readonly held = new Map<string, number>();
  private readonly waiting = new Map<string, Waiting>();
  private readonly queues = new Map<string, Promise<void>>();
  private readonly renewer: NodeJS.Timeout;
  private readonly waits = new Subject<{ address: string; holder: string }>();
  private closed = false;

  /** An arriving address that waits for another node's lease: for readiness (it is not served). */
  readonly waiting$ = this.waits.asObservable();

  constructor(private readonly opts: LeaseOptions) {
    this.renewer = setInterval(() => this.renewAll(), this.renewMs);
    this.renewer.unref();
  }

  private get renewMs(): number {
    return Math.max(100, Math.floor(this.opts.leaseMs / 3));
  }

  private file(address: string): string {
    return path.join(this.opts.stateDir, address, 'holder');
  }

  /** The node whose live lease keeps this arrived address from being served here, if any. */
  heldBy(address: string): string | undefined {
    return this.waiting.get(address)?.holder;
  }

  /** Addresses on this node waiting for another node's lease. */
  waitingAddresses(): string[] {
    return [...this.waiting.keys()];
  }

  /** Address events with arrivals held back until this node holds the address's lease. */
  gate(events$: Observable<AddressEvent>): Observable<AddressEvent> {
    return new Observable<AddressEvent>((subscriber) => {
      const sub = events$.subscribe({
        next: (ev) => {
          // Per address in order: a removal queued behind a waiting arrival cancels it.
          if (ev.type === 'down') this.waiting.get(ev.address)?.cancel();
          const done = (this.queues.get(ev.address) ?? Promise.resolve()).then(() => this.pass(ev, (e) => subscriber.next(e)));
          const tail = done.catch((err: Error) => this.opts.log.error({ address: ev.address, err: err.message }, `lease of ${ev.address}: ${err.message}`));
          this.queues.set(ev.address, tail);
        },
        error: (err) => subscriber.error(err),
        // A finished source (a replayed trace) may still have events queued behind an arrival
        // waiting for its lease: they go out first, or they would be lost.
        complete: () => void Promise.all([...this.queues.values()]).then(() => subscriber.complete()),
      });
      return () => sub.unsubscribe();
    });
  }

  private async pass(ev: AddressEvent, emit: (e: AddressEvent) => void): Promise<void> {
    if (ev.type !== 'up') {
      // Failover never saw an address this node does not hold the lease of: nothing to drop.
      if (this.held.has(ev.address)) emit(ev);
      return;
    }
    if (this.held.has(ev.address)) return emit(ev);
    const waitedFor = await this.acquire(ev.address);
    if (waitedFor === null) return; // it left again while waiting
    if (waitedFor) {
      const at = nowMs();
      emit({ ...ev, at, detectedAt: at });
    } else emit(ev);
  }

  /** Resolves once the lease is ours: false at once, the former holder after a wait, null when cancelled. */
  private acquire(address: string): Promise<string | false | null> {
    const first = this.tryTake(address);
    if (first === true) return Promise.resolve(false);
    return new Promise((resolve) => {
      let holder = first.holder;
      const backoff = new Backoff({ initialMs: FIRST_LOOK_MS, maxMs: this.renewMs });
      const stop = (): void => {
        clearTimeout(w.timer);
        w.watcher?.close();
        this.waiting.delete(address);
      };
      const w: Waiting = {
        holder,
        seq: first.seq,
        changedAt: nowMs(),
        timer: undefined,
        watcher: this.watchHolder(address, () => void check()),
        cancel: () => {
          stop();
          this.opts.log.info({ address, holder }, `${address} left this node while its lease was held by ${holder}`);
          resolve(null);
        },
      };
      this.waiting.set(address, w);
      this.opts.log.error({ address, holder, leaseSeconds: this.opts.leaseMs / 1000 }, `${address} arrived here but ${holder} holds its lease: no listeners, grace or SM_NOTIFY for it until that lease expires or ${holder} lets go (two nodes with one address?)`);
      this.opts.onConflict?.(address, holder);
      this.waits.next({ address, holder });
      let busy = false;
      const schedule = (): void => {
        clearTimeout(w.timer);
        w.timer = setTimeout(() => void check(), backoff.next());
      };
      const check = async (): Promise<void> => {
        if (busy || this.closed || this.waiting.get(address) !== w) return;
        busy = true;
        try {
          const r = await this.tryTakeWaiting(address, w);
          if (r === true) {
            stop();
            this.opts.log.warn({ address, holder }, `${address}: lease taken over from ${holder}`);
            resolve(holder);
            return;
          }
          holder = w.holder = r.holder;
        } catch (err) {
          this.opts.log.warn({ address, err: (err as Error).message }, `cannot look at the lease of ${address}: ${(err as Error).message}`);
        } finally {
          busy = false;
        }
        schedule();
      };
      schedule();
    });
  }

  /** Calls `changed` whenever the address's holder file may have changed here; undefined if its folder cannot be watched. */
  private watchHolder(address: string, changed: () => void): FSWatcher | undefined {
    const name = path.basename(this.file(address));
    try {
      const watcher = watch(path.dirname(this.file(address)), { persistent: false }, (_event, file) => {
        if (file === null || file === name) changed();
      });
      // Out of inotify watches, or the folder went: the backoff's looks remain.
      watcher.on('error', () => watcher.close());
      return watcher;
    } catch {
      return undefined;
    }
  }

  /** One look: ours now (true), or who holds it and its renewal mark. */
  private tryTake(address: string): true | { holder: string; seq: string } {
    const p = this.file(address);
    mkdirSync(path.dirname(p), { recursive: true, mode: 0o755 });
    try {
      const fd = openSync(p, 'wx', 0o644);
      try {
        this.writeLease(fd, 1);
      } finally {
        closeSync(fd);
      }
      this.held.set(address, 1);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const current = this.read(address);
    // Left by this node's own earlier run (the instance lock makes it the only one here): ours.
    if (current.lease?.node === this.opts.node) {
      this.replace(address, (current.lease.seq ?? 0) + 1);
      return true;
    }
    return { holder: current.lease?.node ?? 'an unreadable holder file', seq: current.raw };
  }

  private async tryTakeWaiting(address: string, w: Waiting): Promise<true | { holder: string }> {
    const r = this.tryTake(address);
    if (r === true) return true; // released (the file is gone) or left by us
    const now = nowMs();
    if (r.seq !== w.seq || r.holder !== w.holder) {
      w.seq = r.seq;
      w.changedAt = now;
      return r;
    }
    if (now - w.changedAt < this.opts.leaseMs) return r;
    // Not renewed for a whole lease: its holder is gone. Take it, then make sure nobody else did too.
    this.replace(address, 1);
    await sleep(Math.min(1_000, this.renewMs));
    const after = this.read(address).lease;
    if (after?.node === this.opts.node) return true;
    this.held.delete(address);
    return { holder: after?.node ?? 'an unreadable holder file' };
  }

  private read(address: string): { raw: string; lease?: LeaseFile } {
    let raw = '';
    try {
      raw = readFileSync(this.file(address), 'utf8');
      const lease = JSON.parse(raw) as LeaseFile;
      return typeof lease.node === 'string' ? { raw, lease } : { raw };
    } catch {
      return { raw };
    }
  }

  private writeLease(fd: number, seq: number): void {
    const lease: LeaseFile = { node: this.opts.node, pid: process.pid, seq, renewedAt: new Date().toISOString(), seconds: this.opts.leaseMs / 1000 };
    writeSync(fd, `${JSON.stringify(lease)}\n`);
    fsyncSync(fd);
  }

  /** Atomically (re)writes the lease as ours. */
  private replace(address: string, seq: number): void {
    const p = this.file(address);
    const tmp = `${p}.${this.opts.node}.tmp`;
    const fd = openSync(tmp, 'w', 0o644);
    try {
      this.writeLease(fd, seq);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, p);
    this.held.set(address, seq);
  }

  private renewAll(): void {
    for (const [address, seq] of this.held) {
      try {
        const now = this.read(address).lease;
        if (now && now.node !== this.opts.node) {
          // Another node took it while this one held the address (this node was frozen, or partitioned).
          this.held.delete(address);
          this.opts.log.error({ address, holder: now.node }, `the lease of ${address} was taken by ${now.node} while this node held the address: two nodes serve it`);
          this.opts.onConflict?.(address, now.node);
          continue;
        }
        this.replace(address, seq + 1);
      } catch (err) {
        this.opts.log.warn({ address, err: (err as Error).message }, `cannot renew the lease of ${address}: ${(err as Error).message}`);
      }
    }
  }

  /** The address left this node (its drop is done): another node may take it now. */
  release(address: string): void {
    if (!this.held.delete(address)) return;
    try {
      if (this.read(address).lease?.node === this.opts.node) unlinkSync(this.file(address));
    } catch (err) {
      this.opts.log.warn({ address, err: (err as Error).message }, `cannot release the lease of ${address}: ${(err as Error).message}`);
    }
  }

  /** Lets go of every lease (a clean stop) and stops waiting. */
  close(): void {
    this.closed = true;
    clearInterval(this.renewer);
    for (const w of this.waiting.values()) {
      clearTimeout(w.timer);
      w.watcher?.close();
    }
    this.waiting.clear();
    for (const address of [...this.held.keys()]) this.release(address);
    this.waits.complete();
  }
}
