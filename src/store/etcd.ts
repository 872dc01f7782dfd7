// The cluster store on etcd (v3 API, through the `etcd3` client): no shared filesystem needed.
//
//   <prefix>/journal/<address>/<key>   a live journal entry of the address (its value)
//   <prefix>/holder/<address>          the node that writes the address's journal, on its node lease
//   <prefix>/nodes/<node>              {"applied": revision}, on its node lease: live while it exists
//   <prefix>/nsm/<address>/...         NSM's records of the address (readRecords, writeRecord)
//
// One etcd lease per node (TTL = the liveness bound), kept alive by the client: when a node dies or
// is cut off from etcd for a whole TTL, etcd itself removes its node key and its holder keys, and
// only then can another node create them. Nobody compares clocks.
//
// Writing: takeOver creates the holder key (a transaction: only if it does not exist, or names
// this node) and remembers its create revision; every commit is one transaction per address,
// guarded by that revision, so a node whose lease was lost can never write again. The appends of a
// turn are one transaction (the last record per key; etcd refuses a key twice in one), made
// durable by etcd's quorum before commit() resolves. A journal is its live keys: a delete removes
// the key, so it is compacted as it goes; the history is etcd's, compacted by its own
// --auto-compaction-retention (a follower whose revision was compacted reads everything again).
//
// Following: one watch on the whole prefix from the revision of the first read. A node tells the
// others how far it has applied (its node key) once per turn in which it applied journal changes;
// a barrier waits until every live node's applied revision reaches the address's last write.
//
// etcd unreachable or without quorum: appends are kept in order and retried; a commit that cannot
// be made within commitTimeoutMs rejects (the grant is refused), the first time per address with
// one error line naming the reason; health() says so. Held entries stay, unlocks go on (their
// deletes trail). Back within the TTL: what was kept is written. Lease lost (etcd expired it):
// the node's keys are made again on a new lease, and the addresses whose holder key is still free
// are taken again; one another node took meanwhile is this node's no more (its commits reject).
import { Etcd3, EtcdLeaseInvalidError, type IKeyValue, type IOptions, type Lease, type Namespace, type Watcher } from 'etcd3';
import { noop } from 'cockatiel';
import { Observable, Subject } from 'rxjs';
import type { Logger } from 'pino';
import { isAddress, normaliseAddress } from '../net';
import { checkRecord } from './codec';
import type { BarrierResult, ClusterStore, JournalChange, JournalFault, JournalRecord, StoreHealth } from './types';

export interface EtcdTls {
  /** PEM of the CA that signed the members' certificates. */
  ca: Buffer;
  /** Client certificate and key (PEM), when the members ask for one (--client-cert-auth). */
  cert?: Buffer;
  key?: Buffer;
}

export interface EtcdStoreOptions {
  endpoints: string[];
  /** Every key lives under it: one cluster of lockdrop per prefix (`/lockdrop/<cluster>`). */
  prefix: string;
  tls?: EtcdTls;
  node: string;
  /** The node lease's TTL (rounded up to whole seconds, at least 2): a node silent this long is gone. Default 5000. */
  livenessMs?: number;
  /** How long a commit may wait for etcd before it rejects (the grant is refused). Default 2000. */
  commitTimeoutMs?: number;
  /** Each commit of an address refused because etcd did not confirm it in time (for a metric). */
  onRefused?: (address: string) => void;
  log: Pick<Logger, 'error' | 'warn' | 'info' | 'debug'>;
}

/** etcd refuses a transaction with more operations (its --max-txn-ops default). */
const MAX_TXN_OPS = 128;
const RETRY_MS = 250;

interface Writer {
  /** The holder key's create revision: every commit is guarded by it. */
  holdRev: string;
  pending: JournalRecord[];
  waiters: Array<{ resolve(): void; reject(err: Error): void }>;
  loop: Promise<void> | undefined;
  /** The holder key is gone or another node's: nothing more is written. */
  lost: Error | undefined;
  /** The outage already reported for this address (one line each). */
  reported: boolean;
}

