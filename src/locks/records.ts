// The lock table's bulk — locks, files, owners, holders — kept as columns of typed arrays. A V8
// object costs a 24-byte header and 8 bytes per field, a Map entry 30–60 bytes: at 100k locks with
// one owner and one file each that was 700 bytes per lock. Here a record is an id, an index into
// every column of its store (0 means "none"); freed ids are reused first. Files and owners are
// found through an open-addressing index of ids by a seeded hash, so no key string is built per
// request and no Map entry is kept per record.
import type { Pos } from './range';

/** A store's ids: 1..n, freed ones first; columns grow together by a quarter. */
export abstract class Records {
  protected cap = 0;
  private top = 1;
  private readonly free: number[] = [];
  private used = new Uint8Array(0);
  /** Ids in use. */
  size = 0;

  alloc(): number {
    this.size++;
    let id = this.free.pop();
    if (id === undefined) {
      if (this.top >= this.cap) this.resize(Math.max(1024, Math.ceil(this.cap * 1.25)));
      id = this.top++;
    }
    this.used[id] = 1;
    return id;
  }

  release(id: number): void {
    this.size--;
    this.used[id] = 0;
    this.free.push(id);
  }

  live(id: number): boolean {
    return this.used[id] === 1;
  }

  /** The ids in use, for full walks (views, checkIndexes). */
  *ids(): Iterable<number> {
    for (let id = 1; id < this.top; id++) if (this.used[id] === 1) yield id;
  }

  /** Grows every column to cap records. */
  protected resize(cap: number): void {
    this.cap = cap;
    this.used = grown(this.used, cap);
  }
}

export function grown<T extends Int32Array | Float64Array | Uint8Array>(a: T, cap: number): T {
  const b = new (a.constructor as new (n: number) => T)(cap);
  b.set(a);
  return b;
}

/**
 * Ids found by a 32-bit hash: linear probing over a power-of-two table at most 80 % full, with
 * backward-shift deletion (no tombstones). The store keeps each id's hash; lookups probe
 * `slots` themselves so the key comparison is inlined where the key's shape is known.
 */
export class IdIndex {
  slots = new Int32Array(16);
  mask = 15;
  private size = 0;

  constructor(private readonly hashOf: (id: number) => number) {}

  insert(id: number, h: number): void {
    if (++this.size * 5 > this.slots.length * 4) this.rehash(this.slots.length * 2);
    let i = h & this.mask;
    while (this.slots[i] !== 0) i = (i + 1) & this.mask;
    this.slots[i] = id;
  }

  remove(id: number, h: number): void {
    const { slots, mask } = this;
    let i = h & mask;
    while (slots[i] !== id) i = (i + 1) & mask;
    // Pull back every later entry of the run that may sit at i: probing never meets a hole.
    for (let j = (i + 1) & mask; slots[j] !== 0; j = (j + 1) & mask) {
      const home = this.hashOf(slots[j]) & mask;
      if (((j - home) & mask) >= ((j - i) & mask)) {
        slots[i] = slots[j];
        i = j;
      }
    }
    slots[i] = 0;
    this.size--;
  }

  private rehash(n: number): void {
    const old = this.slots;
    this.slots = new Int32Array(n);
    this.mask = n - 1;
    for (let k = 0; k < old.length; k++) {
      const id = old[k];
      if (id === 0) continue;
      let i = this.hashOf(id) & this.mask;
      while (this.slots[i] !== 0) i = (i + 1) & this.mask;
      this.slots[i] = id;
    }
  }
}

/** Per-process seed: a client cannot precompute handles or owners that collide. */
const SEED = (Math.random() * 0x1_0000_0000) | 0;

/** Final avalanche (murmur3's), so the low bits that pick a slot depend on every byte. */
function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** FNV-1a over bytes; hashLatin1 gives the same value for the latin1 string of those bytes. */
export function hashBytes(b: Uint8Array, seed: number): number {
  let h = (SEED ^ seed ^ 0x811c9dc5) | 0;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i], 0x01000193);
  return fmix(h);
}

export function hashLatin1(s: string, seed: number): number {
  let h = (SEED ^ seed ^ 0x811c9dc5) | 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return fmix(h);
}

