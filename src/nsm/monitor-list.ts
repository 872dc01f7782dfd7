// The monitor list in memory, as the store keeps it on disk: per identity its NSM state number
// and the hosts monitored through it, who monitors each (the lock manager, RPC callers' my_id),
// and which hosts answered its last notify. An identity is loaded from the store once; changes to
// one record run one at a time, in call order, and a change is seen only once it is durable: SM_NOTIFY
// in and notify() see what a restart would see.
import type { Logger } from 'pino';
import type { MyId } from './protocol';
import { recordKey, type HostRecord, type MonitorCallback, type NsmRecords, type SkippedFile } from './store';

export interface AddressEntry {
  state: number | undefined;
  records: Map<string, HostRecord>;
  /** Keys monitored (again) since this address came up: the rest are only remembered to notify. */
  monitored: Set<string>;
  /** The server addresses the lock manager monitors each key through (an identity may have several). */
  localVia: Map<string, Set<string>>;
  /** Keys whose host answered this address's last notify. */
  notified: Set<string>;
  notifying: AbortController | undefined;
}

const MAX_STATE = 0x7fffffff;
/** The next odd state number: every start and every takeover gets a new one. */
export const nextUpState = (current: number | undefined): number => {
  if (current === undefined || current < 0) return 1;
  const n = current % 2 === 1 ? current + 2 : current + 1;
  return n > MAX_STATE ? 1 : n;
};

const sameId = (c: MonitorCallback, id: MyId): boolean =>
  c.myName === id.myName && c.myProg === id.myProg && c.myVers === id.myVers && c.myProc === id.myProc;

/** Who asks to monitor a host: the lock manager through a server address, or an RPC caller with its callback. */
export type Monitor = { via: string } | { callback: MonitorCallback };

export class MonitorList {
  private readonly entries = new Map<string, AddressEntry>();
  private readonly activating = new Map<string, Promise<AddressEntry>>();
  /** The tail of each record's chain of changes (see serial). */
  private readonly changing = new Map<string, Promise<void>>();
  /**
   * The last state of rebooted hosts whose records went (rebootHandled): a host that monitors
   * again starts from it, so a late retransmission of the same notice is stale, not a new reboot
   * that would release the locks it took since.
   */
  private readonly lastStates = new Map<string, number>();

  constructor(private readonly store: NsmRecords, private readonly log: Logger | undefined) {}

  /** The identity's records, loaded from the store on first use. */
  async entry(addr: string, skipped?: SkippedFile[]): Promise<AddressEntry> {
    const have = this.entries.get(addr);
    if (have) return have;
    let p = this.activating.get(addr);
    if (!p) {
      const loading: Promise<AddressEntry> = this.store.load(addr).then((loaded) => {
        skipped?.push(...loaded.skipped);
        const e: AddressEntry = { state: loaded.state, records: new Map(), monitored: new Set(), localVia: new Map(), notified: new Set(), notifying: undefined };
        for (const r of loaded.records) e.records.set(recordKey(r.monName, r.address), r);
        if (this.activating.get(addr) === loading) this.entries.set(addr, e);
        this.log?.info({ address: addr, state: e.state, records: e.records.size, skipped: loaded.skipped.length }, 'nsm: address loaded');
        return e;
      }).finally(() => {
        if (this.activating.get(addr) === loading) this.activating.delete(addr);
      });
      this.activating.set(addr, loading);
      p = loading;
    }
    return p;
  }

  /** The identity's records if loaded, without loading them. */
  loaded(addr: string): AddressEntry | undefined {
    return this.entries.get(addr);
  }

  addresses(): string[] {
    return [...this.entries.keys()];
  }

  entriesLoaded(): IterableIterator<AddressEntry> {
    return this.entries.values();
  }

  /** Forgets the identity in memory (its records stay in the store); a load under way must not bring it back. */
  forget(addr: string): void {
    this.entries.delete(addr);
    this.activating.delete(addr);
  }

  /** Copies of the records of one identity (or of every loaded one). */
  copies(addr?: string): HostRecord[] {
    const list = addr === undefined ? [...this.entries.values()] : [this.entries.get(addr)].filter((e): e is AddressEntry => !!e);
    return list.flatMap((e) => [...e.records.values()].map((r) => ({ ...r, callbacks: r.callbacks.map((c) => ({ ...c })) })));
  }

  /** Runs changes to one record one at a time, in call order (two SM_MON for one host must not race). */
  serial<T>(addr: string, key: string, change: () => Promise<T>): Promise<T> {
    const k = `${addr} ${key}`;
    const run = (this.changing.get(k) ?? Promise.resolve()).then(change);
    const tail = run.then(() => undefined, () => undefined);
    this.changing.set(k, tail);
    void tail.then(() => {
      if (this.changing.get(k) === tail) this.changing.delete(k);
    });
    return run;
  }

  // ---- the state number ----

  /** Durably moves the identity to its next odd state number; two bumps at once give two numbers. */
  async bumpState(addr: string): Promise<number> {
    const e = await this.entry(addr);
    return this.serial(addr, '', () => this.writeNextState(addr, e));
  }

  /** The identity's state number, given a first one if it has none yet (an address that answers is up). */
  async upState(addr: string): Promise<number> {
    const e = await this.entry(addr);
    return e.state ?? this.serial(addr, '', async () => e.state ?? this.writeNextState(addr, e));
  }

  private async writeNextState(addr: string, e: AddressEntry): Promise<number> {
    const next = nextUpState(e.state);
    await this.store.writeState(addr, next);
    e.state = next;
    this.log?.info({ address: addr, state: next }, 'nsm: state number bumped');
    return next;
  }