interface Journal {
  live: Map<string, Buffer>;
  /** The revision of its last write this node applied: watch events up to it are known. */
  rev: number;
  writer: Writer | undefined;
}

export class EtcdStore implements ClusterStore {
  private readonly client: Etcd3;
  private readonly ns: Namespace;
  private readonly journals = new Map<string, Journal>();
  private readonly holders = new Map<string, string>();
  /** The holder keys this node took: their create revisions. */
  private readonly claims = new Map<string, string>();
  private readonly nodes = new Map<string, number>();
  private readonly changes = new Subject<JournalChange>();
  private readonly faults = new Subject<JournalFault>();
  private readonly wakers = new Set<() => void>();
  private lease!: Lease;
  private watcher: Watcher | undefined;
  private applied = 0;
  private publishScheduled = false;
  private closed = false;
  private readonly ttl: number;
  private readonly commitTimeoutMs: number;
  private down: { since: number; reason: string } | undefined;
  /** Commits refused because etcd could not be reached, or the address's lease was lost. */
  readonly counters = { commits: 0, txns: 0, refused: 0 };

  readonly changes$: Observable<JournalChange>;
  readonly faults$: Observable<JournalFault>;

  /** Opens the store: this node's lease and key, every journal read, the watch started. */
  static async open(opts: EtcdStoreOptions): Promise<EtcdStore> {
    const store = new EtcdStore(opts);
    try {
      await store.start();
    } catch (err) {
      store.client.close();
      throw new Error(`cannot open the etcd store at ${opts.endpoints.join(',')}: ${(err as Error).message}`);
    }
    return store;
  }

  private constructor(private readonly opts: EtcdStoreOptions) {
    if (!/^\/[^\s]*[^/\s]$/.test(opts.prefix)) throw new RangeError(`etcd prefix ${JSON.stringify(opts.prefix)}: an absolute key path such as /lockdrop/cluster-a (no trailing slash)`);
    if (opts.endpoints.length === 0) throw new RangeError('etcd: no endpoints');
    this.ttl = Math.max(2, Math.ceil((opts.livenessMs ?? 5_000) / 1000));
    this.commitTimeoutMs = opts.commitTimeoutMs ?? 2_000;
    const options: IOptions = {
      hosts: opts.endpoints,
      dialTimeout: this.commitTimeoutMs,
      // Every unary call ends by its deadline and is never sent again by the client: a transaction
      // given up on and re-sent later could land after a newer one of the same keys.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + this.commitTimeoutMs }),
      faultHandling: { global: noop },
    };
    if (opts.tls) options.credentials = { rootCertificate: opts.tls.ca, privateKey: opts.tls.key, certChain: opts.tls.cert };
    this.client = new Etcd3(options);
    this.ns = this.client.namespace(`${opts.prefix}/`);
    this.changes$ = new Observable<JournalChange>((subscriber) => {
      for (const [address, j] of this.journals) subscriber.next({ address, records: entries(j.live), reset: true });
      return this.changes.subscribe(subscriber);
    });
    this.faults$ = this.faults.asObservable();
  }

  private async start(): Promise<void> {
    await this.grantLease();
    await this.load(false);
  }

  // ---- the node lease ----

  private async grantLease(): Promise<void> {
    const lease = this.ns.lease(this.ttl);
    this.lease = lease;
    await this.timed(lease.grant(), 'granting the node lease');
    lease.on('keepaliveSucceeded', () => this.up());
    lease.on('keepaliveFailed', () => this.unreachable('its keep-alive failed'));
    lease.on('lost', (err) => {
      if (this.closed || this.lease !== lease) return;
      this.unreachable(`the node lease was lost (${err.message})`);
      void this.regain();
    });
    await this.timed(lease.put(nodeKey(this.opts.node)).value(JSON.stringify({ applied: this.applied })).exec(), 'announcing this node');
  }

