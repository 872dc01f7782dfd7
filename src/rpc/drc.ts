// The UDP duplicate-request cache: a retransmitted non-idempotent call (same xid, peer,
// procedure and bytes) gets the reply the first one got, instead of running twice.
// Bounded by entry count, least recently used first out. The recency order is a linked list:
// evicting through a Map's iterator would rescan the holes its deletions leave, O(capacity) a call.

export type DuplicateLookup =
  | { kind: 'new' }
  | { kind: 'in-progress' }
  | { kind: 'done'; reply: Buffer | undefined };

const NEW: DuplicateLookup = Object.freeze({ kind: 'new' });
const IN_PROGRESS: DuplicateLookup = Object.freeze({ kind: 'in-progress' });

interface Entry {
  key: string;
  call: Buffer;
  done: boolean;
  reply: Buffer | undefined;
  /** Neighbours in recency order (older, newer). */
  older: Entry | undefined;
  newer: Entry | undefined;
}

export class DuplicateRequestCache {
  private readonly entries = new Map<string, Entry>();
  private oldest: Entry | undefined;
  private newest: Entry | undefined;

  constructor(readonly capacity: number) {}

  get size(): number { return this.entries.size; }

  /**
   * Looks a call up by key and bytes. An unseen call (or the same key with different bytes: the
   * client reused its xid) is recorded as in progress and reported 'new'.
   */
  begin(key: string, call: Buffer): DuplicateLookup {
    const hit = this.entries.get(key);
    if (hit && hit.call.equals(call)) {
      this.unlink(hit);
      this.append(hit);
      return hit.done ? { kind: 'done', reply: hit.reply } : IN_PROGRESS;
    }
    if (hit) this.remove(hit);
    const e: Entry = { key, call, done: false, reply: undefined, older: undefined, newer: undefined };
    this.entries.set(key, e);
    this.append(e);
    while (this.entries.size > this.capacity) this.remove(this.oldest!);
    return NEW;
  }

  /** Records the reply sent for a call begun earlier (undefined: the call was answered with no reply). */
  finish(key: string, call: Buffer, reply: Buffer | undefined): void {
    const e = this.entries.get(key);
    if (e && e.call === call) {
      e.done = true;
      e.reply = reply;
    }
  }

  /** Forgets a call whose handling failed before a reply existed, so a retransmission runs again. */
  abandon(key: string, call: Buffer): void {
    const e = this.entries.get(key);
    if (e?.call === call) this.remove(e);
  }

  private remove(e: Entry): void {
    this.entries.delete(e.key);
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
