// XDR (RFC 4506): a bounds-checked reader and a growable writer over Buffers.
// Every read checks the remaining bytes first, so a hostile length never allocates
// or reads past the record; every failure is an XdrDecodeError.

export class XdrDecodeError extends Error {
  override readonly name = 'XdrDecodeError';
  constructor(message: string, readonly offset: number) {
    super(`${message} at offset ${offset}`);
  }
}

const pad4 = (n: number): number => (4 - (n & 3)) & 3;

export class XdrReader {
  private pos: number;

  constructor(private readonly buf: Buffer, offset = 0, private readonly end = buf.length) {
    // A window outside the buffer is a caller's bug, not hostile input.
    if (end > buf.length || offset < 0 || offset > end) throw new RangeError(`bad reader window [${offset}, ${end}) over ${buf.length} bytes`);
    this.pos = offset;
  }

  get offset(): number { return this.pos; }
  get remaining(): number { return this.end - this.pos; }

  private need(n: number, what: string): number {
    if (n > this.end - this.pos) {
      throw new XdrDecodeError(`truncated ${what}: need ${n} bytes, have ${this.end - this.pos}`, this.pos);
    }
    const at = this.pos;
    this.pos += n;
    return at;
  }

  int(): number { return this.buf.readInt32BE(this.need(4, 'int')); }
  uint(): number { return this.buf.readUInt32BE(this.need(4, 'unsigned int')); }
  hyper(): bigint { return this.buf.readBigInt64BE(this.need(8, 'hyper')); }
  uhyper(): bigint { return this.buf.readBigUInt64BE(this.need(8, 'unsigned hyper')); }

  bool(): boolean {
    const at = this.pos;
    const v = this.uint();
    if (v > 1) throw new XdrDecodeError(`bool out of range: ${v}`, at);
    return v === 1;
  }

  /** An enum whose legal values are given; anything else is a decode error. */
  enumOf<T extends number>(legal: ReadonlySet<number>, what = 'enum'): T {
    const at = this.pos;
    const v = this.int();
    if (!legal.has(v)) throw new XdrDecodeError(`${what} has illegal value ${v}`, at);
    return v as T;
  }

  /** Fixed-length opaque; returns a view into the record (no copy). */
  fixedOpaque(len: number): Buffer {
    const at = this.need(len + pad4(len), 'fixed opaque');
    return this.buf.subarray(at, at + len);
  }

  /** Variable-length opaque<max>; the length is checked against max and the record before any slice. */
  opaque(max = 0xffffffff): Buffer {
    const at = this.pos;
    const len = this.uint();
    if (len > max) throw new XdrDecodeError(`opaque length ${len} exceeds maximum ${max}`, at);
    return this.fixedOpaque(len);
  }

  string(max = 0xffffffff): string {
    return this.opaque(max).toString('utf8');
  }

  /** Variable-length array<max>; each element needs at least minElementSize bytes, checked up front. */
  array<T>(readElement: (r: XdrReader) => T, max = 0xffffffff, minElementSize = 4): T[] {
    const at = this.pos;
    const n = this.uint();
    if (n > max) throw new XdrDecodeError(`array length ${n} exceeds maximum ${max}`, at);
    // Every element takes at least one byte on the wire, so a hostile count cannot spin a long loop.
    if (n * Math.max(minElementSize, 1) > this.remaining) throw new XdrDecodeError(`array of ${n} elements exceeds record`, at);
    const out: T[] = [];
    for (let i = 0; i < n; i++) out.push(readElement(this));
    return out;
  }

  fixedArray<T>(n: number, readElement: (r: XdrReader) => T): T[] {
    const out: T[] = [];
    for (let i = 0; i < n; i++) out.push(readElement(this));
    return out;
  }

  /** Optional data (`*T`): a bool then the value. */
  optional<T>(readValue: (r: XdrReader) => T): T | undefined {
    return this.bool() ? readValue(this) : undefined;
  }

  /** The undecoded rest of the record (no copy). */
  rest(): Buffer {
    const at = this.pos;
    this.pos = this.end;
    return this.buf.subarray(at, this.end);
  }

  /** Fails unless the record was consumed exactly (trailing bytes mean garbage arguments). */
  done(): void {
    if (this.pos !== this.end) throw new XdrDecodeError(`${this.end - this.pos} trailing bytes`, this.pos);
  }
}

export class XdrWriter {
  private buf: Buffer;
  private pos = 0;

  constructor(initialSize = 256) {
    this.buf = Buffer.allocUnsafe(initialSize);
  }

  get length(): number { return this.pos; }

  /** Makes room for n bytes and returns where they go. Call it before reading this.buf: it may replace it. */
  private reserve(n: number): number {
    if (this.pos + n > this.buf.length) {
      let size = Math.max(this.buf.length * 2, 64);
      while (size < this.pos + n) size *= 2;
      const grown = Buffer.allocUnsafe(size);
      this.buf.copy(grown, 0, 0, this.pos);
      this.buf = grown;
    }
    const at = this.pos;
    this.pos += n;
    return at;
  }

  int(v: number): this { const at = this.reserve(4); this.buf.writeInt32BE(v, at); return this; }
  uint(v: number): this { const at = this.reserve(4); this.buf.writeUInt32BE(v >>> 0, at); return this; }
  hyper(v: bigint): this { const at = this.reserve(8); this.buf.writeBigInt64BE(v, at); return this; }
  uhyper(v: bigint): this { const at = this.reserve(8); this.buf.writeBigUInt64BE(v, at); return this; }
  bool(v: boolean): this { return this.uint(v ? 1 : 0); }
  enum(v: number): this { return this.int(v); }

  fixedOpaque(data: Uint8Array): this {
    const p = pad4(data.length);
    const at = this.reserve(data.length + p);
    this.buf.set(data, at);
    this.buf.fill(0, at + data.length, at + data.length + p);
    return this;
  }

  opaque(data: Uint8Array, max = 0xffffffff): this {
    if (data.length > max) throw new RangeError(`opaque length ${data.length} exceeds maximum ${max}`);
    this.uint(data.length);
    return this.fixedOpaque(data);
  }

  string(s: string, max = 0xffffffff): this {
    return this.opaque(Buffer.from(s, 'utf8'), max);
  }

  array<T>(items: readonly T[], writeElement: (w: XdrWriter, item: T) => void, max = 0xffffffff): this {
    if (items.length > max) throw new RangeError(`array length ${items.length} exceeds maximum ${max}`);
    this.uint(items.length);
    for (const it of items) writeElement(this, it);
    return this;
  }

  optional<T>(value: T | undefined, writeValue: (w: XdrWriter, v: T) => void): this {
    this.bool(value !== undefined);
    if (value !== undefined) writeValue(this, value);
    return this;
  }

  /** Raw bytes already in XDR form (e.g. a pre-encoded body). */
  raw(data: Uint8Array): this {
    const at = this.reserve(data.length);
    this.buf.set(data, at);
    return this;
  }

  /** A copy of the bytes written so far. */
  toBuffer(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.pos));
  }

  /** A view of the bytes written so far (valid until the next write). */
  view(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}