  /** After a lost lease: a new one, and the addresses this node wrote taken again where still free. */
  private async regain(): Promise<void> {
    for (;;) {
      if (this.closed) return;
      try {
        await this.grantLease();
        break;
      } catch {
        await sleep(RETRY_MS);
      }
    }
    for (const [address, j] of this.journals) {
      const w = j.writer;
      if (!w || w.lost) continue;
      try {
        const rev = await this.claim(address);
        if (w.lost) {
          // Lost meanwhile (a write found the old key gone): what was appended since is not in
          // the journal, so it stays lost; the key is let go for the next holder.
          void this.unclaim(address);
          continue;
        }
        w.holdRev = rev;
        this.opts.log.warn({ address }, `journal of ${address}: held again on a new lease after etcd lost the old one`);
        this.kick(address, j);
      } catch (err) {
        this.lose(address, w, (err as Error).message);
      }
    }
  }

  private up(): void {
    if (!this.down) return;
    this.opts.log.warn({ downMs: Date.now() - this.down.since }, `etcd reachable again after ${Date.now() - this.down.since} ms (${this.down.reason})`);
    this.down = undefined;
    for (const j of this.journals.values()) if (j.writer) j.writer.reported = false;
  }

  private unreachable(reason: string): void {
    if (this.closed) return;
    if (!this.down) {
      this.down = { since: Date.now(), reason };
      this.opts.log.error({ reason }, `etcd unreachable (${reason}): held locks are kept and unlocks served, new grants refused until it is back`);
    }
  }

  health(): StoreHealth {
    return this.down ? { ok: false, reason: `etcd unreachable since ${new Date(this.down.since).toISOString()}: ${this.down.reason}` } : { ok: true };
  }

  // ---- following ----

  /** Reads every key under the prefix and watches from there; `again`: a reset for every journal. */
  private async load(again: boolean): Promise<void> {
    const res = await this.timed(this.ns.getAll().exec(), 'reading the store');
    const revision = Number(res.header.revision);
    const journals = new Map<string, Map<string, Buffer>>();
    this.holders.clear();
    const nodes = new Map<string, number>();
    for (const kv of res.kvs) {
      const k = parseKey(kv.key.toString());
      if (!k) continue;
      if (k.kind === 'journal') {
        let m = journals.get(k.address);
        if (!m) journals.set(k.address, (m = new Map()));
        m.set(k.key, Buffer.from(kv.value));
      } else if (k.kind === 'holder') this.holders.set(k.address, kv.value.toString());
      else if (k.name !== this.opts.node) nodes.set(k.name, appliedOf(kv));
    }
    this.nodes.clear();
    for (const [n, a] of nodes) this.nodes.set(n, a);
    for (const address of new Set([...journals.keys(), ...(again ? this.journals.keys() : [])])) {
      const j = this.journal(address);
      if (j.writer) continue; // its own: what it wrote is what is there
      j.live = journals.get(address) ?? new Map();
      j.rev = revision;
      if (again || this.changes.observed) this.changes.next({ address, records: entries(j.live), reset: true });
    }
    this.applied = revision;
    this.publish();
    this.watch(revision + 1);
    this.wake();
  }

  private watch(from: number): void {
    void this.watcher?.cancel();
    // On the client, not the namespace: a namespace's watch of its whole range asks for no range.
    const w = this.client.watch().prefix(`${this.opts.prefix}/`).startRevision(String(from)).watcher();
    this.watcher = w;
    w.on('data', (res) => {
      if (this.watcher !== w) return;
      this.onWatch(res.events ?? [], Number(res.header.revision));
    });
    w.on('error', (err) => {
      if (this.watcher !== w || this.closed) return;
      // Canceled (its revision compacted away) or broken for good: read everything again.
      this.opts.log.warn({ err: err.message }, `etcd watch ended (${err.message}): reading the store again`);
      void this.reload();
    });
  }

  private async reload(): Promise<void> {
    while (!this.closed) {
      try {
        return await this.load(true);
      } catch (err) {
        this.unreachable((err as Error).message);
        await sleep(RETRY_MS);
      }
    }
  }

