// TCP record marking (RFC 5531 section 11): each record is one or more fragments, each
// preceded by a 4-byte header (bit 31 = last fragment, bits 0-30 = fragment length).
// RecordDecoder is a pure incremental framer: bytes in, whole records out. A record larger
// than the limit is refused as soon as a fragment header announces it, before any allocation.

export const LAST_FRAGMENT = 0x80000000;
/** The largest fragment a header can announce. */
export const MAX_FRAGMENT = 0x7fffffff;

export class RecordTooLargeError extends Error {
  override readonly name = 'RecordTooLargeError';
  constructor(readonly announced: number, readonly max: number) {
    super(`record of at least ${announced} bytes exceeds the maximum of ${max}`);
  }
}

export class RecordDecoder {
  private header = Buffer.alloc(4);
  private headerHave = 0;
  /** Bytes still to come in the current fragment. */
  private fragmentLeft = 0;
  private lastFragment = false;
  private inFragment = false;
  /** A non-last fragment has ended: the record continues. */
  private midRecord = false;
  private pieces: Buffer[] = [];
  private recordSize = 0;

  constructor(readonly maxRecordSize: number) {}

  /** True while part of a record (or of a fragment header) has arrived but not all of it. */
  get partial(): boolean {
    return this.headerHave > 0 || this.inFragment || this.midRecord;
  }

  /**
   * Feeds bytes; returns the records they complete, in order. Throws RecordTooLargeError once a
   * fragment would take the record past the maximum (the connection should then be closed).
   */
  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    this.feed(chunk, (buf, start, end) => void out.push(buf.subarray(start, end)));
    return out;
  }

  /**
   * Feeds bytes; hands each record they complete to onRecord as a window [start, end) of a buffer:
   * the chunk itself when the record lies whole in it (no copy, no Buffer object per record), a
   * buffer of its own when it came in pieces. The window is valid for as long as the chunk is.
   * Throws RecordTooLargeError as push() does; records before the offending one were handed over.
   */
  feed(chunk: Buffer, onRecord: (buf: Buffer, start: number, end: number) => void): void {
    let at = 0;
    while (at < chunk.length) {
      if (!this.inFragment) {
        const take = Math.min(4 - this.headerHave, chunk.length - at);
        chunk.copy(this.header, this.headerHave, at, at + take);
        this.headerHave += take;
        at += take;
        if (this.headerHave < 4) break;
        this.headerHave = 0;
        const h = this.header.readUInt32BE(0);
        this.fragmentLeft = h & MAX_FRAGMENT;
        this.lastFragment = (h & LAST_FRAGMENT) !== 0;
        if (this.recordSize + this.fragmentLeft > this.maxRecordSize) {
          throw new RecordTooLargeError(this.recordSize + this.fragmentLeft, this.maxRecordSize);
        }
        this.inFragment = true;
      }
      const take = Math.min(this.fragmentLeft, chunk.length - at);
      const from = at;
      at += take;
      this.fragmentLeft -= take;
      if (this.fragmentLeft === 0) {
        this.inFragment = false;
        this.midRecord = !this.lastFragment;
        if (this.lastFragment) {
          if (this.pieces.length === 0) {
            onRecord(chunk, from, at); // the common case: one fragment, whole in this chunk
          } else {
            if (take > 0) this.pieces.push(chunk.subarray(from, at));
            const rec = Buffer.concat(this.pieces, this.recordSize + take);
            this.pieces = [];
            this.recordSize = 0;
            onRecord(rec, 0, rec.length);
          }
          continue;
        }
      }
      if (take > 0) {
        this.pieces.push(chunk.subarray(from, at));
        this.recordSize += take;
      }
    }
  }
}

/** Frames one record, split into fragments of at most maxFragment bytes. */
export function encodeRecord(payload: Uint8Array, maxFragment = MAX_FRAGMENT): Buffer {
  if (maxFragment < 1 || maxFragment > MAX_FRAGMENT) throw new RangeError(`bad fragment size ${maxFragment}`);
  const count = Math.max(1, Math.ceil(payload.length / maxFragment));
  const out = Buffer.allocUnsafe(payload.length + 4 * count);
  let src = 0;
  let dst = 0;
  for (let i = 0; i < count; i++) {
    const len = Math.min(maxFragment, payload.length - src);
    out.writeUInt32BE((i === count - 1 ? LAST_FRAGMENT : 0) + len, dst);
    out.set(payload.subarray(src, src + len), dst + 4);
    src += len;
    dst += 4 + len;
  }
  return out;
}
