// A cluster of lock tables in one process, for the protocol's own tests: nodes (each a LockTable
// with its journal), one kernel they all lock on (byte maps of small files, one lock set per open
// file description as OFD locks have it), and a store whose journals reach each node's index only
// when the test delivers them. The pieces are the real table, index and codec; only the kernel and
// the store are simulated, so that every interleaving can be driven and checked.
import { LockTable, decodeJournalEntry, type FileLocker, type JournalRecord, type LockStatus, type OutsideHolder } from '../../src/locks';
import type { FilePos } from '../../src/locks';

export const SIZE = 32;

const last = (e: FilePos): number => (e === Infinity || Number(e) >= SIZE ? SIZE - 1 : Number(e));

interface Waiter {
  file: string;
  desc: string;
  s: number;
  e: number;
  excl: boolean;
  done: (acquired: boolean) => void;
}

/** One kernel under every node: per file, per byte, which descriptions hold it and how. */
export class SimKernel {
  private readonly bytes = new Map<string, Map<string, boolean>[]>();
  private waiters: Waiter[] = [];
  /** Runs once, right after the next TEST or lock: another process acting between two system calls of a node. */
  afterNextCall: (() => void) | undefined;

  private called(): void {
    const then = this.afterNextCall;
    this.afterNextCall = undefined;
    then?.();
  }

  private of(file: string): Map<string, boolean>[] {
    let b = this.bytes.get(file);
    if (!b) this.bytes.set(file, (b = Array.from({ length: SIZE }, () => new Map())));
    return b;
  }

  /** The first byte of [s, e] another description holds in a conflicting way. */
  conflict(file: string, desc: string, s: number, e: number, excl: boolean): { byte: number; excl: boolean } | undefined {
    const b = this.of(file);
    for (let i = s; i <= e; i++) for (const [d, x] of b[i]) if (d !== desc && (x || excl)) return { byte: i, excl: x };
    return undefined;
  }

  set(file: string, desc: string, s: number, e: number, excl: boolean): boolean {
    if (this.conflict(file, desc, s, e, excl)) return false;
    const b = this.of(file);
    for (let i = s; i <= e; i++) b[i].set(desc, excl);
    return true;
  }

  clear(file: string, desc: string, s = 0, e = SIZE - 1): void {
    const b = this.of(file);
    for (let i = s; i <= e; i++) b[i].delete(desc);
  }

  /** What a description holds, as runs: for comparing with a table. */
  held(desc: string): string[] {
    const out: string[] = [];
    for (const [file, b] of this.bytes) for (let i = 0; i < SIZE; i++) if (b[i].has(desc)) out.push(`${file}:${i}:${b[i].get(desc) ? 'w' : 'r'}`);
    return out;
  }

  /** Every description of the node goes (its process died): its locks with it. */
  crash(node: string): void {
    for (const b of this.bytes.values()) for (const m of b) for (const d of [...m.keys()]) if (d.startsWith(`${node}/`)) m.delete(d);
    this.waiters = this.waiters.filter((w) => !w.desc.startsWith(`${node}/`));
  }

  /**
   * Hands free ranges to their waiters but holds back their callbacks (the kernel granted the
   * wait; the process has not run the completion yet): call each returned function to deliver.
   */
  grantWaiters(): (() => void)[] {
    const later: (() => void)[] = [];
    for (const w of [...this.waiters]) {
      if (!this.set(w.file, w.desc, w.s, w.e, w.excl)) continue;
      this.waiters.splice(this.waiters.indexOf(w), 1);
      later.push(() => w.done(true));
    }
    return later;
  }

  /** Hands free ranges to their waiters (the kernel's wakeup, asynchronous to the table calls). */
  wakeWaiters(): number {
    let n = 0;
    for (let again = true; again; ) {
      again = false;
      for (const w of [...this.waiters]) {
        if (!this.waiters.includes(w) || !this.set(w.file, w.desc, w.s, w.e, w.excl)) continue;
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.done(true);
        n++;
        again = true;
      }
    }
    return n;
  }