  private onWatch(events: Array<{ type: string; kv: IKeyValue }>, revision: number): void {
    const batch = new Map<string, JournalRecord[]>();
    let journalChanged = false;
    for (const ev of events) {
      const k = parseKey(ev.kv.key.toString().slice(this.opts.prefix.length + 1));
      if (!k) continue;
      const put = ev.type === 'Put';
      const rev = Number(ev.kv.mod_revision);
      if (k.kind === 'journal') {
        const j = this.journal(k.address);
        // Written by this node (applied when committed), or read already. One revision has many events.
        if (j.writer || rev < j.rev || (rev === j.rev && !batch.has(k.address))) continue;
        journalChanged = true;
        j.rev = rev;
        const value = put ? Buffer.from(ev.kv.value) : null;
        if (value) j.live.set(k.key, value); else j.live.delete(k.key);
        let b = batch.get(k.address);
        if (!b) batch.set(k.address, (b = []));
        b.push({ key: k.key, value });
      } else if (k.kind === 'holder') {
        if (put) this.holders.set(k.address, ev.kv.value.toString()); else this.holders.delete(k.address);
        this.checkHeld(k.address);
      } else if (k.name !== this.opts.node) {
        if (put) this.nodes.set(k.name, appliedOf(ev.kv)); else this.nodes.delete(k.name);
      }
    }
    for (const [address, records] of batch) this.changes.next({ address, records, reset: false });
    if (revision > this.applied) this.applied = revision;
    // Only journal changes this node applied are told (a holder's own writes wait for nobody):
    // node keys answering node keys would never settle.
    if (journalChanged) this.publish();
    this.wake();
  }

  /** A holder key changed: one this node writes through and no longer names it means its lease went. */
  private checkHeld(address: string): void {
    const w = this.journals.get(address)?.writer;
    const holder = this.holders.get(address);
    if (w && !w.lost && holder !== undefined && holder !== this.opts.node) this.lose(address, w, `${holder} holds it now`);
  }

  /** Tells the others how far this node has applied, once per turn. */
  private publish(): void {
    if (this.publishScheduled || this.closed) return;
    this.publishScheduled = true;
    setImmediate(() => {
      this.publishScheduled = false;
      if (this.closed) return;
      this.lease.put(nodeKey(this.opts.node)).value(JSON.stringify({ applied: this.applied })).exec().then(
        () => undefined,
        (err: Error) => this.unreachable(err.message),
      );
    });
  }

  private journal(address: string): Journal {
    let j = this.journals.get(address);
    if (!j) this.journals.set(address, (j = { live: new Map(), rev: 0, writer: undefined }));
    return j;
  }

  // ---- the holder ----

  /**
   * Makes this node the holder of the address (a transaction: created if absent, or already this
   * node's, from an earlier run whose lease may still run) and returns the key's create revision.
   * Throws when another node holds it, or etcd cannot confirm it.
   */
  async claim(address: string): Promise<string> {
    checkAddress(address);
    const rev = await this.claimOnce(address);
    this.claims.set(address, rev);
    return rev;
  }

  private async claimOnce(address: string): Promise<string> {
    const key = holderKey(address);
    const leaseId = await this.lease.grant();
    const r = await this.timed(this.ns.if(key, 'Create', '==', 0).then(this.ns.put(key).value(this.opts.node).lease(leaseId)).else(this.ns.get(key)).commit(), `taking the lease of ${address}`);
    if (r.succeeded) return String(r.header.revision);
    const kv = r.responses[0]?.response_range?.kvs[0];
    const holder = kv?.value.toString() ?? '';
    if (holder) this.holders.set(address, holder);
    if (kv && holder === this.opts.node) {
      // This node's own key, maybe on its previous run's lease: moved to this lease, same revision.
      const again = await this.timed(this.ns.if(key, 'Mod', '==', String(kv.mod_revision)).then(this.ns.put(key).value(this.opts.node).lease(leaseId)).commit(), `taking the lease of ${address}`);
      if (again.succeeded) return kv.create_revision;
    }
    throw new HeldError(address, holder || 'another node');
  }

  /** The node whose lease holds the address, as last seen (undefined: free). */
  holderOf(address: string): string | undefined {
    return this.holders.get(address);
  }