/** Whether the latin1 string s spells exactly the bytes b. */
export function sameBytes(s: string, b: Uint8Array): boolean {
  if (s.length !== b.length) return false;
  for (let i = 0; i < b.length; i++) if (s.charCodeAt(i) !== b[i]) return false;
  return true;
}

/**
 * Held locks: on their file's list (fPrev/fNext) and their holder's (hPrev/hNext). `tag` packs the
 * type and the time: seconds since the table's epoch times two, plus one if exclusive. Positions
 * are doubles (exact up to 2^53, Infinity for end of file); the rare bigint beyond is kept aside
 * and its double is NaN.
 */
export class LockRecords extends Records {
  file = new Int32Array(0);
  holder = new Int32Array(0);
  fPrev = new Int32Array(0);
  fNext = new Int32Array(0);
  hPrev = new Int32Array(0);
  hNext = new Int32Array(0);
  tag = new Int32Array(0);
  private pos = new Float64Array(0);
  private readonly big = new Map<number, bigint>();

  protected override resize(cap: number): void {
    super.resize(cap);
    this.file = grown(this.file, cap);
    this.holder = grown(this.holder, cap);
    this.fPrev = grown(this.fPrev, cap);
    this.fNext = grown(this.fNext, cap);
    this.hPrev = grown(this.hPrev, cap);
    this.hNext = grown(this.hNext, cap);
    this.tag = grown(this.tag, cap);
    this.pos = grown(this.pos, cap * 2);
  }

  start(l: number): Pos {
    const v = this.pos[l * 2];
    return v === v ? v : this.big.get(l * 2)!;
  }

  end(l: number): Pos {
    const v = this.pos[l * 2 + 1];
    return v === v ? v : this.big.get(l * 2 + 1)!;
  }

  setStart(l: number, p: Pos): void {
    this.put(l * 2, p);
  }

  setEnd(l: number, p: Pos): void {
    this.put(l * 2 + 1, p);
  }

  override release(l: number): void {
    this.put(l * 2, 0);
    this.put(l * 2 + 1, 0);
    super.release(l);
  }

  private put(i: number, p: Pos): void {
    if (typeof p === 'number') {
      if (this.pos[i] !== this.pos[i]) this.big.delete(i);
      this.pos[i] = p;
    } else {
      this.pos[i] = NaN;
      this.big.set(i, p);
    }
  }
}

/**
 * Files with locks, queued requests or shares. `key` is the handle as latin1. `head` starts the
 * list of its locks, `exclusive` counts the exclusive ones (a shared request meets no conflict
 * when none is). Files of an export are on its list (xPrev/xNext). `mark` is set while a drop
 * has collected the file.
 */
export class FileRecords extends Records {
  key: string[] = [''];
  hash = new Int32Array(0);
  head = new Int32Array(0);
  exclusive = new Int32Array(0);
  exp = new Int32Array(0);
  xPrev = new Int32Array(0);
  xNext = new Int32Array(0);
  mark = new Uint8Array(0);
  readonly index = new IdIndex((f) => this.hash[f]);

  protected override resize(cap: number): void {
    super.resize(cap);
    this.hash = grown(this.hash, cap);
    this.head = grown(this.head, cap);
    this.exclusive = grown(this.exclusive, cap);
    this.exp = grown(this.exp, cap);
    this.xPrev = grown(this.xPrev, cap);
    this.xNext = grown(this.xNext, cap);
    this.mark = grown(this.mark, cap);
  }

  /** The file whose handle is fh, or 0. */
  find(fh: Uint8Array): number {
    const h = hashBytes(fh, 0);
    const { slots, mask } = this.index;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const f = slots[i];
      if (f === 0 || (this.hash[f] === h && sameBytes(this.key[f], fh))) return f;
    }
  }

  /** The file whose key is the latin1 string key, or 0. */
  findKey(key: string): number {
    const h = hashLatin1(key, 0);
    const { slots, mask } = this.index;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const f = slots[i];
      if (f === 0 || (this.hash[f] === h && this.key[f] === key)) return f;
    }
  }

  add(key: string, exp: number): number {
    const f = this.alloc();
    const h = hashLatin1(key, 0);
    this.key[f] = key;
    this.hash[f] = h;
    this.head[f] = 0;
    this.exclusive[f] = 0;
    this.exp[f] = exp;
    this.xPrev[f] = 0;
    this.xNext[f] = 0;
    this.mark[f] = 0;
    this.index.insert(f, h);
    return f;
  }

  remove(f: number): void {
    this.index.remove(f, this.hash[f]);
    this.key[f] = '';
    this.release(f);
  }
}

