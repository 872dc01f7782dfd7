// The UDP duplicate-request cache: a retransmitted non-idempotent call (same xid, peer, local
// address and bytes: the bytes hold prog, vers and proc) gets the reply the first one got,
// instead of running twice. Bounded by entry count, least recently used first out.
// Built to stay cheap at tens of thousands of calls a second: entries are found by a small
// integer taken from the xid (no key string to build and hash per call), calls whose xids share
// it are chained, and the recency order is a linked list (evicting through a Map's iterator
// would rescan the holes its deletions leave).
import type { Endpoint } from './types';

export type DuplicateLookup =
  | { kind: 'new' }
  | { kind: 'in-progress' }
  | { kind: 'done'; reply: Buffer | undefined };

const NEW: DuplicateLookup = Object.freeze({ kind: 'new' });
const IN_PROGRESS: DuplicateLookup = Object.freeze({ kind: 'in-progress' });

interface Entry {
  xid: number;
  peerAddress: string;
  peerPort: number;
  local: string;
  call: Buffer;
  done: boolean;
  reply: Buffer | undefined;
  /** Neighbours in recency order (older, newer). */
  older: Entry | undefined;
  newer: Entry | undefined;
  /** The next entry in the same bucket. */
  chained: Entry | undefined;
}

/** A small-integer bucket (a V8 Smi: no number object per key). */
const bucketOf = (xid: number): number => xid & 0x3fffffff;

export class DuplicateRequestCache {
  private readonly buckets = new Map<number, Entry>();
  private count = 0;
  private oldest: Entry | undefined;
  private newest: Entry | undefined;

  constructor(readonly capacity: number) {}

  get size(): number { return this.count; }

  /**
   * Looks a call up by xid, peer, local address and bytes. An unseen call (or a known one with
   * different bytes: the client reused its xid) is recorded as in progress and reported 'new'.
   */
  begin(xid: number, peer: Endpoint, local: string, call: Buffer): DuplicateLookup {
    const hit = this.find(xid, peer, local);
    if (hit && hit.call.equals(call)) {
      this.unlink(hit);
      this.append(hit);
      return hit.done ? { kind: 'done', reply: hit.reply } : IN_PROGRESS;
    }
    if (hit) this.remove(hit);
    const e: Entry = { xid, peerAddress: peer.address, peerPort: peer.port, local, call, done: false, reply: undefined, older: undefined, newer: undefined, chained: undefined };
    const b = bucketOf(xid);
    e.chained = this.buckets.get(b);
    this.buckets.set(b, e);
    this.count++;
    this.append(e);
    while (this.count > this.capacity) this.remove(this.oldest!);
    return NEW;
  }

  /** Records the reply sent for a call begun earlier (undefined: the call was answered with no reply). */
  finish(xid: number, peer: Endpoint, local: string, call: Buffer, reply: Buffer | undefined): void {
    const e = this.find(xid, peer, local);
    if (e && e.call === call) {
      e.done = true;
      e.reply = reply;
    }
  }

  /** Forgets a call whose handling failed before a reply existed, so a retransmission runs again. */
  abandon(xid: number, peer: Endpoint, local: string, call: Buffer): void {
    const e = this.find(xid, peer, local);
    if (e?.call === call) this.remove(e);
  }

  private find(xid: number, peer: Endpoint, local: string): Entry | undefined {
    let e = this.buckets.get(bucketOf(xid));
    while (e && !(e.xid === xid && e.peerPort === peer.port && e.peerAddress === peer.address && e.local === local)) e = e.chained;
    return e;
  }

  private remove(e: Entry): void {
    const b = bucketOf(e.xid);
    const head = this.buckets.get(b)!;
    if (head === e) {
      if (e.chained) this.buckets.set(b, e.chained);
      else this.buckets.delete(b);
    } else {
      let prev = head;
      while (prev.chained !== e) prev = prev.chained!;
      prev.chained = e.chained;
    }
    e.chained = undefined;
    this.count--;
    this.unlink(e);
  }

  private append(e: Entry): void {
    e.older = this.newest;
    e.newer = undefined;
    if (this.newest) this.newest.newer = e;
    else this.oldest = e;
    this.newest = e;
  }

  private unlink(e: Entry): void {
    if (e.older) e.older.newer = e.newer;
    else this.oldest = e.newer;
    if (e.newer) e.newer.older = e.older;
    else this.newest = e.older;
    e.older = e.newer = undefined;
  }
}
