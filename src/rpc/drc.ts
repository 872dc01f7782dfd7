// The UDP duplicate-request cache: a retransmitted non-idempotent call (same xid, peer,
// procedure and bytes) gets the reply the first one got, instead of running twice.
// Bounded by entry count, least recently used first out.

export type DuplicateLookup =
  | { kind: 'new' }
  | { kind: 'in-progress' }
  | { kind: 'done'; reply: Buffer | undefined };

interface Entry {
  call: Buffer;
  done: boolean;
  reply: Buffer | undefined;
}

export class DuplicateRequestCache {
  private readonly entries = new Map<string, Entry>();

  constructor(readonly capacity: number) {}

  get size(): number { return this.entries.size; }

  /**
   * Looks a call up by key and bytes. An unseen call (or the same key with different bytes: the
   * client reused its xid) is recorded as in progress and reported 'new'.
   */
  begin(key: string, call: Buffer): DuplicateLookup {
    const hit = this.entries.get(key);
    if (hit && hit.call.equals(call)) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit.done ? { kind: 'done', reply: hit.reply } : { kind: 'in-progress' };
    }
    if (hit) this.entries.delete(key);
    this.entries.set(key, { call, done: false, reply: undefined });
    while (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
    return { kind: 'new' };
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
    if (this.entries.get(key)?.call === call) this.entries.delete(key);
  }
}
