// Byte positions inside the table. The wire carries unsigned 64-bit offsets, but Linux lockd maps
// them onto signed loff_t: the highest lockable byte is OFFSET_MAX = 2^63-1 and a range reaching
// past it is refused with nlm4_fbig (fs/lockd/svc4proc.c, "detect and reject lock arguments that
// overflow"). A length of 0, or a range ending exactly at OFFSET_MAX, means "to end of file".
//
// A position is a plain number while it is exact (≤ 2^53-1), a bigint above that, and a range's
// end at OFFSET_MAX is Infinity. Every value has exactly one representation, so === is equality,
// and the relational operators compare numbers and bigints exactly. The hot path never sees a
// bigint unless a client locks beyond 8 PiB.

export type Pos = number | bigint;

export const OFFSET_MAX = (1n << 63n) - 1n;
/** The end of a range that runs to end of file. */
export const EOF = Infinity;

const SAFE = Number.MAX_SAFE_INTEGER;
const SAFE_BIG = BigInt(SAFE);

function fromBig(b: bigint): Pos {
  return b <= SAFE_BIG ? Number(b) : b;
}

/** The next position; never called on EOF. */
export function inc(p: Pos): Pos {
  if (typeof p === 'number') return p < SAFE ? p + 1 : BigInt(p) + 1n;
  return p + 1n;
}

/** The previous position; never called on 0 or EOF. */
export function dec(p: Pos): Pos {
  if (typeof p === 'number') return p - 1;
  return fromBig(p - 1n);
}

export const minPos = (a: Pos, b: Pos): Pos => (a < b ? a : b);
export const maxPos = (a: Pos, b: Pos): Pos => (a > b ? a : b);

/** An inclusive range [start, end]; null when the request overflows (nlm4_fbig). */
export function parseRange(offset: bigint, length: bigint): { start: Pos; end: Pos } | null {
  if (offset < 0n || length < 0n || offset > OFFSET_MAX) return null;
  if (offset <= SAFE_BIG && length <= SAFE_BIG) {
    const start = Number(offset);
    const len = Number(length);
    if (len === 0) return { start, end: EOF };
    // Checked before adding: start + len could round in a double before the - 1.
    const last = len - 1;
    if (start <= SAFE - last) return { start, end: start + last };
  }
  const start = fromBig(offset);
  if (length === 0n) return { start, end: EOF };
  const end = offset + length - 1n;
  if (end > OFFSET_MAX) return null;
  return { start, end: end === OFFSET_MAX ? EOF : fromBig(end) };
}

/** Back to the wire's (offset, length); a range to OFFSET_MAX answers length 0, as Linux does. */
export function toWire(start: Pos, end: Pos): { offset: bigint; length: bigint } {
  const offset = BigInt(start);
  if (end === EOF) return { offset, length: 0n };
  return { offset, length: BigInt(end) - offset + 1n };
}