  /** The node's FileLocker over this kernel. */
  lockerFor(node: string): FileLocker {
    const desc = (owner: string): string => `${node}/${owner}`;
    return {
      validate: () => undefined,
      lock: (file, _fh, owner, s, e, excl): LockStatus => {
        const ok = this.set(file, desc(owner), Number(s), last(e), excl);
        this.called();
        return ok ? 'granted' : 'denied';
      },
      unlock: (file, owner, s, e) => this.clear(file, desc(owner), Number(s), last(e)),
      close: (file, owner) => this.clear(file, desc(owner)),
      closeAll: (files, owners) => files.forEach((f, i) => this.clear(f, desc(owners[i]))),
      test: (file, _fh, owner, s, e, excl): OutsideHolder | undefined => {
        const c = this.conflict(file, desc(owner), Number(s), last(e), excl);
        this.called();
        return c ? { exclusive: c.excl, start: c.byte, end: c.byte } : undefined;
      },
      wait: (file, _fh, owner, s, e, excl, done) => {
        const w: Waiter = { file, desc: desc(owner), s: Number(s), e: last(e), excl, done };
        this.waiters.push(w);
        return () => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
        };
      },
    };
  }
}

/** The journals: durable as soon as appended; each node's index gets them when delivered. */
export class SimStore {
  readonly logs = new Map<string, JournalRecord[]>();
  /** node -> address -> records delivered. */
  private readonly cursors = new Map<string, Map<string, number>>();

  append(address: string, records: JournalRecord[]): void {
    let log = this.logs.get(address);
    if (!log) this.logs.set(address, (log = []));
    log.push(...records);
  }

  /** The address's live entries (last value per key). */
  live(address: string): Map<string, Buffer> {
    const m = new Map<string, Buffer>();
    for (const r of this.logs.get(address) ?? []) {
      if (r.value) m.set(r.key, r.value);
      else m.delete(r.key);
    }
    return m;
  }

  /** Gives the node's index up to `max` more records of the address (all by default); returns how many. */
  deliver(node: SimNode, address: string, max = Infinity): number {
    let c = this.cursors.get(node.name);
    if (!c) this.cursors.set(node.name, (c = new Map()));
    const log = this.logs.get(address) ?? [];
    const from = c.get(address) ?? 0;
    const to = Math.min(log.length, from + max);
    if (to > from) node.table.applyJournal(address, log.slice(from, to));
    c.set(address, to);
    return to - from;
  }

  deliverAll(node: SimNode): void {
    for (const a of this.logs.keys()) this.deliver(node, a);
  }

  /** A node restarted: its index starts over from every journal's whole content. */
  forget(node: SimNode): void {
    this.cursors.delete(node.name);
  }
}

export class SimNode {
  table: LockTable;
  readonly serves = new Set<string>();
  alive = true;
  /** Grants the node reported after the call that made them (GRANTED callbacks). */
  readonly granted: { host: string; svid: number; fh: string; offset: bigint; length: bigint; exclusive: boolean; address: string }[] = [];

  constructor(
    readonly name: string,
    private readonly kernel: SimKernel,
    private readonly store: SimStore,
  ) {
    this.table = this.fresh();
  }

  private fresh(): LockTable {
    const t = new LockTable({
      locker: this.kernel.lockerFor(this.name),
      journal: (a, records) => this.store.append(a, records),
      onBlockGranted: (g) => this.granted.push({ host: g.lock.owner.host, svid: g.lock.owner.svid, fh: g.lock.fh.toString('latin1'), offset: g.lock.offset, length: g.lock.length, exclusive: g.lock.exclusive, address: g.lock.serverAddress }),
    });
    t.reclaimed$.subscribe((r) => t.grace.end({ kind: 'address', address: r.address }));
    return t;
  }

  /** kill -9: the kernel lets go of every description, the table and its index are gone. */
  crash(): void {
    this.alive = false;
    this.kernel.crash(this.name);
    this.serves.clear();
    this.granted.length = 0;
  }

  restart(): void {
    this.table = this.fresh();
    this.store.forget(this);
    this.store.deliverAll(this);
    this.alive = true;
  }

  /**
   * The address leaves this node the planned way, in the failover's steps: drained (it grants
   * nothing more), every live node's index has its journal (the barrier), dropped.
   */
  leave(address: string, nodes: readonly SimNode[]): void {
    this.table.setDraining(address, true);
    for (const n of nodes) if (n.alive) this.store.deliver(n, address);
    this.table.dropByServerAddress(address);
    this.table.setDraining(address, false);
    this.serves.delete(address);
  }

  /** The address arrives here: its journal read to its end, its entries held for reclaim, its grace started. */
  arrive(address: string, graceSeconds = 1000): { locks: number; lost: number } {
    const live = this.store.live(address);
    this.store.deliver(this, address);
    this.table.applyJournal(address, [...live].map(([key, value]) => ({ key, value })), true);
    const a = this.table.arrive(address, [...live.values()].map(decodeJournalEntry));
    this.serves.add(address);
    if (a.locks > 0) this.table.grace.start({ kind: 'address', address }, graceSeconds);
    return { locks: a.locks, lost: a.lost.length };
  }
}