  /** Resolves when the address's holder key may have changed (or after ms). */
  holderChanged(ms: number): Promise<void> {
    return this.changed(ms);
  }

  /**
   * Gives up the address's holder key, if it is still the one this node took: tried again until
   * etcd answers (an election, a cut), as the other node waits for it; a claim since ends it.
   */
  async unclaim(address: string): Promise<void> {
    const rev = this.claims.get(address);
    if (rev === undefined) return;
    this.claims.delete(address);
    const key = holderKey(address);
    for (let reported = false; !this.closed && !this.claims.has(address); await sleep(RETRY_MS)) {
      try {
        await this.timed(this.ns.if(key, 'Create', '==', rev).then(this.ns.delete().key(key)).commit(), `releasing the lease of ${address}`);
        return;
      } catch (err) {
        if (!reported) this.opts.log.warn({ address, err: (err as Error).message }, `cannot release the lease of ${address} yet (${(err as Error).message}): trying again until etcd answers or this node's lease ends`);
        reported = true;
      }
    }
  }

  // ---- writing ----

  async takeOver(address: string): Promise<Map<string, Buffer>> {
    checkAddress(address);
    this.checkOpen();
    const j = this.journal(address);
    if (j.writer && !j.writer.lost) return new Map(j.live);
    const holdRev = await this.claim(address);
    const res = await this.timed(this.ns.getAll().prefix(journalPrefix(address)).exec(), `reading the journal of ${address}`);
    const live = new Map<string, Buffer>();
    for (const kv of res.kvs) {
      const k = parseKey(kv.key.toString());
      if (k?.kind === 'journal') live.set(k.key, Buffer.from(kv.value));
    }
    j.live = live;
    j.rev = Number(res.header.revision);
    j.writer = { holdRev, pending: [], waiters: [], loop: undefined, lost: undefined, reported: false };
    return new Map(live);
  }

  append(address: string, records: JournalRecord[]): void {
    const j = this.journals.get(address);
    const w = j?.writer;
    if (!j || !w) throw new Error(`this node does not write the journal of ${address}: takeOver first`);
    for (const r of records) checkRecord(r);
    if (w.lost) return; // another node's journal now: its commits say so
    for (const r of records) w.pending.push(r);
  }