  // ---- who monitors a host ----

  /** Records (durably) that a monitor (the lock manager through `via`, or an RPC caller's callback) watches the host through addr. */
  async addMonitor(addr: string, monName: string, address: string, by: Monitor): Promise<void> {
    const cb = 'callback' in by ? by.callback : undefined;
    const e = await this.entry(addr);
    const key = recordKey(monName, address);
    await this.serial(addr, key, async () => {
      let rec = e.records.get(key);
      let dirty = false;
      if (!rec) {
        const state = this.lastStates.get(`${addr} ${key}`);
        this.lastStates.delete(`${addr} ${key}`);
        rec = { monName, address, serverAddress: addr, ...(state === undefined ? {} : { state }), local: false, callbacks: [], since: Date.now() };
        dirty = true;
      }
      if (!cb && !rec.local) {
        rec = { ...rec, local: true };
        dirty = true;
      }
      if (cb) {
        const i = rec.callbacks.findIndex((c) => sameId(c, cb));
        const old = rec.callbacks[i];
        if (!old || old.priv !== cb.priv || old.callbackAddress !== cb.callbackAddress) {
          rec = { ...rec, callbacks: i < 0 ? [...rec.callbacks, cb] : rec.callbacks.map((c, j) => (j === i ? cb : c)) };
          dirty = true;
        }
      }
      if (dirty) await this.store.put(rec);
      // Only a durable record is visible: SM_NOTIFY in and notify() see what a restart would see.
      e.records.set(key, rec);
      e.monitored.add(key);
      e.notified.delete(key);
      if ('via' in by) {
        const through = e.localVia.get(key);
        if (through) through.add(by.via); else e.localVia.set(key, new Set([by.via]));
      }
    });
  }

  /** The lock manager no longer monitors the host through `via`; the record goes once nothing monitors it. */
  dropLocal(addr: string, e: AddressEntry, key: string, via: string): Promise<void> {
    return this.serial(addr, key, async () => {
      const rec = e.records.get(key);
      if (!rec) return;
      const through = e.localVia.get(key);
      through?.delete(via);
      // Still monitored through another address of the same identity: the record stays local.
      if (through?.size) return;
      e.localVia.delete(key);
      rec.local = false;
      await this.settle(e, key, rec);
    });
  }

  /** my_id no longer monitors the host (SM_UNMON, SM_UNMON_ALL). */
  dropCallbacks(addr: string, e: AddressEntry, key: string, id: MyId): Promise<void> {
    return this.serial(addr, key, async () => {
      const rec = e.records.get(key);
      if (!rec) return;
      const kept = rec.callbacks.filter((c) => !sameId(c, id));
      if (kept.length === rec.callbacks.length) return;
      rec.callbacks = kept;
      await this.settle(e, key, rec);
    });
  }

  /**
   * The lock manager released the rebooted host, so it no longer needs the record: only RPC
   * monitors, told by their callback, may (until their SM_UNMON). A record nothing needs goes;
   * one the host monitored again meanwhile stays, with its new state.
   */
  rebootHandled(r: HostRecord): Promise<void> {
    const e = this.entries.get(r.serverAddress);
    const key = recordKey(r.monName, r.address);
    if (!e) return this.store.put(r);
    return this.serial(r.serverAddress, key, async () => {
      const rec = e.records.get(key);
      if (!rec) return;
      if (e.localVia.has(key)) return this.store.put(rec);
      rec.local = false;
      if (rec.state !== undefined) this.lastStates.set(`${r.serverAddress} ${key}`, rec.state);
      await this.settle(e, key, rec);
    });
  }

  /** Hosts that answered the identity's notify and did not monitor again since are forgotten (nfs-utils' sm.bak). */
  async forgetNotified(addr: string, e: AddressEntry): Promise<number> {
    let forgotten = 0;
    await Promise.all([...e.notified].map((k) => this.serial(addr, k, async () => {
      const rec = e.records.get(k);
      if (!rec || !e.notified.delete(k) || e.monitored.has(k)) return;
      e.records.delete(k);
      forgotten++;
      await this.store.remove(rec);
    })));
    return forgotten;
  }

  /** Brings records read elsewhere (nfs-utils' sm/ and sm.bak/) in, durably, and a state number if it is ahead of ours. */
  async merge(addr: string, e: AddressEntry, records: HostRecord[], state: number | undefined): Promise<void> {
    const writes: Promise<void>[] = [];
    for (const r of records) {
      const k = recordKey(r.monName, r.address);
      const mine = e.records.get(k);
      if (mine) {
        mine.local ||= r.local;
        for (const c of r.callbacks) if (!mine.callbacks.some((m) => sameId(m, c))) mine.callbacks.push(c);
        writes.push(this.store.put(mine));
      } else {
        e.records.set(k, r);
        writes.push(this.store.put(r));
      }
    }
    if (state !== undefined && (e.state === undefined || state > e.state)) {
      writes.push(this.store.writeState(addr, state));
      e.state = state;
    }
    await Promise.all(writes);
  }

  /** Writes a changed record, or removes it when nobody monitors the host any more. */
  private async settle(e: AddressEntry, key: string, rec: HostRecord): Promise<void> {
    if (rec.local || rec.callbacks.length > 0) {
      await this.store.put(rec);
      return;
    }
    e.records.delete(key);
    e.monitored.delete(key);
    e.localVia.delete(key);
    e.notified.delete(key);
    await this.store.remove(rec);
  }
}