/**
 * Lock owners (client host, svid, oh): `host` is the HostEntry's id, `oh` the owner handle as
 * latin1, `holder` the first of its holders (one per server address, chained by
 * HolderRecords.next).
 */
export class OwnerRecords extends Records {
  host = new Int32Array(0);
  svid = new Float64Array(0);
  oh: string[] = [''];
  hash = new Int32Array(0);
  holder = new Int32Array(0);
  mark = new Uint8Array(0);
  readonly index = new IdIndex((o) => this.hash[o]);

  protected override resize(cap: number): void {
    super.resize(cap);
    this.host = grown(this.host, cap);
    this.svid = grown(this.svid, cap);
    this.hash = grown(this.hash, cap);
    this.holder = grown(this.holder, cap);
    this.mark = grown(this.mark, cap);
  }

  /** The owner (host id, svid, oh bytes), or 0. */
  find(host: number, svid: number, oh: Uint8Array): number {
    const h = hashBytes(oh, Math.imul(host, 0x9e3779b1) ^ svid);
    const { slots, mask } = this.index;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const o = slots[i];
      if (o === 0 || (this.hash[o] === h && this.host[o] === host && this.svid[o] === svid && sameBytes(this.oh[o], oh))) return o;
    }
  }

  /** The owner (host id, svid, oh as latin1), or 0. */
  findKey(host: number, svid: number, oh: string): number {
    const h = hashLatin1(oh, Math.imul(host, 0x9e3779b1) ^ svid);
    const { slots, mask } = this.index;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const o = slots[i];
      if (o === 0 || (this.hash[o] === h && this.host[o] === host && this.svid[o] === svid && this.oh[o] === oh)) return o;
    }
  }

  add(host: number, svid: number, oh: string): number {
    const o = this.alloc();
    const h = hashLatin1(oh, Math.imul(host, 0x9e3779b1) ^ svid);
    this.host[o] = host;
    this.svid[o] = svid;
    this.oh[o] = oh;
    this.hash[o] = h;
    this.holder[o] = 0;
    this.mark[o] = 0;
    this.index.insert(o, h);
    return o;
  }

  remove(o: number): void {
    this.index.remove(o, this.hash[o]);
    this.oh[o] = '';
    this.release(o);
  }
}

/**
 * An owner holding locks through one server address (`addr`, the AddressEntry's id): `head`
 * starts its locks' list. The address's holders of one client host are a list (aPrev/aNext), so
 * a drop by address or by host walks only what it drops; `next` chains the owner's holders.
 */
export class HolderRecords extends Records {
  owner = new Int32Array(0);
  addr = new Int32Array(0);
  head = new Int32Array(0);
  aPrev = new Int32Array(0);
  aNext = new Int32Array(0);
  next = new Int32Array(0);

  protected override resize(cap: number): void {
    super.resize(cap);
    this.owner = grown(this.owner, cap);
    this.addr = grown(this.addr, cap);
    this.head = grown(this.head, cap);
    this.aPrev = grown(this.aPrev, cap);
    this.aNext = grown(this.aNext, cap);
    this.next = grown(this.next, cap);
  }
}

/** Few, long-lived entries (hosts, addresses, exports) by a small id, for columns to name. */
export class Registry<T extends { readonly id: number }> {
  private readonly byId: (T | undefined)[] = [undefined];
  private readonly free: number[] = [];

  add(make: (id: number) => T): T {
    const id = this.free.pop() ?? this.byId.length;
    const e = make(id);
    this.byId[id] = e;
    return e;
  }

  get(id: number): T {
    return this.byId[id]!;
  }

  /** The entry, or undefined if the id names none (checkIndexes). */
  find(id: number): T | undefined {
    return this.byId[id];
  }

  remove(e: T): void {
    this.byId[e.id] = undefined;
    this.free.push(e.id);
  }
}