  commit(): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const [address, j] of this.journals) {
      const w = j.writer;
      if (!w) continue;
      if (w.lost) {
        waits.push(Promise.reject(w.lost));
        w.pending = [];
        continue;
      }
      if (w.pending.length === 0 && !w.loop) continue;
      this.counters.commits++;
      waits.push(this.deadline(new Promise<void>((resolve, reject) => w.waiters.push({ resolve, reject })), address, w));
      this.kick(address, j);
    }
    return Promise.all(waits).then(() => undefined);
  }

  /** A commit that etcd does not confirm in time is refused (what it carried is still written later). */
  private deadline(p: Promise<void>, address: string, w: Writer): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        const reason = this.down?.reason ?? `no answer from etcd within ${this.commitTimeoutMs} ms`;
        this.refuse(address, w, reason);
        reject(new Error(`journal of ${address}: not durable (${reason})`));
      }, this.down ? 0 : this.commitTimeoutMs);
      p.then(
        () => {
          clearTimeout(t);
          resolve();
        },
        (err: Error) => {
          clearTimeout(t);
          reject(err);
        },
      );
    });
  }

  private refuse(address: string, w: Writer, reason: string): void {
    this.counters.refused++;
    this.opts.onRefused?.(address);
    if (w.reported) return;
    w.reported = true;
    this.opts.log.error({ address, reason }, `journal of ${address}: grants refused (denied_nolocks) while etcd cannot make them durable: ${reason}`);
  }

  private kick(address: string, j: Journal): void {
    const w = j.writer;
    if (w && !w.loop) w.loop = this.flushLoop(address, j, w).finally(() => (w.loop = undefined));
  }

  private async flushLoop(address: string, j: Journal, w: Writer): Promise<void> {
    await new Promise<void>((r) => setImmediate(r)); // the appends of this turn join the batch
    while ((w.pending.length > 0 || w.waiters.length > 0) && !this.closed) {
      if (w.lost) {
        for (const x of w.waiters.splice(0)) x.reject(w.lost);
        w.pending = [];
        return;
      }
      const records = w.pending;
      const waiters = w.waiters;
      w.pending = [];
      w.waiters = [];
      try {
        const rev = await this.write(address, w, lastPerKey(records));
        j.rev = Math.max(j.rev, rev);
        for (const { key, value } of records) if (value === null) j.live.delete(key); else j.live.set(key, value);
        if (records.length > 0) this.changes.next({ address, records, reset: false });
        if (w.reported) {
          w.reported = false;
          this.opts.log.warn({ address }, `journal of ${address}: durable again in etcd`);
        }
        for (const x of waiters) x.resolve();
      } catch (err) {
        if (err instanceof LostError) {
          this.lose(address, w, err.message);
          for (const x of waiters) x.reject(err);
          continue;
        }
        // Unreachable: kept, in order, before what came since; the waiters' deadlines answer them.
        this.unreachable((err as Error).message);
        w.pending = records.concat(w.pending);
        w.waiters = waiters.concat(w.waiters);
        await sleep(RETRY_MS);
      }
    }
  }

  /** The records as transactions guarded by the holder key; the revision of the last. */
  private async write(address: string, w: Writer, records: JournalRecord[]): Promise<number> {
    let rev = 0;
    const hk = holderKey(address);
    for (let i = 0; i < records.length || i === 0; i += MAX_TXN_OPS) {
      const ops = records.slice(i, i + MAX_TXN_OPS).map(({ key, value }) => (value === null ? this.ns.delete().key(entryKey(address, key)) : this.ns.put(entryKey(address, key)).value(value)));
      if (ops.length === 0) break;
      this.counters.txns++;
      // Not timed() here: the call's own deadline ends it, and nothing is sent again before it has.
      const r = await this.ns.if(hk, 'Create', '==', w.holdRev).then(...ops).commit();
      if (!r.succeeded) throw new LostError(`the lease of ${address} is no longer this node's`);
      rev = Number(r.header.revision);
      this.up();
    }
    return rev;
  }

  private lose(address: string, w: Writer, reason: string): void {
    if (w.lost) return;
    w.lost = new Error(`journal of ${address}: this node no longer holds it (${reason}); nothing more is written`);
    this.opts.log.error({ address, reason }, w.lost.message);
    this.faults.next({ address, where: holderKey(address), position: 0, reason: `lease lost: ${reason}`, truncated: false });
  }

  async release(address: string): Promise<void> {
    const j = this.journals.get(address);
    const w = j?.writer;
    if (!j || !w) return;
    try {
      while (w.loop) await w.loop;
    } finally {
      j.writer = undefined;
    }
    // Here the holder lease is the store's: the address is another node's to take from now on.
    // Waited for as long as a commit would be; it goes on trying after.
    if (!w.lost) await Promise.race([this.unclaim(address), sleep(this.commitTimeoutMs)]);
  }

  // ---- other records (NSM's) ----

  /** The keys under `<prefix>/<sub>` (sub ends with '/') and their values, read linearizably. */
  async readRecords(sub: string): Promise<Array<[string, Buffer]>> {
    const res = await this.timed(this.ns.getAll().prefix(sub).exec(), `reading ${sub}`);
    return res.kvs.map((kv) => [kv.key.toString().slice(sub.length), Buffer.from(kv.value)]); // the namespace took its prefix off
  }

  /** Puts (or with null removes) `<prefix>/<key>`: resolves once etcd's quorum has it. */
  async writeRecord(key: string, value: Buffer | null): Promise<void> {
    if (value === null) await this.timed(this.ns.delete().key(key).exec(), `removing ${key}`);
    else await this.timed(this.ns.put(key).value(value).exec(), `writing ${key}`);
  }

  // ---- acknowledgements ----

  async barrier(address: string, timeoutMs: number): Promise<BarrierResult> {
    checkAddress(address);
    const t0 = performance.now();
    await this.commit().catch(() => undefined);
    const target = this.journals.get(address)?.rev ?? 0;
    for (;;) {
      const live = this.liveNodes();
      const acked = live.filter((n) => (this.nodes.get(n) ?? 0) >= target);
      const ms = performance.now() - t0;
      if (acked.length === live.length || ms >= timeoutMs || this.closed) return { acked, missing: live.filter((n) => !acked.includes(n)), ms };
      await this.changed(timeoutMs - ms);
    }
  }

  liveNodes(): string[] {
    return [...this.nodes.keys()].sort();
  }

  private changed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        this.wakers.delete(done);
        resolve();
      };
      const t = setTimeout(done, Math.max(0, ms));
      this.wakers.add(done);
    });
  }

  private wake(): void {
    for (const w of [...this.wakers]) w();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.commit().catch(() => undefined);
    this.closed = true;
    this.wake();
    await this.watcher?.cancel().catch(() => undefined);
    // Revoking the lease removes this node's key and its holder keys at once.
    await this.timed(this.lease.revoke(), 'revoking the node lease').catch(() => undefined);
    this.client.close();
    this.changes.complete();
    this.faults.complete();
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('the store is closed');
  }

  /** An etcd call bounded by commitTimeoutMs, its error naming what it was for. */
  private timed<T>(p: Promise<T>, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${what}: no answer from etcd within ${this.commitTimeoutMs} ms`)), this.commitTimeoutMs);
      p.then(
        (v) => {
          clearTimeout(t);
          resolve(v);
        },
        (err: Error) => {
          clearTimeout(t);
          reject(err instanceof EtcdLeaseInvalidError ? new Error(`${what}: the node lease is gone`) : new Error(`${what}: ${err.message}`));
        },
      );
    });
  }
}

/** Another node holds the address's lease. */
export class HeldError extends Error {
  constructor(readonly address: string, readonly holder: string) {
    super(`${holder} holds the lease of ${address}`);
  }
}

class LostError extends Error {}

export const holderKey = (address: string): string => `holder/${address}`;
export const nodeKey = (node: string): string => `nodes/${node}`;
export const journalPrefix = (address: string): string => `journal/${address}/`;
export const entryKey = (address: string, key: string): string => `${journalPrefix(address)}${key}`;

type ParsedKey = { kind: 'journal'; address: string; key: string } | { kind: 'holder'; address: string } | { kind: 'nodes'; name: string };

/** A key under the prefix, or undefined for one lockdrop did not write. */
export function parseKey(k: string): ParsedKey | undefined {
  const slash = k.indexOf('/');
  if (slash < 0) return undefined;
  const kind = k.slice(0, slash);
  const rest = k.slice(slash + 1);
  if (kind === 'nodes') return rest ? { kind, name: rest } : undefined;
  if (kind === 'holder') return isCanonical(rest) ? { kind, address: rest } : undefined;
  if (kind !== 'journal') return undefined;
  const end = rest.indexOf('/');
  if (end < 0) return undefined;
  const address = rest.slice(0, end);
  return isCanonical(address) ? { kind, address, key: rest.slice(end + 1) } : undefined;
}

const isCanonical = (a: string): boolean => isAddress(a) && normaliseAddress(a) === a;

function checkAddress(address: string): void {
  if (!isCanonical(address)) throw new RangeError(`${JSON.stringify(address)} is not a server address in canonical form`);
}

function appliedOf(kv: IKeyValue): number {
  try {
    const a = (JSON.parse(kv.value.toString()) as { applied?: unknown }).applied;
    return typeof a === 'number' ? a : 0;
  } catch {
    return 0;
  }
}

/** The last record of each key, in the order of their last appearance. */
function lastPerKey(records: JournalRecord[]): JournalRecord[] {
  const last = new Map<string, JournalRecord>();
  for (const r of records) {
    last.delete(r.key);
    last.set(r.key, r);
  }
  return [...last.values()];
}

const entries = (live: Map<string, Buffer>): JournalRecord[] => [...live].map(([key, value]) => ({ key, value }));

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
